/**
 * Workload certificates of the node's enrolled pods, in memory only: for each pod (by uid) a fresh
 * ECDSA P-256 key and a CSR (src/identity's `createKeyAndCsr`, the key wrapped in `Sensitive` so it
 * never reaches a log or a disk), signed by ambit-control (`ControlClient.sign`), which puts the
 * pod's SPIFFE ID in the certificate.
 *
 * Lifecycle per pod: `ensure(pod)` at enrolment requests the first certificate; it is renewed at
 * about half its lifetime (a little earlier by a random jitter, so a node's pods do not all renew
 * at once) with a new key; consumers read `current(uid)` or listen for 'issued', and connections
 * already established keep the certificate they were made with, so a renewal drops nothing.
 * `release(uid)` at un-enrolment forgets the key. A connection that arrives before its pod's
 * certificate calls `get(uid, {waitMs})`, which waits briefly and then fails with an error saying
 * why (the control plane unreachable, the request refused, still pending).
 *
 * Failures are retried with exponential backoff (jittered); a certificate that cannot be renewed
 * stays in use until it expires. At most `concurrency` requests run at once (an agent restarting
 * on a full node asks for ~110 at the same moment), first certificates before renewals.
 *
 * Renewal is measured from when the certificate was requested, not from its notBefore: the CA
 * backdates notBefore by minutes for clock skew, which would make "half-life" arrive too early.
 * Time is injectable (`clock`) so the schedule is testable without waiting.
 */
import { EventEmitter } from 'node:events';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { ControlError } from '../api/client.js';
import type { SignResponse } from '../api/wire.js';
import { createKeyAndCsr } from '../identity/ca.js';
import type { Sensitive } from '../identity/sensitive.js';

/** The pod a certificate is for (the enroller's PodRef fits). */
export interface CertPod {
  uid: string;
  namespace: string;
  name: string;
}

/** A pod's X.509-SVID and key (assignable to the HBONE library's WorkloadCredentials). */
export interface WorkloadCertificate {
  podUid: string;
  /** the SPIFFE ID in the certificate */
  identity: string;
  /** leaf first, then intermediates up to (not including) the root; PEM */
  certChainPem: string[];
  keyPem: Sensitive<string>;
  /** the roots peers' certificates are verified against (PEM) */
  trustBundlePem: string[];
  notAfterMs: number;
  /** when it was requested (ms since epoch): the start of its lifetime for renewal */
  issuedAtMs: number;
  /** when its renewal is due */
  renewAtMs: number;
}

/** What signs a CSR: ControlClient. */
export interface CertSigner {
  sign(req: { podUid: string; csrPem: string; ttlSeconds?: number }, opts?: { timeoutMs?: number }): Promise<SignResponse>;
}

/** Time, injectable for tests. Timers of the real clock do not keep the process alive. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const REAL_CLOCK: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** Hooks for the agent's metrics (see AgentCertMetrics). */
export interface CertMetrics {
  issued(kind: 'initial' | 'renewal'): void;
  failed(reason: CertFailureReason): void;
}

/** Why a pod has no usable certificate (stable: for metrics labels and tests). */
export type CertFailureReason = 'control-unreachable' | 'denied' | 'failed';
export type CertUnavailableReason = CertFailureReason | 'pending' | 'not-enrolled' | 'released' | 'closed';

/** A connection asked for a certificate the agent does not have; the message says why and what happens. */
export class CertificateUnavailableError extends Error {
  readonly code = 'AMBIT_CERT_UNAVAILABLE';
  constructor(
    /** "<namespace>/<name>", or the uid when the pod is unknown */
    readonly pod: string,
    readonly reason: CertUnavailableReason,
    message: string,
  ) {
    super(message);
    this.name = 'CertificateUnavailableError';
  }
}

