/**
 * `npm run bench -- l4 [--json] [--quick] [--threads N] [--profile DIR]`: the cost of the L4 path between two nodes, as root, in
 * ONE run on a fresh 2-node local cluster. The same client pod (`load`, pinned to node-1) drives the
 * same server pod (echo-server, pinned to node-2) over three paths:
 *  - none:    the namespace is not enrolled; the client connects to the server's pod IP directly;
 *  - haproxy: the reference two-hop mTLS chain, run by this benchmark: one haproxy in node-1's
 *             netns (plaintext in from the client, TLS 1.3 with a client certificate out) and one in
 *             node-2's netns (TLS 1.3, client certificate verified against the CA, plaintext to the
 *             server pod); ECDSA P-256 certificates from src/identity, mode tcp, nbthread = the
 *             agents' proxy threads (`--threads`, default 1: like against like);
 *  - ambit:   the namespace is labelled and both pods are enrolled (per the agents' /debug/state);
 *             the client connects to the server's pod IP and the path is whatever the agents do
 *             with it (the benchmark assumes nothing about it; it reports what it saw on the
 *             server pod: connections on :15008 mean HBONE, none mean plaintext forwarding).
 * For each path: keep-alive small requests (req/s, p50/p90/p99), a new connection per request
 * (conn/s), 1 MiB responses (MB/s), a fixed 1000 RPS run (p50/p99, and added over no mesh), proxy
 * CPU seconds (utime+stime from /proc of the proxies' host PIDs, both nodes) per 1000 requests, and
 * the proxies' RSS after the runs. Then the issue's targets as ratios Ambit / haproxy, pass or fail.
 * Every loop is bounded in count and time; the cluster goes down and the temp dir is removed in
 * `finally`, and only the haproxy PIDs this benchmark started are killed.
 * `--json` prints one JSON object on the last line; `--quick` shortens every run (a smoke test);
 * `--profile DIR` enables the agents' /debug/cpu-profile and writes a V8 CPU profile per agent
 * thread and Ambit run to DIR (profiling slows the agents: such a run's figures are not results).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CertificateAuthority, createKeyAndCsr, generateRootCa, inspectCsr } from '../src/identity/ca.js';
import { workloadSpiffeId } from '../src/identity/spiffe.js';
import { LocalCluster, type ClusterNode } from '../test/cluster/cluster.js';
import { DEMO_IMAGES, ensureAmbitImage } from '../test/cluster/apps/images.js';
import { run } from '../test/cluster/runtime/proc.js';
import { Kubectl, waitUntil } from '../test/helpers/kubectl.js';
import { daemonsetDir } from '../test/helpers/ambit.js';
import { summarizeProfile, type CpuProfile } from '../src/telemetry/profile.js';

const json = process.argv.includes('--json');
const quick = process.argv.includes('--quick');
/**
 * --threads N (default 1): proxy threads per node on both sides of the comparison — the agents'
 * AMBIT_PROXY_WORKERS (N worker threads carry the data path; the agent's main thread keeps
 * enrolment, watches and config) and haproxy's nbthread. Like against like: the same number of
 * event loops moving bytes per node.
 */
const proxyThreads = (() => {
  const i = process.argv.indexOf('--threads');
  const n = i >= 0 ? Number(process.argv[i + 1]) : 1;
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`--threads wants a whole number 1..64, got ${process.argv[i + 1]}`);
  return n;
})();
/** --profile DIR: CPU profiles of both agents during Ambit's runs (the figures of such a run are not for the record) */
const profileDir = (() => {
  const i = process.argv.indexOf('--profile');
  return i >= 0 ? process.argv[i + 1] : undefined;
})();
const log = (s: string): void => {
  if (!json) console.log(s);
};

const NS = 'l4bench';
const TRUST_DOMAIN = 'cluster.local';
const SERVER_PORT = 8080;
/** haproxy's ports on the node IPs (outside the node's and Ambit's own ranges) */
const HAPROXY_OUT_PORT = 25001;
const HAPROXY_TUNNEL_PORT = 25008;
const BULK_BYTES = 1024 * 1024;
const FIXED_RPS = 1000;
/** Background CPU use above which the results carry a warning. */
const BUSY_WARN_PCT = 25;

/** Durations (s) and connection counts of the runs; --quick is a smoke run, not a measurement. */
const PLAN = quick
  ? { warmupS: 1, keepAliveS: 3, newConnS: 2, bulkS: 2, fixedWarmupS: 1, fixedS: 3 }
  : { warmupS: 3, keepAliveS: 15, newConnS: 10, bulkS: 10, fixedWarmupS: 2, fixedS: 15 };
