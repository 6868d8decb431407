/**
 * ROOT tests of the native layer in a real network namespace this file creates
 * (`ip netns add ambit-sys-test-<pid>`, deleted in after() even when tests fail). Nothing touches
 * the host's interfaces or rules: the veth pair, addresses and iptables rules all live inside it.
 *
 * As root these tests always run (CI runs as root); a missing `ip`/`iptables` is a failure, not a
 * skip. Not as root they are skipped with a loud reason.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { execFileSync, spawnSync } from 'node:child_process';
import { fstatSync } from 'node:fs';
import net from 'node:net';
import { Worker } from 'node:worker_threads';
import { IP_TRANSPARENT, SOL_IP } from './constants.js';
import { SysError } from './errors.js';
import { currentNetnsId, inNetns, NetnsHandle, openNetns } from './netns.js';
import {
  connectSocket,
  createListenSocket,
  getMark,
  getOriginalDst,
  getsockoptInt,
  socketFd,
  type ListenSocketOptions,
} from './socket.js';
import type { SocketAddress } from './sockaddr.js';

const IS_ROOT = process.getuid?.() === 0;
const NOT_ROOT_REASON =
  'NOT RUN: netns tests need root (CAP_SYS_ADMIN for setns, CAP_NET_ADMIN for marks and iptables); CI runs them as root';
if (!IS_ROOT) console.warn(`\n*** src/sys/netns.test: ${NOT_ROOT_REASON} ***\n`);

const NS_NAME = `ambit-sys-test-${process.pid}`;
const PROXY_MARK = 0x539;
const TIMEOUT = { signal: AbortSignal.timeout(20_000) };

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs a command inside the test namespace. */
function inNs(cmd: string, ...args: string[]): string {
  return run('ip', ['netns', 'exec', NS_NAME, cmd, ...args]);
}

function deleteNamespace(): void {
  spawnSync('ip', ['netns', 'del', NS_NAME], { stdio: 'ignore' });
}

/**
 * The test namespace: lo up, and a veth pair (both ends inside) carrying 10.200.0.1/24 and
 * fd00:200::1/64, so connections to other addresses of those subnets route out of a real interface
 * and pass through nat OUTPUT like traffic to a Service VIP in a pod does.
 */
function createNamespace(): void {
  deleteNamespace(); // a leftover of an earlier run with the same pid
  run('ip', ['netns', 'add', NS_NAME]);
  const ipn = (...args: string[]) => run('ip', ['-n', NS_NAME, ...args]);
  ipn('link', 'set', 'lo', 'up');
  ipn('link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1');
  ipn('link', 'set', 'v0', 'up');
  ipn('link', 'set', 'v1', 'up');
  ipn('addr', 'add', '10.200.0.1/24', 'dev', 'v0');
  ipn('addr', 'add', 'fd00:200::1/64', 'dev', 'v0', 'nodad');
}

/** A net.Server on a listening socket created inside `ns`; records every accepted connection. */
async function serverIn(ns: NetnsHandle, opts: ListenSocketOptions, reply: string) {
  const accepted: { originalDst: SocketAddress | string; remote: string | undefined }[] = [];
  const server = net.createServer((sock) => {
    let originalDst: SocketAddress | string;
    try {
      originalDst = getOriginalDst(socketFd(sock));
    } catch (err) {
      originalDst = (err as SysError).code;
    }
    accepted.push({ originalDst, remote: sock.remoteAddress });
    sock.on('error', () => {}); // a client that destroys early resets us; not what these tests check
    sock.end(reply);
  });
  server.listen({ fd: inNetns(ns, () => createListenSocket(opts)) });
  await once(server, 'listening', TIMEOUT);
  return { server, accepted };
}

/** Connects from inside `ns` and returns what the server replied. */
async function replyFrom(ns: NetnsHandle, family: 4 | 6, host: string, port: number, mark?: number): Promise<string> {
  const sock = inNetns(ns, () => connectSocket(mark === undefined ? { family, host, port } : { family, host, port, mark }));
  const chunks: Buffer[] = [];
  sock.on('data', (d: Buffer) => chunks.push(d));
  await once(sock, 'end', TIMEOUT);
  sock.destroy();
  return Buffer.concat(chunks).toString();
}

function socketInode(fd: number): string {
  return String(fstatSync(fd).ino);
}

