import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Sensitive } from '../../identity/sensitive.js';
import { PushedCredentials } from './credentials.js';
import type { PoolCredentials } from './protocol.js';

const creds = (identity: string, notAfterMs?: number): PoolCredentials => ({ identity, certChainPem: ['LEAF'], keyPem: new Sensitive('KEY'), ...(notAfterMs !== undefined ? { notAfterMs } : {}) });

test('a waiting connection gets the credentials when they are pushed', async () => {
  const c = new PushedCredentials();
  const waiting = c.get('u1', 1000);
  c.set('u1', creds('spiffe://td/ns/a/sa/x'));
  assert.equal((await waiting).identity, 'spiffe://td/ns/a/sa/x');
  assert.equal(c.current('u1')?.identity, 'spiffe://td/ns/a/sa/x');
});

test('a renewal replaces what current() and get() return', async () => {
  const c = new PushedCredentials();
  c.set('u1', creds('old'));
  c.set('u1', creds('new'));
  assert.equal(c.current('u1')?.identity, 'new');
  assert.equal((await c.get('u1', 10)).identity, 'new');
});

test('a wait that runs out says why: still requested, or the reason the main thread sent', async () => {
  const c = new PushedCredentials();
  await assert.rejects(c.get('u1', 20), /no certificate for pod u1 after 20 ms: the agent is still requesting it/);
  c.failed('u1', 'ambit-control unreachable (UNAVAILABLE)');
  await assert.rejects(c.get('u1', 20), /after 20 ms: ambit-control unreachable \(UNAVAILABLE\)/);
});

test('release forgets the key and fails waiting connections at once', async () => {
  const c = new PushedCredentials();
  const waiting = c.get('u2', 5000);
  const started = Date.now();
  c.release('u2');
  await assert.rejects(waiting, /removed from the mesh/);
  assert.ok(Date.now() - started < 1000);
  c.set('u3', creds('x'));
  c.release('u3');
  assert.equal(c.current('u3'), undefined);
  assert.equal(c.size, 0);
});

test('expired credentials are not current; a wait then names the expiry', async () => {
  let now = 1000;
  const c = new PushedCredentials({ now: () => now });
  c.set('u1', creds('x', 2000));
  assert.equal(c.current('u1')?.identity, 'x');
  now = 2000;
  assert.equal(c.current('u1'), undefined);
  await assert.rejects(c.get('u1', 10), /expired at 1970-01-01T00:00:02.000Z and no renewal arrived within 10 ms/);
});

test('close fails every waiting connection', async () => {
  const c = new PushedCredentials();
  const a = c.get('u1', 5000);
  const b = c.get('u2', 5000);
  c.close();
  await assert.rejects(a, /stopping/);
  await assert.rejects(b, /stopping/);
});
