/**
 * ambit-control in the local cluster (root): `kubectl apply -f daemonset/` with the real kubectl
 * runs two control-plane replicas from the project's image; agents are probe pods of the
 * ambit-agent service account on each node (test/control/probe.ts), talking to the Service with
 * their own pod-bound token. Shows: node-scoped snapshots; a Deployment scaled, a namespace
 * relabelled and a policy added each reach the interested agent as a delta and not the other; an
 * invalid policy gets Accepted=False and disturbs nothing; certificates (granted with exactly the
 * SPIFFE ID and valid against the bundle; refused for another node's pod, another identity, a
 * non-agent token; malformed input answered with clear errors, no crash); a killed replica's
 * agents move to the other with their config intact.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kubectl, waitUntil } from '../helpers/kubectl.js';
import { LocalCluster } from '../cluster/cluster.js';
import { AMBIT_IMAGE, DEMO_IMAGES, ensureAmbitImage } from '../cluster/apps/images.js';
import { PROBE_SCRIPT } from './probe.js';
import { daemonsetDir } from '../helpers/ambit.js';

const isRoot = process.getuid?.() === 0;
const rootOnly = { skip: isRoot ? false : 'needs root (network namespaces, containerd); CI runs as root' } as const;
const NAME = `ctl${process.pid % 100000}`;
/** how long an uninterested agent is watched for a message it must not get */
const QUIET_MS = 2500;

let cluster: LocalCluster | undefined;
let k: Kubectl;
const uids = new Map<string, string>();

interface ProbeUpdate {
  ev: 'update';
  kind: 'snapshot' | 'delta';
  from?: string;
  to: string;
  changed?: Record<string, string[]>;
  snapshot: { node: string; version: string; workloads: string[]; services: string[]; authorizationPolicies: string[]; roots: number };
}
type ProbeEvent = ProbeUpdate | { ev: 'conn'; state: string; code?: string; details?: string };

async function apply(manifest: string): Promise<void> {
  const r = await k.applyText(manifest);
  assert.equal(r.code, 0, r.stderr);
}

/** Everything a long-running probe printed so far. */
async function probeEvents(pod: string): Promise<ProbeEvent[]> {
  const text = await k.ok(['logs', '-n', 'ambit-system', pod]);
  return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as ProbeEvent);
}
const updatesOf = (events: ProbeEvent[]): ProbeUpdate[] => events.filter((e): e is ProbeUpdate => e.ev === 'update');

/** Runs a one-shot probe command in `pod`; returns its JSON answer. */
async function probe(pod: string, args: string[]): Promise<Record<string, any>> {
  const out = await k.ok(['exec', '-n', 'ambit-system', pod, '--', 'node', '/probe/probe.mjs', ...args], { timeoutMs: 60_000 });
  const line = out.split('\n').filter((l) => l.startsWith('{')).pop();
  assert.ok(line, `no answer from the probe: ${out}`);
  return JSON.parse(line);
}

/** Waits for `interested` to get one more update than `before` satisfying `check`, then makes sure `others` got none for QUIET_MS. */
async function expectDeltaOnlyAt(interested: string, others: string[], change: () => Promise<void>, check: (u: ProbeUpdate) => boolean): Promise<ProbeUpdate> {
  const before = new Map<string, number>();
  for (const p of [interested, ...others]) before.set(p, updatesOf(await probeEvents(p)).length);
  await change();
  const got = await waitUntil(async () => updatesOf(await probeEvents(interested)).slice(before.get(interested)!).find(check), 30_000, () => `a matching delta at ${interested}`);
  assert.equal(got.kind, 'delta');
  await sleep(QUIET_MS);
  for (const p of others) {
    const extra = updatesOf(await probeEvents(p)).slice(before.get(p)!);
    assert.deepEqual(extra.map((u) => u.changed), [], `${p} is not interested but got updates`);
  }
  return got;
}

async function uidOf(ns: string, pod: string): Promise<string> {
  return (await k.ok(['get', 'pod', pod, '-n', ns, '-o', 'jsonpath={.metadata.uid}'])).trim();
}