const CONNS = { keepAlive: 16, newConn: 8, bulk: 4, fixed: 64 };

type PathName = 'none' | 'ambit' | 'haproxy';
const PATH_LABEL: Record<PathName, string> = { none: 'no mesh', ambit: 'Ambit', haproxy: 'haproxy' };

// ---------------------------------------------------------------------------------------------
// small pure helpers

const round = (n: number, d = 2): number => Math.round(n * 10 ** d) / 10 ** d;
const fmt = (n: number | null | undefined, d = 2): string => (n === null || n === undefined || !Number.isFinite(n) ? 'n/a' : String(round(n, d)));

/** What `load` prints (test/cluster/apps/src/load.js), the fields used here. */
interface LoadResult {
  count: number;
  ok: number;
  errors: number;
  errorKinds: Record<string, number>;
  statusCodes: Record<string, number>;
  elapsedMs: number;
  achievedRps: number;
  bytes: number;
  megabytesPerS: number;
  latencyMs: { p50?: number; p90?: number; p99?: number; max?: number };
}

/** utime+stime in clock ticks of a process (all its threads), from /proc/<pid>/stat; 0 if gone. */
function cpuTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

function rssMb(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

/** Busy and total jiffies of the whole machine (first line of /proc/stat). */
function machineJiffies(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: total - idle, total };
}

/** `net:[<inode>]` of a process's network namespace, or undefined if it is gone. */
function netnsOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return undefined;
  }
}

/**
 * Host PIDs of the Ambit agent on a node: processes whose command line runs
 * dist/src/main/agent.js in the node's network namespace (the agent is hostNetwork), plus all their
 * descendants (proxy workers, if the agent forks any). Threads are inside their process's /proc stat.
 */
function agentPids(nodeNetnsPath: string): number[] {
  const want = `net:[${statSync(nodeNetnsPath).ino}]`;
  const parent = new Map<number, number>();
  const roots: number[] = [];
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      parent.set(pid, Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
      if (cmdline.includes('dist/src/main/agent.js') && netnsOf(pid) === want) roots.push(pid);
    } catch {
      // exited meanwhile
    }
  }
  const out = new Set(roots);
  for (let changed = true, rounds = 0; changed && rounds < 16; rounds++) {
    changed = false;
    for (const [pid, ppid] of parent) {
      if (!out.has(pid) && out.has(ppid)) {
        out.add(pid);
        changed = true;
      }
    }
  }
  return [...out].sort((a, b) => a - b);
}

/** "a / b" where b must be positive for the ratio to mean anything. */
function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a === null || a === undefined || b === null || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b <= 0) return null;
  return a / b;
}

// ---------------------------------------------------------------------------------------------
// certificates and haproxy

interface ChainFiles {
  ca: string;
  /** cert chain + key, what haproxy's `crt` takes */
  client: string;
  server: string;
}

/** A CA and two workload certificates (ECDSA P-256, SPIFFE URI SANs) as Ambit issues them. */
async function writeCertificates(dir: string): Promise<ChainFiles> {
  const ca = await CertificateAuthority.load(await generateRootCa({ trustDomain: TRUST_DOMAIN }), { trustDomain: TRUST_DOMAIN });
  const issue = async (file: string): Promise<string> => {
    const identity = workloadSpiffeId(TRUST_DOMAIN, NS, 'default');
    const { csrPem, keyPem } = await createKeyAndCsr(identity);
    const checked = await inspectCsr(csrPem);
    if (!checked.ok) throw new Error(`benchmark CSR rejected: ${checked.error}`);
    const cert = await ca.issueWorkload({ publicKey: checked.csr.publicKey, identity });
    const path = join(dir, file);
    writeFileSync(path, `${cert.certChainPem.join('\n')}\n${keyPem.reveal()}\n`, { mode: 0o600 });
    return path;
  };
  const caPath = join(dir, 'ca.pem');
  writeFileSync(caPath, ca.trustBundle().roots.join('\n'));
  return { ca: caPath, client: await issue('client.pem'), server: await issue('server.pem') };
}

