/**
 * ROOT tests of the in-pod listeners against the real kernel: a "pod" netns and a "server" netns
 * joined by a veth (10.213.0.1/24 ⇄ 10.213.0.2/24, fd00:213::1/64 ⇄ fd00:213::2/64), the real
 * redirection applied in the pod (`applyRedirection`, once with iptables-legacy and IPv4, once with
 * nft and dual-stack), and an InPodProxy opened in it. The "app" is this process making unmarked
 * sockets inside the pod netns, so the pod's rules capture them exactly as they capture a container.
 *
 * Shown here: outbound to a server beyond the veth is captured on 15001 and reaches it, counted
 * with its bytes; a half-close passes both ways; inbound from the server netns is captured on 15006
 * and reaches the app in the pod (which sees the pod's own IP as source: documented in forward.ts);
 * DNS over UDP and TCP to the resolver address is captured on 15053 and answered through the relay;
 * a refused original destination resets the app's connection and logs a readable warning; HBONE is
 * refused; close() leaves an established connection working while new ones are refused, and the
 * ports can be opened again at once. A last test measures the per-pod cost (FDs, RSS) at 110 pods.
 *
 * Namespaces are `ambit-inpod-<pid>-*`, deleted in after() even when tests fail. Nothing touches
 * the host's interfaces or rules. As root these always run (CI runs as root).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { applyRedirection, redirectConfig, removeRedirection, type Backend, type RedirectConfig } from '../agent/redirect/index.js';
import { connectSocket, createListenSocket, createUdpSocket, inNetns, openNetns, type IpFamily, type NetnsHandle } from '../sys/index.js';
import { createLogger } from '../telemetry/log.js';
import type { ConnectionRecord } from './connection.js';
import { InPodProxy, type InPodProxyOptions } from './inpod.js';

const IS_ROOT = process.getuid?.() === 0;
const NOT_ROOT_REASON = 'NOT RUN: in-pod proxy tests need root (netns, iptables/nft, SO_MARK); CI runs them as root';
if (!IS_ROOT) console.warn(`\n*** src/proxy/inpod.netns.test: ${NOT_ROOT_REASON} ***\n`);

const PREFIX = `ambit-inpod-${process.pid}`;
const WAIT = () => ({ signal: AbortSignal.timeout(10_000) });
const created: string[] = [];
const LOCK_DIR = IS_ROOT ? mkdtempSync(join(tmpdir(), 'ambit-inpod-')) : '';

const POD = { 4: '10.213.0.1', 6: 'fd00:213::1' } as const;
const SRV = { 4: '10.213.0.2', 6: 'fd00:213::2' } as const;
const ECHO_PORT = 7000;
const APP_PORT = 8080;

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function addNamespace(name: string): string {
  spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' }); // a leftover of an earlier run with this pid
  run('ip', ['netns', 'add', name]);
  created.push(name);
  run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return `/var/run/netns/${name}`;
}

/** Pod and server namespaces joined by a veth made inside the pod netns (nothing on the host). */
function podAndServer(tag: string): { podPath: string; srvPath: string } {
  const pod = `${PREFIX}-${tag}-pod`;
  const srv = `${PREFIX}-${tag}-srv`;
  const podPath = addNamespace(pod);
  const srvPath = addNamespace(srv);
  run('ip', ['-n', pod, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', srv]);
  for (const [ns, four, six] of [
    [pod, `${POD[4]}/24`, `${POD[6]}/64`],
    [srv, `${SRV[4]}/24`, `${SRV[6]}/64`],
  ] as const) {
    run('ip', ['-n', ns, 'addr', 'add', four, 'dev', 'eth0']);
    run('ip', ['-n', ns, 'addr', 'add', six, 'dev', 'eth0', 'nodad']);
    run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
  }
  return { podPath, srvPath };
}

/** Lines the proxy logged, parsed. */
function logSink(): { log: InPodProxyOptions['log']; lines: { level: number; msg: string }[] } {
  const lines: { level: number; msg: string }[] = [];
  const log = createLogger({ name: 'inpod-test', level: 'info', destination: { write: (s: string) => void lines.push(JSON.parse(s)) } });
  return { log, lines };
}

/** A TCP listener made inside `ns`, adopted by Node. */
async function listenIn(ns: NetnsHandle, family: IpFamily, host: string, port: number, onConnection: (s: net.Socket) => void): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true }, onConnection);
  server.listen({ fd: inNetns(ns, () => createListenSocket({ family, host, port, ...(family === 6 ? { v6Only: false } : {}) })) });
  await once(server, 'listening', WAIT());
  return server;
}

