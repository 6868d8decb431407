// Table tests of the DNS proxy's decision: which queries it answers from the pushed Services (and
// exactly how), and that every other query is handed on untouched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DnsClass, DnsOpcode, DnsType, parseMessage, serializeMessage, type DnsHeader, type DnsMessage, type DnsOpt } from './codec.js';
import { answerLocally, buildDnsIndex, buildErrorResponse, type DnsService, type ForwardReason, type LocalAnswer } from './resolve.js';

function svc(hostname: string, vips: string[], endpoints: [string, 'ready' | 'terminating' | 'notReady'][] = []): DnsService {
  return { hostname, vips, endpoints: endpoints.map(([ip, status]) => ({ ip, status })) };
}

const manyIps = Array.from({ length: 100 }, (_, i) => `10.244.${1 + Math.floor(i / 50)}.${10 + (i % 50)}`);

const INDEX = buildDnsIndex([
  svc('echo.demo.svc.cluster.local', ['10.96.0.20']),
  svc('dual.demo.svc.cluster.local', ['10.96.0.21', 'fd00:10:96::21']),
  svc('six.demo.svc.cluster.local', ['fd00:10:96::22']),
  svc('db.demo.svc.cluster.local', [], [['10.244.1.5', 'ready'], ['10.244.2.6', 'ready'], ['10.244.2.7', 'terminating'], ['10.244.1.8', 'notReady']]),
  svc('gone.demo.svc.cluster.local', [], [['10.244.1.9', 'notReady']]),
  svc('big.demo.svc.cluster.local', [], manyIps.map((ip) => [ip, 'ready'] as [string, 'ready'])),
]);

const HEADER: DnsHeader = { id: 0x4242, qr: false, opcode: 0, aa: false, tc: false, rd: true, ra: false, z: false, ad: false, cd: false, rcode: 0 };

function query(name: string, type: number, extra: Partial<DnsMessage> & { flags?: Partial<DnsHeader> } = {}): Buffer {
  const { flags, ...rest } = extra;
  return serializeMessage({ header: { ...HEADER, ...flags }, questions: [{ name, type, class: DnsClass.IN }], answers: [], authorities: [], additionals: [], ...rest });
}

const EDNS: DnsOpt = { udpPayloadSize: 4096, extendedRcode: 0, version: 0, dnssecOk: false, flags: 0, options: [] };

function answered(r: LocalAnswer): DnsMessage {
  assert.equal(r.kind, 'answer', JSON.stringify(r));
  return parseMessage((r as Extract<LocalAnswer, { kind: 'answer' }>).response);
}

function ipsOf(m: DnsMessage): string[] {
  return m.answers.map((a) => (a.data.length === 4 ? [...a.data].join('.') : a.data.toString('hex')));
}

// ---------------------------------------------------------------- the index

test('buildDnsIndex: cluster IPs per family, ready endpoints of headless Services, no empty entries', () => {
  assert.deepEqual(INDEX.get('echo.demo.svc.cluster.local'), { v4: ['10.96.0.20'], v6: [] });
  assert.deepEqual(INDEX.get('dual.demo.svc.cluster.local'), { v4: ['10.96.0.21'], v6: ['fd00:10:96::21'] });
  assert.deepEqual(INDEX.get('db.demo.svc.cluster.local'), { v4: ['10.244.1.5', '10.244.2.6'], v6: [] });
  assert.equal(INDEX.has('gone.demo.svc.cluster.local'), false, 'a headless Service with no ready endpoint is forwarded');
});

test('buildDnsIndex: keys are lower case without a trailing dot; junk addresses and duplicates dropped', () => {
  const idx = buildDnsIndex([svc('Web.Prod.svc.Example.Org.', ['10.0.0.1', '10.0.0.1', 'not-an-ip', 'fd00::1'])]);
  assert.deepEqual([...idx.entries()], [['web.prod.svc.example.org', { v4: ['10.0.0.1'], v6: ['fd00::1'] }]]);
});

