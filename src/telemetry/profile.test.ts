import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { startAdminServer } from './metrics.js';
import { captureCpuProfile, summarizeProfile, type CpuProfile } from './profile.js';

/** Burns CPU in a function with a name the profile can show, until `until`. */
function ambitProfileTestSpin(until: number): number {
  let x = 0;
  while (performance.now() < until) for (let i = 0; i < 10_000; i++) x = (x * 31 + i) % 1_000_003;
  return x;
}

test('captureCpuProfile: the busy function of this thread has most of the self time', async () => {
  const taking = captureCpuProfile(400, 200);
  // the profiler starts after a few inspector round trips: spin in slices so they can run
  const end = performance.now() + 380;
  while (performance.now() < end) {
    ambitProfileTestSpin(performance.now() + 20);
    await new Promise((r) => setImmediate(r));
  }
  const profile = await taking;
  const sum = summarizeProfile(profile, 5);
  const top = sum.entries[0];
  assert.ok(top, 'no samples');
  assert.match(top.where, /^ambitProfileTestSpin profile\.test\.js:\d+$/);
  assert.ok(top.selfPct > 40, `spin had only ${top.selfPct}% of ${sum.totalMs} ms`);
});

test('captureCpuProfile refuses a second profile of the same thread and bad durations', async () => {
  const first = captureCpuProfile(50);
  await assert.rejects(captureCpuProfile(50), /already being taken/);
  await first;
  await assert.rejects(captureCpuProfile(0), RangeError);
  await assert.rejects(captureCpuProfile(120_000), RangeError);
});

test('summarizeProfile: self time per function from the time deltas, idle reported apart', () => {
  const frame = (functionName: string, line: number) => ({ functionName, url: 'file:///opt/ambit/dist/src/proxy/x.js', lineNumber: line, columnNumber: 0 });
  const p: CpuProfile = {
    nodes: [
      { id: 1, callFrame: frame('(root)', -1), children: [2, 3, 4] },
      { id: 2, callFrame: frame('relay', 9) },
      { id: 3, callFrame: frame('', 19) },
      { id: 4, callFrame: { functionName: '(idle)', url: '', lineNumber: -1, columnNumber: -1 } },
    ],
    startTime: 0,
    endTime: 10_000,
    // the delta at i+1 is the time of sample i
    samples: [2, 2, 3, 4],
    timeDeltas: [0, 3000, 3000, 1000, 3000],
  };
  const sum = summarizeProfile(p);
  assert.equal(sum.totalMs, 10);
  assert.equal(sum.idlePct, 30);
  assert.deepEqual(sum.entries, [
    { where: 'relay x.js:10', selfMs: 6, selfPct: 60 },
    { where: '(idle)', selfMs: 3, selfPct: 30 },
    { where: '(anonymous) x.js:20', selfMs: 1, selfPct: 10 },
  ]);
});

test('admin server: /debug/cpu-profile only when given, and checks its seconds', async () => {
  const registry = new Registry();
  const readiness = () => ({ ready: true, reason: '' });
  const asked: number[] = [];
  const withProfile = await startAdminServer({ host: '127.0.0.1', port: 0, registry, readiness, profile: async (ms) => (asked.push(ms), { main: 'p' }) });
  const without = await startAdminServer({ host: '127.0.0.1', port: 0, registry, readiness });
  try {
    const get = (s: { boundPort: number }, path: string) => fetch(`http://127.0.0.1:${s.boundPort}${path}`);
    let res = await get(withProfile, '/debug/cpu-profile?seconds=0.5');
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { main: 'p' });
    assert.deepEqual(asked, [500]);
    for (const bad of ['0', '61', 'x']) {
      res = await get(withProfile, `/debug/cpu-profile?seconds=${bad}`);
      assert.equal(res.status, 400, bad);
      await res.text();
    }
    res = await get(without, '/debug/cpu-profile?seconds=1');
    assert.equal(res.status, 404);
    await res.text();
  } finally {
    withProfile.close();
    without.close();
  }
});
