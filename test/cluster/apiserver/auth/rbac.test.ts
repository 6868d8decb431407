import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  aggregateClusterRoles,
  aggregationUpdates,
  attributesFromAccessReviewSpec,
  authorize,
  forbiddenError,
  forbiddenMessage,
  labelSelectorMatches,
  resourceRulesFor,
  subjectAccessReviewStatus,
  userFromAccessReviewSpec,
  type AuthorizationAttributes,
  type ClusterRole,
  type PolicyRule,
  type RbacStore,
  type Role,
  type RoleBinding,
  type Subject,
} from './rbac.js';
import { serviceAccountUser, type UserInfo } from './tokens.js';

const G = 'rbac.authorization.k8s.io';

function role(name: string, namespace: string, rules: PolicyRule[]): Role {
  return { kind: 'Role', metadata: { name, namespace }, rules };
}
function clusterRole(name: string, rules: PolicyRule[], labels?: Record<string, string>): ClusterRole {
  return { kind: 'ClusterRole', metadata: labels ? { name, labels } : { name }, rules };
}
function binding(name: string, namespace: string | undefined, roleKind: string, roleName: string, subjects: Subject[]): RoleBinding {
  return {
    kind: namespace ? 'RoleBinding' : 'ClusterRoleBinding',
    metadata: namespace ? { name, namespace } : { name },
    roleRef: { apiGroup: G, kind: roleKind, name: roleName },
    subjects,
  };
}
function store(objs: { roles?: Role[]; clusterRoles?: ClusterRole[]; roleBindings?: RoleBinding[]; clusterRoleBindings?: RoleBinding[] }): RbacStore {
  return {
    roles: (ns) => (objs.roles ?? []).filter((r) => r.metadata.namespace === ns),
    clusterRoles: () => objs.clusterRoles ?? [],
    roleBindings: (ns) => (objs.roleBindings ?? []).filter((r) => r.metadata.namespace === ns),
    clusterRoleBindings: () => objs.clusterRoleBindings ?? [],
  };
}

const alice: UserInfo = { username: 'alice', groups: ['dev', 'system:authenticated'] };
const sa = serviceAccountUser('shop', 'web', 'u1');
const otherSa = serviceAccountUser('other', 'web', 'u2');
const admin: UserInfo = { username: 'root', groups: ['system:masters', 'system:authenticated'] };

const world = store({
  roles: [
    role('pod-reader', 'shop', [{ verbs: ['get', 'list', 'watch'], apiGroups: [''], resources: ['pods'] }]),
    role('one-cm', 'shop', [{ verbs: ['get', 'update'], apiGroups: [''], resources: ['configmaps'], resourceNames: ['settings'] }]),
    role('logs', 'shop', [{ verbs: ['get'], apiGroups: [''], resources: ['pods/log'] }]),
  ],
  clusterRoles: [
    clusterRole('deploy-admin', [{ verbs: ['*'], apiGroups: ['apps'], resources: ['deployments', 'deployments/scale'] }]),
    clusterRole('scaler', [{ verbs: ['get', 'update', 'patch'], apiGroups: ['*'], resources: ['*/scale'] }]),
    clusterRole('everything', [{ verbs: ['*'], apiGroups: ['*'], resources: ['*'] }]),
    clusterRole('metrics', [{ verbs: ['get'], nonResourceURLs: ['/metrics', '/debug/*'] }]),
    clusterRole('node-reader', [{ verbs: ['get', 'list'], apiGroups: [''], resources: ['nodes'] }]),
  ],
  roleBindings: [
    binding('read-pods', 'shop', 'Role', 'pod-reader', [{ kind: 'ServiceAccount', name: 'web' }]),
    binding('settings', 'shop', 'Role', 'one-cm', [{ kind: 'User', apiGroup: G, name: 'alice' }]),
    binding('dev-logs', 'shop', 'Role', 'logs', [{ kind: 'Group', apiGroup: G, name: 'dev' }]),
    binding('deployers', 'shop', 'ClusterRole', 'deploy-admin', [{ kind: 'ServiceAccount', name: 'web', namespace: 'shop' }]),
    binding('dangling', 'shop', 'Role', 'gone', [{ kind: 'User', apiGroup: G, name: 'bob' }]),
    binding('dangling-cr', 'shop', 'ClusterRole', 'gone-too', [{ kind: 'User', apiGroup: G, name: 'bob' }]),
  ],
  clusterRoleBindings: [
    binding('scalers', undefined, 'ClusterRole', 'scaler', [{ kind: 'Group', apiGroup: G, name: 'dev' }]),
    binding('monitoring', undefined, 'ClusterRole', 'metrics', [{ kind: 'ServiceAccount', name: 'web', namespace: 'other' }]),
    binding('nodes', undefined, 'ClusterRole', 'node-reader', [
      { kind: 'User', apiGroup: G, name: 'nobody' },
      { kind: 'Group', apiGroup: G, name: 'system:serviceaccounts:shop' },
    ]),
    // a ServiceAccount subject without namespace never matches in a cluster role binding
    binding('broken-sa', undefined, 'ClusterRole', 'everything', [{ kind: 'ServiceAccount', name: 'web' }]),
  ],
});

