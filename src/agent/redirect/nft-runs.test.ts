import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nftRuns, type CommandRunner } from './exec.js';

test('nftRuns: a yes is asked once per key; a no is asked again (one failed start is not forever)', async () => {
  const answers = [1, 0, 0];
  let asked = 0;
  const run: CommandRunner = async () => ({ code: answers[asked++] ?? 0, stdout: '', stderr: '' });
  assert.equal(await nftRuns(run, run), false, 'the first start failed');
  assert.equal(await nftRuns(run, run), true, 'asked again, and now it runs');
  assert.equal(await nftRuns(run, run), true);
  assert.equal(asked, 2, 'the yes was kept');
});
