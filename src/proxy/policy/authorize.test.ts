import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AuthorizationPolicy, AuthzAction, AuthzRule } from '../../state/policy.js';
import { authorize, l4Limitations, type AuthzCode, type AuthzSubject } from './authorize.js';
import { l4Connection, type L4Connection } from './identity.js';
import { stringMatches } from './match.js';

const ROOT = 'ambit-system';
const WEB: AuthzSubject = { namespace: 'shop', name: 'web-1', labels: { app: 'web', tier: 'front' }, services: ['shop/web'] };

function pol(key: string, action: AuthzAction, rules: AuthzRule[], extra: Partial<AuthorizationPolicy> = {}): AuthorizationPolicy {
  const [namespace, name] = key.split('/') as [string, string];
  return { key, namespace, name, action, rules, ...extra };
}

/** An mTLS peer `spiffe://cluster.local/ns/<ns>/sa/<sa>`. */
function peer(sa: string, ns = 'shop', opts: { ip?: string; port?: number; td?: string } = {}): L4Connection {
  return l4Connection({ sourcePrincipal: `spiffe://${opts.td ?? 'cluster.local'}/ns/${ns}/sa/${sa}`, sourceIp: opts.ip ?? '10.244.1.5', destinationIp: '10.244.2.9', destinationPort: opts.port ?? 8080 });
}

function plain(ip = '10.244.1.5', port = 8080, destinationIp = '10.244.2.9'): L4Connection {
  return l4Connection({ sourceIp: ip, destinationIp, destinationPort: port });
}

const FE = peer('frontend');
const DEV = peer('tool', 'dev', { ip: '10.244.3.7' });

interface Row {
  name: string;
  policies: AuthorizationPolicy[];
  conn: L4Connection;
  code: AuthzCode;
  policy?: string;
  rule?: number;
  workload?: AuthzSubject;
}

const allowFrom = (source: NonNullable<AuthzRule['from']>[number]): AuthzRule[] => [{ from: [source] }];

