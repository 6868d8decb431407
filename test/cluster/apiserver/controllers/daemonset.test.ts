import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KObject } from '../types.js';
import type { Action } from './actions.js';
import { field } from './meta.js';
import { CONTROLLER_REVISION_HASH, nodeShouldRunDaemonPod, reconcileDaemonSet } from './daemonset.js';
import { T0, node, pod, ref } from './fixtures.js';

type Obj = Record<string, unknown>;

function ds(o: { image?: string; podSpec?: Obj; strategy?: Obj; generation?: number } = {}): KObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: 'agent', namespace: 'kube-system', uid: 'uid-ds', generation: o.generation ?? 1, annotations: { 'deprecated.daemonset.template.generation': String(o.generation ?? 1) } },
    spec: {
      selector: { matchLabels: { app: 'agent' } },
      template: { metadata: { labels: { app: 'agent' } }, spec: { containers: [{ name: 'c', image: o.image ?? 'v1' }], ...(o.podSpec ?? {}) } },
      updateStrategy: o.strategy ?? { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } },
      revisionHistoryLimit: 10,
    },
  };
}

const createdOn = (actions: Action[]): string[] =>
  actions.filter((a) => a.verb === 'create' && a.resource === 'v1/pods').map((a) => (a.verb === 'create' ? field<string>(a.object, 'spec', 'nodeName')! : '')).sort();
const deleted = (actions: Action[]): string[] => actions.filter((a) => a.verb === 'delete' && a.resource === 'v1/pods').map((a) => (a.verb === 'delete' ? a.name : '')).sort();

test('placement: nodeSelector, node affinity, taints and the tolerations daemon pods get', () => {
  const nodes = [
    node('plain'),
    node('gpu', { labels: { gpu: 'yes' } }),
    node('tainted', { taints: [{ key: 'dedicated', value: 'db', effect: 'NoSchedule' }] }),
    node('cordoned', { taints: [{ key: 'node.kubernetes.io/unschedulable', effect: 'NoSchedule' }] }),
    node('not-ready', { taints: [{ key: 'node.kubernetes.io/not-ready', effect: 'NoExecute' }] }),
    node('cp', { labels: { 'node-role.kubernetes.io/control-plane': '' }, taints: [{ key: 'node-role.kubernetes.io/control-plane', effect: 'NoSchedule' }] }),
  ];
  const cases: { name: string; spec: Obj; want: string[] }[] = [
    { name: 'no constraints: untainted and auto-tolerated nodes', spec: {}, want: ['cordoned', 'gpu', 'not-ready', 'plain'] },
    { name: 'nodeSelector', spec: { nodeSelector: { gpu: 'yes' } }, want: ['gpu'] },
    {
      name: 'node affinity NotIn',
      spec: { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'gpu', operator: 'DoesNotExist' }, { key: 'kubernetes.io/hostname', operator: 'NotIn', values: ['plain'] }] }] } } } },
      want: ['cordoned', 'not-ready'],
    },
    { name: 'tolerate everything', spec: { tolerations: [{ operator: 'Exists' }] }, want: ['cordoned', 'cp', 'gpu', 'not-ready', 'plain', 'tainted'] },
    { name: 'tolerate one taint by value', spec: { tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'db', effect: 'NoSchedule' }] }, want: ['cordoned', 'gpu', 'not-ready', 'plain', 'tainted'] },
    { name: 'wrong value does not tolerate', spec: { tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'web' }] }, want: ['cordoned', 'gpu', 'not-ready', 'plain'] },
  ];
  for (const c of cases) {
    const got = createdOn(reconcileDaemonSet({ ds: ds({ podSpec: c.spec }), nodes, pods: [], revisions: [] }, T0));
    assert.deepEqual(got, c.want, c.name);
  }
});

