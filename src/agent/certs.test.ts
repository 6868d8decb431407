/**
 * CertificateManager with a fake clock and an in-process CA (src/identity) as the signer: the
 * renewal schedule, backoff, waiting connections, release, the concurrency bound. The same manager
 * against the real control plane over gRPC is certs.server.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { ControlError } from '../api/client.js';
import type { SignResponse } from '../api/wire.js';
import { CertificateAuthority, generateRootCa, inspectCsr } from '../identity/ca.js';
import { AgentCertMetrics, CertificateManager, CertificateUnavailableError, type CertSigner, type Clock, type WorkloadCertificate } from './certs.js';

/** Timers that fire only when the test advances time. */
class FakeClock implements Clock {
  #now = 1_700_000_000_000;
  #timers = new Map<number, { at: number; fn: () => void }>();
  #id = 0;
  now(): number {
    return this.#now;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#id;
    this.#timers.set(id, { at: this.#now + ms, fn });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.#timers.delete(h as number);
  }
  /** What `advance` waits for (in real time) after each timer: the manager having nothing in progress. */
  idle: () => boolean = () => true;
  /** Moves time forward, firing due timers in order; lets the work they start finish after each. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    for (;;) {
      const due = [...this.#timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.#timers.delete(due[0]);
      this.#now = Math.max(this.#now, due[1].at);
      due[1].fn();
      await this.settle();
    }
    this.#now = end;
    await this.settle();
  }
  async settle(): Promise<void> {
    await settle();
    await until(() => this.idle() || undefined, 'the manager to finish its requests');
  }
  pending(): number {
    return this.#timers.size;
  }
}

/** Lets queued promise callbacks and the CA's WebCrypto work run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

async function until<T>(fn: () => T | undefined, what: string, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const silent = pino({ level: 'silent' });

/** A signer backed by an in-process CA; `fail` makes the next calls throw; counts calls and concurrency. */
async function caSigner(clock: FakeClock, ttlMs = 1000_000) {
  const data = await generateRootCa({ trustDomain: 'cluster.local', now: clock.now() });
  const ca = await CertificateAuthority.load(data, { trustDomain: 'cluster.local', workloadTtlMs: ttlMs, now: () => clock.now() });
  const state = { calls: 0, inFlight: 0, maxInFlight: 0, fail: [] as Error[], hold: undefined as Promise<void> | undefined };
  const signer: CertSigner = {
    async sign(req): Promise<SignResponse> {
      state.calls++;
      state.inFlight++;
      state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
      try {
        if (state.hold) await state.hold;
        const err = state.fail.shift();
        if (err) throw err;
        const csr = await inspectCsr(req.csrPem);
        if (!csr.ok) throw new Error(csr.error);
        const issued = await ca.issueWorkload({ publicKey: csr.csr.publicKey, identity: `spiffe://cluster.local/ns/shop/sa/${req.podUid}`, ttlMs: ttlMs });
        return { identity: issued.identity, certChainPem: issued.certChainPem, notAfterMs: issued.notAfter.getTime(), trustBundlePem: ca.trustBundle().roots };
      } finally {
        state.inFlight--;
      }
    },
  };
  return { signer, state };
}

const pod = (uid: string) => ({ uid, namespace: 'shop', name: `pod-${uid}` });

test('renewal at half-life minus jitter, measured from the request; a new key each time; consumers get the new one', async () => {
  const clock = new FakeClock();
  const { signer, state } = await caSigner(clock, 1000_000); // 1000 s
  const issued: [string, boolean][] = [];
  // random 0.5 → renew at (0.5 - 0.1 × 0.5) = 45 % of the lifetime
  const m = new CertificateManager({ signer, log: silent, clock, random: () => 0.5 });
  clock.idle = () => m.inFlight === 0;
  m.on('issued', (c, i) => issued.push([c.identity, i.renewal]));
  m.ensure(pod('a'));
  const first = await until(() => m.current('a'), 'first certificate');
  assert.equal(first.identity, 'spiffe://cluster.local/ns/shop/sa/a');
  assert.equal(first.renewAtMs - first.issuedAtMs, 450_000);
  assert.equal(inspect(first.keyPem), '[redacted]');
  assert.equal(JSON.stringify(first).includes('PRIVATE KEY'), false);

  await clock.advance(449_000);
  assert.equal(state.calls, 1, 'not renewed before its time');
  await clock.advance(1000);
  const second = await until(() => (m.current('a') !== first ? m.current('a') : undefined), 'renewal');
  assert.equal(state.calls, 2);
  assert.deepEqual(issued, [
    ['spiffe://cluster.local/ns/shop/sa/a', false],
    ['spiffe://cluster.local/ns/shop/sa/a', true],
  ]);
  assert.notEqual(second.keyPem.reveal(), first.keyPem.reveal(), 'a renewal uses a new key');
  assert.notEqual(second.certChainPem[0], first.certChainPem[0]);
  assert.equal(second.renewAtMs, clock.now() + 450_000);
  m.close();
});

test('failures retry with exponential backoff; the held certificate stays in use until it expires', async () => {
  const clock = new FakeClock();
  const { signer, state } = await caSigner(clock, 100_000);
  const failed: string[] = [];
  const m = new CertificateManager({ signer, log: silent, clock, random: () => 0.5, jitter: 0, backoff: { initialMs: 1000, maxMs: 4000 } });
  clock.idle = () => m.inFlight === 0;
  m.on('failed', (_p, _e, i) => failed.push(`${i.reason}:${i.retryInMs}`));
  m.ensure(pod('a'));
  const first = await until(() => m.current('a'), 'first certificate');
  const unreachable = () => new ControlError(14, 'No connection established');
  state.fail.push(unreachable(), unreachable(), unreachable(), unreachable());
  await clock.advance(50_000); // renewal due at 50 % → first failure
  // ceiling 1000, 2000, 4000, 4000 (max) → with random 0.5: 750, 1500, 3000, 3000
  await clock.advance(750 + 1500 + 3000);
  assert.deepEqual(failed, ['control-unreachable:750', 'control-unreachable:1500', 'control-unreachable:3000', 'control-unreachable:3000']);
  assert.equal(state.calls, 5);
  assert.equal(m.current('a'), first, 'still valid: still in use');
  await clock.advance(2999);
  assert.equal(state.calls, 5, 'the fourth retry waits the capped 3000 ms');
  await clock.advance(1);
  assert.equal(state.calls, 6);
  const renewed = await until(() => (m.current('a') !== first ? m.current('a') : undefined), 'renewed');
  assert.equal(renewed.identity, first.identity);
  m.close();
});

test('an expired certificate is not handed out; a waiting connection learns why', async () => {
  const clock = new FakeClock();
  const { signer, state } = await caSigner(clock, 10_000);
  const m = new CertificateManager({ signer, log: silent, clock, random: () => 0, backoff: { initialMs: 60_000, maxMs: 60_000 } });
  clock.idle = () => m.inFlight === 0;
  m.ensure(pod('a'));
  await until(() => m.current('a'), 'first certificate');
  state.fail.push(new ControlError(14, 'connect ECONNREFUSED 10.96.0.20:15012'));
  await clock.advance(11_000);
  assert.equal(m.current('a'), undefined);
  const wait = m.get('a', { waitMs: 1000 }).catch((e: Error) => e);
  await clock.advance(1000);
  const err = await wait;
  assert.ok(err instanceof CertificateUnavailableError);
  assert.equal(err.reason, 'control-unreachable');
  assert.match(err.message, /^no certificate for pod shop\/pod-a yet: its certificate expired at .* and renewal fails: ambit-control unreachable \(UNAVAILABLE: connect ECONNREFUSED 10\.96\.0\.20:15012\) — the connection is refused$/);
  m.close();
});

test('get: waits for a certificate in progress; fails for an unknown pod and on release; reasons in the message', async () => {
  const clock = new FakeClock();
  const { signer, state } = await caSigner(clock);
  let release!: () => void;
  state.hold = new Promise((r) => (release = r));
  const m = new CertificateManager({ signer, log: silent, clock, random: () => 0 });
  clock.idle = () => m.inFlight === 0 || state.hold !== undefined;

  const unknown = await m.get('nobody', { waitMs: 10 }).catch((e: Error) => e);
  assert.ok(unknown instanceof CertificateUnavailableError);
  assert.equal(unknown.reason, 'not-enrolled');
  assert.match(unknown.message, /no certificate for pod nobody: the pod is not enrolled on this node — the connection is refused/);

  m.ensure(pod('a'));
  const waiting = m.get('a', { waitMs: 5000 });
  const tooShort = m.get('a', 100).catch((e: Error) => e); // the positional form (the proxy's CredentialSource)
  await clock.advance(100); // the request is held: not idle, so do not wait for it
  const pending = await tooShort;
  assert.ok(pending instanceof CertificateUnavailableError);
  assert.equal(pending.reason, 'pending');
  assert.match(pending.message, /no certificate for pod shop\/pod-a yet: the certificate is still being requested \(100 ms so far\) — the connection is refused/);
  release();
  state.hold = undefined;
  const got: WorkloadCertificate = await waiting;
  assert.equal(got.podUid, 'a');

  // Refused by the control plane (another node's pod).
  state.fail.push(new ControlError(7, "pod shop/b runs on node n2, not on the caller's node n1"));
  m.ensure(pod('b'));
  const denied = m.get('b', { waitMs: 200 }).catch((e: Error) => e);
  await clock.settle();
  await clock.advance(200);
  const d = await denied;
  assert.ok(d instanceof CertificateUnavailableError);
  assert.equal(d.reason, 'denied');
  assert.match(d.message, /ambit-control refused to sign it \(PERMISSION_DENIED: pod shop\/b runs on node n2/);

  // Released while a connection waits and while its request is in flight: the waiter fails, the result is dropped.
  state.hold = new Promise(() => undefined);
  m.ensure(pod('c'));
  const gone = m.get('c', { waitMs: 5000 }).catch((e: Error) => e);
  const released: string[] = [];
  m.on('released', (uid) => released.push(uid));
  m.release('c');
  const r = await gone;
  assert.ok(r instanceof CertificateUnavailableError);
  assert.equal(r.reason, 'released');
  assert.match(r.message, /pod shop\/pod-c was removed from the mesh on this node/);
  assert.deepEqual(released, ['c']);
  assert.equal(m.current('c'), undefined);
  assert.deepEqual(m.snapshot().map((s) => s.uid).sort(), ['a', 'b']);
  m.close();
});

test('at most `concurrency` requests at once; 110 pods all get certificates; metrics', async () => {
  const clock = new FakeClock();
  const { signer, state } = await caSigner(clock);
  const registry = new Registry();
  const holder: { m?: CertificateManager } = {};
  const metrics = new AgentCertMetrics(registry, () => holder.m);
  const m = new CertificateManager({ signer, log: silent, clock, concurrency: 8, metrics });
  holder.m = m;
  for (let i = 0; i < 110; i++) m.ensure(pod(`p${i}`));
  m.ensure(pod('p0')); // idempotent
  await until(() => (m.counts().ready === 110 ? true : undefined), '110 certificates', 30_000);
  assert.equal(state.calls, 110);
  assert.ok(state.maxInFlight <= 8, `max in flight ${state.maxInFlight}`);
  assert.equal(state.maxInFlight, 8);
  const text = await registry.metrics();
  assert.match(text, /ambit_agent_certificates_issued_total\{kind="initial"\} 110/);
  assert.match(text, /ambit_agent_certificates\{state="ready"\} 110/);
  const expiry = /ambit_agent_certificate_expiry_seconds (\d+(\.\d+)?)/.exec(text);
  assert.ok(expiry && Number(expiry[1]) > 990 && Number(expiry[1]) <= 1000, text);
  m.close();
});
