import assert from 'node:assert/strict';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { relay } from './relay.js';

/** A connected loopback pair: `local` is what the relay writes to, `app` the far end. */
async function pair(): Promise<{ local: net.Socket; app: net.Socket; close(): void }> {
  const server = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const app = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  const local = await accepted;
  return {
    local,
    app,
    close: () => {
      local.destroy();
      app.destroy();
      server.close();
    },
  };
}

/** Counts the writes that reach the socket's handle (one per _write, one per _writev). */
function countWrites(s: net.Socket): { calls: number; bytes: number[] } {
  const seen = { calls: 0, bytes: [] as number[] };
  const sock = s as unknown as { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void };
  const write = sock._write.bind(s);
  const writev = sock._writev.bind(s);
  sock._write = (chunk: unknown, ...rest: unknown[]) => {
    seen.calls++;
    seen.bytes.push((chunk as Buffer).length);
    write(chunk, ...rest);
  };
  sock._writev = (chunks: unknown, ...rest: unknown[]) => {
    seen.calls++;
    seen.bytes.push((chunks as Array<{ chunk: Buffer }>).reduce((n, c) => n + c.chunk.length, 0));
    writev(chunks, ...rest);
  };
  return seen;
}

test('relay: the chunks of one burst from the tunnel reach the TCP socket as one write', async () => {
  const p = await pair();
  const tunnel = new PassThrough();
  try {
    const writes = countWrites(p.local);
    void relay(tunnel, p.local);
    const got: Buffer[] = [];
    p.app.on('data', (b: Buffer) => got.push(b));
    // what one TLS read delivers: several DATA chunks, each from its own callback into JS (timers
    // of one phase, like the HTTP/2 session's callbacks: the tick queue drains between them)
    for (let i = 0; i < 8; i++) setTimeout(() => tunnel.write(Buffer.alloc(8192, i)), 0);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(Buffer.concat(got).length, 8 * 8192);
    assert.equal(writes.calls, 1, `writes: ${JSON.stringify(writes.bytes)}`);
    assert.deepEqual(writes.bytes, [8 * 8192]);
  } finally {
    tunnel.destroy();
    p.close();
  }
});

test('relay: a reader that stops pauses the tunnel with a bounded amount waiting in the socket', async () => {
  const p = await pair();
  const tunnel = new PassThrough({ highWaterMark: 64 * 1024 });
  try {
    void relay(tunnel, p.local);
    p.app.pause(); // the application stops reading
    let offered = 0;
    // offer far more than the kernel's socket buffers and our bound, until the tunnel pushes back
    for (let i = 0; i < 400 && offered < 64 * 1024 * 1024; i++) {
      while (tunnel.write(Buffer.alloc(64 * 1024, 1))) offered += 64 * 1024;
      offered += 64 * 1024;
      await new Promise((r) => setTimeout(r, 5));
      if (tunnel.readableFlowing === false && tunnel.writableLength > 0) break;
    }
    assert.equal(tunnel.readableFlowing, false, 'the relay paused the tunnel');
    assert.ok(p.local.writableLength <= 256 * 1024 + 64 * 1024, `waiting in the socket: ${p.local.writableLength}`);
    // and it resumes once the application reads again: everything offered arrives
    let received = 0;
    p.app.on('data', (b: Buffer) => (received += b.length));
    p.app.resume();
    tunnel.end();
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`only ${received} of ${offered} bytes arrived`)), 5000);
      p.app.once('end', () => {
        clearTimeout(t);
        resolve();
      });
    });
    assert.equal(received, offered);
  } finally {
    tunnel.destroy();
    p.close();
  }
});
