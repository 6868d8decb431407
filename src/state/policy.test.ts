import { test } from 'node:test';
import assert from 'node:assert/strict';
import { authorizationPolicyApplies, effectiveMtls, isIpOrCidr, parseAuthorizationPolicy, parsePeerAuthentication, peerAuthenticationApplies, type PeerAuthentication } from './policy.js';
import type { KubeObject } from './objects.js';

const ap = (spec: unknown, ns = 'shop'): KubeObject => ({ apiVersion: 'security.ambit.dev/v1', kind: 'AuthorizationPolicy', metadata: { name: 'p', namespace: ns }, spec });

test('AuthorizationPolicy: valid specs normalise', () => {
  const cases: [string, unknown, unknown][] = [
    ['empty spec: ALLOW with no rules (allow nothing)', {}, { action: 'ALLOW', rules: [] }],
    ['allow all', { rules: [{}] }, { action: 'ALLOW', rules: [{}] }],
    ['ports become numbers, selector kept', { selector: { matchLabels: { b: '2', a: '1' } }, rules: [{ to: [{ operation: { ports: ['8080'], methods: ['GET'] } }] }] }, { action: 'ALLOW', selector: { a: '1', b: '2' }, rules: [{ to: [{ methods: ['GET'], ports: [8080] }] }] }],
    ['sources and conditions', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['dev'], notIpBlocks: ['10.0.0.0/8'] } }], when: [{ key: 'request.headers[x-user]', values: ['bob'] }] }] }, { action: 'DENY', rules: [{ from: [{ namespaces: ['dev'], notIpBlocks: ['10.0.0.0/8'] }], when: [{ key: 'request.headers[x-user]', values: ['bob'] }] }] }],
    ['CUSTOM with provider', { action: 'CUSTOM', provider: { name: 'ext' }, rules: [{}] }, { action: 'CUSTOM', provider: 'ext', rules: [{}] }],
    ['Service targetRefs', { targetRefs: [{ group: '', kind: 'Service', name: 'web' }], rules: [{}] }, { action: 'ALLOW', targetServices: ['web'], rules: [{}] }],
    ['serviceAccounts form', { rules: [{ from: [{ source: { serviceAccounts: ['shop/web'] } }] }] }, { action: 'ALLOW', rules: [{ from: [{ serviceAccounts: ['shop/web'] }] }] }],
  ];
  for (const [name, spec, want] of cases) {
    const r = parseAuthorizationPolicy(ap(spec));
    assert.ok(r.ok, `${name}: ${r.ok ? '' : r.problems.message()}`);
    assert.deepEqual(r.value, { key: 'shop/p', namespace: 'shop', name: 'p', ...(want as object) }, name);
  }
});

