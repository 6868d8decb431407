// Table tests of the cni → agent wire validators (both sides rely on them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCniErrorReply, parseCniPodRequest, parseCniReply } from './cni.js';

const REQ = { pod: { namespace: 'shop', name: 'web-0', uid: 'u1' }, containerId: 'abc', netns: '/run/netns/x', ifname: 'eth0', ips: ['10.0.0.2'], network: 'pods' };

test('parseCniPodRequest accepts a full request and names the first bad field', () => {
  assert.deepEqual(parseCniPodRequest(REQ), { ok: true, value: REQ });
  // extra fields are dropped, not trusted
  assert.deepEqual(parseCniPodRequest({ ...REQ, extra: 1 }), { ok: true, value: REQ });
  const bad: Array<[unknown, RegExp]> = [
    [null, /not a JSON object/],
    [[], /not a JSON object/],
    [{ ...REQ, pod: 'x' }, /^pod: must be an object/],
    [{ ...REQ, pod: { ...REQ.pod, uid: 1 } }, /^pod\.uid/],
    [{ ...REQ, pod: { ...REQ.pod, name: '' } }, /must not be empty/],
    [{ ...REQ, containerId: '' }, /^containerId/],
    [{ ...REQ, netns: undefined }, /^netns/],
    [{ ...REQ, ips: ['a', 1] }, /^ips/],
    [{ ...REQ, network: 3 }, /^network/],
  ];
  for (const [body, re] of bad) {
    const r = parseCniPodRequest(body);
    assert.equal(r.ok, false, JSON.stringify(body));
    if (!r.ok) assert.match(r.error, re);
  }
});

test('parseCniReply and parseCniErrorReply', () => {
  assert.deepEqual(parseCniReply('add', { decision: 'enrolled' }), { ok: true, value: { decision: 'enrolled' } });
  assert.equal(parseCniReply('add', { decision: 'yes' }).ok, false);
  assert.deepEqual(parseCniReply('del', { released: true }), { ok: true, value: { released: true } });
  assert.equal(parseCniReply('del', { released: 'true' }).ok, false);
  assert.deepEqual(parseCniReply('check', { ok: true }), { ok: true, value: { ok: true } });
  assert.equal(parseCniReply('check', { ok: false, problem: 4 }).ok, false);
  assert.deepEqual(parseCniErrorReply({ error: { kind: 'try-again', message: 'm' } }), { kind: 'try-again', message: 'm' });
  assert.equal(parseCniErrorReply({ error: { kind: 'other', message: 'm' } }), undefined);
  assert.equal(parseCniErrorReply('x'), undefined);
});