function probePod(name: string, node: string, serviceAccount: string, args: string[], controlIp: string): string {
  return `
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: ambit-system, labels: {app: ambit-probe}}
spec:
  nodeName: ${node}
  serviceAccountName: ${serviceAccount}
  terminationGracePeriodSeconds: 1
  containers:
  - name: probe
    image: ${AMBIT_IMAGE}
    args: ${JSON.stringify(args)}
    env: [{name: CONTROL_ADDRESS, value: "${controlIp}:15012"}]
    volumeMounts:
    - {name: probe, mountPath: /probe}
    - {name: roots, mountPath: /etc/ambit/ca}
  volumes:
  - {name: probe, configMap: {name: ambit-probe}}
  - {name: roots, configMap: {name: ambit-root-cert}}
`;
}

function pinnedPod(ns: string, name: string, node: string, sa: string, labels: Record<string, string>): string {
  return `
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: ${ns}, labels: ${JSON.stringify(labels)}}
spec:
  nodeName: ${node}
  serviceAccountName: ${sa}
  terminationGracePeriodSeconds: 1
  containers: [{name: main, image: ${DEMO_IMAGES.tools}, command: [sleep, "3600"]}]
`;
}

before(async () => {
  if (!isRoot) return;
  cluster = await LocalCluster.up({ name: NAME, nodes: 2 });
  await cluster.importImage(await ensureAmbitImage());
  k = new Kubectl(cluster.server);
  const r = await k.run(['apply', '-f', daemonsetDir()]);
  assert.equal(r.code, 0, r.stderr);
  await k.ok(['rollout', 'status', 'deployment/ambit-control', '-n', 'ambit-system', '--timeout=120s'], { timeoutMs: 130_000 });

  // the mesh: shop (ambient) with pods on both nodes; store (ambient) with a Deployment on node-1 only;
  // lab (not ambient) on node-2. Nodes get the Services of the namespaces of their enrolled pods,
  // so node-2 is not interested in store.
  await apply(`
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {ambit.dev/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: lab}
---
apiVersion: v1
kind: Namespace
metadata: {name: store, labels: {ambit.dev/dataplane-mode: ambient}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: solo, namespace: store}
spec:
  replicas: 1
  selector: {matchLabels: {app: solo}}
  template:
    metadata: {labels: {app: solo}}
    spec:
      nodeSelector: {kubernetes.io/hostname: node-1}
      terminationGracePeriodSeconds: 1
      containers: [{name: main, image: ${DEMO_IMAGES.tools}, command: [sleep, "3600"]}]
---
apiVersion: v1
kind: Service
metadata: {name: solo, namespace: store}
spec: {selector: {app: solo}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
${pinnedPod('shop', 'web-1', 'node-1', 'web', { app: 'web' })}
---
${pinnedPod('shop', 'web-2', 'node-2', 'web', { app: 'web' })}
---
${pinnedPod('lab', 'lab-2', 'node-2', 'default', { app: 'lab' })}
`);
  await k.ok(['rollout', 'status', 'deployment/solo', '-n', 'store', '--timeout=90s'], { timeoutMs: 100_000 });
  for (const [ns, pod] of [['shop', 'web-1'], ['shop', 'web-2'], ['lab', 'lab-2']] as const) {
    await k.ok(['wait', '--for=condition=Ready', `pod/${pod}`, '-n', ns, '--timeout=60s'], { timeoutMs: 70_000 });
    uids.set(pod, await uidOf(ns, pod));
  }

  // the probes: agents on node-1 and node-2, and a pod of a non-agent service account
  const controlIp = (await k.ok(['get', 'service', 'ambit-control', '-n', 'ambit-system', '-o', 'jsonpath={.spec.clusterIP}'])).trim();
  await apply(JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'ambit-probe', namespace: 'ambit-system' }, data: { 'probe.mjs': PROBE_SCRIPT } }));
  await apply([
    probePod('probe-1', 'node-1', 'ambit-agent', ['/probe/probe.mjs', 'subscribe', 'node-1'], controlIp),
    probePod('probe-2', 'node-2', 'ambit-agent', ['/probe/probe.mjs', 'subscribe', 'node-2'], controlIp),
    probePod('probe-other', 'node-1', 'default', ['-e', 'setInterval(() => {}, 1 << 30)'], controlIp),
  ].join('\n---\n'));
  for (const p of ['probe-1', 'probe-2']) {
    await waitUntil(async () => updatesOf(await probeEvents(p).catch(() => []))[0], 90_000, () => `the first config at ${p}`);
  }
  await k.ok(['wait', '--for=condition=Ready', 'pod/probe-other', '-n', 'ambit-system', '--timeout=60s'], { timeoutMs: 70_000 });
  // let the start-up settle (pod status changes of the probes themselves)
  await sleep(2000);
});

