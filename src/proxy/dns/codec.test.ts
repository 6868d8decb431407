// Table tests of the DNS codec: round trips, name compression on the wire, every way a hostile or
// broken message can be malformed (each must end in a DnsFormatError with the right code, quickly),
// address encoding, and TCP framing across arbitrary chunk boundaries.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DnsFormatError,
  DnsType,
  TcpFrameReader,
  canonicalName,
  encodeTcpFrame,
  ipv4Bytes,
  ipv6Bytes,
  nameToLabels,
  parseMessage,
  readName,
  serializeMessage,
  withMessageId,
  messageId,
  type DnsErrorCode,
  type DnsHeader,
  type DnsMessage,
} from './codec.js';

const QUERY_HEADER: DnsHeader = { id: 0x1234, qr: false, opcode: 0, aa: false, tc: false, rd: true, ra: false, z: false, ad: false, cd: false, rcode: 0 };

function msg(partial: Partial<DnsMessage>): DnsMessage {
  return { header: QUERY_HEADER, questions: [], answers: [], authorities: [], additionals: [], ...partial };
}

/** A header with the given counts and flags, followed by `body`. */
function raw(counts: [number, number, number, number], body: number[] | Buffer, flags = 0x0100): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(0xbeef, 0);
  h.writeUInt16BE(flags, 2);
  counts.forEach((c, i) => h.writeUInt16BE(c, 4 + i * 2));
  return Buffer.concat([h, Buffer.from(body)]);
}

/** Wire labels of a dotted name (test helper; plain ASCII only). */
function wireName(name: string): number[] {
  const out: number[] = [];
  for (const l of name.split('.').filter(Boolean)) out.push(l.length, ...Buffer.from(l, 'latin1'));
  out.push(0);
  return out;
}

const A_QUESTION = [...wireName('echo.demo.svc.cluster.local'), 0, 1, 0, 1];

// ---------------------------------------------------------------- round trips

const roundTrips: { name: string; message: DnsMessage }[] = [
  { name: 'plain A query', message: msg({ questions: [{ name: 'echo.demo.svc.cluster.local', type: DnsType.A, class: 1 }] }) },
  { name: 'root name question', message: msg({ questions: [{ name: '', type: DnsType.NS, class: 1 }] }) },
  { name: 'mixed case is preserved', message: msg({ questions: [{ name: 'EcHo.Demo.SVC.cluster.local', type: DnsType.AAAA, class: 1 }] }) },
  { name: 'escaped dot, backslash and binary octets in labels', message: msg({ questions: [{ name: 'a\\.b.c\\\\d.\\000\\255x', type: DnsType.TXT, class: 1 }] }) },
  {
    name: 'every header flag and rcode',
    message: msg({ header: { id: 65535, qr: true, opcode: 15, aa: true, tc: true, rd: true, ra: true, z: true, ad: true, cd: true, rcode: 15 } }),
  },
  {
    name: 'query with EDNS OPT and options',
    message: msg({
      questions: [{ name: 'example.com', type: DnsType.A, class: 1 }],
      opt: { udpPayloadSize: 1232, extendedRcode: 0, version: 0, dnssecOk: true, flags: 0x1234, options: [{ code: 10, data: Buffer.from('0102030405060708', 'hex') }, { code: 12, data: Buffer.alloc(0) }] },
    }),
  },
  {
    name: 'response with A, AAAA, TXT in all sections',
    message: msg({
      header: { ...QUERY_HEADER, qr: true, aa: true, ra: true },
      questions: [{ name: 'x.example', type: DnsType.ANY, class: 1 }],
      answers: [
        { name: 'x.example', type: DnsType.A, class: 1, ttl: 30, data: Buffer.from([10, 96, 0, 1]) },
        { name: 'x.example', type: DnsType.AAAA, class: 1, ttl: 0xffffffff, data: Buffer.alloc(16, 0xfd) },
      ],
      authorities: [{ name: 'example', type: DnsType.TXT, class: 1, ttl: 5, data: Buffer.from('\x05hello', 'latin1') }],
      additionals: [{ name: 'y.x.example', type: DnsType.A, class: 3, ttl: 1, data: Buffer.from([1, 2, 3, 4]) }],
      opt: { udpPayloadSize: 512, extendedRcode: 1, version: 0, dnssecOk: false, flags: 0, options: [] },
    }),
  },
  {
    name: 'longest legal name (255 octets)',
    message: msg({ questions: [{ name: ['a'.repeat(63), 'b'.repeat(63), 'c'.repeat(63), 'd'.repeat(61)].join('.'), type: 1, class: 1 }] }),
  },
];

