/** The pure parts of the in-pod proxy: which sockets a pod gets, and how per-pod stats add up. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addStats, emptyStats, listenerPlan, type InPodNetConfig } from './inpod.js';

const PORTS = { outbound: 15001, inboundPlaintext: 15006, inboundTunnel: 15008, dns: 15053 };
const config = (families: InPodNetConfig['families'], dnsCapture?: boolean): InPodNetConfig => ({
  ports: PORTS,
  proxyMark: 0x539,
  families,
  ...(dnsCapture === undefined ? {} : { dnsCapture }),
});
const show = (c: InPodNetConfig) =>
  listenerPlan(c).map((s) => `${s.kind} ${s.protocol} ${s.family === 6 ? `[${s.host}]` : s.host}:${s.port}${s.v6Only === undefined ? '' : s.v6Only ? ' v6only' : ' dual'}`);

test('listenerPlan: TCP on any address (one dual-stack socket when IPv6), DNS on loopback per family', () => {
  assert.deepEqual(show(config([4])), [
    'outbound tcp 0.0.0.0:15001',
    'inbound tcp 0.0.0.0:15006',
    'tunnel tcp 0.0.0.0:15008',
    'dns udp 127.0.0.1:15053',
    'dns tcp 127.0.0.1:15053',
  ]);
  assert.deepEqual(show(config([4, 6])), [
    'outbound tcp [::]:15001 dual',
    'inbound tcp [::]:15006 dual',
    'tunnel tcp [::]:15008 dual',
    'dns udp 127.0.0.1:15053',
    'dns tcp 127.0.0.1:15053',
    'dns udp [::1]:15053 v6only',
    'dns tcp [::1]:15053 v6only',
  ]);
  assert.deepEqual(show(config([6])), [
    'outbound tcp [::]:15001 v6only',
    'inbound tcp [::]:15006 v6only',
    'tunnel tcp [::]:15008 v6only',
    'dns udp [::1]:15053 v6only',
    'dns tcp [::1]:15053 v6only',
  ]);
  assert.equal(listenerPlan(config([4], false)).length, 3, 'no DNS listeners without DNS capture');
});

test('addStats sums every counter; emptyStats is its identity', () => {
  const a = emptyStats();
  a.outbound.opened = 2;
  a.outbound.bytesFromDownstream = 10;
  a.dnsUdp.queries = 3;
  const b = emptyStats();
  b.outbound.opened = 1;
  b.inbound.failed = 4;
  b.dnsUdp.queries = 1;
  const sum = addStats(a, b);
  assert.equal(sum.outbound.opened, 3);
  assert.equal(sum.outbound.bytesFromDownstream, 10);
  assert.equal(sum.inbound.failed, 4);
  assert.equal(sum.dnsUdp.queries, 4);
  assert.deepEqual(addStats(a, emptyStats()), a);
});
