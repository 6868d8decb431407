/**
 * ROOT tests of warm processes against the real tools and kernel, in network namespaces this file
 * creates (`ambit-warm-<pid>-*`, deleted in after()):
 * - the fresh apply of CNI ADD through a WarmPool leaves exactly what it leaves with spawns (twin
 *   netns, every backend), with its restores served warm; applying twice equals once;
 * - the rules after the two protocol lines reach the tool whole (thousands of rules, the first and
 *   the last land: sh's `read` took only its lines);
 * - the tool's exit code and stderr come back as a spawn's do (bad rules, a netns that is gone);
 * - line 2 is the legacy tool's XTABLES_LOCKFILE;
 * - the pool refills after use, and close() leaves no child process of ours behind.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { redirectConfig } from './config.js';
import type { Backend } from './detect.js';
import { applyRedirection, freshApplyCommands, netnsRunner, removeRedirection } from './exec.js';
import { WarmPool } from './warm.js';
import { packetFilterSnapshot } from './testing.js';
import { run, TestNetns } from '../../sys/testing.js';

const IS_ROOT = process.getuid?.() === 0;
const NOT_ROOT_REASON = 'NOT RUN: warm process tests need root (netns, iptables, nft); CI runs them as root';
if (!IS_ROOT) console.warn(`\n*** src/agent/redirect/warm.netns.test: ${NOT_ROOT_REASON} ***\n`);

const BACKENDS: Backend[] = ['iptables-legacy', 'iptables-nft', 'nft'];
const PREFIX = `ambit-warm-${process.pid}`;
const CONFIG = redirectConfig({ families: [4, 6] });
const TIMEOUT = 5_000;
const netns = new TestNetns();
const TMP = IS_ROOT ? mkdtempSync(join(tmpdir(), 'ambit-warm-')) : '';

const snapshot = packetFilterSnapshot;

/** PIDs of this process's children (the main thread spawns every one). */
function children(): number[] {
  const text = readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8').trim();
  return text === '' ? [] : text.split(/\s+/).map(Number);
}

