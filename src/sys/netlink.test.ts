/**
 * Table tests of the pure rtnetlink encoders and decoders: byte layouts written out from the uapi
 * structs (nlmsghdr, fib_rule_hdr, rtmsg, rtattr), acks with and without extended-ack text,
 * multipart datagrams, and the `ip -j` formatting of dumped rules and routes. The real kernel's view
 * is in netlink.netns.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { endianness } from 'node:os';
import {
  cHex,
  decodeAck,
  decodeLink,
  decodeRoute,
  decodeRule,
  describeRoute,
  describeRule,
  encodeDumpRequest,
  encodeMessage,
  encodeRouteRequest,
  encodeRuleRequest,
  formatIPv6,
  NetlinkError,
  parseAttrs,
  parseMessages,
  tableName,
  type FwmarkRule,
  type NlAttr,
  type NlMessage,
} from './netlink.js';

// The expected bytes below are little-endian: the encoders write host order, and Ambit ships for
// x86_64 and arm64, both little-endian.
const LE = endianness() === 'LE';

const RULE: FwmarkRule = { family: 4, priority: 32764, fwmark: 0x111, fwmask: 0xfff, table: 100 };

/** Hex of a buffer in groups, to read failures against the struct layouts. */
const hex = (b: Buffer) => b.toString('hex');

/** u32 little-endian as hex. */
const le32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return hex(b);
};
const le16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return hex(b);
};
/** One u32 attribute: rta_len 8, rta_type, value. */
const attr32 = (type: number, value: number) => le16(8) + le16(type) + le32(value);

/** A message as the kernel would send it in a dump: header + payload. */
function dumpMessage(type: number, fixed: Buffer, attrs: NlAttr[], flags = 0x2): NlMessage {
  const [msg] = parseMessages(encodeMessage({ type, flags, seq: 7 }, fixed, attrs));
  return msg!;
}

test('rule add: RTM_NEWRULE, CREATE|EXCL|ACK|REQUEST, fib_rule_hdr, FRA_PRIORITY/FWMARK/FWMASK/TABLE', { skip: !LE }, () => {
  const msg = encodeRuleRequest('add', RULE, 0x01020304);
  const expected =
    le32(16 + 12 + 4 * 8) + // nlmsg_len
    le16(32) + // RTM_NEWRULE
    le16(0x001 | 0x004 | 0x400 | 0x200) + // REQUEST|ACK|CREATE|EXCL
    le32(0x01020304) + // seq
    le32(0) + // pid: the kernel
    '02' + '00' + '00' + '00' + // family AF_INET, dst_len, src_len, tos
    '64' + '00' + '00' + '01' + // table 100, res1, res2, action FR_ACT_TO_TBL
    le32(0) + // flags
    attr32(6, 32764) + // FRA_PRIORITY
    attr32(10, 0x111) + // FRA_FWMARK
    attr32(16, 0xfff) + // FRA_FWMASK
    attr32(15, 100); // FRA_TABLE
  assert.equal(hex(msg), expected);
});

test('rule delete: RTM_DELRULE, ACK|REQUEST only; IPv6 family; a table above 255 only in FRA_TABLE', { skip: !LE }, () => {
  const msg = encodeRuleRequest('delete', { ...RULE, family: 6, table: 1000 }, 1);
  assert.equal(hex(msg.subarray(4, 8)), le16(33) + le16(0x005));
  assert.equal(msg[16], 10, 'AF_INET6');
  assert.equal(msg[16 + 4], 0, 'fib_rule_hdr.table: RT_TABLE_UNSPEC');
  assert.equal(hex(msg.subarray(msg.length - 8)), attr32(15, 1000));
});

test('route replace: RTM_NEWROUTE, CREATE|REPLACE, rtmsg like `ip route replace local default dev lo table T`', { skip: !LE }, () => {
  const v4 = encodeRouteRequest('replace', { family: 4, table: 100 }, 9);
  const expected =
    le32(16 + 12 + 2 * 8) +
    le16(24) + // RTM_NEWROUTE
    le16(0x001 | 0x004 | 0x400 | 0x100) + // REQUEST|ACK|CREATE|REPLACE
    le32(9) +
    le32(0) +
    '02' + '00' + '00' + '00' + // AF_INET, dst_len 0 (default), src_len, tos
    '64' + '03' + 'fe' + '02' + // table 100, RTPROT_BOOT, RT_SCOPE_HOST, RTN_LOCAL
    le32(0) +
    attr32(15, 100) + // RTA_TABLE
    attr32(4, 1); // RTA_OIF: lo
  assert.equal(hex(v4), expected);
  const v6 = encodeRouteRequest('replace', { family: 6, table: 100 }, 9);
  assert.deepEqual([...v6.subarray(16, 24)], [10, 0, 0, 0, 100, 3, 0, 2], 'IPv6: scope universe, as ip sends it');
});