for (const { name, message } of roundTrips) {
  for (const compress of [true, false]) {
    test(`round trip (${compress ? 'compressed' : 'uncompressed'}): ${name}`, () => {
      const wire = serializeMessage(message, { compress });
      assert.deepEqual(parseMessage(wire), message);
      // serialising the parsed message gives the same octets again
      assert.deepEqual(serializeMessage(parseMessage(wire), { compress }), wire);
    });
  }
}

test('answers are compressed to a pointer at the question (offset 12)', () => {
  const wire = serializeMessage(
    msg({
      header: { ...QUERY_HEADER, qr: true },
      questions: [{ name: 'echo.demo.svc.cluster.local', type: 1, class: 1 }],
      answers: [
        { name: 'ECHO.demo.svc.cluster.local', type: 1, class: 1, ttl: 30, data: Buffer.from([1, 2, 3, 4]) },
        { name: 'other.demo.svc.cluster.local', type: 1, class: 1, ttl: 30, data: Buffer.from([1, 2, 3, 5]) },
      ],
    }),
  );
  const questionEnd = 12 + wireName('echo.demo.svc.cluster.local').length + 4;
  assert.deepEqual([...wire.subarray(questionEnd, questionEnd + 2)], [0xc0, 0x0c]);
  // second owner: the label "other" then a pointer to "demo.svc.cluster.local" (offset 12 + 5)
  const second = questionEnd + 2 + 10 + 4;
  assert.deepEqual([...wire.subarray(second, second + 8)], [5, ...Buffer.from('other'), 0xc0, 17]);
  // names compare case-insensitively, so the upper-case owner became a pointer to the lower-case question
  assert.deepEqual(parseMessage(wire).answers.map((a) => a.name), ['echo.demo.svc.cluster.local', 'other.demo.svc.cluster.local']);
});

test('readName follows a chain of pointers and reports the offset after the first pointer', () => {
  // offset 12: "local" root; 19: "cluster" -> ptr 12; 29: "svc" -> ptr 19; 35: ptr 29
  const body = [5, ...Buffer.from('local'), 0, 7, ...Buffer.from('cluster'), 0xc0, 12, 3, ...Buffer.from('svc'), 0xc0, 19, 0xc0, 29];
  const buf = raw([0, 0, 0, 0], body);
  assert.deepEqual(readName(buf, 35), { name: 'svc.cluster.local', next: 37 });
  assert.deepEqual(readName(buf, 19), { name: 'cluster.local', next: 29 });
});

test('messageId and withMessageId', () => {
  const q = serializeMessage(msg({ questions: [{ name: 'a', type: 1, class: 1 }] }));
  assert.equal(messageId(q), 0x1234);
  const other = withMessageId(q, 7);
  assert.equal(messageId(other), 7);
  assert.equal(messageId(q), 0x1234, 'the original is not modified');
  assert.equal(messageId(Buffer.from([1])), undefined);
  assert.throws(() => withMessageId(q, 65536), (e: unknown) => e instanceof DnsFormatError && e.code === 'BAD_VALUE');
});

test('canonicalName lower-cases ASCII and drops one unescaped trailing dot', () => {
  assert.equal(canonicalName('Echo.Demo.SVC.cluster.local.'), 'echo.demo.svc.cluster.local');
  assert.equal(canonicalName('echo.demo.svc.cluster.local'), 'echo.demo.svc.cluster.local');
  assert.equal(canonicalName('a\\.'), 'a\\.');
  assert.equal(canonicalName('a\\\\.'), 'a\\\\');
});

// ---------------------------------------------------------------- malformed input

const longLabels = (n: number) => Array.from({ length: n }, () => [63, ...Buffer.alloc(63, 0x61)]).flat();