test('AuthorizationPolicy: every problem is reported with its field and a fix', () => {
  const cases: [string, unknown, string[]][] = [
    ['bad action', { action: 'PERMIT' }, ['spec.action: "PERMIT" is not an action; use one of ALLOW, DENY, AUDIT, CUSTOM']],
    ['DENY without rules', { action: 'DENY' }, ['spec.rules: a DENY policy without rules never triggers; add an empty rule {} to deny every request']],
    ['CUSTOM without provider', { action: 'CUSTOM', rules: [{}] }, ['spec.provider.name: is required with the CUSTOM action']],
    ['provider on ALLOW', { provider: { name: 'x' }, rules: [{}] }, ['spec.provider: is only allowed with the CUSTOM action (found ALLOW)']],
    ['bad port and bad ip, both', { rules: [{ from: [{ source: { ipBlocks: ['10.0.0.300'] } }], to: [{ operation: { ports: ['http'] } }] }] }, ['spec.rules[0].from[0].source.ipBlocks[0]: "10.0.0.300" is not an IP address or CIDR block (e.g. 10.0.0.1 or 10.0.0.0/8)', 'spec.rules[0].to[0].operation.ports[0]: "http" is not a port; use a number from 0 to 65535, as a string']],
    ['empty from list', { rules: [{ from: [] }] }, ['spec.rules[0].from: must not be an empty list; remove it to match any source']],
    ['empty source', { rules: [{ from: [{ source: {} }] }] }, ['spec.rules[0].from[0].source: must not be empty; name at least one of principals, namespaces, serviceAccounts, ipBlocks (or their not… forms), or drop the source']],
    ['selector and targetRefs', { selector: { matchLabels: { a: 'b' } }, targetRefs: [{ kind: 'Service', group: '', name: 'x' }], rules: [{}] }, ['spec: set only one of selector or targetRefs']],
    ['gateway target', { targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'w' }] }, ['spec.targetRefs[0]: targets gateway.networking.k8s.io/Gateway, which Ambit cannot enforce; target a Service (group "", kind Service) or use spec.selector']],
    ['wildcard selector', { selector: { matchLabels: { app: 'web*' } } }, ['spec.selector.matchLabels.app: wildcards are not supported in selectors ("app=web*"); list exact label values']],
    ['condition without values, unknown key', { rules: [{ when: [{ key: 'source.color' }] }] }, ['spec.rules[0].when[0].key: "source.color" is not a supported attribute; see the list of condition keys (source.ip, source.namespace, source.principal, destination.port, request.headers[<name>], …)', 'spec.rules[0].when[0]: set at least one of values or notValues for key source.color']],
    ['serviceAccounts with principals', { rules: [{ from: [{ source: { principals: ['a'], serviceAccounts: ['ns/sa'] } }] }] }, ['spec.rules[0].from[0].source: cannot set serviceAccounts together with namespaces or principals; use one form']],
    ['CUSTOM with principals', { action: 'CUSTOM', provider: { name: 'e' }, rules: [{ from: [{ source: { principals: ['a'] } }] }] }, ['spec.rules[0].from[0].source.principals: is not supported with the CUSTOM action; use ipBlocks or a DENY/ALLOW policy']],
  ];
  for (const [name, spec, want] of cases) {
    const r = parseAuthorizationPolicy(ap(spec));
    assert.equal(r.ok, false, name);
    if (!r.ok) assert.deepEqual(r.problems.list.map((p) => `${p.field}: ${p.message}`), want, name);
  }
});

test('PeerAuthentication: valid and invalid', () => {
  const pa = (spec: unknown): KubeObject => ({ metadata: { name: 'd', namespace: 'shop', creationTimestamp: 't1' }, spec });
  const ok = parsePeerAuthentication(pa({ selector: { matchLabels: { app: 'db' } }, mtls: { mode: 'STRICT' }, portLevelMtls: { '9000': { mode: 'DISABLE' }, '80': {} } }));
  assert.ok(ok.ok);
  assert.deepEqual(ok.value, { key: 'shop/d', namespace: 'shop', name: 'd', createdAt: 't1', selector: { app: 'db' }, mode: 'STRICT', portModes: { '80': 'UNSET', '9000': 'DISABLE' } });
  const cases: [unknown, string[]][] = [
    [{ mtls: { mode: 'ON' } }, ['spec.mtls.mode: "ON" is not a mode; use one of UNSET, DISABLE, PERMISSIVE, STRICT']],
    [{ portLevelMtls: { '80': { mode: 'STRICT' } } }, ['spec.portLevelMtls: a mesh- or namespace-wide PeerAuthentication cannot have port-level mTLS; add spec.selector to name the workloads']],
    [{ selector: { matchLabels: { a: 'b' } }, portLevelMtls: {} }, ['spec.portLevelMtls: must have at least one port when present; remove it otherwise']],
    [{ selector: { matchLabels: { a: 'b' } }, portLevelMtls: { '0': { mode: 'STRICT' } } }, ['spec.portLevelMtls.0: the port must be a number from 1 to 65535']],
  ];
  for (const [spec, want] of cases) {
    const r = parsePeerAuthentication(pa(spec));
    assert.equal(r.ok, false);
    if (!r.ok) assert.deepEqual(r.problems.list.map((p) => `${p.field}: ${p.message}`), want);
  }
});

