/**
 * splice() on real loopback TCP connections (no privileges): client → [proxy: accepted socket ⇄
 * dialled socket] → server. Checks the TCP semantics applications notice: a half-close passes while
 * the other direction keeps flowing, a reset stays a reset, an idle connection ends, and a fast
 * sender cannot make the proxy buffer without bound.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { splice, type SpliceResult } from './splice.js';

const WAIT = () => ({ signal: AbortSignal.timeout(10_000) });

interface Harness {
  proxyPort: number;
  results: Promise<SpliceResult>;
  /** The proxy's two sockets of the (single) connection, once accepted. */
  sockets: Promise<{ downstream: net.Socket; upstream: net.Socket }>;
  close(): void;
}

/** A proxy that splices each accepted connection to `serverPort`. */
async function proxyTo(serverPort: number, idleTimeoutMs = 0): Promise<Harness> {
  let resolveResult!: (r: SpliceResult) => void;
  let resolveSockets!: (s: { downstream: net.Socket; upstream: net.Socket }) => void;
  const results = new Promise<SpliceResult>((r) => (resolveResult = r));
  const sockets = new Promise<{ downstream: net.Socket; upstream: net.Socket }>((r) => (resolveSockets = r));
  const proxy = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (downstream) => {
    const upstream = net.connect({ port: serverPort, host: '127.0.0.1', allowHalfOpen: true });
    resolveSockets({ downstream, upstream });
    splice(downstream, upstream, { idleTimeoutMs }, resolveResult);
  });
  proxy.listen(0, '127.0.0.1');
  await once(proxy, 'listening', WAIT());
  return { proxyPort: (proxy.address() as net.AddressInfo).port, results, sockets, close: () => proxy.close() };
}

async function serve(onConnection: (s: net.Socket) => void): Promise<{ port: number; close(): void }> {
  const server = net.createServer({ allowHalfOpen: true }, onConnection);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening', WAIT());
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

function collect(sock: net.Socket): Promise<string> {
  const chunks: Buffer[] = [];
  sock.on('data', (d: Buffer) => chunks.push(d));
  return once(sock, 'end', WAIT()).then(() => Buffer.concat(chunks).toString());
}

test('a client half-close reaches the server, which still answers; both ends then close cleanly', async () => {
  // The server reads the whole request (up to the client's FIN) before it answers.
  const server = await serve((s) => {
    collect(s).then((request) => s.end(`got:${request}`), () => s.destroy());
  });
  const proxy = await proxyTo(server.port);
  try {
    const client = net.connect({ port: proxy.proxyPort, host: '127.0.0.1', allowHalfOpen: true });
    await once(client, 'connect', WAIT());
    const reply = collect(client);
    client.end('hello'); // write, then FIN: the proxy must pass the FIN on and keep the reply path open
    assert.equal(await reply, 'got:hello');
    const result = await proxy.results;
    assert.equal(result.end, 'closed');
    assert.equal(result.bytesFromDownstream, 5);
    assert.equal(result.bytesFromUpstream, 9);
  } finally {
    proxy.close();
    server.close();
  }
});

test('a server half-close reaches the client, which can still send', async () => {
  let gotRest!: (rest: string) => void;
  const rest = new Promise<string>((r) => (gotRest = r));
  const server = await serve((s) => {
    s.end('first'); // FIN at once, then keep reading
    collect(s).then(gotRest, () => {});
  });
  const proxy = await proxyTo(server.port);
  try {
    const client = net.connect({ port: proxy.proxyPort, host: '127.0.0.1', allowHalfOpen: true });
    assert.equal(await collect(client), 'first');
    client.end('still-talking');
    assert.equal(await rest, 'still-talking');
    assert.equal((await proxy.results).end, 'closed');
  } finally {
    proxy.close();
    server.close();
  }
});

test('a server reset becomes a client reset, not a clean end', async () => {
  const server = await serve((s) => s.once('data', () => s.resetAndDestroy()));
  const proxy = await proxyTo(server.port);
  try {
    const client = net.connect({ port: proxy.proxyPort, host: '127.0.0.1', allowHalfOpen: true });
    client.write('boom');
    const [err] = (await once(client, 'error', WAIT())) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNRESET');
    const result = await proxy.results;
    assert.equal(result.end, 'reset');
    assert.equal(result.side, 'upstream');
  } finally {
    proxy.close();
    server.close();
  }
});

test('a client reset becomes a server reset', async () => {
  let serverSide!: (err: NodeJS.ErrnoException | undefined) => void;
  const serverSaw = new Promise<NodeJS.ErrnoException | undefined>((r) => (serverSide = r));
  const server = await serve((s) => {
    s.on('error', (err: NodeJS.ErrnoException) => serverSide(err));
    s.on('end', () => serverSide(undefined));
    s.resume();
  });
  const proxy = await proxyTo(server.port);
  try {
    const client = net.connect({ port: proxy.proxyPort, host: '127.0.0.1' });
    await once(client, 'connect', WAIT());
    client.write('x');
    await proxy.sockets.then(({ upstream }) => (upstream.connecting ? once(upstream, 'connect', WAIT()) : undefined));
    client.resetAndDestroy();
    const err = await serverSaw;
    assert.equal(err?.code, 'ECONNRESET', 'the server saw a reset, not a clean FIN');
    assert.equal((await proxy.results).end, 'reset');
  } finally {
    proxy.close();
    server.close();
  }
});

test('an idle connection is ended after the idle timeout', async () => {
  const server = await serve((s) => s.resume());
  const proxy = await proxyTo(server.port, 150);
  try {
    const client = net.connect({ port: proxy.proxyPort, host: '127.0.0.1' });
    client.on('error', () => {});
    const started = Date.now();
    await once(client, 'close', WAIT());
    const result = await proxy.results;
    assert.equal(result.end, 'idle');
    assert.ok(Date.now() - started >= 100, 'not before the timeout');
  } finally {
    proxy.close();
    server.close();
  }
});

test('backpressure: a fast server and a paused client do not make the proxy buffer everything', async () => {
  const total = 32 * 1024 * 1024;
  const chunk = Buffer.alloc(64 * 1024, 7);
  const server = await serve((s) => {
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        sent += chunk.length;
        if (!s.write(chunk)) return void s.once('drain', pump);
      }
      s.end();
    };
    pump();
  });
  const proxy = await proxyTo(server.port);
  try {
    const client = net.connect({ port: proxy.proxyPort, host: '127.0.0.1' });
    client.pause();
    await once(client, 'connect', WAIT());
    const { downstream, upstream } = await proxy.sockets;
    await new Promise((r) => setTimeout(r, 300)); // the client reads nothing meanwhile
    const buffered = downstream.writableLength + upstream.readableLength;
    assert.ok(buffered < 4 * 1024 * 1024, `the proxy holds ${buffered} bytes for a paused reader`);
    let received = 0;
    client.on('data', (d: Buffer) => (received += d.length));
    client.resume();
    await once(client, 'end', WAIT());
    assert.equal(received, total);
    assert.equal((await proxy.results).bytesFromUpstream, total);
  } finally {
    proxy.close();
    server.close();
  }
});