export interface CertificateManagerOptions {
  signer: CertSigner;
  log: Logger;
  metrics?: CertMetrics;
  /** certificate lifetime to ask for; 0 or absent: the CA's default (it never grants more) */
  ttlSeconds?: number;
  /** requests at once; default 16 */
  concurrency?: number;
  /** renew at this fraction of the lifetime; default 0.5 */
  renewAt?: number;
  /** renew up to this fraction of the lifetime earlier, at random; default 0.1 */
  jitter?: number;
  /** retry backoff after a failed request; default 500 ms doubling to 30 s */
  backoff?: { initialMs?: number; maxMs?: number };
  /** deadline of one Sign call; default 10 s */
  signTimeoutMs?: number;
  clock?: Clock;
  /** [0, 1); default Math.random */
  random?: () => number;
  /** default: src/identity's createKeyAndCsr (P-256, no SAN requested: the CA puts the authorised ID in) */
  makeKeyAndCsr?: () => Promise<{ csrPem: string; keyPem: Sensitive<string> }>;
}

export interface CertManagerEvents {
  issued: [cert: WorkloadCertificate, info: { renewal: boolean }];
  failed: [pod: CertPod, error: Error, info: { reason: CertFailureReason; retryInMs: number }];
  released: [uid: string];
}

interface Failure {
  reason: CertFailureReason;
  /** e.g. "ambit-control unreachable (UNAVAILABLE: No connection established)" */
  why: string;
}

interface Waiter {
  resolve(c: WorkloadCertificate): void;
  reject(e: Error): void;
  timer: unknown;
}

interface Entry {
  pod: CertPod;
  cert?: WorkloadCertificate;
  /** in a queue or running */
  busy: boolean;
  failures: number;
  lastFailure?: Failure;
  since: number;
  timer?: unknown;
  waiters: Set<Waiter>;
}