// ---------------------------------------------------------------- answers

const answers: { name: string; q: Buffer; ips: string[]; options?: Parameters<typeof answerLocally>[2] }[] = [
  { name: 'A of a ClusterIP Service', q: query('echo.demo.svc.cluster.local', DnsType.A), ips: ['10.96.0.20'] },
  { name: 'AAAA of a dual-stack Service', q: query('dual.demo.svc.cluster.local', DnsType.AAAA), ips: ['fd000010009600000000000000000021'] },
  { name: 'A of a dual-stack Service', q: query('dual.demo.svc.cluster.local', DnsType.A), ips: ['10.96.0.21'] },
  { name: 'AAAA of an IPv4-only Service: NODATA', q: query('echo.demo.svc.cluster.local', DnsType.AAAA), ips: [] },
  { name: 'A of an IPv6-only Service: NODATA', q: query('six.demo.svc.cluster.local', DnsType.A), ips: [] },
  { name: 'A of a headless Service: ready endpoints', q: query('db.demo.svc.cluster.local', DnsType.A), ips: ['10.244.1.5', '10.244.2.6'] },
  { name: 'rotation spreads headless answers', q: query('db.demo.svc.cluster.local', DnsType.A), ips: ['10.244.2.6', '10.244.1.5'], options: { rotation: 3 } },
  { name: 'case-insensitive name', q: query('ECHO.Demo.SVC.Cluster.LOCAL', DnsType.A), ips: ['10.96.0.20'] },
  { name: 'trailing dot in the name given to the encoder', q: query('echo.demo.svc.cluster.local.', DnsType.A), ips: ['10.96.0.20'] },
  { name: 'with EDNS', q: query('echo.demo.svc.cluster.local', DnsType.A, { opt: EDNS }), ips: ['10.96.0.20'] },
];

for (const { name, q, ips, options } of answers) {
  test(`answers: ${name}`, () => {
    const m = answered(answerLocally(q, INDEX, options));
    assert.equal(m.header.rcode, 0);
    assert.deepEqual(ipsOf(m), ips);
  });
}

test('answer: header, question echo (case kept), owner, TTL and compression', () => {
  const q = query('EcHo.demo.svc.cluster.local', DnsType.A, { flags: { id: 777, rd: true, cd: true, z: true, ad: true } });
  const r = answerLocally(q, INDEX);
  assert.equal(r.kind, 'answer');
  if (r.kind !== 'answer') return;
  assert.deepEqual({ name: r.name, qtype: r.qtype, addresses: r.addresses, truncated: r.truncated }, { name: 'EcHo.demo.svc.cluster.local', qtype: 'A', addresses: 1, truncated: false });
  const m = parseMessage(r.response);
  assert.deepEqual(m.header, { id: 777, qr: true, opcode: 0, aa: true, tc: false, rd: true, ra: true, z: false, ad: false, cd: true, rcode: 0 });
  assert.deepEqual(m.questions, [{ name: 'EcHo.demo.svc.cluster.local', type: DnsType.A, class: DnsClass.IN }]);
  assert.deepEqual(m.answers, [{ name: 'EcHo.demo.svc.cluster.local', type: DnsType.A, class: DnsClass.IN, ttl: 30, data: Buffer.from([10, 96, 0, 20]) }]);
  assert.equal(m.opt, undefined, 'no OPT without one in the query');
  // the question occupies exactly the query's octets; the answer's owner is a pointer to it
  assert.deepEqual(r.response.subarray(12, q.length), q.subarray(12));
  assert.deepEqual([...r.response.subarray(q.length, q.length + 2)], [0xc0, 12]);
  assert.equal(r.response.length, q.length + 16);
});

