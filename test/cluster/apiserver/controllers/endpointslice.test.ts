import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KObject } from '../types.js';
import type { Action } from './actions.js';
import { field } from './meta.js';
import { reconcileEndpointSlices, type Endpoint } from './endpointslice.js';
import { reconcileEndpoints } from './endpoints.js';
import { T0, node, pod } from './fixtures.js';

type Obj = Record<string, unknown>;

function svc(o: { ports?: Obj[]; selector?: Record<string, string> | null; clusterIP?: string; publishNotReady?: boolean } = {}): KObject {
  const spec: Obj = { ports: o.ports ?? [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 'web' }], clusterIP: o.clusterIP ?? '10.96.0.10' };
  if (o.selector !== null) spec['selector'] = o.selector ?? { app: 'web' };
  if (o.publishNotReady) spec['publishNotReadyAddresses'] = true;
  return { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'default', uid: 'uid-svc', labels: { team: 'a' } }, spec };
}

const web = (name: string, o: Parameters<typeof pod>[1] = {}) =>
  pod(name, { labels: { app: 'web' }, node: 'n1', ready: true, ports: [{ name: 'web', containerPort: 8080 }], ...o });

const objects = (actions: Action[], verb: 'create' | 'update') =>
  actions.filter((a) => a.verb === verb).map((a) => (a.verb === verb ? a.object : ({} as KObject)));

test('one slice: conditions, named port, node, zone and owner', () => {
  const pods = [
    web('a', { ip: '10.0.0.1' }),
    web('b', { ip: '10.0.0.2', ready: false }),
    web('c', { ip: '10.0.0.3', deleting: true }),
    web('noip'),
    web('done', { ip: '10.0.0.4', phase: 'Succeeded' }),
    pod('other', { labels: { app: 'db' }, ip: '10.0.0.9', ready: true }),
  ];
  const actions = reconcileEndpointSlices({ service: svc(), pods, slices: [], nodes: [node('n1', { labels: { 'topology.kubernetes.io/zone': 'z1' } })] });
  const [slice] = objects(actions, 'create');
  assert.equal(actions.length, 1);
  assert.equal(slice?.metadata.generateName, 'web-');
  assert.deepEqual(slice?.metadata.labels, {
    team: 'a',
    'kubernetes.io/service-name': 'web',
    'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
  });
  assert.deepEqual(slice?.metadata.ownerReferences, [{ apiVersion: 'v1', kind: 'Service', name: 'web', uid: 'uid-svc', controller: true, blockOwnerDeletion: true }]);
  assert.equal(slice?.['addressType'], 'IPv4');
  assert.deepEqual(slice?.['ports'], [{ name: 'http', port: 8080, protocol: 'TCP' }]);
  const eps = slice?.['endpoints'] as Endpoint[];
  assert.deepEqual(
    eps.map((e) => [e.addresses[0], e.conditions.ready, e.conditions.serving, e.conditions.terminating]),
    [['10.0.0.1', true, true, false], ['10.0.0.2', false, false, false], ['10.0.0.3', false, true, true]],
  );
  assert.deepEqual(eps[0], {
    addresses: ['10.0.0.1'],
    conditions: { ready: true, serving: true, terminating: false },
    nodeName: 'n1',
    zone: 'z1',
    targetRef: { kind: 'Pod', namespace: 'default', name: 'a', uid: 'uid-a' },
  });
});

test('pods resolving a named port differently land in different slices', () => {
  const pods = [web('a', { ip: '10.0.0.1' }), web('b', { ip: '10.0.0.2', ports: [{ name: 'web', containerPort: 9090 }] })];
  const created = objects(reconcileEndpointSlices({ service: svc(), pods, slices: [] }), 'create');
  assert.deepEqual(created.map((s) => [(s['ports'] as { port: number }[])[0]!.port, (s['endpoints'] as unknown[]).length]).sort(), [[8080, 1], [9090, 1]]);
});

test('numeric targetPort and unnamed port', () => {
  const created = objects(reconcileEndpointSlices({ service: svc({ ports: [{ port: 80, protocol: 'TCP', targetPort: 8080 }] }), pods: [web('a', { ip: '10.0.0.1' })], slices: [] }), 'create');
  assert.deepEqual(created[0]?.['ports'], [{ name: '', port: 8080, protocol: 'TCP' }]);
});

test('at most 100 endpoints per slice', () => {
  const pods = Array.from({ length: 250 }, (_, i) => web(`p${String(i).padStart(3, '0')}`, { ip: `10.1.${i >> 8}.${i & 255}` }));
  const created = objects(reconcileEndpointSlices({ service: svc(), pods, slices: [] }), 'create');
  assert.deepEqual(created.map((s) => (s['endpoints'] as unknown[]).length), [100, 100, 50]);
});