test('a daemon pod: pinned by affinity and bound, hash labels, default tolerations', () => {
  const actions = reconcileDaemonSet({ ds: ds({ podSpec: { hostNetwork: true } }), nodes: [node('n1')], pods: [], revisions: [] }, T0);
  assert.deepEqual(actions.map((a) => `${a.verb} ${a.resource}`), ['create apps/v1/controllerrevisions', 'create v1/pods', 'updateStatus apps/v1/daemonsets']);
  const rev = actions[0]!.verb === 'create' ? actions[0]!.object : undefined;
  const hash = rev?.metadata.labels?.[CONTROLLER_REVISION_HASH];
  assert.match(hash ?? '', /^[bcdf456789]+$/);
  assert.equal(rev?.metadata.name, `agent-${hash}`);
  assert.equal(rev?.['revision'], 1);
  assert.equal(field(rev, 'data', 'spec', 'template', '$patch'), 'replace');
  const p = actions[1]!.verb === 'create' ? actions[1]!.object : undefined;
  assert.equal(p?.metadata.generateName, 'agent-');
  assert.deepEqual(p?.metadata.labels, { app: 'agent', 'pod-template-generation': '1', [CONTROLLER_REVISION_HASH]: hash });
  assert.deepEqual(p?.metadata.ownerReferences, [ref('DaemonSet', 'agent', 'uid-ds')]);
  assert.equal(field(p, 'spec', 'nodeName'), 'n1');
  assert.deepEqual(field(p, 'spec', 'affinity'), {
    nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchFields: [{ key: 'metadata.name', operator: 'In', values: ['n1'] }] }] } },
  });
  const tols = (field<{ key: string; effect: string }[]>(p, 'spec', 'tolerations') ?? []).map((t) => `${t.key}:${t.effect}`);
  assert.deepEqual(tols, [
    'node.kubernetes.io/not-ready:NoExecute',
    'node.kubernetes.io/unreachable:NoExecute',
    'node.kubernetes.io/disk-pressure:NoSchedule',
    'node.kubernetes.io/memory-pressure:NoSchedule',
    'node.kubernetes.io/pid-pressure:NoSchedule',
    'node.kubernetes.io/unschedulable:NoSchedule',
    'node.kubernetes.io/network-unavailable:NoSchedule',
  ]);
  // without binding, only the affinity pins the pod
  const unbound = reconcileDaemonSet({ ds: ds(), nodes: [node('n1')], pods: [], revisions: [], bindPods: false }, T0);
  const q = unbound[1]!.verb === 'create' ? unbound[1]!.object : undefined;
  assert.equal(field(q, 'spec', 'nodeName'), undefined);
});

test('NoExecute evicts, NoSchedule only stops new placements', () => {
  const d = ds();
  assert.deepEqual(nodeShouldRunDaemonPod(node('a', { taints: [{ key: 'x', effect: 'NoSchedule' }] }), d), { shouldRun: false, shouldContinueRunning: true });
  assert.deepEqual(nodeShouldRunDaemonPod(node('a', { taints: [{ key: 'x', effect: 'NoExecute' }] }), d), { shouldRun: false, shouldContinueRunning: false });
});

/** A cluster of nodes with one daemon pod each, of the DaemonSet's current revision or not. */
function world(image: string, podImages: Record<string, { hash: string; ready?: boolean }>, nodeNames: string[]) {
  const d = ds({ image, generation: image === 'v1' ? 1 : 2 });
  const first = reconcileDaemonSet({ ds: d, nodes: [], pods: [], revisions: [] }, T0);
  const rev = first[0]!.verb === 'create' ? { ...first[0]!.object, metadata: { ...first[0]!.object.metadata, uid: 'uid-rev' } } : undefined;
  const hash = rev!.metadata.labels![CONTROLLER_REVISION_HASH]!;
  const pods = Object.entries(podImages).map(([n, o]) =>
    pod(`agent-${n}`, { ns: 'kube-system', node: n, ready: o.ready ?? true, readySince: -100, labels: { app: 'agent', [CONTROLLER_REVISION_HASH]: o.hash === 'current' ? hash : o.hash }, owner: ref('DaemonSet', 'agent', 'uid-ds') }),
  );
  return { ds: d, nodes: nodeNames.map((n) => node(n)), pods, revisions: [rev!] };
}