test('answer: RD=0 is kept; TTL comes from the options', () => {
  const m = answered(answerLocally(query('echo.demo.svc.cluster.local', DnsType.A, { flags: { rd: false } }), INDEX, { ttlSeconds: 5 }));
  assert.equal(m.header.rd, false);
  assert.equal(m.answers[0]!.ttl, 5);
});

test('answer: NODATA is NOERROR, authoritative, with no records at all', () => {
  const m = answered(answerLocally(query('echo.demo.svc.cluster.local', DnsType.AAAA), INDEX));
  assert.deepEqual([m.header.rcode, m.header.aa, m.answers.length, m.authorities.length, m.additionals.length], [0, true, 0, 0, 0]);
});

test('answer: an EDNS query gets our OPT back, DO copied, its options not echoed', () => {
  const opt: DnsOpt = { udpPayloadSize: 4096, extendedRcode: 0, version: 0, dnssecOk: true, flags: 0, options: [{ code: 10, data: Buffer.alloc(8, 1) }] };
  const m = answered(answerLocally(query('echo.demo.svc.cluster.local', DnsType.A, { opt }), INDEX));
  assert.deepEqual(m.opt, { udpPayloadSize: 1232, extendedRcode: 0, version: 0, dnssecOk: true, flags: 0, options: [] });
});

test('answer: too many addresses for 512 octets → as many as fit, TC set', () => {
  const q = query('big.demo.svc.cluster.local', DnsType.A);
  const r = answerLocally(q, INDEX);
  assert.ok(r.kind === 'answer');
  const fit = Math.floor((512 - q.length) / 16);
  assert.deepEqual([r.truncated, r.addresses, r.response.length <= 512], [true, fit, true]);
  const m = parseMessage(r.response);
  assert.equal(m.header.tc, true);
  assert.deepEqual(ipsOf(m), manyIps.slice(0, fit));
});

test('answer: the same over EDNS 4096 or TCP fits whole', () => {
  for (const [extra, options] of [[{ opt: EDNS }, {}], [{}, { transport: 'tcp' as const }]] as const) {
    const r = answerLocally(query('big.demo.svc.cluster.local', DnsType.A, extra), INDEX, options);
    assert.ok(r.kind === 'answer' && !r.truncated && r.addresses === 100);
    assert.deepEqual(ipsOf(parseMessage(r.response)), manyIps);
  }
});

test('answer: an EDNS size below 512 still allows 512', () => {
  const r = answerLocally(query('big.demo.svc.cluster.local', DnsType.A, { opt: { ...EDNS, udpPayloadSize: 100 } }), INDEX);
  assert.ok(r.kind === 'answer' && r.truncated && r.response.length <= 512 && r.response.length > 400);
});

// ---------------------------------------------------------------- forwards

function rawQuery(m: Partial<DnsMessage>): Buffer {
  return serializeMessage({ header: HEADER, questions: [], answers: [], authorities: [], additionals: [], ...m });
}

