import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KObject } from '../types.js';
import { describe as show, type Action } from './actions.js';
import { reconcileReplicaSet, replicaSetWakeup } from './replicaset.js';
import { T0, at, pod, ref } from './fixtures.js';

const OWN = ref('ReplicaSet', 'web', 'uid-rs');

function rs(replicas: number, extra: { minReadySeconds?: number; status?: Record<string, unknown> } = {}): KObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'ReplicaSet',
    metadata: { name: 'web', namespace: 'default', uid: 'uid-rs', generation: 2 },
    spec: {
      replicas,
      minReadySeconds: extra.minReadySeconds ?? 0,
      selector: { matchLabels: { app: 'web' } },
      template: { metadata: { labels: { app: 'web', tier: 'fe' } }, spec: { containers: [{ name: 'c', image: 'nginx' }] } },
    },
    ...(extra.status ? { status: extra.status } : {}),
  };
}

const mine = (name: string, o: Parameters<typeof pod>[1] = {}) => pod(name, { labels: { app: 'web', tier: 'fe' }, owner: OWN, node: 'n1', ready: true, ...o });
const deleted = (actions: Action[]) => actions.filter((a) => a.verb === 'delete').map((a) => (a.verb === 'delete' ? a.name : ''));

test('scale up creates pods from the template with a controller reference', () => {
  const actions = reconcileReplicaSet({ rs: rs(3), pods: [mine('web-a')] }, T0);
  const creates = actions.filter((a) => a.verb === 'create');
  assert.equal(creates.length, 2);
  const p = creates[0]!.verb === 'create' ? creates[0]!.object : undefined;
  assert.equal(p?.metadata.generateName, 'web-');
  assert.equal(p?.metadata.namespace, 'default');
  assert.deepEqual(p?.metadata.labels, { app: 'web', tier: 'fe' });
  assert.deepEqual(p?.metadata.ownerReferences, [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web', uid: 'uid-rs', controller: true, blockOwnerDeletion: true }]);
  assert.deepEqual(p?.['spec'], { containers: [{ name: 'c', image: 'nginx' }] });
  // status counts the pods that existed when the sync started, as the real controller does
  const st = actions.at(-1)!;
  assert.equal(st.verb, 'updateStatus');
  assert.deepEqual(st.verb === 'updateStatus' && st.object['status'], { replicas: 1, fullyLabeledReplicas: 1, readyReplicas: 1, availableReplicas: 1, observedGeneration: 2 });
});

test('inactive pods do not count: Succeeded, Failed and terminating pods are replaced', () => {
  const pods = [mine('a', { phase: 'Succeeded' }), mine('b', { phase: 'Failed' }), mine('c', { deleting: true }), mine('d')];
  const creates = reconcileReplicaSet({ rs: rs(2), pods }, T0).filter((a) => a.verb === 'create');
  assert.equal(creates.length, 1);
});

test('scale down deletes in the real ranking order', () => {
  const cases: { name: string; pods: KObject[]; replicas: number; want: string[] }[] = [
    { name: 'unscheduled first', pods: [mine('a'), mine('b', { node: '' }), mine('c')], replicas: 2, want: ['b'] },
    { name: 'pending before running', pods: [mine('a'), mine('b', { phase: 'Pending' }), mine('c')], replicas: 2, want: ['b'] },
    { name: 'not ready before ready', pods: [mine('a'), mine('b', { ready: false }), mine('c')], replicas: 2, want: ['b'] },
    { name: 'doubled-up node first', pods: [mine('a', { node: 'n1' }), mine('b', { node: 'n2' }), mine('c', { node: 'n1' })], replicas: 2, want: ['a'] },
    { name: 'more restarts first', pods: [mine('a', { node: 'x' }), mine('b', { node: 'y', restarts: 3 })], replicas: 1, want: ['b'] },
    { name: 'newest first (log scale)', pods: [mine('old', { node: 'x', created: -3600 }), mine('new', { node: 'y', created: 0 })], replicas: 1, want: ['new'] },
    { name: 'recently ready first', pods: [mine('a', { node: 'x', readySince: -7200 }), mine('b', { node: 'y', readySince: -10 })], replicas: 1, want: ['b'] },
    { name: 'to zero deletes all', pods: [mine('a'), mine('b')], replicas: 0, want: ['a', 'b'] },
  ];
  for (const c of cases) {
    const got = deleted(reconcileReplicaSet({ rs: rs(c.replicas), pods: c.pods }, T0 + 60_000));
    assert.deepEqual(got.sort(), c.want.sort(), c.name);
  }
});

test('adopts matching orphans and releases owned pods that no longer match', () => {
  const orphan = pod('orphan', { labels: { app: 'web' }, node: 'n1', ready: true });
  const strayed = mine('strayed', { labels: { app: 'other' } });
  const actions = reconcileReplicaSet({ rs: rs(1), pods: [orphan, strayed] }, T0);
  assert.deepEqual(actions.map(show), ['update v1/pods default/orphan', 'update v1/pods default/strayed', 'updateStatus apps/v1/replicasets default/web']);
  const adopted = actions[0]!.verb === 'update' ? actions[0]!.object : undefined;
  assert.equal(adopted?.metadata.ownerReferences?.[0]?.uid, 'uid-rs');
  const released = actions[1]!.verb === 'update' ? actions[1]!.object : undefined;
  assert.equal(released?.metadata.ownerReferences, undefined);
  // the adopted pod counts: no create; it lacks the tier label, so it is not fully labelled
  const st = actions[2]!.verb === 'updateStatus' ? actions[2]!.object['status'] : undefined;
  assert.deepEqual(st, { replicas: 1, readyReplicas: 1, availableReplicas: 1, observedGeneration: 2 });
});

test('availability waits for minReadySeconds, and the wakeup is when it passes', () => {
  const pods = [mine('a', { readySince: 0 }), mine('b', { readySince: 5 })];
  const input = { rs: rs(2, { minReadySeconds: 10 }), pods };
  const st = (now: number) => {
    const a = reconcileReplicaSet(input, now).find((x) => x.verb === 'updateStatus');
    return a && a.verb === 'updateStatus' ? (a.object['status'] as Record<string, unknown>) : undefined;
  };
  assert.equal(st(T0 + 8_000)?.['availableReplicas'], undefined);
  assert.equal(st(T0 + 11_000)?.['availableReplicas'], 1);
  assert.equal(st(T0 + 16_000)?.['availableReplicas'], 2);
  assert.equal(replicaSetWakeup(input, T0 + 11_000), T0 + 15_001);
});

test('no write when nothing changed', () => {
  const status = { replicas: 1, fullyLabeledReplicas: 1, readyReplicas: 1, availableReplicas: 1, observedGeneration: 2 };
  assert.deepEqual(reconcileReplicaSet({ rs: rs(1, { status }), pods: [mine('a')] }, T0), []);
});

test('a failed create is reported as ReplicaFailure before the retry', () => {
  const actions = reconcileReplicaSet({ rs: rs(1), pods: [], manageError: { reason: 'FailedCreate', message: 'pods "web-" is forbidden: exceeded quota' } }, T0);
  assert.deepEqual(actions.map((a) => a.verb), ['updateStatus', 'create']);
  const st = actions[0]!.verb === 'updateStatus' ? (actions[0]!.object['status'] as { conditions: unknown[] }) : undefined;
  assert.deepEqual(st?.conditions, [{ type: 'ReplicaFailure', status: 'True', lastTransitionTime: at(0), reason: 'FailedCreate', message: 'pods "web-" is forbidden: exceeded quota' }]);
});
