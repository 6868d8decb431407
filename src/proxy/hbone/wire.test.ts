/** Table tests of the HBONE pure core: authority parsing, SPIFFE IDs from SANs, pool keys, flags. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { flagForStatus, formatAuthority, parseAuthority, poolKey, spiffeIdFromSubjectAltName } from './wire.js';

test('parseAuthority accepts ip:port and [ipv6]:port only', () => {
  const ok: [string, string, number, 4 | 6][] = [
    ['10.1.2.3:8080', '10.1.2.3', 8080, 4],
    ['127.0.0.1:1', '127.0.0.1', 1, 4],
    ['[fd00::1]:443', 'fd00::1', 443, 6],
    ['[::ffff:10.0.0.1]:65535', '::ffff:10.0.0.1', 65535, 6],
  ];
  for (const [input, host, port, family] of ok) {
    assert.deepEqual(parseAuthority(input), { ok: true, value: { host, port, family } }, input);
  }
  const bad: [string | undefined, RegExp][] = [
    [undefined, /without :authority/],
    ['', /without :authority/],
    ['10.1.2.3', /no port/],
    ['example.com:80', /not an IP address/],
    ['fd00::1:80', /not an IP address|brackets/],
    ['[fd00::1]80', /not \[ipv6\]:port/],
    ['10.1.2.3:0', /out of range/],
    ['10.1.2.3:65536', /out of range/],
    ['10.1.2.3:+80', /not a number/],
    ['10.1.2.3:80 ', /not a number/],
    ['10.1.2.3:', /not a number/],
    ['10.1.2.3:8o', /not a number/],
    ['x'.repeat(100) + ':1', /at most 47/],
    ['10.1.2.3:80/path', /not a number/],
    ['user@10.1.2.3:80', /not an IP address/],
  ];
  for (const [input, error] of bad) {
    const r = parseAuthority(input);
    assert.equal(r.ok, false, String(input));
    if (!r.ok) assert.match(r.error, error, String(input));
  }
});

test('formatAuthority brackets IPv6 and round-trips through parseAuthority', () => {
  assert.equal(formatAuthority('10.0.0.1', 80), '10.0.0.1:80');
  assert.equal(formatAuthority('fd00::2', 80), '[fd00::2]:80');
  for (const [h, p] of [['10.0.0.1', 80], ['fd00::2', 15008]] as const) {
    const r = parseAuthority(formatAuthority(h, p));
    assert.ok(r.ok && r.value.host === h && r.value.port === p);
  }
});

test('spiffeIdFromSubjectAltName takes exactly one valid SPIFFE URI SAN', () => {
  const id = 'spiffe://cluster.local/ns/shop/sa/web';
  const cases: [string | undefined, string | RegExp][] = [
    [`URI:${id}`, id],
    [`DNS:web.shop.svc, URI:${id}`, id],
    [`URI:${id}, IP Address:10.0.0.1`, id],
    [undefined, /no subjectAltName/],
    ['DNS:web.shop.svc', /no URI SAN/],
    [`URI:${id}, URI:spiffe://cluster.local/ns/shop/sa/other`, /2 URI SANs/],
    ['URI:https://example.com/x', /not a valid SPIFFE ID/],
    ['URI:"spiffe://cluster.local/ns/a,b/sa/c"', /not a valid SPIFFE ID/],
    ['URI:spiffe://Cluster.Local/ns/a/sa/b', /not a valid SPIFFE ID/],
  ];
  for (const [san, want] of cases) {
    const r = spiffeIdFromSubjectAltName(san);
    if (typeof want === 'string') assert.deepEqual(r, { ok: true, value: want }, String(san));
    else {
      assert.equal(r.ok, false, String(san));
      if (!r.ok) assert.match(r.error, want, String(san));
    }
  }
});

test('poolKey separates identities, source addresses and destinations', () => {
  const base = { sourceIdentity: 'spiffe://td/ns/a/sa/x', destinationIdentity: 'spiffe://td/ns/b/sa/y', address: '10.0.0.2', port: 15008 };
  const keys = new Set([
    poolKey(base),
    poolKey({ ...base, sourceAddress: '10.0.0.7' }),
    poolKey({ ...base, sourceAddress: '10.0.0.8' }),
    poolKey({ ...base, sourceIdentity: 'spiffe://td/ns/a/sa/z' }),
    poolKey({ ...base, destinationIdentity: 'spiffe://td/ns/b/sa/z' }),
    poolKey({ ...base, address: '10.0.0.3' }),
    poolKey({ ...base, port: 15009 }),
  ]);
  assert.equal(keys.size, 7);
  assert.equal(poolKey(base), poolKey({ ...base }));
});

test('flagForStatus maps CONNECT statuses to response flags', () => {
  const table: [number, string][] = [[200, '-'], [403, 'RBAC'], [401, 'RBAC'], [400, 'NR'], [405, 'NR'], [502, 'UF'], [503, 'UF'], [504, 'UT']];
  for (const [status, flag] of table) assert.equal(flagForStatus(status), flag, String(status));
});