test('which workloads an AuthorizationPolicy applies to', () => {
  const w = { namespace: 'shop', labels: { app: 'web' }, services: ['shop/web'] };
  const parsed = (spec: unknown, ns = 'shop') => {
    const r = parseAuthorizationPolicy(ap(spec, ns));
    assert.ok(r.ok);
    return r.value;
  };
  const cases: [string, unknown, string, boolean][] = [
    ['namespace-wide, same namespace', {}, 'shop', true],
    ['namespace-wide, other namespace', {}, 'bank', false],
    ['selector matches', { selector: { matchLabels: { app: 'web' } } }, 'shop', true],
    ['selector misses', { selector: { matchLabels: { app: 'db' } } }, 'shop', false],
    ['root namespace, no selector: mesh-wide', {}, 'ambit-system', true],
    ['root namespace selector matches in every namespace', { selector: { matchLabels: { app: 'web' } } }, 'ambit-system', true],
    ['Service target the workload belongs to', { targetRefs: [{ group: '', kind: 'Service', name: 'web' }] }, 'shop', true],
    ['Service target it does not belong to', { targetRefs: [{ group: '', kind: 'Service', name: 'db' }] }, 'shop', false],
  ];
  for (const [name, spec, ns, want] of cases) assert.equal(authorizationPolicyApplies(parsed(spec, ns), w, 'ambit-system'), want, name);
});

test('effective mTLS: workload > namespace > mesh, UNSET inherits, oldest wins, port overrides', () => {
  const mk = (key: string, ns: string, mode: PeerAuthentication['mode'], extra: Partial<PeerAuthentication> = {}): PeerAuthentication => ({ key, namespace: ns, name: key, createdAt: extra.createdAt ?? '2026-01-01', mode, ...extra });
  const w = { namespace: 'shop', labels: { app: 'db' }, services: [] };
  const root = 'ambit-system';
  const cases: [string, PeerAuthentication[], unknown][] = [
    ['nothing: PERMISSIVE', [], { mode: 'PERMISSIVE', ports: {} }],
    ['mesh STRICT', [mk('m', root, 'STRICT')], { mode: 'STRICT', ports: {} }],
    ['namespace overrides mesh', [mk('m', root, 'STRICT'), mk('n', 'shop', 'PERMISSIVE')], { mode: 'PERMISSIVE', ports: {} }],
    ['workload UNSET inherits namespace', [mk('n', 'shop', 'DISABLE'), mk('w', 'shop', 'UNSET', { selector: { app: 'db' } })], { mode: 'DISABLE', ports: {} }],
    ['workload wins, port level differs', [mk('m', root, 'PERMISSIVE'), mk('w', 'shop', 'STRICT', { selector: { app: 'db' }, portModes: { '9000': 'DISABLE', '80': 'STRICT', '81': 'UNSET' } })], { mode: 'STRICT', ports: { '9000': 'DISABLE' } }],
    ['oldest namespace policy wins', [mk('b', 'shop', 'DISABLE', { createdAt: '2026-02-01' }), mk('a', 'shop', 'STRICT', { createdAt: '2026-03-01' })], { mode: 'DISABLE', ports: {} }],
    ['other namespace ignored', [mk('x', 'bank', 'STRICT')], { mode: 'PERMISSIVE', ports: {} }],
  ];
  for (const [name, pas, want] of cases) assert.deepEqual(effectiveMtls(w, pas, root), want, name);
  assert.equal(peerAuthenticationApplies(mk('m', root, 'STRICT'), w, root), true);
  assert.equal(peerAuthenticationApplies(mk('w', 'shop', 'STRICT', { selector: { app: 'web' } }), w, root), false);
});

test('isIpOrCidr', () => {
  const cases: [string, boolean][] = [['10.0.0.1', true], ['10.0.0.0/8', true], ['::1', true], ['fd00::/64', true], ['10.0.0.0/33', false], ['10.0.0', false], ['a/b/c', false], ['', false]];
  for (const [s, want] of cases) assert.equal(isIpOrCidr(s), want, s);
});
