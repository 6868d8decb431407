import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyDelta, canonicalJson, deltaSize, diffSnapshots, isEmptyDelta, snapshotVersion } from './delta.js';
import { fixtureService, fixtureSnapshot, fixtureWorkload, FIXTURE_TRUST } from './fixtures.js';
import { RESOURCE_TYPES, type AuthorizationPolicy, type NodeSnapshot, type SnapshotDelta } from './types.js';

test('canonicalJson ignores key order', () => {
  assert.equal(canonicalJson({ b: 1, a: [{ d: 2, c: 3 }] }), '{"a":[{"c":3,"d":2}],"b":1}');
  assert.equal(canonicalJson({ a: 1, b: 2 }), canonicalJson({ b: 2, a: 1 }));
});

test('snapshotVersion is a content hash that ignores the version field', () => {
  const a = fixtureSnapshot('n1', { workloads: [fixtureWorkload('u1', 'n1')] });
  const b = fixtureSnapshot('n1', { workloads: [fixtureWorkload('u1', 'n1')] });
  assert.equal(a.version, b.version);
  assert.equal(snapshotVersion({ ...a, version: 'whatever' }), a.version);
  const c = fixtureSnapshot('n1', { workloads: [fixtureWorkload('u1', 'n1', { labels: { app: 'x' } })] });
  assert.notEqual(a.version, c.version);
});

test('diffSnapshots: table (and apply(prev, diff(prev, next)) == next for each row)', () => {
  const w1 = fixtureWorkload('u1', 'n1');
  const w2 = fixtureWorkload('u2', 'n1');
  const svc = fixtureService('shop', 'web', '10.96.0.10', [w1]);
  const base = fixtureSnapshot('n1', { workloads: [w1, w2], services: [svc] });
  const rows: { name: string; next: NodeSnapshot; want: string }[] = [
    { name: 'no change', next: base, want: '' },
    { name: 'add workload', next: fixtureSnapshot('n1', { workloads: [w1, w2, fixtureWorkload('u3', 'n1')], services: [svc] }), want: 'workloads+u3' },
    { name: 'remove workload', next: fixtureSnapshot('n1', { workloads: [w1], services: [svc] }), want: 'workloads-u2' },
    { name: 'update workload', next: fixtureSnapshot('n1', { workloads: [w1, { ...w2, enrolled: false }], services: [svc] }), want: 'workloads~u2' },
    { name: 'key order alone is no update', next: fixtureSnapshot('n1', { workloads: [w1, reorder(w2)], services: [svc] }), want: '' },
    { name: 'service removed', next: fixtureSnapshot('n1', { workloads: [w1, w2] }), want: 'services-shop/web' },
    { name: 'peer added', next: fixtureSnapshot('n1', { workloads: [w1, w2], services: [svc], peers: [{ uid: 'p1', ips: ['10.1.0.1'], node: 'n2', identity: 'spiffe://cluster.local/ns/a/sa/b', enrolled: true }] }), want: 'peers+p1' },
    { name: 'trust changed', next: fixtureSnapshot('n1', { workloads: [w1, w2], services: [svc], trust: { ...FIXTURE_TRUST, roots: ['R'] } }), want: 'trust' },
  ];
  for (const row of rows) {
    const d = diffSnapshots(base, row.next);
    assert.equal(describe(d), row.want, row.name);
    assert.equal(isEmptyDelta(d), row.want === '', row.name);
    assert.deepEqual(applyDelta(base, d), row.next, row.name);
  }
});

test('applyDelta refuses a delta from another version', () => {
  const a = fixtureSnapshot('n1');
  const b = fixtureSnapshot('n1', { workloads: [fixtureWorkload('u1', 'n1')] });
  assert.throws(() => applyDelta(b, diffSnapshots(a, b)), /delta applies to version .* ask for a full snapshot/);
});

test('property: apply(prev, diff(prev, next)) == next for random snapshots', () => {
  let seed = 42;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  const randomSnapshot = (): NodeSnapshot => {
    const workloads = [...new Map(Array.from({ length: rand(8) }, () => fixtureWorkload(`u${rand(12)}`, 'n1', { labels: { v: String(rand(3)) } })).map((w) => [w.uid, w])).values()];
    const services = [...new Map(Array.from({ length: rand(5) }, () => fixtureService('ns', `s${rand(6)}`, `10.96.0.${rand(4)}`, workloads.filter(() => rand(2) === 0))).map((s) => [s.key, s])).values()];
    const policies: AuthorizationPolicy[] = rand(2) ? [{ key: 'ns/p', namespace: 'ns', name: 'p', action: 'ALLOW', rules: [{ from: [{ principals: [`p${rand(2)}`] }] }] }] : [];
    return fixtureSnapshot('n1', { workloads, services, authorizationPolicies: policies });
  };
  for (let i = 0; i < 300; i++) {
    const prev = randomSnapshot();
    const next = randomSnapshot();
    const d = diffSnapshots(prev, next);
    assert.deepEqual(applyDelta(prev, d), next);
    assert.equal(isEmptyDelta(d), prev.version === next.version);
    assert.ok(deltaSize(d) >= 0);
  }
});

function reorder<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).reverse()) as T;
}

function describe(d: SnapshotDelta): string {
  const parts: string[] = [];
  for (const t of RESOURCE_TYPES) {
    for (const k of Object.keys(d[t].added)) parts.push(`${t}+${k}`);
    for (const k of Object.keys(d[t].updated)) parts.push(`${t}~${k}`);
    for (const k of d[t].removed) parts.push(`${t}-${k}`);
  }
  if (d.trust) parts.push('trust');
  return parts.join(',');
}
