// Root test: the ambit-cni binary (native/ambit-cni.c) installed by installCni into a real node's
// CNI bin dir and conflist, and run by the node's real containerd (local cluster: bridge +
// host-local + portmap, then ours) with the runtime's own CNI_ARGS. The agent side listens on the
// default abstract socket inside the node's netns, as the hostNetwork agent does, so this also
// shows the per-netns socket design working for a node of the local cluster. Shows that a pod of an
// enrolled namespace starts only after the agent's enrol handler returns; that with the agent's
// server stopped a new pod fails sandbox creation with the plugin's message and starts once the
// server is back; that DEL reaches the agent; and that uninstalling restores the node's conflist
// exactly.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DEFAULT_CNI_SOCKET, type CniPodRequest, type EnrolDecision } from '../../src/api/cni.js';
import { CniServer } from '../../src/agent/cni-server.js';
import { installCni, primaryConfFile, uninstallCni } from '../../src/cni/install.js';
import { LocalCluster, type ClusterNode } from '../cluster/cluster.js';
import { BASE_IMAGE } from '../cluster/runtime/images.js';
import type { ApiClient } from '../cluster/apiserver/controllers/client.js';
import type { KObject } from '../cluster/apiserver/types.js';
import { waitUntil } from '../helpers/kubectl.js';

const isRoot = process.getuid?.() === 0;
const rootOnly = { skip: isRoot ? false : 'needs root (network namespaces, containerd); CI runs as root' } as const;
const NAME = `cni${process.pid % 100000}`;

let cluster: LocalCluster | undefined;
let node: ClusterNode;
let api: ApiClient;
let server: CniServer | undefined;
let originalConflist: string;
let conflistPath: string;

interface Call {
  op: 'add' | 'del';
  req: CniPodRequest;
  at: number;
}
const calls: Call[] = [];
/** Pods whose enrolment the test holds until it resolves the gate. */
const gates = new Map<string, { wait: Promise<void>; open: () => void }>();
const enrolReturnedAt = new Map<string, number>();

function gate(pod: string): () => void {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  gates.set(pod, { wait, open });
  return open;
}

async function startAgentServer(): Promise<void> {
  server = await CniServer.start({
    // the default abstract name, in the node's netns: where containerd runs the plugin
    netns: node.netns,
    handlers: {
      // The stub agent: pods of "mesh" are enrolled (after their gate opens), others are not.
      enrol: async (req): Promise<EnrolDecision> => {
        calls.push({ op: 'add', req, at: Date.now() });
        await gates.get(req.pod.name)?.wait;
        enrolReturnedAt.set(req.pod.name, Date.now());
        return req.pod.namespace === 'mesh' ? 'enrolled' : 'not-enrolled';
      },
      release: async (req) => void calls.push({ op: 'del', req, at: Date.now() }),
    },
  });
}

/** The CNI networks containerd has loaded, as its CRI status reports them. */
async function loadedCniConfig(): Promise<string> {
  const info = (await node.cri.status(true)).info ?? {};
  return info.cniconfig ?? '';
}

const pod = (namespace: string, name: string): KObject =>
  ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace, name },
    spec: { terminationGracePeriodSeconds: 1, containers: [{ name: 'c', image: BASE_IMAGE, command: ['sleep', 'infinity'] }] },
  }) as unknown as KObject;

const podObj = (ns: string, name: string): Record<string, any> | undefined => api.get('v1/pods', ns, name) as Record<string, any> | undefined;
const isRunning = (ns: string, name: string): boolean => podObj(ns, name)?.status?.phase === 'Running';

