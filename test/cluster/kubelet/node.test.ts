// Table tests of the Node object and Lease the kubelet registers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { leaseObject, microTime, nodeObject, nodeStatus, type NodeFacts } from './node.js';

const facts: NodeFacts = {
  name: 'node-1',
  ip: '10.250.0.11',
  podCidr: '10.244.1.0/24',
  cpus: 4,
  memoryBytes: 8 * 2 ** 30,
  maxPods: 110,
  kernelVersion: '6.1.0',
  osImage: 'Debian GNU/Linux 12 (bookworm)',
  containerRuntimeVersion: 'containerd://1.6.20~ds1',
  kubeletVersion: 'v1.33.0-ambit',
  machineId: 'm',
  bootId: 'b',
  architecture: 'amd64',
};

test('node object: labels, pod CIDR', () => {
  const n = nodeObject(facts);
  assert.equal(n.metadata.labels!['kubernetes.io/hostname'], 'node-1');
  assert.deepEqual(n.spec, { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24'] });
});

test('node status: capacity, addresses, nodeInfo, Ready, transition times kept', () => {
  const s = nodeStatus(facts, true, Date.parse('2026-01-01T00:00:00Z')) as Record<string, any>;
  assert.deepEqual(s.capacity.pods, '110');
  assert.equal(s.capacity.memory, `${8 * 2 ** 20}Ki`);
  assert.deepEqual(s.addresses, [
    { type: 'InternalIP', address: '10.250.0.11' },
    { type: 'Hostname', address: 'node-1' },
  ]);
  assert.equal(s.nodeInfo.containerRuntimeVersion, 'containerd://1.6.20~ds1');
  const ready = s.conditions.find((c: { type: string }) => c.type === 'Ready');
  assert.deepEqual([ready.status, ready.reason, ready.message], ['True', 'KubeletReady', 'kubelet is posting ready status']);
  const later = nodeStatus(facts, true, Date.parse('2026-01-01T00:01:00Z'), s) as Record<string, any>;
  const again = later.conditions.find((c: { type: string }) => c.type === 'Ready');
  assert.equal(again.lastTransitionTime, '2026-01-01T00:00:00Z');
  assert.equal(again.lastHeartbeatTime, '2026-01-01T00:01:00Z');
  const notReady = (nodeStatus(facts, false, Date.parse('2026-01-01T00:02:00Z'), later) as Record<string, any>).conditions.find((c: { type: string }) => c.type === 'Ready');
  assert.deepEqual([notReady.status, notReady.lastTransitionTime], ['False', '2026-01-01T00:02:00Z']);
});

test('lease: owned by the node, 40 s, MicroTime renewTime', () => {
  const l = leaseObject({ metadata: { name: 'node-1', uid: 'n-uid' } }, Date.parse('2026-01-01T00:00:00.123Z'));
  assert.equal(l.metadata.namespace, 'kube-node-lease');
  assert.deepEqual(l.metadata.ownerReferences, [{ apiVersion: 'v1', kind: 'Node', name: 'node-1', uid: 'n-uid' }]);
  assert.deepEqual(l.spec, { holderIdentity: 'node-1', leaseDurationSeconds: 40, renewTime: '2026-01-01T00:00:00.123000Z' });
  assert.equal(microTime(0), '1970-01-01T00:00:00.000000Z');
});
