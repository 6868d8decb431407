/**
 * The mesh end to end on the local cluster (root): `kubectl apply -f daemonset/` installs
 * ambit-control and the agent on two nodes, a namespace labelled ambient enrols an echo Deployment
 * (node-2) and two tools clients (node-1) with their own service accounts, `client` and `intruder`;
 * a third tools pod lives in a namespace that is not enrolled (`outside`). Shows, in order, on one
 * cluster (issue 6, "Must show"):
 * - a connection between enrolled pods on different nodes crosses the underlay only as TLS 1.3 to
 *   port 15008: a packet capture on the underlay bridge finds no byte of a marker the client sent,
 *   while the same capture does find a non-enrolled pod's marker (so it would have seen it);
 * - the server node's metrics and access log carry the client's SPIFFE principal over mutual_tls
 *   (reporter destination), the client node's the same connection as reporter source;
 * - a DENY AuthorizationPolicy on the client's principal refuses it fast while `intruder` passes;
 *   an ALLOW policy for the client admits it and refuses `intruder` (the certificate of another
 *   service account is rejected); the access log names the deciding policy;
 * - PeerAuthentication STRICT refuses the non-enrolled client's plaintext, PERMISSIVE admits it;
 * - a Service name resolves through the in-pod DNS proxy (15053) to the Service VIP, and an SRV
 *   query is forwarded to and answered by the cluster DNS;
 * - garbage, a plain HTTP request and a TLS client without a certificate sent to an enrolled
 *   pod's :15008 each close only their own connection; mesh traffic under load does not notice;
 * - scaling ambit-control to zero leaves a running connection and new connections untouched;
 * - with a 20 s certificate lifetime, renewals under keep-alive and new-connection load drop
 *   nothing.
 * Every wait is bounded; a failing test appends the agents' log tails and the pod list.
 */
import { test, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseAllDocuments } from 'yaml';
import { Kubectl, waitUntil, type RunResult } from '../helpers/kubectl.js';
import { LocalCluster } from '../cluster/cluster.js';
import { DEMO_IMAGES, ensureAmbitImage } from '../cluster/apps/images.js';
import { echoApp } from '../cluster/apps/manifests.js';
import { agentGet, agentPod, daemonsetDir, rolloutAgents } from '../helpers/ambit.js';

const isRoot = process.getuid?.() === 0;
const rootOnly = { skip: isRoot ? false : 'needs root (network namespaces, containerd, tcpdump); CI runs as root' } as const;
const NAME = `msh${process.pid % 100000}`;
const NS = 'mesh';
const OUTSIDE = 'outside';
const CLIENT_PRINCIPAL = `spiffe://cluster.local/ns/${NS}/sa/client`;
const INTRUDER_PRINCIPAL = `spiffe://cluster.local/ns/${NS}/sa/intruder`;
const ECHO_PRINCIPAL = `spiffe://cluster.local/ns/${NS}/sa/default`;
const ECHO_URL = `http://echo.${NS}.svc.cluster.local/`;
/**
 * node-1's port on the underlay bridge, inside ambit-<cluster>-underlay (test/cluster/network.ts):
 * everything node-1 sends to or receives from other nodes crosses it. (The bridge device itself
 * would show only frames addressed to the bridge, not those it forwards between its ports.)
 */
const UNDERLAY_PORT = 'ul-node-1';

let cluster: LocalCluster | undefined;
let k: Kubectl;

// ---------- small helpers ----------

async function apply(manifest: string): Promise<void> {
  const r = await k.applyText(manifest);
  assert.equal(r.code, 0, r.stderr);
}

interface PodInfo {
  name: string;
  node: string;
  ip: string;
}

async function pods(ns: string, selector: string): Promise<PodInfo[]> {
  const list = JSON.parse(await k.ok(['get', 'pods', '-n', ns, '-l', selector, '-o', 'json'])) as { items: any[] };
  return list.items.map((p) => ({ name: p.metadata.name, node: p.spec.nodeName, ip: p.status.podIP }));
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Prometheus text exposition → samples (comments skipped). */
function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, '$1');
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** Sum of `name`'s samples whose labels include `match`. */
function sum(samples: Sample[], name: string, match: Record<string, string> = {}): number {
  return samples.filter((s) => s.name === name && Object.entries(match).every(([k2, v]) => s.labels[k2] === v)).reduce((a, s) => a + s.value, 0);
}

async function metrics(nodeName: string): Promise<Sample[]> {
  return parseMetrics(await agentGet(k, nodeName, 15020, '/metrics'));
}

interface AccessLine {
  component?: string;
  reporter?: string;
  src?: string;
  dst?: string;
  src_principal?: string;
  dst_principal?: string;
  security?: string;
  flags?: string;
  error?: string;
  msg?: string;
  [key: string]: unknown;
}

/** The agent's JSON log lines on `nodeName` (the current container only). */
async function agentLog(nodeName: string, tail = 2000): Promise<AccessLine[]> {
  const text = await k.ok(['logs', '-n', 'ambit-system', await agentPod(k, nodeName), `--tail=${tail}`], { timeoutMs: 30_000 });
  const out: AccessLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as AccessLine);
    } catch {
      /* a line cut by --tail */
    }
  }
  return out;
}