test('route delete: RTM_DELROUTE, any protocol', { skip: !LE }, () => {
  const msg = encodeRouteRequest('delete', { family: 4, table: 100 }, 9);
  assert.equal(hex(msg.subarray(4, 8)), le16(25) + le16(0x005));
  assert.deepEqual([...msg.subarray(16, 24)], [2, 0, 0, 0, 100, 0, 254, 2]);
});

test('dump requests: GETRULE/GETROUTE/GETLINK with NLM_F_DUMP and an empty fixed header of the right size', { skip: !LE }, () => {
  const cases = [
    { what: 'rules', family: 4, type: 34, length: 16 + 12, fam: 2 },
    { what: 'routes', family: 6, type: 26, length: 16 + 12, fam: 10 },
    { what: 'links', family: undefined, type: 18, length: 16 + 16, fam: 0 },
  ] as const;
  for (const c of cases) {
    const msg = encodeDumpRequest(c.what, c.family, 5);
    assert.equal(msg.length, c.length, c.what);
    assert.equal(hex(msg.subarray(0, 8)), le32(c.length) + le16(c.type) + le16(0x301), c.what);
    assert.equal(msg[16], c.fam, c.what);
  }
});

test('invalid requests are refused before they reach the kernel', () => {
  assert.throws(() => encodeRuleRequest('add', { ...RULE, family: 5 as 4 }, 1), /invalid address family 5/);
  assert.throws(() => encodeRouteRequest('replace', { family: 4, table: 0 }, 1), /invalid routing table 0/);
});

test('attributes are padded to 4 bytes and their length excludes the padding', () => {
  const msg = encodeMessage({ type: 99, flags: 1, seq: 1 }, Buffer.alloc(12), [{ type: 3, string: 'lo' }, { type: 1, bytes: Buffer.from([1, 2, 3, 4, 5]) }]);
  const attrs = parseAttrs(msg, 16 + 12);
  assert.deepEqual(attrs.get(3), Buffer.from('lo\0'));
  assert.deepEqual(attrs.get(1), Buffer.from([1, 2, 3, 4, 5]));
  assert.equal(msg.length, 16 + 12 + 8 + 12);
  assert.equal(msg.readUInt32LE(0), msg.length);
});

test('parseAttrs stops at a truncated tail and keeps the last of repeated types', () => {
  const two = Buffer.concat([Buffer.from(attr32(6, 1), 'hex'), Buffer.from(attr32(6, 2), 'hex'), Buffer.from('0c000a00', 'hex')]);
  const attrs = parseAttrs(two, 0);
  assert.equal(attrs.get(6)!.readUInt32LE(0), 2);
  assert.equal(attrs.has(10), false, 'the attribute claims 12 bytes but 4 are there');
});

test('parseMessages splits a multipart datagram and rejects a bad length', () => {
  const a = encodeMessage({ type: 32, flags: 2, seq: 3 }, Buffer.alloc(12), [{ type: 6, u32: 5 }]);
  const b = encodeMessage({ type: 3, flags: 2, seq: 3 }, Buffer.alloc(4), []);
  const msgs = parseMessages(Buffer.concat([a, b]));
  assert.deepEqual(
    msgs.map((m) => [m.type, m.flags, m.seq, m.payload.length]),
    [
      [32, 2, 3, 20],
      [3, 2, 3, 4],
    ],
  );
  const bad = Buffer.from(a);
  bad.writeUInt32LE(1000, 0);
  assert.throws(() => parseMessages(bad), /malformed netlink message: length 1000/);
  bad.writeUInt32LE(8, 0);
  assert.throws(() => parseMessages(bad), /length 8/);
  assert.deepEqual(parseMessages(Buffer.alloc(0)), []);
});

/** An NLMSG_ERROR payload: errno, the echoed request (header only when capped), TLVs. */
function errorMessage(errno: number, opts: { capped?: boolean; text?: string; request?: Buffer } = {}): NlMessage {
  const request = opts.request ?? encodeRuleRequest('add', RULE, 42);
  const echoed = opts.capped ? request.subarray(0, 16) : request;
  const head = Buffer.alloc(4);
  head.writeInt32LE(-errno);
  const tlv = opts.text === undefined ? Buffer.alloc(0) : encodeMessage({ type: 0, flags: 0, seq: 0 }, Buffer.alloc(0), [{ type: 1, string: opts.text }]).subarray(16);
  const flags = (opts.capped ? 0x100 : 0) | (opts.text !== undefined ? 0x200 : 0);
  return dumpMessage(2, Buffer.concat([head, echoed, tlv]), [], flags);
}

