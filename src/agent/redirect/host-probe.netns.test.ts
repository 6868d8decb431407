/**
 * ROOT tests of the node-side probe SNAT against the real kernel, for each backend
 * (iptables-legacy, iptables-nft, native nft), in namespaces this file creates
 * (`ambit-probe-<pid>-*`, deleted even when a test fails). Nothing touches the host's own
 * interfaces, rules or sysctls (forwarding is switched on in the test's node netns only).
 *
 *   cli netns 10.214.2.2 ── 10.214.2.1 [node netns, forwards] 10.214.1.1 ── 10.214.1.2 pod netns
 *   (and fd00:214:2::/64, fd00:214:1::/64)         node rules here             capture rules here,
 *                                                                               inbound 15006 + app 8080
 *
 * In the node netns sit kube-proxy-like rules in the backend's iptables (for native nft: in
 * iptables-nft, as kube-proxy would use): its KUBE-POSTROUTING masquerade chain and a bridge-CNI-like
 * `-d <pod subnet> -j ACCEPT` that would stop our SNAT if it ran first. Shown for each backend:
 *   1. without the node rules, the node's own connection to podIP:8080 is captured (lands on 15006);
 *   2. after syncHostProbeSnat([podIPs]) it reaches 8080 directly, from the probe address (v4, v6),
 *      and the reply finds its way back (pod default route → node → conntrack un-SNAT);
 *   3. a connection forwarded through the node from the cli netns is not SNATed, stays captured;
 *   4. syncing twice changes nothing; syncing the empty set captures the node's connection again;
 *   5. a masquerade prepended to POSTROUTING by someone else (as kube-proxy prepends its jump when it
 *      restarts) takes precedence for iptables until the next sync puts our jump first again;
 *      native nft's chain (priority srcnat - 1) runs before it anyway;
 *   6. removal leaves the node's ruleset (`nft list ruleset` and every *-save, counters aside) as
 *      it was, byte for byte; a second removal is a no-op.
 * Plus: switching backend leaves only the new backend's rules, and on a fresh node removal leaves
 * nothing (nft ruleset empty). And the own-backend sync of CNI ADD (read-free, through warm
 * processes), side by side with the full sync on a twin node: the same ruleset for the same pod
 * sets (added, removed, empty) with no save run; twice equals once; on a fresh node (no jump),
 * after our jump, a rule of ours or our nft table was deleted behind its back, its check fails and
 * the read-based write repairs, so the result is again the full sync's; after kube-proxy prepends
 * its jump ours stays second until the next full sync.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { connectSocket, createListenSocket, inNetns, openNetns, type NetnsHandle } from '../../sys/index.js';
import { redirectConfig } from './config.js';
import type { Backend } from './detect.js';
import { applyRedirection, netnsRunner, removeRedirection } from './exec.js';
import type { CommandRunner } from './exec.js';
import { type HostProbeOptions, hostProbeSyncCommands, inspectHostProbeSnat, removeHostProbeSnat, syncHostProbeSnat } from './host-probe.js';
import { WarmPool } from './warm.js';
import { canonicalIptables } from './iptables.js';
import { inNs, run, TestNetns } from '../../sys/testing.js';

const IS_ROOT = process.getuid?.() === 0;
const NOT_ROOT_REASON = 'NOT RUN: probe SNAT tests need root (netns, iptables, nft); CI runs them as root';
if (!IS_ROOT) console.warn(`\n*** src/agent/redirect/host-probe.netns.test: ${NOT_ROOT_REASON} ***\n`);

const BACKENDS: Backend[] = ['iptables-legacy', 'iptables-nft', 'nft'];
const PREFIX = `ambit-probe-${process.pid}`;
const CONFIG = redirectConfig({ families: [4, 6] });
const PROBE = CONFIG.probeAddresses;
const TIMEOUT = 5_000;
const POD = { 4: '10.214.1.2', 6: 'fd00:214:1::2' } as const;
const NODE_TO_POD = { 4: '10.214.1.1', 6: 'fd00:214:1::1' } as const;
const CLI = { 4: '10.214.2.2', 6: 'fd00:214:2::2' } as const;
const netns = new TestNetns();
const TMP = IS_ROOT ? mkdtempSync(join(tmpdir(), 'ambit-probe-')) : '';
const LOCK_FILE = join(TMP, 'xtables.lock'); // legacy's lock: never the host's /run/xtables.lock in tests


function hostOpts(nodeNs: string, backend: Backend): HostProbeOptions {
  return { backend, config: CONFIG, run: netnsRunner(`/var/run/netns/${nodeNs}`), lockFile: LOCK_FILE };
}

/** The node's whole packet-filter state as text, without counters and save-time comments. */
function nodeRuleset(name: string): string {
  const save = (bin: string) =>
    inNs(name, bin)
      .split('\n')
      .filter((l) => !l.startsWith('#'))
      .join('\n')
      .replace(/\[\d+:\d+\]/g, '[0:0]');
  const nft = inNs(name, 'nft', 'list', 'ruleset').replace(/counter packets \d+ bytes \d+/g, 'counter');
  return [nft, ...['iptables-legacy-save', 'ip6tables-legacy-save', 'iptables-nft-save', 'ip6tables-nft-save'].map(save)].join('\n----\n');
}