const accessLines = async (nodeName: string): Promise<AccessLine[]> => (await agentLog(nodeName)).filter((l) => l.component === 'access');

/** kubectl exec in a pod, never throwing: the exit code and how long it took. */
async function execIn(ns: string, pod: string, argv: string[], timeoutMs = 30_000): Promise<RunResult & { ms: number }> {
  const t0 = Date.now();
  const r = await k.run(['exec', '-n', ns, pod, '--', ...argv], { timeoutMs });
  return { ...r, ms: Date.now() - t0 };
}

/** One HTTP request with curl from a pod: a new TCP connection each time. */
function curl(ns: string, pod: string, url: string, extra: string[] = []): Promise<RunResult & { ms: number }> {
  return execIn(ns, pod, ['curl', '-sS', '--max-time', '8', ...extra, url]);
}

const answeredByEcho = (r: RunResult): boolean => r.code === 0 && /"pod":\s*"echo-/.test(r.stdout);

/** Polls until `pod`'s curl to `url` succeeds (want true) or fails (want false). */
async function waitForCurl(ns: string, pod: string, url: string, want: boolean, timeoutMs = 40_000): Promise<RunResult & { ms: number }> {
  let last: (RunResult & { ms: number }) | undefined;
  return waitUntil(async () => {
    last = await curl(ns, pod, url);
    if (answeredByEcho(last) === want) return last;
    await sleep(300);
    return undefined;
  }, timeoutMs, () => `${ns}/${pod} → ${url} to ${want ? 'succeed' : 'fail'}; last: exit ${last?.code} ${last?.stdout.slice(0, 200)} ${last?.stderr.slice(0, 300)}`);
}

interface LoadResult {
  count: number;
  ok: number;
  errors: number;
  errorKinds: Record<string, number>;
  statusCodes: Record<string, number>;
  elapsedMs: number;
  planned: number | null;
}

