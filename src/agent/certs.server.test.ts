/**
 * The agent's MeshConfig and CertificateManager against the REAL control plane in process: the
 * API test server with daemonset/ applied by kubectl, the composed ControlPlane running as its own
 * service account, and the agent side talking gRPC/TLS to it with a pod-bound token of an
 * `ambit-agent` pod on node n1 (as the DaemonSet's projected token is). Rootless.
 *
 * Shows: a certificate for a pod of the agent's node carries the pod's SPIFFE ID and chains to
 * the trust bundle; another node's pod is refused with a message that says so; a real renewal
 * (short TTL asked of the CA) replaces key and certificate; an unreachable control plane fails a
 * waiting connection with a clear reason; MeshConfig gets the node's snapshot and a Service added
 * later as a delta, and its indexes follow; ControlLink (the agent's wiring) waits for the roots
 * file, then signs and subscribes.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { startServer, waitUntil, type Kubectl } from '../../test/helpers/kubectl.js';
import type { ApiServer } from '../../test/cluster/apiserver/server.js';
import { ControlClient } from '../api/client.js';
import { parseControlConfig } from '../config/control.js';
import { ROOT_CERT_KEY } from '../control/ca-secret.js';
import { ControlPlane } from '../control/server.js';
import { KubeConnection } from '../k8s/client.js';
import { ControlMetrics } from '../telemetry/metrics.js';
import { CertificateManager, CertificateUnavailableError, type CertSigner, type WorkloadCertificate } from './certs.js';
import { ControlLink } from './control-link.js';
import { MeshConfig, type MeshIndex } from './mesh-config.js';

function findDaemonsetDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++, dir = dirname(dir)) if (existsSync(join(dir, 'daemonset', '00-namespace.yaml'))) return join(dir, 'daemonset');
  throw new Error('daemonset/00-namespace.yaml not found above the test file');
}

const silent = pino({ level: 'silent' });
let server: ApiServer;
let k: Kubectl;
let stopServer: () => Promise<void>;
let plane: ControlPlane;
let roots: string;
const uids = new Map<string, string>();
const closers: (() => void)[] = [];

async function createPod(name: string, ns: string, node: string, sa: string, labels: Record<string, string> = {}): Promise<void> {
  await k.ok(['apply', '-f', '-'], {
    stdin: JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns, labels }, spec: { nodeName: node, serviceAccountName: sa, containers: [{ name: 'c', image: 'x' }] } }),
  });
  uids.set(name, (await k.ok(['get', 'pod', name, '-n', ns, '-o', 'jsonpath={.metadata.uid}'])).trim());
}

/** The agent's ControlClient on node n1 (token bound to the agent pod, as the kubelet projects it). */
function agentClient(address = `127.0.0.1:${plane.pushPort}`): ControlClient {
  const token = server.issueServiceAccountToken('ambit-system', 'ambit-agent', { expirationSeconds: 3600, boundObjectRef: { kind: 'Pod', name: 'agent-n1', uid: uids.get('agent-n1')! } }).token;
  const c = new ControlClient({ address, rootCertsPem: roots, token: () => token, serverName: 'ambit-control.ambit-system.svc' });
  closers.push(() => c.close());
  return c;
}

function manager(client: CertSigner, over: Partial<ConstructorParameters<typeof CertificateManager>[0]> = {}): CertificateManager {
  const m = new CertificateManager({ signer: client, log: silent, backoff: { initialMs: 100, maxMs: 500 }, ...over });
  closers.push(() => m.close());
  return m;
}

const pod = (name: string, ns = 'shop') => ({ uid: uids.get(name)!, namespace: ns, name });

/** The chain verifies against one of the roots: each certificate issued by the next, the last by a root. */
function verifiesAgainst(cert: WorkloadCertificate): boolean {
  const chain = cert.certChainPem.map((p) => new X509Certificate(p));
  const bundle = cert.trustBundlePem.map((p) => new X509Certificate(p));
  for (let i = 0; i < chain.length - 1; i++) if (!(chain[i]!.checkIssued(chain[i + 1]!) && chain[i]!.verify(chain[i + 1]!.publicKey))) return false;
  const last = chain[chain.length - 1]!;
  return bundle.some((root) => last.checkIssued(root) && last.verify(root.publicKey));
}

