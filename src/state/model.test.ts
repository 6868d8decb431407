import { test } from 'node:test';
import assert from 'node:assert/strict';
import { computeModel, isEnrolled, type ClusterObjects } from './model.js';
import type { EndpointSliceObject, KubeObject, PodObject, ServiceObject } from './objects.js';
import { statusFor } from './status.js';

const ns = (name: string, ambient: boolean): KubeObject => ({ metadata: { name, labels: ambient ? { 'ambit.dev/dataplane-mode': 'ambient' } : {} } });
const pod = (name: string, o: { ns?: string; node?: string; ip?: string; sa?: string; labels?: Record<string, string>; phase?: string; hostNetwork?: boolean } = {}): PodObject => ({
  metadata: { name, namespace: o.ns ?? 'shop', uid: `uid-${name}`, labels: o.labels ?? { app: 'web' } },
  spec: { nodeName: o.node ?? 'n1', ...(o.sa ? { serviceAccountName: o.sa } : {}), ...(o.hostNetwork ? { hostNetwork: true } : {}) },
  status: { phase: o.phase ?? 'Running', ...(o.ip ? { podIP: o.ip, podIPs: [{ ip: o.ip }] } : {}) },
});
const empty: ClusterObjects = { namespaces: [], pods: [], services: [], endpointSlices: [], serviceAccounts: [], nodes: [], authorizationPolicies: [], peerAuthentications: [], httpRoutes: [], grpcRoutes: [] };

test('enrolment: ambient namespace, pod opt-out, host network', () => {
  const amb = { 'ambit.dev/dataplane-mode': 'ambient' };
  const cases: [string, PodObject, Record<string, string> | undefined, boolean][] = [
    ['ambient namespace', pod('a'), amb, true],
    ['plain namespace', pod('a'), {}, false],
    ['unknown namespace', pod('a'), undefined, false],
    ['pod opted out', pod('a', { labels: { 'ambit.dev/dataplane-mode': 'none' } }), amb, false],
    ['host network', pod('a', { hostNetwork: true }), amb, false],
  ];
  for (const [name, p, labels, want] of cases) assert.equal(isEnrolled(p, labels), want, name);
});

test('workloads: identity, enrolment, finished and unscheduled pods left out', () => {
  const unscheduled = pod('u');
  delete unscheduled.spec!.nodeName;
  const m = computeModel({ ...empty, namespaces: [ns('shop', true)], pods: [pod('a', { ip: '10.0.0.1', sa: 'web' }), pod('b', { ip: '10.0.0.2' }), pod('done', { phase: 'Succeeded' }), unscheduled] });
  assert.deepEqual([...m.workloads.keys()], ['uid-a', 'uid-b']);
  assert.deepEqual(m.workloads.get('uid-a'), { uid: 'uid-a', name: 'a', namespace: 'shop', node: 'n1', ips: ['10.0.0.1'], serviceAccount: 'web', identity: 'spiffe://cluster.local/ns/shop/sa/web', enrolled: true, labels: { app: 'web' }, services: [] });
  assert.equal(m.workloads.get('uid-b')!.identity, 'spiffe://cluster.local/ns/shop/sa/default');
  const td = computeModel({ ...empty, pods: [pod('a')] }, { trustDomain: 'example.org', rootNamespace: 'r', clusterDomain: 'cluster.local' });
  assert.equal(td.workloads.get('uid-a')!.identity, 'spiffe://example.org/ns/shop/sa/default');
});

test('services: VIPs, target port resolution per endpoint, endpoint status, workload links', () => {
  const svc: ServiceObject = { metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10'], ports: [{ name: 'http', port: 80, targetPort: 'web' }, { name: 'admin', port: 81 }] } };
  const slice = (name: string, port: number, eps: EndpointSliceObject['endpoints']): EndpointSliceObject => ({ metadata: { name, namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } }, addressType: 'IPv4', endpoints: eps, ports: [{ name: 'http', port }, { name: 'admin', port: 81 }] });
  const m = computeModel({
    ...empty,
    namespaces: [ns('shop', true)],
    pods: [pod('a', { ip: '10.0.0.1' }), pod('b', { ip: '10.0.0.2' })],
    services: [svc, { metadata: { name: 'ext', namespace: 'shop' }, spec: { type: 'ExternalName' } }],
    endpointSlices: [
      slice('web-1', 8080, [{ addresses: ['10.0.0.1'], conditions: { ready: true }, targetRef: { kind: 'Pod', uid: 'uid-a' } }]),
      slice('web-2', 9090, [{ addresses: ['10.0.0.2'], conditions: { ready: false, serving: true, terminating: true } }, { addresses: ['10.0.0.9'], conditions: { ready: false } }]),
    ],
  });
  assert.deepEqual([...m.services.keys()], ['shop/web'], 'ExternalName services are not in the mesh');
  assert.deepEqual(m.services.get('shop/web'), {
    key: 'shop/web',
    namespace: 'shop',
    name: 'web',
    hostname: 'web.shop.svc.cluster.local',
    vips: ['10.96.0.10'],
    ports: [{ name: 'http', protocol: 'TCP', port: 80 }, { name: 'admin', protocol: 'TCP', port: 81, targetPort: 81 }],
    endpoints: [
      { ip: '10.0.0.1', workload: 'uid-a', status: 'ready', ports: { http: 8080 } },
      { ip: '10.0.0.2', workload: 'uid-b', status: 'terminating', ports: { http: 9090 } }, // linked by address
      { ip: '10.0.0.9', status: 'notReady', ports: { http: 9090 } },
    ],
  });
  assert.deepEqual(m.workloads.get('uid-a')!.services, ['shop/web']);
});