test('acks: success, an errno alone, with the kernel text after a capped or a full echo', { skip: !LE }, () => {
  assert.deepEqual(decodeAck(errorMessage(0, { capped: true })), { errno: 0 });
  assert.deepEqual(decodeAck(errorMessage(17)), { errno: 17 });
  assert.deepEqual(decodeAck(errorMessage(100, { capped: true, text: 'Nexthop device is not up' })), { errno: 100, message: 'Nexthop device is not up' });
  assert.deepEqual(decodeAck(errorMessage(22, { text: 'Invalid table' })), { errno: 22, message: 'Invalid table' });
  assert.throws(() => decodeAck({ type: 2, flags: 0, seq: 1, pid: 0, payload: Buffer.alloc(2) }), /malformed netlink error/);
});

function ruleMessage(hdrTable: number, attrs: NlAttr[]): NlMessage {
  const hdr = Buffer.alloc(12);
  hdr[0] = 2;
  hdr[4] = hdrTable;
  hdr[7] = 1;
  return dumpMessage(32, hdr, attrs);
}

test('dumped rules read as `ip -j rule show` prints them', () => {
  const cases: { name: string; msg: NlMessage; want: ReturnType<typeof decodeRule> }[] = [
    { name: 'the local rule: no priority attribute', msg: ruleMessage(255, [{ type: 15, u32: 255 }]), want: { priority: 0, table: 'local' } },
    {
      name: 'ours: mark and mask',
      msg: ruleMessage(100, [{ type: 6, u32: 32764 }, { type: 10, u32: 0x111 }, { type: 16, u32: 0xfff }, { type: 15, u32: 100 }]),
      want: { priority: 32764, fwmark: '0x111', fwmask: '0xfff', table: '100' },
    },
    {
      name: 'a full mask is not printed',
      msg: ruleMessage(101, [{ type: 6, u32: 100 }, { type: 10, u32: 5 }, { type: 16, u32: 0xffffffff }, { type: 15, u32: 101 }]),
      want: { priority: 100, fwmark: '0x5', table: '101' },
    },
    { name: 'mark 0 with a mask', msg: ruleMessage(9, [{ type: 6, u32: 300 }, { type: 10, u32: 0 }, { type: 16, u32: 1 }]), want: { priority: 300, fwmark: '0', fwmask: '0x1', table: '9' } },
    { name: 'FRA_TABLE wins over the 8-bit field', msg: ruleMessage(0, [{ type: 6, u32: 10 }, { type: 15, u32: 1000 }]), want: { priority: 10, table: '1000' } },
    { name: 'no table (e.g. a blackhole rule)', msg: ruleMessage(0, [{ type: 6, u32: 11 }]), want: { priority: 11 } },
    { name: 'main and default by name', msg: ruleMessage(254, [{ type: 6, u32: 32766 }]), want: { priority: 32766, table: 'main' } },
  ];
  for (const c of cases) assert.deepEqual(decodeRule(c.msg), c.want, c.name);
});

test('an encoded rule request, read back as a dump entry, is the rule ip shows', () => {
  const request = parseMessages(encodeRuleRequest('add', RULE, 1))[0]!;
  assert.deepEqual(decodeRule(request), { priority: 32764, fwmark: '0x111', fwmask: '0xfff', table: '100' });
});

function routeMessage(r: { family?: number; dstLen?: number; table?: number; type?: number; flags?: number }, attrs: NlAttr[]): NlMessage {
  const rtm = Buffer.alloc(12);
  rtm[0] = r.family ?? 2;
  rtm[1] = r.dstLen ?? 0;
  rtm[4] = r.table ?? 254;
  rtm[7] = r.type ?? 1;
  rtm.writeUInt32LE(r.flags ?? 0, 8);
  return dumpMessage(24, rtm, attrs);
}