const malformed: { name: string; input: Buffer; code: DnsErrorCode }[] = [
  { name: 'empty', input: Buffer.alloc(0), code: 'TRUNCATED' },
  { name: 'header of 11 octets', input: Buffer.alloc(11), code: 'TRUNCATED' },
  { name: 'QDCOUNT 1 and nothing after the header', input: raw([1, 0, 0, 0], []), code: 'TRUNCATED' },
  { name: 'QDCOUNT 65535 with one question (count lies)', input: raw([65535, 0, 0, 0], A_QUESTION), code: 'TRUNCATED' },
  { name: 'ARCOUNT 65535 with nothing (count lies)', input: raw([1, 0, 0, 65535], A_QUESTION), code: 'TRUNCATED' },
  { name: 'label runs past the end', input: raw([1, 0, 0, 0], [10, 0x61, 0x62]), code: 'TRUNCATED' },
  { name: 'name without its terminating zero', input: raw([1, 0, 0, 0], [1, 0x61]), code: 'TRUNCATED' },
  { name: 'question without type and class', input: raw([1, 0, 0, 0], wireName('a.b')), code: 'TRUNCATED' },
  { name: 'question with half a class', input: raw([1, 0, 0, 0], [...wireName('a.b'), 0, 1, 0]), code: 'TRUNCATED' },
  { name: 'compression pointer cut short', input: raw([1, 0, 0, 0], [0xc0]), code: 'TRUNCATED' },
  { name: 'pointer to itself', input: raw([1, 0, 0, 0], [0xc0, 12, 0, 1, 0, 1]), code: 'BAD_POINTER' },
  { name: 'pointer forwards', input: raw([1, 0, 0, 0], [0xc0, 14, 1, 0x61, 0, 0, 1, 0, 1]), code: 'BAD_POINTER' },
  { name: 'pointer past the end of the message', input: raw([1, 0, 0, 0], [0xff, 0xff, 0, 1, 0, 1]), code: 'BAD_POINTER' },
  { name: 'pointer into the header', input: raw([1, 0, 0, 0], [0xc0, 2, 0, 1, 0, 1]), code: 'BAD_POINTER' },
  {
    // question 2 at offset 19: label "b", then a pointer back to 19 — "b.b.b.…" if followed blindly
    name: 'pointer loop through a label',
    input: raw([2, 0, 0, 0], [1, 0x61, 0, 0, 1, 0, 1, 1, 0x62, 0xc0, 19, 0, 1, 0, 1]),
    code: 'BAD_POINTER',
  },
  {
    // question at 12: pointer to the answer's owner at 16, whose pointer leads back to 12
    name: 'two names pointing at each other',
    input: raw([1, 1, 0, 0], [1, 0x78, 0xc0, 16, 1, 0x79, 0xc0, 12]),
    code: 'BAD_POINTER',
  },
  { name: 'label length 64 (0x40 prefix)', input: raw([1, 0, 0, 0], [64, ...Buffer.alloc(64, 0x61), 0, 0, 1, 0, 1]), code: 'BAD_LABEL' },
  { name: 'label length byte 0x80 (reserved)', input: raw([1, 0, 0, 0], [0x80, 0, 0, 1, 0, 1]), code: 'BAD_LABEL' },
  { name: 'name of 256 octets', input: raw([1, 0, 0, 0], [...longLabels(4), 0, 0, 1, 0, 1]), code: 'NAME_TOO_LONG' },
  {
    // each name adds 63-octet labels in front of a pointer to the previous one: the fourth is 257 octets
    name: 'name over 255 octets built from pointers',
    input: raw([4, 0, 0, 0], [
      ...longLabels(1), 0, 0, 1, 0, 1, // 12: 65 octets
      ...longLabels(1), 0xc0, 12, 0, 1, 0, 1, // 81: 129
      ...longLabels(1), 0xc0, 81, 0, 1, 0, 1, // 151: 193
      ...longLabels(1), 0xc0, 151, 0, 1, 0, 1, // 221: 257
    ]),
    code: 'NAME_TOO_LONG',
  },
  { name: 'answer with its record header cut short', input: raw([1, 1, 0, 0], [...A_QUESTION, 0xc0, 12, 0, 1, 0, 1, 0]), code: 'TRUNCATED' },
  { name: 'RDLENGTH beyond the end', input: raw([1, 1, 0, 0], [...A_QUESTION, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 9, 1, 2, 3, 4]), code: 'TRUNCATED' },
  { name: 'trailing octets after the last section', input: raw([1, 0, 0, 0], [...A_QUESTION, 0xde, 0xad]), code: 'TRAILING_BYTES' },
  { name: 'header only, but with a trailing octet', input: raw([0, 0, 0, 0], [0]), code: 'TRAILING_BYTES' },
  { name: 'two OPT records', input: raw([1, 0, 0, 2], [...A_QUESTION, 0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0, 0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]), code: 'BAD_OPT' },
  { name: 'OPT owned by a non-root name', input: raw([1, 0, 0, 1], [...A_QUESTION, 0xc0, 12, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]), code: 'BAD_OPT' },
  { name: 'OPT option longer than its RDATA', input: raw([1, 0, 0, 1], [...A_QUESTION, 0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 6, 0, 10, 0, 8, 1, 2]), code: 'BAD_OPT' },
  { name: 'OPT option header cut short', input: raw([1, 0, 0, 1], [...A_QUESTION, 0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 2, 0, 10]), code: 'BAD_OPT' },
];

