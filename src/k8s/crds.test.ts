/**
 * daemonset/10-crds.yaml judged by the real kubectl against the API test server: the four CRDs apply
 * cleanly and become established, Istio-style policies and GAMMA routes apply with their defaults,
 * the schema rejects what it can, what it stores parses as valid in the model, and the status
 * subresource carries the Accepted condition ambit-control writes (shown in `kubectl get`).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { startServer, type Kubectl } from '../../test/helpers/kubectl.js';
import { KubeConnection } from './client.js';
import { RESOURCES } from './resources.js';
import { parseAuthorizationPolicy, parsePeerAuthentication } from '../state/policy.js';
import { parseRoute } from '../state/routes.js';
import { statusFor } from '../state/status.js';
import type { KubeObject } from '../state/objects.js';

/** The repository root, from this file in src/k8s (source) or .../dist/src/k8s (compiled). */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    try {
      readFileSync(join(dir, 'daemonset', '10-crds.yaml'));
      return dir;
    } catch {
      dir = dirname(dir);
    }
  }
  throw new Error('daemonset/10-crds.yaml not found above ' + fileURLToPath(import.meta.url));
}

let kubectl: Kubectl;
let conn: KubeConnection;
let stop: () => Promise<void>;

before(async () => {
  const s = await startServer();
  kubectl = s.kubectl;
  stop = s.stop;
  conn = KubeConnection.fromKubeconfig(s.server.kubeconfig());
  const out = await kubectl.ok(['apply', '-f', join(repoRoot(), 'daemonset', '10-crds.yaml')]);
  assert.match(out, /customresourcedefinition.apiextensions.k8s.io\/authorizationpolicies.security.ambit.dev created/);
  await kubectl.ok(['wait', '--for=condition=Established', '--timeout=20s', 'crd/authorizationpolicies.security.ambit.dev', 'crd/peerauthentications.security.ambit.dev', 'crd/httproutes.gateway.networking.k8s.io', 'crd/grpcroutes.gateway.networking.k8s.io']);
  await kubectl.ok(['create', 'namespace', 'shop']);
});

after(async () => {
  await stop();
});

const POLICIES = `
apiVersion: security.ambit.dev/v1
kind: AuthorizationPolicy
metadata: {name: httpbin, namespace: shop}
spec:
  selector: {matchLabels: {app: httpbin, version: v1}}
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/default/sa/sleep"]}
    - source: {namespaces: ["test"]}
    to:
    - operation: {methods: ["GET"], paths: ["/info*"]}
    - operation: {methods: ["POST"], paths: ["/data"], ports: ["8080"]}
    when:
    - key: request.auth.claims[iss]
      values: ["https://accounts.google.com"]
---
apiVersion: security.ambit.dev/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: shop}
spec: {}
---
apiVersion: security.ambit.dev/v1
kind: PeerAuthentication
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  mtls: {mode: STRICT}
  portLevelMtls:
    9000: {mode: DISABLE}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web-split, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - matches: [{path: {value: /v2}, headers: [{name: x-canary, value: "yes"}]}]
    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-route, value: v2}]}}]
    backendRefs: [{name: web-v2, port: 80}]
    timeouts: {request: 10s}
  - backendRefs: [{name: web, port: 80, weight: 90}, {name: web-v2, port: 80, weight: 10}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: greeter, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: greeter}]
  rules:
  - matches: [{method: {service: helloworld.Greeter, method: SayHello}}]
    backendRefs: [{name: greeter-v2, port: 9090}]
`;

test('policies and routes apply, get their defaults, and parse as valid', async () => {
  const r = await kubectl.applyText(POLICIES);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /authorizationpolicy.security.ambit.dev\/httpbin created/);
  assert.match(r.stdout, /httproute.gateway.networking.k8s.io\/web-split created/);
  const get = async (kind: string, name: string): Promise<KubeObject> => JSON.parse(await kubectl.ok(['get', kind, name, '-n', 'shop', '-o', 'json'])) as KubeObject;

  const ap = await get('authorizationpolicies.security.ambit.dev', 'httpbin');
  const parsedAp = parseAuthorizationPolicy(ap);
  assert.ok(parsedAp.ok, parsedAp.ok ? '' : parsedAp.problems.message());
  assert.deepEqual(parsedAp.value.rules[0]!.to![1]!.ports, [8080]);
  const nothing = parseAuthorizationPolicy(await get('ap', 'allow-nothing'));
  assert.ok(nothing.ok);
  assert.deepEqual(nothing.value.rules, []);

  const pa = parsePeerAuthentication(await get('pa', 'db'));
  assert.ok(pa.ok, pa.ok ? '' : pa.problems.message());
  assert.deepEqual(pa.value.portModes, { '9000': 'DISABLE' });

  const route = await get('httproute', 'web-split');
  const rules = (route.spec as { rules: { matches?: { path: unknown; headers: unknown[] }[]; backendRefs: Record<string, unknown>[] }[] }).rules;
  assert.deepEqual(rules[0]!.matches![0]!.path, { type: 'PathPrefix', value: '/v2' }, 'the schema defaults the path match type');
  assert.deepEqual(rules[0]!.backendRefs[0], { group: '', kind: 'Service', name: 'web-v2', port: 80, weight: 1 }, 'and the backend group, kind and weight');
  const parsedRoute = parseRoute('HTTPRoute', route);
  assert.ok(parsedRoute.ok, parsedRoute.ok ? '' : parsedRoute.problems.message());
  assert.deepEqual(parsedRoute.value.parents, [{ service: 'shop/web', port: 80 }]);
  const grpc = parseRoute('GRPCRoute', await get('grpcroute', 'greeter'));
  assert.ok(grpc.ok, grpc.ok ? '' : grpc.problems.message());
  assert.deepEqual(grpc.value.rules[0]!.matches, [{ method: { type: 'Exact', service: 'helloworld.Greeter', method: 'SayHello' } }]);
});

