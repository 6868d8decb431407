/**
 * A quick measurement (root, not a test): keep-alive HTTP requests per second through the mesh
 * between two pods of one node (testing.ts), with the proxy in this process's main thread
 * ("inline", what the agent does with --proxy-workers=1), and through a ProxyWorkerPool of 1 and
 * of 2 workers. The client (test/cluster/apps load.js) and the server (echo.js) are separate
 * processes inside the pods, so this process's CPU time is the proxy's alone (both ends: A's
 * outbound and B's HBONE inbound run in the same proxy, as on one node).
 *
 *   npm run bench -- proxy-workers [seconds=5] [concurrency=16] [modes=inline,pool-1,pool-2]
 *
 * Prints one JSON line per mode. On a 2-vCPU machine the client, the server and the proxy share
 * the two CPUs, so the figures show the proxy's share of a saturated machine, not its ceiling.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { createLogger } from '../src/telemetry/log.js';
import type { WorkloadCredentials } from '../src/proxy/hbone/index.js';
import { InPodProxy } from '../src/proxy/inpod.js';
import { MeshProxy } from '../src/proxy/mesh/node.js';
import type { CredentialSource, MeshView } from '../src/proxy/mesh/view.js';
import { ProxyWorkerPool } from '../src/proxy/workers/pool.js';
import { AGENT_VIEW, APP_PORT, CONFIG, twoPods, type TwoPods } from '../src/proxy/workers/testing.js';
import { appsSourceDir } from '../test/cluster/apps/files.js';

const seconds = Number(process.argv[2] ?? 5);
const concurrency = Number(process.argv[3] ?? 16);
const modes = (process.argv[4] ?? 'inline,pool-1,pool-2').split(',');

/** Runs `node <script> args` inside a pod netns; resolves with its stdout. */
function inPod(netnsName: string, script: string, args: string[], env: Record<string, string> = {}): { done: Promise<string>; kill(): void } {
  const child = spawn('ip', ['netns', 'exec', netnsName, process.execPath, script, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  return { done: new Promise((resolve) => child.once('exit', () => resolve(out))), kill: () => child.kill('SIGTERM') };
}

async function run(t: TwoPods, mode: string, client: WorkloadCredentials, server: WorkloadCredentials, prefix: string): Promise<Record<string, unknown>> {
  const log = createLogger({ name: 'measure', level: 'warn' });
  const teardown: (() => Promise<void> | void)[] = [];
  try {
    if (mode === 'inline') {
      const { buildIndex } = (await import(AGENT_VIEW.module)) as { buildIndex: (s: unknown) => MeshView };
      const creds: CredentialSource = { current: (uid) => (uid === t.a.ref.uid ? client : server), get: async (uid) => (uid === t.a.ref.uid ? client : server) };
      const mesh = new MeshProxy({ view: buildIndex(t.snapshot), credentials: creds, log, registry: new Registry() });
      for (const p of [t.a, t.b]) {
        const h = mesh.forPod(p.ref);
        const proxy = await InPodProxy.open(p.path, p.ref, { config: CONFIG, log, dnsUpstream: () => undefined, handlers: h.handlers, dnsAnswer: h.dnsAnswer });
        teardown.push(() => proxy.destroy(), () => h.close(0));
      }
      teardown.push(() => mesh.close(0));
    } else {
      const workers = Number(mode.split('-')[1]);
      const pool = await ProxyWorkerPool.start({ workers, config: CONFIG, view: AGENT_VIEW, log, workerLog: { level: 'warn', fd: 2 } });
      teardown.push(() => pool.close());
      pool.setConfig(t.snapshot);
      pool.setCredentials(t.a.ref.uid, client);
      pool.setCredentials(t.b.ref.uid, server);
      await pool.openPod(t.a.path, t.a.ref);
      await pool.openPod(t.b.path, t.b.ref);
    }
    const cpu = process.cpuUsage();
    const load = inPod(`${prefix}-a`, join(appsSourceDir(), 'load.js'), ['--url', `http://${t.b.ip}:${APP_PORT}/anything`, '--duration', String(seconds), '--concurrency', String(concurrency), '--warmup', '1']);
    const out = await load.done;
    const used = process.cpuUsage(cpu);
    const r = JSON.parse(out.trim().split('\n').at(-1)!) as { achievedRps: number; count: number; errors: number; latencyMs: Record<string, number> };
    // (the CPU time includes the 1 s warm-up; the requests counted exclude it)
    return { mode, concurrency, seconds, rps: r.achievedRps, errors: r.errors, p50: r.latencyMs.p50, p99: r.latencyMs.p99, proxyCpuS: (used.user + used.system) / 1e6 };
  } finally {
    for (const f of teardown.reverse()) await f();
  }
}

async function main(): Promise<void> {
  const prefix = `ambit-wkm-${process.pid}`;
  const t = await twoPods(prefix, '10.218.0', { app: null });
  const echo = inPod(`${prefix}-b`, join(appsSourceDir(), 'echo.js'), [], { PORT: String(APP_PORT), QUIET: '1' });
  try {
    await new Promise((r) => setTimeout(r, 500));
    const client = await t.pki.issue('shop', 'client');
    const server = await t.pki.issue('shop', 'server');
    for (const mode of modes) console.log(JSON.stringify(await run(t, mode, client, server, prefix)));
  } finally {
    echo.kill();
    await echo.done;
    await t.teardown();
  }
}

main().catch((err: Error) => {
  console.error(err);
  process.exit(1);
});