function res(user: UserInfo, verb: string, resource: string, extra: Partial<AuthorizationAttributes> = {}): AuthorizationAttributes {
  return { user, verb, isResourceRequest: true, apiGroup: '', resource, ...extra };
}
function url(user: UserInfo, verb: string, path: string): AuthorizationAttributes {
  return { user, verb, isResourceRequest: false, path };
}

test('authorize: table', () => {
  const cases: { name: string; attrs: AuthorizationAttributes; allowed: boolean; reason?: string }[] = [
    {
      name: 'SA via RoleBinding to Role, subject namespace defaulted',
      attrs: res(sa, 'list', 'pods', { namespace: 'shop' }),
      allowed: true,
      reason: 'RBAC: allowed by RoleBinding "read-pods/shop" of Role "pod-reader" to ServiceAccount "web/shop"',
    },
    { name: 'Role verbs are limited', attrs: res(sa, 'delete', 'pods', { namespace: 'shop' }), allowed: false },
    { name: 'RoleBinding does not reach other namespaces', attrs: res(sa, 'list', 'pods', { namespace: 'prod' }), allowed: false },
    { name: 'RoleBinding does not grant cluster-wide', attrs: res(sa, 'list', 'pods'), allowed: false },
    { name: 'SA of the same name in another namespace', attrs: res(otherSa, 'list', 'pods', { namespace: 'shop' }), allowed: false },
    {
      name: 'RoleBinding to ClusterRole, in its namespace',
      attrs: res(sa, 'delete', 'deployments', { apiGroup: 'apps', namespace: 'shop', name: 'web' }),
      allowed: true,
      reason: 'RBAC: allowed by RoleBinding "deployers/shop" of ClusterRole "deploy-admin" to ServiceAccount "web/shop"',
    },
    { name: 'RoleBinding to ClusterRole, other namespace', attrs: res(sa, 'delete', 'deployments', { apiGroup: 'apps', namespace: 'x' }), allowed: false },
    { name: 'API group must match', attrs: res(sa, 'get', 'deployments', { apiGroup: 'extensions', namespace: 'shop' }), allowed: false },
    { name: 'explicit subresource', attrs: res(sa, 'update', 'deployments', { apiGroup: 'apps', subresource: 'scale', namespace: 'shop' }), allowed: true },
    { name: 'resource rule does not cover subresource', attrs: res(sa, 'get', 'pods', { subresource: 'log', namespace: 'shop' }), allowed: false },
    { name: 'pods/log rule', attrs: res(alice, 'get', 'pods', { subresource: 'log', namespace: 'shop', name: 'web-0' }), allowed: true },
    { name: 'pods/log rule is not pods', attrs: res(alice, 'get', 'pods', { namespace: 'shop', name: 'web-0' }), allowed: false },
    {
      name: '*/scale via group in ClusterRoleBinding, any namespace',
      attrs: res(alice, 'patch', 'statefulsets', { apiGroup: 'apps', subresource: 'scale', namespace: 'prod' }),
      allowed: true,
      reason: 'RBAC: allowed by ClusterRoleBinding "scalers" of ClusterRole "scaler" to Group "dev"',
    },
    { name: '*/scale is not the resource itself', attrs: res(alice, 'get', 'statefulsets', { apiGroup: 'apps', namespace: 'prod' }), allowed: false },
    { name: '*/scale is not other subresources', attrs: res(alice, 'get', 'statefulsets', { apiGroup: 'apps', subresource: 'status', namespace: 'prod' }), allowed: false },
    { name: 'resourceNames match', attrs: res(alice, 'update', 'configmaps', { namespace: 'shop', name: 'settings' }), allowed: true },
    { name: 'resourceNames other name', attrs: res(alice, 'update', 'configmaps', { namespace: 'shop', name: 'other' }), allowed: false },
    { name: 'resourceNames exclude list (no name)', attrs: res(alice, 'get', 'configmaps', { namespace: 'shop' }), allowed: false },
    {
      name: 'group subject in ClusterRoleBinding, second subject',
      attrs: res(sa, 'list', 'nodes'),
      allowed: true,
      reason: 'RBAC: allowed by ClusterRoleBinding "nodes" of ClusterRole "node-reader" to Group "system:serviceaccounts:shop"',
    },
    {
      name: 'nonResourceURL exact, SA with namespace in ClusterRoleBinding',
      attrs: url(otherSa, 'get', '/metrics'),
      allowed: true,
      reason: 'RBAC: allowed by ClusterRoleBinding "monitoring" of ClusterRole "metrics" to ServiceAccount "web/other"',
    },
    { name: 'nonResourceURL prefix', attrs: url(otherSa, 'get', '/debug/pprof/heap'), allowed: true },
    { name: 'nonResourceURL prefix needs the prefix', attrs: url(otherSa, 'get', '/debugger'), allowed: false },
    { name: 'nonResourceURL verb', attrs: url(otherSa, 'post', '/metrics'), allowed: false },
    { name: 'nonResourceURL other path', attrs: url(otherSa, 'get', '/metrics/slis'), allowed: false },
    { name: 'system:masters allowed anything, no reason', attrs: res(admin, 'delete', 'nodes', { name: 'n1' }), allowed: true, reason: '' },
    { name: 'system:masters non-resource', attrs: url(admin, 'get', '/anything'), allowed: true, reason: '' },
    { name: 'unbound user', attrs: res({ username: 'eve', groups: [] }, 'get', 'pods', { namespace: 'shop' }), allowed: false, reason: '' },
    {
      name: 'missing roles are the deny reason',
      attrs: res({ username: 'bob', groups: [] }, 'get', 'pods', { namespace: 'shop' }),
      allowed: false,
      reason: 'RBAC: [role.rbac.authorization.k8s.io "gone" not found, clusterrole.rbac.authorization.k8s.io "gone-too" not found]',
    },
  ];
  for (const c of cases) {
    const got = authorize(c.attrs, world);
    assert.equal(got.allowed, c.allowed, c.name);
    if (c.reason !== undefined) assert.equal(got.reason, c.reason, c.name);
  }
});

