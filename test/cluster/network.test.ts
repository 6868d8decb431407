// Table tests of the local cluster's addressing plan and of the commands that realise it (pure;
// the root integration test in cluster.test.ts runs them for real).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isClusterNetns, nodeSetupCommands, planNetwork, underlaySetupCommands, validateClusterName } from './network.js';
import { seedAction, templatesToPrune } from './noderoot.js';

test('the plan gives node i underlay IP 10.250.0.(10+i), pod CIDR 10.244.i.0/24 and its own netns', () => {
  const plan = planNetwork('c1', 3);
  assert.equal(plan.underlayNetns, 'ambit-c1-underlay');
  assert.deepEqual(
    plan.nodes.map((n) => [n.name, n.netns, n.ip, n.podCidr, n.podGateway, n.underlayLink]),
    [
      ['node-1', 'ambit-c1-node-1', '10.250.0.11', '10.244.1.0/24', '10.244.1.1', 'ul-node-1'],
      ['node-2', 'ambit-c1-node-2', '10.250.0.12', '10.244.2.0/24', '10.244.2.1', 'ul-node-2'],
      ['node-3', 'ambit-c1-node-3', '10.250.0.13', '10.244.3.0/24', '10.244.3.1', 'ul-node-3'],
    ],
  );
});

test('bad cluster names and node counts are refused with a message', () => {
  for (const bad of ['', 'A', '-a', 'a-', 'a_b', 'x'.repeat(21)]) assert.throws(() => validateClusterName(bad), /cluster name/, bad);
  for (const ok of ['a', 'ambit', 't123', 'a-b']) validateClusterName(ok);
  assert.throws(() => planNetwork('c', 0), /node count/);
  assert.throws(() => planNetwork('c', 201), /node count/);
});

test('only the exact namespaces of a cluster count as its own', () => {
  const cases: Array<[string, string, boolean]> = [
    ['a', 'ambit-a-underlay', true],
    ['a', 'ambit-a-node-1', true],
    ['a', 'ambit-a-node-12', true],
    ['a', 'ambit-a-b-underlay', false], // cluster "a-b"
    ['a', 'ambit-a-node-1-x', false],
    ['a', 'ambit-a-node-0', false],
    ['a', 'ambit-ab-node-1', false],
    ['a-b', 'ambit-a-b-node-2', true],
    ['a', 'cni-1234', false],
  ];
  for (const [cluster, ns, want] of cases) assert.equal(isClusterNetns(cluster, ns), want, `${cluster} ${ns}`);
});

test('every link is created inside a cluster namespace, never in the host', () => {
  const plan = planNetwork('c', 2);
  const all = [...underlaySetupCommands(plan), ...plan.nodes.flatMap((n) => nodeSetupCommands(plan, n))];
  for (const argv of all) {
    assert.equal(argv[0], 'ip', argv.join(' '));
    // Either `ip netns add|exec <ours>` or `ip -n <ours> …`.
    const ns = argv[1] === '-n' ? argv[2] : argv[1] === 'netns' ? argv[3] : undefined;
    assert.ok(ns && isClusterNetns('c', ns), `runs in a cluster netns: ${argv.join(' ')}`);
  }
  const veth = all.find((a) => a.includes('veth'))!;
  assert.deepEqual(veth, ['ip', '-n', 'ambit-c-underlay', 'link', 'add', 'ul-node-1', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', 'ambit-c-node-1']);
});

test('a node routes to the other nodes\' pod CIDRs via their underlay IPs and holds the DNS address', () => {
  const plan = planNetwork('c', 3);
  const cmds = nodeSetupCommands(plan, plan.nodes[1]!).map((a) => a.join(' '));
  assert.ok(cmds.includes('ip -n ambit-c-node-2 route add 10.244.1.0/24 via 10.250.0.11'));
  assert.ok(cmds.includes('ip -n ambit-c-node-2 route add 10.244.3.0/24 via 10.250.0.13'));
  assert.ok(!cmds.some((c) => c.includes('route add 10.244.2.0/24')), 'no route to its own CIDR (cni0 has it)');
  assert.ok(cmds.includes('ip -n ambit-c-node-2 route add default via 10.250.0.1'));
  assert.ok(cmds.includes('ip -n ambit-c-node-2 addr add 10.96.0.10/32 dev lo'));
  assert.ok(cmds.includes('ip netns exec ambit-c-node-2 sysctl -q -w net.ipv4.ip_forward=1'));
  assert.ok(cmds.includes('ip netns exec ambit-c-node-2 sysctl -q -w net.bridge.bridge-nf-call-iptables=1'));
  const underlay = underlaySetupCommands(plan).map((a) => a.join(' '));
  assert.ok(underlay.includes('ip -n ambit-c-underlay addr add 10.250.0.2/24 dev ul-br'), 'the API server address');
  assert.ok(underlay.includes('ip -n ambit-c-underlay route add 10.244.3.0/24 via 10.250.0.13'), 'replies to pods go back via their node');
});

test('a node root shares only immutable template parts', () => {
  const cases: Array<[string, 'dir' | 'file' | 'other', string]> = [
    ['io.containerd.snapshotter.v1.overlayfs/snapshots/3', 'dir', 'symlink'],
    ['io.containerd.snapshotter.v1.overlayfs/snapshots', 'dir', 'dir'],
    ['io.containerd.snapshotter.v1.overlayfs/snapshots/3/fs', 'dir', 'dir'],
    ['io.containerd.snapshotter.v1.overlayfs/metadata.db', 'file', 'copy'],
    ['io.containerd.snapshotter.v1.native/snapshots/1', 'dir', 'symlink'],
    ['io.containerd.content.v1.content/blobs/sha256/abc', 'file', 'link'],
    ['io.containerd.content.v1.content/ingest', 'dir', 'dir'],
    ['io.containerd.metadata.v1.bolt/meta.db', 'file', 'copy'],
    ['io.containerd.grpc.v1.cri/x.sock', 'other', 'skip'],
  ];
  for (const [rel, kind, want] of cases) assert.equal(seedAction(rel, kind), want, rel);
});

test('templates pruned: dead builders\' partial dirs, and unused ones beyond the most recent', () => {
  const alive = (pid: number) => pid === 1 || pid === 2;
  const entries = [
    { name: 'new', complete: true, usedMs: 300, userPids: [] },
    { name: 'mid', complete: true, usedMs: 200, userPids: [] },
    { name: 'old-in-use', complete: true, usedMs: 100, userPids: [9, 2] },
    { name: 'old-dead-user', complete: true, usedMs: 50, userPids: [9] },
    { name: 'x.partial-1-5', complete: false, usedMs: 0, userPids: [], builderPid: 1 },
    { name: 'y.partial-7-5', complete: false, usedMs: 0, userPids: [], builderPid: 7 },
  ];
  assert.deepEqual(templatesToPrune(entries, 2, alive).sort(), ['old-dead-user', 'y.partial-7-5']);
  assert.deepEqual(templatesToPrune(entries, 5, alive), ['y.partial-7-5']);
});