test('existing slices are kept stable and filled before new ones are made', () => {
  const service = svc();
  const first = objects(reconcileEndpointSlices({ service, pods: [web('a', { ip: '10.0.0.1' })], slices: [] }), 'create')[0]!;
  const existing = { ...first, metadata: { ...first.metadata, name: 'web-abcde', uid: 'uid-slice' } };
  // unchanged: nothing to write
  assert.deepEqual(reconcileEndpointSlices({ service, pods: [web('a', { ip: '10.0.0.1' })], slices: [existing] }), []);
  // a second pod joins the existing slice
  const actions = reconcileEndpointSlices({ service, pods: [web('a', { ip: '10.0.0.1' }), web('b', { ip: '10.0.0.2' })], slices: [existing] });
  assert.deepEqual(actions.map((a) => a.verb), ['update']);
  assert.equal((objects(actions, 'update')[0]!['endpoints'] as unknown[]).length, 2);
  assert.equal(objects(actions, 'update')[0]!.metadata.name, 'web-abcde');
  // readiness change updates in place
  const notReady = reconcileEndpointSlices({ service, pods: [web('a', { ip: '10.0.0.1', ready: false })], slices: [existing] });
  assert.equal((objects(notReady, 'update')[0]!['endpoints'] as Endpoint[])[0]!.conditions.ready, false);
});

test('no endpoints: one placeholder slice, kept as is', () => {
  const actions = reconcileEndpointSlices({ service: svc(), pods: [], slices: [] });
  const [ph] = objects(actions, 'create');
  assert.deepEqual(ph?.['endpoints'], []);
  assert.equal(ph?.['ports'], undefined);
  const existing = { ...ph!, metadata: { ...ph!.metadata, name: 'web-xyz12', uid: 'u' } };
  assert.deepEqual(reconcileEndpointSlices({ service: svc(), pods: [], slices: [existing] }), []);
  // the last endpoint leaving turns a slice into the placeholder rather than delete + create
  const full = objects(reconcileEndpointSlices({ service: svc(), pods: [web('a', { ip: '10.0.0.1' })], slices: [] }), 'create')[0]!;
  const named = { ...full, metadata: { ...full.metadata, name: 'web-full1', uid: 'u2' } };
  const emptied = reconcileEndpointSlices({ service: svc(), pods: [], slices: [named] });
  assert.deepEqual(emptied.map((a) => a.verb), ['create', 'delete']);
});

test('services without a selector are left alone', () => {
  assert.deepEqual(reconcileEndpointSlices({ service: svc({ selector: null }), pods: [web('a', { ip: '10.0.0.1' })], slices: [] }), []);
  assert.deepEqual(reconcileEndpoints({ service: svc({ selector: null }), pods: [], endpoints: undefined }, T0), []);
});

test('legacy Endpoints: ready and not-ready addresses, ports, labels', () => {
  const pods = [web('b', { ip: '10.0.0.2' }), web('a', { ip: '10.0.0.10' }), web('c', { ip: '10.0.0.3', ready: false }), web('d', { ip: '10.0.0.4', deleting: true })];
  const actions = reconcileEndpoints({ service: svc(), pods, endpoints: undefined }, T0);
  const [ep] = objects(actions, 'create');
  assert.equal(ep?.metadata.name, 'web');
  assert.deepEqual(ep?.metadata.labels, { team: 'a', 'endpoints.kubernetes.io/managed-by': 'endpoint-controller' });
  assert.deepEqual(ep?.['subsets'], [
    {
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      addresses: [
        { ip: '10.0.0.2', nodeName: 'n1', targetRef: { kind: 'Pod', namespace: 'default', name: 'b', uid: 'uid-b' } },
        { ip: '10.0.0.10', nodeName: 'n1', targetRef: { kind: 'Pod', namespace: 'default', name: 'a', uid: 'uid-a' } },
      ],
      notReadyAddresses: [{ ip: '10.0.0.3', nodeName: 'n1', targetRef: { kind: 'Pod', namespace: 'default', name: 'c', uid: 'uid-c' } }],
    },
  ]);
  // unchanged → no write; service gone → deleted
  const existing = { ...ep!, metadata: { ...ep!.metadata, uid: 'uid-ep' } };
  assert.deepEqual(reconcileEndpoints({ service: svc(), pods, endpoints: existing }, T0 + 5000), []);
  assert.deepEqual(reconcileEndpoints({ service: undefined, pods, endpoints: existing }, T0).map((a) => a.verb), ['delete']);
});

test('headless service: label on slices and Endpoints', () => {
  const s = svc({ clusterIP: 'None' });
  const slice = objects(reconcileEndpointSlices({ service: s, pods: [web('a', { ip: '10.0.0.1' })], slices: [] }), 'create')[0]!;
  assert.equal(slice.metadata.labels?.['service.kubernetes.io/headless'], '');
  const ep = objects(reconcileEndpoints({ service: s, pods: [], endpoints: undefined }, T0), 'create')[0]!;
  assert.equal(ep.metadata.labels?.['service.kubernetes.io/headless'], '');
  assert.equal(field(ep, 'subsets', '0'), undefined);
});

test('publishNotReadyAddresses makes every endpoint ready', () => {
  const slice = objects(reconcileEndpointSlices({ service: svc({ publishNotReady: true }), pods: [web('a', { ip: '10.0.0.1', ready: false })], slices: [] }), 'create')[0]!;
  assert.deepEqual((slice['endpoints'] as Endpoint[])[0]!.conditions, { ready: true, serving: false, terminating: false });
});
