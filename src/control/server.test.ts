/**
 * The composed control plane in process, against the API test server with daemonset/ applied by
 * the real kubectl and the control plane running as its own service account (so RBAC is the
 * manifests'): readiness, the CA Secret and published roots, node-scoped push, status conditions
 * (Accepted from validation, Programmed from a NACK), CSRs, two replicas agreeing on versions,
 * metrics. Fast and rootless; test/control/control.test.ts runs the same program in the local cluster.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { startServer, waitUntil, type Kubectl } from '../../test/helpers/kubectl.js';
import type { ApiServer } from '../../test/cluster/apiserver/server.js';
import { ControlClient, ControlError, type ConfigUpdate } from '../api/client.js';
import type { ResourceError } from '../api/types.js';
import { parseControlConfig } from '../config/control.js';
import { createKeyAndCsr } from '../identity/ca.js';
import { KubeConnection } from '../k8s/client.js';
import { ControlMetrics, startAdminServer } from '../telemetry/metrics.js';
import { ROOT_CERT_KEY } from './ca-secret.js';
import { ControlPlane } from './server.js';

/** daemonset/ of the repository, found by walking up from the compiled test (dist layouts differ). */
function findDaemonsetDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++, dir = dirname(dir)) if (existsSync(join(dir, 'daemonset', '00-namespace.yaml'))) return join(dir, 'daemonset');
  throw new Error('daemonset/00-namespace.yaml not found above the test file');
}
const daemonsetDir = findDaemonsetDir();

let server: ApiServer;
let k: Kubectl;
let stopServer: () => Promise<void>;
const planes: ControlPlane[] = [];
const clients: ControlClient[] = [];
let roots: string;
const pods = new Map<string, string>(); // name → uid

async function startPlane(): Promise<ControlPlane> {
  const token = server.issueServiceAccountToken('ambit-system', 'ambit-control', { expirationSeconds: 3600 }).token;
  const kubeconfig = join(k.dir, `control-${planes.length}.kubeconfig`);
  server.writeKubeconfig(kubeconfig, token, 'ambit-control');
  const parsed = parseControlConfig({}, ['--kubeconfig', kubeconfig, '--grpc-address=127.0.0.1:0', '--metrics-address=127.0.0.1:0', '--debounce=5ms']);
  assert.ok(parsed.ok, JSON.stringify(parsed));
  const plane = await ControlPlane.start({ config: parsed.config, kube: KubeConnection.fromKubeconfig(server.kubeconfig(token, 'ambit-control')), log: pino({ level: 'silent' }), metrics: new ControlMetrics({ processMetrics: false }) });
  planes.push(plane);
  await waitUntil(() => plane.readiness().ready || undefined, 20_000, () => `readiness: ${plane.readiness().reason}`);
  return plane;
}

async function createPod(name: string, ns: string, node: string, sa: string, labels: Record<string, string> = {}): Promise<string> {
  await k.ok(['apply', '-f', '-'], {
    stdin: JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns, labels }, spec: { nodeName: node, serviceAccountName: sa, containers: [{ name: 'c', image: 'x' }] } }),
  });
  const uid = (await k.ok(['get', 'pod', name, '-n', ns, '-o', 'jsonpath={.metadata.uid}'])).trim();
  pods.set(name, uid);
  return uid;
}

function agentToken(podName: string): string {
  return server.issueServiceAccountToken('ambit-system', 'ambit-agent', { boundObjectRef: { kind: 'Pod', name: podName, uid: pods.get(podName)! } }).token;
}

function client(plane: ControlPlane, token: string): ControlClient {
  const c = new ControlClient({ address: `127.0.0.1:${plane.pushPort}`, rootCertsPem: roots, token: () => token, serverName: 'ambit-control.ambit-system.svc' });
  clients.push(c);
  return c;
}

function subscribe(plane: ControlPlane, node: string, token: string, reject?: (u: ConfigUpdate) => ResourceError[] | void) {
  const updates: ConfigUpdate[] = [];
  const sub = client(plane, token).subscribe({ node, onUpdate: (u) => (updates.push(u), reject?.(u)), backoff: { initialMs: 50, maxMs: 200 } });
  return { updates, sub };
}

async function conditions(kind: string, ns: string, name: string): Promise<{ type: string; status: string; reason: string; message: string }[]> {
  const obj = JSON.parse(await k.ok(['get', kind, name, '-n', ns, '-o', 'json'])) as { status?: { conditions?: [] } };
  return obj.status?.conditions ?? [];
}

