import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bootstrapClusterRoleBindings, bootstrapClusterRoles, bootstrapRbacObjects } from './bootstrap.js';
import { authorize, type AuthorizationAttributes, type RbacStore, type RoleBinding } from './rbac.js';
import { serviceAccountUser, type UserInfo } from './tokens.js';

const { clusterRoles, clusterRoleBindings } = bootstrapRbacObjects();

function storeWith(extraBindings: RoleBinding[] = []): RbacStore {
  return {
    roles: () => [],
    clusterRoles: () => clusterRoles,
    roleBindings: (ns) => extraBindings.filter((b) => b.metadata.namespace === ns),
    clusterRoleBindings: () => clusterRoleBindings,
  };
}

test('every bootstrap object carries the bootstrapping label and autoupdate annotation', () => {
  for (const obj of [...bootstrapClusterRoles(), ...bootstrapClusterRoleBindings()]) {
    assert.equal(obj.apiVersion, 'rbac.authorization.k8s.io/v1');
    assert.equal(obj.metadata.labels?.['kubernetes.io/bootstrapping'], 'rbac-defaults', obj.metadata.name);
    assert.equal(obj.metadata.annotations?.['rbac.authorization.kubernetes.io/autoupdate'], 'true', obj.metadata.name);
  }
});

test('every binding points at a bootstrap role; names are unique', () => {
  const names = new Set(clusterRoles.map((r) => r.metadata.name));
  assert.equal(names.size, clusterRoles.length);
  for (const b of clusterRoleBindings) assert.ok(names.has(b.roleRef.name), b.roleRef.name);
});

test('aggregated roles: admin ⊇ edit ⊇ view, with their labels and selectors', () => {
  const byName = (n: string) => clusterRoles.find((r) => r.metadata.name === n)!;
  assert.deepEqual(byName('admin').aggregationRule, { clusterRoleSelectors: [{ matchLabels: { 'rbac.authorization.k8s.io/aggregate-to-admin': 'true' } }] });
  assert.equal(byName('edit').metadata.labels?.['rbac.authorization.k8s.io/aggregate-to-admin'], 'true');
  assert.equal(byName('view').metadata.labels?.['rbac.authorization.k8s.io/aggregate-to-edit'], 'true');
  const keys = (n: string) => new Set(byName(n).rules!.map((r) => JSON.stringify(r)));
  const [admin, edit, view] = [keys('admin'), keys('edit'), keys('view')];
  assert.ok(view.size > 0);
  for (const r of view) assert.ok(edit.has(r));
  for (const r of edit) assert.ok(admin.has(r));
  assert.ok(admin.size > edit.size && edit.size > view.size);
  // the raw bootstrap roles start empty, as the real ones do before the controller runs
  assert.deepEqual(bootstrapClusterRoles().find((r) => r.metadata.name === 'admin')!.rules, []);
});

test('rule lists are sorted like the real policy builder', () => {
  for (const role of clusterRoles) {
    for (const rule of role.rules ?? []) {
      for (const list of [rule.verbs, rule.apiGroups, rule.resources, rule.nonResourceURLs]) {
        if (list) assert.deepEqual(list, [...list].sort(), role.metadata.name);
      }
    }
  }
});

const authn: UserInfo = { username: 'alice', groups: ['system:authenticated'] };
const anon: UserInfo = { username: 'system:anonymous', groups: ['system:unauthenticated'] };
const master: UserInfo = { username: 'kubernetes-admin', groups: ['system:masters', 'system:authenticated'] };
const sa = serviceAccountUser('shop', 'web');
const res = (user: UserInfo, verb: string, resource: string, extra: Partial<AuthorizationAttributes> = {}): AuthorizationAttributes => ({
  user,
  verb,
  isResourceRequest: true,
  apiGroup: '',
  resource,
  ...extra,
});
const url = (user: UserInfo, verb: string, path: string): AuthorizationAttributes => ({ user, verb, isResourceRequest: false, path });

test('what the defaults allow, table', () => {
  const viewBinding: RoleBinding = {
    kind: 'RoleBinding',
    metadata: { name: 'web-view', namespace: 'shop' },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'view' },
    subjects: [{ kind: 'ServiceAccount', name: 'web', namespace: 'shop' }],
  };
  const s = storeWith([viewBinding]);
  const cases: [string, AuthorizationAttributes, boolean][] = [
    ['discovery for authenticated', url(authn, 'get', '/apis/apps/v1'), true],
    ['discovery not for anonymous', url(anon, 'get', '/apis'), false],
    ['version for anonymous', url(anon, 'get', '/version'), true],
    ['healthz for anonymous', url(anon, 'get', '/readyz'), true],
    ['no metrics for plain users', url(authn, 'get', '/metrics'), false],
    ['SSAR for authenticated', res(authn, 'create', 'selfsubjectaccessreviews', { apiGroup: 'authorization.k8s.io' }), true],
    ['SSRR for authenticated', res(authn, 'create', 'selfsubjectrulesreviews', { apiGroup: 'authorization.k8s.io' }), true],
    ['whoami for authenticated', res(authn, 'create', 'selfsubjectreviews', { apiGroup: 'authentication.k8s.io' }), true],
    ['no pods for plain users', res(authn, 'list', 'pods', { namespace: 'shop' }), false],
    ['masters can do anything', res(master, 'delete', 'nodes', { name: 'n' }), true],
    ['OIDC discovery for service accounts', url(sa, 'get', '/openid/v1/jwks'), true],
    ['view: list pods in its namespace', res(sa, 'list', 'pods', { namespace: 'shop' }), true],
    ['view: pod logs', res(sa, 'get', 'pods', { subresource: 'log', name: 'p', namespace: 'shop' }), true],
    ['view: deployments', res(sa, 'watch', 'deployments', { apiGroup: 'apps', namespace: 'shop' }), true],
    ['view: no secrets', res(sa, 'get', 'secrets', { namespace: 'shop' }), false],
    ['view: no exec', res(sa, 'create', 'pods', { subresource: 'exec', namespace: 'shop' }), false],
    ['view: no writes', res(sa, 'delete', 'pods', { namespace: 'shop' }), false],
    ['view: only its namespace', res(sa, 'list', 'pods', { namespace: 'prod' }), false],
  ];
  for (const [name, attrs, want] of cases) assert.equal(authorize(attrs, s).allowed, want, name);
});

test('allowed-by reason names the bootstrap binding', () => {
  assert.equal(
    authorize(url(anon, 'get', '/version'), storeWith()).reason,
    'RBAC: allowed by ClusterRoleBinding "system:public-info-viewer" of ClusterRole "system:public-info-viewer" to Group "system:unauthenticated"',
  );
});