test('dumped routes read as `ip -j route show table all` prints them', () => {
  const links = new Map([
    [1, 'lo'],
    [2, 'eth0'],
  ]);
  const v6 = (s: string) => Buffer.from(s.replace(/:/g, ''), 'hex');
  const cases: { name: string; msg: NlMessage; want: ReturnType<typeof decodeRoute> }[] = [
    {
      name: 'ours',
      msg: routeMessage({ table: 100, type: 2 }, [{ type: 15, u32: 100 }, { type: 4, u32: 1 }]),
      want: { type: 'local', dst: 'default', dev: 'lo', table: '100' },
    },
    {
      name: 'unicast in main: no type, no table',
      msg: routeMessage({ dstLen: 24 }, [{ type: 15, u32: 254 }, { type: 1, bytes: Buffer.from([10, 0, 0, 0]) }, { type: 4, u32: 2 }]),
      want: { dst: '10.0.0.0/24', dev: 'eth0' },
    },
    {
      name: 'a host route has no /32',
      msg: routeMessage({ dstLen: 32, table: 255, type: 2 }, [{ type: 15, u32: 255 }, { type: 1, bytes: Buffer.from([127, 0, 0, 1]) }, { type: 4, u32: 1 }]),
      want: { type: 'local', dst: '127.0.0.1', dev: 'lo', table: 'local' },
    },
    {
      name: 'blackhole without a device, table above 255',
      msg: routeMessage({ dstLen: 16, table: 0, type: 6 }, [{ type: 15, u32: 5000 }, { type: 1, bytes: Buffer.from([10, 8, 0, 0]) }]),
      want: { type: 'blackhole', dst: '10.8.0.0/16', table: '5000' },
    },
    {
      name: 'IPv6 prefix, an unknown ifindex',
      msg: routeMessage({ family: 10, dstLen: 64 }, [{ type: 1, bytes: v6('fd00:0001:0000:0000:0000:0000:0000:0000') }, { type: 4, u32: 7 }]),
      want: { dst: 'fd00:1::/64', dev: 'if7' },
    },
  ];
  for (const c of cases) assert.deepEqual(decodeRoute(c.msg, links), c.want, c.name);
  assert.equal(decodeRoute(routeMessage({ family: 10, dstLen: 128, flags: 0x200 }, []), links), undefined, 'cloned routes are left out, as ip does');
});

test('links: ifindex and name', () => {
  const ifi = Buffer.alloc(16);
  ifi.writeInt32LE(1, 4);
  assert.deepEqual(decodeLink(dumpMessage(16, ifi, [{ type: 3, string: 'lo' }])), { index: 1, name: 'lo' });
});

test('IPv6 text as inet_ntop writes it', () => {
  const cases: [string, string][] = [
    ['00000000000000000000000000000000', '::'],
    ['00000000000000000000000000000001', '::1'],
    ['fe800000000000000000000000000000', 'fe80::'],
    ['fd000001000000000000000000000003', 'fd00:1::3'],
    ['20010db8000000010000000000000001', '2001:db8:0:1::1'], // the longer run wins
    ['20010db8000000000001000000000001', '2001:db8::1:0:0:1'], // equal runs: the first
    ['20010db8000100010001000100010001', '2001:db8:1:1:1:1:1:1'], // one zero group is not compressed
    ['00000000000000000000ffff0a000001', '::ffff:10.0.0.1'],
    ['000000000000000000000000c0a80101', '::192.168.1.1'],
    ['fd169254712713370000ffffffffffff', 'fd16:9254:7127:1337:0:ffff:ffff:ffff'],
  ];
  for (const [bytes, text] of cases) assert.equal(formatIPv6(Buffer.from(bytes, 'hex')), text, bytes);
  assert.throws(() => formatIPv6(Buffer.alloc(4)), /16 bytes/);
});

test('marks and tables as ip prints them', () => {
  assert.deepEqual([cHex(0), cHex(0x111), cHex(0xffffffff)], ['0', '0x111', '0xffffffff']);
  assert.deepEqual([tableName(255), tableName(254), tableName(253), tableName(100)], ['local', 'main', 'default', '100']);
  assert.equal(describeRule('add', RULE), 'ip -4 rule add fwmark 0x111/0xfff lookup 100 pref 32764');
  assert.equal(describeRoute('del', { family: 6, table: 100 }), 'ip -6 route del local ::/0 dev lo table 100');
});

test('NetlinkError: errno code, the request, the kernel text and a hint; `exists` for EEXIST', () => {
  const exists = new NetlinkError(17, describeRule('add', RULE), undefined);
  assert.equal(exists.code, 'EEXIST');
  assert.equal(exists.exists, true);
  assert.match(exists.message, /^netlink ip -4 rule add fwmark 0x111\/0xfff lookup 100 pref 32764 failed: EEXIST/);
  const down = new NetlinkError(100, describeRoute('replace', { family: 4, table: 100 }), 'Nexthop device is not up');
  assert.equal(down.exists, false);
  assert.match(down.message, /ENETDOWN .*: Nexthop device is not up; the netns's lo is down/);
  assert.match(new NetlinkError(1, 'x', undefined).message, /CAP_NET_ADMIN/);
});