before(async () => {
  ({ server, kubectl: k, stop: stopServer } = await startServer());
  const r = await k.run(['apply', '-f', daemonsetDir]);
  assert.equal(r.code, 0, r.stderr);
  await k.ok(['create', 'namespace', 'shop']);
  await k.ok(['label', 'namespace', 'shop', 'ambit.dev/dataplane-mode=ambient']);
  await k.ok(['create', 'serviceaccount', 'web', '-n', 'shop']);
  await createPod('agent-n1', 'ambit-system', 'n1', 'ambit-agent');
  await createPod('agent-n2', 'ambit-system', 'n2', 'ambit-agent');
  await createPod('web-n1', 'shop', 'n1', 'web', { app: 'web' });
  await createPod('web-n2', 'shop', 'n2', 'web', { app: 'web' });
  const plane = await startPlane();
  void plane;
  roots = JSON.parse(await k.ok(['get', 'configmap', 'ambit-root-cert', '-n', 'ambit-system', '-o', 'json'])).data[ROOT_CERT_KEY];
});

after(async () => {
  for (const c of clients) c.close();
  for (const p of planes) await p.stop(100);
  await stopServer();
});

test('the CA is kept in its Secret and the roots are published for agents', async () => {
  const secret = JSON.parse(await k.ok(['get', 'secret', 'ambit-ca', '-n', 'ambit-system', '-o', 'json'])) as { data: Record<string, string> };
  assert.ok(secret.data['ca-key.pem'] && secret.data['root-cert.pem']);
  assert.equal(Buffer.from(secret.data['root-cert.pem']!, 'base64').toString().trim(), roots.trim());
});

test('an agent gets the snapshot of its own node only', async () => {
  const a = subscribe(planes[0]!, 'n1', agentToken('agent-n1'));
  await waitUntil(() => a.updates[0], 5000, () => 'first snapshot');
  const snap = a.updates[0]!.snapshot;
  assert.equal(snap.node, 'n1');
  assert.deepEqual(Object.values(snap.workloads).map((w) => w.name).sort(), ['agent-n1', 'web-n1']);
  assert.ok(snap.trust.roots.length > 0);
  a.sub.close();
});

test('a node the caller does not run on is refused', async () => {
  const events: string[] = [];
  const sub = client(planes[0]!, agentToken('agent-n1')).subscribe({ node: 'n2', onUpdate: () => undefined, onConnection: (e) => events.push(e.state === 'connected' ? 'connected' : e.error.codeName), backoff: { initialMs: 1000, maxMs: 1000 } });
  await waitUntil(() => events[0], 5000, () => 'a refusal');
  sub.close();
  assert.equal(events[0], 'PERMISSION_DENIED');
});

test('an invalid policy gets Accepted=False, a valid one Accepted=True, and only the valid one is pushed', async () => {
  const a = subscribe(planes[0]!, 'n1', agentToken('agent-n1'));
  await waitUntil(() => a.updates[0], 5000, () => 'first snapshot');
  await k.ok(['apply', '-f', '-'], {
    stdin: `
apiVersion: security.ambit.dev/v1
kind: AuthorizationPolicy
metadata: {name: good, namespace: shop}
spec: {selector: {matchLabels: {app: web}}, action: ALLOW, rules: [{}]}
---
apiVersion: security.ambit.dev/v1
kind: AuthorizationPolicy
metadata: {name: bad, namespace: shop}
spec: {action: ALLOW, rules: [{from: [{source: {ipBlocks: ["999.0.0.1/99"]}}]}]}
`,
  });
  const bad = await waitUntil(async () => (await conditions('authorizationpolicy', 'shop', 'bad')).find((c) => c.type === 'Accepted'), 10_000, () => 'Accepted on bad');
  assert.equal(bad.status, 'False');
  assert.match(bad.message, /ipBlocks/);
  const good = await waitUntil(async () => (await conditions('authorizationpolicy', 'shop', 'good')).find((c) => c.type === 'Accepted'), 10_000, () => 'Accepted on good');
  assert.equal(good.status, 'True');
  await waitUntil(() => a.sub.snapshot?.authorizationPolicies['shop/good'], 5000, () => 'good policy pushed');
  assert.equal(a.sub.snapshot?.authorizationPolicies['shop/bad'], undefined);
  a.sub.close();
});

