// Table tests of the scheduler's filters and choice (nodeSelector, required node affinity incl.
// matchFields as DaemonSets use it, taints/tolerations, readiness, capacity, host ports,
// spreading) and its FailedScheduling message; then one pass against an in-process API server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiServer } from './apiserver/server.js';
import type { KObject } from './apiserver/types.js';
import { effectiveTaints, filterNode, needsScheduling, schedule, Scheduler, unschedulableMessage } from './scheduler.js';

const node = (name: string, opts: { labels?: Record<string, string>; taints?: object[]; ready?: boolean; unschedulable?: boolean; pods?: string } = {}): KObject => ({
  metadata: { name, labels: { 'kubernetes.io/hostname': name, ...(opts.labels ?? {}) } },
  spec: { ...(opts.taints ? { taints: opts.taints } : {}), ...(opts.unschedulable ? { unschedulable: true } : {}) },
  status: { conditions: [{ type: 'Ready', status: opts.ready === false ? 'False' : 'True' }], allocatable: { pods: opts.pods ?? '110' } },
});
const pod = (name: string, spec: Record<string, unknown> = {}): KObject => ({ metadata: { name, namespace: 'd', uid: name }, spec: { containers: [{ name: 'c' }], ...spec } });

test('which pods are ours to schedule', () => {
  assert.equal(needsScheduling(pod('a')), true);
  assert.equal(needsScheduling(pod('a', { schedulerName: 'default-scheduler' })), true);
  assert.equal(needsScheduling(pod('a', { schedulerName: 'other' })), false);
  assert.equal(needsScheduling(pod('a', { nodeName: 'n1' })), false);
  assert.equal(needsScheduling({ ...pod('a'), status: { phase: 'Succeeded' } }), false);
});

test('filters: affinity, taints, readiness, cordon, capacity, host ports', () => {
  const cases: [string, KObject, KObject, KObject[], string | undefined][] = [
    ['fits', pod('p'), node('n'), [], undefined],
    ['nodeSelector', pod('p', { nodeSelector: { disk: 'ssd' } }), node('n'), [], "node(s) didn't match Pod's node affinity/selector"],
    ['nodeSelector matches', pod('p', { nodeSelector: { disk: 'ssd' } }), node('n', { labels: { disk: 'ssd' } }), [], undefined],
    [
      'matchFields metadata.name (DaemonSet)',
      pod('p', { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchFields: [{ key: 'metadata.name', operator: 'In', values: ['other'] }] }] } } } }),
      node('n'),
      [],
      "node(s) didn't match Pod's node affinity/selector",
    ],
    ['NoSchedule taint', pod('p'), node('n', { taints: [{ key: 'dedicated', value: 'x', effect: 'NoSchedule' }] }), [], 'node(s) had untolerated taint {dedicated: x}'],
    ['tolerated', pod('p', { tolerations: [{ key: 'dedicated', operator: 'Exists' }] }), node('n', { taints: [{ key: 'dedicated', value: 'x', effect: 'NoSchedule' }] }), [], undefined],
    ['PreferNoSchedule does not block', pod('p'), node('n', { taints: [{ key: 'k', effect: 'PreferNoSchedule' }] }), [], undefined],
    ['not ready', pod('p'), node('n', { ready: false }), [], 'node(s) had untolerated taint {node.kubernetes.io/not-ready: }'],
    ['cordoned', pod('p'), node('n', { unschedulable: true }), [], 'node(s) had untolerated taint {node.kubernetes.io/unschedulable: }'],
    ['full', pod('p'), node('n', { pods: '1' }), [pod('q')], 'Too many pods'],
    ['host port taken', pod('p', { containers: [{ name: 'c', ports: [{ containerPort: 80, hostPort: 8080 }] }] }), node('n'), [pod('q', { containers: [{ name: 'c', ports: [{ containerPort: 1, hostPort: 8080 }] }] })], "node(s) didn't have free ports for the requested pod ports"],
  ];
  for (const [what, p, n, on, want] of cases) assert.equal(filterNode(p, n, on), want, what);
  assert.deepEqual(effectiveTaints(node('n')), []);
});

test('spreading picks the node with the fewest pods; the message counts reasons', () => {
  const nodes = [node('a'), node('b'), node('c', { labels: { x: 'y' } })];
  const byNode = new Map([
    ['a', [pod('1'), pod('2')]],
    ['b', [pod('3')]],
  ]);
  assert.deepEqual(schedule(pod('p'), nodes, byNode), { node: 'c' });
  assert.deepEqual(schedule(pod('p', { nodeSelector: { x: 'z' } }), [node('a', { ready: false, labels: { x: 'z' } }), node('b')], new Map()), {
    message:
      "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.",
  });
  assert.equal(unschedulableMessage(0, []), '0/0 nodes are available. preemption: 0/0 nodes are available: 0 Preemption is not helpful for scheduling.');
});

test('a pass binds pending pods across nodes and marks the unschedulable one', async () => {
  const server = await ApiServer.start({ controllers: false });
  const api = server.registry.clientFor();
  const scheduler = new Scheduler({ api, bind: (ns, p, n) => server.registry.bind(ns, p, n), retryMs: 100 });
  try {
    api.create('v1/serviceaccounts', { metadata: { name: 'default', namespace: 'default' } });
    for (const n of ['n1', 'n2']) {
      const created = api.create('v1/nodes', { metadata: { name: n } });
      api.updateStatus('v1/nodes', { ...created, status: { conditions: [{ type: 'Ready', status: 'True' }], allocatable: { pods: '110' } } });
    }
    for (const p of ['a', 'b', 'c', 'd']) api.create('v1/pods', { metadata: { name: p, namespace: 'default' }, spec: { containers: [{ name: 'c', image: 'i' }] } });
    api.create('v1/pods', { metadata: { name: 'picky', namespace: 'default' }, spec: { nodeSelector: { gpu: 'yes' }, containers: [{ name: 'c', image: 'i' }] } });
    scheduler.start();
    const deadline = Date.now() + 5_000;
    let placed: string[] = [];
    while (Date.now() < deadline) {
      placed = ['a', 'b', 'c', 'd'].map((p) => (api.get('v1/pods', 'default', p)!.spec as { nodeName?: string }).nodeName ?? '');
      if (placed.every(Boolean)) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(placed.filter((n) => n === 'n1').length, 2);
    assert.deepEqual(placed.filter((n) => n === 'n2').length, 2);
    const picky = api.get('v1/pods', 'default', 'picky')!;
    const cond = ((picky.status as { conditions?: { type: string; status: string; reason: string }[] }).conditions ?? []).find((c) => c.type === 'PodScheduled');
    assert.deepEqual([cond?.status, cond?.reason], ['False', 'Unschedulable']);
    const ev = api.list('v1/events', { namespace: 'default' }).items.find((e) => e.reason === 'FailedScheduling');
    assert.deepEqual(ev?.source, { component: 'default-scheduler' });
    assert.ok(api.list('v1/events', { namespace: 'default' }).items.some((e) => e.reason === 'Scheduled' && e.message === 'Successfully assigned default/a to n1'));
  } finally {
    scheduler.stop();
    await server.close();
  }
});
