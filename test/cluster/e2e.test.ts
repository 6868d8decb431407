// Root end-to-end test of the local cluster as a user sees it through the real kubectl: a
// Deployment spread over both nodes, a readiness probe taking a pod out of its Service, a
// DaemonSet of hostNetwork pods limited to the capabilities they were granted, and the project's
// Dockerfile image running. cluster.test.ts covers pod IP / ClusterIP / DNS reachability and
// `down`; kubelet/kubelet.test.ts covers exec, logs, missing images, failing CNI plugins, restarts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Kubectl, waitUntil } from '../helpers/kubectl.js';
import { LocalCluster } from './cluster.js';
import { DEMO_IMAGES, AMBIT_IMAGE, ensureAmbitImage } from './apps/images.js';
import { echoApp } from './apps/manifests.js';

const isRoot = process.getuid?.() === 0;
const rootOnly = { skip: isRoot ? false : 'needs root (network namespaces, containerd); CI runs as root' } as const;
const NAME = `e2e${process.pid % 100000}`;

let cluster: LocalCluster | undefined;
let k: Kubectl;

before(async () => {
  if (!isRoot) return;
  cluster = await LocalCluster.up({ name: NAME, nodes: 2 });
  await cluster.importImage(await ensureAmbitImage());
  k = new Kubectl(cluster.server);
});

after(async () => {
  k?.cleanup();
  await cluster?.down();
});

async function apply(manifest: string): Promise<void> {
  const r = await k.applyText(manifest);
  assert.equal(r.code, 0, r.stderr);
}

async function podsOf(ns: string, selector: string): Promise<{ name: string; node: string; ip: string; ready: boolean; phase: string }[]> {
  const list = JSON.parse(await k.ok(['get', 'pods', '-n', ns, '-l', selector, '-o', 'json'])) as { items: Record<string, any>[] };
  return list.items.map((p) => ({
    name: p.metadata.name,
    node: p.spec.nodeName ?? '',
    ip: p.status.podIP ?? '',
    phase: p.status.phase,
    ready: (p.status.conditions ?? []).some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True'),
  }));
}

test('a Deployment spreads over both nodes with IPs from each node\'s pod CIDR, behind a Service', rootOnly, async () => {
  await k.ok(['create', 'namespace', 'spread']);
  await apply(echoApp('spread', 4));
  await k.ok(['rollout', 'status', 'deployment/echo', '-n', 'spread', '--timeout=90s'], { timeoutMs: 100_000 });
  const pods = await podsOf('spread', 'app=echo');
  assert.equal(pods.length, 4);
  const byNode = new Map<string, number>();
  for (const p of pods) {
    const node = cluster!.node(p.node);
    const prefix = node.podCidr.replace(/\.0\/24$/, '.');
    assert.ok(p.ip.startsWith(prefix), `${p.name} on ${p.node} has ${p.ip}, outside ${node.podCidr}`);
    byNode.set(p.node, (byNode.get(p.node) ?? 0) + 1);
  }
  assert.deepEqual([...byNode.keys()].sort(), ['node-1', 'node-2'], `spread: ${JSON.stringify([...byNode])}`);

  // a readiness probe that starts failing takes that pod, and only that pod, out of the endpoints
  const victim = pods[0]!;
  await k.ok(['exec', '-n', 'spread', victim.name, '--', 'curl', '-sS', '-X', 'POST', 'http://127.0.0.1:8080/healthz/fail'], { timeoutMs: 30_000 });
  const readyAddrs = async () => {
    const slices = JSON.parse(await k.ok(['get', 'endpointslices', '-n', 'spread', '-l', 'kubernetes.io/service-name=echo', '-o', 'json'])) as { items: { endpoints?: { addresses: string[]; conditions: { ready?: boolean } }[] }[] };
    return slices.items.flatMap((s) => (s.endpoints ?? []).filter((e) => e.conditions.ready).flatMap((e) => e.addresses)).sort();
  };
  const without = await waitUntil(async () => {
    const a = await readyAddrs();
    return a.length === 3 && !a.includes(victim.ip) ? a : undefined;
  }, 30_000, () => 'the failing pod to leave the ready endpoints');
  assert.deepEqual(without, pods.filter((p) => p !== victim).map((p) => p.ip).sort());
  assert.match(await k.ok(['get', 'pod', victim.name, '-n', 'spread']), /0\/1\s+Running/);
  await k.ok(['exec', '-n', 'spread', victim.name, '--', 'curl', '-sS', '-X', 'POST', 'http://127.0.0.1:8080/healthz/ok'], { timeoutMs: 30_000 });
  await waitUntil(async () => ((await readyAddrs()).length === 4 ? true : undefined), 30_000, () => 'the pod to come back');
});