/** How long a connection waits for a certificate by default. */
export const DEFAULT_CERT_WAIT_MS = 5_000;
/** setTimeout's longest delay; a longer wait is cut into pieces. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class CertificateManager extends EventEmitter<CertManagerEvents> {
  readonly #entries = new Map<string, Entry>();
  readonly #first: Entry[] = [];
  readonly #renewals: Entry[] = [];
  #active = 0;
  #closed = false;
  readonly #clock: Clock;
  readonly #random: () => number;

  constructor(private readonly opts: CertificateManagerOptions) {
    super();
    this.#clock = opts.clock ?? REAL_CLOCK;
    this.#random = opts.random ?? Math.random;
  }

  /** Starts getting a certificate for `pod` (enrolment). Idempotent. */
  ensure(pod: CertPod): void {
    if (this.#closed) return;
    const existing = this.#entries.get(pod.uid);
    if (existing) {
      existing.pod = { uid: pod.uid, namespace: pod.namespace, name: pod.name };
      return;
    }
    const entry: Entry = { pod: { uid: pod.uid, namespace: pod.namespace, name: pod.name }, busy: false, failures: 0, since: this.#clock.now(), waiters: new Set() };
    this.#entries.set(pod.uid, entry);
    this.#enqueue(entry);
  }

  /** Forgets the pod's key and certificate (un-enrolment); waiting connections fail. */
  release(uid: string): void {
    const entry = this.#entries.get(uid);
    if (!entry) return;
    this.#entries.delete(uid);
    this.#clock.clearTimeout(entry.timer);
    this.#failWaiters(entry, 'released', `pod ${label(entry.pod)} was removed from the mesh on this node`);
    this.emit('released', uid);
  }

  /** The pod's certificate, when it has one that has not expired. */
  current(uid: string): WorkloadCertificate | undefined {
    const cert = this.#entries.get(uid)?.cert;
    return cert && cert.notAfterMs > this.#clock.now() ? cert : undefined;
  }

  /**
   * The pod's certificate; waits up to `waitMs` (default DEFAULT_CERT_WAIT_MS) for one, then fails
   * with CertificateUnavailableError. `wait` is the number of ms or `{waitMs}`.
   */
  get(uid: string, wait: number | { waitMs?: number } = {}): Promise<WorkloadCertificate> {
    const waitMs = (typeof wait === 'number' ? wait : wait.waitMs) ?? DEFAULT_CERT_WAIT_MS;
    const cert = this.current(uid);
    if (cert) return Promise.resolve(cert);
    const entry = this.#entries.get(uid);
    if (!entry || this.#closed) {
      return Promise.reject(new CertificateUnavailableError(uid, this.#closed ? 'closed' : 'not-enrolled', `no certificate for pod ${uid}: the pod is not enrolled on this node — the connection is refused`));
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: this.#clock.setTimeout(() => {
          entry.waiters.delete(waiter);
          reject(this.#unavailable(entry));
        }, waitMs),
      };
      entry.waiters.add(waiter);
    });
  }

  /** Seconds until the soonest expiry among the held certificates; undefined when none is held. */
  minSecondsToExpiry(): number | undefined {
    let min: number | undefined;
    for (const e of this.#entries.values()) if (e.cert) min = Math.min(min ?? Infinity, e.cert.notAfterMs);
    return min === undefined ? undefined : (min - this.#clock.now()) / 1000;
  }

  /** Requests queued or running (0: nothing in progress until the next timer). */
  get inFlight(): number {
    return this.#active + this.#first.length + this.#renewals.length;
  }

  /** Pods with a valid certificate, and all pods known. */
  counts(): { pods: number; ready: number } {
    let ready = 0;
    for (const uid of this.#entries.keys()) if (this.current(uid)) ready++;
    return { pods: this.#entries.size, ready };
  }

  /** Per-pod state for /debug/state (no key material). */
  snapshot(): { uid: string; pod: string; identity?: string; notAfter?: string; renewAt?: string; failures: number; lastError?: string }[] {
    return [...this.#entries.values()].map((e) => ({
      uid: e.pod.uid,
      pod: label(e.pod),
      ...(e.cert ? { identity: e.cert.identity, notAfter: new Date(e.cert.notAfterMs).toISOString(), renewAt: new Date(e.cert.renewAtMs).toISOString() } : {}),
      failures: e.failures,
      ...(e.lastFailure ? { lastError: e.lastFailure.why } : {}),
    }));
  }

  close(): void {
    this.#closed = true;
    for (const e of this.#entries.values()) {
      this.#clock.clearTimeout(e.timer);
      this.#failWaiters(e, 'closed', 'the agent is stopping');
    }
    this.#entries.clear();
  }

  // ---------------------------------------------------------------- requests

  #enqueue(entry: Entry): void {
    if (entry.busy || this.#closed) return;
    entry.busy = true;
    (entry.cert ? this.#renewals : this.#first).push(entry);
    this.#pump();
  }

  #pump(): void {
    const limit = this.opts.concurrency ?? 16;
    while (this.#active < limit) {
      const entry = this.#first.shift() ?? this.#renewals.shift();
      if (!entry) return;
      if (this.#entries.get(entry.pod.uid) !== entry) continue; // released while queued
      this.#active++;
      void this.#request(entry).finally(() => {
        this.#active--;
        this.#pump();
      });
    }
  }

  async #request(entry: Entry): Promise<void> {
    const renewal = entry.cert !== undefined;
    const startedAt = this.#clock.now();
    let cert: WorkloadCertificate;
    try {
      const { csrPem, keyPem } = await (this.opts.makeKeyAndCsr ?? (() => createKeyAndCsr()))();
      const res = await this.opts.signer.sign({ podUid: entry.pod.uid, csrPem, ...(this.opts.ttlSeconds ? { ttlSeconds: this.opts.ttlSeconds } : {}) }, { timeoutMs: this.opts.signTimeoutMs ?? 10_000 });
      checkResponse(res, keyPem, startedAt);
      const renewAtMs = this.#renewalTime(startedAt, res.notAfterMs);
      cert = { podUid: entry.pod.uid, identity: res.identity, certChainPem: res.certChainPem, keyPem, trustBundlePem: res.trustBundlePem, notAfterMs: res.notAfterMs, issuedAtMs: startedAt, renewAtMs };
    } catch (err) {
      entry.busy = false;
      if (this.#entries.get(entry.pod.uid) === entry) this.#failed(entry, err as Error);
      return;
    }
    entry.busy = false;
    if (this.#entries.get(entry.pod.uid) !== entry) return; // released meanwhile: forget the key
    entry.cert = cert;
    entry.failures = 0;
    delete entry.lastFailure;
    this.#schedule(entry, cert.renewAtMs);
    this.opts.metrics?.issued(renewal ? 'renewal' : 'initial');
    this.opts.log.info(
      { pod: label(entry.pod), identity: cert.identity, notAfter: new Date(cert.notAfterMs).toISOString(), renewAt: new Date(cert.renewAtMs).toISOString(), ms: this.#clock.now() - startedAt },
      renewal ? 'workload certificate renewed' : 'workload certificate issued',
    );
    for (const w of entry.waiters) {
      this.#clock.clearTimeout(w.timer);
      w.resolve(cert);
    }
    entry.waiters.clear();
    this.emit('issued', cert, { renewal });
  }

  #failed(entry: Entry, err: Error): void {
    const failure = classify(err);
    entry.failures++;
    entry.lastFailure = failure;
    const initial = this.opts.backoff?.initialMs ?? 500;
    const max = this.opts.backoff?.maxMs ?? 30_000;
    const ceiling = Math.min(max, initial * 2 ** (entry.failures - 1));
    const retryInMs = Math.round(ceiling / 2 + (this.#random() * ceiling) / 2);
    this.#schedule(entry, this.#clock.now() + retryInMs);
    this.opts.metrics?.failed(failure.reason);
    const held = entry.cert && entry.cert.notAfterMs > this.#clock.now() ? `; the current certificate stays in use until ${new Date(entry.cert.notAfterMs).toISOString()}` : '';
    this.opts.log.warn({ pod: label(entry.pod), attempt: entry.failures, retryInMs, reason: failure.reason }, `cannot get a certificate for pod ${label(entry.pod)}: ${failure.why}; retrying in ${retryInMs} ms${held}`);
    this.emit('failed', entry.pod, err, { reason: failure.reason, retryInMs });
  }

  /** Lifetime measured from the request; renew at `renewAt` of it, up to `jitter` earlier. */
  #renewalTime(issuedAtMs: number, notAfterMs: number): number {
    const lifetime = Math.max(0, notAfterMs - issuedAtMs);
    const fraction = (this.opts.renewAt ?? 0.5) - (this.opts.jitter ?? 0.1) * this.#random();
    return issuedAtMs + Math.max(0, fraction) * lifetime;
  }

  #schedule(entry: Entry, atMs: number): void {
    this.#clock.clearTimeout(entry.timer);
    const delay = Math.max(0, atMs - this.#clock.now());
    entry.timer = this.#clock.setTimeout(() => {
      if (this.#entries.get(entry.pod.uid) !== entry) return;
      if (delay > MAX_TIMER_MS) return this.#schedule(entry, atMs);
      this.#enqueue(entry);
    }, Math.min(delay, MAX_TIMER_MS));
  }

  #unavailable(entry: Entry): CertificateUnavailableError {
    const f = entry.lastFailure;
    const expired = entry.cert ? `its certificate expired at ${new Date(entry.cert.notAfterMs).toISOString()} and renewal fails: ` : '';
    const why = f ? `${expired}${f.why}` : `the certificate is still being requested (${this.#clock.now() - entry.since} ms so far)`;
    return new CertificateUnavailableError(label(entry.pod), f?.reason ?? 'pending', `no certificate for pod ${label(entry.pod)} yet: ${why} — the connection is refused`);
  }

  #failWaiters(entry: Entry, reason: CertUnavailableReason, why: string): void {
    for (const w of entry.waiters) {
      this.#clock.clearTimeout(w.timer);
      w.reject(new CertificateUnavailableError(label(entry.pod), reason, `no certificate for pod ${label(entry.pod)}: ${why} — the connection is refused`));
    }
    entry.waiters.clear();
  }
}