/** Connects from inside `ns` WITHOUT the proxy mark: the pod's rules treat it as the app's traffic. */
function appConnect(ns: NetnsHandle, host: string, port: number): net.Socket {
  const family = net.isIP(host) as IpFamily;
  return inNetns(ns, () => connectSocket({ family, host, port, allowHalfOpen: true }));
}

/** Everything read until the peer's FIN, or the error that ended the connection. */
function readAll(sock: net.Socket): Promise<{ text: string; error?: string }> {
  const chunks: Buffer[] = [];
  sock.on('data', (d: Buffer) => chunks.push(d));
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ text: Buffer.concat(chunks).toString(), error: 'test timeout' }), 10_000);
    sock.once('end', () => {
      clearTimeout(timer);
      resolve({ text: Buffer.concat(chunks).toString() });
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ text: Buffer.concat(chunks).toString(), error: err.code ?? err.message });
    });
  });
}

/** One DNS-shaped datagram from an unmarked socket in the pod to `host`:53; resolves with the reply and its source. */
async function appDnsQuery(ns: NetnsHandle, host: string, id: number): Promise<{ reply: Buffer; from: string }> {
  const family = net.isIP(host) as IpFamily;
  const sock = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
  sock.bind({ fd: inNetns(ns, () => createUdpSocket({ family, host: family === 4 ? '0.0.0.0' : '::', port: 0 })) });
  try {
    const query = Buffer.alloc(12 + 5);
    query.writeUInt16BE(id, 0);
    query[2] = 0x01; // RD
    query.write('query', 12);
    sock.send(query, 53, host);
    const [reply, from] = (await once(sock, 'message', WAIT())) as [Buffer, dgram.RemoteInfo];
    return { reply, from: `${from.address}:${from.port}` };
  } finally {
    sock.close();
  }
}