for (const { name, input, code } of malformed) {
  test(`malformed: ${name} → ${code}`, () => {
    assert.throws(
      () => parseMessage(input),
      (e: unknown) => {
        assert.ok(e instanceof DnsFormatError, `expected DnsFormatError, got ${String(e)}`);
        assert.equal(e.code, code, e.message);
        return true;
      },
    );
  });
}

test('fuzz: mutated and random messages parse or fail with DnsFormatError only, quickly', () => {
  // xorshift32: deterministic, so a failure reproduces
  let seed = 0x9e3779b9;
  const rand = (n: number) => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const seeds = roundTrips.map((r) => serializeMessage(r.message));
  const started = Date.now();
  let parsed = 0;
  for (let i = 0; i < 20000; i++) {
    let input: Buffer;
    if (i % 4 === 0) {
      input = Buffer.alloc(rand(80));
      for (let j = 0; j < input.length; j++) input[j] = rand(256);
    } else {
      input = Buffer.from(seeds[rand(seeds.length)]!);
      for (let k = 0, n = 1 + rand(4); k < n; k++) {
        const op = rand(3);
        if (op === 0 && input.length) input[rand(input.length)] = rand(256);
        else if (op === 1) input = input.subarray(0, rand(input.length + 1));
        else if (input.length) input[rand(input.length)] = 0xc0 | rand(64);
      }
    }
    try {
      parseMessage(input);
      parsed++;
    } catch (e) {
      if (!(e instanceof DnsFormatError)) throw new Error(`input ${input.toString('hex')} threw ${String(e)}`);
    }
  }
  assert.ok(parsed > 0, 'some mutations still parse');
  assert.ok(Date.now() - started < 10_000, 'bounded time');
});

// ---------------------------------------------------------------- encoding errors

const encodeErrors: { name: string; message: DnsMessage; code: DnsErrorCode }[] = [
  { name: 'label of 64 octets', message: msg({ questions: [{ name: `${'a'.repeat(64)}.com`, type: 1, class: 1 }] }), code: 'LABEL_TOO_LONG' },
  { name: 'name of 256 octets', message: msg({ questions: [{ name: Array(4).fill('a'.repeat(63)).join('.'), type: 1, class: 1 }] }), code: 'NAME_TOO_LONG' },
  { name: 'empty label', message: msg({ questions: [{ name: 'a..b', type: 1, class: 1 }] }), code: 'BAD_VALUE' },
  { name: 'bad \\DDD escape', message: msg({ questions: [{ name: 'a\\256', type: 1, class: 1 }] }), code: 'BAD_VALUE' },
  { name: 'character beyond one octet', message: msg({ questions: [{ name: 'ü€', type: 1, class: 1 }] }), code: 'BAD_VALUE' },
  { name: 'id beyond 16 bits', message: msg({ header: { ...QUERY_HEADER, id: 70000 } }), code: 'BAD_VALUE' },
  { name: 'negative TTL', message: msg({ answers: [{ name: 'a', type: 1, class: 1, ttl: -1, data: Buffer.alloc(4) }] }), code: 'BAD_VALUE' },
  {
    name: 'message over 65535 octets',
    message: msg({ answers: Array.from({ length: 3 }, () => ({ name: 'a', type: 16, class: 1, ttl: 1, data: Buffer.alloc(30000) })) }),
    code: 'MESSAGE_TOO_LARGE',
  },
];

for (const { name, message, code } of encodeErrors) {
  test(`serialise rejects: ${name} → ${code}`, () => {
    assert.throws(() => serializeMessage(message), (e: unknown) => e instanceof DnsFormatError && e.code === code);
  });
}

test('nameToLabels: trailing dot, root, escapes', () => {
  assert.deepEqual(nameToLabels('a.b.').map(String), ['a', 'b']);
  assert.deepEqual(nameToLabels(''), []);
  assert.deepEqual(nameToLabels('.'), []);
  assert.deepEqual(nameToLabels('a\\.b'), [Buffer.from('a.b')]);
  assert.deepEqual(nameToLabels('\\065\\\\'), [Buffer.from('A\\')]);
});