test('authorize: wildcards', () => {
  const s = store({
    clusterRoles: [clusterRole('all', [{ verbs: ['*'], apiGroups: ['*'], resources: ['*'] }])],
    roleBindings: [binding('all', 'ns', 'ClusterRole', 'all', [{ kind: 'User', apiGroup: G, name: 'alice' }])],
  });
  assert.equal(authorize(res(alice, 'escalate', 'roles', { apiGroup: G, namespace: 'ns' }), s).allowed, true);
  assert.equal(authorize(res(alice, 'get', 'pods', { subresource: 'exec', namespace: 'ns' }), s).allowed, true, '"*" covers subresources');
  assert.equal(authorize(url(alice, 'get', '/healthz'), s).allowed, false, 'resource rules never grant URLs');
});

test('resourceRulesFor: rules of cluster and namespace bindings, split', () => {
  const status = resourceRulesFor(alice, 'shop', world);
  assert.deepEqual(status, {
    resourceRules: [
      { verbs: ['get', 'update', 'patch'], apiGroups: ['*'], resources: ['*/scale'] },
      { verbs: ['get', 'update'], apiGroups: [''], resources: ['configmaps'], resourceNames: ['settings'] },
      { verbs: ['get'], apiGroups: [''], resources: ['pods/log'] },
    ],
    nonResourceRules: [],
    incomplete: false,
  });
  assert.deepEqual(resourceRulesFor(otherSa, 'default', world).nonResourceRules, [{ verbs: ['get'], nonResourceURLs: ['/metrics', '/debug/*'] }]);
  assert.equal(
    resourceRulesFor({ username: 'bob', groups: [] }, 'shop', world).evaluationError,
    '[role.rbac.authorization.k8s.io "gone" not found, clusterrole.rbac.authorization.k8s.io "gone-too" not found]',
  );
});

