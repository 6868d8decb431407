/** Table tests for sockaddr encoding and IP text parsing/formatting (pure, no sockets). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { decodeSockaddr, encodeSockaddr, formatIPv6, parseIPv4, parseIPv6 } from './sockaddr.js';

test('parseIPv6 expands compression and dotted tails', () => {
  const cases: [string, string][] = [
    ['::', '00000000000000000000000000000000'],
    ['::1', '00000000000000000000000000000001'],
    ['fd00:200::1', 'fd000200000000000000000000000001'],
    ['2001:db8:0:0:1:0:0:1', '20010db8000000000001000000000001'],
    ['::ffff:10.0.0.1', '00000000000000000000ffff0a000001'],
    ['1::', '00010000000000000000000000000000'],
    ['FE80::ABCD', 'fe80000000000000000000000000abcd'],
  ];
  for (const [text, hex] of cases) {
    assert.equal(Buffer.from(parseIPv6(text)).toString('hex'), hex, text);
  }
});

test('parseIPv6/parseIPv4 reject malformed text and zone ids', () => {
  for (const bad of ['', '1:2:3', 'fe80::1%eth0', '10.0.0.1', '::g']) {
    assert.throws(() => parseIPv6(bad), TypeError, bad);
  }
  for (const bad of ['', '10.0.0', '256.0.0.1', '::1']) {
    assert.throws(() => parseIPv4(bad), TypeError, bad);
  }
});

test('formatIPv6 prints addresses exactly as Node does', () => {
  const cases = [
    '::',
    '::1',
    '::2:0',
    'fd00:200::1',
    '2001:db8::1:0:0:1', // tie between two runs of two: the first wins
    '2001:db8:0:1:1:1:1:1', // a single zero group is not compressed
    '1::',
    '1:0:0:2:0:0:0:3', // the longest run wins
    '::ffff:10.0.0.1',
    '::10.0.0.1',
    '::ffff:0:10.0.0.1',
    'fe80::abcd:ef01',
  ];
  for (const text of cases) {
    const expected = new net.SocketAddress({ address: text, family: 'ipv6' }).address;
    assert.equal(formatIPv6(parseIPv6(text)), expected, text);
  }
});

test('encodeSockaddr / decodeSockaddr round-trip with the kernel layout', () => {
  const v4 = encodeSockaddr({ family: 4, address: '10.96.0.20', port: 8080 });
  assert.equal(v4.length, 16);
  assert.equal(v4.toString('hex'), '02001f900a60001400000000' + '00000000');
  assert.deepEqual(decodeSockaddr(v4), { family: 4, address: '10.96.0.20', port: 8080 });

  const v6 = encodeSockaddr({ family: 6, address: 'fd00::14', port: 15001 });
  assert.equal(v6.length, 28);
  assert.equal(v6.subarray(0, 4).toString('hex'), '0a003a99');
  assert.deepEqual(decodeSockaddr(v6), { family: 6, address: 'fd00::14', port: 15001 });
});

test('encodeSockaddr rejects bad ports and decodeSockaddr unknown families', () => {
  assert.throws(() => encodeSockaddr({ family: 4, address: '10.0.0.1', port: 65536 }), /invalid port/);
  assert.throws(() => encodeSockaddr({ family: 4, address: '10.0.0.1', port: 1.5 }), /invalid port/);
  assert.throws(() => encodeSockaddr({ family: 4, address: '::1', port: 1 }), /invalid IPv4/);
  assert.throws(() => decodeSockaddr(Buffer.alloc(16)), /unsupported sockaddr: family 0/);
});
