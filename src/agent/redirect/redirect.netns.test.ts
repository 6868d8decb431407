/**
 * ROOT tests of the executor against the real kernel, for each backend (iptables-legacy,
 * iptables-nft, native nft), in network namespaces this file creates (`ambit-rules-<pid>-*`,
 * deleted in after() even when tests fail). Nothing touches the host's interfaces or rules.
 *
 * - idempotence: applying twice leaves the same ruleset, ip rules and routes as applying once;
 * - exact removal: after removal the pod's ruleset (next to a foreign table, chain and rule that
 *   were there before) is as before: `nft list ruleset` byte for byte (iptables-nft and nft), and
 *   for legacy the canonical save (legacy tables cannot be deleted once created; empty ones differ
 *   in nothing a packet can see);
 * - capture: a "pod" netns with a veth to a "peer" netns; the proxy's listeners are made inside the
 *   pod netns with src/sys; outbound to 10.1.2.3:80 and [fd00:1::3]:80 lands on 15001 with the
 *   original destination; inbound to 8080 lands on 15006, inbound to 15008 is not redirected;
 *   marked (0x539), loopback and probe-address (169.254.7.127) traffic is not captured; DNS over
 *   UDP to port 53 lands on 15053.
 *
 * As root these always run (CI runs as root); not as root they are skipped with a loud reason.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { connectSocket, createListenSocket, getOriginalDst, inNetns, openNetns, socketFd, type NetnsHandle } from '../../sys/index.js';
import { redirectConfig } from './config.js';
import type { Backend } from './detect.js';
import { applyRedirection as applyIn, inspectRedirection as inspectIn, removeRedirection as removeIn, type RedirectionPlan } from './exec.js';
import { canonicalIptables } from './iptables.js';
import { inNs, run, TestNetns } from '../../sys/testing.js';

const IS_ROOT = process.getuid?.() === 0;
const NOT_ROOT_REASON = 'NOT RUN: redirection tests need root (netns, iptables, nft); CI runs them as root';
if (!IS_ROOT) console.warn(`\n*** src/agent/redirect/redirect.netns.test: ${NOT_ROOT_REASON} ***\n`);

const BACKENDS: Backend[] = ['iptables-legacy', 'iptables-nft', 'nft'];
const PREFIX = `ambit-rules-${process.pid}`;
const CONFIG = redirectConfig({ families: [4, 6] });
const TIMEOUT = 10_000;
const netns = new TestNetns();
// The legacy backend's per-pod lock files go here, not to the agent's /var/run/ambit on the host.
const LOCK_DIR = IS_ROOT ? mkdtempSync(join(tmpdir(), 'ambit-rules-')) : '';
const applyRedirection = (path: string, plan: RedirectionPlan) => applyIn(path, plan, { lockDir: LOCK_DIR });
const removeRedirection = (path: string, config = CONFIG) => removeIn(path, config, { lockDir: LOCK_DIR });
const inspectRedirection = (path: string, config = CONFIG) => inspectIn(path, config, { lockDir: LOCK_DIR });

/**
 * Everything of the pod's packet path that a redirection could change, as comparable text. With
 * `exactNft`, the whole `nft list ruleset` byte for byte; without, the nf_tables-backed iptables
 * tables are compared as iptables sees them (see the iptables-nft case below).
 */
function snapshot(name: string, exactNft: boolean): Record<string, string> {
  const withoutCounters = (s: string) => s.replace(/counter packets \d+ bytes \d+/g, 'counter');
  const nft = withoutCounters(inNs(name, 'nft', 'list', 'ruleset'));
  return {
    nft: exactNft ? nft : nft.replace(/^table ip6? (nat|mangle) \{\n[\s\S]*?^\}\n/gm, ''),
    legacy4: canonicalIptables(inNs(name, 'iptables-legacy-save')),
    legacy6: canonicalIptables(inNs(name, 'ip6tables-legacy-save')),
    iptnft4: canonicalIptables(inNs(name, 'iptables-nft-save')),
    iptnft6: canonicalIptables(inNs(name, 'ip6tables-nft-save')),
    rules4: inNs(name, 'ip', '-4', 'rule', 'show'),
    rules6: inNs(name, 'ip', '-6', 'rule', 'show'),
    routes4: inNs(name, 'ip', '-4', 'route', 'show', 'table', 'all'),
    routes6: inNs(name, 'ip', '-6', 'route', 'show', 'table', 'all'),
  };
}