test('a NACK is reported as Programmed=False on the object and cleared when the object changes', async () => {
  const a = subscribe(planes[0]!, 'n1', agentToken('agent-n1'), (u) => {
    const p = u.snapshot.authorizationPolicies['shop/nacked'];
    return p && !p.rules.some((r) => r.to) ? [{ type: 'authorizationPolicies', key: 'shop/nacked', message: 'this agent cannot enforce it' }] : undefined;
  });
  await waitUntil(() => a.updates[0], 5000, () => 'first snapshot');
  await k.ok(['apply', '-f', '-'], { stdin: 'apiVersion: security.ambit.dev/v1\nkind: AuthorizationPolicy\nmetadata: {name: nacked, namespace: shop}\nspec: {action: DENY, rules: [{}]}\n' });
  const programmed = await waitUntil(async () => (await conditions('authorizationpolicy', 'shop', 'nacked')).find((c) => c.type === 'Programmed'), 10_000, () => 'Programmed condition');
  assert.equal(programmed.status, 'False');
  assert.equal(programmed.reason, 'RejectedByAgent');
  assert.match(programmed.message, /node n1.*this agent cannot enforce it/);
  assert.equal((await conditions('authorizationpolicy', 'shop', 'nacked')).find((c) => c.type === 'Accepted')?.status, 'True');
  await k.ok(['apply', '-f', '-'], { stdin: 'apiVersion: security.ambit.dev/v1\nkind: AuthorizationPolicy\nmetadata: {name: nacked, namespace: shop}\nspec: {action: DENY, rules: [{to: [{operation: {ports: ["81"]}}]}]}\n' });
  await waitUntil(async () => ((await conditions('authorizationpolicy', 'shop', 'nacked')).some((c) => c.type === 'Programmed') ? undefined : true), 10_000, () => 'Programmed cleared');
  a.sub.close();
});

test('certificates: own node granted with exactly the SPIFFE ID; another node\'s pod and a non-agent token refused', async () => {
  const c = client(planes[0]!, agentToken('agent-n1'));
  const { csrPem } = await createKeyAndCsr();
  const ok = await c.sign({ podUid: pods.get('web-n1')!, csrPem });
  assert.equal(ok.identity, 'spiffe://cluster.local/ns/shop/sa/web');
  const denied = await c.sign({ podUid: pods.get('web-n2')!, csrPem }).catch((e: ControlError) => e);
  assert.ok(denied instanceof ControlError);
  assert.equal(denied.codeName, 'PERMISSION_DENIED');
  assert.match(denied.details, /not on the caller's node n1/);
  const webToken = server.issueServiceAccountToken('shop', 'web', { boundObjectRef: { kind: 'Pod', name: 'web-n1', uid: pods.get('web-n1')! } }).token;
  const notAgent = await client(planes[0]!, webToken).sign({ podUid: pods.get('web-n1')!, csrPem }).catch((e: ControlError) => e);
  assert.ok(notAgent instanceof ControlError);
  assert.equal(notAgent.codeName, 'PERMISSION_DENIED');
  assert.match(notAgent.details, /shop\/web/);
});

test('a second replica computes the same versions: an agent resumes there with an empty delta', async () => {
  const second = await startPlane();
  await waitUntil(() => (second.hub.current('n2')?.version === planes[0]!.hub.current('n2')?.version ? true : undefined), 10_000, () => 'equal versions');
  const a = subscribe(planes[0]!, 'n2', agentToken('agent-n2'));
  await waitUntil(() => a.updates[0], 5000, () => 'first snapshot');
  const held = a.sub.snapshot!;
  a.sub.close();
  const updates: ConfigUpdate[] = [];
  const sub = client(second, agentToken('agent-n2')).subscribe({ node: 'n2', resumeVersion: held.version, resumeSnapshot: held, onUpdate: (u) => void updates.push(u) });
  await waitUntil(() => updates[0], 5000, () => 'resume');
  sub.close();
  assert.ok(updates[0]!.delta, 'resumed with a delta, not a full snapshot');
  assert.equal(updates[0]!.snapshot.version, held.version);
});

test('metrics and readiness are served', async () => {
  const metrics = new ControlMetrics({ processMetrics: false });
  const admin = await startAdminServer({ host: '127.0.0.1', port: 0, registry: metrics.registry, readiness: () => planes[0]!.readiness() });
  try {
    const ready = await fetch(`http://127.0.0.1:${admin.boundPort}/ready`);
    assert.equal(ready.status, 200);
    const text = await (await fetch(`http://127.0.0.1:${admin.boundPort}/metrics`)).text();
    for (const name of ['ambit_control_connected_agents', 'ambit_control_push_latency_seconds', 'ambit_control_snapshot_bytes', 'ambit_control_nacks_total', 'ambit_control_csrs_total', 'ambit_control_watch_restarts_total']) assert.match(text, new RegExp(name));
  } finally {
    admin.close();
  }
});
