// Table tests of the cluster DNS: the answers for each kind of name (pure), the wire codec, and a
// round trip through a real UDP and TCP socket on loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import type { KObject } from './apiserver/types.js';
import { RCODE, TYPE, UDP_MAX, answerQuestion, buildZone, encodeResponse, parseQuery, readName, respond, serveTcpConnection, type Answer, type Zone } from './dns.js';
import { buildServiceModel } from './services.js';

const svc = (ns: string, name: string, spec: Record<string, unknown>): KObject => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns }, spec }) as KObject;
const slice = (ns: string, svcName: string, endpoints: Array<Record<string, unknown>>, ports: Array<Record<string, unknown>>): KObject =>
  ({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: `${svcName}-x`, namespace: ns, labels: { 'kubernetes.io/service-name': svcName } }, addressType: 'IPv4', endpoints, ports }) as KObject;

const services = [
  svc('default', 'web', { clusterIP: '10.96.0.20', ports: [{ name: 'http', port: 80, protocol: 'TCP' }, { port: 81, protocol: 'TCP' }] }),
  svc('db', 'pg', { clusterIP: 'None', ports: [{ name: 'sql', port: 5432, protocol: 'TCP' }] }),
  svc('db', 'empty', { clusterIP: 'None', ports: [{ name: 'sql', port: 5432 }] }),
  svc('default', 'ext', { type: 'ExternalName', externalName: 'db.example.com' }),
];
const slices = [
  slice('default', 'web', [{ addresses: ['10.244.1.5'], conditions: { ready: true } }], [{ name: 'http', port: 8080, protocol: 'TCP' }]),
  slice(
    'db',
    'pg',
    [
      { addresses: ['10.244.2.3'], conditions: { ready: true }, hostname: 'pg-0' },
      { addresses: ['10.244.1.4'], conditions: { ready: true } },
      { addresses: ['10.244.1.8'], conditions: { ready: false } },
    ],
    [{ name: 'sql', port: 5432, protocol: 'TCP' }],
  ),
];
const zone: Zone = buildZone(buildServiceModel(services, slices), 'cluster.local');

const q = (name: string, type: number = TYPE.A) => answerQuestion(zone, { name, type, class: 1 });
const data = (a: Answer) =>
  a.answers.map((r) => (r.type === TYPE.A ? r.ip : r.type === TYPE.CNAME ? `CNAME ${r.target}` : r.type === TYPE.SRV ? `SRV ${r.srv.port} ${r.srv.target}` : 'SOA'));

test('answers for each kind of cluster name', () => {
  const cases: Array<[string, number, number, string[]]> = [
    ['web.default.svc.cluster.local', TYPE.A, RCODE.NOERROR, ['10.96.0.20']],
    ['WEB.Default.svc.cluster.local.', TYPE.A, RCODE.NOERROR, ['10.96.0.20']],
    ['web.default.svc.cluster.local', TYPE.AAAA, RCODE.NOERROR, []],
    ['_http._tcp.web.default.svc.cluster.local', TYPE.SRV, RCODE.NOERROR, ['SRV 80 web.default.svc.cluster.local']],
    ['_http._udp.web.default.svc.cluster.local', TYPE.SRV, RCODE.NXDOMAIN, []],
    ['pg.db.svc.cluster.local', TYPE.A, RCODE.NOERROR, ['10.244.1.4', '10.244.2.3']],
    ['pg-0.pg.db.svc.cluster.local', TYPE.A, RCODE.NOERROR, ['10.244.2.3']],
    ['10-244-1-4.pg.db.svc.cluster.local', TYPE.A, RCODE.NOERROR, ['10.244.1.4']],
    ['10-244-1-8.pg.db.svc.cluster.local', TYPE.A, RCODE.NXDOMAIN, []],
    ['_sql._tcp.pg.db.svc.cluster.local', TYPE.SRV, RCODE.NOERROR, ['SRV 5432 10-244-1-4.pg.db.svc.cluster.local', 'SRV 5432 pg-0.pg.db.svc.cluster.local']],
    ['empty.db.svc.cluster.local', TYPE.A, RCODE.NOERROR, []],
    ['ext.default.svc.cluster.local', TYPE.A, RCODE.NOERROR, ['CNAME db.example.com']],
    ['10-244-3-7.default.pod.cluster.local', TYPE.A, RCODE.NOERROR, ['10.244.3.7']],
    ['10-244-3-300.default.pod.cluster.local', TYPE.A, RCODE.NXDOMAIN, []],
    ['nope.default.svc.cluster.local', TYPE.A, RCODE.NXDOMAIN, []],
    ['default.svc.cluster.local', TYPE.A, RCODE.NOERROR, []],
    ['svc.cluster.local', TYPE.A, RCODE.NOERROR, []],
    ['cluster.local', TYPE.SOA, RCODE.NOERROR, ['SOA']],
    ['example.com', TYPE.A, RCODE.REFUSED, []],
    ['xcluster.local', TYPE.A, RCODE.REFUSED, []],
  ];
  for (const [name, type, rcode, want] of cases) {
    const a = q(name, type);
    assert.equal(a.rcode, rcode, `${name} rcode`);
    assert.deepEqual(data(a), want, name);
  }
});