after(async () => {
  k?.cleanup();
  await cluster?.down();
});

test('each agent gets the config of its own node', rootOnly, async () => {
  const s1 = updatesOf(await probeEvents('probe-1')).pop()!.snapshot;
  const s2 = updatesOf(await probeEvents('probe-2')).pop()!.snapshot;
  assert.equal(s1.node, 'node-1');
  assert.ok(s1.workloads.every((w) => w.includes('@node-1:')), s1.workloads.join(' '));
  assert.ok(s2.workloads.every((w) => w.includes('@node-2:')), s2.workloads.join(' '));
  assert.ok(s1.workloads.includes('shop/web-1@node-1:true'));
  assert.ok(s1.workloads.some((w) => w.startsWith('store/solo-') && w.endsWith(':true')));
  assert.ok(s2.workloads.includes('shop/web-2@node-2:true'));
  assert.ok(s2.workloads.includes('lab/lab-2@node-2:false'));
  assert.ok(s1.services.includes('store/solo'), 'node-1 runs solo: its Service is in scope');
  assert.ok(!s2.services.includes('store/solo'), 'node-2 has no solo endpoint and no enrolled pod in its namespace');
  assert.ok(s1.roots >= 1);
});

test('scaling a Deployment reaches the agent of its node as a delta, and not the other', rootOnly, async () => {
  const got = await expectDeltaOnlyAt('probe-1', ['probe-2'], () => k.ok(['scale', 'deployment/solo', '-n', 'store', '--replicas=2']).then(() => undefined), (u) => u.snapshot.workloads.filter((w) => w.startsWith('store/solo-')).length === 2);
  assert.ok(got.changed?.['workloads']?.length);
});

test('relabelling a namespace reaches the agent of its pods as a delta, and not the other', rootOnly, async () => {
  const got = await expectDeltaOnlyAt('probe-2', ['probe-1'], () => k.ok(['label', 'namespace', 'lab', 'ambit.dev/dataplane-mode=ambient']).then(() => undefined), (u) => u.snapshot.workloads.includes('lab/lab-2@node-2:true'));
  assert.deepEqual(got.changed, { workloads: [uids.get('lab-2')] });
});

test('adding a policy reaches the agent of the workloads it selects as a delta, and not the other', rootOnly, async () => {
  const got = await expectDeltaOnlyAt(
    'probe-1',
    ['probe-2'],
    () => apply('apiVersion: security.ambit.dev/v1\nkind: AuthorizationPolicy\nmetadata: {name: solo-allow, namespace: store}\nspec: {selector: {matchLabels: {app: solo}}, action: ALLOW, rules: [{from: [{source: {namespaces: [shop]}}]}]}\n'),
    (u) => u.snapshot.authorizationPolicies.includes('store/solo-allow'),
  );
  assert.deepEqual(got.changed, { authorizationPolicies: ['store/solo-allow'] });
});