/** kube-proxy's masquerade chain and a bridge-CNI-like ACCEPT for the pod subnet, in nat POSTROUTING. */
function addKubeProxyRules(name: string, backend: Backend): void {
  const mode = backend === 'iptables-legacy' ? 'legacy' : 'nft'; // native nft: kube-proxy still uses iptables-nft
  for (const [bin, subnet] of [
    [`iptables-${mode}-restore`, '10.214.1.0/24'],
    [`ip6tables-${mode}-restore`, 'fd00:214:1::/64'],
  ] as const) {
    const rules = [
      '*nat',
      ':KUBE-POSTROUTING - [0:0]',
      '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
      `-A POSTROUTING -d ${subnet} -j ACCEPT`,
      '-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN',
      '-A KUBE-POSTROUTING -j MASQUERADE',
      'COMMIT',
      '',
    ].join('\n');
    run('ip', ['netns', 'exec', name, bin, '--noflush', '--wait=10'], rules);
  }
}

/** The three namespaces with their links and routes, and the pod's two listeners. */
interface Topology {
  node: string;
  pod: string;
  cli: string;
  nodeNs: NetnsHandle;
  cliNs: NetnsHandle;
  close(): void;
}

async function topology(tag: string): Promise<Topology> {
  const node = `${PREFIX}-${tag}-node`;
  const pod = `${PREFIX}-${tag}-pod`;
  const cli = `${PREFIX}-${tag}-cli`;
  const handles: NetnsHandle[] = [];
  const servers: net.Server[] = [];
  const close = () => {
    for (const s of servers) s.close();
    for (const h of handles) h.close();
    for (const n of [node, pod, cli]) netns.delete(n);
  };
  try {
    for (const n of [node, pod, cli]) netns.add(n);
    // Veths are created inside the node netns with the peer moved out: nothing on the host.
    run('ip', ['-n', node, 'link', 'add', 'vpod', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod]);
    run('ip', ['-n', node, 'link', 'add', 'vcli', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', cli]);
    const addr = (ns: string, dev: string, four: string, six: string) => {
      run('ip', ['-n', ns, 'addr', 'add', four, 'dev', dev]);
      run('ip', ['-n', ns, 'addr', 'add', six, 'dev', dev, 'nodad']);
      run('ip', ['-n', ns, 'link', 'set', dev, 'up']);
    };
    addr(node, 'vpod', `${NODE_TO_POD[4]}/24`, `${NODE_TO_POD[6]}/64`);
    addr(node, 'vcli', '10.214.2.1/24', 'fd00:214:2::1/64');
    addr(pod, 'eth0', `${POD[4]}/24`, `${POD[6]}/64`);
    addr(cli, 'eth0', `${CLI[4]}/24`, `${CLI[6]}/64`);
    // The pod's replies to the probe address follow its default route to the node, like a real pod's.
    run('ip', ['-n', pod, 'route', 'add', 'default', 'via', NODE_TO_POD[4]]);
    run('ip', ['-n', pod, '-6', 'route', 'add', 'default', 'via', NODE_TO_POD[6]]);
    run('ip', ['-n', cli, 'route', 'add', 'default', 'via', '10.214.2.1']);
    run('ip', ['-n', cli, '-6', 'route', 'add', 'default', 'via', 'fd00:214:2::1']);
    inNs(node, 'sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1');
    const podNs = openNetns(`/var/run/netns/${pod}`);
    handles.push(podNs);
    const nodeNs = openNetns(`/var/run/netns/${node}`);
    handles.push(nodeNs);
    const cliNs = openNetns(`/var/run/netns/${cli}`);
    handles.push(cliNs);
    for (const [port, label] of [
      [CONFIG.ports.inboundPlaintext, 'inbound'],
      [8080, 'app'],
    ] as const) {
      const server = net.createServer((sock) => {
        sock.on('error', () => {});
        sock.end(`${label} ${(sock.remoteAddress ?? '?').replace(/^::ffff:/, '')}`);
      });
      servers.push(server);
      server.listen({ fd: inNetns(podNs, () => createListenSocket({ family: 6, host: '::', port, v6Only: false })) });
      await once(server, 'listening');
    }
    return { node, pod, cli, nodeNs, cliNs, close };
  } catch (err) {
    close();
    throw err;
  }
}

/** Connects from a socket made inside `ns` (a local socket there, like the kubelet's) and returns the reply. */
async function ask(ns: NetnsHandle, family: 4 | 6, host: string, port = 8080): Promise<string> {
  const sock = inNetns(ns, () => connectSocket({ family, host, port }));
  const chunks: Buffer[] = [];
  sock.on('data', (d: Buffer) => chunks.push(d));
  try {
    await once(sock, 'end', { signal: AbortSignal.timeout(TIMEOUT) });
  } finally {
    sock.destroy();
  }
  return Buffer.concat(chunks).toString();
}

describe('node probe SNAT (root)', { skip: IS_ROOT ? false : NOT_ROOT_REASON }, () => {
  after(() => {
    netns.deleteAll();
    rmSync(TMP, { recursive: true, force: true });
  });

  for (const backend of BACKENDS) {
    test(`${backend}: the node's own connections reach the app from the probe address; forwarded ones stay captured; removal restores the node`, async () => {
      const t = await topology(backend === 'iptables-legacy' ? 'l' : backend === 'iptables-nft' ? 'n' : 'f');
      const opts = hostOpts(t.node, backend);
      const podPath = `/var/run/netns/${t.pod}`;
      const lockDir = join(TMP, backend);
      try {
        addKubeProxyRules(t.node, backend);
        await applyRedirection(podPath, { backend, config: CONFIG }, { lockDir });
        const before = nodeRuleset(t.node);

        // 1. Without the node rules, the node's connection is inbound traffic like any other: captured.
        assert.equal(await ask(t.nodeNs, 4, POD[4]), `inbound ${NODE_TO_POD[4]}`);
        assert.equal(await ask(t.nodeNs, 6, POD[6]), `inbound ${NODE_TO_POD[6]}`);

        // 2. With them, it reaches the app directly, from the probe address; the reply comes back.
        await syncHostProbeSnat([POD[4], POD[6]], opts);
        const synced = nodeRuleset(t.node);
        assert.notEqual(synced, before, 'sync changed nothing');
        assert.equal(await ask(t.nodeNs, 4, POD[4]), `app ${PROBE[4]}`);
        assert.equal(await ask(t.nodeNs, 6, POD[6]), `app ${PROBE[6]}`);

        // 3. Forwarded through the node (no local socket): not SNATed, captured, source kept.
        assert.equal(await ask(t.cliNs, 4, POD[4]), `inbound ${CLI[4]}`);
        assert.equal(await ask(t.cliNs, 6, POD[6]), `inbound ${CLI[6]}`);

        // 4. Idempotent; the set is the whole truth each time.
        await syncHostProbeSnat([POD[6], POD[4]], opts);
        assert.equal(nodeRuleset(t.node), synced, 'a second sync changed the ruleset');
        assert.deepEqual(await inspectHostProbeSnat(opts), {
          'iptables-legacy': backend === 'iptables-legacy',
          'iptables-nft': backend === 'iptables-nft',
          nft: backend === 'nft',
        });
        await syncHostProbeSnat([], opts);
        assert.equal(await ask(t.nodeNs, 4, POD[4]), `inbound ${NODE_TO_POD[4]}`);
        await syncHostProbeSnat([POD[4], POD[6]], opts);
        assert.equal(nodeRuleset(t.node), synced);

        // 5. Someone prepends a masquerade (as kube-proxy prepends its jump when it restarts).
        const mode = backend === 'iptables-legacy' ? 'iptables-legacy' : 'iptables-nft';
        const masquerade = ['-d', '10.214.1.0/24', '-j', 'MASQUERADE'];
        inNs(t.node, mode, '-w', '-t', 'nat', '-I', 'POSTROUTING', '1', ...masquerade);
        if (backend === 'nft') {
          // Our chain's priority (srcnat - 1) runs before any iptables nat POSTROUTING.
          assert.equal(await ask(t.nodeNs, 4, POD[4]), `app ${PROBE[4]}`);
        } else {
          assert.equal(await ask(t.nodeNs, 4, POD[4]), `inbound ${NODE_TO_POD[4]}`, 'the prepended masquerade should win until the next sync');
          await syncHostProbeSnat([POD[4], POD[6]], opts);
          assert.equal(await ask(t.nodeNs, 4, POD[4]), `app ${PROBE[4]}`, 'the sync did not put our jump first again');
        }
        inNs(t.node, mode, '-w', '-t', 'nat', '-D', 'POSTROUTING', ...masquerade);
        assert.equal(nodeRuleset(t.node), synced);

        // 6. Removal: the node's ruleset exactly as before; kube-proxy's rules untouched.
        await removeHostProbeSnat(opts);
        assert.equal(nodeRuleset(t.node), before, 'removal left something behind or removed something foreign');
        assert.deepEqual(await inspectHostProbeSnat(opts), { 'iptables-legacy': false, 'iptables-nft': false, nft: false });
        await removeHostProbeSnat(opts);
        assert.equal(nodeRuleset(t.node), before);
        assert.equal(await ask(t.nodeNs, 4, POD[4]), `inbound ${NODE_TO_POD[4]}`);
      } finally {
        await removeRedirection(podPath, CONFIG, { lockDir }).catch(() => {});
        t.close();
      }
    });
  }

  for (const backend of BACKENDS) {
    test(`${backend}: the read-free own-backend sync (warm processes) leaves what the full sync leaves, and is never silently wrong`, async () => {
      const tag = backend === 'iptables-legacy' ? 'l' : backend === 'iptables-nft' ? 'n' : 'f';
      const fastNode = `${PREFIX}-fast-${tag}`;
      const fullNode = `${PREFIX}-full-${tag}`;
      const pool = new WarmPool({ commands: hostProbeSyncCommands(backend, [4, 6]), size: 1 });
      const mode = backend === 'iptables-legacy' ? 'legacy' : 'nft';
      try {
        const fastPath = netns.add(fastNode);
        netns.add(fullNode);
        for (const n of [fastNode, fullNode]) addKubeProxyRules(n, backend);
        const calls: string[] = [];
        const warmRun = pool.runner(fastPath);
        const recording: CommandRunner = (argv, stdin, env) => {
          calls.push(argv[0]!);
          return warmRun(argv, stdin, env);
        };
        const fast = (ips: string[]) => syncHostProbeSnat(ips, { ...hostOpts(fastNode, backend), run: recording, ownBackendOnly: true });
        const full = (ips: string[], node = fullNode) => syncHostProbeSnat(ips, hostOpts(node, backend));
        // Table order in `nft list ruleset` follows creation, which the families' parallel restores
        // vary; set elements print in the set's internal order.
        const ruleset = (n: string) => {
          const text = nodeRuleset(n).replace(/elements = \{ ([^}]*) \}/g, (_, e: string) => `elements = { ${e.split(', ').sort().join(', ')} }`);
          return text.replace(/^table [\s\S]*?^\}$/gm, '').trim() + '\n' + (text.match(/^table [\s\S]*?^\}$/gm) ?? []).sort().join('\n');
        };
        const same = (what: string) => assert.equal(ruleset(fastNode), ruleset(fullNode), what);
        const reads = () => calls.splice(0).filter((c) => c.endsWith('-save'));
        const a = [POD[4], POD[6]];
        const b = [POD[4], '10.214.1.7', '10.214.1.1', POD[6], 'fd00:214:1::7'];
        const c = ['10.214.1.7', '10.214.1.9', 'fd00:214:1::7', 'fd00:214:1::1'];

        // 1. A fresh node: nothing remembered and no jump; the whole-set write fails, the read-based one repairs.
        await fast(a);
        await full(a);
        same('a fresh node');
        if (backend !== 'nft') assert.notDeepEqual(reads(), [], 'no fallback on a node without our jump');
        // 2. The change only (inserted in sorted place), no read; twice equals once.
        await fast(b);
        await full(b);
        same('the change to another pod set');
        assert.deepEqual(reads(), [], 'the own-backend sync read the node');
        const once = ruleset(fastNode);
        await fast(b);
        assert.equal(ruleset(fastNode), once, 'a second sync changed the ruleset');
        await fast(c);
        await full(c);
        same('pods added and removed');
        await fast([]);
        await full([]);
        same('the empty set');
        await fast(a);
        await full(a);
        same('back to a');
        assert.deepEqual(reads(), []);

        if (backend !== 'nft') {
          // 3. Our jump gone (someone flushed POSTROUTING's jump): the check fails the commit, the read-based write repairs.
          inNs(fastNode, `iptables-${mode}`, '-w', '-t', 'nat', '-D', 'POSTROUTING', '-j', 'AMBIT-PROBE-SNAT');
          await fast(b);
          await full(b);
          same('after our jump was deleted');
          assert.notDeepEqual(reads(), [], 'a missing jump went unnoticed');
          // 4. A rule we keep gone: same.
          inNs(fastNode, `ip6tables-${mode}`, '-w', '-t', 'nat', '-F', 'AMBIT-PROBE-SNAT');
          await fast(a);
          await full(a);
          same('after our chain was flushed');
          assert.notDeepEqual(reads(), [], 'a missing rule went unnoticed');
          // 5. kube-proxy restarts and prepends its jump: the change leaves ours second (kube-proxy's
          //    chain returns what it does not masquerade); the next full sync puts it first again.
          for (const n of [fastNode, fullNode]) {
            inNs(n, `iptables-${mode}`, '-w', '-t', 'nat', '-I', 'POSTROUTING', '1', '-j', 'KUBE-POSTROUTING');
            inNs(n, `ip6tables-${mode}`, '-w', '-t', 'nat', '-I', 'POSTROUTING', '1', '-j', 'KUBE-POSTROUTING');
          }
          await fast(b);
          assert.match(inNs(fastNode, `iptables-${mode}-save`, '-t', 'nat'), /\n-A POSTROUTING -j KUBE-POSTROUTING\n-A POSTROUTING -j AMBIT-PROBE-SNAT\n/);
          await full(b, fastNode);
          await full(b);
          same('after kube-proxy prepended its jump and a full sync');
        } else {
          // 3. Our table gone: `add element` fails, the whole table is written.
          inNs(fastNode, 'nft', 'delete', 'table', 'inet', 'ambit-node');
          await fast(b);
          await full(b);
          same('after our table was deleted');
        }
        assert.ok(pool.stats().warm > 0, `no warm process was used: ${JSON.stringify(pool.stats())}`);
        await removeHostProbeSnat(hostOpts(fastNode, backend));
        await removeHostProbeSnat(hostOpts(fullNode, backend));
        same('after removal');
      } finally {
        await pool.close();
        netns.delete(fastNode);
        netns.delete(fullNode);
      }
    });
  }

  test('switching backend leaves only the new one; on a fresh node removal leaves nothing', async () => {
    const node = `${PREFIX}-switch`;
    netns.add(node);
    try {
      const canonical = () => ({
        nft: inNs(node, 'nft', 'list', 'ruleset'),
        legacy4: canonicalIptables(inNs(node, 'iptables-legacy-save')),
        legacy6: canonicalIptables(inNs(node, 'ip6tables-legacy-save')),
      });
      const fresh = canonical();
      assert.deepEqual(fresh, { nft: '', legacy4: '', legacy6: '' });
      const order: Backend[] = ['iptables-legacy', 'nft', 'iptables-nft', 'iptables-legacy'];
      for (const backend of order) {
        await syncHostProbeSnat([POD[4], POD[6]], hostOpts(node, backend));
        const presence = await inspectHostProbeSnat(hostOpts(node, backend));
        assert.deepEqual(
          Object.entries(presence).filter(([, v]) => v).map(([k]) => k),
          [backend],
          `after switching to ${backend}`,
        );
      }
      await removeHostProbeSnat(hostOpts(node, 'nft'));
      // Legacy keeps the (now empty) nat tables it instantiated; nothing a packet sees.
      assert.deepEqual(canonical(), fresh);
    } finally {
      netns.delete(node);
    }
  });
});