/** Runs the `load` app in a pod (test/cluster/apps/src/load.js); its JSON summary. */
async function load(pod: string, flags: string[], timeoutMs: number): Promise<LoadResult> {
  const r = await execIn(NS, pod, ['load', ...flags], timeoutMs);
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(line) as LoadResult;
  } catch {
    throw new Error(`load ${flags.join(' ')} printed no summary (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
}

async function enrolledCount(nodeName: string): Promise<number> {
  const state = JSON.parse(await agentGet(k, nodeName, 15021, '/debug/state')) as Array<{ namespace: string; state: string }>;
  return state.filter((p) => p.namespace === NS && p.state === 'enrolled').length;
}

/** Every node's enrolled pods of NS, and each node's agent holding a certificate for every one. */
async function waitMeshReady(expected: Record<string, number>, timeoutMs = 90_000): Promise<void> {
  await waitUntil(async () => {
    for (const [nodeName, n] of Object.entries(expected)) {
      if ((await enrolledCount(nodeName)) !== n) return undefined;
      if (sum(await metrics(nodeName), 'ambit_agent_certificates', { state: 'ready' }) < n) return undefined;
    }
    return true;
  }, timeoutMs, () => `pods enrolled with certificates: ${JSON.stringify(expected)}`);
}

const EXPECTED = { 'node-1': 2, 'node-2': 2 };

/** The agents' log tails and the pods: appended to a failing test's error. */
async function diagnostics(): Promise<string> {
  const parts: string[] = [];
  parts.push(await k.ok(['get', 'pods', '-A', '-o', 'wide']).catch((e: Error) => e.message));
  for (const n of ['node-1', 'node-2']) {
    const pod = await agentPod(k, n).catch(() => undefined);
    if (!pod) continue;
    parts.push(`--- agent on ${n} (${pod}), last 40 lines ---`);
    parts.push(await k.ok(['logs', '-n', 'ambit-system', pod, '--tail=40']).catch((e: Error) => e.message));
  }
  return parts.join('\n');
}

/** A root test whose failure carries diagnostics. */
function meshTest(name: string, fn: (t: TestContext) => Promise<void>): void {
  test(name, rootOnly, async (t) => {
    try {
      await fn(t);
    } catch (err) {
      const diag = await diagnostics().catch((e: Error) => `(diagnostics failed: ${e.message})`);
      if (err instanceof Error) err.message += `\n===== diagnostics =====\n${diag}`;
      throw err;
    }
  });
}

// ---------- packet capture on the underlay ----------

interface Capture {
  /** ends the capture: its segments, and tcpdump's own report (for failure messages) */
  stop(): Promise<{ segments: TcpSegment[]; report: string }>;
}

/**
 * tcpdump on node-1's underlay port, written to a pcap file. --immediate-mode: otherwise libpcap
 * hands packets over in blocks (up to a second late), and the block still filling when tcpdump gets
 * SIGINT is never written, i.e. a short connection is missing from the file. -Z root: the file
 * lives in our private temp dir.
 */
async function captureUnderlay(): Promise<Capture> {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-mesh-pcap-'));
  const file = join(dir, 'underlay.pcap');
  const proc: ChildProcess = spawn('nsenter', [`--net=/run/netns/${cluster!.plan.underlayNetns}`, '--', 'tcpdump', '-i', UNDERLAY_PORT, '-n', '-s', '0', '-U', '--immediate-mode', '-Z', 'root', '-w', file, 'tcp'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  try {
    await waitUntil(() => (/listening on/.test(stderr) ? true : proc.exitCode !== null ? (() => { throw new Error(`tcpdump exited: ${stderr}`); })() : undefined), 10_000, () => `tcpdump listening: ${stderr}`);
  } catch (err) {
    proc.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    async stop() {
      await sleep(500); // the last segments of the connection (FIN/ACK) reach the file
      proc.kill('SIGINT');
      await Promise.race([exited, sleep(5000).then(() => proc.kill('SIGKILL'))]);
      try {
        const bytes = await readFile(file);
        return { segments: parsePcap(bytes), report: `${bytes.length} bytes; tcpdump: ${stderr.trim().replace(/\s+/g, ' ')}` };
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}

interface TcpSegment {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  payload: Buffer;
}

/** TCP over IPv4 over Ethernet from a classic pcap file (what tcpdump -w writes). */
function parsePcap(buf: Buffer): TcpSegment[] {
  const magic = buf.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  assert.ok(le || buf.readUInt32BE(0) === 0xa1b2c3d4 || buf.readUInt32BE(0) === 0xa1b23c4d, 'a pcap file');
  const u32 = (o: number): number => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  assert.equal(u32(20), 1, 'link type Ethernet');
  const out: TcpSegment[] = [];
  const ip = (o: number): string => `${buf[o]}.${buf[o + 1]}.${buf[o + 2]}.${buf[o + 3]}`;
  for (let off = 24; off + 16 <= buf.length; ) {
    const incl = u32(off + 8);
    const start = off + 16;
    off = start + incl;
    if (off > buf.length) break;
    let l3 = start + 12;
    let etherType = buf.readUInt16BE(l3);
    if (etherType === 0x8100) {
      l3 += 4;
      etherType = buf.readUInt16BE(l3);
    }
    l3 += 2;
    if (etherType !== 0x0800 || buf[l3 + 9] !== 6) continue;
    const ihl = (buf[l3]! & 0x0f) * 4;
    const totalLen = buf.readUInt16BE(l3 + 2);
    const l4 = l3 + ihl;
    const dataOff = (buf[l4 + 12]! >> 4) * 4;
    const payloadEnd = Math.min(l3 + totalLen, off);
    out.push({ src: ip(l3 + 12), dst: ip(l3 + 16), sport: buf.readUInt16BE(l4), dport: buf.readUInt16BE(l4 + 2), payload: buf.subarray(l4 + dataOff, payloadEnd) });
  }
  return out;
}

/** The distinct TCP flows of a capture with their segment counts, for failure messages. */
function flows(segments: TcpSegment[]): string {
  const counts = new Map<string, number>();
  for (const s of segments) {
    const key = `${s.src}:${s.sport}>${s.dst}:${s.dport}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].slice(0, 20).map(([k2, n]) => `${k2} ×${n}`).join(', ') || 'none';
}

/** A TLS ServerHello (record 0x16, handshake type 2) that selects TLS 1.3 (supported_versions = 0x0304). */
function isTls13ServerHello(p: Buffer): boolean {
  return p.length > 6 && p[0] === 0x16 && p[1] === 0x03 && p[5] === 0x02 && p.includes(Buffer.from([0x00, 0x2b, 0x00, 0x02, 0x03, 0x04]));
}

// ---------- the cluster ----------

/** The echo app pinned to node-2, so that every client on node-1 crosses the underlay. */
function echoOnNode2(): string {
  return parseAllDocuments(echoApp(NS, 2))
    .map((doc) => {
      const obj = doc.toJSON() as any;
      if (obj.kind === 'Deployment') obj.spec.template.spec.nodeSelector = { 'kubernetes.io/hostname': 'node-2' };
      return JSON.stringify(obj);
    })
    .join('\n---\n');
}

function toolsPod(ns: string, name: string, serviceAccount: string | undefined): string {
  return `apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: ${ns}, labels: {app: ${name}}}
spec:
  nodeName: node-1
  ${serviceAccount ? `serviceAccountName: ${serviceAccount}` : ''}
  terminationGracePeriodSeconds: 1
  containers: [{name: main, image: ${DEMO_IMAGES.tools}}]
`;
}

