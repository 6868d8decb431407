/**
 * ROOT integration test of the proxy worker pool on real kernel networking: two worker threads,
 * each with its own SO_REUSEPORT listeners inside two enrolled pods' netns (testing.ts: A the
 * client, B the server, real redirection, real HBONE with certificates from a real Ambit CA, the
 * node config indexed in each worker by the agent's buildIndex).
 *
 * Shown: a connection before any certificate reached the workers waits and is reset; once pushed,
 * HBONE works; 50 connections are served by both workers; metrics summed across the workers equal
 * the per-worker sums; a renewal of B's certificate is what every worker of B presents; closing a
 * pod closes it in every worker (its port refuses) and re-opening works; a killed worker is logged,
 * restarted with the state and the pods, and serves again while counters never go down; a pod
 * whose netns cannot be opened fails openPod and leaves nothing behind; a worker that cannot load
 * its view builder fails start() with the reason; drain stops every worker's listeners.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import tls from 'node:tls';
import { connectSocket, inNetns } from '../../sys/index.js';
import { createLogger } from '../../telemetry/log.js';
import type { WorkloadCredentials } from '../hbone/index.js';
import { ProxyWorkerPool } from './pool.js';
import { AGENT_VIEW, APP_PORT, CONFIG, exchange, twoPods, type TwoPods } from './testing.js';

const IS_ROOT = process.getuid?.() === 0;
const NOT_ROOT_REASON = 'NOT RUN: proxy worker netns tests need root (netns, iptables/nft, SO_MARK); CI runs them as root';
if (!IS_ROOT) console.warn(`\n*** src/proxy/workers/pool.netns.test: ${NOT_ROOT_REASON} ***\n`);

const PREFIX = `ambit-wk-${process.pid}`;
const SUBNET = '10.216.0';
const WAIT_MS = 10_000;

function logSink(): { log: ReturnType<typeof createLogger>; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ name: 'workers-test', level: 'info', destination: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } });
  return { log, lines };
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `n` app connections A → B:8080 through the mesh, `parallel` at a time; returns the failures. */
async function many(t: TwoPods, n: number, parallel = 5): Promise<string[]> {
  const failures: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < n) {
        const i = next++;
        const out = await exchange(t.a.ns, t.b.ip, APP_PORT, `msg-${i}`);
        if (out.error || out.text !== `peer=${t.b.ip}\nmsg-${i}|bye`) failures.push(`#${i}: ${out.error ?? JSON.stringify(out.text)}`);
      }
    }),
  );
  return failures;
}

/** A TCP connection from the node netns to `ip:port`: 'connected' or the error code. */
async function probe(t: TwoPods, ip: string, port: number): Promise<string> {
  const sock = inNetns(t.node.ns, () => connectSocket({ family: 4, host: ip, port }));
  try {
    return await new Promise<string>((resolve) => {
      const timer = setTimeout(() => resolve('timeout'), WAIT_MS);
      sock.once('connect', () => (clearTimeout(timer), resolve('connected')));
      sock.once('error', (err: NodeJS.ErrnoException) => (clearTimeout(timer), resolve(err.code ?? err.message)));
    });
  } finally {
    sock.destroy();
  }
}

/** A TLS handshake with B's :15008 from the node netns, as `client`; the fingerprint B presented. */
async function serverFingerprint(t: TwoPods, client: WorkloadCredentials): Promise<string> {
  const socket = inNetns(t.node.ns, () => connectSocket({ family: 4, host: t.b.ip, port: 15008 }));
  const conn = tls.connect({ socket, ca: t.pki.roots, cert: client.certChainPem.join('\n'), key: client.keyPem.reveal(), ALPNProtocols: ['h2'], checkServerIdentity: () => undefined, minVersion: 'TLSv1.3' });
  try {
    await once(conn, 'secureConnect', { signal: AbortSignal.timeout(WAIT_MS) });
    return conn.getPeerX509Certificate()!.fingerprint256;
  } finally {
    conn.destroy();
  }
}