test('status: scheduled, ready, updated, available, misscheduled', () => {
  const w = world('v1', { a: { hash: 'current' }, b: { hash: 'old' }, c: { hash: 'current', ready: false } }, ['a', 'b', 'c', 'd']);
  w.nodes[1] = node('b', { taints: [{ key: 'x', effect: 'NoSchedule' }] });
  const actions = reconcileDaemonSet(w, T0);
  assert.deepEqual(createdOn(actions), ['d']);
  const st = actions.find((a) => a.verb === 'updateStatus');
  assert.deepEqual(st?.verb === 'updateStatus' && st.object['status'], {
    currentNumberScheduled: 2,
    numberMisscheduled: 1,
    desiredNumberScheduled: 3,
    numberReady: 1,
    observedGeneration: 1,
    updatedNumberScheduled: 2,
    numberAvailable: 1,
    numberUnavailable: 2,
  });
});

test('rolling update with maxUnavailable 1 replaces one old pod at a time', () => {
  const w = world('v2', { a: { hash: 'old' }, b: { hash: 'old' }, c: { hash: 'old' } }, ['a', 'b', 'c']);
  let actions = reconcileDaemonSet(w, T0);
  assert.deepEqual(deleted(actions), ['agent-a']);
  // the old pod is gone: the manage step recreates it on the same node, no further deletes
  w.pods = w.pods.filter((p) => p.metadata.name !== 'agent-a');
  actions = reconcileDaemonSet(w, T0);
  assert.deepEqual(createdOn(actions), ['a']);
  assert.deepEqual(deleted(actions), []);
  // the new pod exists but is not ready: still nothing else is deleted
  const created = actions.find((a) => a.verb === 'create' && a.resource === 'v1/pods');
  const fresh = { ...(created!.verb === 'create' ? created!.object : ({} as KObject)) };
  fresh.metadata = { ...fresh.metadata, name: 'agent-new-a', uid: 'uid-new-a', creationTimestamp: '2024-05-01T10:00:01Z' };
  w.pods.push(fresh);
  assert.deepEqual(deleted(reconcileDaemonSet(w, T0)), []);
  // once ready, the next old pod goes
  fresh['status'] = { phase: 'Running', conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: '2024-05-01T09:59:00Z' }] };
  assert.deepEqual(deleted(reconcileDaemonSet(w, T0)), ['agent-b']);
});

test('rolling update with maxSurge creates the new pod before deleting the old', () => {
  const w = world('v2', { a: { hash: 'old' }, b: { hash: 'old' } }, ['a', 'b']);
  w.ds = { ...w.ds, spec: { ...(w.ds['spec'] as Obj), updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } } } };
  const actions = reconcileDaemonSet(w, T0);
  assert.deepEqual(createdOn(actions), ['a']);
  assert.deepEqual(deleted(actions), []);
});

test('OnDelete leaves old pods alone; failed pods are replaced', () => {
  const w = world('v2', { a: { hash: 'old' }, b: { hash: 'old' } }, ['a', 'b']);
  w.ds = { ...w.ds, spec: { ...(w.ds['spec'] as Obj), updateStrategy: { type: 'OnDelete' } } };
  assert.deepEqual(deleted(reconcileDaemonSet(w, T0)), []);
  (w.pods[1]!['status'] as Obj)['phase'] = 'Failed';
  assert.deepEqual(deleted(reconcileDaemonSet(w, T0)), ['agent-b']);
});

test('without ControllerRevisions served, pods still get the template hash', () => {
  const withRevs = reconcileDaemonSet({ ds: ds(), nodes: [node('n1')], pods: [], revisions: [] }, T0);
  const without = reconcileDaemonSet({ ds: ds(), nodes: [node('n1')], pods: [], revisions: undefined }, T0);
  assert.deepEqual(without.map((a) => `${a.verb} ${a.resource}`), ['create v1/pods', 'updateStatus apps/v1/daemonsets']);
  const label = (a: Action | undefined) => (a?.verb === 'create' ? a.object.metadata.labels?.[CONTROLLER_REVISION_HASH] : undefined);
  assert.equal(label(without[0]), label(withRevs[1]));
});