const ROWS: Row[] = [
  // ---- precedence and defaults
  { name: 'no policies: allowed by default', policies: [], conn: FE, code: 'allow_no_policy' },
  { name: 'ALLOW without rules allows nothing (deny-all)', policies: [pol('shop/deny-all', 'ALLOW', [])], conn: FE, code: 'deny_no_allow_match' },
  { name: 'ALLOW with the empty rule allows everything', policies: [pol('shop/allow-all', 'ALLOW', [{}])], conn: plain(), code: 'allow_policy', policy: 'shop/allow-all', rule: 0 },
  { name: 'DENY with the empty rule denies everything', policies: [pol('shop/deny', 'DENY', [{}])], conn: FE, code: 'deny_policy', policy: 'shop/deny', rule: 0 },
  { name: 'DENY without rules matches nothing', policies: [pol('shop/deny', 'DENY', [])], conn: FE, code: 'allow_no_policy' },
  { name: 'DENY wins over a matching ALLOW', policies: [pol('shop/allow-all', 'ALLOW', [{}]), pol('shop/deny-fe', 'DENY', allowFrom({ principals: ['cluster.local/ns/shop/sa/frontend'] }))], conn: FE, code: 'deny_policy', policy: 'shop/deny-fe' },
  { name: 'non-matching DENY, matching ALLOW: allowed', policies: [pol('shop/deny-dev', 'DENY', allowFrom({ namespaces: ['dev'] })), pol('shop/allow-all', 'ALLOW', [{}])], conn: FE, code: 'allow_policy', policy: 'shop/allow-all' },
  { name: 'first matching DENY in order decides', policies: [pol('shop/a', 'DENY', [{}]), pol('shop/b', 'DENY', [{}])], conn: FE, code: 'deny_policy', policy: 'shop/a' },
  { name: 'second ALLOW policy matches', policies: [pol('shop/a', 'ALLOW', allowFrom({ namespaces: ['dev'] })), pol('shop/b', 'ALLOW', allowFrom({ namespaces: ['shop'] }))], conn: FE, code: 'allow_policy', policy: 'shop/b' },
  { name: 'second rule of a policy matches', policies: [pol('shop/a', 'ALLOW', [{ from: [{ namespaces: ['dev'] }] }, { from: [{ namespaces: ['shop'] }] }])], conn: FE, code: 'allow_policy', policy: 'shop/a', rule: 1 },
  { name: 'AUDIT never decides (alone: default allow)', policies: [pol('shop/audit', 'AUDIT', [{}])], conn: FE, code: 'allow_no_policy' },
  { name: 'AUDIT does not rescue a failed ALLOW', policies: [pol('shop/audit', 'AUDIT', [{}]), pol('shop/only-dev', 'ALLOW', allowFrom({ namespaces: ['dev'] }))], conn: FE, code: 'deny_no_allow_match' },
  { name: 'CUSTOM that matches fails closed', policies: [pol('shop/ext', 'CUSTOM', [{}], { provider: 'opa' }), pol('shop/allow-all', 'ALLOW', [{}])], conn: FE, code: 'deny_custom', policy: 'shop/ext', rule: 0 },
  { name: 'CUSTOM whose rules do not match is ignored', policies: [pol('shop/ext', 'CUSTOM', allowFrom({ ipBlocks: ['192.168.0.0/16'] }), { provider: 'opa' })], conn: FE, code: 'allow_no_policy' },
  { name: 'CUSTOM is consulted before DENY', policies: [pol('shop/a-deny', 'DENY', [{}]), pol('shop/ext', 'CUSTOM', [{}], { provider: 'opa' })], conn: FE, code: 'deny_custom', policy: 'shop/ext' },

  // ---- which policies apply
  { name: 'ALLOW selecting another workload does not apply', policies: [pol('shop/db-only', 'ALLOW', [], { selector: { app: 'db' } })], conn: FE, code: 'allow_no_policy' },
  { name: 'ALLOW selecting this workload applies', policies: [pol('shop/web-fe', 'ALLOW', allowFrom({ principals: ['cluster.local/ns/shop/sa/frontend'] }), { selector: { app: 'web' } })], conn: DEV, code: 'deny_no_allow_match' },
  { name: 'policy of another namespace does not apply', policies: [pol('dev/deny-all', 'DENY', [{}])], conn: FE, code: 'allow_no_policy' },
  { name: 'root-namespace policy without selector applies mesh-wide', policies: [pol('ambit-system/deny-dev', 'DENY', allowFrom({ namespaces: ['dev'] }))], conn: DEV, code: 'deny_policy', policy: 'ambit-system/deny-dev' },
  { name: 'root-namespace selector matches across namespaces', policies: [pol('ambit-system/web', 'DENY', [{}], { selector: { app: 'web' } })], conn: FE, code: 'deny_policy' },
  { name: 'root-namespace selector for other labels does not apply', policies: [pol('ambit-system/db', 'DENY', [{}], { selector: { app: 'db' } })], conn: FE, code: 'allow_no_policy' },
  { name: 'namespace ALLOW and mesh DENY combine', policies: [pol('ambit-system/deny-dev', 'DENY', allowFrom({ namespaces: ['dev'] })), pol('shop/allow-all', 'ALLOW', [{}])], conn: DEV, code: 'deny_policy', policy: 'ambit-system/deny-dev' },
  { name: 'targetRefs Service of the workload applies', policies: [pol('shop/svc', 'DENY', [{}], { targetServices: ['web'] })], conn: FE, code: 'deny_policy' },
  { name: 'targetRefs other Service does not apply', policies: [pol('shop/svc', 'DENY', [{}], { targetServices: ['db'] })], conn: FE, code: 'allow_no_policy' },

  // ---- principals: exact, prefix, suffix, presence, not
  { name: 'principal exact match', policies: [pol('shop/p', 'ALLOW', allowFrom({ principals: ['cluster.local/ns/shop/sa/frontend'] }))], conn: FE, code: 'allow_policy' },
  { name: 'principal exact mismatch', policies: [pol('shop/p', 'ALLOW', allowFrom({ principals: ['cluster.local/ns/shop/sa/backend'] }))], conn: FE, code: 'deny_no_allow_match' },
  { name: 'principal written with spiffe:// never matches (Istio form has none)', policies: [pol('shop/p', 'ALLOW', allowFrom({ principals: ['spiffe://cluster.local/ns/shop/sa/frontend'] }))], conn: FE, code: 'deny_no_allow_match' },
  { name: 'principal other trust domain', policies: [pol('shop/p', 'ALLOW', allowFrom({ principals: ['cluster.local/ns/shop/sa/frontend'] }))], conn: peer('frontend', 'shop', { td: 'other.org' }), code: 'deny_no_allow_match' },
  { name: 'principal prefix', policies: [pol('shop/p', 'ALLOW', allowFrom({ principals: ['cluster.local/ns/shop/*'] }))], conn: FE, code: 'allow_policy' },
  { name: 'principal prefix mismatch', policies: [pol('shop/p', 'ALLOW', allowFrom({ principals: ['cluster.local/ns/shop/*'] }))], conn: DEV, code: 'deny_no_allow_match' },
  { name: 'principal suffix (any trust domain)', policies: [pol('shop/p', 'ALLOW', allowFrom({ principals: ['*/ns/shop/sa/frontend'] }))], conn: peer('frontend', 'shop', { td: 'other.org' }), code: 'allow_policy' },
  { name: 'principal * = any authenticated peer', policies: [pol('shop/p', 'ALLOW', allowFrom({ principals: ['*'] }))], conn: FE, code: 'allow_policy' },
  { name: 'principal * does not match plaintext', policies: [pol('shop/p', 'ALLOW', allowFrom({ principals: ['*'] }))], conn: plain(), code: 'deny_no_allow_match' },
  { name: 'DENY notPrincipals *: plaintext denied', policies: [pol('shop/p', 'DENY', allowFrom({ notPrincipals: ['*'] }))], conn: plain(), code: 'deny_policy' },
  { name: 'DENY notPrincipals * lets mTLS peers through', policies: [pol('shop/p', 'DENY', allowFrom({ notPrincipals: ['*'] }))], conn: FE, code: 'allow_no_policy' },
  { name: 'DENY notPrincipals exact: everyone else denied', policies: [pol('shop/p', 'DENY', allowFrom({ notPrincipals: ['cluster.local/ns/shop/sa/frontend'] }))], conn: DEV, code: 'deny_policy' },
  { name: 'DENY notPrincipals exact: the named peer passes', policies: [pol('shop/p', 'DENY', allowFrom({ notPrincipals: ['cluster.local/ns/shop/sa/frontend'] }))], conn: FE, code: 'allow_no_policy' },
  { name: 'principals and notPrincipals together', policies: [pol('shop/p', 'ALLOW', allowFrom({ principals: ['cluster.local/ns/shop/*'], notPrincipals: ['*/sa/frontend'] }))], conn: FE, code: 'deny_no_allow_match' },

  // ---- namespaces and service accounts
  { name: 'namespace exact', policies: [pol('shop/n', 'ALLOW', allowFrom({ namespaces: ['shop'] }))], conn: FE, code: 'allow_policy' },
  { name: 'namespace prefix', policies: [pol('shop/n', 'ALLOW', allowFrom({ namespaces: ['sh*'] }))], conn: FE, code: 'allow_policy' },
  { name: 'namespace suffix', policies: [pol('shop/n', 'ALLOW', allowFrom({ namespaces: ['*ev'] }))], conn: DEV, code: 'allow_policy' },
  { name: 'namespace list: any entry', policies: [pol('shop/n', 'ALLOW', allowFrom({ namespaces: ['prod', 'dev'] }))], conn: DEV, code: 'allow_policy' },
  { name: 'namespaces never match plaintext', policies: [pol('shop/n', 'ALLOW', allowFrom({ namespaces: ['*'] }))], conn: plain(), code: 'deny_no_allow_match' },
  { name: 'notNamespaces excludes', policies: [pol('shop/n', 'ALLOW', allowFrom({ notNamespaces: ['dev'] }))], conn: DEV, code: 'deny_no_allow_match' },
  { name: 'notNamespaces admits others, plaintext included', policies: [pol('shop/n', 'ALLOW', allowFrom({ notNamespaces: ['dev'] }))], conn: plain(), code: 'allow_policy' },
  { name: 'serviceAccounts exact ns/name', policies: [pol('shop/s', 'ALLOW', allowFrom({ serviceAccounts: ['shop/frontend'] }))], conn: FE, code: 'allow_policy' },
  { name: 'serviceAccounts other account', policies: [pol('shop/s', 'ALLOW', allowFrom({ serviceAccounts: ['shop/frontend'] }))], conn: peer('backend'), code: 'deny_no_allow_match' },
  { name: 'notServiceAccounts on DENY', policies: [pol('shop/s', 'DENY', allowFrom({ notServiceAccounts: ['shop/frontend'] }))], conn: peer('backend'), code: 'deny_policy' },

  // ---- ip blocks
  { name: 'ipBlocks v4 CIDR contains the source', policies: [pol('shop/i', 'ALLOW', allowFrom({ ipBlocks: ['10.244.1.0/24'] }))], conn: plain('10.244.1.5'), code: 'allow_policy' },
  { name: 'ipBlocks v4 CIDR excludes the source', policies: [pol('shop/i', 'ALLOW', allowFrom({ ipBlocks: ['10.244.1.0/24'] }))], conn: plain('10.244.2.5'), code: 'deny_no_allow_match' },
  { name: 'ipBlocks match an IPv4-mapped peer address', policies: [pol('shop/i', 'ALLOW', allowFrom({ ipBlocks: ['10.244.1.0/24'] }))], conn: plain('::ffff:10.244.1.5'), code: 'allow_policy' },
  { name: 'ipBlocks single address', policies: [pol('shop/i', 'ALLOW', allowFrom({ ipBlocks: ['10.244.1.5'] }))], conn: plain('10.244.1.5'), code: 'allow_policy' },
  { name: 'ipBlocks v6 CIDR', policies: [pol('shop/i', 'ALLOW', allowFrom({ ipBlocks: ['fd00:10:244::/48'] }))], conn: plain('fd00:10:244:1::5', 8080, 'fd00:10:244:2::9'), code: 'allow_policy' },
  { name: 'ipBlocks v6 CIDR excludes', policies: [pol('shop/i', 'ALLOW', allowFrom({ ipBlocks: ['fd00:10:244::/48'] }))], conn: plain('fd00:10:245::5', 8080, 'fd00:10:244:2::9'), code: 'deny_no_allow_match' },
  { name: 'ipBlocks v4 block never matches a v6 source', policies: [pol('shop/i', 'ALLOW', allowFrom({ ipBlocks: ['0.0.0.0/0'] }))], conn: plain('fd00::5', 8080, 'fd00::9'), code: 'deny_no_allow_match' },
  { name: 'DENY notIpBlocks: outside the cluster range denied', policies: [pol('shop/i', 'DENY', allowFrom({ notIpBlocks: ['10.0.0.0/8'] }))], conn: plain('192.168.1.1'), code: 'deny_policy' },
  { name: 'DENY notIpBlocks: inside passes', policies: [pol('shop/i', 'DENY', allowFrom({ notIpBlocks: ['10.0.0.0/8'] }))], conn: plain('10.9.9.9'), code: 'allow_no_policy' },
  { name: 'ipBlocks and principals in one source: both needed', policies: [pol('shop/i', 'ALLOW', allowFrom({ principals: ['*'], ipBlocks: ['10.244.9.0/24'] }))], conn: FE, code: 'deny_no_allow_match' },
  { name: 'two sources: either', policies: [pol('shop/i', 'ALLOW', [{ from: [{ ipBlocks: ['10.244.9.0/24'] }, { namespaces: ['shop'] }] }])], conn: FE, code: 'allow_policy' },

  // ---- ports
  { name: 'ports match', policies: [pol('shop/t', 'ALLOW', [{ to: [{ ports: [8080] }] }])], conn: FE, code: 'allow_policy' },
  { name: 'ports mismatch', policies: [pol('shop/t', 'ALLOW', [{ to: [{ ports: [8080] }] }])], conn: peer('frontend', 'shop', { port: 9090 }), code: 'deny_no_allow_match' },
  { name: 'notPorts excludes', policies: [pol('shop/t', 'ALLOW', [{ to: [{ notPorts: [9090] }] }])], conn: peer('frontend', 'shop', { port: 9090 }), code: 'deny_no_allow_match' },
  { name: 'notPorts admits others', policies: [pol('shop/t', 'ALLOW', [{ to: [{ notPorts: [9090] }] }])], conn: FE, code: 'allow_policy' },
  { name: 'two operations: either', policies: [pol('shop/t', 'ALLOW', [{ to: [{ ports: [80] }, { ports: [8080] }] }])], conn: FE, code: 'allow_policy' },
  { name: 'from and to both needed', policies: [pol('shop/t', 'ALLOW', [{ from: [{ namespaces: ['shop'] }], to: [{ ports: [9090] }] }])], conn: FE, code: 'deny_no_allow_match' },
  { name: 'DENY on one port only', policies: [pol('shop/t', 'DENY', [{ to: [{ ports: [9090] }] }])], conn: FE, code: 'allow_no_policy' },

  // ---- HTTP-only fields: ALLOW drops the rule, DENY drops the fields
  { name: 'ALLOW with methods never matches at L4', policies: [pol('shop/h', 'ALLOW', [{ to: [{ methods: ['GET'] }] }])], conn: FE, code: 'deny_no_allow_match' },
  { name: 'ALLOW with ports+methods is dropped whole', policies: [pol('shop/h', 'ALLOW', [{ from: [{ principals: ['*'] }], to: [{ ports: [8080], methods: ['GET'] }] }])], conn: FE, code: 'deny_no_allow_match' },
  { name: 'ALLOW: one L7 operation poisons the whole rule', policies: [pol('shop/h', 'ALLOW', [{ to: [{ ports: [8080] }, { paths: ['/admin'] }] }])], conn: FE, code: 'deny_no_allow_match' },
  { name: 'ALLOW: an L4 rule next to an L7 rule still allows', policies: [pol('shop/h', 'ALLOW', [{ to: [{ paths: ['/x'] }] }, { to: [{ ports: [8080] }] }])], conn: FE, code: 'allow_policy', rule: 1 },
  { name: 'ALLOW with requestPrincipals is dropped', policies: [pol('shop/h', 'ALLOW', allowFrom({ requestPrincipals: ['*'] }))], conn: FE, code: 'deny_no_allow_match' },
  { name: 'ALLOW with remoteIpBlocks is dropped (no XFF/PROXY at L4)', policies: [pol('shop/h', 'ALLOW', allowFrom({ remoteIpBlocks: ['10.0.0.0/8'] }))], conn: FE, code: 'deny_no_allow_match' },
  { name: 'ALLOW with a header condition is dropped', policies: [pol('shop/h', 'ALLOW', [{ when: [{ key: 'request.headers[x-user]', values: ['bob'] }] }])], conn: FE, code: 'deny_no_allow_match' },
  { name: 'ALLOW with remote.ip condition is dropped', policies: [pol('shop/h', 'ALLOW', [{ when: [{ key: 'remote.ip', values: ['10.0.0.0/8'] }] }])], conn: FE, code: 'deny_no_allow_match' },
  { name: 'DENY with methods only denies everything', policies: [pol('shop/h', 'DENY', [{ to: [{ methods: ['POST'] }] }])], conn: FE, code: 'deny_policy' },
  { name: 'DENY principal+paths: paths ignored, principal still narrows (denied)', policies: [pol('shop/h', 'DENY', [{ from: [{ namespaces: ['dev'] }], to: [{ paths: ['/admin'] }] }])], conn: DEV, code: 'deny_policy' },
  { name: 'DENY principal+paths: other principals pass', policies: [pol('shop/h', 'DENY', [{ from: [{ namespaces: ['dev'] }], to: [{ paths: ['/admin'] }] }])], conn: FE, code: 'allow_no_policy' },
  { name: 'DENY ports+methods: methods ignored, ports kept', policies: [pol('shop/h', 'DENY', [{ to: [{ ports: [9090], methods: ['GET'] }] }])], conn: FE, code: 'allow_no_policy' },
  { name: 'DENY with remoteIpBlocks only denies everyone', policies: [pol('shop/h', 'DENY', allowFrom({ remoteIpBlocks: ['1.2.3.4'] }))], conn: FE, code: 'deny_policy' },
  { name: 'DENY header condition ignored, namespace condition kept', policies: [pol('shop/h', 'DENY', [{ when: [{ key: 'request.headers[x]', values: ['1'] }, { key: 'source.namespace', values: ['dev'] }] }])], conn: FE, code: 'allow_no_policy' },
  { name: 'DENY header condition ignored: dev denied', policies: [pol('shop/h', 'DENY', [{ when: [{ key: 'request.headers[x]', values: ['1'] }, { key: 'source.namespace', values: ['dev'] }] }])], conn: DEV, code: 'deny_policy' },

  // ---- L4 conditions
  { name: 'when source.ip', policies: [pol('shop/w', 'ALLOW', [{ when: [{ key: 'source.ip', values: ['10.244.1.0/24'] }] }])], conn: FE, code: 'allow_policy' },
  { name: 'when source.ip notValues', policies: [pol('shop/w', 'ALLOW', [{ when: [{ key: 'source.ip', notValues: ['10.244.1.5'] }] }])], conn: FE, code: 'deny_no_allow_match' },
  { name: 'when source.namespace notValues', policies: [pol('shop/w', 'ALLOW', [{ when: [{ key: 'source.namespace', notValues: ['dev'] }] }])], conn: DEV, code: 'deny_no_allow_match' },
  { name: 'when source.principal prefix', policies: [pol('shop/w', 'ALLOW', [{ when: [{ key: 'source.principal', values: ['cluster.local/ns/dev/*'] }] }])], conn: DEV, code: 'allow_policy' },
  { name: 'when destination.port', policies: [pol('shop/w', 'ALLOW', [{ when: [{ key: 'destination.port', values: ['8080', '8443'] }] }])], conn: FE, code: 'allow_policy' },
  { name: 'when destination.port mismatch', policies: [pol('shop/w', 'ALLOW', [{ when: [{ key: 'destination.port', values: ['8443'] }] }])], conn: FE, code: 'deny_no_allow_match' },
  { name: 'when destination.ip', policies: [pol('shop/w', 'ALLOW', [{ when: [{ key: 'destination.ip', values: ['10.244.2.0/24'] }] }])], conn: FE, code: 'allow_policy' },
  { name: 'when values and notValues together', policies: [pol('shop/w', 'ALLOW', [{ when: [{ key: 'source.namespace', values: ['*'], notValues: ['dev'] }] }])], conn: FE, code: 'allow_policy' },
  { name: 'all when conditions must hold', policies: [pol('shop/w', 'ALLOW', [{ when: [{ key: 'source.namespace', values: ['shop'] }, { key: 'destination.port', values: ['9090'] }] }])], conn: FE, code: 'deny_no_allow_match' },
  { name: 'from, to and when all hold', policies: [pol('shop/w', 'ALLOW', [{ from: [{ principals: ['*/sa/frontend'] }], to: [{ ports: [8080] }], when: [{ key: 'source.ip', values: ['10.0.0.0/8'] }] }])], conn: FE, code: 'allow_policy' },
];

