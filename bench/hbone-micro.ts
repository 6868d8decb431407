/**
 * HBONE micro-benchmark on loopback: what the tunnel costs on one core, without the cluster.
 *
 *   load generator ──TCP──► [proxy process] outbound listener → HboneClient ══ TLS 1.3 + h2 ══►
 *                            HboneServer → TCP ──► app (echo / 1 MiB source)
 *   load generator ──TCP──► app                                   (the "direct" baseline)
 *
 * The load generator and the applications run in this process; both proxy halves run in one
 * child process (so its CPU is the proxy's cost, on one core, as one worker would have it).
 * Scenarios, each on both paths: keep-alive small requests (req/s, p50/p99), a new connection per
 * request (conn/s — each is a new CONNECT stream on the pooled session), 1 MiB responses (MB/s).
 * When haproxy is installed (`which haproxy`) the same run also measures haproxy as the same
 * two-hop mTLS chain (TCP → haproxy → TLS 1.3 with client certificate, same ECDSA P-256 certs from
 * the same CA → haproxy → app; one TLS connection per TCP connection, one thread); otherwise it is
 * skipped with a note. Every loop is bounded by count and time.
 *
 * Usage: node dist/bench/hbone-micro.js [--json] [--cpu-prof]
 * Knobs: BENCH_SECONDS (4 per scenario and path), BENCH_CONC (16), BENCH_STREAM_WINDOW,
 * BENCH_CONN_WINDOW, BENCH_FRAME (h2 tuning, bytes).
 */
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HboneClient } from '../src/proxy/hbone/client.js';
import { HboneServer } from '../src/proxy/hbone/server.js';
import { createTestPki } from '../src/proxy/hbone/testing.js';
import type { H2Tuning } from '../src/proxy/hbone/settings.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const CONC = Number(process.env.BENCH_CONC ?? 16);
const MAX_OPS = 5_000_000;
const MSG = Buffer.alloc(64, 'q');
const MiB = 1 << 20;
const json = process.argv.includes('--json');
const log = (s: string): void => {
  if (!json) console.log(s);
};

// ---------------------------------------------------------------------------------------------
// The proxy child: outbound listeners → HboneClient → HboneServer → app

interface ProxyReady {
  echoPort: number;
  sourcePort: number;
}

function tuningFromEnv(): Partial<H2Tuning> {
  const t: Partial<H2Tuning> = {};
  if (process.env.BENCH_STREAM_WINDOW) t.streamWindow = Number(process.env.BENCH_STREAM_WINDOW);
  if (process.env.BENCH_CONN_WINDOW) t.connectionWindow = Number(process.env.BENCH_CONN_WINDOW);
  if (process.env.BENCH_FRAME) t.maxFrameSize = Number(process.env.BENCH_FRAME);
  return t;
}

async function proxyChild(): Promise<void> {
  const appEcho = Number(process.env.APP_ECHO);
  const appSource = Number(process.env.APP_SOURCE);
  const pki = await createTestPki();
  const src = await pki.issue('bench', 'client');
  const dst = await pki.issue('bench', 'server');
  const tuning = tuningFromEnv();
  const server = new HboneServer({
    credentials: () => dst,
    trustBundle: () => pki.roots,
    tuning,
    onTunnel: (t) =>
      new Promise((resolve) => {
        const s = net.connect({ host: t.host, port: t.port, allowHalfOpen: true, noDelay: true });
        s.once('connect', () => resolve(s));
        s.once('error', (err) => resolve({ refuse: 502, reason: err.message }));
      }),
  });
  const { port: hbonePort } = await server.listen({ port: 0, host: '127.0.0.1' });
  const outcomes: Record<string, number> = {};
  const client = new HboneClient({
    trustBundle: () => pki.roots,
    tuning,
    onEvent: (e) => {
      if (e.type !== 'close') return;
      const key = e.tunnel.error ? `${e.tunnel.responseFlags}: ${e.tunnel.error.slice(0, 120)}` : e.tunnel.responseFlags;
      outcomes[key] = (outcomes[key] ?? 0) + 1;
    },
  });
  const outbound = async (appPort: number): Promise<number> => {
    const lst = net.createServer({ allowHalfOpen: true, noDelay: true }, (sock) => {
      sock.on('error', () => {});
      void client.tunnel({ source: src, expectedPeer: dst.identity, address: '127.0.0.1', port: hbonePort, authority: `127.0.0.1:${appPort}` }, sock);
    });
    await new Promise<void>((r) => lst.listen(0, '127.0.0.1', () => r()));
    return (lst.address() as net.AddressInfo).port;
  };
  const ready: ProxyReady = { echoPort: await outbound(appEcho), sourcePort: await outbound(appSource) };
  process.on('message', (m: { type: string }) => {
    if (m.type === 'cpu') process.send!({ type: 'cpu', usage: process.cpuUsage(), rss: process.memoryUsage().rss, outcomes, sessionsOpened: client.stats().sessionsOpened });
    if (m.type === 'stop') process.exit(0); // exit (not kill) so --cpu-prof writes its profile
  });
  process.on('disconnect', () => process.exit(0)); // the parent is gone: never linger
  process.send!({ type: 'ready', ...ready });
}