const known = 'echo.demo.svc.cluster.local';
const forwards: { name: string; q: Buffer; reason: ForwardReason }[] = [
  { name: 'SRV of a Service name', q: query(`_http._tcp.${known}`, DnsType.SRV), reason: 'type' },
  { name: 'SRV of the Service name itself', q: query(known, DnsType.SRV), reason: 'type' },
  { name: 'TXT', q: query(known, DnsType.TXT), reason: 'type' },
  { name: 'PTR', q: query('20.0.96.10.in-addr.arpa', DnsType.PTR), reason: 'type' },
  { name: 'ANY', q: query(known, DnsType.ANY), reason: 'type' },
  { name: 'HTTPS (type 65)', q: query(known, 65), reason: 'type' },
  { name: 'CNAME', q: query(known, DnsType.CNAME), reason: 'type' },
  { name: 'UPDATE (opcode 5) of the cluster zone', q: query('cluster.local', DnsType.SOA, { flags: { opcode: DnsOpcode.UPDATE } }), reason: 'opcode' },
  { name: 'UPDATE (opcode 5) shaped like an A query', q: query(known, DnsType.A, { flags: { opcode: DnsOpcode.UPDATE } }), reason: 'opcode' },
  { name: 'NOTIFY', q: query(known, DnsType.SOA, { flags: { opcode: DnsOpcode.NOTIFY } }), reason: 'opcode' },
  { name: 'name outside the cluster', q: query('example.com', DnsType.A), reason: 'unknown-name' },
  { name: 'short name (clients expand search paths themselves)', q: query('echo.demo', DnsType.A), reason: 'unknown-name' },
  { name: 'search-path miss', q: query('echo.demo.demo.svc.cluster.local', DnsType.A), reason: 'unknown-name' },
  { name: 'pod hostname under a headless Service', q: query('db-0.db.demo.svc.cluster.local', DnsType.A), reason: 'unknown-name' },
  { name: 'headless Service without ready endpoints', q: query('gone.demo.svc.cluster.local', DnsType.A), reason: 'unknown-name' },
  { name: 'escaped dot that would look like the name', q: query('echo\\.demo.svc.cluster.local', DnsType.A), reason: 'unknown-name' },
  {
    name: 'QDCOUNT 2',
    q: rawQuery({ questions: [{ name: known, type: DnsType.A, class: 1 }, { name: known, type: DnsType.AAAA, class: 1 }] }),
    reason: 'question-count',
  },
  { name: 'QDCOUNT 0', q: rawQuery({}), reason: 'question-count' },
  { name: 'class CH', q: rawQuery({ questions: [{ name: known, type: DnsType.A, class: DnsClass.CH }] }), reason: 'class' },
  { name: 'class ANY', q: rawQuery({ questions: [{ name: known, type: DnsType.A, class: DnsClass.ANY }] }), reason: 'class' },
  { name: 'a response (QR=1)', q: query(known, DnsType.A, { flags: { qr: true } }), reason: 'not-a-query' },
  {
    name: 'signed query (TSIG in additional)',
    q: query(known, DnsType.A, { additionals: [{ name: 'key.example', type: DnsType.TSIG, class: DnsClass.ANY, ttl: 0, data: Buffer.alloc(20) }] }),
    reason: 'extra-records',
  },
  { name: 'EDNS version 1', q: query(known, DnsType.A, { opt: { ...EDNS, version: 1 } }), reason: 'edns-version' },
  { name: 'garbage', q: Buffer.from('GET / HTTP/1.1\r\n\r\n'), reason: 'malformed' },
  { name: 'empty datagram', q: Buffer.alloc(0), reason: 'malformed' },
];

for (const { name, q, reason } of forwards) {
  test(`forwards unchanged: ${name}`, () => {
    const before = Buffer.from(q);
    const r = answerLocally(q, INDEX);
    assert.equal(r.kind, 'forward');
    assert.equal(r.kind === 'forward' && r.reason, reason);
    assert.deepEqual(q, before, 'the query bytes are not touched');
  });
}

// ---------------------------------------------------------------- error responses

test('buildErrorResponse: SERVFAIL echoes id, RD, question and EDNS', () => {
  const q = query('example.com', DnsType.SRV, { opt: EDNS, flags: { id: 9 } });
  const m = parseMessage(buildErrorResponse(q, 2)!);
  assert.deepEqual([m.header.id, m.header.qr, m.header.rd, m.header.rcode, m.header.aa], [9, true, true, 2, false]);
  assert.deepEqual(m.questions, [{ name: 'example.com', type: DnsType.SRV, class: 1 }]);
  assert.equal(m.opt?.version, 0);
});

test('buildErrorResponse: nothing for what cannot be echoed', () => {
  assert.equal(buildErrorResponse(Buffer.from('junk'), 2), undefined);
  assert.equal(buildErrorResponse(query(known, DnsType.A, { flags: { qr: true } }), 2), undefined);
  assert.equal(buildErrorResponse(query(known, DnsType.A), 16), undefined);
});
