/**
 * Socket wrapper tests that need no privileges: real sockets on the loopback of the namespace the
 * test runs in, kernel-picked ports only. Marks, transparent binds, setns and SO_ORIGINAL_DST with a
 * real redirect need root and live in netns.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { closeSync, openSync, readdirSync } from 'node:fs';
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import {
  AF_INET,
  AF_INET6,
  SOCK_STREAM,
  SOL_SOCKET,
  SO_DOMAIN,
  SO_REUSEADDR,
  SO_REUSEPORT,
  SO_TYPE,
} from './constants.js';
import { SysError } from './errors.js';
import { currentNetnsId, openNetns } from './netns.js';
import {
  closeFd,
  connectSocket,
  createListenSocket,
  createTcpSocket,
  getOriginalDst,
  getsockoptInt,
  localAddress,
  setsockoptInt,
  socketFd,
  type ListenSocketOptions,
} from './socket.js';

const hasIPv6Loopback = Object.values(networkInterfaces())
  .flat()
  .some((i) => i?.address === '::1');

/** Adopts a fresh listening fd with net.Server; the server echoes what it receives, prefixed. */
async function echoServer(opts: ListenSocketOptions): Promise<{ server: net.Server; port: number }> {
  const fd = createListenSocket(opts);
  const server = net.createServer((s) => s.on('data', (d) => s.write(`echo:${d}`)));
  server.listen({ fd });
  await once(server, 'listening');
  return { server, port: (server.address() as net.AddressInfo).port };
}

async function roundTrip(sock: net.Socket, payload: string): Promise<string> {
  await once(sock, 'connect');
  sock.write(payload);
  const [data] = (await once(sock, 'data')) as [Buffer];
  return data.toString();
}

function openFdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

test('constants agree with what the kernel reports for a socket', () => {
  for (const [family, domain] of [[4, AF_INET], [6, AF_INET6]] as const) {
    const fd = createTcpSocket({ family });
    try {
      assert.equal(getsockoptInt(fd, SOL_SOCKET, SO_DOMAIN), domain);
      assert.equal(getsockoptInt(fd, SOL_SOCKET, SO_TYPE), SOCK_STREAM);
    } finally {
      closeFd(fd);
    }
  }
});

test('a listening socket adopted by net.Server exchanges bytes with an adopted connecting socket (IPv4)', async () => {
  const { server, port } = await echoServer({ family: 4, host: '127.0.0.1', port: 0, backlog: 16 });
  try {
    const fd = socketFd(server);
    assert.deepEqual(localAddress(fd), { family: 4, address: '127.0.0.1', port });
    assert.equal(getsockoptInt(fd, SOL_SOCKET, SO_REUSEADDR), 1);
    assert.equal(getsockoptInt(fd, SOL_SOCKET, SO_REUSEPORT), 0);
    const client = connectSocket({ family: 4, host: '127.0.0.1', port, localAddress: '127.0.0.1' });
    assert.equal(client.connecting, true, 'Node tracks the connect it started on our fd');
    assert.equal(await roundTrip(client, 'ping'), 'echo:ping');
    assert.equal(client.remotePort, port);
    client.destroy();
  } finally {
    server.close();
  }
});

test('IPv6 listen and connect on ::1', { skip: hasIPv6Loopback ? false : 'no ::1 in this namespace' }, async () => {
  const { server, port } = await echoServer({ family: 6, host: '::1', port: 0, v6Only: true });
  try {
    assert.deepEqual(localAddress(socketFd(server)), { family: 6, address: '::1', port });
    const client = connectSocket({ family: 6, host: '::1', port });
    assert.equal(await roundTrip(client, 'v6'), 'echo:v6');
    client.destroy();
  } finally {
    server.close();
  }
});

test('reusePort lets two workers bind the same port; without it the second bind says what to do', () => {
  const first = createListenSocket({ family: 4, host: '127.0.0.1', port: 0, reusePort: true });
  const { port } = localAddress(first);
  const second = createListenSocket({ family: 4, host: '127.0.0.1', port, reusePort: true });
  try {
    assert.equal(getsockoptInt(second, SOL_SOCKET, SO_REUSEPORT), 1);
    const before = openFdCount();
    assert.throws(
      () => createListenSocket({ family: 4, host: '127.0.0.1', port }),
      (err: unknown) =>
        err instanceof SysError &&
        err.code === 'EADDRINUSE' &&
        err.syscall === `bind(fd ${err.syscall.match(/fd (\d+)/)?.[1]}, 127.0.0.1:${port})` &&
        /reusePort/.test(err.message),
    );
    assert.equal(openFdCount(), before, 'the failed socket was closed');
  } finally {
    closeFd(first);
    closeFd(second);
  }
});

