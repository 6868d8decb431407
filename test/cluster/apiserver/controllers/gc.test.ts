import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KObject, OwnerReference } from '../types.js';
import { describe as show, type Action } from './actions.js';
import { reconcileGarbage, type GcItem } from './gc.js';
import { ref } from './fixtures.js';

const D = 'apps/v1/deployments';
const RS = 'apps/v1/replicasets';
const P = 'v1/pods';
const KINDS: Record<string, string> = { 'apps/v1/Deployment': D, 'apps/v1/ReplicaSet': RS, 'v1/Pod': P };

function obj(resource: string, name: string, o: { owners?: OwnerReference[]; deleting?: boolean; finalizers?: string[] } = {}): GcItem {
  const object: KObject = { metadata: { name, namespace: 'ns', uid: `uid-${name}` } };
  if (o.owners) object.metadata.ownerReferences = o.owners;
  if (o.deleting) object.metadata.deletionTimestamp = '2024-05-01T10:00:00Z';
  if (o.finalizers) object.metadata.finalizers = o.finalizers;
  return { resource, object };
}

const owner = (kind: string, name: string, block = true): OwnerReference => ({ ...ref(kind, name, `uid-${name}`, kind === 'Pod' ? 'v1' : 'apps/v1'), blockOwnerDeletion: block });

function run(items: GcItem[], listed = [D, RS, P]): Action[] {
  return reconcileGarbage({ items, listed: new Set(listed), resourceFor: (v, k) => KINDS[`${v}/${k}`] });
}

const summary = (actions: Action[]) =>
  actions.map((a) => (a.verb === 'delete' ? `${show(a)} ${a.propagationPolicy}` : `${show(a)} refs=${(a.object.metadata.ownerReferences ?? []).map((r) => r.name).join(',')} fin=${(a.object.metadata.finalizers ?? []).join(',')}`));

test('garbage collection table', () => {
  const cases: { name: string; items: GcItem[]; listed?: string[]; want: string[] }[] = [
    { name: 'owner present: nothing', items: [obj(D, 'web'), obj(RS, 'rs', { owners: [owner('Deployment', 'web')] })], want: [] },
    { name: 'owner gone: background delete', items: [obj(RS, 'rs', { owners: [owner('Deployment', 'web')] })], want: ['delete apps/v1/replicasets ns/rs Background'] },
    { name: 'owner kind not listed: never collected on a guess', items: [obj(RS, 'rs', { owners: [owner('Deployment', 'web')] })], listed: [RS, P], want: [] },
    {
      name: 'one of two owners gone: only the dangling reference goes',
      items: [obj(D, 'a'), obj(RS, 'rs', { owners: [owner('Deployment', 'a'), { ...owner('Deployment', 'b'), controller: false }] })],
      want: ['update apps/v1/replicasets ns/rs refs=a fin='],
    },
    {
      name: 'orphan: references removed, then the finalizer',
      items: [obj(D, 'web', { deleting: true, finalizers: ['orphan'] }), obj(RS, 'rs1', { owners: [owner('Deployment', 'web')] }), obj(RS, 'rs2', { owners: [owner('Deployment', 'web')] })],
      want: ['update apps/v1/replicasets ns/rs1 refs= fin=', 'update apps/v1/replicasets ns/rs2 refs= fin=', 'update apps/v1/deployments ns/web refs= fin='],
    },
    {
      name: 'foreground: dependents deleted first, owner keeps its finalizer',
      items: [obj(RS, 'rs', { deleting: true, finalizers: ['foregroundDeletion'] }), obj(P, 'p1', { owners: [owner('ReplicaSet', 'rs')] })],
      want: ['delete v1/pods ns/p1 Background'],
    },
    {
      name: 'foreground: a dependent with dependents is deleted in foreground too',
      items: [obj(D, 'web', { deleting: true, finalizers: ['foregroundDeletion'] }), obj(RS, 'rs', { owners: [owner('Deployment', 'web')] }), obj(P, 'p1', { owners: [owner('ReplicaSet', 'rs')] })],
      want: ['delete apps/v1/replicasets ns/rs Foreground'],
    },
    {
      name: 'foreground: blocking dependent still terminating, owner waits',
      items: [obj(RS, 'rs', { deleting: true, finalizers: ['foregroundDeletion'] }), obj(P, 'p1', { owners: [owner('ReplicaSet', 'rs')], deleting: true })],
      want: [],
    },
    {
      name: 'foreground: non-blocking dependents do not hold the owner',
      items: [obj(RS, 'rs', { deleting: true, finalizers: ['foregroundDeletion', 'custom'] }), obj(P, 'p1', { owners: [owner('ReplicaSet', 'rs', false)], deleting: true })],
      want: ['update apps/v1/replicasets ns/rs refs= fin=custom'],
    },
    {
      name: 'foreground: all dependents gone, the finalizer is removed',
      items: [obj(RS, 'rs', { deleting: true, finalizers: ['foregroundDeletion'] })],
      want: ['update apps/v1/replicasets ns/rs refs= fin='],
    },
    {
      name: 'owner gone, dependent carries the orphan finalizer: deleted with Orphan',
      items: [obj(RS, 'rs', { owners: [owner('Deployment', 'web')], finalizers: ['orphan'] })],
      want: ['delete apps/v1/replicasets ns/rs Orphan'],
    },
  ];
  for (const c of cases) assert.deepEqual(summary(run(c.items, c.listed)), c.want, c.name);
});

test('deletes carry the uid precondition', () => {
  const [a] = run([obj(RS, 'rs', { owners: [owner('Deployment', 'web')] })]);
  assert.equal(a?.verb === 'delete' && a.uid, 'uid-rs');
});
