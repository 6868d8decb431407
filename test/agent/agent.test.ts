/**
 * ambit-agent on the local cluster (root): `kubectl apply -f daemonset/` with the real kubectl runs
 * the agent DaemonSet from the project's image on both nodes, with the real bridge/host-local
 * first in each node's CNI chain. Shows, in order, on one cluster:
 * - the agent installs ambit-cni into each node's conflist and binary dir, and becomes Ready;
 * - labelling a namespace enrols its running pods without restarting them; a client's connections
 *   to a Service name, a ClusterIP and a pod IP are captured (the agents' metrics count them on
 *   both ends) and still reach the server; kubelet probes keep passing, arriving from the probe
 *   SNAT address;
 * - restarting the agents (a DaemonSet rollout) re-reconciles without duplicating a rule;
 * - with the agent kept off node-2, a new pod there in an enrolled namespace does not start (the
 *   plugin fails closed, the event says why), and starts enrolled once the agent is back;
 * - removing the label leaves each pod's ruleset exactly as before enrolment;
 * - deleting a pod leaves nothing behind (netns, agent state, probe SNAT);
 * - deleting the DaemonSet uninstalls: the conflist is back as it was, the binary and the node's
 *   probe SNAT are gone.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kubectl, waitUntil } from '../helpers/kubectl.js';
import { LocalCluster, type ClusterNode } from '../cluster/cluster.js';
import { DEMO_IMAGES, ensureAmbitImage } from '../cluster/apps/images.js';
import { echoApp } from '../cluster/apps/manifests.js';
import { agentGet, daemonsetDir, rolloutAgents } from '../helpers/ambit.js';

const exec = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const rootOnly = { skip: isRoot ? false : 'needs root (network namespaces, containerd); CI runs as root' } as const;
const NAME = `agt${process.pid % 100000}`;
const NS = 'shop';

let cluster: LocalCluster | undefined;
let k: Kubectl;
/** each node's conflist before the agent touched it */
const conflistBefore = new Map<string, string>();
/** each shop pod's ruleset before enrolment */
const rulesBefore = new Map<string, string>();

const node = (name: string): ClusterNode => cluster!.nodes.find((n) => n.name === name)!;

async function conflistText(n: ClusterNode): Promise<string> {
  const files = (await readdir(n.fs.cniConfDir)).filter((f) => f.endsWith('.conflist')).sort();
  assert.ok(files.length > 0, `no conflist in ${n.fs.cniConfDir}`);
  return readFile(join(n.fs.cniConfDir, files[0]!), 'utf8');
}

interface PodInfo {
  name: string;
  node: string;
  ip: string;
  uid: string;
  ready: boolean;
  restarts: number;
  containerIds: string[];
}

async function pods(selector: string): Promise<PodInfo[]> {
  const list = JSON.parse(await k.ok(['get', 'pods', '-n', NS, '-l', selector, '-o', 'json'])) as { items: any[] };
  return list.items.map((p) => ({
    name: p.metadata.name,
    node: p.spec.nodeName,
    ip: p.status.podIP,
    uid: p.metadata.uid,
    ready: (p.status.conditions ?? []).some((c: any) => c.type === 'Ready' && c.status === 'True'),
    restarts: (p.status.containerStatuses ?? []).reduce((s: number, c: any) => s + (c.restartCount ?? 0), 0),
    containerIds: (p.status.containerStatuses ?? []).map((c: any) => c.containerID),
  }));
}

/** The pod's netns file on its node, found by its IP (as the agent does). */
async function podNetns(pod: PodInfo): Promise<string> {
  const dir = node(pod.node).fs.netnsDir;
  for (const f of await readdir(dir)) {
    const path = join(dir, f);
    const r = await exec('nsenter', [`--net=${path}`, '--', 'ip', '-o', 'addr']).catch(() => undefined);
    if (r?.stdout.includes(` ${pod.ip}/`)) return path;
  }
  throw new Error(`no netns in ${dir} holds ${pod.ip}`);
}

/** Everything rule-like in a netns, counters and timestamps removed: iptables (both backends), nft, ip rules and routes. */
async function ruleset(netns: string): Promise<string> {
  const run = async (...argv: string[]): Promise<string> => {
    const r = await exec('nsenter', [`--net=${netns}`, '--', ...argv]).catch((e: { stdout?: string; stderr?: string }) => ({ stdout: `! ${e.stderr ?? ''}` }));
    return r.stdout;
  };
  const parts = await Promise.all([
    run('iptables-legacy-save'),
    run('ip6tables-legacy-save'),
    run('iptables-nft-save'),
    run('ip6tables-nft-save'),
    run('nft', 'list', 'ruleset'),
    run('ip', 'rule'),
    run('ip', '-6', 'rule'),
    run('ip', 'route', 'show', 'table', 'all'),
  ]);
  return parts
    .join('\n====\n')
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .map((l) => l.replace(/\[\d+:\d+\]/g, '[]').replace(/counter packets \d+ bytes \d+/g, 'counter'))
    .join('\n');
}

