// Table tests of the kubelet's back-off: 10 s doubling to 5 min, "in back-off since" an exit, and
// forgetting a key after a long quiet; plus the Go duration text used in messages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff, CRASH_BACKOFF, goDuration, jitter } from './backoff.js';

test('delays double from the initial value up to the maximum', () => {
  const b = new Backoff(CRASH_BACKOFF.initialMs, CRASH_BACKOFF.maxMs);
  const seen = [];
  for (let i = 0; i < 8; i++) seen.push(b.next('k', i * 1000));
  assert.deepEqual(seen, [10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000]);
  assert.equal(b.get('other'), 0);
});

test('a container restart follows the kubelet: first restart at once, then wait out the delay since the exit', () => {
  const b = new Backoff(10_000, 300_000);
  const key = 'pod/c';
  // first exit at t=0: no entry yet, so restart at once (and start a 10 s back-off)
  assert.equal(b.isInBackoffSince(key, 0, 100), false);
  b.next(key, 100);
  // second exit at t=1 s: within 10 s of it → CrashLoopBackOff until 11 s
  const cases: [number, boolean][] = [
    [1_500, true],
    [10_999, true],
    [11_000, false],
  ];
  for (const [now, want] of cases) assert.equal(b.isInBackoffSince(key, 1_000, now), want, `t=${now}`);
  assert.equal(b.until(key, 1_000), 11_000);
});

test('a key quiet for twice the maximum starts over', () => {
  const b = new Backoff(10_000, 300_000);
  b.next('k', 0);
  b.next('k', 1);
  assert.equal(b.get('k'), 20_000);
  assert.equal(b.next('k', 600_002), 10_000);
  b.gc(2_000_000);
  assert.equal(b.get('k'), 0);
});

test('jitter and Go durations', () => {
  assert.equal(jitter(10_000, 0.5, () => 0), 10_000);
  assert.equal(jitter(10_000, 0.5, () => 1), 15_000);
  const cases: [number, string][] = [
    [10_000, '10s'],
    [80_000, '1m20s'],
    [300_000, '5m0s'],
    [3_723_000, '1h2m3s'],
  ];
  for (const [ms, want] of cases) assert.equal(goDuration(ms), want);
});
