import { test } from 'node:test';
import assert from 'node:assert/strict';
import { apply, canonicalJson, DeltaMismatchError, demandedScope, diff, isEmptyDelta, snapshotFor, type NodeSnapshot } from './snapshot.js';
import { computeModel, type ClusterObjects, type MeshModel } from '../state/model.js';
import type { EndpointSliceObject, KubeObject, PodObject, ServiceObject } from '../state/objects.js';
import { generateCluster } from './snapshot.gen.js';

const ns = (name: string, ambient = true): KubeObject => ({ metadata: { name, labels: ambient ? { 'ambit.dev/dataplane-mode': 'ambient' } : {} } });
const pod = (name: string, nsName: string, node: string, app: string, ip: string): PodObject => ({ metadata: { name, namespace: nsName, uid: name, labels: { app } }, spec: { nodeName: node }, status: { phase: 'Running', podIP: ip } });
const svc = (name: string, nsName: string, ip: string): ServiceObject => ({ metadata: { name, namespace: nsName }, spec: { clusterIP: ip, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } });
const slice = (svcName: string, nsName: string, pods: PodObject[]): EndpointSliceObject => ({
  metadata: { name: `${svcName}-x`, namespace: nsName, labels: { 'kubernetes.io/service-name': svcName } },
  addressType: 'IPv4',
  endpoints: pods.map((p) => ({ addresses: [p.status!.podIP!], conditions: { ready: true }, nodeName: p.spec!.nodeName!, targetRef: { kind: 'Pod', uid: p.metadata.uid! } })),
  ports: [{ name: 'http', port: 8080 }],
});
const policy = (name: string, nsName: string, spec: unknown): KubeObject => ({ metadata: { name, namespace: nsName, creationTimestamp: '2026-01-01T00:00:00Z' }, spec });

/**
 * A small mesh: shop/web (a on n1, b on n2), shop/db (c on n2), bank/api (d on n3), a route on web
 * that sends some traffic to web-canary (e on n3), and policies in every place a policy can live.
 */
