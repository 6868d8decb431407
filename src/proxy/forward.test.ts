/**
 * The forwarding strategy: the pure loop guard and error sentences as tables, and the handler on
 * loopback sockets with a fake Dialer (no netns, no privileges): a forwarded connection, a refused
 * upstream (the client gets a reset and the operator a readable warning), a connect timeout.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { pino } from 'pino';
import type { ConnectionContext, ConnectionRecord, Dialer } from './connection.js';
import { describeConnectError, forwardHandler, selfTargetReason } from './forward.js';

const WAIT = () => ({ signal: AbortSignal.timeout(10_000) });
const PORTS = [15001, 15006, 15008, 15053];

test('selfTargetReason: connections that would loop back into the proxy', () => {
  const local4 = { address: '127.0.0.1', port: 15001 };
  const cases: [string, Parameters<typeof selfTargetReason>[0], { address: string; port: number }, RegExp | undefined][] = [
    ['an ordinary outbound destination', { family: 4, address: '10.96.0.10', port: 80 }, local4, undefined],
    ['inbound to the app port of the pod', { family: 4, address: '10.244.1.7', port: 8080 }, { address: '10.244.1.7', port: 15006 }, undefined],
    ['reached 15001 directly', { family: 4, address: '127.0.0.1', port: 15001 }, local4, /directly/],
    ['reached directly on a dual-stack socket', { family: 4, address: '127.0.0.1', port: 15001 }, { address: '::ffff:127.0.0.1', port: 15001 }, /directly/],
    ['addressed to the proxy on the pod IP', { family: 4, address: '10.244.1.7', port: 15006 }, local4, /is the proxy itself/],
    ['addressed to the proxy on loopback', { family: 6, address: '::1', port: 15053 }, { address: '::1', port: 15001 }, /is the proxy itself/],
    ['a proxy port on another host is fine', { family: 4, address: '10.244.2.9', port: 15008 }, local4, undefined],
  ];
  for (const [name, dst, local, expected] of cases) {
    const reason = selfTargetReason(dst, local, PORTS, ['10.244.1.7']);
    if (expected === undefined) assert.equal(reason, undefined, name);
    else assert.match(reason ?? '', expected, name);
  }
});

test('describeConnectError says what failed and what to check', () => {
  const err = (code: string) => Object.assign(new Error(code), { code });
  const cases: [string, 'outbound' | 'inbound', RegExp][] = [
    ['ECONNREFUSED', 'outbound', /outbound connection to 10\.0\.0\.1:80 failed: connection refused — nothing listens there/],
    ['ECONNREFUSED', 'inbound', /application does not listen on port 80 in the pod/],
    ['ETIMEDOUT', 'outbound', /no answer within 250 ms .*NetworkPolicy/],
    ['EHOSTUNREACH', 'outbound', /no route/],
    ['EPERM', 'outbound', /firewall rule inside the pod/],
    ['EWHATEVER', 'outbound', /failed: EWHATEVER/],
  ];
  for (const [code, listener, expected] of cases) {
    assert.match(describeConnectError(err(code), '10.0.0.1:80', { listener }, 250), expected, code);
  }
});

interface Run {
  record: ConnectionRecord;
  warnings: string[];
}

/** A listener whose connections go to `handler` with a context that dials with `dial`. */
async function withListener(dial: Dialer, handler: ReturnType<typeof forwardHandler>, body: (port: number, run: () => Run) => Promise<void>): Promise<void> {
  let current: Run | undefined;
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (sock) => {
    const record: ConnectionRecord = {
      listener: 'outbound',
      pod: { namespace: 'ns', name: 'p' },
      source: `${sock.remoteAddress}:${sock.remotePort}`,
      startedAt: Date.now(),
      durationMs: 0,
      bytesFromDownstream: 0,
      bytesToDownstream: 0,
    };
    const warnings: string[] = [];
    current = { record, warnings };
    const ctx: ConnectionContext = {
      listener: 'outbound',
      pod: { namespace: 'ns', name: 'p', uid: 'u', ips: ['127.0.0.1'] },
      source: { family: 4, address: sock.remoteAddress!, port: sock.remotePort! },
      originalDst: { family: 4, address: '127.0.0.1', port: upstreamPort },
      dial,
      log: pino({ level: 'silent' }),
      record,
      warn: (_key, _fields, message) => warnings.push(message),
    };
    handler(sock, ctx);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening', WAIT());
  try {
    await body((server.address() as net.AddressInfo).port, () => current!);
  } finally {
    server.close();
  }
}

let upstreamPort = 0;
const loopbackDialer: Dialer = {
  connect: (to) => net.connect({ host: to.host, port: to.port, allowHalfOpen: true }),
  udp: () => {
    throw new Error('not used');
  },
};

test('forwardHandler forwards to the original destination', async () => {
  const upstream = net.createServer((s) => s.on('data', (d) => s.end(`echo:${d}`)));
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening', WAIT());
  upstreamPort = (upstream.address() as net.AddressInfo).port;
  try {
    await withListener(loopbackDialer, forwardHandler({ connectTimeoutMs: 1000, idleTimeoutMs: 0 }), async (port, run) => {
      const client = net.connect(port, '127.0.0.1');
      client.write('hi');
      const chunks: Buffer[] = [];
      client.on('data', (d: Buffer) => chunks.push(d));
      await once(client, 'end', WAIT());
      assert.equal(Buffer.concat(chunks).toString(), 'echo:hi');
      await once(client, 'close', WAIT());
      assert.equal(run().record.upstream, `127.0.0.1:${upstreamPort}`);
      assert.deepEqual(run().warnings, []);
    });
  } finally {
    upstream.close();
  }
});

test('forwardHandler: a refused upstream resets the client and warns the operator', async () => {
  const probe = net.createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening', WAIT());
  upstreamPort = (probe.address() as net.AddressInfo).port;
  probe.close(); // nothing listens there now
  await withListener(loopbackDialer, forwardHandler({ connectTimeoutMs: 1000, idleTimeoutMs: 0 }), async (port, run) => {
    const client = net.connect(port, '127.0.0.1');
    const [err] = (await once(client, 'error', WAIT())) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNRESET');
    assert.equal(run().record.end, 'upstream-failed');
    assert.equal(run().record.error, 'ECONNREFUSED');
    assert.equal(run().warnings.length, 1);
    assert.match(run().warnings[0]!, /connection refused/);
  });
});

test('forwardHandler: an upstream that never connects times out', async () => {
  // A socket that is never connected stands in for a SYN that gets no answer.
  const neverDialer: Dialer = { connect: () => new net.Socket(), udp: loopbackDialer.udp };
  await withListener(neverDialer, forwardHandler({ connectTimeoutMs: 100, idleTimeoutMs: 0 }), async (port, run) => {
    const client = net.connect(port, '127.0.0.1');
    const [err] = (await once(client, 'error', WAIT())) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNRESET');
    assert.equal(run().record.error, 'ETIMEDOUT');
    assert.match(run().warnings[0]!, /no answer within 100 ms/);
  });
});

test('forwardHandler: a target function may refuse', async () => {
  const handler = forwardHandler({ connectTimeoutMs: 100, idleTimeoutMs: 0, target: () => ({ refuse: 'not today' }) });
  await withListener(loopbackDialer, handler, async (port, run) => {
    const client = net.connect(port, '127.0.0.1');
    const [err] = (await once(client, 'error', WAIT())) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNRESET');
    assert.equal(run().record.end, 'refused');
    assert.match(run().warnings[0]!, /not today/);
  });
});