before(async () => {
  if (!isRoot) return;
  cluster = await LocalCluster.up({ name: NAME, nodes: 2 });
  // The image from the sources compiled with this test (and their native dir beside them, if built).
  await cluster.importImage(await ensureAmbitImage());
  k = new Kubectl(cluster.server);
  await apply(`apiVersion: v1
kind: Namespace
metadata: {name: ${NS}}
---
apiVersion: v1
kind: Namespace
metadata: {name: ${OUTSIDE}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: client, namespace: ${NS}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: intruder, namespace: ${NS}}
---
${echoOnNode2()}
---
${toolsPod(NS, 'client', 'client')}
---
${toolsPod(NS, 'intruder', 'intruder')}
---
${toolsPod(OUTSIDE, 'outside', undefined)}
`);
  await k.ok(['rollout', 'status', 'deployment/echo', '-n', NS, '--timeout=90s'], { timeoutMs: 100_000 });
  for (const [ns, pod] of [[NS, 'client'], [NS, 'intruder'], [OUTSIDE, 'outside']] as const) {
    await k.ok(['wait', '--for=condition=Ready', `pod/${pod}`, '-n', ns, '--timeout=60s'], { timeoutMs: 70_000 });
  }
  const r = await k.run(['apply', '-f', daemonsetDir()]);
  assert.equal(r.code, 0, r.stderr);
  await k.ok(['rollout', 'status', 'deployment/ambit-control', '-n', 'ambit-system', '--timeout=120s'], { timeoutMs: 130_000 });
  await rolloutAgents(k);
  await k.ok(['label', 'namespace', NS, 'ambit.dev/dataplane-mode=ambient']);
  try {
    await waitMeshReady(EXPECTED);
  } catch (err) {
    (err as Error).message += `\n${await diagnostics().catch(() => '')}`;
    throw err;
  }
});

after(async () => {
  k?.cleanup();
  await cluster?.down();
});

// ---------- the tests ----------

meshTest('a connection between enrolled pods on different nodes crosses the underlay only as TLS 1.3 to :15008', async () => {
  const echo = await pods(NS, 'app=echo');
  assert.ok(echo.length === 2 && echo.every((p) => p.node === 'node-2'), `echo pods on node-2: ${JSON.stringify(echo)}`);
  const marker = `AMBIT-MARKER-${process.pid}-${Date.now()}`;

  const capture = await captureUnderlay();
  const res = await curl(NS, 'client', ECHO_URL, ['-d', marker]);
  const { segments, report } = await capture.stop();
  assert.ok(answeredByEcho(res), `the client reached echo: ${res.stdout} ${res.stderr}`);
  assert.match(res.stdout, new RegExp(`"bodyBytes":\\s*${marker.length}`), 'echo received the marker body');

  const payloads = segments.filter((s) => s.payload.length > 0);
  const echoIps = new Set(echo.map((p) => p.ip));
  const toEcho = segments.filter((s) => echoIps.has(s.dst) || echoIps.has(s.src));
  assert.ok(!payloads.some((s) => s.payload.includes(marker)), 'the marker never crosses the underlay in clear');
  assert.ok(toEcho.some((s) => s.dport === 15008), `packets to an echo pod's :15008 were captured (${toEcho.length} segments with echo; echo ${[...echoIps].join(', ')}; flows seen: ${flows(segments)}; ${report})`);
  const appPort = toEcho.filter((s) => s.dport === 8080 || s.sport === 8080);
  assert.equal(appPort.length, 0, `no packet to or from the application port 8080 (${appPort.map((s) => `${s.src}:${s.sport}>${s.dst}:${s.dport}`).slice(0, 5).join(', ')})`);
  const otherPorts = toEcho.filter((s) => s.dport !== 15008 && s.sport !== 15008);
  assert.equal(otherPorts.length, 0, `echo pods exchanged nothing but :15008 (${otherPorts.map((s) => `${s.src}:${s.sport}>${s.dst}:${s.dport}`).slice(0, 5).join(', ')})`);
  // The first connection of the file, so the HBONE session is new and its handshake is in the capture.
  const hello = payloads.find((s) => s.sport === 15008 && echoIps.has(s.src) && s.payload[0] === 0x16);
  assert.ok(hello, 'the TLS handshake of the HBONE session is in the capture');
  assert.ok(isTls13ServerHello(hello.payload), `the server selected TLS 1.3 (ServerHello ${hello.payload.subarray(0, 12).toString('hex')}…)`);
  const clientData = payloads.filter((s) => s.dport === 15008 && echoIps.has(s.dst));
  assert.ok(clientData.length > 0, 'client → :15008 payloads captured');

  // The control: a non-enrolled pod's plaintext to the same server IS seen by the same capture.
  const control = await captureUnderlay();
  const plain = await curl(OUTSIDE, 'outside', `http://${echo[0]!.ip}:8080/`, ['-d', `${marker}-plain`]);
  const { segments: plainSegments, report: plainReport } = await control.stop();
  assert.ok(answeredByEcho(plain), `outside reached echo in plaintext: ${plain.stdout} ${plain.stderr}`);
  assert.ok(plainSegments.some((s) => s.dport === 8080 && s.payload.includes(`${marker}-plain`)), `the capture does see a plaintext marker (so its absence above means something); flows: ${flows(plainSegments)}; ${plainReport}`);
});

