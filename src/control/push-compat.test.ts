/**
 * The push path carries the snapshot module's objects unchanged: src/control/snapshot.ts's
 * NodeSnapshot/SnapshotDelta and the wire types of src/api/types.ts are assignable both ways, and
 * the two diff/apply implementations agree (the agent applies with api's applyDelta what the
 * control plane diffed with snapshot.ts's diff). A compile error here means the two drifted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyDelta, diffSnapshots } from '../api/delta.js';
import { fixtureService, fixtureSnapshot, fixtureWorkload } from '../api/fixtures.js';
import type * as api from '../api/types.js';
import { apply, diff, type NodeSnapshot, type SnapshotDelta } from './snapshot.js';
import { PushHub } from './push-hub.js';

// Type-level: each direction must compile.
const toWire = (s: NodeSnapshot): api.NodeSnapshot => s;
const fromWire = (s: api.NodeSnapshot): NodeSnapshot => s;
const deltaToWire = (d: SnapshotDelta): api.SnapshotDelta => d;
const deltaFromWire = (d: api.SnapshotDelta): SnapshotDelta => d;

test('the hub accepts the snapshot module\'s diff', () => {
  const hub = new PushHub({ diff: (a, b) => deltaToWire(diff(fromWire(a), fromWire(b))) });
  assert.equal(hub.publish(toWire(fromWire(fixtureSnapshot('n1')))), true);
});

test('property: the control plane\'s diff and the agent\'s apply agree (and the other way round)', () => {
  let seed = 3;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  const random = (): api.NodeSnapshot => {
    const workloads = [...new Map(Array.from({ length: rand(6) }, () => fixtureWorkload(`u${rand(9)}`, 'n1', { labels: { v: String(rand(3)) } })).map((w) => [w.uid, w])).values()];
    const services = [...new Map(Array.from({ length: rand(4) }, () => fixtureService('ns', `s${rand(5)}`, `10.96.0.${rand(3)}`, workloads.filter(() => rand(2) === 0))).map((s) => [s.key, s])).values()];
    return fixtureSnapshot('n1', { workloads, services });
  };
  for (let i = 0; i < 200; i++) {
    const prev = random();
    const next = random();
    assert.deepEqual(applyDelta(prev, deltaToWire(diff(fromWire(prev), fromWire(next)))), next);
    assert.deepEqual(apply(fromWire(prev), deltaFromWire(diffSnapshots(prev, next))), next);
  }
});