async function until(what: string, cond: () => boolean): Promise<void> {
  const deadline = Date.now() + TIMEOUT;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('warm processes (root)', { skip: IS_ROOT ? false : NOT_ROOT_REASON }, () => {
  after(() => {
    netns.deleteAll();
    rmSync(TMP, { recursive: true, force: true });
  });

  for (const backend of BACKENDS) {
    test(`${backend}: the fresh apply through warm processes equals the one with spawns; twice equals once`, async () => {
      const pool = new WarmPool({ commands: freshApplyCommands(backend, CONFIG.families), size: 1 });
      const lockDir = join(TMP, backend);
      try {
        assert.ok(await pool.whenFull(TIMEOUT), 'the pool did not fill');
        const coldPath = netns.add(`${PREFIX}-cold-${backend}`);
        const warmPath = netns.add(`${PREFIX}-warm-${backend}`);
        await applyRedirection(coldPath, { backend, config: CONFIG }, { lockDir, freshNetns: true });
        await applyRedirection(warmPath, { backend, config: CONFIG }, { lockDir, freshNetns: true, warm: pool });
        assert.deepEqual(snapshot(`${PREFIX}-warm-${backend}`), snapshot(`${PREFIX}-cold-${backend}`));
        assert.deepEqual(
          { warm: pool.stats().warm, cold: pool.stats().cold },
          { warm: backend === 'nft' ? 1 : 2, cold: 0 },
          'the restores were not served warm',
        );
        const once = snapshot(`${PREFIX}-warm-${backend}`);
        await until('the refill', () => pool.stats().idle === freshApplyCommands(backend, CONFIG.families).length);
        await applyRedirection(warmPath, { backend, config: CONFIG }, { lockDir, freshNetns: true, warm: pool });
        assert.deepEqual(snapshot(`${PREFIX}-warm-${backend}`), once, 'a second apply changed the ruleset');
        await removeRedirection(warmPath, CONFIG, { lockDir });
        await removeRedirection(coldPath, CONFIG, { lockDir });
      } finally {
        await pool.close();
      }
    });
  }

  test("the rules after the protocol's lines reach the tool whole", async () => {
    const path = netns.add(`${PREFIX}-big`);
    const restore = ['iptables-nft-restore', '--noflush'];
    const pool = new WarmPool({ commands: [restore], size: 1 });
    try {
      assert.ok(await pool.whenFull(TIMEOUT));
      const n = 5000;
      const rules = ['*filter', ':AMBIT-WARM - [0:0]'];
      for (let i = 0; i < n; i++) rules.push(`-A AMBIT-WARM -s 10.${(i >> 8) & 255}.${i & 255}.1/32 -j ACCEPT`);
      rules.push('COMMIT', '');
      const result = await pool.runner(path)(restore, rules.join('\n'));
      assert.deepEqual(result, { code: 0, stdout: '', stderr: '' });
      assert.equal(pool.stats().warm, 1);
      const saved = run('ip', ['netns', 'exec', `${PREFIX}-big`, 'iptables-nft-save', '-t', 'filter']).split('\n').filter((l) => l.startsWith('-A AMBIT-WARM '));
      assert.equal(saved.length, n);
      assert.equal(saved[0], '-A AMBIT-WARM -s 10.0.0.1/32 -j ACCEPT');
      assert.equal(saved.at(-1), `-A AMBIT-WARM -s 10.19.135.1/32 -j ACCEPT`);
    } finally {
      await pool.close();
    }
  });

  test("the tool's exit code and stderr come back as a spawn's do; line 2 is legacy's lock file", async () => {
    const path = netns.add(`${PREFIX}-errors`);
    const nft = ['iptables-nft-restore', '--noflush'];
    const legacy = ['iptables-legacy-restore', '--noflush', '--wait', '10'];
    const pool = new WarmPool({ commands: [nft, legacy], size: 2 });
    try {
      assert.ok(await pool.whenFull(TIMEOUT));
      const bad = '*filter\n-A NO-SUCH-CHAIN -j ACCEPT\nCOMMIT\n';
      const warm = await pool.runner(path)(nft, bad);
      const cold = await netnsRunner(path)(nft, bad);
      assert.notEqual(warm.code, 0);
      assert.deepEqual(warm, cold);
      const gone = '/var/run/netns/ambit-warm-no-such-netns';
      const warmGone = await pool.runner(gone)(nft, '');
      assert.deepEqual(warmGone, await netnsRunner(gone)(nft, ''));
      assert.match(warmGone.stderr, /nsenter: cannot open .*No such file or directory/);
      assert.equal(pool.stats().warm, 2);

      const lock = join(TMP, 'legacy-line2.lock');
      const ok = await pool.runner(path)(legacy, '*filter\n:AMBIT-LOCK - [0:0]\nCOMMIT\n', { XTABLES_LOCKFILE: lock });
      assert.deepEqual(ok, { code: 0, stdout: '', stderr: '' });
      assert.ok(existsSync(lock), 'iptables-legacy did not take the lock file of line 2');
      assert.match(run('ip', ['netns', 'exec', `${PREFIX}-errors`, 'iptables-legacy-save', '-t', 'filter']), /:AMBIT-LOCK - /);
      assert.equal(pool.stats().warm, 3);
    } finally {
      await pool.close();
    }
  });

  test('the pool refills after use, and close leaves no child process behind', async () => {
    const path = netns.add(`${PREFIX}-life`);
    const commands = freshApplyCommands('iptables-nft', [4, 6]);
    const pool = new WarmPool({ commands, size: 2 });
    assert.ok(await pool.whenFull(TIMEOUT));
    const first = pool.idlePids();
    assert.equal(first.length, 4);
    assert.deepEqual(children().filter((p) => first.includes(p)).sort(), [...first].sort(), 'idle processes are our children');
    await applyRedirection(path, { backend: 'iptables-nft', config: CONFIG }, { freshNetns: true, warm: pool, lockDir: TMP });
    await until('the refill', () => pool.stats().idle === 4);
    const refilled = pool.idlePids();
    assert.equal(refilled.filter((p) => !first.includes(p)).length, 2, 'two new processes replace the two used');
    await pool.close();
    for (const pid of [...first, ...refilled]) assert.ok(!children().includes(pid), `process ${pid} survived close()`);
    assert.deepEqual(children(), [], 'a child process of ours is left');
    await removeRedirection(path, CONFIG, { lockDir: TMP });
  });
});
