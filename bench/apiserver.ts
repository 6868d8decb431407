/**
 * `npm run bench -- apiserver`: the Kubernetes API test server under load. The server runs in its
 * own process (as in the local cluster); this process is the client.
 *  - list latency with 10k pods (JSON, and the Table form `kubectl get pods -A` asks for)
 *  - watch event latency: write → event at 1 and at 100 watchers
 *  - concurrent watches held, each on its own connection, all receiving one change
 * Every loop is bounded in count and time; all traffic is on loopback. `--json` prints the
 * figures as one JSON object on the last line.
 */
import { spawn } from 'node:child_process';
import https from 'node:https';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

const here = dirname(fileURLToPath(import.meta.url));
const json = process.argv.includes('--json');
const PODS = Number(process.env.BENCH_PODS ?? 10_000);
const MAX_WATCHES = Number(process.env.BENCH_WATCHES ?? 10_000);

interface Conn {
  host: string;
  port: number;
  ca: string;
  token: string;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

const agent = new https.Agent({ keepAlive: true, maxSockets: 64 });

function request(c: Conn, method: string, path: string, body?: unknown, accept = 'application/json'): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = https.request({ host: c.host, port: c.port, method, path, ca: c.ca, agent, headers: { Authorization: `Bearer ${c.token}`, Accept: accept, ...(data ? { 'Content-Type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json' } : {}) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
    });
    req.setTimeout(60_000, () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end(data);
  });
}

/** Opens a watch on its own connection; calls onEvent for each line. */
function openWatch(c: Conn, path: string, onEvent: (ev: { type: string; object: { metadata?: { name?: string; annotations?: Record<string, string> } } }) => void): Promise<() => void> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: c.host, port: c.port, path, ca: c.ca, agent: false, headers: { Authorization: `Bearer ${c.token}` } }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`watch ${path}: ${res.statusCode}`));
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (line) onEvent(JSON.parse(line));
        }
      });
      res.on('error', () => {});
      resolve(() => req.destroy());
    });
    req.on('error', reject);
    req.end();
  });
}

