/**
 * Tests of the UDP half of the native layer (createUdpSocket) and of connectSocket's allowHalfOpen,
 * on the loopback of the namespace the test runs in, kernel-picked ports only. Node adopts the UDP
 * fds with `dgram.createSocket(type).bind({ fd })`, exactly as the DNS relay does. The mark check
 * needs CAP_NET_ADMIN and runs as root (CI); without root it is skipped with a reason.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import { SOCK_DGRAM, SOL_SOCKET, SO_REUSEPORT, SO_TYPE } from './constants.js';
import { SysError } from './errors.js';
import { closeFd, connectSocket, createListenSocket, createUdpSocket, getMark, getsockoptInt, localAddress } from './socket.js';

const IS_ROOT = process.getuid?.() === 0;
const WAIT = () => ({ signal: AbortSignal.timeout(5_000) });

/**
 * Adopts a UDP fd the documented way. Node opens the fd and starts receiving inside bind() and emits
 * 'listening' synchronously there, so the listener goes on before the call.
 */
async function adopt(fd: number, type: 'udp4' | 'udp6'): Promise<dgram.Socket> {
  const sock = dgram.createSocket(type);
  const listening = once(sock, 'listening', WAIT());
  sock.bind({ fd });
  await listening;
  return sock;
}

test('createUdpSocket makes a bound datagram socket that dgram adopts and that exchanges datagrams', async () => {
  const serverFd = createUdpSocket({ family: 4, host: '127.0.0.1', port: 0 });
  assert.equal(getsockoptInt(serverFd, SOL_SOCKET, SO_TYPE), SOCK_DGRAM);
  const { port } = localAddress(serverFd);
  assert.ok(port > 0, 'bound to a kernel-picked port before Node adopts it');
  const server = await adopt(serverFd, 'udp4');
  const client = await adopt(createUdpSocket({ family: 4, host: '0.0.0.0', port: 0 }), 'udp4');
  try {
    assert.deepEqual(server.address(), { address: '127.0.0.1', family: 'IPv4', port });
    server.on('message', (msg, from) => server.send(Buffer.concat([Buffer.from('echo:'), msg]), from.port, from.address));
    client.send('ping', port, '127.0.0.1');
    const [reply, from] = (await once(client, 'message', WAIT())) as [Buffer, dgram.RemoteInfo];
    assert.equal(reply.toString(), 'echo:ping');
    assert.equal(from.port, port);
  } finally {
    server.close();
    client.close();
  }
});

test('createUdpSocket: IPv6 loopback with v6Only', async (t) => {
  let fd: number;
  try {
    fd = createUdpSocket({ family: 6, host: '::1', port: 0, v6Only: true });
  } catch (err) {
    // Only a namespace without IPv6 on lo may skip; any other failure is a failure.
    if (err instanceof SysError && (err.code === 'EADDRNOTAVAIL' || err.code === 'EAFNOSUPPORT')) return t.skip('no ::1 here');
    throw err;
  }
  const sock = await adopt(fd, 'udp6');
  try {
    assert.equal(sock.address().address, '::1');
  } finally {
    sock.close();
  }
});

test('createUdpSocket: reusePort lets two workers bind the same port', () => {
  const first = createUdpSocket({ family: 4, host: '127.0.0.1', port: 0, reusePort: true });
  try {
    const second = createUdpSocket({ family: 4, host: '127.0.0.1', port: localAddress(first).port, reusePort: true });
    assert.equal(getsockoptInt(second, SOL_SOCKET, SO_REUSEPORT), 1);
    closeFd(second);
  } finally {
    closeFd(first);
  }
});

test('createUdpSocket: a taken port is a SysError with a hint, and the failed fd is closed', () => {
  const fd = createUdpSocket({ family: 4, host: '127.0.0.1', port: 0 });
  try {
    const { port } = localAddress(fd);
    assert.throws(
      () => createUdpSocket({ family: 4, host: '127.0.0.1', port }),
      (err: unknown) => err instanceof SysError && err.code === 'EADDRINUSE' && err.hint !== undefined,
    );
    assert.throws(() => createUdpSocket({ family: 7 as 4, host: '127.0.0.1', port: 0 }), /invalid address family 7/);
    assert.throws(() => createUdpSocket({ family: 4, host: '127.0.0.1', port: 0, mark: 2 ** 32 }), /invalid mark/);
  } finally {
    closeFd(fd);
  }
});

test('createUdpSocket sets SO_MARK before bind', { skip: IS_ROOT ? false : 'NOT RUN: SO_MARK needs CAP_NET_ADMIN; CI runs as root' }, () => {
  const fd = createUdpSocket({ family: 4, host: '0.0.0.0', port: 0, mark: 0x539 });
  try {
    assert.equal(getMark(fd), 0x539);
  } finally {
    closeFd(fd);
  }
});

test('connectSocket allowHalfOpen keeps writing after the peer half-closes', async () => {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.end('bye'); // half-close towards the client at once, then keep reading
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    s.on('end', () => server.emit('received', Buffer.concat(got).toString()));
  });
  server.listen({ fd: createListenSocket({ family: 4, host: '127.0.0.1', port: 0 }) });
  await once(server, 'listening', WAIT());
  try {
    const { port } = server.address() as net.AddressInfo;
    const client = connectSocket({ family: 4, host: '127.0.0.1', port, allowHalfOpen: true });
    const received = once(server, 'received', WAIT());
    client.on('data', () => {});
    await once(client, 'end', WAIT());
    client.end('after-fin'); // still writable: the half-close was not turned into a full close
    const [text] = (await received) as [string];
    assert.equal(text, 'after-fin');
    client.destroy();
  } finally {
    server.close();
  }
});