/** A response the agent can use: a leaf for our key, naming the identity, not yet expired, with roots. */
function checkResponse(res: SignResponse, keyPem: Sensitive<string>, now: number): void {
  if (!res.identity.startsWith('spiffe://')) throw new Error(`ambit-control returned identity "${res.identity}", not a SPIFFE ID`);
  if (res.certChainPem.length === 0) throw new Error('ambit-control returned no certificate');
  if (res.trustBundlePem.length === 0) throw new Error('ambit-control returned no trust roots');
  if (!(res.notAfterMs > now)) throw new Error(`ambit-control returned a certificate that expires at ${new Date(res.notAfterMs).toISOString()}, in the past; check the clocks of this node and the control plane`);
  const leaf = new X509Certificate(res.certChainPem[0]!);
  if (!leaf.checkPrivateKey(createPrivateKey(keyPem.reveal()))) throw new Error('the certificate returned is not for the key this agent generated');
  if (!(leaf.subjectAltName ?? '').split(', ').includes(`URI:${res.identity}`)) throw new Error(`the certificate returned does not carry ${res.identity}`);
}

function classify(err: Error): Failure {
  if (err instanceof ControlError) {
    const detail = `${err.codeName}: ${err.details}`;
    if (err.codeName === 'UNAVAILABLE' || err.codeName === 'DEADLINE_EXCEEDED') return { reason: 'control-unreachable', why: `ambit-control unreachable (${detail})` };
    if (['PERMISSION_DENIED', 'UNAUTHENTICATED', 'NOT_FOUND', 'FAILED_PRECONDITION', 'INVALID_ARGUMENT'].includes(err.codeName)) {
      return { reason: 'denied', why: `ambit-control refused to sign it (${detail})` };
    }
    return { reason: 'failed', why: `signing failed (${detail})` };
  }
  return { reason: 'failed', why: `signing failed (${err.message})` };
}

