// Table tests of the pod status the kubelet reports: phase (getPhase), the kubelet-owned
// conditions, readiness gates, transition-time keeping, and container status shapes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KObject } from '../apiserver/types.js';
import { computePodStatus, podConditions, podPhase, terminatedReason, type ContainerView, type PodView } from './status.js';

const T = '2026-01-01T00:00:00Z';
const term = (exitCode: number) => ({ exitCode, reason: terminatedReason(exitCode, ''), startedAt: T, finishedAt: T, containerID: 'containerd://x' });
const c = (name: string, over: Partial<ContainerView> = {}): ContainerView => ({
  name,
  image: 'img',
  state: { running: { startedAt: T } },
  lastState: {},
  ready: true,
  started: true,
  restartCount: 0,
  imageID: 'sha256:1',
  containerID: 'containerd://1',
  ...over,
});
const waiting = (reason: string) => ({ waiting: { reason } });
const podWith = (restartPolicy: string, extra: Record<string, unknown> = {}): KObject => ({ metadata: { name: 'p', namespace: 'd', uid: 'u' }, spec: { restartPolicy, containers: [] }, ...extra });
const view = (containers: ContainerView[], initContainers: ContainerView[] = []): PodView => ({ sandboxReady: true, podIps: ['10.244.1.2'], hostIp: '192.168.0.1', startTime: T, containers, initContainers });

test('phase follows getPhase for each restart policy and container mix', () => {
  const crashLooping = c('a', { state: waiting('CrashLoopBackOff'), lastState: { terminated: term(1) }, ready: false });
  const cases: [string, string, ContainerView[], ContainerView[], string, boolean?][] = [
    ['creating', 'Always', [c('a', { state: waiting('ContainerCreating'), ready: false })], [], 'Pending'],
    ['running', 'Always', [c('a')], [], 'Running'],
    ['crash loop is Running', 'Always', [crashLooping], [], 'Running'],
    ['one running one creating', 'Always', [c('a'), c('b', { state: waiting('ErrImagePull') })], [], 'Pending'],
    ['Never, all succeeded', 'Never', [c('a', { state: { terminated: term(0) } })], [], 'Succeeded'],
    ['Never, one failed', 'Never', [c('a', { state: { terminated: term(0) } }), c('b', { state: { terminated: term(2) } })], [], 'Failed'],
    ['OnFailure, succeeded', 'OnFailure', [c('a', { state: { terminated: term(0) } })], [], 'Succeeded'],
    ['Always, exited 0 restarts', 'Always', [c('a', { state: { terminated: term(0) } })], [], 'Running'],
    ['init still running', 'Always', [c('a', { state: waiting('PodInitializing') })], [c('i')], 'Pending'],
    ['init failed, Never', 'Never', [c('a', { state: waiting('PodInitializing') })], [c('i', { state: { terminated: term(1) } })], 'Failed'],
    ['init failed, OnFailure retries', 'OnFailure', [c('a', { state: waiting('PodInitializing') })], [c('i', { state: { terminated: term(1) } })], 'Pending'],
    ['deleted, killed by SIGTERM handler (0)', 'Always', [c('a', { state: { terminated: term(0) } })], [], 'Succeeded', true],
    ['deleted, killed (137)', 'Always', [c('a', { state: { terminated: term(137) } })], [], 'Failed', true],
  ];
  for (const [what, policy, containers, inits, want, terminal] of cases) assert.equal(podPhase(podWith(policy), view(containers, inits), terminal), want, what);
});

test('conditions: readiness, initialization, completion and readiness gates', () => {
  const get = (conds: { type: string; status: string; reason?: string; message?: string }[], t: string) => conds.find((x) => x.type === t)!;
  let conds = podConditions(podWith('Always'), view([c('a'), c('b', { ready: false })]), 'Running');
  assert.deepEqual(conds.map((x) => x.type), ['PodReadyToStartContainers', 'Initialized', 'Ready', 'ContainersReady']);
  assert.deepEqual(get(conds, 'Ready'), { type: 'Ready', status: 'False', reason: 'ContainersNotReady', message: 'containers with unready status: [b]' });
  conds = podConditions(podWith('Always'), view([c('a', { ready: false, state: waiting('PodInitializing') })], [c('i1', { state: { terminated: term(0) } }), c('i2')]), 'Pending');
  assert.deepEqual(get(conds, 'Initialized'), { type: 'Initialized', status: 'False', reason: 'ContainersNotInitialized', message: 'containers with incomplete status: [i2]' });
  conds = podConditions(podWith('Never'), view([c('a', { ready: false, state: { terminated: term(0) } })]), 'Succeeded');
  assert.equal(get(conds, 'Ready').reason, 'PodCompleted');
  assert.equal(get(conds, 'PodReadyToStartContainers').status, 'False');
  const gated = podWith('Always', { status: { conditions: [{ type: 'example.com/ready', status: 'False' }] } });
  (gated.spec as Record<string, unknown>).readinessGates = [{ conditionType: 'example.com/ready' }, { conditionType: 'example.com/other' }];
  conds = podConditions(gated, view([c('a')]), 'Running');
  assert.equal(get(conds, 'ContainersReady').status, 'True');
  assert.equal(get(conds, 'Ready').reason, 'ReadinessGatesNotReady');
  assert.match(get(conds, 'Ready').message!, /corresponding condition of pod readiness gate "example.com\/other" does not exist/);
});

test('computePodStatus keeps transition times of unchanged conditions and conditions it does not own', () => {
  const old = {
    phase: 'Running',
    qosClass: 'BestEffort',
    conditions: [
      { type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: '2025-01-01T00:00:00Z' },
      { type: 'Ready', status: 'True', lastProbeTime: null, lastTransitionTime: '2025-01-02T00:00:00Z' },
      { type: 'ContainersReady', status: 'False', lastProbeTime: null, lastTransitionTime: '2025-01-02T00:00:00Z' },
    ],
  };
  const s = computePodStatus(podWith('Always', { status: old }), view([c('a')]), T);
  const byType = Object.fromEntries((s.conditions as { type: string; lastTransitionTime: string }[]).map((x) => [x.type, x.lastTransitionTime]));
  assert.equal(byType.Ready, '2025-01-02T00:00:00Z', 'Ready stayed True');
  assert.equal(byType.ContainersReady, T, 'ContainersReady flipped to True');
  assert.equal(byType.PodScheduled, '2025-01-01T00:00:00Z');
  assert.equal(s.qosClass, 'BestEffort');
  assert.equal(s.podIP, '10.244.1.2');
  assert.deepEqual(s.podIPs, [{ ip: '10.244.1.2' }]);
  assert.deepEqual(s.hostIPs, [{ ip: '192.168.0.1' }]);
  assert.deepEqual(s.containerStatuses[0], { name: 'a', state: { running: { startedAt: T } }, lastState: {}, ready: true, restartCount: 0, image: 'img', imageID: 'sha256:1', started: true, containerID: 'containerd://1' });
  assert.equal('initContainerStatuses' in s, false);
});

test('terminated reasons', () => {
  assert.equal(terminatedReason(0, ''), 'Completed');
  assert.equal(terminatedReason(1, ''), 'Error');
  assert.equal(terminatedReason(137, 'OOMKilled'), 'OOMKilled');
});