meshTest("the server's metrics and access log show the client's SPIFFE principal over mutual_tls; the client's report it as source", async () => {
  const res = await curl(NS, 'client', ECHO_URL);
  assert.ok(answeredByEcho(res), res.stderr);
  const server = await metrics('node-2');
  const clientSide = await metrics('node-1');
  // Both sides name both workloads: the remote one (on the other node) from its peer record's
  // workload name, which Kiali's graph needs to draw the edge.
  const both = { source_principal: CLIENT_PRINCIPAL, destination_principal: ECHO_PRINCIPAL, connection_security_policy: 'mutual_tls', source_workload: 'client', source_workload_namespace: NS, destination_workload: 'echo', destination_workload_namespace: NS, destination_service: `echo.${NS}.svc.cluster.local` };
  const inbound = { ...both, reporter: 'destination' };
  const outbound = { ...both, reporter: 'source' };
  assert.ok(sum(server, 'istio_tcp_connections_opened_total', inbound) >= 2, `node-2 counts the client's connections as destination: ${server.filter((s) => s.name === 'istio_tcp_connections_opened_total').map((s) => JSON.stringify(s.labels)).join('\n')}`);
  assert.ok(sum(server, 'istio_tcp_received_bytes_total', inbound) > 0, 'node-2 counts the bytes it received from the client');
  assert.ok(sum(server, 'istio_tcp_sent_bytes_total', inbound) > 0, 'node-2 counts the bytes it sent back');
  assert.ok(sum(clientSide, 'istio_tcp_connections_opened_total', outbound) >= 2, `node-1 counts them as source: ${clientSide.filter((s) => s.name === 'istio_tcp_connections_opened_total').map((s) => JSON.stringify(s.labels)).join('\n')}`);
  assert.equal(sum(server, 'istio_tcp_connections_opened_total', { reporter: 'destination', source_principal: CLIENT_PRINCIPAL, connection_security_policy: 'none' }), 0, 'none of them in plaintext');
  assert.ok(sum(clientSide, 'istio_tcp_connections_closed_total', outbound) >= 2, 'the closes are counted too');

  const serverLog = await waitUntil(async () => {
    const lines = (await accessLines('node-2')).filter((l) => l.reporter === 'destination' && l.src_principal === CLIENT_PRINCIPAL);
    return lines.length >= 2 ? lines : undefined;
  }, 10_000, () => "node-2's access log lines for the client");
  assert.ok(serverLog.every((l) => l.security === 'mutual_tls' && l.dst_principal === ECHO_PRINCIPAL), JSON.stringify(serverLog[0]));
  // Access-log lines reach stdout in batches, at the latest a second after the connection ends.
  const clientLog = await waitUntil(async () => {
    const lines = (await accessLines('node-1')).filter((l) => l.reporter === 'source' && l.src_principal === CLIENT_PRINCIPAL && l.dst_principal === ECHO_PRINCIPAL);
    return lines.length >= 2 ? lines : undefined;
  }, 10_000, () => "node-1's access log lines for the client");
  assert.ok(clientLog.every((l) => l.security === 'mutual_tls'), `node-1's access log: ${JSON.stringify(clientLog[0])}`);
  assert.ok([...serverLog, ...clientLog].every((l) => l.src_workload === `${NS}/client` && l.dst_workload === `${NS}/echo`), `both sides name both workloads: ${JSON.stringify(serverLog[0])}`);
});

meshTest('a DENY policy on a principal refuses it and no other; an ALLOW policy admits its principal and rejects the other service account', async () => {
  const denyClient = `apiVersion: security.ambit.dev/v1
kind: AuthorizationPolicy
metadata: {name: deny-client, namespace: ${NS}}
spec:
  selector: {matchLabels: {app: echo}}
  action: DENY
  rules:
  - from: [{source: {principals: ["cluster.local/ns/${NS}/sa/client"]}}]
`;
  assert.ok(answeredByEcho(await curl(NS, 'client', ECHO_URL)), 'the client gets through before any policy');
  await apply(denyClient);
  await waitForCurl(NS, 'client', ECHO_URL, false);
  const denied = await curl(NS, 'client', ECHO_URL);
  assert.notEqual(denied.code, 0, 'the client is refused');
  assert.ok(denied.ms < 4000, `refused fast, not by a timeout (${denied.ms} ms, curl --max-time 8: ${denied.stderr.trim()})`);
  assert.ok(answeredByEcho(await curl(NS, 'intruder', ECHO_URL)), 'intruder still gets through');
  const denyLog = await waitUntil(async () => (await accessLines('node-2')).find((l) => l.reporter === 'destination' && l.src_principal === CLIENT_PRINCIPAL && /denied by DENY policy mesh\/deny-client/.test(l.error ?? '')), 10_000, () => 'a destination access-log line naming mesh/deny-client');
  assert.equal(denyLog.security, 'mutual_tls');
  assert.notEqual(denyLog.flags, '-', `a refused connection has a response flag: ${JSON.stringify(denyLog)}`);

  await k.ok(['delete', 'authorizationpolicy', 'deny-client', '-n', NS]);
  await waitForCurl(NS, 'client', ECHO_URL, true);

  await apply(`apiVersion: security.ambit.dev/v1
kind: AuthorizationPolicy
metadata: {name: allow-client, namespace: ${NS}}
spec:
  selector: {matchLabels: {app: echo}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/${NS}/sa/client"]}}]
`);
  await waitForCurl(NS, 'intruder', ECHO_URL, false);
  const rejected = await curl(NS, 'intruder', ECHO_URL);
  assert.notEqual(rejected.code, 0, "intruder's certificate (another service account) is rejected");
  assert.ok(rejected.ms < 4000, `refused fast (${rejected.ms} ms)`);
  assert.ok(answeredByEcho(await curl(NS, 'client', ECHO_URL)), 'the client is allowed');
  const allowLog = await waitUntil(async () => (await accessLines('node-2')).find((l) => l.reporter === 'destination' && l.src_principal === INTRUDER_PRINCIPAL && /ALLOW policies apply but none matches.*mesh\/allow-client/.test(l.error ?? '')), 10_000, () => 'a destination access-log line for intruder naming mesh/allow-client');
  assert.equal(allowLog.security, 'mutual_tls');
  await k.ok(['delete', 'authorizationpolicy', 'allow-client', '-n', NS]);
  await waitForCurl(NS, 'intruder', ECHO_URL, true);
});