function label(pod: CertPod): string {
  return `${pod.namespace}/${pod.name}`;
}

/**
 * The certificate metrics, registered on the agent's registry:
 *   ambit_agent_certificates_issued_total{kind}        counter  initial | renewal
 *   ambit_agent_certificate_failures_total{reason}     counter  control-unreachable | denied | failed
 *   ambit_agent_certificate_expiry_seconds             gauge    seconds until the soonest expiry of a held certificate
 *   ambit_agent_certificates{state}                    gauge    pods with a valid certificate (ready) and without (pending)
 */
export class AgentCertMetrics implements CertMetrics {
  readonly issuedTotal: Counter<'kind'>;
  readonly failuresTotal: Counter<'reason'>;

  constructor(registry: Registry, source: () => Pick<CertificateManager, 'minSecondsToExpiry' | 'counts'> | undefined) {
    const registers = [registry];
    this.issuedTotal = new Counter({ name: 'ambit_agent_certificates_issued_total', help: 'Workload certificates obtained from ambit-control, by kind (initial, renewal)', labelNames: ['kind'], registers });
    this.failuresTotal = new Counter({ name: 'ambit_agent_certificate_failures_total', help: 'Failed workload certificate requests, by reason', labelNames: ['reason'], registers });
    new Gauge({
      name: 'ambit_agent_certificate_expiry_seconds',
      help: 'Seconds until the soonest expiry among the workload certificates held',
      registers,
      collect() {
        const s = source()?.minSecondsToExpiry();
        if (s === undefined) this.reset();
        else this.set(s);
      },
    });
    new Gauge({
      name: 'ambit_agent_certificates',
      help: 'Enrolled pods with a valid workload certificate (ready) and waiting for one (pending)',
      labelNames: ['state'],
      registers,
      collect() {
        const c = source()?.counts() ?? { pods: 0, ready: 0 };
        this.set({ state: 'ready' }, c.ready);
        this.set({ state: 'pending' }, c.pods - c.ready);
      },
    });
  }

  issued(kind: 'initial' | 'renewal'): void {
    this.issuedTotal.inc({ kind });
  }

  failed(reason: CertFailureReason): void {
    this.failuresTotal.inc({ reason });
  }
}