test('misses carry the SOA (negative caching); refusals are not authoritative', () => {
  const nx = q('nope.default.svc.cluster.local');
  assert.equal(nx.authoritative, true);
  assert.equal(nx.authority[0]?.type, TYPE.SOA);
  const out = q('example.com');
  assert.equal(out.authoritative, false);
  assert.deepEqual(out.authority, []);
});

test('SRV answers bring the targets\' addresses as additionals', () => {
  const a = q('_sql._tcp.pg.db.svc.cluster.local', TYPE.SRV);
  assert.deepEqual(
    a.additionals.map((r) => [r.name, r.type === TYPE.A ? r.ip : '']),
    [
      ['10-244-1-4.pg.db.svc.cluster.local', '10.244.1.4'],
      ['pg-0.pg.db.svc.cluster.local', '10.244.2.3'],
    ],
  );
});

function query(name: string, type: number, id = 0x1234): Buffer {
  const labels = name.split('.').flatMap((l) => [Buffer.from([l.length]), Buffer.from(l)]);
  const header = Buffer.from([id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
  return Buffer.concat([header, ...labels, Buffer.from([0, type >> 8, type & 0xff, 0, 1])]);
}

/** Decodes the parts of a response the tests look at (A records of the answer section). */
function decode(buf: Buffer): { id: number; rcode: number; aa: boolean; tc: boolean; rd: boolean; ancount: number; ips: string[] } {
  const flags = buf.readUInt16BE(2);
  const qd = buf.readUInt16BE(4);
  const ancount = buf.readUInt16BE(6);
  let pos = 12;
  for (let i = 0; i < qd; i++) pos = readName(buf, pos).next + 4;
  const ips: string[] = [];
  for (let i = 0; i < ancount; i++) {
    const { next } = readName(buf, pos);
    const type = buf.readUInt16BE(next);
    const len = buf.readUInt16BE(next + 8);
    if (type === TYPE.A) ips.push([...buf.subarray(next + 10, next + 14)].join('.'));
    pos = next + 10 + len;
  }
  return { id: buf.readUInt16BE(0), rcode: flags & 0xf, aa: !!(flags & 0x400), tc: !!(flags & 0x200), rd: !!(flags & 0x100), ancount, ips };
}

test('wire: a query round-trips into a response with the same id, question and flags', () => {
  const parsed = parseQuery(query('web.default.svc.cluster.local', TYPE.A, 77));
  assert.deepEqual(parsed, { id: 77, opcode: 0, recursionDesired: true, questions: [{ name: 'web.default.svc.cluster.local', type: TYPE.A, class: 1 }] });
  const r = decode(respond(zone, query('web.default.svc.cluster.local', TYPE.A, 77))!);
  assert.deepEqual(r, { id: 77, rcode: 0, aa: true, tc: false, rd: true, ancount: 1, ips: ['10.96.0.20'] });
});

test('wire: compressed names are read; malformed and odd queries get FORMERR / NOTIMP', () => {
  // "a" then a pointer back to offset 12 → "a.b"
  const buf = Buffer.from([1, 0x62, 0, 1, 0x61, 0xc0, 0]);
  assert.deepEqual(readName(buf, 3), { name: 'a.b', next: 7 });
  assert.throws(() => readName(Buffer.from([0xc0, 0]), 0), /bad name/, 'a pointer loop is caught');
  assert.equal(decode(respond(zone, Buffer.from([0, 9, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 5, 0x61]))!).rcode, RCODE.FORMERR);
  const notify = query('web.default.svc.cluster.local', TYPE.A);
  notify[2] = 0x20; // opcode 4 (NOTIFY)
  assert.equal(decode(respond(zone, notify)!).rcode, RCODE.NOTIMP);
  assert.equal(respond(zone, Buffer.from([1, 2, 3])), undefined, 'too short to even answer');
});

test('wire: an answer too big for UDP is sent truncated so the client retries over TCP', () => {
  const many = slice('db', 'big', Array.from({ length: 60 }, (_, i) => ({ addresses: [`10.244.9.${i + 1}`], conditions: { ready: true } })), [{ name: 'sql', port: 5432 }]);
  const z = buildZone(buildServiceModel([svc('db', 'big', { clusterIP: 'None', ports: [{ name: 'sql', port: 5432 }] })], [many]));
  const packet = query('big.db.svc.cluster.local', TYPE.A);
  const udp = decode(respond(z, packet, UDP_MAX)!);
  assert.equal(udp.tc, true);
  assert.equal(udp.ancount, 0);
  const tcp = decode(respond(z, packet)!);
  assert.equal(tcp.tc, false);
  assert.equal(tcp.ancount, 60);
  assert.equal(encodeResponse({ id: 1, answer: q('web.default.svc.cluster.local') }).length <= UDP_MAX, true);
});

test('serves over UDP and over TCP (length-prefixed, several queries per connection)', async () => {
  const udp = dgram.createSocket('udp4');
  udp.on('message', (m, peer) => udp.send(respond(zone, m, UDP_MAX)!, peer.port, peer.address));
  await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
  const tcp = net.createServer((s) => serveTcpConnection(s, (m) => respond(zone, m)));
  await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
  try {
    const client = dgram.createSocket('udp4');
    const reply = await new Promise<Buffer>((resolve) => {
      client.once('message', resolve);
      client.send(query('pg.db.svc.cluster.local', TYPE.A, 5), udp.address().port, '127.0.0.1');
    });
    client.close();
    assert.deepEqual(decode(reply).ips, ['10.244.1.4', '10.244.2.3']);

    const sock = net.connect((tcp.address() as net.AddressInfo).port, '127.0.0.1');
    const frame = (b: Buffer) => Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
    // Two queries in one write, the second split across writes: framing must hold.
    const second = frame(query('web.default.svc.cluster.local', TYPE.A, 2));
    sock.write(Buffer.concat([frame(query('nope.default.svc.cluster.local', TYPE.A, 1)), second.subarray(0, 5)]));
    setTimeout(() => sock.write(second.subarray(5)), 20);
    const replies = await new Promise<Buffer[]>((resolve) => {
      let buf = Buffer.alloc(0);
      const out: Buffer[] = [];
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          out.push(buf.subarray(2, 2 + buf.readUInt16BE(0)));
          buf = buf.subarray(2 + buf.readUInt16BE(0));
        }
        if (out.length === 2) resolve(out);
      });
    });
    sock.destroy();
    assert.deepEqual(replies.map((r) => [decode(r).id, decode(r).rcode, decode(r).ips]), [
      [1, RCODE.NXDOMAIN, []],
      [2, RCODE.NOERROR, ['10.96.0.20']],
    ]);
  } finally {
    udp.close();
    await new Promise<void>((resolve) => tcp.close(() => resolve()));
  }
});
