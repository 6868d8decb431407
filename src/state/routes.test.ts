import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMeshRoute, parseRoute, type RouteKind } from './routes.js';
import type { KubeObject } from './objects.js';

const route = (spec: unknown): KubeObject => ({ metadata: { name: 'r', namespace: 'shop' }, spec });
const svcParent = { group: '', kind: 'Service', name: 'web', port: 80 };

test('HTTPRoute: defaults and normalisation', () => {
  const r = parseRoute('HTTPRoute', route({ parentRefs: [svcParent, { name: 'gw' }], rules: [{ backendRefs: [{ name: 'web-v2', port: 80 }] }] }));
  assert.ok(r.ok, r.ok ? '' : r.problems.message());
  assert.deepEqual(r.value, {
    key: 'HTTPRoute/shop/r',
    kind: 'HTTPRoute',
    namespace: 'shop',
    name: 'r',
    parents: [{ service: 'shop/web', port: 80 }], // the Gateway parent is not the mesh's
    hostnames: [],
    rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/' } }], filters: [], backends: [{ service: 'shop/web-v2', port: 80, weight: 1 }] }],
  });
  assert.equal(isMeshRoute(route({ parentRefs: [{ name: 'gw' }] })), false);
  assert.equal(isMeshRoute(route({ parentRefs: [svcParent] })), true);
});

test('GRPCRoute: method match and filters', () => {
  const r = parseRoute('GRPCRoute', route({ parentRefs: [svcParent], rules: [{ matches: [{ method: { service: 'pkg.Greeter', method: 'Hello' } }], filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x', value: '1' }] } }], backendRefs: [{ name: 'web', port: 9090 }] }] }));
  assert.ok(r.ok, r.ok ? '' : r.problems.message());
  assert.deepEqual(r.value.rules[0]!.matches, [{ method: { type: 'Exact', service: 'pkg.Greeter', method: 'Hello' } }]);
  assert.equal(r.value.rules[0]!.filters[0]!.type, 'RequestHeaderModifier');
});

test('routes: every problem reported, with the fix', () => {
  const cases: [RouteKind, unknown, string[]][] = [
    ['HTTPRoute', { parentRefs: [svcParent], rules: [{ matches: [{ path: { type: 'Exact', value: 'api' } }] }] }, ['spec.rules[0].matches[0].path.value: "api" must be an absolute path starting with "/"']],
    ['HTTPRoute', { parentRefs: [svcParent], rules: [{ backendRefs: [{ name: 'web' }] }] }, ['spec.rules[0].backendRefs[0].port: is required for a Service backend']],
    ['HTTPRoute', { parentRefs: [svcParent], rules: [{ backendRefs: [{ name: 'web', port: 80, namespace: 'bank' }] }] }, ['spec.rules[0].backendRefs[0].namespace: a backend in another namespace ("bank") needs a ReferenceGrant, which Ambit does not support yet; route to a Service in "shop"']],
    ['HTTPRoute', { parentRefs: [svcParent], rules: [{ backendRefs: [{ name: 'web', port: 80, weight: -1 }], timeouts: { request: '10 seconds' } }] }, ['spec.rules[0].backendRefs[0].weight: -1 is not a weight; use an integer from 0 to 1000000', 'spec.rules[0].timeouts.request: "10 seconds" is not a duration; write it like "10s", "1m30s" or "500ms"']],
    ['HTTPRoute', { parentRefs: [svcParent], rules: [{ matches: [{ method: 'FETCH', headers: [{ name: 'bad header', value: 'x' }] }] }] }, ['spec.rules[0].matches[0].headers[0].name: "bad header" is not a valid HTTP header name', 'spec.rules[0].matches[0].method: "FETCH" is not a method; use one of GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH']],
    ['HTTPRoute', { parentRefs: [svcParent], rules: [{ filters: [{ type: 'RequestRedirect', requestRedirect: {} }, { type: 'URLRewrite', urlRewrite: {} }, { type: 'ExtensionRef' }] }] }, ['spec.rules[0].filters[2].type: "ExtensionRef" is not a filter Ambit supports on a HTTPRoute; use one of RequestHeaderModifier, ResponseHeaderModifier, RequestMirror, RequestRedirect, URLRewrite', 'spec.rules[0].filters: a rule may have RequestRedirect or URLRewrite, not both']],
    ['GRPCRoute', { parentRefs: [svcParent], rules: [{ matches: [{ method: {} }] }] }, ['spec.rules[0].matches[0].method: set service, method or both']],
    ['GRPCRoute', { parentRefs: [svcParent], rules: [{ matches: [{ method: { service: 'a b' } }], filters: [{ type: 'URLRewrite', urlRewrite: {} }] }] }, ['spec.rules[0].matches[0].method.service: "a b" is not a valid gRPC service name', 'spec.rules[0].filters[0].type: "URLRewrite" is not a filter Ambit supports on a GRPCRoute; use one of RequestHeaderModifier, ResponseHeaderModifier, RequestMirror']],
    ['HTTPRoute', { parentRefs: [{ group: 'x', kind: 'Service', name: 'web' }], hostnames: ['Web.Example'] }, ['spec.parentRefs[0].group: a Service parent must have group "" (found "x")', 'spec.hostnames[0]: "Web.Example" is not a hostname (lower-case DNS name, optionally starting with "*.")']],
  ];
  for (const [kind, spec, want] of cases) {
    const r = parseRoute(kind, route(spec));
    assert.equal(r.ok, false, JSON.stringify(spec));
    if (!r.ok) assert.deepEqual(r.problems.list.map((p) => `${p.field}: ${p.message}`), want);
  }
});