test(`authorize: ${ROWS.length} table cases`, () => {
  for (const row of ROWS) {
    const d = authorize(row.conn, row.policies, row.workload ?? WEB, ROOT);
    assert.equal(d.code, row.code, `${row.name}: ${d.reason}`);
    assert.equal(d.allowed, row.code.startsWith('allow'), row.name);
    if (row.policy !== undefined) assert.equal(d.policy, row.policy, row.name);
    if (row.rule !== undefined) assert.equal(d.rule, row.rule, row.name);
    if (row.code === 'allow_no_policy' || row.code === 'deny_no_allow_match') assert.equal(d.policy, undefined, row.name);
    assert.ok(d.reason.length > 0);
  }
});

test('authorize: reasons name the verdict, the policy and rule, and the connection', () => {
  const allowFe = pol('shop/allow-fe', 'ALLOW', allowFrom({ principals: ['cluster.local/ns/shop/sa/frontend'] }));
  assert.equal(authorize(FE, [allowFe], WEB, ROOT).reason, 'allowed by ALLOW policy shop/allow-fe rules[0]: spiffe://cluster.local/ns/shop/sa/frontend from 10.244.1.5 to shop/web-1 port 8080');
  assert.equal(authorize(plain('::ffff:10.244.1.5'), [], WEB, ROOT).reason, 'allowed, no ALLOW policy applies: plaintext client from 10.244.1.5 to shop/web-1 port 8080');
  assert.equal(authorize(DEV, [pol('ambit-system/deny-dev', 'DENY', allowFrom({ namespaces: ['dev'] }))], WEB, ROOT).reason,
    'denied by DENY policy ambit-system/deny-dev rules[0]: spiffe://cluster.local/ns/dev/sa/tool from 10.244.3.7 to shop/web-1 port 8080');
  assert.equal(authorize(DEV, [allowFe, pol('shop/get-only', 'ALLOW', [{ to: [{ methods: ['GET'], ports: [8080] }] }])], WEB, ROOT).reason,
    'denied, ALLOW policies apply but none matches: spiffe://cluster.local/ns/dev/sa/tool from 10.244.3.7 to shop/web-1 port 8080; policies consulted: shop/allow-fe, shop/get-only; add a rule that allows this peer and port; these ALLOW rules never match at L4 because they need HTTP attributes: shop/get-only rules[0] (methods)');
  assert.match(authorize(FE, [pol('shop/no-post', 'DENY', [{ to: [{ methods: ['POST'] }] }])], WEB, ROOT).reason, /^denied by DENY policy shop\/no-post rules\[0\] \(its HTTP-only methods cannot be seen at L4 and were ignored, so it denies more than written/);
  assert.match(authorize(FE, [pol('shop/ext', 'CUSTOM', [{}], { provider: 'opa' })], WEB, ROOT).reason, /^denied by CUSTOM policy shop\/ext rules\[0\] \(provider opa\): .*cannot consult external authorizers/);
  const many = Array.from({ length: 7 }, (_, i) => pol(`shop/p${i}`, 'ALLOW', []));
  assert.match(authorize(FE, many, WEB, ROOT).reason, /policies consulted: shop\/p0, shop\/p1, shop\/p2, shop\/p3, shop\/p4 and 2 more;/);
  assert.match(authorize(FE, [], { namespace: 'shop', labels: {}, services: [] }, ROOT).reason, /to a workload in shop port 8080$/);
});

test('authorize: namespace is derived from the SPIFFE ID when the caller left it out', () => {
  const raw: L4Connection = { sourcePrincipal: 'spiffe://cluster.local/ns/dev/sa/tool', sourceIp: '10.0.0.1', destinationIp: '10.0.0.2', destinationPort: 80 };
  const deny = [pol('shop/d', 'DENY', allowFrom({ namespaces: ['dev'] }))];
  assert.equal(authorize(raw, deny, WEB, ROOT).code, 'deny_policy');
  assert.equal(authorize(raw, [pol('shop/a', 'ALLOW', allowFrom({ serviceAccounts: ['dev/tool'] }))], WEB, ROOT).code, 'allow_policy');
  // a principal that is not a SPIFFE URI matches no identity rule (fail closed for ALLOW)
  const odd: L4Connection = { sourcePrincipal: 'cluster.local/ns/dev/sa/tool', sourceIp: '10.0.0.1', destinationIp: '10.0.0.2', destinationPort: 80 };
  assert.equal(authorize(odd, [pol('shop/a', 'ALLOW', allowFrom({ principals: ['*'] }))], WEB, ROOT).code, 'deny_no_allow_match');
});

test('authorize: the same policy object gives the same answer on repeat (compiled once)', () => {
  const p = pol('shop/i', 'ALLOW', allowFrom({ ipBlocks: ['10.244.1.0/24'] }));
  for (let i = 0; i < 3; i++) {
    assert.equal(authorize(plain('10.244.1.5'), [p], WEB, ROOT).allowed, true);
    assert.equal(authorize(plain('10.244.7.5'), [p], WEB, ROOT).allowed, false);
  }
});

test('stringMatches: Istio exact / prefix / suffix / presence', () => {
  const cases: [string, string | undefined, boolean][] = [
    ['abc', 'abc', true], ['abc', 'abcd', false], ['ab*', 'abcd', true], ['ab*', 'xab', false],
    ['*cd', 'abcd', true], ['*cd', 'cdx', false], ['*', 'x', true], ['*', '', false], ['*', undefined, false],
    ['abc', undefined, false], ['ab*', undefined, false],
  ];
  for (const [p, v, want] of cases) assert.equal(stringMatches(p, v), want, `${p} ~ ${String(v)}`);
});

test('l4Limitations: what cannot be enforced as written', () => {
  assert.deepEqual(l4Limitations(pol('shop/ok', 'ALLOW', [{ from: [{ principals: ['*'] }], to: [{ ports: [80] }] }])), []);
  assert.deepEqual(l4Limitations(pol('shop/get', 'ALLOW', [{ to: [{ methods: ['GET'], paths: ['/x'] }], when: [{ key: 'request.auth.claims[iss]', values: ['a'] }] }])), [
    'shop/get rules[0]: uses HTTP-only methods, paths, when request.auth.claims[iss]; the rule never allows at L4 (use a waypoint for HTTP rules)',
  ]);
  assert.deepEqual(l4Limitations(pol('shop/nopost', 'DENY', [{}, { from: [{ requestPrincipals: ['*'] }] }])), [
    'shop/nopost rules[1]: uses HTTP-only requestPrincipals; enforced without them at L4, so it denies more than written',
  ]);
  assert.deepEqual(l4Limitations(pol('shop/ext', 'CUSTOM', [{}], { provider: 'opa' })), ['shop/ext: CUSTOM policies cannot be consulted at L4; connections their rules match are refused']);
  assert.deepEqual(l4Limitations(pol('shop/audit', 'AUDIT', [{ to: [{ methods: ['GET'] }] }])), []);
});
