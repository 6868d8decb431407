import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSpiffeId, trustDomainError, workloadSpiffeId } from './spiffe.js';

test('workloadSpiffeId builds the ns/sa form', () => {
  assert.equal(workloadSpiffeId('cluster.local', 'shop', 'web'), 'spiffe://cluster.local/ns/shop/sa/web');
  assert.throws(() => workloadSpiffeId('Cluster.Local', 'shop', 'web'), /lowercase/);
});

test('parseSpiffeId', () => {
  const table: { id: string; ok: boolean; ns?: string; sa?: string; error?: RegExp }[] = [
    { id: 'spiffe://cluster.local/ns/shop/sa/web', ok: true, ns: 'shop', sa: 'web' },
    { id: 'spiffe://example.org', ok: true },
    { id: 'spiffe://example.org/some/path', ok: true },
    { id: 'spiffe://td/ns/a/sa/b/extra', ok: true },
    { id: 'https://cluster.local/ns/shop/sa/web', ok: false, error: /must start with spiffe:\/\// },
    { id: 'spiffe://', ok: false, error: /trust domain is empty/ },
    { id: 'spiffe://Cluster.local/ns/a/sa/b', ok: false, error: /lowercase/ },
    { id: 'spiffe://td:8080/ns/a', ok: false, error: /lowercase/ },
    { id: 'spiffe://user@td/ns/a', ok: false, error: /lowercase/ },
    { id: 'spiffe://td/ns//sa/b', ok: false, error: /empty segment/ },
    { id: 'spiffe://td/ns/a/', ok: false, error: /empty segment/ },
    { id: 'spiffe://td/ns/../sa', ok: false, error: /'\.' and '\.\.'/ },
    { id: 'spiffe://td/ns/a?x=1', ok: false, error: /path segment "a\?x=1"/ },
    { id: 'spiffe://td/ns/a#f', ok: false, error: /path segment/ },
    { id: 'spiffe://td/' + 'a'.repeat(2100), ok: false, error: /longer than 2048/ },
  ];
  for (const row of table) {
    const r = parseSpiffeId(row.id);
    assert.equal(r.ok, row.ok, row.id);
    if (r.ok) {
      assert.equal(r.id.namespace, row.ns, row.id);
      assert.equal(r.id.serviceAccount, row.sa, row.id);
    } else {
      assert.match(r.error, row.error!, row.id);
    }
  }
});

test('trustDomainError', () => {
  assert.equal(trustDomainError('cluster.local'), undefined);
  assert.equal(trustDomainError('my_td-1.example'), undefined);
  assert.match(trustDomainError('')!, /empty/);
  assert.match(trustDomainError('UPPER')!, /lowercase/);
});