// ---------------------------------------------------------------------------------------------
// Applications and load

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return (server.address() as net.AddressInfo).port;
}

/** echo, and a server-first source that sends 1 MiB and closes */
async function startApps(): Promise<{ echo: number; source: number; close(): void }> {
  const echo = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  const block = Buffer.alloc(MiB, 'x');
  const source = net.createServer({ noDelay: true }, (s) => {
    s.on('error', () => {});
    s.end(block);
  });
  return {
    echo: await listen(echo),
    source: await listen(source),
    close() {
      echo.close();
      source.close();
    },
  };
}

const OP_TIMEOUT_MS = 5000;

/** Bounds one operation: a stuck connection fails (counted as an error) instead of stalling the run. */
function bounded<T>(p: Promise<T>, onTimeout: () => void): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => {
        onTimeout();
        reject(new Error(`operation took over ${OP_TIMEOUT_MS} ms`));
      }, OP_TIMEOUT_MS);
    }),
  ]);
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', noDelay: true });
    const timer = setTimeout(() => s.destroy(new Error('connect timed out')), OP_TIMEOUT_MS);
    s.once('connect', () => {
      clearTimeout(timer);
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Writes `msg` and resolves when as many bytes came back. */
function roundTrip(s: net.Socket, msg: Buffer): Promise<void> {
  return bounded(new Promise((resolve, reject) => {
    let got = 0;
    const onData = (c: Buffer): void => {
      got += c.length;
      if (got >= msg.length) {
        s.off('data', onData);
        s.off('error', reject);
        resolve();
      }
    };
    s.on('data', onData);
    s.once('error', reject);
    s.write(msg);
  }), () => s.destroy());
}

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}
const round = (n: number, d = 1): number => Math.round(n * 10 ** d) / 10 ** d;

interface Result {
  ops: number;
  seconds: number;
  perSecond: number;
  p50ms?: number;
  p99ms?: number;
  mbPerSecond?: number;
  errors: number;
}

/** Runs `worker` in `conc` parallel loops until time is up or MAX_OPS are done. */
async function drive(conc: number, worker: (deadline: number, count: (latencyMs?: number, bytes?: number) => void) => Promise<void>): Promise<Result & { lat: number[]; bytes: number }> {
  const started = performance.now();
  const deadline = started + SECONDS * 1000;
  let ops = 0;
  let bytes = 0;
  let errors = 0;
  const lat: number[] = [];
  const count = (latencyMs?: number, b?: number): void => {
    ops++;
    if (latencyMs !== undefined && lat.length < 200_000) lat.push(latencyMs);
    if (b) bytes += b;
  };
  await Promise.all(
    Array.from({ length: conc }, async () => {
      while (performance.now() < deadline && ops < MAX_OPS) {
        try {
          await worker(deadline, count);
        } catch {
          errors++;
          if (errors > 1000) return;
        }
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return { ops, seconds, perSecond: ops / seconds, errors, lat, bytes };
}

async function keepAlive(port: number): Promise<Result> {
  const r = await drive(CONC, async (deadline, count) => {
    const s = await connect(port);
    try {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        await roundTrip(s, MSG);
        count(performance.now() - t0);
      }
    } finally {
      s.destroy();
    }
  });
  return { ops: r.ops, seconds: r.seconds, perSecond: r.perSecond, p50ms: pct(r.lat, 50), p99ms: pct(r.lat, 99), errors: r.errors };
}

async function newConnection(port: number): Promise<Result> {
  const r = await drive(CONC, async (_deadline, count) => {
    const t0 = performance.now();
    const s = await connect(port);
    await roundTrip(s, MSG);
    s.end();
    await bounded(
      new Promise<void>((resolve) => {
        s.resume();
        s.once('close', () => resolve());
      }),
      () => s.destroy(),
    );
    count(performance.now() - t0);
  });
  return { ops: r.ops, seconds: r.seconds, perSecond: r.perSecond, p50ms: pct(r.lat, 50), p99ms: pct(r.lat, 99), errors: r.errors };
}

async function download(port: number): Promise<Result> {
  const r = await drive(4, async (_deadline, count) => {
    const s = await connect(port);
    let got = 0;
    await bounded(
      new Promise<void>((resolve, reject) => {
        s.on('data', (c: Buffer) => (got += c.length));
        s.once('end', () => resolve());
        s.once('error', reject);
      }),
      () => s.destroy(),
    );
    s.destroy();
    if (got !== MiB) throw new Error(`short read ${got}`);
    count(undefined, got);
  });
  return { ops: r.ops, seconds: r.seconds, perSecond: r.perSecond, mbPerSecond: r.bytes / MiB / r.seconds, errors: r.errors };
}

// ---------------------------------------------------------------------------------------------
// Profile summary

function topSelfTime(dir: string, n: number): string[] {
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) return ['(no profile written)'];
  const prof = JSON.parse(readFileSync(join(dir, file), 'utf8')) as {
    nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(prof.nodes.map((x) => [x.id, x]));
  const self = new Map<string, number>();
  let total = 0;
  prof.samples.forEach((id, i) => {
    const node = byId.get(id)!;
    const { functionName, url, lineNumber } = node.callFrame;
    const key = `${functionName || '(anonymous)'} ${url.split('/').slice(-2).join('/')}:${lineNumber + 1}`;
    const dt = prof.timeDeltas[i] ?? 0;
    total += dt;
    self.set(key, (self.get(key) ?? 0) + dt);
  });
  return [...self]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, v]) => `${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`);
}

// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// haproxy as the same two-hop mTLS chain

interface Haproxy {
  echoPort: number;
  sourcePort: number;
  cpuSeconds(): number;
  stop(): void;
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  const port = await listen(srv);
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

async function startHaproxy(bin: string, apps: { echo: number; source: number }): Promise<Haproxy> {
  const pki = await createTestPki();
  const src = await pki.issue('bench', 'client');
  const dst = await pki.issue('bench', 'server');
  const dir = mkdtempSync(join(tmpdir(), 'ambit-hbone-haproxy-'));
  const pem = (blocks: string[]): string => blocks.map((b) => `${b.trim()}\n`).join('');
  writeFileSync(join(dir, 'client.pem'), pem([...src.certChainPem, src.keyPem.reveal()]), { mode: 0o600 });
  writeFileSync(join(dir, 'server.pem'), pem([...dst.certChainPem, dst.keyPem.reveal()]), { mode: 0o600 });
  writeFileSync(join(dir, 'roots.pem'), pem(pki.roots));
  const [outEcho, outSource, inEcho, inSource] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const tls = `ssl crt ${dir}/server.pem ca-file ${dir}/roots.pem verify required ssl-min-ver TLSv1.3 alpn h2`;
  const up = `ssl crt ${dir}/client.pem ca-file ${dir}/roots.pem verify required ssl-min-ver TLSv1.3 verifyhost bench-unused`;
  const cfg = [
    'global',
    '  nbthread 1',
    '  maxconn 4000',
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    '  timeout client 60s',
    '  timeout server 60s',
    `frontend out_echo\n  bind 127.0.0.1:${outEcho}\n  default_backend hop_echo`,
    `backend hop_echo\n  server s 127.0.0.1:${inEcho} ${up.replace(' verifyhost bench-unused', '')}`,
    `frontend in_echo\n  bind 127.0.0.1:${inEcho} ${tls}\n  default_backend app_echo`,
    `backend app_echo\n  server s 127.0.0.1:${apps.echo}`,
    `frontend out_source\n  bind 127.0.0.1:${outSource}\n  default_backend hop_source`,
    `backend hop_source\n  server s 127.0.0.1:${inSource} ${up.replace(' verifyhost bench-unused', '')}`,
    `frontend in_source\n  bind 127.0.0.1:${inSource} ${tls}\n  default_backend app_source`,
    `backend app_source\n  server s 127.0.0.1:${apps.source}`,
  ].join('\n');
  writeFileSync(join(dir, 'haproxy.cfg'), `${cfg}\n`);
  const proc = spawn(bin, ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  // ready when the outbound port accepts
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      (await connect(outEcho)).destroy();
      break;
    } catch {
      if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`haproxy did not start: ${stderr.slice(0, 500)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const clk = 100; // USER_HZ
  return {
    echoPort: outEcho,
    sourcePort: outSource,
    cpuSeconds() {
      const stat = readFileSync(`/proc/${proc.pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(fields[11]) + Number(fields[12])) / clk;
    },
    stop() {
      proc.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function main(): Promise<void> {
  const haproxy = (() => {
    try {
      return execFileSync('which', ['haproxy'], { encoding: 'utf8' }).trim();
    } catch {
      return '';
    }
  })();
  const apps = await startApps();
  const profile = process.argv.includes('--cpu-prof');
  const profDir = profile ? mkdtempSync(join(tmpdir(), 'ambit-hbone-prof-')) : '';
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), ['--proxy-child'], {
    env: { ...process.env, APP_ECHO: String(apps.echo), APP_SOURCE: String(apps.source) },
    execArgv: profile ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [],
  });
  const ask = <T>(type: string): Promise<T> =>
    new Promise((resolve) => {
      const on = (m: { type: string }): void => {
        if (m.type === type) {
          child.off('message', on);
          resolve(m as T);
        }
      };
      child.on('message', on);
      if (type !== 'ready') child.send({ type });
    });
  const ready = await Promise.race([
    ask<ProxyReady>('ready'),
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error('proxy child did not start in 20 s')), 20_000)),
  ]);
  const cpu = async (): Promise<number> => {
    const m = await ask<{ usage: NodeJS.CpuUsage }>('cpu');
    return (m.usage.user + m.usage.system) / 1e6;
  };

  const hap = haproxy ? await startHaproxy(haproxy, apps) : undefined;
  const results: Record<string, Record<string, Result & { proxyCpuSeconds?: number }>> = {};
  const scenarios: [string, (port: number) => Promise<Result>, 'echo' | 'source'][] = [
    ['keepalive', keepAlive, 'echo'],
    ['newconn', newConnection, 'echo'],
    ['download1MiB', download, 'source'],
  ];
  for (const [name, run, app] of scenarios) {
    results[name] = {};
    results[name].direct = await run(app === 'echo' ? apps.echo : apps.source);
    const before = await cpu();
    const viaHbone = await run(app === 'echo' ? ready.echoPort : ready.sourcePort);
    results[name].hbone = { ...viaHbone, proxyCpuSeconds: (await cpu()) - before };
    if (hap) {
      const hb = hap.cpuSeconds();
      const viaHaproxy = await run(app === 'echo' ? hap.echoPort : hap.sourcePort);
      results[name].haproxy = { ...viaHaproxy, proxyCpuSeconds: hap.cpuSeconds() - hb };
    }
    const d = results[name].direct!;
    const h = results[name].hbone!;
    const x = results[name].haproxy;
    const fmt = (r: Result): string =>
      r.mbPerSecond !== undefined ? `${round(r.mbPerSecond)} MiB/s` : `${Math.round(r.perSecond)}/s p50 ${round(r.p50ms!, 3)} ms p99 ${round(r.p99ms!, 3)} ms`;
    const rate = (r: Result): number => r.mbPerSecond ?? r.perSecond;
    const cpuPerOp = (r: Result & { proxyCpuSeconds?: number }): number => round((1000 * r.proxyCpuSeconds!) / Math.max(1, r.ops), 3);
    log(`${name}:`);
    log(`  direct  ${fmt(d)}`);
    log(`  hbone   ${fmt(h)}  = ${round((100 * rate(h)) / rate(d))}% of direct; proxy CPU ${cpuPerOp(h)} ms/op; errors ${h.errors}`);
    if (x) log(`  haproxy ${fmt(x)}  = ${round((100 * rate(x)) / rate(d))}% of direct; proxy CPU ${cpuPerOp(x)} ms/op; errors ${x.errors}; hbone/haproxy ${round(rate(h) / rate(x), 2)}x`);
  }
  if (!haproxy) log('haproxy: not installed (`which haproxy` found nothing) — comparison skipped; not installing it here');
  hap?.stop();

  const rssMsg = await ask<{ rss: number; outcomes: Record<string, number>; sessionsOpened: number }>('cpu');
  log(`proxy tunnels by outcome: ${JSON.stringify(rssMsg.outcomes)}; HBONE sessions opened: ${rssMsg.sessionsOpened}`);
  child.send({ type: 'stop' });
  await new Promise<void>((r) => child.once('exit', () => r()));
  apps.close();
  const top = profile ? topSelfTime(profDir, 25) : [];
  if (profile) log(`\nproxy child CPU profile (self time, top 25; the file is in ${profDir}):\n${top.join('\n')}`);
  const out = { seconds: SECONDS, concurrency: CONC, tuning: tuningFromEnv(), proxyRssMiB: round(rssMsg.rss / MiB), tunnelOutcomes: rssMsg.outcomes, sessionsOpened: rssMsg.sessionsOpened, results, haproxy: haproxy || null, profileTop: top };
  if (json) console.log(JSON.stringify(out));
  else log(`proxy RSS ${out.proxyRssMiB} MiB`);
}

if (process.argv.includes('--proxy-child')) {
  void proxyChild();
} else {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}