describe('network namespaces (root)', { skip: IS_ROOT ? false : NOT_ROOT_REASON }, () => {
  let ns: NetnsHandle;
  let home: NetnsHandle;

  before(() => {
    createNamespace();
    ns = openNetns(`/var/run/netns/${NS_NAME}`);
    home = openNetns('/proc/thread-self/ns/net');
  });

  after(() => {
    ns?.close();
    home?.close();
    deleteNamespace();
  });

  test('inNetns moves the calling thread into the namespace and always back', async () => {
    const homeId = currentNetnsId();
    assert.notEqual(ns.id, homeId);
    assert.equal(home.id, homeId);

    assert.equal(inNetns(ns, () => currentNetnsId()), ns.id);
    assert.equal(currentNetnsId(), homeId);

    assert.throws(() => inNetns(ns, () => { throw new Error('boom'); }), /boom/);
    assert.equal(currentNetnsId(), homeId, 'restored after a throw');

    const nested = inNetns(ns, () => [currentNetnsId(), inNetns(home, () => currentNetnsId()), currentNetnsId()]);
    assert.deepEqual(nested, [ns.id, homeId, ns.id], 'an inner call returns to the outer namespace');
    assert.equal(currentNetnsId(), homeId);

    const pending = Promise.resolve(1);
    assert.throws(() => inNetns(ns, () => pending), /must be synchronous/);
    assert.equal(currentNetnsId(), homeId);
    await pending;
  });

  test('a listener created inside the namespace lives there, not in the host, and Node serves it', async () => {
    const { server } = await serverIn(ns, { family: 4, host: '127.0.0.1', port: 15001, backlog: 64 }, 'hello');
    try {
      const inode = socketInode(socketFd(server));
      const nsListeners = inNs('ss', '-ltnHe');
      assert.match(nsListeners, new RegExp(`127\\.0\\.0\\.1:15001 .*ino:${inode}\\b`));
      assert.doesNotMatch(run('ss', ['-ltnHe']), new RegExp(`ino:${inode}\\b`), 'not visible in the host namespace');

      assert.equal(await replyFrom(ns, 4, '127.0.0.1', 15001), 'hello');
    } finally {
      server.close();
    }
  });

  test('SO_MARK is set on listening and connecting sockets', async () => {
    const { server } = await serverIn(ns, { family: 4, host: '127.0.0.1', port: 0, mark: PROXY_MARK }, 'x');
    try {
      assert.equal(getMark(socketFd(server)), PROXY_MARK);
      const port = (server.address() as net.AddressInfo).port;
      const client = inNetns(ns, () => connectSocket({ family: 4, host: '127.0.0.1', port, mark: 0xfffffff0 }));
      await once(client, 'connect', TIMEOUT);
      assert.equal(getMark(socketFd(client)), 0xfffffff0);
      client.destroy();
    } finally {
      server.close();
    }
  });

  test('IP_TRANSPARENT lets a listener bind an address the namespace does not own', () => {
    const opts = { family: 4, host: '192.0.2.10', port: 15008 } as const;
    assert.throws(
      () => inNetns(ns, () => createListenSocket(opts)),
      (err: unknown) => err instanceof SysError && err.code === 'EADDRNOTAVAIL',
    );
    const fd = inNetns(ns, () => createListenSocket({ ...opts, transparent: true }));
    const server = net.createServer();
    try {
      assert.equal(getsockoptInt(fd, SOL_IP, IP_TRANSPARENT), 1);
      server.listen({ fd });
      assert.deepEqual(server.address(), { address: '192.0.2.10', family: 'IPv4', port: 15008 });
    } finally {
      server.close();
    }
  });

  test('a worker thread switches only itself', async () => {
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      import(workerData.sys).then((sys) => {
        const ns = sys.openNetns(workerData.path);
        const inside = sys.inNetns(ns, () => sys.currentNetnsId());
        parentPort.postMessage({ inside, after: sys.currentNetnsId() });
        ns.close();
      });`;
    const worker = new Worker(code, {
      eval: true,
      workerData: { sys: new URL('./index.js', import.meta.url).href, path: `/var/run/netns/${NS_NAME}` },
    });
    const [msg] = (await once(worker, 'message', TIMEOUT)) as [{ inside: string; after: string }];
    await worker.terminate();
    assert.deepEqual(msg, { inside: ns.id, after: currentNetnsId() });
    assert.notEqual(currentNetnsId(), ns.id);
  });

  test('without the capabilities, errors name the one that is missing', () => {
    const script = `
      const sys = await import(${JSON.stringify(new URL('./index.js', import.meta.url).href)});
      const ns = sys.openNetns(${JSON.stringify(`/var/run/netns/${NS_NAME}`)});
      const out = [];
      try { sys.inNetns(ns, () => 0); } catch (e) { out.push(e.code + ' ' + e.message); }
      try { sys.createTcpSocket({ family: 4, mark: 1 }); } catch (e) { out.push(e.code + ' ' + e.message); }
      console.log(JSON.stringify(out));`;
    // setpriv (util-linux) keeps uid 0 but drops the capabilities from the bounding set (SO_MARK is
    // also allowed with CAP_NET_RAW since Linux 5.17, so that goes too).
    const stdout = run('setpriv', [
      '--bounding-set', '-sys_admin,-net_admin,-net_raw',
      process.execPath, '--input-type=module', '-e', script,
    ]);
    const [setnsError, markError] = JSON.parse(stdout) as string[];
    assert.match(setnsError ?? '', /^EPERM setns\(\/var\/run\/netns\/.*needs CAP_SYS_ADMIN/);
    assert.match(markError ?? '', /^EPERM setsockopt\(fd \d+, SO_MARK, 1\).*needs CAP_NET_ADMIN/);
  });

  describe('nat REDIRECT and SO_ORIGINAL_DST (iptables inside the namespace)', () => {
    // Istio's in-pod shape, reduced: proxy-marked traffic is exempt, other TCP to :8080 goes to :15001.
    const rules = [
      ['-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-m', 'mark', '--mark', `0x${PROXY_MARK.toString(16)}`, '-j', 'RETURN'],
      ['-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '--dport', '8080', '-j', 'REDIRECT', '--to-ports', '15101'],
    ];
    const servers: net.Server[] = [];
    let proxy4: Awaited<ReturnType<typeof serverIn>>;
    let proxy6: Awaited<ReturnType<typeof serverIn>>;

    before(async () => {
      for (const tool of ['iptables', 'ip6tables']) {
        if (spawnSync(tool, ['--version']).error) {
          throw new Error(`${tool} is not installed; run scripts/ensure.sh (apt-get install -y iptables)`);
        }
        for (const rule of rules) inNs(tool, ...rule);
      }
      proxy4 = await serverIn(ns, { family: 4, host: '0.0.0.0', port: 15101 }, 'proxy');
      proxy6 = await serverIn(ns, { family: 6, host: '::', port: 15101, v6Only: true }, 'proxy');
      const real4 = await serverIn(ns, { family: 4, host: '10.200.0.1', port: 8080 }, 'app');
      const real6 = await serverIn(ns, { family: 6, host: 'fd00:200::1', port: 8080 }, 'app');
      servers.push(proxy4.server, proxy6.server, real4.server, real6.server);
    });

    after(() => {
      for (const s of servers) s.close();
    });

    test('IPv4: a redirected connection reports the address the client dialled', async () => {
      assert.equal(await replyFrom(ns, 4, '10.200.0.99', 8080), 'proxy');
      assert.deepEqual(proxy4.accepted.at(-1)?.originalDst, { family: 4, address: '10.200.0.99', port: 8080 });
    });

    test('IPv6: a redirected connection reports the address the client dialled', async () => {
      assert.equal(await replyFrom(ns, 6, 'fd00:200::99', 8080), 'proxy');
      assert.deepEqual(proxy6.accepted.at(-1)?.originalDst, { family: 6, address: 'fd00:200::99', port: 8080 });
    });

    test('the mark decides: same destination, unmarked is captured, proxy-marked reaches the app', async () => {
      assert.equal(await replyFrom(ns, 4, '10.200.0.1', 8080), 'proxy');
      assert.equal(await replyFrom(ns, 4, '10.200.0.1', 8080, PROXY_MARK), 'app');
      assert.equal(await replyFrom(ns, 6, 'fd00:200::1', 8080), 'proxy');
      assert.equal(await replyFrom(ns, 6, 'fd00:200::1', 8080, PROXY_MARK), 'app');
    });
  });
});
