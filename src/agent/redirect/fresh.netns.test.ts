/**
 * ROOT tests of the executor's fast apply for a netns CNI ADD just announced (`freshNetns`: no
 * reads, routing then capture from an empty state), against the real kernel, per backend, in
 * network namespaces this file creates (`ambit-fresh-<pid>-*`, deleted in after()).
 *
 * - the fast apply leaves exactly what the full apply leaves (every save, nft, ip rules, routes);
 * - "fresh" is checked, not trusted: a second fast apply (rules already there) changes nothing,
 *   and a fast apply over another backend's rules falls back to the full apply, which removes them;
 * - removal after a fast apply restores the empty netns;
 * - the routing written over netlink (the default) is what the `ip` processes wrote before
 *   (`ip -d`: protocol and scope too), fresh and full, and either one's removal undoes the other's.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { redirectConfig } from './config.js';
import type { Backend } from './detect.js';
import { applyRedirection, inspectRedirection, ipRouting, netnsRunner, removeRedirection } from './exec.js';
import { packetFilterSnapshot } from './testing.js';
import { inNs, run, TestNetns } from '../../sys/testing.js';

const IS_ROOT = process.getuid?.() === 0;
const NOT_ROOT_REASON = 'NOT RUN: redirection tests need root (netns, iptables, nft); CI runs them as root';
if (!IS_ROOT) console.warn(`\n*** src/agent/redirect/fresh.netns.test: ${NOT_ROOT_REASON} ***\n`);

const BACKENDS: Backend[] = ['iptables-legacy', 'iptables-nft', 'nft'];
const PREFIX = `ambit-fresh-${process.pid}`;
const CONFIG = redirectConfig({ families: [4, 6] });
const netns = new TestNetns();
const LOCK_DIR = IS_ROOT ? mkdtempSync(join(tmpdir(), 'ambit-fresh-')) : '';

/** Everything a redirection can change, comparable across netns (counters dropped). */
function snapshot(name: string): Record<string, string> {
  return {
    ...packetFilterSnapshot(name),
    rules4: inNs(name, 'ip', '-4', 'rule', 'show'),
    rules6: inNs(name, 'ip', '-6', 'rule', 'show'),
    routes: inNs(name, 'ip', '-4', 'route', 'show', 'table', 'all') + inNs(name, 'ip', '-6', 'route', 'show', 'table', 'all'),
  };
}

describe('fast apply in a fresh netns (root)', { skip: IS_ROOT ? false : NOT_ROOT_REASON }, () => {
  after(() => {
    netns.deleteAll();
    rmSync(LOCK_DIR, { recursive: true, force: true });
  });

  for (const backend of BACKENDS) {
    test(`${backend}: the fast apply equals the full one, is idempotent, and removal restores the netns`, async () => {
      const full = `${PREFIX}-full-${backend}`;
      const fast = `${PREFIX}-fast-${backend}`;
      const fullPath = netns.add(full);
      const fastPath = netns.add(fast);
      const empty = snapshot(fast);

      await applyRedirection(fullPath, { backend, config: CONFIG }, { lockDir: LOCK_DIR });
      await applyRedirection(fastPath, { backend, config: CONFIG }, { lockDir: LOCK_DIR, freshNetns: true });
      const once = snapshot(fast);
      assert.deepEqual(once, snapshot(full), 'the fast apply leaves what the full apply leaves');

      // told "fresh" again (say, a restarted agent's first try): the ip rule exists, the full apply runs
      await applyRedirection(fastPath, { backend, config: CONFIG }, { lockDir: LOCK_DIR, freshNetns: true });
      assert.deepEqual(snapshot(fast), once, 'a second fast apply changed the ruleset');

      await removeRedirection(fastPath, CONFIG, { lockDir: LOCK_DIR });
      const after = snapshot(fast);
      if (backend === 'iptables-legacy') {
        // legacy tables, once made, stay (empty, policy ACCEPT); everything else is as before
        assert.deepEqual({ ...after, legacy4: '', legacy6: '' }, { ...empty, legacy4: '', legacy6: '' });
        assert.doesNotMatch(after.legacy4 + after.legacy6, /AMBIT|-A /);
      } else assert.deepEqual(after, empty, 'removal restored the netns');
    });
  }

  test('the netlink routing leaves what the ip routing left, and each removal undoes the other', async () => {
    const viaIp = `${PREFIX}-ip`;
    const viaNl = `${PREFIX}-nl`;
    const ipPath = netns.add(viaIp);
    const nlPath = netns.add(viaNl);
    const ip = (path: string) => ({ lockDir: LOCK_DIR, routing: ipRouting(netnsRunner(path)) });
    const details = (name: string) =>
      ['-4', '-6'].map((f) => run('ip', ['-d', '-n', name, f, 'rule', 'show']) + run('ip', ['-d', '-n', name, f, 'route', 'show', 'table', 'all'])).join('');
    const empty = details(viaNl);
    for (const freshNetns of [true, false]) {
      await applyRedirection(ipPath, { backend: 'nft', config: CONFIG }, { ...ip(ipPath), freshNetns });
      await applyRedirection(nlPath, { backend: 'nft', config: CONFIG }, { lockDir: LOCK_DIR, freshNetns });
      assert.deepEqual(snapshot(viaNl), snapshot(viaIp), `freshNetns ${freshNetns}`);
      assert.equal(details(viaNl), details(viaIp), `freshNetns ${freshNetns}: ip -d`);
      // the other tool's removal: netlink removes what ip made, ip what netlink made
      await removeRedirection(ipPath, CONFIG, { lockDir: LOCK_DIR });
      await removeRedirection(nlPath, CONFIG, ip(nlPath));
      assert.equal(details(viaIp), empty);
      assert.equal(details(viaNl), empty);
    }
  });

  test("a fast apply over another backend's rules falls back to the full apply and removes them", async () => {
    const path = netns.add(`${PREFIX}-switch`);
    await applyRedirection(path, { backend: 'iptables-nft', config: CONFIG }, { lockDir: LOCK_DIR });
    await applyRedirection(path, { backend: 'iptables-legacy', config: CONFIG }, { lockDir: LOCK_DIR, freshNetns: true });
    const presence = await inspectRedirection(path, CONFIG, { lockDir: LOCK_DIR });
    assert.deepEqual(presence, { 'iptables-legacy': true, 'iptables-nft': false, nft: false, routing: { 4: true, 6: true } });
    await removeRedirection(path, CONFIG, { lockDir: LOCK_DIR });
  });
});