before(async () => {
  ({ server, kubectl: k, stop: stopServer } = await startServer());
  const r = await k.run(['apply', '-f', findDaemonsetDir()]);
  assert.equal(r.code, 0, r.stderr);
  await k.ok(['create', 'namespace', 'shop']);
  await k.ok(['label', 'namespace', 'shop', 'ambit.dev/dataplane-mode=ambient']);
  await k.ok(['create', 'serviceaccount', 'web', '-n', 'shop']);
  await createPod('agent-n1', 'ambit-system', 'n1', 'ambit-agent');
  await createPod('web-n1', 'shop', 'n1', 'web', { app: 'web' });
  await createPod('web-n2', 'shop', 'n2', 'web', { app: 'web' });
  const token = server.issueServiceAccountToken('ambit-system', 'ambit-control', { expirationSeconds: 3600 }).token;
  const kubeconfig = join(k.dir, 'control.kubeconfig');
  server.writeKubeconfig(kubeconfig, token, 'ambit-control');
  const parsed = parseControlConfig({}, ['--kubeconfig', kubeconfig, '--grpc-address=127.0.0.1:0', '--metrics-address=127.0.0.1:0', '--debounce=5ms']);
  assert.ok(parsed.ok, JSON.stringify(parsed));
  plane = await ControlPlane.start({ config: parsed.config, kube: KubeConnection.fromKubeconfig(server.kubeconfig(token, 'ambit-control')), log: silent, metrics: new ControlMetrics({ processMetrics: false }) });
  await waitUntil(() => plane.readiness().ready || undefined, 20_000, () => `readiness: ${plane.readiness().reason}`);
  roots = JSON.parse(await k.ok(['get', 'configmap', 'ambit-root-cert', '-n', 'ambit-system', '-o', 'json'])).data[ROOT_CERT_KEY];
});

after(async () => {
  for (const c of closers) c();
  await plane?.stop(100);
  await stopServer?.();
});