test('an invalid policy gets Accepted=False with what to fix, and nothing else changes', rootOnly, async () => {
  const before = await Promise.all(['probe-1', 'probe-2'].map(async (p) => updatesOf(await probeEvents(p)).length));
  await apply('apiVersion: security.ambit.dev/v1\nkind: AuthorizationPolicy\nmetadata: {name: broken, namespace: store}\nspec: {selector: {matchLabels: {app: solo}}, action: ALLOW, rules: [{from: [{source: {ipBlocks: ["10.0.0.300/33"]}}]}]}\n');
  const cond = await waitUntil(async () => {
    const obj = JSON.parse(await k.ok(['get', 'authorizationpolicy', 'broken', '-n', 'store', '-o', 'json'])) as { status?: { conditions?: { type: string; status: string; reason: string; message: string }[] } };
    return obj.status?.conditions?.find((c) => c.type === 'Accepted');
  }, 30_000, () => 'the Accepted condition');
  assert.equal(cond.status, 'False');
  assert.equal(cond.reason, 'Invalid');
  assert.match(cond.message, /ipBlocks/);
  const good = JSON.parse(await k.ok(['get', 'authorizationpolicy', 'solo-allow', '-n', 'store', '-o', 'json'])) as { status?: { conditions?: { type: string; status: string }[] } };
  assert.equal(good.status?.conditions?.find((c) => c.type === 'Accepted')?.status, 'True');
  await sleep(QUIET_MS);
  const after = await Promise.all(['probe-1', 'probe-2'].map(async (p) => updatesOf(await probeEvents(p))));
  assert.deepEqual([after[0]!.length, after[1]!.length], before, 'the invalid policy pushed nothing');
  assert.ok(after[0]!.at(-1)!.snapshot.authorizationPolicies.includes('store/solo-allow'));
});