test('the schema rejects what it can, with the field named', async () => {
  const cases: [string, RegExp][] = [
    ['apiVersion: security.ambit.dev/v1\nkind: AuthorizationPolicy\nmetadata: {name: bad-action, namespace: shop}\nspec: {action: PERMIT}\n', /spec.action: Unsupported value: "PERMIT": supported values: "ALLOW", "DENY", "AUDIT", "CUSTOM"/],
    ['apiVersion: security.ambit.dev/v1\nkind: PeerAuthentication\nmetadata: {name: bad-mode, namespace: shop}\nspec: {mtls: {mode: MAYBE}}\n', /spec.mtls.mode: Unsupported value: "MAYBE"/],
    ['apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: bad-weight, namespace: shop}\nspec: {parentRefs: [{group: "", kind: Service, name: web}], rules: [{backendRefs: [{name: web, port: 80, weight: -1}]}]}\n', /spec.rules\[0\].backendRefs\[0\].weight: Invalid value: -1: spec.rules\[0\].backendRefs\[0\].weight in body should be greater than or equal to 0/],
  ];
  for (const [manifest, want] of cases) {
    const r = await kubectl.applyText(manifest);
    assert.notEqual(r.code, 0, manifest);
    assert.match(r.stderr, want);
  }
});

test('status: the Accepted condition is written through the status subresource and shown by kubectl get', async () => {
  await kubectl.ok(['apply', '-f', '-'], { stdin: 'apiVersion: security.ambit.dev/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-bad, namespace: shop}\nspec: {action: DENY}\n' });
  const obj = await conn.get(RESOURCES.authorizationPolicies, 'shop', 'deny-bad');
  const parsed = parseAuthorizationPolicy(obj);
  assert.equal(parsed.ok, false, 'a DENY policy without rules passes the schema but not the model');
  const status = statusFor(obj, { kind: 'AuthorizationPolicy', namespace: 'shop', name: 'deny-bad', condition: { type: 'Accepted', status: 'False', reason: 'Invalid', message: parsed.ok ? '' : parsed.problems.message(), observedGeneration: obj.metadata.generation! } }, new Date().toISOString())!;
  await conn.patchStatus(RESOURCES.authorizationPolicies, 'shop', 'deny-bad', status);
  const table = await kubectl.ok(['get', 'ap', 'deny-bad', '-n', 'shop']);
  assert.match(table, /^NAME\s+ACTION\s+ACCEPTED\s+AGE\n/);
  assert.match(table, /deny-bad\s+DENY\s+False\s+/);
  const stored = JSON.parse(await kubectl.ok(['get', 'ap', 'deny-bad', '-n', 'shop', '-o', 'json'])) as { spec: unknown; status: { conditions: { reason: string; message: string }[] } };
  assert.deepEqual(stored.spec, { action: 'DENY' }, 'a status write leaves the spec alone');
  assert.equal(stored.status.conditions[0]!.reason, 'Invalid');
  assert.match(stored.status.conditions[0]!.message, /add an empty rule \{\} to deny every request/);

  // route status: parents[] with our controller name, valid under the route schema
  const route = await conn.get(RESOURCES.httpRoutes, 'shop', 'web-split');
  const rs = statusFor(route, { kind: 'HTTPRoute', namespace: 'shop', name: 'web-split', condition: { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'Accepted by ambit-control', observedGeneration: route.metadata.generation! } }, new Date().toISOString().replace(/\.\d+Z$/, 'Z'))!;
  const written = await conn.patchStatus(RESOURCES.httpRoutes, 'shop', 'web-split', rs);
  assert.equal(((written.status as { parents: { controllerName: string }[] }).parents[0]!).controllerName, 'ambit.dev/control');
});
