// Table tests of the cni → agent wire helpers: header value encoding (both directions, also for
// bytes HTTP cannot carry) and socket names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeHeaderValue, encodeHeaderValue, socketAddress } from './cni.js';

test('header values: visible ASCII stays readable; everything else round-trips through %XX', () => {
  const cases: Array<[string, string]> = [
    ['', ''],
    ['ADD', 'ADD'],
    ['IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0', 'IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0'],
    ['/var/run/netns/cni-1234', '/var/run/netns/cni-1234'],
    [' eth0 ', '%20eth0%20'],
    ['a\r\nb', 'a%0D%0Ab'],
    ['100%', '100%25'],
    ['tab\there', 'tab%09here'],
    ['ü', '%C3%BC'],
    ['\u007f', '%7F'],
  ];
  for (const [raw, wire] of cases) {
    assert.equal(encodeHeaderValue(raw), wire, JSON.stringify(raw));
    assert.equal(decodeHeaderValue(wire), raw, wire);
  }
  // lower-case hex (a hand-written curl header) and a stray "%" decode leniently
  assert.equal(decodeHeaderValue('%c3%bc'), 'ü');
  assert.equal(decodeHeaderValue('50%'), '50%');
  assert.equal(decodeHeaderValue('%zz'), '%zz');
});

test('socketAddress: "@name" is abstract (leading NUL), anything else a path', () => {
  assert.equal(socketAddress('@ambit/cni'), '\0ambit/cni');
  assert.equal(socketAddress('/var/run/ambit/cni.sock'), '/var/run/ambit/cni.sock');
});
