/**
 * The size goal of node scoping, measured at the benchmark's scale (100 nodes, 10k pods, 2k
 * services, 500 policies): every node's snapshot is at most 5% of the full-mesh snapshot's bytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BENCH_SPEC, generateCluster } from './snapshot.gen.js';
import { computeModel } from '../state/model.js';
import { fullSnapshot, snapshotBytes, snapshotsForAllNodes } from './snapshot.js';

test('generator: the requested figures, deterministic, all valid', () => {
  const a = generateCluster(BENCH_SPEC);
  assert.equal(a.nodes.length, 100);
  assert.equal(a.pods.length, 10_000);
  assert.equal(a.services.length, 2_000);
  assert.equal(a.authorizationPolicies.length, 500);
  assert.deepEqual(generateCluster(BENCH_SPEC).pods[1234], a.pods[1234]);
  const m = computeModel(a);
  assert.deepEqual(m.statuses.filter((s) => s.condition.status !== 'True'), []);
});

test('node snapshots at 100 nodes / 10k pods / 2k services / 500 policies are at most 5% of the full mesh', () => {
  const m = computeModel(generateCluster(BENCH_SPEC));
  const full = snapshotBytes(fullSnapshot(m));
  const sizes = [...snapshotsForAllNodes(m).values()].map(snapshotBytes).sort((x, y) => x - y);
  const max = sizes[sizes.length - 1]!;
  const median = sizes[Math.floor(sizes.length / 2)]!;
  console.log(`full ${full} B; node median ${median} B (${((100 * median) / full).toFixed(2)}%), max ${max} B (${((100 * max) / full).toFixed(2)}%)`);
  assert.equal(sizes.length, 100);
  assert.ok(max / full <= 0.05, `largest node snapshot is ${((100 * max) / full).toFixed(2)}% of the full mesh`);
});