function metric(text: string, name: string, labels = ''): number {
  const prefix = labels ? `${name}{${labels}} ` : `${name} `;
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  return line ? Number(line.slice(prefix.length)) : 0;
}

/** The sum of every sample whose line starts with `prefix` (a metric name and its first labels). */
function sumOf(text: string, prefix: string): number {
  return text.split('\n').filter((l) => l.startsWith(prefix)).reduce((n, l) => n + Number(l.split(' ').pop()), 0);
}

async function enrolledOn(nodeName: string): Promise<Array<{ name: string; state: string; uid: string }>> {
  const state = JSON.parse(await agentGet(k, nodeName, 15021, '/debug/state')) as Array<{ name: string; namespace: string; state: string; want: string; uid: string }>;
  return state.filter((p) => p.namespace === NS && p.state === 'enrolled');
}

async function clientCurl(url: string): Promise<string> {
  const r = await k.run(['exec', '-n', NS, 'client', '--', 'curl', '-sS', '--max-time', '5', url], { timeoutMs: 30_000 });
  if (r.code === 0) return r.stdout;
  // What the agents said about it: the line that explains a reset is in one of their logs.
  await sleep(1500); // (their lines are written in batches, at least every second)
  const logs: string[] = [];
  for (const n of ['node-1', 'node-2']) {
    const pod = (await k.run(['get', 'pods', '-n', 'ambit-system', '-l', 'app=ambit-agent', '--field-selector', `spec.nodeName=${n}`, '-o', 'jsonpath={.items[0].metadata.name}'])).stdout.trim();
    if (pod) logs.push(`--- ${n} agent:\n${(await k.run(['logs', '-n', 'ambit-system', pod, '--tail=25'])).stdout}`);
  }
  throw new Error(`curl ${url} from the client exited ${r.code}: ${r.stderr}\n${logs.join('\n')}`);
}

before(async () => {
  if (!isRoot) return;
  cluster = await LocalCluster.up({ name: NAME, nodes: 2 });
  await cluster.importImage(await ensureAmbitImage());
  k = new Kubectl(cluster.server);
  for (const n of cluster.nodes) conflistBefore.set(n.name, await conflistText(n));
  // The app first, in a namespace that is not yet enrolled: enrolment must happen to running pods.
  let r = await k.applyText(`apiVersion: v1\nkind: Namespace\nmetadata: {name: ${NS}}\n---\n${echoApp(NS, 2)}\n---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: ${NS}, labels: {app: client}}
spec:
  nodeName: node-1
  terminationGracePeriodSeconds: 1
  containers: [{name: main, image: ${DEMO_IMAGES.tools}, command: [sleep, "3600"]}]
`);
  assert.equal(r.code, 0, r.stderr);
  await k.ok(['rollout', 'status', 'deployment/echo', '-n', NS, '--timeout=90s'], { timeoutMs: 100_000 });
  await k.ok(['wait', '--for=condition=Ready', 'pod/client', '-n', NS, '--timeout=60s'], { timeoutMs: 70_000 });
  for (const p of await pods('app in (echo, client)')) rulesBefore.set(p.name, await ruleset(await podNetns(p)));
  r = await k.run(['apply', '-f', daemonsetDir()]);
  assert.equal(r.code, 0, r.stderr);
  await rolloutAgents(k);
});

after(async () => {
  await cluster?.down();
});

test('the agent installs ambit-cni into every node and becomes Ready', rootOnly, async () => {
  for (const n of cluster!.nodes) {
    const conf = JSON.parse(await conflistText(n)) as { plugins: Array<{ type: string }> };
    assert.deepEqual(conf.plugins.map((p) => p.type).slice(0, 1), ['bridge'], 'the pod network stays first');
    assert.equal(conf.plugins.at(-1)!.type, 'ambit-cni');
    assert.ok(existsSync(join(n.fs.cniBinDir, 'ambit-cni')), 'the plugin binary is installed');
    assert.match(await agentGet(k, n.name, 15021, '/ready'), /ready/);
    assert.match(await agentGet(k, n.name, 15020, '/metrics'), /ambit_agent_enrolled_pods 0/);
  }
});

