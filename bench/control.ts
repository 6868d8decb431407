/**
 * `npm run bench -- control [--json]`: ambit-control at the brief's scale. The real program
 * (dist/src/main/control.js) runs in its own process as its own service account, watching the
 * API test server (in this process, HTTPS on loopback) loaded with generateCluster(BENCH_SPEC):
 * 10k pods, 2k services, 500 policies over 100 nodes. 1000 agents (10 per node, each a real
 * agent pod with its own pod-bound token, each its own gRPC/TLS connection) subscribe.
 * Measured:
 *  - time for all 1000 agents to hold their node's snapshot (connect, TokenReview, push), and the
 *    control plane's own compute time for the model and all node snapshots;
 *  - change latency: a Pod's labels patched in the API server → the delta applied at every
 *    interested agent (the 10 agents of its node); uninterested agents must get nothing;
 *  - node snapshot bytes vs the full-mesh snapshot;
 *  - the control plane's RSS and CPU.
 * Every loop is bounded in count and time. `--json` prints the figures as one JSON object last.
 * Knobs: BENCH_AGENTS_PER_NODE (10), BENCH_CHANGES (60), BENCH_VERBOSE=1 (per-change lines).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { ApiServer } from '../test/cluster/apiserver/server.js';
import type { KObject } from '../test/cluster/apiserver/types.js';
import { ControlClient } from '../src/api/client.js';
import type { NodeSnapshot } from '../src/api/types.js';
import { BENCH_SPEC, generateCluster } from '../src/control/snapshot.gen.js';
import { fullSnapshot, snapshotBytes, snapshotFor } from '../src/control/snapshot.js';
import { NODE_SCOPE } from '../src/control/server.js';
import { computeModel } from '../src/state/model.js';
import { daemonsetDir } from '../test/helpers/ambit.js';

const here = dirname(fileURLToPath(import.meta.url));
/** the compiled program beside this compiled benchmark (dist/bench → dist/src) */
const CONTROL_MAIN = join(here, '..', 'src', 'main', 'control.js');
const json = process.argv.includes('--json');
const AGENTS_PER_NODE = Number(process.env.BENCH_AGENTS_PER_NODE ?? 10);
const CHANGES = Number(process.env.BENCH_CHANGES ?? 60);
const CHANGE_BUDGET_MS = 120_000;
const log = (s: string): void => {
  if (!json) console.log(s);
};

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN;
}
const round = (n: number, d = 1): number => Math.round(n * 10 ** d) / 10 ** d;

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

