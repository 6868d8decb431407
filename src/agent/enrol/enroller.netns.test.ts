/**
 * ROOT test of the enroller with real effects on the real kernel: the netns finder, the rules
 * executor (native nft backend) and a listener made inside the pod netns with src/sys — only the
 * host's probe SNAT is recorded instead of programmed (it would touch the host's firewall).
 *
 * Two "pods" are network namespaces this file makes with `unshare --net=<file>` in its own temp dir
 * (`ambit-enrol-e2e-<pid>-*`), deleted in after() even when tests fail. Shows: labelling enrols
 * running pods (rules + a listener in the pod netns); a restarted enroller re-reconciles without
 * changing the ruleset (no duplicates); un-labelling restores the ruleset exactly; a restarted
 * enroller removes rules a previous one left in pods that are no longer enrolled.
 *
 * As root this always runs (CI runs as root); not as root it is skipped with a loud reason.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PodObject } from '../../state/objects.js';
import { createListenSocket, inNetns, openNetns } from '../../sys/index.js';
import { applyRedirection, inspectRedirection, redirectConfig, removeRedirection } from '../redirect/index.js';
import { Enroller, type EnrolEffects } from './enroller.js';
import { NetnsFinder } from './netns.js';

const IS_ROOT = process.getuid?.() === 0;
const NOT_ROOT_REASON = 'NOT RUN: enroller kernel test needs root (netns, nft); CI runs it as root';
if (!IS_ROOT) console.warn(`\n*** src/agent/enrol/enroller.netns.test: ${NOT_ROOT_REASON} ***\n`);

const TIMEOUT = 10_000;
const NODE = 'node-1';
const CONFIG = redirectConfig({ families: [4] });

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: TIMEOUT });
}

describe('enroller on the real kernel (root)', { skip: IS_ROOT ? false : NOT_ROOT_REASON }, () => {
  let dir = '';
  let netnsDir = '';
  let lockDir = '';
  const mounts: string[] = [];
  const servers = new Set<net.Server>();
  let probeSets: string[][] = [];

  function makePod(name: string, ip: string): string {
    const path = join(netnsDir, name);
    writeFileSync(path, '');
    run('unshare', [`--net=${path}`, 'true']);
    mounts.push(path);
    const ns = (...args: string[]) => run('nsenter', [`--net=${path}`, '--', 'ip', ...args]);
    ns('link', 'set', 'lo', 'up');
    ns('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0');
    ns('addr', 'add', `${ip}/24`, 'dev', 'eth0');
    ns('link', 'set', 'peer0', 'up');
    ns('link', 'set', 'eth0', 'up');
    return path;
  }

  /** Everything of the pod's packet path the enroller may change, plus its TCP listeners. */
  function state(path: string): { ruleset: string; rules: string; routes: string; listeners: string } {
    const inNs = (...args: string[]) => run('nsenter', [`--net=${path}`, '--', ...args]);
    return {
      ruleset: inNs('nft', 'list', 'ruleset').replace(/counter packets \d+ bytes \d+/g, 'counter'),
      // IPv4 only (the config's family): IPv6 link-local routes appear on their own, whenever the kernel gets to them
      rules: inNs('ip', '-4', 'rule', 'show'),
      routes: inNs('ip', '-4', 'route', 'show', 'table', 'all'),
      listeners: inNs('ss', '-ltnH').split('\n').map((l) => l.trim().split(/\s+/)[3] ?? '').filter(Boolean).sort().join(' '),
    };
  }

  const effects = (): EnrolEffects => {
    const finder = new NetnsFinder({ netnsDir });
    return {
      findNetns: (pod, hint) => finder.find(pod, hint),
      applyRedirection: (path) => applyRedirection(path, { backend: 'nft', config: CONFIG }, { lockDir }),
      removeRedirection: (path) => removeRedirection(path, CONFIG, { lockDir }),
      hasRedirection: async (path) => {
        const p = await inspectRedirection(path, CONFIG, { lockDir });
        return p['iptables-legacy'] || p['iptables-nft'] || p.nft || p.routing[4] || p.routing[6];
      },
      // stands in for the in-pod proxy: one listener on the outbound port, made inside the pod netns
      openProxy: async (path) => {
        const ns = openNetns(path);
        let fd: number;
        try {
          fd = inNetns(ns, () => createListenSocket({ family: 4, host: '0.0.0.0', port: CONFIG.ports.outbound, mark: CONFIG.proxyMark }));
        } finally {
          ns.close();
        }
        const server = net.createServer((s) => s.end('proxy\n'));
        server.listen({ fd });
        servers.add(server);
        return { close: () => new Promise<void>((resolve) => server.close(() => (servers.delete(server), resolve()))) };
      },
      syncProbeSnat: async (ips) => {
        probeSets.push(ips);
      },
    };
  };

  const enroller = () => new Enroller({ nodeName: NODE, effects: effects(), debounceMs: 0, backoff: { initialMs: 50, maxMs: 500, jitter: 0 } });

  const pod = (name: string, ip: string): PodObject => ({
    metadata: { name, namespace: 'app', uid: `uid-${name}` },
    spec: { nodeName: NODE },
    status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
  });

  before(() => {
    dir = mkdtempSync(join(tmpdir(), `ambit-enrol-e2e-${process.pid}-`));
    netnsDir = join(dir, 'netns');
    lockDir = join(dir, 'locks');
    mkdirSync(netnsDir);
    mkdirSync(lockDir);
  });

  after(() => {
    for (const s of servers) s.close();
    for (const path of mounts) spawnSync('umount', [path], { stdio: 'ignore' });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('label → enrolled; restart → unchanged; unlabel → exactly as before; restart cleans leftovers', { timeout: 60_000 }, async () => {
    const pa = makePod('cni-a', '10.78.0.1');
    const pb = makePod('cni-b', '10.78.0.2');
    const pods = [pod('a', '10.78.0.1'), pod('b', '10.78.0.2')];
    const before = [state(pa), state(pb)];

    const first = enroller();
    await first.reconcile(pods, new Map([['app', { 'ambit.dev/dataplane-mode': 'ambient' }]]));
    assert.deepEqual(first.snapshot().map((s) => [s.name, s.state, s.netns]), [['a', 'enrolled', pa], ['b', 'enrolled', pb]]);
    const enrolled = [state(pa), state(pb)];
    for (const [i, s] of enrolled.entries()) {
      assert.match(s.ruleset, /table inet ambit/, `rules in pod ${i}`);
      assert.match(s.listeners, /0\.0\.0\.0:15001/, `listener in pod ${i}`);
    }
    assert.deepEqual(probeSets.at(-1), ['10.78.0.1', '10.78.0.2']);

    // the agent restarts (its listeners die with it); the new one adopts the rules without duplicating them
    await first.stop({ closeListeners: true });
    const second = enroller();
    await second.reconcile(pods, new Map([['app', { 'ambit.dev/dataplane-mode': 'ambient' }]]));
    assert.deepEqual([state(pa), state(pb)], enrolled, 'the same ruleset and listeners as before the restart');

    // un-label: every rule and listener goes, the pod is as before enrolment
    await second.reconcile(pods, new Map([['app', {}]]));
    assert.deepEqual([state(pa), state(pb)], before);
    await second.stop();

    // a previous agent left rules in a pod that is no longer enrolled: the next one removes them
    await applyRedirection(pa, { backend: 'nft', config: CONFIG }, { lockDir });
    assert.notDeepEqual(state(pa), before[0]);
    const third = enroller();
    await third.reconcile(pods, new Map([['app', {}]]));
    assert.deepEqual([state(pa), state(pb)], before);
    assert.deepEqual(third.snapshot(), []);
    await third.stop();
  });
});