function mesh(): MeshModel {
  const a = pod('a', 'shop', 'n1', 'web', '10.0.0.1');
  const b = pod('b', 'shop', 'n2', 'web', '10.0.0.2');
  const c = pod('c', 'shop', 'n2', 'db', '10.0.0.3');
  const d = pod('d', 'bank', 'n3', 'api', '10.0.0.4');
  const e = pod('e', 'shop', 'n3', 'canary', '10.0.0.5');
  const objects: ClusterObjects = {
    namespaces: [ns('shop'), ns('bank'), ns('ambit-system')],
    pods: [a, b, c, d, e],
    services: [svc('web', 'shop', '10.96.0.1'), svc('db', 'shop', '10.96.0.2'), svc('api', 'bank', '10.96.0.3'), svc('web-canary', 'shop', '10.96.0.4')],
    endpointSlices: [slice('web', 'shop', [a, b]), slice('db', 'shop', [c]), slice('api', 'bank', [d]), slice('web-canary', 'shop', [e])],
    serviceAccounts: [],
    nodes: ['n1', 'n2', 'n3', 'n4'].map((name) => ({ metadata: { name } })),
    authorizationPolicies: [
      policy('shop-wide', 'shop', { rules: [{}] }),
      policy('web-only', 'shop', { selector: { matchLabels: { app: 'web' } }, rules: [{}] }),
      policy('db-only', 'shop', { selector: { matchLabels: { app: 'db' } }, rules: [{}] }),
      policy('mesh-wide', 'ambit-system', { action: 'DENY', rules: [{ from: [{ source: { ipBlocks: ['1.2.3.4'] } }] }] }),
      policy('mesh-api', 'ambit-system', { selector: { matchLabels: { app: 'api' } }, rules: [{}] }),
      policy('bank-wide', 'bank', { rules: [{}] }),
    ],
    peerAuthentications: [policy('mesh', 'ambit-system', { mtls: { mode: 'STRICT' } }), policy('bank', 'bank', { mtls: { mode: 'PERMISSIVE' } }), policy('db', 'shop', { selector: { matchLabels: { app: 'db' } }, mtls: { mode: 'STRICT' } })],
    httpRoutes: [{ metadata: { name: 'web-split', namespace: 'shop' }, spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web' }], rules: [{ backendRefs: [{ name: 'web', port: 80, weight: 9 }, { name: 'web-canary', port: 80, weight: 1 }] }] } }],
    grpcRoutes: [],
  };
  return computeModel(objects);
}

const keys = (r: Record<string, unknown>): string[] => Object.keys(r);

test('node scoping: what each node gets', () => {
  const m = mesh();
  const cases: [string, Parameters<typeof snapshotFor>[2], Record<string, string[]>][] = [
    ['n1 runs web/a: web, the route, its canary backend; web and shop policies', {}, { workloads: ['a'], peers: ['b', 'e'], services: ['shop/web', 'shop/web-canary'], authorizationPolicies: ['ambit-system/mesh-wide', 'shop/shop-wide', 'shop/web-only'], peerAuthentications: ['ambit-system/mesh'], routes: ['HTTPRoute/shop/web-split'] }],
    ['n2 runs web/b and db/c', {}, { workloads: ['b', 'c'], peers: ['a', 'e'], services: ['shop/db', 'shop/web', 'shop/web-canary'], authorizationPolicies: ['ambit-system/mesh-wide', 'shop/db-only', 'shop/shop-wide', 'shop/web-only'], peerAuthentications: ['ambit-system/mesh', 'shop/db'], routes: ['HTTPRoute/shop/web-split'] }],
    ['n3 runs bank/d and the canary: no web (not its service)', {}, { workloads: ['d', 'e'], peers: [], services: ['bank/api', 'shop/web-canary'], authorizationPolicies: ['ambit-system/mesh-api', 'ambit-system/mesh-wide', 'bank/bank-wide', 'shop/shop-wide'], peerAuthentications: ['ambit-system/mesh', 'bank/bank'], routes: [] }],
    ['n4 runs nothing: trust only', {}, { workloads: [], peers: [], services: [], authorizationPolicies: [], peerAuthentications: [], routes: [] }],
    ['n4 subscribed to bank/api and to pod c', { subscribedServices: new Set(['bank/api', 'no/such']), subscribedWorkloads: new Set(['c']) }, { workloads: [], peers: ['c', 'd'], services: ['bank/api'], authorizationPolicies: [], peerAuthentications: [], routes: [] }],
    ['n3 with namespace services: all of shop and bank', { namespaceServices: true }, { workloads: ['d', 'e'], peers: ['a', 'b', 'c'], services: ['bank/api', 'shop/db', 'shop/web', 'shop/web-canary'], authorizationPolicies: ['ambit-system/mesh-api', 'ambit-system/mesh-wide', 'bank/bank-wide', 'shop/shop-wide'], peerAuthentications: ['ambit-system/mesh', 'bank/bank'], routes: ['HTTPRoute/shop/web-split'] }],
  ];
  for (const [name, opts, want] of cases) {
    const node = name.slice(0, 2);
    const s = snapshotFor(m, node, opts);
    const got = { workloads: keys(s.workloads), peers: keys(s.peers), services: keys(s.services), authorizationPolicies: keys(s.authorizationPolicies), peerAuthentications: keys(s.peerAuthentications), routes: keys(s.routes) };
    assert.deepEqual(got, want, name);
    assert.deepEqual(s.trust, { trustDomain: 'cluster.local', rootNamespace: 'ambit-system', roots: [] });
  }
  assert.deepEqual(snapshotFor(m, 'n1').peers['b'], { uid: 'b', ips: ['10.0.0.2'], node: 'n2', identity: 'spiffe://cluster.local/ns/shop/sa/default', enrolled: true, workload: 'web' }, 'a peer carries only what a client needs, and its workload name for telemetry');
});

test('non-enrolled local workloads pull in no policies', () => {
  const objects: ClusterObjects = { namespaces: [ns('plain', false)], pods: [pod('p', 'plain', 'n1', 'x', '10.0.0.1')], services: [], endpointSlices: [], serviceAccounts: [], nodes: [], authorizationPolicies: [policy('all', 'plain', { rules: [{}] })], peerAuthentications: [], httpRoutes: [], grpcRoutes: [] };
  const s = snapshotFor(computeModel(objects), 'n1');
  assert.deepEqual(keys(s.workloads), ['p']);
  assert.equal(s.workloads['p']!.enrolled, false);
  assert.deepEqual(keys(s.authorizationPolicies), []);
});

test('versions are content hashes: same content, same version; any change, a new one', () => {
  const a = snapshotFor(mesh(), 'n1');
  const b = snapshotFor(mesh(), 'n1');
  assert.equal(a.version, b.version, 'two replicas computing from the same state agree');
  assert.match(a.version, /^[0-9a-f]{16}$/);
  assert.notEqual(snapshotFor(mesh(), 'n1', { trustRoots: ['PEM'] }).version, a.version);
  assert.notEqual(snapshotFor(mesh(), 'n2').version, a.version);
});

test('diff and apply: a pod moving, a policy added, trust rotated', () => {
  const m = mesh();
  const prev = snapshotFor(m, 'n1');
  const next = snapshotFor(m, 'n1', { trustRoots: ['NEW'], subscribedServices: new Set(['bank/api']) });
  const d = diff(prev, next);
  assert.deepEqual(d.services.added, { 'bank/api': m.services.get('bank/api') });
  assert.deepEqual(Object.keys(d.peers.added), ['d']);
  assert.deepEqual(d.trust?.roots, ['NEW']);
  assert.deepEqual(d.workloads, { added: {}, updated: {}, removed: [] });
  assert.deepEqual(apply(prev, d), next);
  assert.ok(isEmptyDelta(diff(next, next)));
  const back = diff(next, prev);
  assert.deepEqual(back.services.removed, ['bank/api']);
  assert.throws(() => apply(prev, back), DeltaMismatchError);
});

/** Property: for random pairs of clusters, apply(prev, diff(prev, next)) == next, on every node. */
test('property: apply(prev, diff(prev, next)) equals next', () => {
  let seed = 7;
  const rand = (): number => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const spec = (s: number) => ({ nodes: 4, pods: 30 + Math.floor(rand() * 30), services: 6 + Math.floor(rand() * 6), policies: Math.floor(rand() * 8), namespaces: 3, ambientShare: rand(), httpRoutes: Math.floor(rand() * 4), seed: s, rootNamespace: 'ambit-system' });
  const mutate = (o: ClusterObjects): ClusterObjects => ({
    ...o,
    pods: o.pods.filter(() => rand() > 0.2).map((p) => (rand() < 0.2 ? { ...p, spec: { ...p.spec, nodeName: `node-00${Math.floor(rand() * 4)}` } } : p)),
    authorizationPolicies: o.authorizationPolicies.filter(() => rand() > 0.3),
    namespaces: o.namespaces.map((n) => (rand() < 0.3 ? { ...n, metadata: { ...n.metadata, labels: {} } } : n)),
  });
  for (let i = 0; i < 40; i++) {
    const base = generateCluster(spec(i));
    const prevModel = computeModel(rand() < 0.5 ? base : mutate(base));
    const nextModel = computeModel(rand() < 0.3 ? generateCluster(spec(i + 1000)) : mutate(base));
    for (const node of ['node-000', 'node-001', 'node-002', 'node-003']) {
      const opts = rand() < 0.5 ? {} : { trustRoots: ['R' + Math.floor(rand() * 2)] };
      const prev: NodeSnapshot = snapshotFor(prevModel, node, opts);
      const next = snapshotFor(nextModel, node);
      const applied = apply(prev, diff(prev, next));
      assert.deepEqual(applied, next, `case ${i} ${node}`);
      assert.equal(canonicalJson(applied), canonicalJson(next));
    }
  }
});

test('on-demand scope: addresses an agent met become the Services and pods behind them', () => {
  const m = mesh();
  const scope = demandedScope(m, new Set(['10.96.0.3', '10.0.0.3', '8.8.8.8']));
  assert.deepEqual([...scope.subscribedServices!], ['bank/api'], 'a cluster IP: its Service');
  assert.deepEqual([...scope.subscribedWorkloads!], ['c'], 'a pod IP: its workload; an outside address: nothing');
  const s = snapshotFor(m, 'n4', scope);
  assert.deepEqual([keys(s.services), keys(s.peers)], [['bank/api'], ['c', 'd']], 'the Service with its endpoints as peers, and the pod');
  assert.deepEqual(demandedScope(m, undefined), {});
});