function haproxyConfig(side: 'client' | 'server', o: { threads: number; certs: ChainFiles; node1Ip: string; node2Ip: string; serverIp: string }): string {
  const common = `global
  nbthread ${o.threads}
  maxconn 4000
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-server-options ssl-min-ver TLSv1.3
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
`;
  if (side === 'client') {
    return `${common}frontend outbound
  bind ${o.node1Ip}:${HAPROXY_OUT_PORT}
  default_backend tunnel
backend tunnel
  server peer ${o.node2Ip}:${HAPROXY_TUNNEL_PORT} ssl crt ${o.certs.client} ca-file ${o.certs.ca} verify required
`;
  }
  return `${common}frontend tunnel
  bind ${o.node2Ip}:${HAPROXY_TUNNEL_PORT} ssl crt ${o.certs.server} ca-file ${o.certs.ca} verify required
  default_backend app
backend app
  server app ${o.serverIp}:${SERVER_PORT}
`;
}

interface Haproxy {
  proc: ChildProcess;
  pid: number;
  output: () => string;
}

/** haproxy in the foreground (-db) inside a node's netns; nsenter execs it, so the PID is haproxy's. */
async function startHaproxy(cluster: LocalCluster, node: ClusterNode, cfg: string, port: number): Promise<Haproxy> {
  await run(['nsenter', `--net=${node.netns}`, 'haproxy', '-c', '-q', '-f', cfg], { timeoutMs: 10_000 });
  const proc = spawn('nsenter', [`--net=${node.netns}`, 'haproxy', '-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const h = { proc, pid: proc.pid!, output: () => out };
  await waitUntil(async () => {
    if (proc.exitCode !== null) throw new Error(`haproxy on ${node.name} exited ${proc.exitCode}: ${out}`);
    const listening = await cluster.runInNode(node.name, ['ss', '-Hltn', `sport = :${port}`], 5000).catch(() => '');
    return listening.trim() ? true : undefined;
  }, 10_000, () => `haproxy listening on ${node.name}:${port}`);
  const comm = readFileSync(`/proc/${h.pid}/comm`, 'utf8').trim();
  if (comm !== 'haproxy') throw new Error(`expected PID ${h.pid} to be haproxy, it is ${comm}`);
  return h;
}

async function stopHaproxy(h: Haproxy | undefined): Promise<void> {
  if (!h || h.proc.exitCode !== null || h.proc.signalCode !== null) return;
  const exited = new Promise((r) => h.proc.once('exit', r));
  h.proc.kill('SIGTERM'); // our child, by PID
  const timer = setTimeout(() => h.proc.kill('SIGKILL'), 5000);
  await Promise.race([exited, sleep(7000)]);
  clearTimeout(timer);
}

// ---------------------------------------------------------------------------------------------
// the cluster side

function podsManifest(): string {
  return `apiVersion: v1
kind: Namespace
metadata: {name: ${NS}}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: ${NS}, labels: {app: server}}
spec:
  nodeName: node-2
  terminationGracePeriodSeconds: 1
  containers:
  - name: echo
    image: ${DEMO_IMAGES.echo}
    ports: [{name: http, containerPort: ${SERVER_PORT}}]
    env:
    - {name: QUIET, value: "1"}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: ${NS}, labels: {app: client}}
spec:
  nodeName: node-1
  terminationGracePeriodSeconds: 1
  containers:
  - name: load
    image: ${DEMO_IMAGES.load}
    command: [/usr/local/bin/idle]
`;
}

async function podIp(k: Kubectl, name: string): Promise<string> {
  return (await k.ok(['get', 'pod', name, '-n', NS, '-o', 'jsonpath={.status.podIP}'])).trim();
}

/** The pod's netns file on its node, found by its IP (as the agent does). */
async function podNetns(node: ClusterNode, ip: string): Promise<string> {
  for (const f of await readdir(node.fs.netnsDir)) {
    const path = join(node.fs.netnsDir, f);
    const out = await run(['nsenter', `--net=${path}`, '--', 'ip', '-o', 'addr'], { timeoutMs: 5000 }).catch(() => '');
    if (out.includes(` ${ip}/`)) return path;
  }
  throw new Error(`no netns in ${node.fs.netnsDir} holds ${ip}`);
}

async function enrolled(cluster: LocalCluster, node: string): Promise<string[]> {
  const text = await cluster.runInNode(node, ['curl', '-sS', '--max-time', '3', 'http://127.0.0.1:15021/debug/state'], 5000).catch(() => '[]');
  try {
    const state = JSON.parse(text) as Array<{ name: string; namespace: string; state: string }>;
    return state.filter((p) => p.namespace === NS && p.state === 'enrolled').map((p) => p.name);
  } catch {
    return [];
  }
}

/** Connections established on the server pod now: to :15008 (HBONE) and to the app's port, with the app's peers. */
async function serverSockets(netns: string): Promise<{ tunnel: number; app: number; appPeers: string[] }> {
  const ss = async (filter: string): Promise<string[]> =>
    (await run(['nsenter', `--net=${netns}`, '--', 'ss', '-Htn', 'state', 'established', filter], { timeoutMs: 5000 }).catch(() => ''))
      .split('\n')
      .filter((l) => l.trim());
  const app = await ss(`( sport = :${SERVER_PORT} )`);
  const peers = new Set(app.map((l) => l.trim().split(/\s+/)[3]?.replace(/:\d+$/, '') ?? '?'));
  return { tunnel: (await ss('( sport = :15008 )')).length, app: app.length, appPeers: [...peers].sort() };
}

// ---------------------------------------------------------------------------------------------
// measuring

interface Measured {
  load: LoadResult;
  /** proxy CPU seconds during the run, per node */
  cpuS: { node1: number; node2: number; total: number };
  /** how busy the whole machine was during the run (all cores) */
  machineBusyPct: number;
}

interface PathCtx {
  name: PathName;
  url: string;
  /** the proxy processes to account (none for no mesh), per node, looked up again before each run */
  pids: () => { node1: number[]; node2: number[] };
  /** with --profile: profiles both agents for `seconds` of the named run */
  profile?: (run: string, seconds: number) => Promise<void>;
}

/**
 * CPU profiles of the agents on `nodes` (their /debug/cpu-profile, enabled by --profile), written
 * to `dir` as <run>-<node>-<thread>.cpuprofile; prints the top functions by self time per node.
 */
async function profileAgents(dir: string, nodes: ClusterNode[], runName: string, seconds: number): Promise<void> {
  await Promise.all(
    nodes.map(async (node) => {
      const out = join(dir, `${runName}-${node.name}.json`);
      await run(['nsenter', `--net=${node.netns}`, 'curl', '-sS', '--fail', '--noproxy', '*', '-o', out, `http://127.0.0.1:15021/debug/cpu-profile?seconds=${seconds}`], { timeoutMs: (seconds + 30) * 1000 });
      const got = JSON.parse(readFileSync(out, 'utf8')) as { main: CpuProfile; workers: Array<CpuProfile | { error: string }> };
      rmSync(out);
      const threads: Array<[string, CpuProfile]> = [['main', got.main]];
      got.workers.forEach((w, i) => {
        if ('nodes' in w) threads.push([`worker${i}`, w]);
        else log(`  profile ${runName} ${node.name} worker ${i}: ${w.error}`);
      });
      for (const [name, p] of threads) {
        writeFileSync(join(dir, `${runName}-${node.name}-${name}.cpuprofile`), JSON.stringify(p));
        const sum = summarizeProfile(p, 12);
        log(`  profile ${runName} ${node.name} ${name}: ${sum.totalMs} ms sampled, idle ${sum.idlePct}%`);
        for (const e of sum.entries) log(`    ${String(e.selfPct).padStart(5)}%  ${e.where}`);
      }
    }),
  );
}

const TICK_S = 1 / 100; // USER_HZ; Linux reports /proc/<pid>/stat in these on every supported arch

async function loadIn(k: Kubectl, args: string[], durationS: number): Promise<LoadResult> {
  const r = await k.run(['exec', '-n', NS, 'client', '--', 'load', ...args], { timeoutMs: (durationS + 60) * 1000 });
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(line) as LoadResult;
  } catch {
    throw new Error(`load ${args.join(' ')} printed no result (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
}

async function measure(k: Kubectl, path: PathCtx, args: string[], durationS: number, opts: { warmupS?: number; during?: () => Promise<void>; run?: string } = {}): Promise<Measured> {
  const pids = path.pids();
  const ticks = (list: number[]) => list.reduce((s, p) => s + cpuTicks(p), 0);
  const c1 = ticks(pids.node1);
  const c2 = ticks(pids.node2);
  const m0 = machineJiffies();
  const warmupS = opts.warmupS ?? 0;
  const running = loadIn(k, ['--duration', String(durationS), ...args], durationS + warmupS);
  const profiled = path.profile && opts.run ? sleep(1000 + warmupS * 1000).then(() => path.profile!(opts.run!, Math.max(1, durationS - 3))) : undefined;
  if (opts.during) {
    await sleep(((warmupS + durationS / 2) * 1000));
    await opts.during();
  }
  const load = await running;
  const m1 = machineJiffies();
  await profiled;
  const node1 = (ticks(pids.node1) - c1) * TICK_S;
  const node2 = (ticks(pids.node2) - c2) * TICK_S;
  return {
    load,
    cpuS: { node1: round(node1, 2), node2: round(node2, 2), total: round(node1 + node2, 2) },
    machineBusyPct: round((100 * (m1.busy - m0.busy)) / Math.max(1, m1.total - m0.total), 1),
  };
}

interface PathResult {
  keepAlive: Measured;
  newConn: Measured;
  bulk: Measured;
  fixed: Measured;
  /** seen on the server pod in the middle of the keep-alive run */
  serverSockets: { tunnel: number; app: number; appPeers: string[] };
  proxyRssMb: number | null;
  proxyPids: { node1: number[]; node2: number[] };
  /** proxy CPU seconds per 1000 requests, keep-alive run */
  cpuSPer1000Req: number | null;
  cpuSPer1000Conn: number | null;
  cpuSPerGB: number | null;
}

/** A short run until it goes through without an error (certificates, pools, JIT), bounded. */
async function warmUp(k: Kubectl, path: PathCtx): Promise<void> {
  let last: LoadResult | undefined;
  for (let i = 0; i < 10; i++) {
    last = await loadIn(k, ['--url', path.url, '--duration', String(PLAN.warmupS), '--concurrency', String(CONNS.keepAlive)], PLAN.warmupS);
    if (last.count > 0 && last.errors === 0) return;
    await sleep(2000);
  }
  throw new Error(`${PATH_LABEL[path.name]}: the path does not work (last warm-up: ${JSON.stringify(last)})`);
}

async function runPath(k: Kubectl, path: PathCtx, serverNetns: string): Promise<PathResult> {
  log(`\n== ${PATH_LABEL[path.name]}: ${path.url}`);
  await warmUp(k, path);
  let sockets = { tunnel: 0, app: 0, appPeers: [] as string[] };
  const keepAlive = await measure(k, path, ['--url', path.url, '--concurrency', String(CONNS.keepAlive), '--timeout', '5000'], PLAN.keepAliveS, {
    run: 'keepalive',
    during: async () => {
      sockets = await serverSockets(serverNetns);
    },
  });
  log(`  keep-alive (${CONNS.keepAlive} conns, ${PLAN.keepAliveS} s): ${fmt(keepAlive.load.achievedRps, 0)} req/s, p50/p90/p99 ${fmt(keepAlive.load.latencyMs.p50, 3)}/${fmt(keepAlive.load.latencyMs.p90, 3)}/${fmt(keepAlive.load.latencyMs.p99, 3)} ms, errors ${keepAlive.load.errors}, proxy CPU ${keepAlive.cpuS.total} s, machine ${keepAlive.machineBusyPct}% busy`);
  await sleep(1000);
  const newConn = await measure(k, path, ['--url', path.url, '--concurrency', String(CONNS.newConn), '--new-connection', '--timeout', '5000'], PLAN.newConnS, { run: 'newconn' });
  log(`  new connection per request (${CONNS.newConn} workers, ${PLAN.newConnS} s): ${fmt(newConn.load.achievedRps, 0)} conn/s, p50/p99 ${fmt(newConn.load.latencyMs.p50, 3)}/${fmt(newConn.load.latencyMs.p99, 3)} ms, errors ${newConn.load.errors}, proxy CPU ${newConn.cpuS.total} s`);
  await sleep(1000);
  const bulk = await measure(k, path, ['--url', `${path.url}bytes/${BULK_BYTES}`, '--concurrency', String(CONNS.bulk), '--timeout', '10000'], PLAN.bulkS, { run: 'bulk' });
  log(`  1 MiB responses (${CONNS.bulk} conns, ${PLAN.bulkS} s): ${fmt(bulk.load.megabytesPerS, 1)} MB/s, errors ${bulk.load.errors}, proxy CPU ${bulk.cpuS.total} s`);
  await sleep(1000);
  // The load's own warm-up opens its connections first, so connection set-up (a TLS handshake on
  // haproxy's path) is not counted as request latency; its CPU is in this run's cpuS.
  const fixed = await measure(k, path, ['--url', path.url, '--rps', String(FIXED_RPS), '--concurrency', String(CONNS.fixed), '--timeout', '5000', '--warmup', String(PLAN.fixedWarmupS)], PLAN.fixedS, { warmupS: PLAN.fixedWarmupS });
  log(`  fixed ${FIXED_RPS} RPS (${PLAN.fixedS} s): p50/p90/p99 ${fmt(fixed.load.latencyMs.p50, 3)}/${fmt(fixed.load.latencyMs.p90, 3)}/${fmt(fixed.load.latencyMs.p99, 3)} ms, sent ${fixed.load.count}, errors ${fixed.load.errors}, proxy CPU ${fixed.cpuS.total} s`);
  const pids = path.pids();
  const all = [...pids.node1, ...pids.node2];
  const rss = all.length ? round(all.reduce((s, p) => s + rssMb(p), 0), 1) : null;
  const per = (cpu: number, n: number, scale: number) => (all.length && n > 0 ? round((cpu / n) * scale, 4) : null);
  return {
    keepAlive,
    newConn,
    bulk,
    fixed,
    serverSockets: sockets,
    proxyRssMb: rss,
    proxyPids: pids,
    cpuSPer1000Req: per(keepAlive.cpuS.total, keepAlive.load.ok, 1000),
    cpuSPer1000Conn: per(newConn.cpuS.total, newConn.load.ok, 1000),
    cpuSPerGB: per(bulk.cpuS.total, bulk.load.bytes, 1e9),
  };
}

// ---------------------------------------------------------------------------------------------
// the report

interface Ratio {
  value: number | null;
  target: string;
  pass: boolean | null;
  note?: string;
}

function ratios(r: Record<PathName, PathResult>): Record<string, Ratio> {
  const at = (v: number | null, min: number | null, max: number | null): Ratio => ({
    value: v === null ? null : round(v, 3),
    target: min !== null ? `>= ${min}` : `<= ${max}`,
    pass: v === null ? null : min !== null ? v >= min : v <= max!,
  });
  const added = (p: PathName, q: 'p50' | 'p99') => (r[p].fixed.load.latencyMs[q] ?? NaN) - (r.none.fixed.load.latencyMs[q] ?? NaN);
  const addedP99 = at(ratio(added('ambit', 'p99'), added('haproxy', 'p99')), null, 1.5);
  if (addedP99.value === null) {
    // haproxy added nothing measurable: Ambit passes only if it added nothing either
    addedP99.pass = added('ambit', 'p99') <= 0;
    addedP99.note = `haproxy added ${fmt(added('haproxy', 'p99'), 3)} ms, Ambit ${fmt(added('ambit', 'p99'), 3)} ms`;
  }
  return {
    keepAliveRps: at(ratio(r.ambit.keepAlive.load.achievedRps, r.haproxy.keepAlive.load.achievedRps), 1.0, null),
    addedP99At1000Rps: addedP99,
    newConnPerS: at(ratio(r.ambit.newConn.load.achievedRps, r.haproxy.newConn.load.achievedRps), 3, null),
    bulkMBps: at(ratio(r.ambit.bulk.load.megabytesPerS, r.haproxy.bulk.load.megabytesPerS), 1.0, null),
    cpuPerRequest: at(ratio(r.ambit.cpuSPer1000Req, r.haproxy.cpuSPer1000Req), null, 1.2),
  };
}

function table(r: Record<PathName, PathResult>): string {
  const paths: PathName[] = ['none', 'ambit', 'haproxy'];
  const rows: Array<[string, (p: PathName) => string]> = [
    ['keep-alive req/s', (p) => fmt(r[p].keepAlive.load.achievedRps, 0)],
    ['  p50 / p90 / p99 ms', (p) => `${fmt(r[p].keepAlive.load.latencyMs.p50, 3)} / ${fmt(r[p].keepAlive.load.latencyMs.p90, 3)} / ${fmt(r[p].keepAlive.load.latencyMs.p99, 3)}`],
    ['new connections/s', (p) => fmt(r[p].newConn.load.achievedRps, 0)],
    ['1 MiB responses MB/s', (p) => fmt(r[p].bulk.load.megabytesPerS, 1)],
    [`${FIXED_RPS} RPS p50 / p99 ms`, (p) => `${fmt(r[p].fixed.load.latencyMs.p50, 3)} / ${fmt(r[p].fixed.load.latencyMs.p99, 3)}`],
    [
      '  added p50 / p99 ms',
      (p) =>
        p === 'none'
          ? '-'
          : `${fmt((r[p].fixed.load.latencyMs.p50 ?? NaN) - (r.none.fixed.load.latencyMs.p50 ?? NaN), 3)} / ${fmt((r[p].fixed.load.latencyMs.p99 ?? NaN) - (r.none.fixed.load.latencyMs.p99 ?? NaN), 3)}`,
    ],
    ['proxy CPU s / 1000 req', (p) => (p === 'none' ? '-' : fmt(r[p].cpuSPer1000Req, 4))],
    ['proxy CPU s / 1000 conn', (p) => (p === 'none' ? '-' : fmt(r[p].cpuSPer1000Conn, 4))],
    ['proxy CPU s / GB', (p) => (p === 'none' ? '-' : fmt(r[p].cpuSPerGB, 3))],
    ['proxy RSS MB (both nodes)', (p) => (p === 'none' ? '-' : fmt(r[p].proxyRssMb, 1))],
    ['machine busy % (keep-alive)', (p) => fmt(r[p].keepAlive.machineBusyPct, 0)],
  ];
  const w0 = Math.max(...rows.map(([l]) => l.length)) + 2;
  const cell = (s: string) => s.padStart(24);
  const lines = [`${''.padEnd(w0)}${paths.map((p) => cell(PATH_LABEL[p])).join('')}`];
  for (const [label, f] of rows) lines.push(`${label.padEnd(w0)}${paths.map((p) => cell(f(p))).join('')}`);
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench l4 needs root (network namespaces, containerd, nsenter); run it as root');
  const started = Date.now();
  const tmp = mkdtempSync(join(tmpdir(), 'ambit-l4bench-'));
  const haproxies: Haproxy[] = [];
  let cluster: LocalCluster | undefined;
  let k: Kubectl | undefined;
  try {
    const certs = await writeCertificates(tmp);
    const t0 = Date.now();
    cluster = await LocalCluster.up({ name: 'l4bench', nodes: 2 });
    log(`cluster up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    await cluster.importImage(await ensureAmbitImage());
    k = new Kubectl(cluster.server);
    const node1 = cluster.node('node-1');
    const node2 = cluster.node('node-2');

    let r = await k.applyText(podsManifest());
    if (r.code !== 0) throw new Error(`applying the benchmark pods failed: ${r.stderr}`);
    await k.ok(['wait', '--for=condition=Ready', 'pod/server', 'pod/client', '-n', NS, '--timeout=90s'], { timeoutMs: 100_000 });
    const serverIp = await podIp(k, 'server');
    const serverNetns = await podNetns(node2, serverIp);
    // The mesh is installed from the start (its agents idle while the namespace is not enrolled),
    // so that every path runs on the same cluster with the same background.
    r = await k.run(['apply', '-f', daemonsetDir()]);
    if (r.code !== 0) throw new Error(`kubectl apply -f daemonset/ failed: ${r.stderr}`);
    // The DaemonSet as shipped, with the proxy thread count of this comparison (and profiling when asked).
    const agentEnv = [`AMBIT_PROXY_WORKERS=${proxyThreads}`, ...(profileDir ? ['AMBIT_DEBUG_PROFILING=true'] : [])];
    if (profileDir) mkdirSync(profileDir, { recursive: true });
    await k.ok(['set', 'env', 'daemonset/ambit-agent', '-n', 'ambit-system', ...agentEnv]);
    await k.ok(['rollout', 'status', 'daemonset/ambit-agent', '-n', 'ambit-system', '--timeout=120s'], { timeoutMs: 130_000 });
    await k.ok(['rollout', 'status', 'deployment/ambit-control', '-n', 'ambit-system', '--timeout=120s'], { timeoutMs: 130_000 });
    const agents = () => ({ node1: agentPids(node1.netns), node2: agentPids(node2.netns) });
    const agentProcs = agents();
    if (!agentProcs.node1.length || !agentProcs.node2.length) throw new Error(`agent processes not found: ${JSON.stringify(agentProcs)}`);
    const threads = proxyThreads;
    log(`server ${serverIp} on node-2, client on node-1; agents: node-1 ${agentProcs.node1.join(',')}, node-2 ${agentProcs.node2.join(',')}; proxy threads per node: ${threads} (agent AMBIT_PROXY_WORKERS, haproxy nbthread)`);

    // Whatever else runs on the machine competes with every path; say how much there was.
    const b0 = machineJiffies();
    await sleep(3000);
    const b1 = machineJiffies();
    const backgroundBusyPct = round((100 * (b1.busy - b0.busy)) / Math.max(1, b1.total - b0.total), 1);
    log(`machine busy before the runs (cluster idle, 3 s): ${backgroundBusyPct}% of ${cpus().length} CPUs`);
    const busyWarning = backgroundBusyPct > BUSY_WARN_PCT ? `the machine was ${backgroundBusyPct}% busy before the runs: other work competed with every path, the figures (latency most) are unreliable` : undefined;
    if (busyWarning) log(`WARNING: ${busyWarning}`);

    const results = {} as Record<PathName, PathResult>;
    const url = `http://${serverIp}:${SERVER_PORT}/`;

    // (a) no mesh
    results.none = await runPath(k, { name: 'none', url, pids: () => ({ node1: [], node2: [] }) }, serverNetns);

    // (c) haproxy, while the namespace is still not enrolled
    const cfg = { threads, certs, node1Ip: node1.ip, node2Ip: node2.ip, serverIp };
    const cfgServer = join(tmp, 'server.cfg');
    const cfgClient = join(tmp, 'client.cfg');
    writeFileSync(cfgServer, haproxyConfig('server', cfg));
    writeFileSync(cfgClient, haproxyConfig('client', cfg));
    const hServer = await startHaproxy(cluster, node2, cfgServer, HAPROXY_TUNNEL_PORT);
    haproxies.push(hServer);
    const hClient = await startHaproxy(cluster, node1, cfgClient, HAPROXY_OUT_PORT);
    haproxies.push(hClient);
    results.haproxy = await runPath(k, { name: 'haproxy', url: `http://${node1.ip}:${HAPROXY_OUT_PORT}/`, pids: () => ({ node1: [hClient.pid], node2: [hServer.pid] }) }, serverNetns);
    for (const h of haproxies.splice(0)) await stopHaproxy(h);

    // (b) Ambit: enrol the namespace, wait until both agents say so
    await k.ok(['label', 'namespace', NS, 'ambit.dev/dataplane-mode=ambient']);
    await waitUntil(async () => ((await enrolled(cluster!, 'node-1')).includes('client') && (await enrolled(cluster!, 'node-2')).includes('server') ? true : undefined), 60_000, () => 'client and server enrolled per /debug/state');
    const profile = profileDir ? (run: string, seconds: number) => profileAgents(profileDir, [node1, node2], run, seconds) : undefined;
    results.ambit = await runPath(k, { name: 'ambit', url, pids: agents, ...(profile ? { profile } : {}) }, serverNetns);
    const ambitPath = results.ambit.serverSockets.tunnel > 0 ? 'hbone' : 'plaintext';

    const rs = ratios(results);
    log(`\n${table(results)}`);
    log(`\nAmbit's path as seen on the server pod mid-run: ${ambitPath} (${results.ambit.serverSockets.tunnel} connections on :15008, ${results.ambit.serverSockets.app} on :${SERVER_PORT} from ${results.ambit.serverSockets.appPeers.join(', ') || 'nobody'})`);
    log(`proxy threads per node ${threads} (Ambit and haproxy); machine: ${cpus().length} CPUs shared by client, server, both proxies and the cluster itself`);
    log('\nTargets (Ambit / haproxy, same run):');
    const names: Record<string, string> = {
      keepAliveRps: 'keep-alive req/s',
      addedP99At1000Rps: `added p99 at ${FIXED_RPS} RPS`,
      newConnPerS: 'new connections/s',
      bulkMBps: '1 MiB MB/s',
      cpuPerRequest: 'CPU per request',
    };
    for (const [key, v] of Object.entries(rs)) {
      log(`  ${names[key]!.padEnd(26)} ${fmt(v.value, 2).padStart(7)}×  target ${v.target.padEnd(7)} ${v.pass === null ? 'n/a' : v.pass ? 'PASS' : 'FAIL'}${v.note ? `  (${v.note})` : ''}`);
    }
    if (busyWarning) log(`\nWARNING: ${busyWarning}`);
    log(`\ntotal ${((Date.now() - started) / 1000).toFixed(0)} s`);
    if (json) {
      const slim = (m: Measured) => ({ ...m.load, cpuS: m.cpuS, machineBusyPct: m.machineBusyPct });
      const paths = Object.fromEntries(
        (Object.entries(results) as Array<[PathName, PathResult]>).map(([p, v]) => [p, { ...v, keepAlive: slim(v.keepAlive), newConn: slim(v.newConn), bulk: slim(v.bulk), fixed: slim(v.fixed) }]),
      );
      console.log(JSON.stringify({ quick, plan: PLAN, connections: CONNS, cpus: cpus().length, backgroundBusyPct, ...(busyWarning ? { warning: busyWarning } : {}), proxyThreads: threads, ambitPath, paths, ratios: rs, totalS: Math.round((Date.now() - started) / 1000) }));
    }
  } finally {
    for (const h of haproxies) await stopHaproxy(h);
    k?.cleanup();
    await cluster?.down();
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