test('certificates: granted for a pod of the agent\'s node with exactly its SPIFFE ID, valid against the bundle', rootOnly, async () => {
  const r = await probe('probe-1', ['sign', uids.get('web-1')!]);
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.equal(r.identity, 'spiffe://cluster.local/ns/shop/sa/web');
  const leaf = new X509Certificate(r.certChainPem[0]);
  assert.equal(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/shop/sa/web');
  const roots = (r.trustBundlePem as string[]).map((p) => new X509Certificate(p));
  const issuers = [...(r.certChainPem as string[]).slice(1).map((p) => new X509Certificate(p)), ...roots];
  assert.ok(issuers.some((ca) => leaf.checkIssued(ca) && leaf.verify(ca.publicKey)), 'the leaf verifies against the bundle');
  // the bundle the agent gets is the one published for agents
  const published = JSON.parse(await k.ok(['get', 'configmap', 'ambit-root-cert', '-n', 'ambit-system', '-o', 'json'])).data['root-cert.pem'] as string;
  assert.equal(roots[0]!.fingerprint256, new X509Certificate(published).fingerprint256);
});

test('certificates: refused for another node\'s pod, for another identity, and for a non-agent token', rootOnly, async () => {
  const other = await probe('probe-1', ['sign', uids.get('web-2')!]);
  assert.deepEqual([other.ok, other.code], [false, 'PERMISSION_DENIED']);
  assert.match(other.details, /runs on node node-2, not on the caller's node node-1/);
  const wrong = await probe('probe-1', ['sign', uids.get('web-1')!, 'spiffe://cluster.local/ns/shop/sa/admin']);
  assert.deepEqual([wrong.ok, wrong.code], [false, 'PERMISSION_DENIED']);
  assert.match(wrong.details, /runs as service account web/);
  const notAgent = await probe('probe-other', ['sign', uids.get('web-1')!]);
  assert.deepEqual([notAgent.ok, notAgent.code], [false, 'PERMISSION_DENIED']);
  assert.match(notAgent.details, /ambit-system\/default/);
});

test('bad input gets clear errors and disturbs no one', rootOnly, async () => {
  const csr = await probe('probe-1', ['sign-raw', uids.get('web-1')!, 'not a csr']);
  assert.deepEqual([csr.ok, csr.code], [false, 'INVALID_ARGUMENT']);
  assert.match(csr.details, /CERTIFICATE REQUEST/);
  const token = await probe('probe-1', ['sign', uids.get('web-1')!, '-', 'garbage']);
  assert.deepEqual([token.ok, token.code], [false, 'UNAUTHENTICATED']);
  const node = await probe('probe-1', ['subscribe-once', 'node-2']);
  assert.deepEqual([node.ev, node.code], ['conn', 'PERMISSION_DENIED']);
  assert.match(node.details, /runs on node node-1/);
  const badToken = await probe('probe-1', ['subscribe-once', 'node-1', 'garbage']);
  assert.deepEqual([badToken.ev, badToken.code], ['conn', 'UNAUTHENTICATED']);
  // the replicas did not restart and the agents' streams are still the first ones
  const pods = JSON.parse(await k.ok(['get', 'pods', '-n', 'ambit-system', '-l', 'app.kubernetes.io/name=ambit-control', '-o', 'json'])) as { items: { status: { containerStatuses?: { restartCount: number }[] } }[] };
  assert.deepEqual(pods.items.map((p) => p.status.containerStatuses?.[0]?.restartCount), [0, 0]);
  for (const p of ['probe-1', 'probe-2']) assert.deepEqual((await probeEvents(p)).filter((e) => e.ev === 'conn').map((e) => e.state), ['connected'], `${p} kept its stream`);
});

test('killing the replica an agent is connected to moves the agent to the other with no config lost', rootOnly, async () => {
  const held = updatesOf(await probeEvents('probe-1')).pop()!;
  const controls = JSON.parse(await k.ok(['get', 'pods', '-n', 'ambit-system', '-l', 'app.kubernetes.io/name=ambit-control', '-o', 'json'])) as { items: { metadata: { name: string } }[] };
  let victim: string | undefined;
  for (const c of controls.items) {
    const logs = await k.ok(['logs', '-n', 'ambit-system', c.metadata.name]);
    if (logs.split('\n').some((l) => l.includes('"agent subscribed"') && l.includes('ambit-system/probe-1'))) victim = c.metadata.name;
  }
  assert.ok(victim, 'no replica logged the probe\'s subscription');
  const before = (await probeEvents('probe-1')).length;
  await k.ok(['delete', 'pod', victim, '-n', 'ambit-system', '--grace-period=0', '--force']);
  // the dying replica may still push its own pod's deletion; then the stream ends and the agent resumes elsewhere
  const events = await waitUntil(async () => {
    const ev = (await probeEvents('probe-1')).slice(before);
    const cut = ev.findIndex((e) => e.ev === 'conn' && e.state === 'disconnected');
    return cut >= 0 && ev.slice(cut).some((e) => e.ev === 'update') ? ev : undefined;
  }, 60_000, () => 'the agent to lose its stream and resubscribe');
  const cut = events.findIndex((e) => e.ev === 'conn' && e.state === 'disconnected');
  const heldAtCut = updatesOf(events.slice(0, cut)).pop() ?? held;
  const resumed = updatesOf(events.slice(cut))[0]!;
  assert.equal(resumed.kind, 'delta', 'resumed from the version it held, not a full snapshot');
  assert.equal(resumed.from, heldAtCut.to, 'the other replica knew the version the agent held');
  // the only change is the control plane's own pods (the victim went away): the mesh config is intact
  const mesh = (u: ProbeUpdate) => ({
    ...u.snapshot,
    version: '',
    peers: 0,
    workloads: u.snapshot.workloads.filter((w) => !w.startsWith('ambit-system/ambit-control-')),
    services: u.snapshot.services.filter((s) => s !== 'ambit-system/ambit-control'),
  });
  assert.deepEqual(mesh(resumed), mesh(held));
  await k.ok(['rollout', 'status', 'deployment/ambit-control', '-n', 'ambit-system', '--timeout=120s'], { timeoutMs: 130_000 });
  await sleep(2000);
  // and config keeps flowing through the replica it moved to
  await expectDeltaOnlyAt('probe-1', ['probe-2'], () => k.ok(['scale', 'deployment/solo', '-n', 'store', '--replicas=1']).then(() => undefined), (u) => u.snapshot.workloads.filter((w) => w.startsWith('store/solo-')).length === 1);
});