meshTest('PeerAuthentication STRICT refuses a non-enrolled client; PERMISSIVE lets it in', async () => {
  const [outside] = await pods(OUTSIDE, 'app=outside');
  assert.ok(answeredByEcho(await curl(OUTSIDE, 'outside', ECHO_URL)), 'plaintext is admitted by default (PERMISSIVE)');
  const pa = (mode: string): string => `apiVersion: security.ambit.dev/v1
kind: PeerAuthentication
metadata: {name: default, namespace: ${NS}}
spec: {mtls: {mode: ${mode}}}
`;
  try {
    await apply(pa('STRICT'));
    await waitForCurl(OUTSIDE, 'outside', ECHO_URL, false);
    const refused = await curl(OUTSIDE, 'outside', ECHO_URL);
    assert.notEqual(refused.code, 0);
    assert.ok(refused.ms < 4000, `refused fast (${refused.ms} ms: ${refused.stderr.trim()})`);
    assert.ok(answeredByEcho(await curl(NS, 'client', ECHO_URL)), 'the enrolled client still gets through (mTLS)');
    const line = await waitUntil(async () => (await accessLines('node-2')).find((l) => l.reporter === 'destination' && l.security === 'none' && /STRICT mTLS: plaintext from/.test(l.error ?? '') && (l.src ?? '').startsWith(`${outside!.ip}:`)), 10_000, () => `an access-log line refusing ${outside!.ip} under STRICT`);
    assert.match(line.error!, /PeerAuthentication mesh\/default/);

    await apply(pa('PERMISSIVE'));
    await waitForCurl(OUTSIDE, 'outside', ECHO_URL, true);
    assert.ok(answeredByEcho(await curl(NS, 'client', ECHO_URL)), 'and the enrolled client too');
  } finally {
    await k.run(['delete', 'peerauthentication', 'default', '-n', NS, '--ignore-not-found']);
  }
});

/**
 * The node's DNS query count once it exceeds `floor` (else its last value after 5 s). Polled: the
 * agent reads the listeners' counts while Prometheus scrapes, and a scrape may show the previous
 * collection (reported to the lead), so a query can take one more scrape to appear.
 */
async function dnsQueriesAbove(nodeName: string, floor: number): Promise<number> {
  let last = 0;
  return waitUntil(async () => {
    last = sum(await metrics(nodeName), 'ambit_agent_dns_queries_total');
    return last > floor ? last : undefined;
  }, 5000).catch(() => last);
}

meshTest('a Service name resolves through 15053 to the Service VIP; an SRV query is forwarded to the cluster DNS', async () => {
  const vip = (await k.ok(['get', 'svc', 'echo', '-n', NS, '-o', 'jsonpath={.spec.clusterIP}'])).trim();
  const before1 = sum(await metrics('node-1'), 'ambit_agent_dns_queries_total');
  const a = await execIn(NS, 'client', ['dig', '+short', '+tries=1', '+time=3', `echo.${NS}.svc.cluster.local`]);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(a.stdout.trim(), vip, `the A answer is the Service VIP ${vip}`);
  assert.ok(answeredByEcho(await curl(NS, 'client', ECHO_URL)), 'curl to the Service name works');
  const afterA = await dnsQueriesAbove('node-1', before1 + 1);
  assert.ok(afterA >= before1 + 2, `node-1's agent saw the lookups (${before1} → ${afterA})`);

  const srv = await execIn(NS, 'client', ['dig', '+short', '+tries=1', '+time=3', 'SRV', `_http._tcp.echo.${NS}.svc.cluster.local`]);
  assert.equal(srv.code, 0, srv.stderr);
  assert.match(srv.stdout.trim(), new RegExp(`^0 100 80 echo\\.${NS}\\.svc\\.cluster\\.local\\.$`, 'm'), `the cluster DNS's SRV answer: ${srv.stdout}`);
  const afterSrv = await dnsQueriesAbove('node-1', afterA);
  assert.ok(afterSrv > afterA, `the SRV query went through 15053 too (${afterA} → ${afterSrv})`);
  // The same SRV from a pod outside the mesh: the answer the relay forwarded is the cluster DNS's own.
  const direct = await execIn(OUTSIDE, 'outside', ['dig', '+short', '+tries=1', '+time=3', 'SRV', `_http._tcp.echo.${NS}.svc.cluster.local`]);
  assert.equal(srv.stdout.trim(), direct.stdout.trim(), 'forwarded unchanged');
});