async function until<T>(what: string, ms: number, probe: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** CPU seconds (user+system) and RSS of a process, from /proc. */
function procStats(pid: number): { cpuS: number; rssMb: number; peakRssMb: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { cpuS: ticks / 100, rssMb: round(kb('VmRSS') / 1024), peakRssMb: round(kb('VmHWM') / 1024) };
}

function httpGet(url: string): Promise<{ status: number; text: string }> {
  return fetch(url).then(async (r) => ({ status: r.status, text: await r.text() }), () => ({ status: 0, text: '' }));
}

function patchPod(server: ApiServer, ns: string, name: string, body: unknown): Promise<number> {
  const u = new URL(server.url);
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = https.request(
      { host: u.hostname, port: u.port, method: 'PATCH', path: `/api/v1/namespaces/${ns}/pods/${name}`, ca: server.caPem, headers: { Authorization: `Bearer ${server.adminToken}`, 'Content-Type': 'application/merge-patch+json' } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

/** A copy of an object's metadata without the fields the server assigns. */
function fresh<T extends { metadata: object }>(o: T, ...drop: string[]): T {
  const metadata = { ...o.metadata } as Record<string, unknown>;
  for (const k of ['uid', 'resourceVersion', 'generation', 'creationTimestamp', ...drop]) delete metadata[k];
  return { ...o, metadata };
}

/** Loads the manifests and the synthetic cluster into the API server (in process: fast, same registry path as HTTP). */
function loadCluster(server: ApiServer): { pods: KObject[] } {
  const api = server.registry.clientFor();
  const resourceOf = (o: KObject): string => {
    const [group, version] = (o.apiVersion as string).includes('/') ? (o.apiVersion as string).split('/') : ['', o.apiVersion as string];
    const rt = server.registry.lookupKind(group!, o.kind as string);
    if (!rt) throw new Error(`no resource for ${o.apiVersion} ${o.kind}`);
    return group ? `${group}/${version}/${rt.plural}` : `${version}/${rt.plural}`;
  };
  // daemonset/ as installed, minus the programs themselves: the benchmark runs the control plane in
  // this process and plays the agents (their ServiceAccount and RBAC are needed, the DaemonSet not)
  for (const file of ['00-namespace.yaml', '10-crds.yaml', '20-control.yaml', '30-agent.yaml']) {
    for (const doc of YAML.parseAllDocuments(readFileSync(join(daemonsetDir(), file), 'utf8'))) {
      const o = doc.toJSON() as KObject | null;
      if (o?.kind && o.kind !== 'Deployment' && o.kind !== 'DaemonSet') api.create(resourceOf(o), o);
    }
  }
  const gen = generateCluster(BENCH_SPEC);
  for (const o of gen.namespaces) if (o.metadata.name !== 'ambit-system') api.create('v1/namespaces', fresh(o) as KObject);
  for (const o of gen.nodes) api.create('v1/nodes', fresh(o) as KObject);
  for (const o of gen.serviceAccounts) api.create('v1/serviceaccounts', fresh(o) as KObject);
  const pods: KObject[] = [];
  for (const p of gen.pods) {
    const created = api.create('v1/pods', { ...fresh(p), spec: { ...p.spec, containers: [{ name: 'app', image: 'app' }] } } as unknown as KObject);
    pods.push(api.updateStatus('v1/pods', { ...created, status: p.status } as KObject));
  }
  const uidByName = new Map(pods.map((p) => [`${p.metadata.namespace}/${p.metadata.name}`, p.metadata.uid]));
  for (const s of gen.services) {
    const spec = { ...(s.spec as Record<string, unknown>) };
    delete spec['clusterIP']; // the server allocates (the generator's may collide with the kubernetes Service)
    delete spec['clusterIPs'];
    api.create('v1/services', { ...fresh(s), spec } as unknown as KObject);
  }
  for (const e of gen.endpointSlices) {
    const endpoints = (e.endpoints ?? []).map((ep) => ({ ...ep, targetRef: { ...ep.targetRef, uid: uidByName.get(`${ep.targetRef?.namespace}/${ep.targetRef?.name}`) } }));
    api.create('discovery.k8s.io/v1/endpointslices', { ...fresh(e), endpoints } as unknown as KObject);
  }
  for (const o of gen.authorizationPolicies) api.create('security.ambit.dev/v1/authorizationpolicies', fresh(o) as unknown as KObject);
  for (const o of gen.peerAuthentications) api.create('security.ambit.dev/v1/peerauthentications', fresh(o) as unknown as KObject);
  for (const o of gen.httpRoutes) api.create('gateway.networking.k8s.io/v1/httproutes', fresh(o) as unknown as KObject);
  return { pods };
}

interface Agent {
  node: string;
  client: ControlClient;
  snapshot?: NodeSnapshot;
  firstAt?: number;
  /** pod uid → when a delta touching that workload was applied */
  seen: Map<string, number>;
  updates: number;
  disconnects: string[];
}

async function main(): Promise<void> {
  const started = Date.now();
  const dir = mkdtempSync(join(tmpdir(), 'ambit-bench-control-'));
  let child: ChildProcess | undefined;
  const agents: Agent[] = [];
  const server = await ApiServer.start({ controllers: false });
  try {
    // ---- sizes: the pure computation over the same synthetic cluster
    const t0 = performance.now();
    const model = computeModel(generateCluster(BENCH_SPEC));
    const modelMs = performance.now() - t0;
    const t1 = performance.now();
    const nodeBytes = model.nodes.map((n) => snapshotBytes(snapshotFor(model, n, NODE_SCOPE)));
    const snapshotsMs = performance.now() - t1;
    const fullBytes = snapshotBytes(fullSnapshot(model));
    const meanBytes = nodeBytes.reduce((a, b) => a + b, 0) / nodeBytes.length;
    log(`sizes (the server's node scope): full mesh ${round(fullBytes / 1024)} KiB; node mean ${round(meanBytes / 1024)} KiB (${round((100 * meanBytes) / fullBytes, 2)}%), max ${round(Math.max(...nodeBytes) / 1024)} KiB (${round((100 * Math.max(...nodeBytes)) / fullBytes, 2)}%)`);
    // the strict scope (own services only), what on-demand subscriptions would start from
    const strictBytes = model.nodes.map((n) => snapshotBytes(snapshotFor(model, n)));
    const strictMean = strictBytes.reduce((a, b) => a + b, 0) / strictBytes.length;
    log(`sizes (strict scope, own services only): node mean ${round(strictMean / 1024)} KiB (${round((100 * strictMean) / fullBytes, 2)}%)`);
    log(`pure compute (this process): model ${round(modelMs)} ms, 100 node snapshots ${round(snapshotsMs)} ms`);

    // ---- the cluster and the agents' pods
    const tl = Date.now();
    const { pods } = loadCluster(server);
    const api = server.registry.clientFor();
    const nodes = model.nodes;
    const agentPods: { node: string; name: string; uid: string }[] = [];
    for (const node of nodes) {
      for (let i = 0; i < AGENTS_PER_NODE; i++) {
        const p = api.create('v1/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: `agent-${node}-${i}`, namespace: 'ambit-system' }, spec: { nodeName: node, serviceAccountName: 'ambit-agent', containers: [{ name: 'agent', image: 'ambit' }] } } as KObject);
        agentPods.push({ node, name: p.metadata.name!, uid: p.metadata.uid! });
      }
    }
    log(`loaded ${pods.length} pods (+${agentPods.length} agent pods) into the API server in ${Date.now() - tl} ms`);

    // ---- the control plane, as its own service account, in its own process
    const token = server.issueServiceAccountToken('ambit-system', 'ambit-control', { expirationSeconds: 3600 }).token;
    const kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, server.kubeconfig(token, 'ambit-control'));
    const [grpcPort, metricsPort] = [await freePort(), await freePort()];
    const tc = Date.now();
    child = spawn(process.execPath, [CONTROL_MAIN, '--kubeconfig', kubeconfig, `--grpc-address=127.0.0.1:${grpcPort}`, `--metrics-address=127.0.0.1:${metricsPort}`, '--log-level=warn'], { stdio: ['ignore', 2, 2] }); // its logs to stderr: stdout stays ours (--json)
    const pid = child.pid!;
    await until('the control plane to be ready', 120_000, async () => (child!.exitCode !== null ? Promise.reject(new Error(`ambit-control exited ${child!.exitCode}`)) : (await httpGet(`http://127.0.0.1:${metricsPort}/ready`)).status === 200 || undefined));
    const readyMs = Date.now() - tc;
    const atReady = procStats(pid);
    const metricsText = (await httpGet(`http://127.0.0.1:${metricsPort}/metrics`)).text;
    const firstRecomputeS = Number(/ambit_control_recompute_seconds_sum (\S+)/.exec(metricsText)?.[1] ?? NaN);
    log(`control ready in ${readyMs} ms (list + watch of everything, CA, first compute ${round(firstRecomputeS * 1000)} ms); RSS ${atReady.rssMb} MB, CPU ${round(atReady.cpuS, 2)} s`);

    // ---- 1000 agents subscribe
    const roots = (api.get('v1/configmaps', 'ambit-system', 'ambit-root-cert')?.['data'] as Record<string, string>)['root-cert.pem']!;
    const ts = Date.now();
    for (const p of agentPods) {
      const agentToken = server.issueServiceAccountToken('ambit-system', 'ambit-agent', { boundObjectRef: { kind: 'Pod', name: p.name, uid: p.uid } }).token;
      const client = new ControlClient({ address: `127.0.0.1:${grpcPort}`, rootCertsPem: roots, token: () => agentToken, serverName: 'ambit-control.ambit-system.svc' });
      const agent: Agent = { node: p.node, client, seen: new Map(), updates: 0, disconnects: [] };
      client.subscribe({
        node: p.node,
        onConnection: (e) => {
          if (e.state === 'disconnected') agent.disconnects.push(`${e.error.codeName}: ${e.error.details}`);
        },
        onUpdate: (u) => {
          const now = performance.now();
          agent.snapshot = u.snapshot;
          agent.updates++;
          agent.firstAt ??= Date.now();
          if (u.delta) for (const uid of Object.keys(u.delta.workloads.updated)) agent.seen.set(uid, now);
        },
      });
      agents.push(agent);
    }
    await until('every agent to hold its snapshot', 180_000, () => agents.every((a) => a.snapshot) || undefined);
    const allPushedMs = Math.max(...agents.map((a) => a.firstAt!)) - ts;
    const afterPush = procStats(pid);
    log(`${agents.length} agents hold their node's snapshot ${allPushedMs} ms after subscribing; control RSS ${afterPush.rssMb} MB, CPU for the push ${round(afterPush.cpuS - atReady.cpuS, 2)} s`);

    // ---- change latency: pod label change → delta at the agents of its node
    const latencies: number[] = [];
    let strayUpdates = 0;
    const changeStart = Date.now();
    let done = 0;
    const byNode = new Map<string, Agent[]>();
    for (const a of agents) byNode.set(a.node, [...(byNode.get(a.node) ?? []), a]);
    for (let i = 0; i < CHANGES && Date.now() - changeStart < CHANGE_BUDGET_MS; i++) {
      const pod = pods[(i * 7919) % pods.length]!;
      const node = (pod.spec as { nodeName: string }).nodeName;
      const interested = byNode.get(node)!;
      const others = agents.filter((a) => a.node !== node);
      const before = others.reduce((n, a) => n + a.updates, 0);
      const uid = pod.metadata.uid!;
      for (const a of interested) a.seen.delete(uid);
      const t = performance.now();
      const status = await patchPod(server, pod.metadata.namespace!, pod.metadata.name!, { metadata: { labels: { 'bench-seq': String(i) } } });
      if (status !== 200) throw new Error(`PATCH pod ${pod.metadata.name}: ${status}`);
      await until(`the delta for change ${i} at node ${node}`, 10_000, () => interested.every((a) => a.seen.has(uid)) || undefined).catch((err: Error) => {
        const missing = interested.filter((a) => !a.seen.has(uid));
        throw new Error(`${err.message}: ${missing.length} agents lack it; their updates ${missing.map((a) => a.updates).join(',')}, disconnects ${JSON.stringify(missing.flatMap((a) => a.disconnects))}`);
      });
      for (const a of interested) latencies.push(a.seen.get(uid)! - t);
      if (process.env.BENCH_VERBOSE) {
        const m = (await httpGet(`http://127.0.0.1:${metricsPort}/metrics`)).text.split('\n').filter((l) => /^ambit_control_(status_writes_total|recompute_seconds_count|watch_restarts)/.test(l)).join(' ');
        log(`change ${i} node ${node}: ${round(Math.max(...interested.map((a) => a.seen.get(uid)! - t)))} ms; control ${JSON.stringify(procStats(pid))} ${m}`);
      }
      // give a stray push the time to show up before counting
      await new Promise((r) => setTimeout(r, 20));
      strayUpdates += others.reduce((n, a) => n + a.updates, 0) - before;
      done++;
    }
    const end = procStats(pid);
    const changeCpu = end.cpuS - afterPush.cpuS;
    log(`change latency over ${done} pod changes (${latencies.length} agent deliveries): p50 ${round(pct(latencies, 50))} ms, p99 ${round(pct(latencies, 99))} ms, max ${round(Math.max(...latencies))} ms; updates at uninterested agents: ${strayUpdates}`);
    log(`control RSS ${end.rssMb} MB (peak ${end.peakRssMb} MB); CPU over the changes ${round(changeCpu, 2)} s (${round((1000 * changeCpu) / Math.max(1, done), 1)} ms per change); total run ${Math.round((Date.now() - started) / 1000)} s`);

    const results = {
      scenario: 'control',
      spec: { nodes: BENCH_SPEC.nodes, pods: BENCH_SPEC.pods, services: BENCH_SPEC.services, policies: BENCH_SPEC.policies, agents: agents.length },
      snapshotBytes: { fullMesh: fullBytes, nodeMean: Math.round(meanBytes), nodeMax: Math.max(...nodeBytes), meanPct: round((100 * meanBytes) / fullBytes, 2), maxPct: round((100 * Math.max(...nodeBytes)) / fullBytes, 2), strictMeanPct: round((100 * strictMean) / fullBytes, 2) },
      computeMs: { modelPure: round(modelMs), allNodeSnapshotsPure: round(snapshotsMs), controlFirstRecompute: round(firstRecomputeS * 1000) },
      controlReadyMs: readyMs,
      allAgentsPushedMs: allPushedMs,
      changeLatencyMs: { changes: done, deliveries: latencies.length, p50: round(pct(latencies, 50)), p99: round(pct(latencies, 99)), max: round(Math.max(...latencies)) },
      strayUpdates,
      control: { rssMbReady: atReady.rssMb, rssMbAfterPush: afterPush.rssMb, rssMbEnd: end.rssMb, peakRssMb: end.peakRssMb, cpuSStartup: round(atReady.cpuS, 2), cpuSPush: round(afterPush.cpuS - atReady.cpuS, 2), cpuMsPerChange: round((1000 * changeCpu) / Math.max(1, done), 1) },
    };
    if (json) console.log(JSON.stringify(results));
  } finally {
    for (const a of agents) a.client.close();
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    }
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(`bench control: ${err.stack ?? err.message}`);
    process.exit(1);
  },
);
