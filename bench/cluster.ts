/**
 * `npm run bench -- cluster [--cold] [--json]`: the local cluster's own costs, as root.
 *  - `up` of a 2-node cluster with a warm image cache (3 runs), and with `--cold` once more with an
 *    empty image cache (debootstrap, image builds, node root template: minutes);
 *  - pod create → Running, one pod at a time (30 pods spread over both nodes);
 *  - how many pods one node holds: pods pinned to node-1 in batches of 10 up to 120, stopping at the
 *    first batch that does not all run (the kubelet's limit is the Kubernetes default, 110).
 * Every loop is bounded in count and time. `--json` prints one JSON object on the last line.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LocalCluster } from '../test/cluster/cluster.js';
import { DEMO_IMAGES } from '../test/cluster/apps/images.js';
import type { KObject } from '../test/cluster/apiserver/types.js';
import { listProcesses } from '../test/cluster/runtime/proc.js';

const json = process.argv.includes('--json');
const cold = process.argv.includes('--cold');
const log = (s: string) => {
  if (!json) console.log(s);
};
const here = dirname(fileURLToPath(import.meta.url));

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

function podManifest(name: string, node?: string): KObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'bench', labels: { app: 'bench' } },
    spec: { ...(node ? { nodeName: node } : {}), terminationGracePeriodSeconds: 1, automountServiceAccountToken: false, containers: [{ name: 'idle', image: DEMO_IMAGES.tools }] },
  } as KObject;
}

/** Resolves when `pred` holds for the pods, watching the API (bounded by `timeoutMs`). */
function waitPods(cluster: LocalCluster, pred: (pods: KObject[]) => boolean, timeoutMs: number): Promise<boolean> {
  const api = cluster.server.registry.clientFor();
  return new Promise((resolve) => {
    const check = () => pred(api.list('v1/pods', { namespace: 'bench' }).items);
    if (check()) return resolve(true);
    const timer = setTimeout(() => (stop(), resolve(false)), timeoutMs);
    const stop = api.watch('v1/pods', () => {
      if (check()) {
        clearTimeout(timer);
        stop();
        resolve(true);
      }
    });
  });
}

const running = (p: KObject) => (p.status as { phase?: string } | undefined)?.phase === 'Running';

function rssOf(pids: number[]): number {
  let total = 0;
  for (const pid of pids) {
    try {
      total += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

async function coldUp(): Promise<number> {
  // short: containerd's socket paths live under it (104-byte limit)
  const cache = mkdtempSync('/tmp/acc-');
  const main = join(here, '..', 'test', 'cluster', 'main.js');
  const run = (args: string[]) =>
    new Promise<number>((resolve) => {
      const p = spawn(process.execPath, [main, ...args, '--name', 'benchcold'], { env: { ...process.env, AMBIT_IMAGE_CACHE: cache }, stdio: ['ignore', 'ignore', 'inherit'] });
      const t = setTimeout(() => p.kill('SIGKILL'), 20 * 60_000);
      p.on('close', (code) => (clearTimeout(t), resolve(code ?? -1)));
    });
  try {
    const t0 = Date.now();
    const code = await run(['up', '--nodes', '2']);
    const ms = Date.now() - t0;
    await run(['down']);
    if (code !== 0) throw new Error(`cold up failed (${code})`);
    return ms;
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench cluster needs root (network namespaces, containerd)');
  const results: Record<string, unknown> = {};

  // up, warm: the image cache and node root template exist after the first run
  const ups: number[] = [];
  const downs: number[] = [];
  for (let i = 0; i < 3; i++) {
    const c = await LocalCluster.up({ name: 'bench', nodes: 2 });
    ups.push(c.timings.total);
    const t = Date.now();
    await c.down();
    downs.push(Date.now() - t);
  }
  results.upWarmMs = { runs: ups, median: pct(ups, 50) };
  results.downMs = { runs: downs, median: pct(downs, 50) };
  log(`up (2 nodes, warm cache): ${ups.join(', ')} ms; down: ${downs.join(', ')} ms`);

  const cluster = await LocalCluster.up({ name: 'bench', nodes: 2 });
  try {
    const api = cluster.server.registry.clientFor();
    api.create('v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'bench' } } as KObject);
    const deadline = Date.now() + 10_000;
    while (!api.get('v1/serviceaccounts', 'bench', 'default') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));

    // pod create → Running, one at a time, scheduled by the scheduler
    const lat: number[] = [];
    for (let i = 0; i < 30; i++) {
      const name = `lat-${i}`;
      const t = performance.now();
      api.create('v1/pods', podManifest(name));
      const ok = await waitPods(cluster, (pods) => pods.some((p) => p.metadata.name === name && running(p)), 30_000);
      if (!ok) throw new Error(`${name} did not run within 30 s`);
      lat.push(performance.now() - t);
    }
    results.podRunningMs = { p50: +pct(lat, 50).toFixed(0), p90: +pct(lat, 90).toFixed(0), max: +Math.max(...lat).toFixed(0), pods: lat.length };
    log(`pod create → Running: p50 ${pct(lat, 50).toFixed(0)} ms, p90 ${pct(lat, 90).toFixed(0)} ms, max ${Math.max(...lat).toFixed(0)} ms (30 pods, one at a time)`);
    for (let i = 0; i < 30; i++) api.delete('v1/pods', 'bench', `lat-${i}`, { gracePeriodSeconds: 0 });
    await waitPods(cluster, (pods) => pods.length === 0, 60_000);

    // pods per node: batches of 10 pinned to node-1
    let held = 0;
    let note = '';
    const t0 = Date.now();
    for (let n = 10; n <= 120 && Date.now() - t0 < 300_000; n += 10) {
      for (let i = n - 10; i < n; i++) api.create('v1/pods', podManifest(`dense-${i}`, 'node-1'));
      const ok = await waitPods(cluster, (pods) => pods.filter(running).length >= n, 60_000);
      const runningNow = api.list('v1/pods', { namespace: 'bench' }).items.filter(running).length;
      if (!ok) {
        const stuck = api.list('v1/pods', { namespace: 'bench' }).items.find((p) => !running(p));
        note = `batch to ${n}: ${runningNow} running; e.g. ${stuck?.metadata.name}: ${JSON.stringify((stuck?.status as Record<string, unknown>)?.reason ?? (stuck?.status as Record<string, unknown>)?.phase)} ${String((stuck?.status as Record<string, unknown>)?.message ?? '')}`;
        held = runningNow;
        break;
      }
      held = n;
      log(`  node-1 runs ${n} pods (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    }
    const procs = await listProcesses();
    const shims = procs.filter((p) => /containerd-shim/.test(p.argv?.join(' ') ?? '')).map((p) => p.pid);
    results.podsPerNode = { held, limitTried: 120, note, shimRssMb: Math.round(rssOf(shims) / 1e6), benchProcessRssMb: Math.round(process.memoryUsage().rss / 1e6), seconds: +((Date.now() - t0) / 1000).toFixed(1) };
    log(`pods on one node: ${held}${note ? ` (${note})` : ''}; shims RSS ${Math.round(rssOf(shims) / 1e6)} MB; cluster process RSS ${Math.round(process.memoryUsage().rss / 1e6)} MB`);
  } finally {
    await cluster.down();
  }

  if (cold) {
    const ms = await coldUp();
    results.upColdMs = ms;
    log(`up (2 nodes, empty image cache): ${(ms / 1000).toFixed(1)} s`);
  }
  if (json) console.log(JSON.stringify(results));
}

await main();