/** Sent from the `outside` pod with its node: each case on its own connection, bounded. */
function badInputScript(ip: string): string {
  return `
const net = require('node:net'); const tls = require('node:tls');
const host = ${JSON.stringify(ip)}, port = 15008, LIMIT = 8000;
function raw(payload) {
  return new Promise((resolve) => {
    const t0 = Date.now(); let got = 0; let error;
    const s = net.connect({ host, port });
    const timer = setTimeout(() => { s.destroy(); resolve({ closed: false, ms: Date.now() - t0, got }); }, LIMIT);
    s.on('connect', () => s.write(payload));
    s.on('data', (d) => (got += d.length));
    s.on('error', (e) => (error = e.code || e.message));
    s.on('close', () => { clearTimeout(timer); resolve({ closed: true, ms: Date.now() - t0, got, error }); });
  });
}
function noCert() {
  return new Promise((resolve) => {
    const t0 = Date.now(); let error; let handshake = false;
    const s = tls.connect({ host, port, rejectUnauthorized: false, ALPNProtocols: ['h2'], minVersion: 'TLSv1.2' });
    const timer = setTimeout(() => { s.destroy(); resolve({ closed: false, ms: Date.now() - t0, handshake }); }, LIMIT);
    s.on('secureConnect', () => { handshake = true; s.write('PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n'); });
    s.on('data', () => {});
    s.on('error', (e) => (error = e.code || e.message));
    s.on('close', () => { clearTimeout(timer); resolve({ closed: true, ms: Date.now() - t0, handshake, error }); });
  });
}
(async () => {
  const out = {};
  out.garbage = await raw(Buffer.concat([Buffer.from([0, 0xff, 0x13, 0x37]), Buffer.alloc(2048, 0x5a)]));
  out.http = await raw('GET / HTTP/1.1\\r\\nHost: echo\\r\\nConnection: close\\r\\n\\r\\n');
  out.noCert = await noCert();
  console.log(JSON.stringify(out));
})();
`;
}

meshTest('garbage, plain HTTP and a TLS client without a certificate on :15008 each close only their own connection', async (t) => {
  const echo = await pods(NS, 'app=echo');
  const [outside] = await pods(OUTSIDE, 'app=outside');
  const before2 = sum(await metrics('node-2'), 'ambit_hbone_rejected_total', { scope: 'connection' });
  // Mesh traffic runs on keep-alive connections throughout: none of it may fail.
  const running = load('client', ['--url', ECHO_URL, '--duration', '12', '--concurrency', '2', '--rps', '20', '--timeout', '5000'], 60_000);
  await sleep(2000);
  const results: Record<string, { closed: boolean; ms: number; error?: string; handshake?: boolean }> = {};
  for (const p of echo) {
    const r = await execIn(OUTSIDE, 'outside', ['node', '-e', badInputScript(p.ip)], 60_000);
    assert.equal(r.code, 0, `the bad-input script ran: ${r.stderr}`);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as typeof results;
    for (const [name, v] of Object.entries(out)) results[`${p.name}:${name}`] = v;
    assert.ok(answeredByEcho(await curl(NS, 'client', `http://${p.ip}:8080/`)), `${p.name} still serves the mesh right after`);
  }
  t.diagnostic(`bad input results: ${JSON.stringify(results)}`);
  for (const [name, v] of Object.entries(results)) {
    assert.ok(v.closed, `${name}: the proxy closed the connection (${JSON.stringify(v)})`);
    assert.ok(v.ms < 5000, `${name}: closed promptly (${v.ms} ms)`);
    if (name.endsWith(':noCert')) assert.match(v.error ?? '', /CERTIFICATE_REQUIRED|ECONNRESET|EPIPE/, `${name}: refused for want of a certificate`);
  }
  const summary = await running;
  assert.equal(summary.errors, 0, `mesh load during the bad input: ${JSON.stringify(summary)}`);
  assert.ok(summary.ok >= 150, `the load ran (${summary.ok} ok)`);
  assert.ok(answeredByEcho(await curl(NS, 'client', ECHO_URL)), 'client → echo works right after');

  const after2 = sum(await metrics('node-2'), 'ambit_hbone_rejected_total', { scope: 'connection' });
  assert.ok(after2 >= before2 + 3 * echo.length, `each refused connection is counted (${before2} → ${after2})`);
  const refusals = (await agentLog('node-2')).filter((l) => typeof l.msg === 'string' && l.msg.startsWith('HBONE connection refused') && String(l.from ?? '').startsWith(`${outside!.ip}:`));
  const said = refusals.map((l) => `${String(l.pod)}: ${String(l.msg)} (${String(l.code)})`);
  assert.ok(refusals.length >= 3 * echo.length, `one log line per refused connection, saying why:\n${said.join('\n')}`);
  for (const p of echo) {
    const mine = said.filter((l) => l.startsWith(`${NS}/${p.name}:`)).join('\n');
    assert.match(mine, /not a TLS 1\.3 client/, `${p.name}: garbage and plain HTTP are named as such:\n${mine}`);
    assert.match(mine, /no client certificate/, `${p.name}: the missing certificate is named:\n${mine}`);
  }
});