test('forbiddenMessage: variants', () => {
  const u: UserInfo = serviceAccountUser('ns', 'sa');
  const cases: [AuthorizationAttributes, string, string][] = [
    [
      res(u, 'list', 'pods', { namespace: 'ns' }),
      '',
      'pods is forbidden: User "system:serviceaccount:ns:sa" cannot list resource "pods" in API group "" in the namespace "ns"',
    ],
    [
      res(u, 'list', 'nodes'),
      '',
      'nodes is forbidden: User "system:serviceaccount:ns:sa" cannot list resource "nodes" in API group "" at the cluster scope',
    ],
    [
      res(u, 'get', 'pods', { namespace: 'ns', name: 'x' }),
      '',
      'pods "x" is forbidden: User "system:serviceaccount:ns:sa" cannot get resource "pods" in API group "" in the namespace "ns"',
    ],
    [
      res(u, 'get', 'pods', { namespace: 'ns', name: 'x', subresource: 'log' }),
      '',
      'pods "x" is forbidden: User "system:serviceaccount:ns:sa" cannot get resource "pods/log" in API group "" in the namespace "ns"',
    ],
    [
      res(u, 'patch', 'deployments', { apiGroup: 'apps', namespace: 'ns', name: 'web', subresource: 'scale' }),
      '',
      'deployments.apps "web" is forbidden: User "system:serviceaccount:ns:sa" cannot patch resource "deployments/scale" in API group "apps" in the namespace "ns"',
    ],
    [url({ username: 'x', groups: [] }, 'get', '/metrics'), '', 'forbidden: User "x" cannot get path "/metrics"'],
    [url({ username: 'system:anonymous', groups: [] }, 'get', '/<x>'), '', 'forbidden: User "system:anonymous" cannot get path "/&lt;x&gt;"'],
    [
      res(u, 'get', 'secrets', { namespace: 'ns' }),
      'RBAC: role.rbac.authorization.k8s.io "gone" not found',
      'secrets is forbidden: User "system:serviceaccount:ns:sa" cannot get resource "secrets" in API group "" in the namespace "ns": RBAC: role.rbac.authorization.k8s.io "gone" not found',
    ],
  ];
  for (const [attrs, reason, want] of cases) assert.equal(forbiddenMessage(attrs, reason), want);
});

test('forbiddenError: a 403 Status with details', () => {
  const status = forbiddenError(res(alice, 'get', 'deployments', { apiGroup: 'apps', namespace: 'ns', name: 'web' })).toStatus();
  assert.equal(status.code, 403);
  assert.equal(status.reason, 'Forbidden');
  assert.deepEqual(status.details, { name: 'web', kind: 'deployments', group: 'apps' });
  assert.deepEqual(forbiddenError(res(alice, 'list', 'pods', { namespace: 'ns' })).toStatus().details, { kind: 'pods' });
  assert.deepEqual(forbiddenError(url(alice, 'get', '/x')).toStatus().details, {});
});

test('SubjectAccessReview helpers', () => {
  const spec = { user: 'system:serviceaccount:shop:web', groups: ['system:serviceaccounts:shop'], resourceAttributes: { verb: 'list', resource: 'pods', namespace: 'shop' } };
  const user = userFromAccessReviewSpec(spec);
  assert.deepEqual(user, { username: 'system:serviceaccount:shop:web', groups: ['system:serviceaccounts:shop'] });
  const attrs = attributesFromAccessReviewSpec(spec, user);
  assert.equal(attrs.isResourceRequest, true);
  assert.equal(attrs.apiGroup, '');
  assert.deepEqual(subjectAccessReviewStatus(authorize(attrs, world)), {
    allowed: true,
    reason: 'RBAC: allowed by RoleBinding "read-pods/shop" of Role "pod-reader" to ServiceAccount "web/shop"',
  });
  const nonRes = attributesFromAccessReviewSpec({ nonResourceAttributes: { path: '/metrics', verb: 'get' } }, user);
  assert.deepEqual(subjectAccessReviewStatus(authorize(nonRes, world)), { allowed: false });
});