test('a pod of the agent\'s node gets a certificate with its SPIFFE ID that chains to the trust bundle', async () => {
  const m = manager(agentClient());
  m.ensure(pod('web-n1'));
  const cert = await m.get(uids.get('web-n1')!, { waitMs: 10_000 });
  assert.equal(cert.identity, 'spiffe://cluster.local/ns/shop/sa/web');
  const leaf = new X509Certificate(cert.certChainPem[0]!);
  assert.equal(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/shop/sa/web');
  assert.ok(verifiesAgainst(cert), 'the chain verifies against the trust bundle');
  assert.ok(cert.trustBundlePem.some((r) => roots.includes(r.trim())), 'the bundle holds the published root');
  assert.ok(cert.notAfterMs > Date.now() + 3600_000, 'the CA default lifetime (24 h)');
  assert.equal(m.current(uids.get('web-n1')!), cert);
  assert.equal(JSON.stringify(m.snapshot()).includes('PRIVATE KEY'), false);
});

test('a pod on another node is refused, and a waiting connection is told why', async () => {
  const m = manager(agentClient());
  m.ensure(pod('web-n2'));
  const err = await m.get(uids.get('web-n2')!, { waitMs: 3000 }).catch((e: Error) => e);
  assert.ok(err instanceof CertificateUnavailableError, String(err));
  assert.equal(err.reason, 'denied');
  assert.match(err.message, /^no certificate for pod shop\/web-n2 yet: ambit-control refused to sign it \(PERMISSION_DENIED: .*not on the caller's node n1.*\) — the connection is refused$/);
});

test('renewal: a short lifetime asked of the CA is renewed at half-life with a new key, and consumers hear of it', async () => {
  const m = manager(agentClient(), { ttlSeconds: 2, jitter: 0 });
  const events: { cert: WorkloadCertificate; renewal: boolean }[] = [];
  m.on('issued', (cert, i) => events.push({ cert, renewal: i.renewal }));
  const uid = uids.get('web-n1')!;
  m.ensure(pod('web-n1'));
  const first = await m.get(uid, { waitMs: 10_000 });
  // From the request to notAfter: the 2 s granted plus the request's own latency.
  assert.ok(first.notAfterMs - first.issuedAtMs < 5000, `lifetime ${first.notAfterMs - first.issuedAtMs} ms`);
  const renewed = await waitUntil(() => events.find((e) => e.renewal), 6000, () => 'a renewal');
  assert.notEqual(renewed.cert.keyPem.reveal(), first.keyPem.reveal());
  assert.notEqual(renewed.cert.certChainPem[0], first.certChainPem[0]);
  assert.ok(renewed.cert.issuedAtMs >= first.issuedAtMs + 900, 'renewed at about half of the 2 s lifetime');
  assert.ok(renewed.cert.issuedAtMs < first.notAfterMs, 'before the first one expired');
  assert.ok(verifiesAgainst(renewed.cert));
  assert.equal(renewed.cert.identity, first.identity);
});

test('an unreachable control plane: the connection waiting for a certificate fails with the reason', async () => {
  const m = manager(agentClient('127.0.0.1:1'));
  m.ensure(pod('web-n1'));
  const err = await m.get(uids.get('web-n1')!, { waitMs: 1500 }).catch((e: Error) => e);
  assert.ok(err instanceof CertificateUnavailableError, String(err));
  assert.equal(err.reason, 'control-unreachable');
  assert.match(err.message, /^no certificate for pod shop\/web-n1 yet: ambit-control unreachable \(UNAVAILABLE: .*\) — the connection is refused$/);
});

test('MeshConfig: the node snapshot, then a Service added arrives as a delta and the indexes follow', async () => {
  const mesh = MeshConfig.start({ client: agentClient(), node: 'n1', log: silent, backoff: { initialMs: 50, maxMs: 200 } });
  closers.push(() => mesh.close());
  const changes: { index: MeshIndex; full: boolean }[] = [];
  mesh.on('changed', (index, u) => changes.push({ index, full: u.full }));
  await waitUntil(() => changes[0], 10_000, () => 'the first snapshot');
  const first = changes[0]!;
  assert.equal(first.full, true);
  assert.equal(first.index.node, 'n1');
  assert.deepEqual(first.index.localWorkloads.map((w) => w.name).sort(), ['agent-n1', 'web-n1']);
  assert.equal(first.index.workloadByUid(uids.get('web-n1')!)?.identity, 'spiffe://cluster.local/ns/shop/sa/web');
  assert.ok(first.index.trust.roots.length > 0);
  assert.equal(mesh.connected, true);

  // Give web-n1 an address and readiness, then a Service selecting it: the node's snapshot gains the Service.
  await k.ok(['patch', 'pod', 'web-n1', '-n', 'shop', '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: { phase: 'Running', podIP: '10.244.1.5', podIPs: [{ ip: '10.244.1.5' }], conditions: [{ type: 'Ready', status: 'True' }] } })]);
  await k.ok(['apply', '-f', '-'], { stdin: JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop' }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } }) });
  const vip = (await k.ok(['get', 'service', 'web', '-n', 'shop', '-o', 'jsonpath={.spec.clusterIP}'])).trim();
  const withService = await waitUntil(() => changes.find((c) => c.index.serviceByVip(vip, 80)), 10_000, () => `service ${vip}:80 in the index`);
  assert.equal(withService.full, false, 'a delta, not a new snapshot');
  const target = withService.index.serviceByVip(vip, 80)!;
  assert.equal(target.service.key, 'shop/web');
  const choice = withService.index.pickEndpoint(target);
  assert.deepEqual(choice && [choice.ip, choice.port, choice.workload?.uid], ['10.244.1.5', 8080, uids.get('web-n1')]);
  assert.equal(withService.index.workloadByIp('10.244.1.5')?.name, 'web-n1');
  assert.equal(withService.index.serviceOfEndpoint('10.244.1.5', 8080)?.service.key, 'shop/web');
  assert.equal(withService.index.serviceByHostname('web.shop.svc.cluster.local')?.key, 'shop/web');
  assert.equal(mesh.current?.serviceByVip(vip, 80)?.service.key, 'shop/web');
});

test('ControlLink: waits for the roots file, then signs and subscribes with the token file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-certs-'));
  closers.push(() => rmSync(dir, { recursive: true, force: true }));
  const rootsFile = join(dir, 'root-cert.pem');
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, server.issueServiceAccountToken('ambit-system', 'ambit-agent', { expirationSeconds: 3600, boundObjectRef: { kind: 'Pod', name: 'agent-n1', uid: uids.get('agent-n1')! } }).token);
  const mesh = new MeshConfig({ log: silent });
  const link = ControlLink.start({ node: 'n1', address: `127.0.0.1:${plane.pushPort}`, serverName: 'ambit-control.ambit-system.svc', rootsFile, tokenFile, log: silent, mesh, rootsPollMs: 100, backoff: { initialMs: 50, maxMs: 200 } });
  closers.push(() => link.close());
  const m = manager(link);
  m.ensure(pod('web-n1'));
  const early = await m.get(uids.get('web-n1')!, { waitMs: 300 }).catch((e: Error) => e);
  assert.ok(early instanceof CertificateUnavailableError);
  assert.equal(early.reason, 'control-unreachable');
  assert.match(early.message, /ambit-control unreachable \(UNAVAILABLE: no roots for ambit-control at .*root-cert\.pem \(ENOENT\); ambit-control publishes them in the ConfigMap ambit-root-cert/);
  assert.equal(mesh.current, undefined);
  assert.match(mesh.status().lastError ?? '', /no roots/);

  writeFileSync(rootsFile, roots);
  const cert = await m.get(uids.get('web-n1')!, { waitMs: 10_000 });
  assert.equal(cert.identity, 'spiffe://cluster.local/ns/shop/sa/web');
  await waitUntil(() => mesh.current, 10_000, () => 'the node config');
  assert.equal(mesh.current!.node, 'n1');
  assert.equal(mesh.connected, true);
});