test('binding an address this namespace does not own fails with EADDRNOTAVAIL and a hint', () => {
  assert.throws(
    () => createListenSocket({ family: 4, host: '192.0.2.1', port: 0 }),
    (err: unknown) => err instanceof SysError && err.code === 'EADDRNOTAVAIL' && /transparent: true/.test(err.message),
  );
});

test('getOriginalDst of a connection that was not redirected: a SysError saying so, or the address itself', async () => {
  const server = net.createServer();
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  server.listen({ fd: createListenSocket({ family: 4, host: '127.0.0.1', port: 0 }) });
  await once(server, 'listening');
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const [sock] = await accepted;
  try {
    // Where conntrack tracks this namespace (a nat table exists), an un-NATed connection's original
    // destination is simply the address it reached. Otherwise: ENOENT (no entry) or ENOPROTOOPT
    // (conntrack not loaded), each with a hint.
    let result: unknown;
    try {
      result = getOriginalDst(socketFd(sock));
    } catch (err) {
      result = err;
    }
    if (result instanceof SysError) {
      assert.ok(['ENOENT', 'ENOPROTOOPT'].includes(result.code), result.message);
      assert.ok(result.hint !== undefined);
    } else {
      assert.deepEqual(result, { family: 4, address: '127.0.0.1', port: sock.localPort });
    }
  } finally {
    client.destroy();
    sock.destroy();
    server.close();
  }
});

test('a refused connect surfaces as a connect error on the Node socket', async () => {
  const fd = createListenSocket({ family: 4, host: '127.0.0.1', port: 0 });
  const { port } = localAddress(fd);
  closeFd(fd); // nothing listens on `port` any more
  const client = connectSocket({ family: 4, host: '127.0.0.1', port });
  const [err] = (await once(client, 'error').catch((e: unknown) => [e])) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNREFUSED');
  assert.equal(err.syscall, 'connect');
});

test('bad arguments fail early and typed', () => {
  assert.throws(() => createTcpSocket({ family: 5 as 4 }), /invalid address family 5/);
  assert.throws(() => connectSocket({ family: 4, host: 'example.com', port: 80 }), /IPv4 literal/);
  assert.throws(() => connectSocket({ family: 6, host: '10.0.0.1', port: 80 }), /IPv6 literal/);
  assert.throws(() => createListenSocket({ family: 4, host: '127.0.0.1', port: 70000 }), /invalid port/);
  assert.throws(() => createTcpSocket({ family: 4, mark: -1 }), /invalid mark/);
  assert.throws(() => socketFd(new net.Socket()), /no file descriptor/);
});

test('calls on closed or non-socket fds are SysErrors with errno', () => {
  const fd = createTcpSocket({ family: 4 });
  closeFd(fd);
  assert.throws(
    () => setsockoptInt(fd, SOL_SOCKET, SO_REUSEADDR, 1),
    (err: unknown) => err instanceof SysError && err.code === 'EBADF' && err.errno === 9 && /closed/.test(err.message),
  );
  const file = openSync('/proc/self/stat', 'r');
  try {
    assert.throws(
      () => getsockoptInt(file, SOL_SOCKET, SO_TYPE),
      (err: unknown) => err instanceof SysError && err.code === 'ENOTSOCK',
    );
  } finally {
    closeSync(file);
  }
});

test('openNetns accepts only network namespaces and explains failures', () => {
  const own = openNetns('/proc/thread-self/ns/net');
  try {
    assert.equal(own.id, currentNetnsId());
    assert.match(own.id, /^net:\[\d+\]$/);
  } finally {
    own.close();
  }
  own.close(); // idempotent
  assert.equal(own.closed, true);
  assert.throws(() => own.fd, /closed/);
  assert.throws(
    () => openNetns('/proc/self/ns/mnt'),
    (err: unknown) => err instanceof SysError && err.code === 'EINVAL' && /a mnt namespace, not a network namespace/.test(err.message),
  );
  assert.throws(
    () => openNetns('/proc/self/stat'),
    (err: unknown) => err instanceof SysError && /not a namespace file/.test(err.message),
  );
  assert.throws(
    () => openNetns('/var/run/netns/ambit-does-not-exist'),
    (err: unknown) => err instanceof SysError && err.code === 'ENOENT' && /does not exist/.test(err.message),
  );
});
