/** The warning rate limit: first occurrence logged, repeats counted and reported with the next line. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Throttle } from './throttle.js';

test('Throttle allows the first occurrence, counts repeats in the window, reports them after it', () => {
  const t = new Throttle(1000, 2);
  const steps: [string, number, number | undefined][] = [
    ['a', 0, 0],
    ['a', 10, undefined],
    ['a', 999, undefined],
    ['b', 20, 0], // another key is independent
    ['a', 1000, 2], // window over: logged, with the two suppressed repeats
    ['a', 1500, undefined],
    ['c', 1600, 0], // a third key evicts the oldest (b)
    ['b', 1700, 0], // b forgotten: logged as new
  ];
  for (const [key, now, expected] of steps) assert.equal(t.allow(key, now), expected, `${key}@${now}`);
});