test('an invalid policy is left out and reported; the valid ones are unaffected', () => {
  const policy = (name: string, spec: unknown): KubeObject => ({ metadata: { name, namespace: 'shop', generation: 3 }, spec });
  const m = computeModel({
    ...empty,
    authorizationPolicies: [policy('good', { rules: [{}] }), policy('bad', { action: 'DENY', rules: [{ to: [{ operation: { ports: ['x'] } }] }] })],
    peerAuthentications: [policy('pa', { mtls: { mode: 'STRICT' } })],
    httpRoutes: [{ metadata: { name: 'r', namespace: 'shop' }, spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web' }], rules: [{ backendRefs: [{ name: 'web' }] }] } }, { metadata: { name: 'gw-only', namespace: 'shop' }, spec: { parentRefs: [{ name: 'gw' }] } }],
  });
  assert.deepEqual([...m.authorizationPolicies.keys()], ['shop/good']);
  assert.deepEqual([...m.peerAuthentications.keys()], ['shop/pa']);
  assert.equal(m.routes.size, 0);
  assert.deepEqual(
    m.statuses.map((s) => [s.kind, s.name, s.condition.status, s.condition.reason]),
    [
      ['AuthorizationPolicy', 'bad', 'False', 'Invalid'],
      ['AuthorizationPolicy', 'good', 'True', 'Accepted'],
      ['HTTPRoute', 'r', 'False', 'Invalid'],
      ['PeerAuthentication', 'pa', 'True', 'Accepted'],
    ],
    'the Gateway-only route gets no status from the mesh',
  );
  const bad = m.statuses[0]!.condition;
  assert.equal(bad.message, 'AuthorizationPolicy shop/bad is not applied; fix: spec.rules[0].to[0].operation.ports[0]: "x" is not a port; use a number from 0 to 65535, as a string');
  assert.equal(bad.observedGeneration, 3);
});

test('status: condition written once, transition time kept, route parents merged', () => {
  const obj: KubeObject = { metadata: { name: 'p', namespace: 'shop' }, spec: {} };
  const s = { kind: 'AuthorizationPolicy' as const, namespace: 'shop', name: 'p', condition: { type: 'Accepted' as const, status: 'False' as const, reason: 'Invalid' as const, message: 'm1' } };
  const st = statusFor(obj, s, 't1')!;
  assert.deepEqual(st, { conditions: [{ type: 'Accepted', status: 'False', reason: 'Invalid', message: 'm1', lastTransitionTime: 't1' }] });
  assert.equal(statusFor({ ...obj, status: st }, s, 't2'), null, 'nothing to write when it already says so');
  const st2 = statusFor({ ...obj, status: st }, { ...s, condition: { ...s.condition, message: 'm2' } }, 't2')!;
  assert.equal((st2['conditions'] as { lastTransitionTime: string }[])[0]!.lastTransitionTime, 't1', 'same status: the transition time stays');

  const ref = { group: '', kind: 'Service', name: 'web' };
  const other = { parentRef: { name: 'gw' }, controllerName: 'example.com/gw', conditions: [] };
  const r: KubeObject = { metadata: { name: 'r', namespace: 'shop' }, spec: { parentRefs: [ref, { name: 'gw' }] }, status: { parents: [other] } };
  const rs = statusFor(r, { kind: 'HTTPRoute', namespace: 'shop', name: 'r', condition: { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'ok' } }, 't1')!;
  assert.deepEqual(rs['parents'], [other, { parentRef: ref, controllerName: 'ambit.dev/control', conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'ok', lastTransitionTime: 't1' }] }]);
});