/** Sum of a metric's values (every label set) in Prometheus text. */
function total(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

describe('proxy worker pool across pod netns (root)', { skip: IS_ROOT ? false : NOT_ROOT_REASON }, () => {
  let t: TwoPods;
  let pool: ProxyWorkerPool | undefined;
  const sink = logSink();
  const certs = {} as Record<'client' | 'server' | 'renewed', WorkloadCredentials>;

  before(async () => {
    t = await twoPods(PREFIX, SUBNET);
    certs.client = await t.pki.issue('shop', 'client');
    certs.server = await t.pki.issue('shop', 'server');
    certs.renewed = await t.pki.issue('shop', 'server');
    pool = await ProxyWorkerPool.start({
      workers: 2,
      config: CONFIG,
      view: AGENT_VIEW,
      log: sink.log,
      // stderr: stdout is the test runner's channel
      workerLog: { level: 'warn', fd: 2 },
      mesh: { certificateWaitMs: 1000, connectTimeoutMs: 3000, hboneSessionIdleMs: 300 },
      timeouts: { connectMs: 3000, dnsQueryMs: 3000 },
      restartBackoff: { initialMs: 50 },
    });
    pool.setConfig(t.snapshot);
    await pool.openPod(t.a.path, t.a.ref);
    await pool.openPod(t.b.path, t.b.ref);
  });

  after(async () => {
    try {
      await pool?.close();
    } finally {
      await t?.teardown();
    }
  });

  test('before the workers have a certificate a connection waits, then is reset; once pushed, HBONE works', async () => {
    const started = Date.now();
    const early = await exchange(t.a.ns, t.b.ip, APP_PORT, 'too-early');
    assert.equal(early.text, '');
    assert.equal(early.error, 'ECONNRESET', JSON.stringify(early));
    assert.ok(Date.now() - started >= 900, 'the connection did not wait for the certificate');

    pool!.setCredentials(t.a.ref.uid, certs.client);
    pool!.setCredentials(t.b.ref.uid, certs.server);
    const out = await exchange(t.a.ns, t.b.ip, APP_PORT, 'hello');
    assert.equal(out.error, undefined);
    // The app sees B's own address: the worker connected to it from inside B's netns.
    assert.equal(out.text, `peer=${t.b.ip}\nhello|bye`);
  });

  test('50 connections are served by both workers; the pool sums their stats', async () => {
    const before = await Promise.all([pool!.workerStats(0), pool!.workerStats(1)]);
    assert.deepEqual(await many(t, 50), []);
    const after = await Promise.all([pool!.workerStats(0), pool!.workerStats(1)]);
    const served = after.map((s, i) => s.outbound.opened - before[i]!.outbound.opened);
    assert.equal(served[0]! + served[1]!, 50);
    assert.ok(served[0]! > 0 && served[1]! > 0, `one worker served every connection: ${served.join(' / ')}`);
    const sum = await pool!.stats();
    assert.equal(sum.outbound.opened, after[0]!.outbound.opened + after[1]!.outbound.opened);
    assert.equal(sum.tunnel.opened, after[0]!.tunnel.opened + after[1]!.tunnel.opened);
  });

  test('metrics: the merged counters equal the sum over the workers', async () => {
    await waitFor('every connection counted closed', async () => {
      const s = await pool!.stats();
      return s.outbound.active === 0 && s.inbound.active === 0;
    });
    const perWorker = await pool!.metricsJson(); // no main registry here: one array per worker
    assert.equal(perWorker.length, 2);
    const name = 'istio_tcp_connections_opened_total';
    const each = perWorker.map((metrics) => (metrics.find((m) => m.name === name)?.values ?? []).reduce((n, v) => n + v.value, 0));
    assert.ok(each[0]! > 0 && each[1]! > 0, `a worker counted nothing: ${each.join(' / ')}`);
    const text = await pool!.metrics();
    assert.equal(total(text, name), each[0]! + each[1]!);
    assert.match(text, /istio_tcp_connections_opened_total\{reporter="source".*connection_security_policy="mutual_tls"/);
  });

  test('a renewal of B\'s certificate reaches every worker: each presents the new one', async () => {
    const renewed = new X509Certificate(certs.renewed.certChainPem[0]!).fingerprint256;
    assert.notEqual(renewed, new X509Certificate(certs.server.certChainPem[0]!).fingerprint256);
    pool!.setCredentials(t.b.ref.uid, certs.renewed);
    await new Promise((r) => setTimeout(r, 50)); // the messages are asynchronous
    const before = await Promise.all([pool!.workerStats(0), pool!.workerStats(1)]);
    // 20 handshakes from different source ports: the kernel hashes them over both workers of B.
    for (let i = 0; i < 20; i++) assert.equal(await serverFingerprint(t, certs.client), renewed, `handshake ${i} presented the old certificate`);
    const after = await Promise.all([pool!.workerStats(0), pool!.workerStats(1)]);
    for (const i of [0, 1]) assert.ok(after[i]!.tunnel.opened > before[i]!.tunnel.opened, `worker ${i} took none of the handshakes`);
    const out = await exchange(t.a.ns, t.b.ip, APP_PORT, 'after-renewal');
    assert.equal(out.text, `peer=${t.b.ip}\nafter-renewal|bye`);
  });

  test('closing a pod closes it in every worker; opening it again serves again', async () => {
    await pool!.closePod(t.b.ref.uid);
    assert.deepEqual(pool!.pods(), [t.a.ref.uid]);
    // One listener left in any worker would take every connection: a refusal proves none is.
    for (let i = 0; i < 5; i++) assert.equal(await probe(t, t.b.ip, 15008), 'ECONNREFUSED');
    await pool!.openPod(t.b.path, t.b.ref);
    assert.equal(await probe(t, t.b.ip, 15008), 'connected');
    assert.deepEqual(await many(t, 10), []);
  });

  test('a killed worker is logged, restarted with the state and the pods, and serves again; counters never go down', async () => {
    // No waiting for pooled sessions to idle out: HBONE session sockets are not half-open, so the
    // surviving worker's sessions to the killed one close with it and new tunnels get new ones.
    const before = await pool!.stats();
    const restarted = once(pool!, 'restarted', { signal: AbortSignal.timeout(WAIT_MS) });
    const oldThread = pool!.threadIds[0];
    await pool!.terminateWorker(0);
    const [index, info] = (await restarted) as [number, { pods: number; failed: number }];
    assert.equal(index, 0);
    assert.deepEqual(info, { pods: 2, failed: 0 });
    assert.notEqual(pool!.threadIds[0], oldThread);
    assert.ok(sink.lines.some((l) => l.worker === 0 && String(l.msg).includes('exited unexpectedly')), 'the crash was not logged');
    const afterCrash = await pool!.stats();
    assert.ok(afterCrash.outbound.opened >= before.outbound.opened, `the counters went down: ${afterCrash.outbound.opened} < ${before.outbound.opened}`);

    assert.deepEqual(await many(t, 50), []);
    const w0 = await pool!.workerStats(0);
    assert.ok(w0.outbound.opened > 0, 'the restarted worker served nothing');
    const total = await pool!.stats();
    assert.ok(total.outbound.opened >= before.outbound.opened + 50);
  });

  test('a pod whose netns cannot be opened fails openPod with the reason and leaves nothing behind', async () => {
    const ghost = { namespace: 'shop', name: 'ghost-0', uid: 'uid-ghost', ips: [`${SUBNET}.99`] };
    await assert.rejects(pool!.openPod(`/var/run/netns/${PREFIX}-missing`, ghost), /pod shop\/ghost-0: cannot open its network namespace/);
    assert.deepEqual(pool!.pods().sort(), [t.a.ref.uid, t.b.ref.uid].sort());
  });

  test('drain: every worker stops listening at once; what is open gets the drain time', async () => {
    // Open now: only HBONE session sockets between the workers; the drain closes them (sessions are
    // not half-open, so nothing lingers past it).
    const started = Date.now();
    const r = await pool!.drain(500);
    assert.ok(Date.now() - started < 3000, `the drain took ${Date.now() - started} ms`);
    assert.ok(r.left <= r.open, JSON.stringify(r));
    assert.equal(r.left, 0, `connections left after the drain: ${JSON.stringify(r)}`);
    assert.equal(await probe(t, t.b.ip, 15008), 'ECONNREFUSED');
  });
});

test('a worker that cannot load its view builder fails start() with the reason', async () => {
  const { log } = logSink();
  await assert.rejects(
    ProxyWorkerPool.start({ workers: 2, config: CONFIG, view: { module: AGENT_VIEW.module, export: 'noSuchBuilder' }, log, workerLog: { level: 'silent', fd: 2 } }),
    /cannot start the proxy workers: proxy worker \d cannot load its view builder: .*has no function noSuchBuilder/,
  );
});