before(async () => {
  if (!isRoot) return;
  cluster = await LocalCluster.up({ name: NAME, nodes: 1, images: async () => [] });
  node = cluster.nodes[0]!;
  api = cluster.server.registry.clientFor();
  conflistPath = join(node.containerd.cniConfDir, primaryConfFile(readdirSync(node.containerd.cniConfDir))!);
  originalConflist = await readFile(conflistPath, 'utf8');
  await startAgentServer();
  // No agentSocket: the plugin's default, the abstract @ambit/cni of the netns it runs in.
  const installed = await installCni({ confDir: node.containerd.cniConfDir, binDir: node.containerd.cniBinDir, entry: { timeoutMs: 30_000, excludeNamespaces: ['kube-system'] } });
  assert.equal(installed.plugin, join(node.containerd.cniBinDir, 'ambit-cni'));
  // containerd reloads its CNI config when the conf dir changes; wait until it has ours.
  await waitUntil(async () => (await loadedCniConfig()).includes('ambit-cni'), 20_000, () => 'containerd to load the conflist with ambit-cni');
  for (const ns of ['mesh', 'plain']) {
    api.create('v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } } as unknown as KObject);
    // Pod admission needs the namespace's default service account, which a controller creates.
    await waitUntil(() => api.get('v1/serviceaccounts', ns, 'default'), 20_000, () => `the default service account of ${ns}`);
  }
});

after(async () => {
  await server?.close().catch(() => undefined);
  await cluster?.down();
});

test('containerd runs ambit-cni after bridge with the pod\'s CNI_ARGS; the pod starts only after enrol returns', rootOnly, async () => {
  const open = gate('held');
  api.create('v1/pods', pod('mesh', 'held'));
  const call = await waitUntil(() => calls.find((c) => c.op === 'add' && c.req.pod.name === 'held'), 60_000, () => 'containerd to run ambit-cni ADD for mesh/held');
  const uid = podObj('mesh', 'held')!.metadata.uid as string;
  // What the runtime told us: the pod (with its uid), its sandbox, netns and the IP bridge gave it.
  assert.deepEqual(call.req.pod, { namespace: 'mesh', name: 'held', uid });
  assert.equal(call.req.ifname, 'eth0');
  assert.equal(call.req.network, 'ambit-pod-network');
  assert.match(call.req.containerId, /^[0-9a-f]{64}$/);
  assert.equal(call.req.ips.length, 1);
  const podCidrPrefix = node.podCidr.split('.').slice(0, 3).join('.');
  assert.ok(call.req.ips[0]!.startsWith(`${podCidrPrefix}.`), `${call.req.ips[0]} in ${node.podCidr}`);
  // We run after bridge: the pod netns already exists and holds that address.
  await stat(call.req.netns);
  const addrs = execFileSync('nsenter', [`--net=${call.req.netns}`, 'ip', '-o', 'addr', 'show', 'dev', 'eth0'], { encoding: 'utf8' });
  assert.ok(addrs.includes(`${call.req.ips[0]}/`), addrs);

  // Held: no sandbox is ready, no container exists, the pod is not running.
  await new Promise((r) => setTimeout(r, 2000));
  const sandboxes = await node.cri.listPodSandbox();
  assert.equal(sandboxes.filter((s) => s.metadata?.uid === uid && s.state === 'SANDBOX_READY').length, 0, 'no ready sandbox while enrolment is pending');
  const containers = await node.cri.listContainers();
  assert.equal(containers.filter((c) => c.labels?.['io.kubernetes.pod.uid'] === uid).length, 0);
  assert.equal(isRunning('mesh', 'held'), false);

  open();
  await waitUntil(() => isRunning('mesh', 'held'), 60_000, () => `mesh/held to run: ${JSON.stringify(podObj('mesh', 'held')?.status)}`);
  const p = podObj('mesh', 'held')!;
  assert.equal(p.status.podIP, call.req.ips[0]);
  // startedAt has second precision; it cannot precede the second enrol returned in.
  const startedAt = Date.parse(p.status.containerStatuses[0].state.running.startedAt);
  assert.ok(startedAt >= Math.floor(enrolReturnedAt.get('held')! / 1000) * 1000, `container started ${startedAt} before enrol returned ${enrolReturnedAt.get('held')}`);
});

test('a pod outside the mesh is asked about once and starts at once', rootOnly, async () => {
  api.create('v1/pods', pod('plain', 'web'));
  await waitUntil(() => isRunning('plain', 'web'), 60_000, () => 'plain/web to run');
  assert.equal(calls.filter((c) => c.op === 'add' && c.req.pod.name === 'web').length, 1);
});

test('with the agent stopped a mesh pod fails sandbox creation with the plugin\'s message, and starts once it is back', rootOnly, async () => {
  await server!.close();
  server = undefined;
  api.create('v1/pods', pod('mesh', 'second'));
  const failures = () =>
    (api.list('v1/events', { namespace: 'mesh' }).items as Array<Record<string, any>>).filter((e) => e.involvedObject?.name === 'second' && e.reason === 'FailedCreatePodSandBox');
  const ev = await waitUntil(() => failures()[0], 60_000, () => 'a FailedCreatePodSandBox event for mesh/second');
  assert.equal(ev.type, 'Warning');
  assert.match(ev.message, new RegExp(`plugin type="ambit-cni".*ambit-agent is not reachable on this node \\(${DEFAULT_CNI_SOCKET}: Connection refused\\): new pods in enrolled namespaces wait until it runs; check \`kubectl -n ambit-system get pods -l app=ambit-agent -o wide\``));
  assert.equal(isRunning('mesh', 'second'), false);
  assert.equal(calls.filter((c) => c.req.pod.name === 'second').length, 0);
  // Nothing of the failed attempts stays behind in the runtime.
  const uid = podObj('mesh', 'second')!.metadata.uid as string;
  assert.equal((await node.cri.listPodSandbox()).filter((s) => s.metadata?.uid === uid && s.state === 'SANDBOX_READY').length, 0);

  await startAgentServer();
  await waitUntil(() => isRunning('mesh', 'second'), 90_000, () => 'mesh/second to run once the agent is back');
  assert.ok(calls.some((c) => c.op === 'add' && c.req.pod.name === 'second'));
});

test('deleting a pod sends DEL to the agent for the same sandbox', rootOnly, async () => {
  const added = calls.find((c) => c.op === 'add' && c.req.pod.name === 'held')!;
  api.delete('v1/pods', 'mesh', 'held');
  const del = await waitUntil(() => calls.find((c) => c.op === 'del' && c.req.containerId === added.req.containerId), 60_000, () => 'ambit-cni DEL for mesh/held');
  assert.deepEqual(del.req.pod, added.req.pod);
});

test('uninstall restores the node\'s conflist byte for byte and containerd stops calling us', rootOnly, async () => {
  await uninstallCni({ confDir: node.containerd.cniConfDir, binDir: node.containerd.cniBinDir });
  assert.equal(await readFile(conflistPath, 'utf8'), originalConflist);
  await waitUntil(async () => !(await loadedCniConfig()).includes('ambit-cni'), 20_000, () => 'containerd to drop ambit-cni');
  api.create('v1/pods', pod('mesh', 'after'));
  await waitUntil(() => isRunning('mesh', 'after'), 60_000, () => 'mesh/after to run');
  assert.equal(calls.filter((c) => c.req.pod.name === 'after').length, 0);
});