meshTest('scaling ambit-control to zero leaves running traffic and new connections between enrolled pods untouched', async (t) => {
  const selector = 'app.kubernetes.io/name=ambit-control';
  const longRun = load('client', ['--url', ECHO_URL, '--duration', '20', '--concurrency', '2', '--rps', '20', '--timeout', '5000'], 90_000);
  try {
    await sleep(3000);
    await k.ok(['scale', 'deployment/ambit-control', '-n', 'ambit-system', '--replicas=0']);
    await waitUntil(async () => ((await k.ok(['get', 'pods', '-n', 'ambit-system', '-l', selector, '-o', 'name'])).trim() === '' ? true : undefined), 60_000, () => 'the ambit-control pods gone');
    for (let i = 0; i < 3; i++) assert.ok(answeredByEcho(await curl(NS, 'client', ECHO_URL)), 'a new connection from client still works');
    assert.ok(answeredByEcho(await curl(NS, 'intruder', ECHO_URL)), 'and from intruder');
    const fresh = await load('client', ['--url', ECHO_URL, '--requests', '30', '--concurrency', '2', '--new-connection', '--timeout', '5000'], 60_000);
    assert.equal(fresh.errors, 0, `new connections with the control plane down: ${JSON.stringify(fresh)}`);
    const summary = await longRun;
    t.diagnostic(`long run across the scale-down: ${summary.ok} ok, ${summary.errors} errors in ${summary.elapsedMs} ms; new connections meanwhile: ${fresh.ok} ok`);
    assert.equal(summary.errors, 0, `the long-lived connections: ${JSON.stringify(summary)}`);
    assert.ok(summary.ok >= 300, `the long run completed (${summary.ok} ok of ~400)`);
  } finally {
    await longRun.catch(() => undefined);
    await k.run(['scale', 'deployment/ambit-control', '-n', 'ambit-system', '--replicas=2']);
  }
  await k.ok(['rollout', 'status', 'deployment/ambit-control', '-n', 'ambit-system', '--timeout=120s'], { timeoutMs: 130_000 });
});

meshTest('certificate renewal under keep-alive and new-connection load drops no connection', async (t) => {
  await k.ok(['patch', 'daemonset/ambit-agent', '-n', 'ambit-system', '--type=json', '-p', JSON.stringify([{ op: 'add', path: '/spec/template/spec/containers/0/env/-', value: { name: 'AMBIT_CERT_TTL', value: '20s' } }])]);
  await rolloutAgents(k);
  await waitMeshReady(EXPECTED);
  // The new agents' first certificates were asked for with the short lifetime.
  for (const n of ['node-1', 'node-2']) {
    const expiry = sum(await metrics(n), 'ambit_agent_certificate_expiry_seconds');
    assert.ok(expiry > 0 && expiry <= 21, `${n}'s certificates live 20 s (soonest expiry in ${expiry} s)`);
  }
  const renewals = async (n: string): Promise<number> => sum(await metrics(n), 'ambit_agent_certificates_issued_total', { kind: 'renewal' });
  const before3 = { n1: await renewals('node-1'), n2: await renewals('node-2') };
  const [keepAlive, fresh] = await Promise.all([
    load('client', ['--url', ECHO_URL, '--duration', '30', '--concurrency', '4', '--rps', '40', '--timeout', '5000'], 90_000),
    load('intruder', ['--url', ECHO_URL, '--duration', '30', '--concurrency', '2', '--rps', '10', '--new-connection', '--timeout', '5000'], 90_000),
  ]);
  const after3 = { n1: await renewals('node-1'), n2: await renewals('node-2') };
  t.diagnostic(`renewals during the run: node-1 ${after3.n1 - before3.n1}, node-2 ${after3.n2 - before3.n2}; keep-alive ${keepAlive.ok} ok / ${keepAlive.errors} errors, new-connection ${fresh.ok} ok / ${fresh.errors} errors`);
  assert.ok(after3.n1 >= before3.n1 + 2 && after3.n2 >= before3.n2 + 2, `both nodes renewed during the run: ${JSON.stringify({ before: before3, after: after3 })}`);
  assert.equal(keepAlive.errors, 0, `keep-alive load: ${JSON.stringify(keepAlive)}`);
  assert.equal(fresh.errors, 0, `new-connection load: ${JSON.stringify(fresh)}`);
  assert.ok(keepAlive.ok >= 1100 && fresh.ok >= 280, `both runs completed: ${keepAlive.ok} keep-alive, ${fresh.ok} new-connection requests`);
  await sleep(1500); // the agent's log lines are written in batches, at least every second
  const refusedNoCert = (await accessLines('node-1')).filter((l) => l.flags === 'UF');
  assert.equal(refusedNoCert.length, 0, `no connection waited in vain for a certificate: ${JSON.stringify(refusedNoCert[0])}`);
});