test('labelling the namespace enrols running pods without restarting them; captured traffic still flows', rootOnly, async () => {
  const podsBefore = await pods('app in (echo, client)');
  await k.ok(['label', 'namespace', NS, 'ambit.dev/dataplane-mode=ambient']);
  await waitUntil(async () => {
    const all = [...(await enrolledOn('node-1')), ...(await enrolledOn('node-2'))];
    return all.length === 3 ? all : undefined;
  }, 60_000, () => 'the 3 shop pods enrolled');
  const podsAfter = await pods('app in (echo, client)');
  for (const p of podsAfter) {
    const was = podsBefore.find((b) => b.name === p.name)!;
    assert.equal(p.uid, was.uid, `${p.name} was not recreated`);
    assert.deepEqual(p.containerIds, was.containerIds, `${p.name} was not restarted`);
    assert.equal(p.restarts, 0);
    const rules = await ruleset(await podNetns(p));
    assert.notEqual(rules, rulesBefore.get(p.name), `${p.name} has redirection rules`);
  }

  const before1 = await agentGet(k, 'node-1', 15020, '/metrics');
  const echoPods = podsAfter.filter((p) => p.name.startsWith('echo'));
  const clusterIp = (await k.ok(['get', 'svc', 'echo', '-n', NS, '-o', 'jsonpath={.spec.clusterIP}'])).trim();
  for (const url of [`http://echo.${NS}.svc.cluster.local/`, `http://echo/`, `http://${clusterIp}/`, `http://${echoPods[0]!.ip}:8080/`, `http://${echoPods[1]!.ip}:8080/`]) {
    const body = await clientCurl(url);
    assert.match(body, /"pod":\s*"echo-/, `${url} answered by an echo pod: ${body}`);
  }
  const after1 = await agentGet(k, 'node-1', 15020, '/metrics');
  const outbound = metric(after1, 'ambit_agent_captured_connections_total', 'direction="outbound"') - metric(before1, 'ambit_agent_captured_connections_total', 'direction="outbound"');
  assert.ok(outbound >= 5, `node-1's agent captured the client's 5 connections (got ${outbound})`);
  assert.ok(metric(after1, 'ambit_agent_dns_queries_total') > metric(before1, 'ambit_agent_dns_queries_total'), 'DNS lookups went through 15053');
  // node-2's agent took the server side: plaintext captured on 15006 (before the mesh config and
  // certificates arrive) or HBONE on 15008 (after), counted with reporter="destination".
  const text2 = await agentGet(k, 'node-2', 15020, '/metrics');
  const inbound = metric(text2, 'ambit_agent_captured_connections_total', 'direction="inbound"') + sumOf(text2, 'istio_tcp_connections_opened_total{reporter="destination"');
  const echoOnNode2 = echoPods.some((p) => p.node === 'node-2');
  if (echoOnNode2) assert.ok(inbound >= 1, `node-2's agent served the server side of the connections (got ${inbound})`);
});

test('kubelet probes keep passing on enrolled pods, from the probe SNAT address', rootOnly, async () => {
  await sleep(3000);
  for (const p of await pods('app=echo')) {
    assert.ok(p.ready, `${p.name} stays Ready`);
    const logs = await k.ok(['logs', '-n', NS, p.name, '--tail=20']);
    assert.match(logs, /GET \/healthz from 169\.254\.7\.127 -> 200/, `${p.name}'s probes arrive from 169.254.7.127:\n${logs}`);
  }
});

test('restarting the agents re-reconciles without duplicating rules', rootOnly, async () => {
  const shop = await pods('app in (echo, client)');
  const before = new Map<string, string>();
  for (const p of shop) before.set(p.name, await ruleset(await podNetns(p)));
  await k.ok(['rollout', 'restart', 'daemonset/ambit-agent', '-n', 'ambit-system']);
  await rolloutAgents(k);
  await waitUntil(async () => ((await enrolledOn('node-1')).length + (await enrolledOn('node-2')).length === 3 ? true : undefined), 60_000, () => 're-enrolled');
  for (const p of shop) assert.equal(await ruleset(await podNetns(p)), before.get(p.name), `${p.name}'s rules are unchanged`);
  assert.match(await clientCurl('http://echo/'), /"pod":\s*"echo-/);
});

test('with the agent away, a new pod in an enrolled namespace waits; it starts enrolled once the agent is back', rootOnly, async () => {
  const node2 = 'node-2';
  await k.ok(['patch', 'daemonset/ambit-agent', '-n', 'ambit-system', '--type=merge', '-p', JSON.stringify({ spec: { template: { spec: { nodeSelector: { 'kubernetes.io/hostname': 'node-1' } } } } })]);
  await waitUntil(async () => ((await k.ok(['get', 'pods', '-n', 'ambit-system', '-l', 'app=ambit-agent', '--field-selector', `spec.nodeName=${node2}`, '-o', 'name'])).trim() === '' ? true : undefined), 60_000, () => 'the agent gone from node-2');
  const r = await k.applyText(`apiVersion: v1
kind: Pod
metadata: {name: late, namespace: ${NS}, labels: {app: late}}
spec:
  nodeName: ${node2}
  terminationGracePeriodSeconds: 1
  containers: [{name: main, image: ${DEMO_IMAGES.tools}, command: [sleep, "3600"]}]
`);
  assert.equal(r.code, 0, r.stderr);
  const event = await waitUntil(async () => {
    const ev = await k.ok(['get', 'events', '-n', NS, '--field-selector', 'involvedObject.name=late', '-o', 'jsonpath={range .items[*]}{.reason}: {.message}{"\\n"}{end}']);
    return /FailedCreatePodSandBox.*ambit-agent is not reachable/.test(ev) ? ev : undefined;
  }, 60_000, () => 'a FailedCreatePodSandBox event naming ambit-agent');
  assert.match(event, /kubectl -n ambit-system get pods/);
  assert.equal((await pods('app=late'))[0]!.ready, false, 'the pod did not start');

  await k.ok(['patch', 'daemonset/ambit-agent', '-n', 'ambit-system', '--type=json', '-p', '[{"op":"remove","path":"/spec/template/spec/nodeSelector"}]']);
  await rolloutAgents(k);
  await k.ok(['wait', '--for=condition=Ready', 'pod/late', '-n', NS, '--timeout=90s'], { timeoutMs: 100_000 });
  await waitUntil(async () => ((await enrolledOn(node2)).some((p) => p.name === 'late') ? true : undefined), 30_000, () => 'late enrolled');
});

test('deleting a pod leaves nothing behind', rootOnly, async () => {
  const [late] = await pods('app=late');
  const netns = await podNetns(late!);
  await k.ok(['delete', 'pod', 'late', '-n', NS, '--wait=true', '--timeout=60s'], { timeoutMs: 70_000 });
  await waitUntil(async () => (!existsSync(netns) ? true : undefined), 30_000, () => `${basename(netns)} removed`);
  await waitUntil(async () => (!(await enrolledOn(late!.node)).some((p) => p.name === 'late') ? true : undefined), 30_000, () => 'late forgotten by the agent');
  const state = JSON.parse(await agentGet(k, late!.node, 15021, '/debug/state')) as Array<{ name: string }>;
  assert.equal(state.filter((p) => p.name === 'late').length, 0);
  const nodeRules = await ruleset(node(late!.node).netns);
  assert.ok(!nodeRules.includes(late!.ip), `the node's probe SNAT no longer names ${late!.ip}`);
});

test('removing the label leaves every pod exactly as before enrolment', rootOnly, async () => {
  await k.ok(['label', 'namespace', NS, 'ambit.dev/dataplane-mode-']);
  await waitUntil(async () => ((await enrolledOn('node-1')).length + (await enrolledOn('node-2')).length === 0 ? true : undefined), 60_000, () => 'no shop pod enrolled');
  for (const p of await pods('app in (echo, client)')) {
    await waitUntil(async () => ((await ruleset(await podNetns(p))) === rulesBefore.get(p.name) ? true : undefined), 20_000, () => `${p.name}'s ruleset back to its pre-enrolment state`);
  }
  assert.match(await clientCurl('http://echo/'), /"pod":\s*"echo-/);
});

test('deleting the DaemonSet uninstalls ambit-cni from every node', rootOnly, async () => {
  await k.ok(['delete', '-f', join(daemonsetDir(), '30-agent.yaml'), '--wait=true', '--timeout=60s'], { timeoutMs: 70_000 });
  for (const n of cluster!.nodes) {
    await waitUntil(async () => ((await conflistText(n)) === conflistBefore.get(n.name) ? true : undefined), 60_000, () => `${n.name}'s conflist restored`);
    await waitUntil(() => (!existsSync(join(n.fs.cniBinDir, 'ambit-cni')) ? true : undefined), 10_000, () => `${n.name}'s ambit-cni binary removed`);
    await waitUntil(async () => (!/AMBIT|ambit-node/.test(await ruleset(n.netns)) ? true : undefined), 10_000, () => `${n.name}'s probe SNAT removed`);
  }
});