async function startServer(): Promise<{ conn: Conn; pid: number; rss: () => number; stop: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-bench-'));
  const kc = join(dir, 'kubeconfig');
  const main = join(here, '..', 'test', 'cluster', 'apiserver', 'main.js');
  const p = spawn(process.execPath, ['--max-old-space-size=8192', main, '--port', '0', '--kubeconfig', kc], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    p.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('KUBECONFIG=')) resolve();
    });
    p.on('exit', (code) => reject(new Error(`apiserver exited ${code}`)));
  });
  const cfg = YAML.parse(readFileSync(kc, 'utf8'));
  const url = new URL(cfg.clusters[0].cluster.server);
  const conn: Conn = { host: url.hostname, port: Number(url.port), ca: Buffer.from(cfg.clusters[0].cluster['certificate-authority-data'], 'base64').toString(), token: cfg.users[0].user.token };
  const rss = () => {
    const status = readFileSync(`/proc/${p.pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) * 1024;
  };
  return { conn, pid: p.pid!, rss, stop: () => (p.kill('SIGTERM'), rmSync(dir, { recursive: true, force: true })) };
}

function podManifest(i: number): unknown {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `pod-${i}`, labels: { app: `app-${i % 50}`, tier: 'bench' } },
    spec: { containers: [{ name: 'c', image: 'demo/echo:1', ports: [{ containerPort: 8080 }], env: [{ name: 'A', value: 'b' }] }] },
  };
}

async function main(): Promise<void> {
  const srv = await startServer();
  const c = srv.conn;
  const results: Record<string, unknown> = { pods: PODS };
  const log = (s: string) => {
    if (!json) console.log(s);
  };
  try {
    // namespaces with their default service account (pods need it)
    const nss = ['bench-a', 'bench-b', 'bench-c', 'bench-d'];
    for (const n of nss) await request(c, 'POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: n } });
    for (const n of nss) {
      const deadline = Date.now() + 10_000;
      while ((await request(c, 'GET', `/api/v1/namespaces/${n}/serviceaccounts/default`)).status !== 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    }

    // create PODS pods, 32 in flight
    const t0 = performance.now();
    let next = 0;
    const worker = async () => {
      while (next < PODS) {
        const i = next++;
        const r = await request(c, 'POST', `/api/v1/namespaces/${nss[i % nss.length]}/pods`, podManifest(i));
        if (r.status !== 201) throw new Error(`create pod-${i}: ${r.status} ${r.text}`);
      }
    };
    await Promise.all(Array.from({ length: 32 }, worker));
    const createSec = (performance.now() - t0) / 1000;
    results.createPodsPerSec = Math.round(PODS / createSec);
    log(`created ${PODS} pods in ${createSec.toFixed(1)} s (${results.createPodsPerSec}/s, 32 in flight)`);

    // list latency
    const listOnce = async (accept: string, path = '/api/v1/pods') => {
      const s = performance.now();
      const r = await request(c, 'GET', path, undefined, accept);
      if (r.status !== 200) throw new Error(`list: ${r.status}`);
      return { ms: performance.now() - s, bytes: r.text.length };
    };
    for (const [label, accept, path] of [
      ['json', 'application/json', '/api/v1/pods'],
      ['table', 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json', '/api/v1/pods'],
      ['json-page-500', 'application/json', '/api/v1/pods?limit=500'],
      ['json-label-selector', 'application/json', '/api/v1/pods?labelSelector=app%3Dapp-7'],
    ] as const) {
      const ms: number[] = [];
      let bytes = 0;
      const runs = label.startsWith('json-') ? 50 : 15;
      for (let i = 0; i < runs; i++) {
        const r = await listOnce(accept, path);
        ms.push(r.ms);
        bytes = r.bytes;
      }
      results[`list_${label}`] = { p50Ms: +pct(ms, 50).toFixed(1), p99Ms: +pct(ms, 99).toFixed(1), bytes, runs };
      log(`list ${label.padEnd(20)} p50 ${pct(ms, 50).toFixed(1)} ms  p99 ${pct(ms, 99).toFixed(1)} ms  (${(bytes / 1e6).toFixed(1)} MB, ${runs} runs)`);
    }

    // watch event latency: N watchers on pods of bench-a; patch an annotation carrying the send time
    for (const watchers of [1, 100]) {
      const lat: number[] = [];
      const sent = new Map<string, number>();
      const stops: (() => void)[] = [];
      const rv = JSON.parse((await request(c, 'GET', '/api/v1/namespaces/bench-a/pods?limit=1')).text).metadata.resourceVersion;
      for (let w = 0; w < watchers; w++) {
        stops.push(
          await openWatch(c, `/api/v1/namespaces/bench-a/pods?watch=1&resourceVersion=${rv}&fieldSelector=metadata.name%3Dpod-0`, (ev) => {
            const tag = ev.object.metadata?.annotations?.['bench/seq'];
            const t = tag ? sent.get(tag) : undefined;
            if (t !== undefined) lat.push(performance.now() - t);
          }),
        );
      }
      const rounds = 100;
      for (let i = 0; i < rounds; i++) {
        const tag = `${watchers}-${i}`;
        sent.set(tag, performance.now());
        await request(c, 'PATCH', '/api/v1/namespaces/bench-a/pods/pod-0', { metadata: { annotations: { 'bench/seq': tag } } }).then((r) => {
          if (r.status !== 200) throw new Error(`patch: ${r.status} ${r.text}`);
        });
      }
      const deadline = Date.now() + 10_000;
      while (lat.length < rounds * watchers && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      stops.forEach((s) => s());
      results[`watchLatency_${watchers}`] = { p50Ms: +pct(lat, 50).toFixed(2), p99Ms: +pct(lat, 99).toFixed(2), events: lat.length, expected: rounds * watchers };
      log(`watch event latency, ${String(watchers).padStart(3)} watchers: p50 ${pct(lat, 50).toFixed(2)} ms  p99 ${pct(lat, 99).toFixed(2)} ms  (${lat.length}/${rounds * watchers} events)`);
    }

    // concurrent watches: add watches in steps until MAX_WATCHES (or a failure); each step checks
    // that one change reaches every watcher within 10 s
    const stops: (() => void)[] = [];
    let received = 0;
    let held = 0;
    let fanoutMs = 0;
    const rssBefore = srv.rss();
    const startWatches = performance.now();
    try {
      for (let target = 1000; target <= MAX_WATCHES && performance.now() - startWatches < 120_000; target += 1000) {
        while (stops.length < target) {
          const batch = Math.min(200, target - stops.length);
          const opened = await Promise.all(Array.from({ length: batch }, () => openWatch(c, '/api/v1/namespaces/bench-b/configmaps?watch=1&resourceVersion=0', (ev) => ev.type === 'ADDED' && ev.object.metadata?.name?.startsWith('fan-') && received++)));
          stops.push(...opened);
        }
        received = 0;
        const s = performance.now();
        await request(c, 'POST', '/api/v1/namespaces/bench-b/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `fan-${target}` } });
        const deadline = Date.now() + 10_000;
        while (received < target && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
        if (received < target) break;
        held = target;
        fanoutMs = performance.now() - s;
        log(`  ${target} watches held; one change reached all in ${fanoutMs.toFixed(0)} ms`);
      }
    } catch (e) {
      log(`  stopped adding watches: ${(e as Error).message}`);
    }
    const rssAfter = srv.rss();
    stops.forEach((s) => s());
    results.concurrentWatches = { held, fanoutMsAtMax: Math.round(fanoutMs), serverRssMbBefore: Math.round(rssBefore / 1e6), serverRssMbAtMax: Math.round(rssAfter / 1e6), limit: MAX_WATCHES };
    log(`concurrent watches held: ${held} (limit of this run ${MAX_WATCHES}); server RSS ${Math.round(rssBefore / 1e6)} → ${Math.round(rssAfter / 1e6)} MB`);
  } finally {
    agent.destroy();
    srv.stop();
  }
  if (json) console.log(JSON.stringify(results));
}

await main();
