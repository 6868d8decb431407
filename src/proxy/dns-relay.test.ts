/**
 * The DNS relay: the matching rules as tables, and the UDP relay on loopback with a fake Dialer (no
 * netns, no privileges) and a tiny upstream resolver: answers come back to the client, a wrong id is
 * not taken for the answer, silence times out, the in-flight bound holds, a local answerer short-cuts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { answers, dnsId, DnsUdpRelay, isDnsResponse, rejectQueryReason, type DnsUdpRelayOptions } from './dns-relay.js';

const WAIT = () => ({ signal: AbortSignal.timeout(5_000) });

/** A DNS message: id, flags, zero counts, then `rest`. */
function message(id: number, response: boolean, rest = ''): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header[2] = response ? 0x81 : 0x01; // QR + RD, or RD
  return Buffer.concat([header, Buffer.from(rest)]);
}

test('dnsId, isDnsResponse, answers, rejectQueryReason', () => {
  assert.equal(dnsId(message(0xbeef, false)), 0xbeef);
  assert.equal(dnsId(Buffer.alloc(11)), undefined);
  assert.equal(isDnsResponse(message(1, true)), true);
  assert.equal(isDnsResponse(message(1, false)), false);
  const cases: [string, Buffer, Buffer, boolean][] = [
    ['same id, response', message(7, false), message(7, true), true],
    ['other id', message(7, false), message(8, true), false],
    ['same id, but a query', message(7, false), message(7, false), false],
    ['truncated reply', message(7, false), Buffer.from([0, 7, 0x81]), false],
  ];
  for (const [name, q, r, expected] of cases) assert.equal(answers(q, r), expected, name);
  assert.match(rejectQueryReason(Buffer.alloc(3), 0, 10) ?? '', /3-byte datagram is not a DNS message/);
  assert.match(rejectQueryReason(message(1, true), 0, 10) ?? '', /response arrived/);
  assert.match(rejectQueryReason(message(1, false), 10, 10) ?? '', /limit 10/);
  assert.equal(rejectQueryReason(message(1, false), 9, 10), undefined);
});

interface Setup {
  client: dgram.Socket;
  relayPort: number;
  relay: DnsUdpRelay;
  warnings: string[];
  upstreamPort: number;
  /** Queries the upstream received. */
  received: Buffer[];
  close(): void;
}

async function udp(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  s.bind(0, '127.0.0.1');
  await once(s, 'listening', WAIT());
  return s;
}

/** An upstream that answers with `reply(query)` (or stays silent when it returns undefined). */
async function setup(reply: (q: Buffer) => Buffer | undefined, opts: Partial<DnsUdpRelayOptions> = {}): Promise<Setup> {
  const upstream = await udp();
  const received: Buffer[] = [];
  upstream.on('message', (q, from) => {
    received.push(q);
    const r = reply(q);
    if (r) upstream.send(r, from.port, from.address);
  });
  const upstreamPort = upstream.address().port;
  const listener = await udp();
  const warnings: string[] = [];
  const sockets: dgram.Socket[] = [];
  const relay = new DnsUdpRelay({
    upstream: () => ({ host: '127.0.0.1', port: upstreamPort }),
    dialUdp: () => {
      const s = dgram.createSocket('udp4');
      s.bind(0, '127.0.0.1');
      sockets.push(s);
      return s;
    },
    timeoutMs: 200,
    maxInflight: 4,
    warn: (_k, _f, m) => warnings.push(m),
    ...opts,
  });
  relay.attach(listener);
  const client = await udp();
  return {
    client,
    relayPort: listener.address().port,
    relay,
    warnings,
    upstreamPort,
    received,
    close: () => {
      relay.destroy();
      for (const s of [upstream, listener, client]) s.close();
    },
  };
}

test('a query is relayed upstream unchanged and the answer returns to the client', async () => {
  const s = await setup((q) => Buffer.concat([message(dnsId(q)!, true), Buffer.from('answer')]));
  try {
    const query = message(0x1234, false, 'question-of-any-type');
    s.client.send(query, s.relayPort, '127.0.0.1');
    const [reply, from] = (await once(s.client, 'message', WAIT())) as [Buffer, dgram.RemoteInfo];
    assert.equal(dnsId(reply), 0x1234);
    assert.equal(reply.subarray(12).toString(), 'answer');
    assert.equal(from.port, s.relayPort, 'the answer comes from the port the client asked');
    assert.deepEqual(s.received, [query], 'byte for byte');
    assert.deepEqual(s.relay.stats(), { queries: 1, answered: 1, timedOut: 0, dropped: 0, failed: 0, inflight: 0 });
  } finally {
    s.close();
  }
});

test('a reply with the wrong id is ignored; the query times out with a readable warning', async () => {
  const s = await setup((q) => message((dnsId(q)! + 1) & 0xffff, true));
  try {
    s.client.send(message(5, false), s.relayPort, '127.0.0.1');
    const deadline = Date.now() + 2000;
    while (s.relay.stats().timedOut === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(s.relay.stats(), { queries: 1, answered: 0, timedOut: 1, dropped: 0, failed: 0, inflight: 0 });
    assert.match(s.warnings.join('\n'), new RegExp(`upstream DNS 127\\.0\\.0\\.1:${s.upstreamPort} did not answer within 200 ms`));
  } finally {
    s.close();
  }
});

test('in-flight queries are bounded; garbage is dropped; no upstream fails the query', async () => {
  const s = await setup(() => undefined); // a silent upstream: everything stays in flight
  try {
    for (let i = 0; i < 6; i++) s.client.send(message(i, false), s.relayPort, '127.0.0.1');
    s.client.send(Buffer.from('junk'), s.relayPort, '127.0.0.1');
    const deadline = Date.now() + 2000;
    while (s.relay.stats().queries < 7 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const stats = s.relay.stats();
    assert.equal(stats.queries, 7);
    assert.equal(stats.inflight, 4);
    assert.equal(stats.dropped, 3);
  } finally {
    s.close();
  }
  const none = await setup(() => undefined, { upstream: () => undefined });
  try {
    none.client.send(message(1, false), none.relayPort, '127.0.0.1');
    const deadline = Date.now() + 2000;
    while (none.relay.stats().failed === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(none.relay.stats().failed, 1);
    assert.match(none.warnings[0]!, /no upstream resolver is configured/);
  } finally {
    none.close();
  }
});

test('a local answerer answers without asking upstream, and declines to relay', async () => {
  const s = await setup((q) => message(dnsId(q)!, true, 'from-upstream'), {
    answer: (q) => (dnsId(q) === 1 ? message(1, true, 'local') : undefined),
  });
  try {
    s.client.send(message(1, false), s.relayPort, '127.0.0.1');
    const [local] = (await once(s.client, 'message', WAIT())) as [Buffer];
    assert.equal(local.subarray(12).toString(), 'local');
    s.client.send(message(2, false), s.relayPort, '127.0.0.1');
    const [relayed] = (await once(s.client, 'message', WAIT())) as [Buffer];
    assert.equal(relayed.subarray(12).toString(), 'from-upstream');
    assert.equal(s.received.length, 1, 'only the declined query went upstream');
  } finally {
    s.close();
  }
});
