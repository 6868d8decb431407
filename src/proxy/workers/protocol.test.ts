import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { Sensitive } from '../../identity/sensitive.js';
import { emptyStats } from '../inpod.js';
import { cumulativeOnly, fromWire, podKey, retireStats, toWire } from './protocol.js';

test('credentials cross as plain data and are Sensitive again on the other side', () => {
  const wire = toWire({ identity: 'spiffe://td/ns/a/sa/b', certChainPem: ['LEAF', 'INT'], keyPem: new Sensitive('-----BEGIN PRIVATE KEY-----'), notAfterMs: 5 });
  assert.deepEqual(structuredClone(wire), wire); // survives postMessage
  assert.equal(wire.keyPem, '-----BEGIN PRIVATE KEY-----');
  const back = fromWire(structuredClone(wire));
  assert.ok(back.keyPem instanceof Sensitive);
  assert.equal(back.keyPem.reveal(), '-----BEGIN PRIVATE KEY-----');
  assert.equal(JSON.stringify(back).includes('PRIVATE'), false);
  assert.equal(inspect(back).includes('PRIVATE'), false);
  assert.deepEqual(back.certChainPem, ['LEAF', 'INT']);
  assert.equal(back.notAfterMs, 5);
});

test('a pod is known by its uid, else namespace/name', () => {
  assert.equal(podKey({ uid: 'u1', namespace: 'a', name: 'b' }), 'u1');
  assert.equal(podKey({ uid: '', namespace: 'a', name: 'b' }), 'a/b');
});

test('retired stats: nothing open, every opened connection closed, counters kept', () => {
  const s = emptyStats();
  s.outbound = { opened: 10, closed: 7, active: 3, failed: 1, bytesFromDownstream: 100, bytesToDownstream: 200 };
  s.dnsUdp = { ...s.dnsUdp, queries: 4, inflight: 2 };
  const r = retireStats(s);
  assert.deepEqual(r.outbound, { opened: 10, closed: 10, active: 0, failed: 1, bytesFromDownstream: 100, bytesToDownstream: 200 });
  assert.equal(r.dnsUdp.inflight, 0);
  assert.equal(r.dnsUdp.queries, 4);
});

test('only counters and histograms outlive a worker', () => {
  const m = (name: string, type: string) => ({ name, help: '', type, values: [], aggregator: 'sum' }) as never;
  const kept = cumulativeOnly([m('a_total', 'counter'), m('b', 'gauge'), m('c_seconds', 'histogram'), m('d', 'summary')]);
  assert.deepEqual(kept.map((x: { name: string }) => x.name), ['a_total', 'c_seconds']);
});
