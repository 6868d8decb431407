import { test } from 'node:test';
import assert from 'node:assert/strict';
import { blockContains, displayIp, parseIp, parseIpBlock } from './ip.js';

test('parseIp: spellings of one address agree; mapped IPv4 folds to IPv4', () => {
  const same: [string, string][] = [
    ['10.1.2.3', '::ffff:10.1.2.3'],
    ['10.1.2.3', '::FFFF:10.1.2.3'],
    ['fd00::1', 'fd00:0:0:0:0:0:0:1'],
    ['fd00::1', 'FD00:0000::0001'],
    ['::1', '0:0:0:0:0:0:0:1'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:0.7.0.8'],
    ['fe80::1', 'fe80::1%eth0'],
    ['::', '0:0:0:0:0:0:0:0'],
    ['::102:304', '::1.2.3.4'],
  ];
  for (const [a, b] of same) assert.deepEqual(parseIp(a), parseIp(b), `${a} = ${b}`);
  assert.deepEqual(parseIp('::ffff:10.1.2.3'), { v6: false, value: 0x0a010203n });
  assert.deepEqual(parseIp('fd00::1:2'), { v6: true, value: (0xfd00n << 112n) | (1n << 16n) | 2n });
  for (const bad of ['', '10.1.2', '10.1.2.256', 'fd00:::1', 'example.com', '10.0.0.0/8']) assert.equal(parseIp(bad), undefined, bad);
});

test('blockContains: v4, v6, host bits, /0, family mismatch, mapped forms', () => {
  const cases: [string, string, boolean][] = [
    ['10.244.1.0/24', '10.244.1.5', true],
    ['10.244.1.0/24', '10.244.2.5', false],
    ['10.244.1.7/24', '10.244.1.200', true], // host bits in the block are ignored
    ['10.244.1.5', '10.244.1.5', true],
    ['10.244.1.5', '10.244.1.6', false],
    ['0.0.0.0/0', '192.168.7.7', true],
    ['0.0.0.0/0', 'fd00::1', false],
    ['::/0', 'fd00::1', true],
    ['::/0', '10.0.0.1', false], // an IPv4 peer is not in an IPv6 block
    ['10.0.0.0/8', '::ffff:10.9.9.9', true],
    ['::ffff:10.0.0.0/104', '10.9.9.9', true],
    ['::ffff:10.0.0.0/104', '11.0.0.1', false],
    ['fd00:10:244::/48', 'fd00:10:244:1::5', true],
    ['fd00:10:244::/48', 'fd00:10:245::5', false],
    ['fd00:10:244:1::5/128', 'fd00:10:244:1::5', true],
    ['fd00::/8', 'fc00::1', false],
    ['fc00::/7', 'fd12::1', true],
    ['10.0.0.0/31', '10.0.0.1', true],
    ['10.0.0.0/32', '10.0.0.1', false],
  ];
  for (const [block, addr, want] of cases) {
    const b = parseIpBlock(block);
    const a = parseIp(addr);
    assert.ok(b && a, `${block} ${addr} parse`);
    assert.equal(blockContains(b, a), want, `${block} ∋ ${addr}`);
  }
  for (const bad of ['10.0.0.0/33', 'fd00::/129', '10.0.0.0/8/1', '10.0.0.0/x', 'nope/8', '10.0.0.0/']) assert.equal(parseIpBlock(bad), undefined, bad);
});

test('displayIp drops the ::ffff: of a mapped IPv4 peer only', () => {
  assert.equal(displayIp('::ffff:10.1.2.3'), '10.1.2.3');
  assert.equal(displayIp('10.1.2.3'), '10.1.2.3');
  assert.equal(displayIp('fd00::1'), 'fd00::1');
});