async function waitFor(what: string, cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('in-pod proxy listeners (root)', { skip: IS_ROOT ? false : NOT_ROOT_REASON }, () => {
  after(() => {
    for (const name of created) spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    rmSync(LOCK_DIR, { recursive: true, force: true });
  });

  const scenarios: { backend: Backend; config: RedirectConfig; tag: string }[] = [
    { backend: 'iptables-legacy', config: redirectConfig({ families: [4] }), tag: 'leg' },
    { backend: 'nft', config: redirectConfig({ families: [4, 6] }), tag: 'nft' },
  ];

  for (const { backend, config, tag } of scenarios) {
    describe(`${backend}, families ${config.families.join('+')}`, () => {
      let podNs: NetnsHandle;
      let srvNs: NetnsHandle;
      let podPath: string;
      const servers: net.Server[] = [];
      const udpServers: dgram.Socket[] = [];
      const appSaw: string[] = [];
      const sink = logSink();
      const records: ConnectionRecord[] = [];
      let proxy: InPodProxy | undefined;
      const hasV6 = config.families.includes(6);

      before(async () => {
        const paths = podAndServer(tag);
        podPath = paths.podPath;
        podNs = openNetns(paths.podPath);
        srvNs = openNetns(paths.srvPath);
        await applyRedirection(podPath, { backend, config }, { lockDir: LOCK_DIR });
        // Server netns: an echo server that, after the client's FIN, still sends a last line.
        servers.push(
          await listenIn(srvNs, 6, '::', ECHO_PORT, (s) => {
            s.on('data', (d: Buffer) => s.write(`echo:${d}`));
            s.on('end', () => s.end('|server-saw-end'));
            s.on('error', () => {});
          }),
        );
        // Server netns: the "cluster DNS" on port 53, UDP (answers with the id and QR set) and TCP (echo).
        for (const family of [4, 6] as const) {
          const udp = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
          udp.bind({ fd: inNetns(srvNs, () => createUdpSocket({ family, host: SRV[family], port: 53 })) });
          udp.on('message', (q, from) => {
            const answer = Buffer.concat([q.subarray(0, 12), Buffer.from(`answer-from-${family}`)]);
            answer[2] = answer[2]! | 0x80;
            udp.send(answer, from.port, from.address);
          });
          udpServers.push(udp);
        }
        servers.push(await listenIn(srvNs, 4, SRV[4], 53, (s) => s.pipe(s)));
        // The app in the pod: says which source address it sees.
        servers.push(
          await listenIn(podNs, hasV6 ? 6 : 4, hasV6 ? '::' : '0.0.0.0', APP_PORT, (s) => {
            appSaw.push(s.remoteAddress ?? '?');
            s.end(`app saw ${s.remoteAddress}`);
          }),
        );
        proxy = await InPodProxy.open(podPath, { namespace: 'shop', name: 'web-0', uid: 'uid-1', ips: config.families.map((f) => POD[f]) }, {
          config,
          log: sink.log,
          dnsUpstream: () => ({ host: SRV[4], port: 53 }),
          timeouts: { connectMs: 2_000, dnsQueryMs: 2_000 },
          onConnectionClosed: (r) => records.push(r),
        });
      });

      after(async () => {
        proxy?.destroy();
        for (const s of servers) s.close();
        for (const u of udpServers) u.close();
        if (podPath) await removeRedirection(podPath, config, { lockDir: LOCK_DIR });
        podNs?.close();
        srvNs?.close();
      });

      test('outbound to a server beyond the veth is captured on 15001, reaches it, and is counted', async () => {
        const client = appConnect(podNs, SRV[4], ECHO_PORT);
        const reply = readAll(client);
        await once(client, 'connect', WAIT());
        client.write('hello');
        await waitFor('the echo', () => client.bytesRead >= 'echo:hello'.length);
        client.end();
        assert.deepEqual(await reply, { text: 'echo:hello|server-saw-end' });
        await waitFor('the record', () => records.some((r) => r.listener === 'outbound'));
        const stats = proxy!.stats().outbound;
        assert.deepEqual(stats, { opened: 1, closed: 1, active: 0, failed: 0, bytesFromDownstream: 5, bytesToDownstream: 25 });
        const record = records.find((r) => r.listener === 'outbound')!;
        assert.equal(record.originalDst, `${SRV[4]}:${ECHO_PORT}`);
        assert.equal(record.upstream, `${SRV[4]}:${ECHO_PORT}`);
        assert.equal(record.end, 'closed');
        assert.equal(record.source.startsWith(`${POD[4]}:`), true, record.source);
      });

      test('half-close: the server sees the app\'s FIN and still answers after it; the app sees the server\'s FIN', async () => {
        const client = appConnect(podNs, SRV[4], ECHO_PORT);
        const reply = readAll(client);
        await once(client, 'connect', WAIT());
        client.end('last-words'); // data, then FIN at once: the echo and the reply to the FIN come after it
        assert.deepEqual(await reply, { text: 'echo:last-words|server-saw-end' });
      });

      if (hasV6) {
        test('IPv6 outbound is captured on the dual-stack listener', async () => {
          const client = appConnect(podNs, SRV[6], ECHO_PORT);
          const reply = readAll(client);
          await once(client, 'connect', WAIT());
          client.end('v6');
          assert.deepEqual(await reply, { text: 'echo:v6|server-saw-end' });
          await waitFor('the record', () => records.some((r) => r.originalDst === `[${SRV[6]}]:${ECHO_PORT}`));
        });
      }

      test('inbound from the server netns is captured on 15006 and reaches the app, which sees the pod\'s own IP', async () => {
        const before = proxy!.stats().inbound.opened;
        const client = inNetns(srvNs, () => connectSocket({ family: 4, host: POD[4], port: APP_PORT, allowHalfOpen: true }));
        const reply = await readAll(client);
        client.destroy();
        // Without spoofing (issue 6 decides), the proxy's connection comes from the pod's own address.
        assert.match(reply.text, new RegExp(`^app saw (::ffff:)?${POD[4].replace(/\./g, '\\.')}$`));
        await waitFor('the inbound close', () => proxy!.stats().inbound.closed === before + 1);
        assert.equal(proxy!.stats().inbound.opened, before + 1);
        assert.ok(records.some((r) => r.listener === 'inbound' && r.originalDst === `${POD[4]}:${APP_PORT}` && r.source.startsWith(`${SRV[4]}:`)));
      });

      test('DNS over UDP to the resolver address is captured on 15053, relayed, and answered from that address', async () => {
        const { reply, from } = await appDnsQuery(podNs, SRV[4], 0xabcd);
        assert.equal(reply.readUInt16BE(0), 0xabcd);
        assert.equal(reply.subarray(12).toString(), 'answer-from-4');
        assert.equal(from, `${SRV[4]}:53`, 'conntrack maps the answer back to the address the app asked');
        if (hasV6) {
          // Captured on [::1]:15053, relayed to the (IPv4) upstream all the same.
          const v6 = await appDnsQuery(podNs, SRV[6], 0x0606);
          assert.equal(v6.reply.readUInt16BE(0), 0x0606);
          assert.equal(v6.from, `${SRV[6]}:53`);
        }
        const stats = proxy!.stats().dnsUdp;
        assert.equal(stats.queries, hasV6 ? 2 : 1);
        assert.equal(stats.answered, hasV6 ? 2 : 1);
        assert.equal(stats.inflight, 0);
      });

      test('DNS over TCP is captured on 15053 and spliced to the upstream resolver', async () => {
        const client = appConnect(podNs, SRV[4], 53);
        const reply = readAll(client);
        await once(client, 'connect', WAIT());
        client.end('\x00\x05hello');
        assert.deepEqual(await reply, { text: '\x00\x05hello' });
        await waitFor('the dns close', () => proxy!.stats().dns.closed === 1);
        assert.equal(proxy!.stats().dns.bytesFromDownstream, 7);
      });

      test('a refused original destination resets the app\'s connection and logs what happened', async () => {
        const failedBefore = proxy!.stats().outbound.failed;
        const client = appConnect(podNs, SRV[4], 7999); // nothing listens there
        const result = await readAll(client);
        assert.equal(result.error, 'ECONNRESET');
        await waitFor('the failure count', () => proxy!.stats().outbound.failed === failedBefore + 1);
        const warning = sink.lines.find((l) => l.level === 40 && l.msg.includes(`${SRV[4]}:7999`));
        assert.ok(warning, `a warning names the destination; got ${JSON.stringify(sink.lines)}`);
        assert.match(warning.msg, /connection refused/);
      });

      test('HBONE (15008) is refused until issue 6', async () => {
        const client = inNetns(srvNs, () => connectSocket({ family: 4, host: POD[4], port: config.ports.inboundTunnel }));
        const result = await readAll(client);
        assert.equal(result.error, 'ECONNRESET');
        await waitFor('the tunnel count', () => proxy!.stats().tunnel.failed === 1);
      });

      test('close() keeps an established connection working, refuses new ones, and frees the ports', async () => {
        const established = appConnect(podNs, SRV[4], ECHO_PORT);
        await once(established, 'connect', WAIT());
        established.write('before');
        await waitFor('the first echo', () => established.bytesRead >= 'echo:before'.length);
        await waitFor('the proxy to see it', () => proxy!.activeConnections === 1);

        proxy!.close();
        assert.equal(proxy!.listening, false);
        // New captured connections land on a closed port: the kernel refuses them.
        const refused = appConnect(podNs, SRV[4], ECHO_PORT);
        const [err] = (await once(refused, 'error', WAIT())) as [NodeJS.ErrnoException];
        assert.equal(err.code, 'ECONNREFUSED');
        // The established one still carries bytes both ways and ends cleanly.
        const rest = readAll(established); // also gets 'echo:before', buffered unread so far
        established.end('after');
        assert.deepEqual(await rest, { text: 'echo:beforeecho:after|server-saw-end' });
        await proxy!.idle();

        // The ports are free again at once: a new instance for the same pod can listen.
        const again = await InPodProxy.open(podPath, proxy!.pod, { config, log: sink.log, dnsUpstream: () => ({ host: SRV[4], port: 53 }) });
        try {
          const client = appConnect(podNs, SRV[4], ECHO_PORT);
          const reply = readAll(client);
          await once(client, 'connect', WAIT());
          client.end('reopened');
          assert.deepEqual(await reply, { text: 'echo:reopened|server-saw-end' });
        } finally {
          again.destroy();
        }
      });
    });
  }

  test('a second instance on the same pod fails with a message that names the pod, port and cause; reusePort lets workers share', async () => {
    const path = addNamespace(`${PREFIX}-twice`);
    const config = redirectConfig({ families: [4] });
    const { log } = logSink();
    const pod = { namespace: 'shop', name: 'web-1', uid: 'u', ips: [] };
    const first = await InPodProxy.open(path, pod, { config, log, dnsUpstream: () => undefined });
    try {
      await assert.rejects(
        InPodProxy.open(path, pod, { config, log, dnsUpstream: () => undefined }),
        (err: Error) =>
          /^pod shop\/web-1: cannot listen on tcp 0\.0\.0\.0:15001 \(outbound\) in netns .*EADDRINUSE.*already taken/.test(err.message),
      );
    } finally {
      first.destroy();
    }
    const workers = [
      await InPodProxy.open(path, pod, { config, log, dnsUpstream: () => undefined, reusePort: true }),
      await InPodProxy.open(path, pod, { config, log, dnsUpstream: () => undefined, reusePort: true }),
    ];
    for (const w of workers) w.destroy();
    await assert.rejects(InPodProxy.open('/var/run/netns/ambit-inpod-none', pod, { config, log, dnsUpstream: () => undefined }), /pod shop\/web-1: cannot open its network namespace: .*does not exist/);
  });

  test('per-pod cost at 110 pods: file descriptors and RSS', async (t) => {
    const PODS = 110;
    const config = redirectConfig({ families: [4] });
    const paths: string[] = [];
    for (let i = 0; i < PODS; i++) paths.push(addNamespace(`${PREFIX}-cost-${i}`));
    const { log } = logSink();
    const fds = () => readdirSync('/proc/self/fd').length;
    const rss = () => process.memoryUsage().rss;
    const gc = (globalThis as { gc?: () => void }).gc;
    const warm = openNetns(paths[0]!);
    inNetns(warm, () => undefined); // opens this thread's lasting home-netns fd now, not during the count
    warm.close();
    gc?.();
    const fdBefore = fds();
    const rssBefore = rss();
    const heapBefore = process.memoryUsage().heapUsed;
    const proxies: InPodProxy[] = [];
    try {
      for (const [i, path] of paths.entries()) {
        proxies.push(await InPodProxy.open(path, { namespace: 'cost', name: `p-${i}`, uid: `u-${i}`, ips: [] }, { config, log, dnsUpstream: () => undefined }));
      }
      gc?.();
      const fdPerPod = (fds() - fdBefore) / PODS;
      const rssPerPodKiB = (rss() - rssBefore) / PODS / 1024;
      const heapPerPodKiB = (process.memoryUsage().heapUsed - heapBefore) / PODS / 1024;
      t.diagnostic(
        `per pod: ${fdPerPod} fds, ~${heapPerPodKiB.toFixed(1)} KiB JS heap, ~${rssPerPodKiB.toFixed(1)} KiB RSS ` +
          `(${PODS} pods, families 4${gc ? ', after gc' : '; run with --expose-gc for steadier figures'})`,
      );
      // 3 TCP listeners + DNS UDP + DNS TCP + the netns handle.
      assert.equal(fdPerPod, 6);
      assert.ok(rssPerPodKiB < 512, `per-pod RSS ${rssPerPodKiB.toFixed(1)} KiB`);
    } finally {
      for (const p of proxies) p.destroy();
    }
    assert.equal(fds(), fdBefore, 'destroy() released every descriptor');
  });
});
