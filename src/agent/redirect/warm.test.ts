/**
 * Warm processes without root: table tests of the protocol's pure parts (line validation, the
 * prologue), the script itself run by sh (stdin that ends early exits 0 quietly; `read` leaves
 * the tool's input untouched, byte for byte), and the pool with harmless tools (cat, sh): a warm
 * run returns what a spawn returns, falls back to a spawn when none is idle or the run cannot be
 * warm, refills only after the caller has its result, and close() leaves no process behind.
 * The netns behaviour (real rules through nsenter) is in warm.netns.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { hostRunner } from './exec.js';
import { WarmPool, warmArgv, warmLine, warmPrologue, WARM_SCRIPT } from './warm.js';

const TIMEOUT = 5_000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until(what: string, cond: () => boolean, ms = TIMEOUT): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('warmLine: empty for none; an absolute path without newline or NUL; nothing else', () => {
  const cases: [string | undefined, string | undefined][] = [
    [undefined, ''],
    ['', ''],
    ['/var/run/netns/cni-1234', '/var/run/netns/cni-1234'],
    ['/proc/4242/ns/net', '/proc/4242/ns/net'],
    ['/path with spaces/and "quotes" $HOME `x`', '/path with spaces/and "quotes" $HOME `x`'],
    ['var/run/netns/x', undefined],
    ['./x', undefined],
    ['-x', undefined],
    ['/var/run/netns/x\n/etc/passwd', undefined],
    ['/x\0y', undefined],
  ];
  for (const [value, line] of cases) assert.equal(warmLine(value), line, JSON.stringify(value));
});

test('warmPrologue: the two lines, or undefined when the run cannot be warm', () => {
  const cases: [string | undefined, Record<string, string> | undefined, string | undefined][] = [
    [undefined, undefined, '\n\n'],
    ['/var/run/netns/p', undefined, '/var/run/netns/p\n\n'],
    ['/var/run/netns/p', { XTABLES_LOCKFILE: '/var/run/ambit/xtables-1.lock' }, '/var/run/netns/p\n/var/run/ambit/xtables-1.lock\n'],
    [undefined, { XTABLES_LOCKFILE: '/run/x.lock' }, '\n/run/x.lock\n'],
    [undefined, {}, '\n\n'],
    ['', undefined, undefined], // '' would mean the agent's own netns
    ['relative', undefined, undefined],
    ['/p\n', undefined, undefined],
    ['/p', { XTABLES_LOCKFILE: 'x.lock' }, undefined],
    ['/p', { OTHER: '1' }, undefined],
    ['/p', { XTABLES_LOCKFILE: '/x', OTHER: '1' }, undefined],
  ];
  for (const [ns, env, want] of cases) assert.equal(warmPrologue(ns, env), want, JSON.stringify([ns, env]));
});

test('warmArgv: sh runs the fixed script; the command follows as "$@", never through the shell', () => {
  assert.deepEqual(warmArgv(['iptables-nft-restore', '--noflush']), ['sh', '-c', WARM_SCRIPT, 'ambit-warm', 'iptables-nft-restore', '--noflush']);
  assert.match(WARM_SCRIPT, /read -r ns \|\| exit 0/);
  assert.match(WARM_SCRIPT, /exec nsenter --net="\$ns" -- "\$@"/);
});

test('the script: stdin that ends before the lines exits 0 quietly; read leaves the input to the tool', () => {
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', XTABLES_LOCKFILE: '/from/the/agent' };
  const sh = (command: string[], input: string) => {
    const [cmd, ...args] = warmArgv(command);
    const r = spawnSync(cmd!, args, { input, env, encoding: 'utf8', timeout: TIMEOUT });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const quiet = { code: 0, stdout: '', stderr: '' };
  assert.deepEqual(sh(['cat'], ''), quiet, 'EOF at once');
  assert.deepEqual(sh(['cat'], '/var/run/netns/x'), quiet, 'EOF inside line 1');
  assert.deepEqual(sh(['cat'], '\n'), quiet, 'EOF before line 2');
  assert.deepEqual(sh(['cat'], '\n/x.lock'), quiet, 'EOF inside line 2');
  // The tool's input starts right after line 2, byte for byte (a newline first, lines like the protocol's).
  const rules = '\n*nat\n/var/run/netns/not-a-line\n\n' + 'x'.repeat(200_000) + '\nno newline at the end';
  assert.deepEqual(sh(['cat'], `\n\n${rules}`), { code: 0, stdout: rules, stderr: '' });
  // line 2 sets XTABLES_LOCKFILE; empty leaves it unset (not the agent's own value)
  const lockOf = ['sh', '-c', 'printf %s "${XTABLES_LOCKFILE-unset}"'];
  assert.equal(sh(lockOf, '\n/run/ambit/x.lock\n').stdout, '/run/ambit/x.lock');
  assert.equal(sh(lockOf, '\n\n').stdout, '/from/the/agent', 'empty line 2 keeps the environment the process was started with');
  // the tool's exit code and stderr are the process's
  assert.deepEqual(sh(['sh', '-c', 'cat >/dev/null; echo bad rule >&2; exit 4'], '\n\nrules'), { code: 4, stdout: '', stderr: 'bad rule\n' });
});

test('pool: a warm run returns what a spawn returns (stdout, stderr, exit code, 1 MB of input)', async () => {
  const failing = ['sh', '-c', 'cat; echo "line 3 failed" >&2; exit 2'];
  const pool = new WarmPool({ commands: [['cat'], failing], size: 1 });
  try {
    assert.ok(await pool.whenFull(TIMEOUT), 'pool did not fill');
    const big = 'rule\n'.repeat(200_000);
    const run = pool.runner();
    assert.deepEqual(await run(['cat'], big), await hostRunner(['cat'], big));
    assert.deepEqual(await run(failing, 'in'), { code: 2, stdout: 'in', stderr: 'line 3 failed\n' });
    assert.deepEqual(await run(failing, 'in'), await hostRunner(failing, 'in'));
    assert.equal(pool.stats().warm + pool.stats().cold, 3);
    assert.ok(pool.stats().warm >= 2, `warm runs: ${JSON.stringify(pool.stats())}`);
  } finally {
    await pool.close();
  }
});

test('pool: no idle process, not a warm command, or more env than the lock file: a plain spawn, never a wait', async () => {
  const pool = new WarmPool({ commands: [['cat']], size: 1 });
  try {
    assert.ok(await pool.whenFull(TIMEOUT));
    const run = pool.runner();
    const results = await Promise.all([run(['cat'], 'a'), run(['cat'], 'b'), run(['cat'], 'c')]);
    assert.deepEqual(results.map((r) => r.stdout), ['a', 'b', 'c']);
    assert.deepEqual({ warm: pool.stats().warm, cold: pool.stats().cold }, { warm: 1, cold: 2 });
    await pool.whenFull(TIMEOUT);
    assert.equal((await run(['echo', 'x'])).stdout, 'x\n');
    assert.equal((await run(['sh', '-c', 'printf %s "$A"'], undefined, { A: 'env' })).stdout, 'env');
    assert.equal((await run(['cat'], 'd', { A: '1' })).stdout, 'd');
    assert.equal(pool.stats().cold, 5, 'echo, the env case and cat with env spawn');
    assert.equal(pool.stats().idle, 1, 'the idle cat was not used');
  } finally {
    await pool.close();
  }
});

test('pool: refills after the caller has its result, with new processes', async () => {
  const pool = new WarmPool({ commands: [['cat']], size: 2 });
  try {
    assert.ok(await pool.whenFull(TIMEOUT));
    const before = pool.idlePids();
    const spawned = pool.stats().spawned;
    const result = await pool.runner()(['cat'], 'x');
    // Here, in the caller's continuation, no refill has forked yet.
    assert.equal(pool.stats().spawned, spawned, 'a refill forked before the result was delivered');
    assert.equal(result.stdout, 'x');
    assert.equal(pool.stats().idle, 1);
    await until('the refill', () => pool.stats().idle === 2);
    const after = pool.idlePids();
    assert.equal(after.filter((p) => before.includes(p)).length, 1, 'one old idle process and one new');
    assert.equal(pool.stats().spawned, spawned + 1);
  } finally {
    await pool.close();
  }
});

test('pool: no refill while a run is in flight', async () => {
  const pool = new WarmPool({ commands: [['cat'], ['sh', '-c', 'sleep 0.3; cat']], size: 1 });
  try {
    assert.ok(await pool.whenFull(TIMEOUT));
    const run = pool.runner();
    const slow = run(['sh', '-c', 'sleep 0.3; cat'], 'slow');
    await run(['cat'], 'fast');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(pool.stats().idle, 0, 'refilled while the slow run was in flight');
    assert.equal((await slow).stdout, 'slow');
    await until('the refill after the last run', () => pool.stats().idle === 2);
  } finally {
    await pool.close();
  }
});

test('pool: close ends the idle processes, kills one that does not exit, and later runs still work', async () => {
  const pool = new WarmPool({ commands: [['cat'], ['tr', 'a-z', 'A-Z']], size: 2, closeTimeoutMs: 300 });
  assert.ok(await pool.whenFull(TIMEOUT));
  const pids = pool.idlePids();
  assert.equal(pids.length, 4);
  process.kill(pids[0]!, 'SIGSTOP'); // cannot read its EOF: close must kill it
  const t0 = Date.now();
  await pool.close();
  assert.ok(Date.now() - t0 < 3000, 'close is bounded');
  for (const pid of pids) assert.equal(alive(pid), false, `process ${pid} survived close()`);
  assert.equal(pool.stats().idle, 0);
  assert.equal((await pool.runner()(['tr', 'a-z', 'A-Z'], 'abc')).stdout, 'ABC', 'a run after close spawns');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(pool.stats().idle, 0, 'a closed pool refilled');
});

test('pool: a process that dies while idle is skipped', async () => {
  const pool = new WarmPool({ commands: [['cat']], size: 1 });
  try {
    assert.ok(await pool.whenFull(TIMEOUT));
    const [pid] = pool.idlePids();
    process.kill(pid!, 'SIGKILL');
    await until('the dead process to leave the pool', () => pool.stats().idle === 0 || pool.idlePids()[0] !== pid);
    assert.equal((await pool.runner()(['cat'], 'ok')).stdout, 'ok');
  } finally {
    await pool.close();
  }
});