test('labelSelectorMatches: table', () => {
  const labels = { a: '1', b: '2' };
  const cases: [Parameters<typeof labelSelectorMatches>[0], boolean][] = [
    [{}, true],
    [{ matchLabels: { a: '1' } }, true],
    [{ matchLabels: { a: '2' } }, false],
    [{ matchExpressions: [{ key: 'a', operator: 'In', values: ['1', '3'] }] }, true],
    [{ matchExpressions: [{ key: 'c', operator: 'In', values: ['1'] }] }, false],
    [{ matchExpressions: [{ key: 'a', operator: 'NotIn', values: ['1'] }] }, false],
    [{ matchExpressions: [{ key: 'c', operator: 'NotIn', values: ['1'] }] }, true],
    [{ matchExpressions: [{ key: 'b', operator: 'Exists' }] }, true],
    [{ matchExpressions: [{ key: 'b', operator: 'DoesNotExist' }] }, false],
  ];
  for (const [selector, want] of cases) assert.equal(labelSelectorMatches(selector, labels), want, JSON.stringify(selector));
});

test('aggregateClusterRoles: nested aggregation to a fixed point, de-duplicated, name order', () => {
  const read: PolicyRule = { verbs: ['get'], apiGroups: [''], resources: ['pods'] };
  const write: PolicyRule = { verbs: ['create'], apiGroups: [''], resources: ['pods'] };
  const crd: PolicyRule = { verbs: ['get'], apiGroups: ['ambit.dev'], resources: ['meshpolicies'] };
  const roles: ClusterRole[] = [
    { kind: 'ClusterRole', metadata: { name: 'admin' }, aggregationRule: { clusterRoleSelectors: [{ matchLabels: { 'to-admin': 'true' } }] } },
    {
      kind: 'ClusterRole',
      metadata: { name: 'edit', labels: { 'to-admin': 'true' } },
      aggregationRule: { clusterRoleSelectors: [{ matchLabels: { 'to-edit': 'true' } }] },
    },
    {
      kind: 'ClusterRole',
      metadata: { name: 'view', labels: { 'to-edit': 'true' } },
      aggregationRule: { clusterRoleSelectors: [{ matchLabels: { 'to-view': 'true' } }] },
      rules: [],
    },
    clusterRole('z-view-bits', [read, crd], { 'to-view': 'true' }),
    clusterRole('a-view-dup', [read], { 'to-view': 'true' }),
    clusterRole('edit-bits', [write, read], { 'to-edit': 'true' }),
    clusterRole('unrelated', [{ verbs: ['*'], apiGroups: ['*'], resources: ['*'] }]),
  ];
  const out = aggregateClusterRoles(roles);
  const rulesOf = (name: string) => out.find((r) => r.metadata.name === name)!.rules;
  assert.deepEqual(rulesOf('view'), [read, crd]);
  assert.deepEqual(rulesOf('edit'), [write, read, crd]);
  assert.deepEqual(rulesOf('admin'), [write, read, crd]);
  assert.equal(out[3], roles[3], 'roles without aggregationRule are returned as they were');
  assert.deepEqual(
    aggregationUpdates(roles).map((u) => u.name),
    ['admin', 'edit', 'view'],
  );
  assert.deepEqual(aggregationUpdates(out), [], 'nothing left to do once aggregated');

  // removing a contributing role's label shrinks the aggregate
  const relabelled = out.map((r) => (r.metadata.name === 'z-view-bits' ? { ...r, metadata: { name: 'z-view-bits' } } : r));
  assert.deepEqual(aggregateClusterRoles(relabelled).find((r) => r.metadata.name === 'admin')!.rules, [write, read]);
});