test('a DaemonSet places one hostNetwork pod per node that can do what its capabilities allow, and no more', rootOnly, async () => {
  await k.ok(['create', 'namespace', 'ds']);
  // NET_ADMIN lets it add a link in the node's network; without SYS_ADMIN it cannot mount
  const script = [
    'set -u',
    'ip link add ambit-probe0 type veth peer name ambit-probe1 && echo CAN_NET_ADMIN && ip link del ambit-probe0',
    'mount -t tmpfs none /mnt 2>/dev/null && echo CAN_MOUNT || echo NO_MOUNT',
    'exec sleep 3600',
  ].join('; ');
  await apply(`
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: netadmin, namespace: ds}
spec:
  selector: {matchLabels: {app: netadmin}}
  template:
    metadata: {labels: {app: netadmin}}
    spec:
      hostNetwork: true
      terminationGracePeriodSeconds: 1
      containers:
      - name: probe
        image: ${DEMO_IMAGES.tools}
        command: [sh, -c, ${JSON.stringify(script)}]
        securityContext:
          capabilities: {add: [NET_ADMIN], drop: [ALL]}
`);
  await k.ok(['rollout', 'status', 'daemonset/netadmin', '-n', 'ds', '--timeout=90s'], { timeoutMs: 100_000 });
  const pods = await podsOf('ds', 'app=netadmin');
  assert.deepEqual(pods.map((p) => p.node).sort(), ['node-1', 'node-2']);
  for (const p of pods) {
    assert.equal(p.ip, cluster!.node(p.node).ip, 'a hostNetwork pod has its node\'s IP');
    const logs = await waitUntil(async () => {
      const out = await k.ok(['logs', '-n', 'ds', p.name]);
      return /NO_MOUNT|CAN_MOUNT/.test(out) ? out : undefined;
    }, 30_000, () => `logs of ${p.name}`);
    assert.match(logs, /CAN_NET_ADMIN/);
    assert.match(logs, /NO_MOUNT/);
  }
  assert.match(await k.ok(['get', 'ds', 'netadmin', '-n', 'ds']), /^netadmin\s+2\s+2\s+2\s+2\s+2\s/m);
});

test('the project\'s Dockerfile image runs in the cluster', rootOnly, async () => {
  await k.ok(['create', 'namespace', 'img']);
  await apply(`
apiVersion: v1
kind: Pod
metadata: {name: ambit, namespace: img}
spec:
  restartPolicy: Never
  containers:
  - name: ambit
    image: ${AMBIT_IMAGE}
    args: ["-e", "import('/opt/ambit/dist/src/sys/index.js').then((m) => console.log('ambit image ok', typeof m.openNetns))"]
`);
  const out = await waitUntil(async () => {
    const r = await k.run(['logs', '-n', 'img', 'ambit']);
    return /ambit image ok/.test(r.stdout) ? r.stdout : undefined;
  }, 60_000, () => 'the Ambit image to run');
  assert.match(out, /ambit image ok function/);
  await waitUntil(async () => (/Completed/.test(await k.ok(['get', 'pod', 'ambit', '-n', 'img'])) ? true : undefined), 30_000, () => 'Completed');
});