// ---------------------------------------------------------------- addresses

const v4Cases: [string, number[] | undefined][] = [
  ['10.96.0.1', [10, 96, 0, 1]],
  ['0.0.0.0', [0, 0, 0, 0]],
  ['255.255.255.255', [255, 255, 255, 255]],
  ['256.1.1.1', undefined],
  ['01.1.1.1', undefined],
  ['1.1.1', undefined],
  ['1.1.1.1.1', undefined],
  ['a.b.c.d', undefined],
  ['', undefined],
  ['fd00::1', undefined],
];
for (const [ip, bytes] of v4Cases) {
  test(`ipv4Bytes(${JSON.stringify(ip)})`, () => assert.deepEqual(ipv4Bytes(ip) && [...ipv4Bytes(ip)!], bytes));
}

const v6Cases: [string, string | undefined][] = [
  ['::', '00000000000000000000000000000000'],
  ['::1', '00000000000000000000000000000001'],
  ['fd00:10:96::a', 'fd000010009600000000000000000000'.slice(0, 28) + '000a'],
  ['2001:db8:0:0:0:0:0:1', '20010db8000000000000000000000001'],
  ['2001:DB8::', '20010db8000000000000000000000000'],
  ['::ffff:10.0.0.1', '00000000000000000000ffff0a000001'],
  ['1:2:3:4:5:6:7:8', '00010002000300040005000600070008'],
  ['1:2:3:4:5:6:7::', '00010002000300040005000600070000'],
  ['1:2:3:4:5:6:7:8:9', undefined],
  ['1::2::3', undefined],
  ['12345::', undefined],
  ['fe80::1%eth0', undefined],
  ['1:2:3:4:5:6:7', undefined],
  ['10.0.0.1', undefined],
  ['::ffff:999.0.0.1', undefined],
];
for (const [ip, hex] of v6Cases) {
  test(`ipv6Bytes(${JSON.stringify(ip)})`, () => assert.equal(ipv6Bytes(ip)?.toString('hex'), hex));
}

// ---------------------------------------------------------------- TCP framing

const frame = (n: number, fill: number) => Buffer.alloc(n, fill);

test('TCP: frames split at every possible boundary reassemble in order', () => {
  const messages = [frame(12, 1), frame(300, 2), frame(0, 0), frame(40, 3)];
  const stream = Buffer.concat(messages.map(encodeTcpFrame));
  for (let cut = 0; cut <= stream.length; cut++) {
    const r = new TcpFrameReader();
    const out = [...r.push(stream.subarray(0, cut)), ...r.push(stream.subarray(cut))];
    assert.deepEqual(out, messages, `cut at ${cut}`);
    assert.equal(r.buffered, 0);
  }
});

test('TCP: byte by byte', () => {
  const messages = [frame(33, 7), frame(1, 8)];
  const stream = Buffer.concat(messages.map(encodeTcpFrame));
  const r = new TcpFrameReader();
  const out: Buffer[] = [];
  for (const b of stream) out.push(...r.push(Buffer.from([b])));
  assert.deepEqual(out, messages);
});

test('TCP: a partial frame is all that is held between pushes', () => {
  const r = new TcpFrameReader();
  const big = encodeTcpFrame(frame(65535, 9));
  assert.deepEqual(r.push(Buffer.concat([encodeTcpFrame(frame(20, 1)), big.subarray(0, 1000)])), [frame(20, 1)]);
  assert.equal(r.buffered, 1000);
  const [done] = r.push(big.subarray(1000));
  assert.equal(done!.length, 65535);
  assert.equal(r.buffered, 0);
});

test('TCP: a frame over the limit is refused as soon as its prefix arrives', () => {
  const r = new TcpFrameReader(512);
  assert.deepEqual(r.push(encodeTcpFrame(frame(512, 1))), [frame(512, 1)]);
  assert.throws(() => r.push(Buffer.from([0x02, 0x01])), (e: unknown) => e instanceof DnsFormatError && e.code === 'FRAME_TOO_LARGE');
  assert.equal(r.buffered, 0);
});

test('TCP: encodeTcpFrame refuses messages a prefix cannot describe', () => {
  assert.deepEqual([...encodeTcpFrame(Buffer.from([0xaa, 0xbb]))], [0, 2, 0xaa, 0xbb]);
  assert.throws(() => encodeTcpFrame(Buffer.alloc(65536)), (e: unknown) => e instanceof DnsFormatError && e.code === 'MESSAGE_TOO_LARGE');
});
