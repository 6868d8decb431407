import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AuthorizationPolicy, AuthzAction, AuthzRule, MtlsMode, PeerAuthentication } from '../../state/policy.js';
import { l4Connection, type L4Connection } from './identity.js';
import { inboundDecision, type InboundCode, type InboundPolicyInput, type InboundTransport } from './inbound.js';

const ROOT = 'ambit-system';
const WEB = { namespace: 'shop', name: 'web-1', labels: { app: 'web' }, services: ['shop/web'] };

const pa = (key: string, mode: MtlsMode, extra: Partial<PeerAuthentication> = {}): PeerAuthentication => {
  const [namespace, name] = key.split('/') as [string, string];
  return { key, namespace, name, createdAt: '2026-01-01T00:00:00Z', mode, ...extra };
};
const ap = (key: string, action: AuthzAction, rules: AuthzRule[]): AuthorizationPolicy => {
  const [namespace, name] = key.split('/') as [string, string];
  return { key, namespace, name, action, rules };
};

const input = (pas: PeerAuthentication[], aps: AuthorizationPolicy[] = []): InboundPolicyInput => ({ workload: WEB, authorizationPolicies: aps, peerAuthentications: pas, rootNamespace: ROOT });
const mtls = (port = 8080): L4Connection => l4Connection({ sourcePrincipal: 'spiffe://cluster.local/ns/shop/sa/frontend', sourceIp: '10.244.1.5', destinationIp: '10.244.2.9', destinationPort: port });
const plain = (port = 8080): L4Connection => l4Connection({ sourceIp: '10.250.0.77', destinationIp: '10.244.2.9', destinationPort: port });

const MESH_STRICT = pa('ambit-system/default', 'STRICT');
const DENY_FE = ap('shop/deny-fe', 'DENY', [{ from: [{ principals: ['cluster.local/ns/shop/sa/frontend'] }] }]);
const ALLOW_MESH_ONLY = ap('shop/mesh-only', 'ALLOW', [{ from: [{ principals: ['*'] }] }]);
const PORT_STRICT = pa('shop/web', 'PERMISSIVE', { selector: { app: 'web' }, portModes: { '5432': 'STRICT' } });

interface Row { name: string; conn: L4Connection; transport: InboundTransport; in: InboundPolicyInput; code: InboundCode; policy?: string }

const ROWS: Row[] = [
  { name: 'plaintext under STRICT refused', conn: plain(), transport: 'plaintext', in: input([MESH_STRICT]), code: 'deny_plaintext_strict', policy: 'ambit-system/default' },
  { name: 'plaintext under default PERMISSIVE admitted', conn: plain(), transport: 'plaintext', in: input([]), code: 'allow_no_policy' },
  { name: 'plaintext under DISABLE admitted', conn: plain(), transport: 'plaintext', in: input([MESH_STRICT, pa('shop/default', 'DISABLE')]), code: 'allow_no_policy' },
  { name: 'mTLS under STRICT admitted, then authorized', conn: mtls(), transport: 'mtls', in: input([MESH_STRICT]), code: 'allow_no_policy' },
  { name: 'mTLS under DISABLE still admitted (HBONE is always mTLS)', conn: mtls(), transport: 'mtls', in: input([pa('shop/default', 'DISABLE')]), code: 'allow_no_policy' },
  { name: 'mTLS admitted, DENY on principal refuses', conn: mtls(), transport: 'mtls', in: input([MESH_STRICT], [DENY_FE]), code: 'deny_policy', policy: 'shop/deny-fe' },
  { name: 'PERMISSIVE plaintext still meets ALLOW principals *', conn: plain(), transport: 'plaintext', in: input([], [ALLOW_MESH_ONLY]), code: 'deny_no_allow_match' },
  { name: 'mTLS meets ALLOW principals *', conn: mtls(), transport: 'mtls', in: input([], [ALLOW_MESH_ONLY]), code: 'allow_policy', policy: 'shop/mesh-only' },
  { name: 'a plaintext connection carrying a principal is stripped of it', conn: { ...mtls(), sourceIp: '10.250.0.77' }, transport: 'plaintext', in: input([], [ALLOW_MESH_ONLY]), code: 'deny_no_allow_match' },
  { name: 'mTLS without a SPIFFE ID fails closed', conn: plain(), transport: 'mtls', in: input([]), code: 'deny_no_identity' },
  { name: 'port-level STRICT refuses plaintext on that port', conn: plain(5432), transport: 'plaintext', in: input([PORT_STRICT]), code: 'deny_plaintext_strict', policy: 'shop/web' },
  { name: 'port-level STRICT leaves other ports PERMISSIVE', conn: plain(8080), transport: 'plaintext', in: input([PORT_STRICT]), code: 'allow_no_policy' },
];

test(`inboundDecision: ${ROWS.length} table cases`, () => {
  for (const row of ROWS) {
    const d = inboundDecision(row.conn, row.transport, row.in);
    assert.equal(d.code, row.code, `${row.name}: ${d.reason}`);
    assert.equal(d.allowed, row.code.startsWith('allow'), row.name);
    assert.equal(d.connectionSecurityPolicy, row.transport === 'mtls' ? 'mutual_tls' : 'none', row.name);
    if (row.policy) assert.equal(d.policy, row.policy, row.name);
  }
});

test('inboundDecision: STRICT refusal names the PeerAuthentication and its level', () => {
  const mesh = inboundDecision(plain(), 'plaintext', input([MESH_STRICT]));
  assert.equal(mesh.reason, 'STRICT mTLS: plaintext from 10.250.0.77 to shop/web-1 port 8080 refused by PeerAuthentication ambit-system/default (mesh-wide); the client must be in the mesh (enrol its namespace), or make this port PERMISSIVE');
  assert.deepEqual(mesh.mtls, { mode: 'STRICT', level: 'mesh', policy: 'ambit-system/default' });
  const port = inboundDecision(plain(5432), 'plaintext', input([PORT_STRICT]));
  assert.match(port.reason, /refused by PeerAuthentication shop\/web \(portLevelMtls for port 5432\)/);
  const allowed = inboundDecision(mtls(), 'mtls', input([MESH_STRICT], [ALLOW_MESH_ONLY]));
  assert.equal(allowed.reason, 'allowed by ALLOW policy shop/mesh-only rules[0]: spiffe://cluster.local/ns/shop/sa/frontend from 10.244.1.5 to shop/web-1 port 8080');
  assert.equal(allowed.rule, 0);
});

test('l4Connection derives namespace and service account; drops an invalid SPIFFE ID', () => {
  assert.deepEqual(mtls(), { sourcePrincipal: 'spiffe://cluster.local/ns/shop/sa/frontend', sourceNamespace: 'shop', sourceServiceAccount: 'frontend', sourceIp: '10.244.1.5', destinationIp: '10.244.2.9', destinationPort: 8080 });
  assert.deepEqual(l4Connection({ sourcePrincipal: 'spiffe://td/some/path', sourceIp: 'a', destinationIp: 'b', destinationPort: 1 }), { sourcePrincipal: 'spiffe://td/some/path', sourceIp: 'a', destinationIp: 'b', destinationPort: 1 });
  assert.deepEqual(l4Connection({ sourcePrincipal: 'https://nope', sourceIp: 'a', destinationIp: 'b', destinationPort: 1 }), { sourceIp: 'a', destinationIp: 'b', destinationPort: 1 });
});