/** A foreign ruleset that must survive: a chain and a rule in the backend's own tables. */
function addForeignRules(name: string, backend: Backend): void {
  if (backend === 'nft') {
    run('ip', ['netns', 'exec', name, 'nft', '-f', '-'], 'table inet app {\n chain out {\n  type filter hook output priority 0; policy accept;\n  tcp dport 9999 counter\n }\n}\n');
    return;
  }
  const mode = backend === 'iptables-legacy' ? 'legacy' : 'nft';
  for (const bin of [`iptables-${mode}`, `ip6tables-${mode}`]) {
    inNs(name, bin, '-t', 'nat', '-N', 'APP');
    inNs(name, bin, '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '--dport', '9999', '-j', 'APP');
  }
}

describe('redirection executor (root)', { skip: IS_ROOT ? false : NOT_ROOT_REASON }, () => {
  after(() => {
    netns.deleteAll();
    rmSync(LOCK_DIR, { recursive: true, force: true });
  });

  // Fresh pod: the whole ruleset (nft list ruleset, every save, ip rules, routes) is byte for byte
  // as before. Next to foreign rules in the same tables: the same, except that iptables-nft creates
  // built-in base chains on demand (nat PREROUTING, say) and they stay, empty with policy ACCEPT, in
  // a table that still holds foreign rules: identical for iptables-nft-save and for packets.
  for (const backend of BACKENDS) {
    for (const foreign of [false, true]) {
      test(`${backend}${foreign ? ', next to foreign rules' : ''}: apply is idempotent and removal restores the ruleset`, async () => {
        const name = `${PREFIX}-${foreign ? 'f' : 'e'}-${backend}`;
        const path = netns.add(name);
        if (foreign) addForeignRules(name, backend);
        const exactNft = !(foreign && backend === 'iptables-nft');
        const before = snapshot(name, exactNft);
        const beforeExact = snapshot(name, true);

        await applyRedirection(path, { backend, config: CONFIG });
        const once1 = snapshot(name, true);
        assert.notDeepEqual(once1, beforeExact, 'apply changed nothing');
        await applyRedirection(path, { backend, config: CONFIG });
        assert.deepEqual(snapshot(name, true), once1, 'a second apply changed the ruleset');
        assert.deepEqual(await inspectRedirection(path, CONFIG), {
          'iptables-legacy': backend === 'iptables-legacy',
          'iptables-nft': backend === 'iptables-nft',
          nft: backend === 'nft',
          routing: { 4: true, 6: true },
        });

        await removeRedirection(path, CONFIG);
        assert.deepEqual(snapshot(name, exactNft), before, 'removal left something behind or removed something foreign');
        await removeRedirection(path, CONFIG); // nothing left: a no-op, not an error
        assert.deepEqual(snapshot(name, exactNft), before);
        if (!foreign) assert.equal(before.nft, '', 'a fresh netns has an empty nft ruleset');
      });
    }
  }

  test('switching backend removes the previous backend\'s rules', async () => {
    const path = netns.add(`${PREFIX}-switch`);
    await applyRedirection(path, { backend: 'iptables-legacy', config: CONFIG });
    await applyRedirection(path, { backend: 'nft', config: CONFIG });
    const presence = await inspectRedirection(path, CONFIG);
    assert.deepEqual([presence['iptables-legacy'], presence['iptables-nft'], presence.nft], [false, false, true]);
    await removeRedirection(path, CONFIG);
  });

  describe('capture in a pod netns with a peer', () => {
    const pod = `${PREFIX}-pod`;
    const peer = `${PREFIX}-peer`;
    let podNs: NetnsHandle;
    let peerNs: NetnsHandle;
    const servers: net.Server[] = [];

    before(() => {
      netns.add(pod);
      netns.add(peer);
      // The veth is created inside the pod netns and one end moved to the peer: nothing on the host.
      run('ip', ['-n', pod, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', peer]);
      for (const [ns, four, six] of [
        [pod, '10.201.0.1/24', 'fd00:201::1/64'],
        [peer, '10.201.0.2/24', 'fd00:201::2/64'],
      ] as const) {
        run('ip', ['-n', ns, 'addr', 'add', four, 'dev', 'eth0']);
        run('ip', ['-n', ns, 'addr', 'add', six, 'dev', 'eth0', 'nodad']);
        run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
      }
      run('ip', ['-n', peer, 'addr', 'add', `${CONFIG.probeAddresses[4]}/32`, 'dev', 'eth0']);
      run('ip', ['-n', pod, 'route', 'add', 'default', 'via', '10.201.0.2']);
      run('ip', ['-n', pod, '-6', 'route', 'add', 'default', 'via', 'fd00:201::2']);
      podNs = openNetns(`/var/run/netns/${pod}`);
      peerNs = openNetns(`/var/run/netns/${peer}`);
    });

    after(() => {
      for (const s of servers) s.close();
      podNs?.close();
      peerNs?.close();
    });

    /** A dual-stack TCP listener made in `ns`; records the original destination of each connection. */
    async function listen(ns: NetnsHandle, port: number, label: string) {
      const seen: string[] = [];
      const server = net.createServer((sock) => {
        let dst: string;
        try {
          const o = getOriginalDst(socketFd(sock));
          dst = o.family === 6 ? `[${o.address}]:${o.port}` : `${o.address}:${o.port}`;
        } catch {
          dst = 'none';
        }
        seen.push(dst);
        sock.on('error', () => {});
        sock.end(`${label} ${dst}`);
      });
      server.listen({ fd: inNetns(ns, () => createListenSocket({ family: 6, host: '::', port, v6Only: false })) });
      await once(server, 'listening');
      servers.push(server);
      return seen;
    }

    /** Connects from inside `ns` and returns the reply: which listener answered, and what it saw. */
    async function ask(ns: NetnsHandle, family: 4 | 6, host: string, port: number, extra: { mark?: number; localAddress?: string } = {}) {
      const sock = inNetns(ns, () => connectSocket({ family, host, port, ...extra }));
      const chunks: Buffer[] = [];
      sock.on('data', (d: Buffer) => chunks.push(d));
      await once(sock, 'end', { signal: AbortSignal.timeout(TIMEOUT) });
      sock.destroy();
      return Buffer.concat(chunks).toString();
    }

    /**
     * Sends one UDP datagram to 10.201.0.2:53 from the pod; a UDP server on 15053 in the pod answers.
     * REDIRECT in OUTPUT rewrites the destination to 127.0.0.1, so the server must answer *from*
     * 127.0.0.1 for conntrack to match the reply and restore 10.201.0.2:53 as its source: bound to
     * 0.0.0.0 it would answer from the pod IP, and the client would see a reply from :15053 (a real
     * resolver drops that). The DNS proxy must bind 127.0.0.1 / ::1 (or answer with IP_PKTINFO).
     */
    function dnsRoundTrip(): string {
      const script = `
        const dgram = require('node:dgram');
        const server = dgram.createSocket('udp4');
        server.on('message', (msg, from) => server.send('captured:' + msg, from.port, from.address));
        server.bind(${CONFIG.ports.dns}, '127.0.0.1', () => {
          const client = dgram.createSocket('udp4');
          const timer = setTimeout(() => { console.log('timeout'); process.exit(0); }, 3000);
          client.on('message', (msg, from) => { console.log(msg + ' from ' + from.address + ':' + from.port); clearTimeout(timer); process.exit(0); });
          client.send('query', 53, '10.201.0.2');
        });`;
      return inNs(pod, process.execPath, '-e', script).trim();
    }

    for (const backend of BACKENDS) {
      test(`${backend}: outbound, inbound, DNS are captured; marked, loopback and probes are not`, async () => {
        const podPath = `/var/run/netns/${pod}`;
        await applyRedirection(podPath, { backend, config: CONFIG });
        try {
          if (servers.length === 0) {
            await listen(podNs, CONFIG.ports.outbound, 'outbound');
            await listen(podNs, CONFIG.ports.inboundPlaintext, 'inbound');
            await listen(podNs, CONFIG.ports.inboundTunnel, 'hbone');
            await listen(podNs, 8080, 'app');
            await listen(peerNs, 80, 'peer');
          }
          // Outbound from the app, to an address beyond the veth: captured, original destination kept.
          assert.equal(await ask(podNs, 4, '10.1.2.3', 80), 'outbound 10.1.2.3:80');
          assert.equal(await ask(podNs, 6, 'fd00:1::3', 80), 'outbound [fd00:1::3]:80');
          // The proxy's own (marked) connection goes out to the peer.
          // (The peer netns has no conntrack, so its listener knows no "original destination".)
          assert.equal(await ask(podNs, 4, '10.201.0.2', 80, { mark: CONFIG.proxyMark }), 'peer none');
          // Loopback and the pod's own address (routed over lo) reach the app directly. (In the pod
          // netns conntrack runs, so un-NATed connections report their own destination.)
          assert.equal(await ask(podNs, 4, '127.0.0.1', 8080), 'app 127.0.0.1:8080');
          assert.equal(await ask(podNs, 4, '10.201.0.1', 8080), 'app 10.201.0.1:8080');
          assert.equal(await ask(podNs, 6, '::1', 8080), 'app [::1]:8080');
          // Inbound from the peer to the app's port lands on the inbound plaintext listener.
          assert.equal(await ask(peerNs, 4, '10.201.0.1', 8080), 'inbound 10.201.0.1:8080');
          assert.equal(await ask(peerNs, 6, 'fd00:201::1', 8080), 'inbound [fd00:201::1]:8080');
          // HBONE is not redirected: it reaches the tunnel listener as itself.
          assert.equal(await ask(peerNs, 4, '10.201.0.1', CONFIG.ports.inboundTunnel), 'hbone 10.201.0.1:15008');
          // A kubelet probe (SNATed to the probe address on the node) reaches the app.
          assert.equal(await ask(peerNs, 4, '10.201.0.1', 8080, { localAddress: CONFIG.probeAddresses[4] }), 'app 10.201.0.1:8080');
          // DNS over UDP lands on 15053, and the reply comes back from the address the app asked.
          assert.equal(dnsRoundTrip(), 'captured:query from 10.201.0.2:53');
        } finally {
          await removeRedirection(podPath, CONFIG);
        }
        // Without redirection the same outbound connection is not captured (nothing answers there).
        assert.equal(await ask(podNs, 4, '10.201.0.2', 80), 'peer none');
      });
    }
  });
});
