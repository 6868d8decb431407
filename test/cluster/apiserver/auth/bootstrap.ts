/**
 * The default RBAC objects kube-apiserver creates at start-up (its bootstrap policy) that kubectl and
 * users rely on: the user-facing roles cluster-admin, admin, edit and view (the last three aggregated
 * from the system:aggregate-to-* roles by label), the discovery, basic-user, public-info and monitoring
 * roles, the service-account issuer discovery role and auth-delegator, with their cluster role bindings.
 *
 * Rules are a faithful subset of the real ones. Like the real policy's rule builder, every list inside a
 * rule is sorted, and every object carries the bootstrapping label and the autoupdate annotation.
 */
import { aggregateClusterRoles, RBAC_GROUP, type ClusterRole, type PolicyRule, type RoleBinding, type Subject } from './rbac.js';
import { ALL_AUTHENTICATED, ALL_SERVICE_ACCOUNTS, ALL_UNAUTHENTICATED, SYSTEM_MASTERS } from './tokens.js';

export const BOOTSTRAP_LABELS = { 'kubernetes.io/bootstrapping': 'rbac-defaults' } as const;
export const AUTOUPDATE_ANNOTATION = 'rbac.authorization.kubernetes.io/autoupdate';

export const AGGREGATE_TO_ADMIN = 'rbac.authorization.k8s.io/aggregate-to-admin';
export const AGGREGATE_TO_EDIT = 'rbac.authorization.k8s.io/aggregate-to-edit';
export const AGGREGATE_TO_VIEW = 'rbac.authorization.k8s.io/aggregate-to-view';

const READ = ['get', 'list', 'watch'];
const WRITE = ['create', 'update', 'patch', 'delete', 'deletecollection'];
const READ_WRITE = [...READ, ...WRITE];

const core = '';
const apps = 'apps';
const authentication = 'authentication.k8s.io';
const authorization = 'authorization.k8s.io';
const autoscaling = 'autoscaling';
const batch = 'batch';
const extensions = 'extensions';
const networking = 'networking.k8s.io';
const policy = 'policy';

/** A resource rule, lists sorted as rbacv1helpers.PolicyRuleBuilder does. */
function rule(verbs: string[], groups: string[], resources: string[], names: string[] = []): PolicyRule {
  const r: PolicyRule = { verbs: sorted(verbs), apiGroups: sorted(groups), resources: sorted(resources) };
  if (names.length > 0) r.resourceNames = sorted(names);
  return r;
}

function urls(verbs: string[], paths: string[]): PolicyRule {
  return { verbs: sorted(verbs), nonResourceURLs: sorted(paths) };
}

function sorted(items: string[]): string[] {
  return [...items].sort();
}

function clusterRole(name: string, spec: { rules?: PolicyRule[]; labels?: Record<string, string>; aggregateFrom?: string }): ClusterRole {
  const role: ClusterRole = {
    apiVersion: `${RBAC_GROUP}/v1`,
    kind: 'ClusterRole',
    metadata: {
      name,
      labels: { ...BOOTSTRAP_LABELS, ...(spec.labels ?? {}) },
      annotations: { [AUTOUPDATE_ANNOTATION]: 'true' },
    },
  };
  if (spec.aggregateFrom) {
    role.aggregationRule = { clusterRoleSelectors: [{ matchLabels: { [spec.aggregateFrom]: 'true' } }] };
  }
  // Aggregated roles start without rules: the aggregation controller fills them.
  role.rules = spec.rules ?? [];
  return role;
}

function clusterRoleBinding(roleName: string, subjects: Subject[]): RoleBinding {
  return {
    apiVersion: `${RBAC_GROUP}/v1`,
    kind: 'ClusterRoleBinding',
    metadata: {
      name: roleName,
      labels: { ...BOOTSTRAP_LABELS },
      annotations: { [AUTOUPDATE_ANNOTATION]: 'true' },
    },
    roleRef: { apiGroup: RBAC_GROUP, kind: 'ClusterRole', name: roleName },
    subjects,
  };
}

function groups(...names: string[]): Subject[] {
  return names.map((name) => ({ kind: 'Group', apiGroup: RBAC_GROUP, name }));
}

/** The bootstrap ClusterRoles, admin/edit/view still empty (as created, before aggregation). */
export function bootstrapClusterRoles(): ClusterRole[] {
  return [
    clusterRole('cluster-admin', { rules: [rule(['*'], ['*'], ['*']), urls(['*'], ['*'])] }),
    clusterRole('system:discovery', {
      rules: [
        urls(['get'], ['/livez', '/readyz', '/healthz', '/version', '/version/', '/openapi', '/openapi/*', '/api', '/api/*', '/apis', '/apis/*']),
      ],
    }),
    clusterRole('system:monitoring', {
      rules: [
        urls(['get'], ['/metrics', '/metrics/slis', '/livez', '/readyz', '/healthz', '/livez/*', '/readyz/*', '/healthz/*']),
      ],
    }),
    clusterRole('system:basic-user', {
      rules: [
        rule(['create'], [authorization], ['selfsubjectaccessreviews', 'selfsubjectrulesreviews']),
        rule(['create'], [authentication], ['selfsubjectreviews']),
      ],
    }),
    clusterRole('system:public-info-viewer', {
      rules: [urls(['get'], ['/livez', '/readyz', '/healthz', '/version', '/version/'])],
    }),
    clusterRole('admin', { aggregateFrom: AGGREGATE_TO_ADMIN }),
    clusterRole('edit', { aggregateFrom: AGGREGATE_TO_EDIT, labels: { [AGGREGATE_TO_ADMIN]: 'true' } }),
    clusterRole('view', { aggregateFrom: AGGREGATE_TO_VIEW, labels: { [AGGREGATE_TO_EDIT]: 'true' } }),
    clusterRole('system:aggregate-to-admin', { labels: { [AGGREGATE_TO_ADMIN]: 'true' }, rules: aggregateToAdminRules() }),
    clusterRole('system:aggregate-to-edit', { labels: { [AGGREGATE_TO_EDIT]: 'true' }, rules: aggregateToEditRules() }),
    clusterRole('system:aggregate-to-view', { labels: { [AGGREGATE_TO_VIEW]: 'true' }, rules: aggregateToViewRules() }),
    clusterRole('system:auth-delegator', {
      rules: [rule(['create'], [authentication], ['tokenreviews']), rule(['create'], [authorization], ['subjectaccessreviews'])],
    }),
    clusterRole('system:service-account-issuer-discovery', {
      rules: [urls(['get'], ['/.well-known/openid-configuration', '/.well-known/openid-configuration/', '/openid/v1/jwks', '/openid/v1/jwks/'])],
    }),
  ];
}

function aggregateToAdminRules(): PolicyRule[] {
  return [
    rule(['create'], [authorization], ['localsubjectaccessreviews']),
    rule(READ_WRITE, [RBAC_GROUP], ['roles', 'rolebindings']),
  ];
}

function aggregateToEditRules(): PolicyRule[] {
  const podSubresources = ['pods/attach', 'pods/proxy', 'pods/exec', 'pods/portforward'];
  return [
    // read access to the resources that can escalate (exec, secrets) lives in edit, not view
    rule(READ, [core], [...podSubresources, 'secrets', 'services/proxy']),
    rule(['impersonate'], [core], ['serviceaccounts']),
    rule(WRITE, [core], ['pods', ...podSubresources]),
    rule(WRITE, [core], [
      'replicationcontrollers',
      'replicationcontrollers/scale',
      'serviceaccounts',
      'services',
      'services/proxy',
      'persistentvolumeclaims',
      'configmaps',
      'secrets',
    ]),
    rule(['create'], [core], ['serviceaccounts/token']),
    rule(WRITE, [apps], [
      'statefulsets',
      'statefulsets/scale',
      'daemonsets',
      'deployments',
      'deployments/scale',
      'deployments/rollback',
      'replicasets',
      'replicasets/scale',
    ]),
    rule(WRITE, [autoscaling], ['horizontalpodautoscalers']),
    rule(WRITE, [batch], ['jobs', 'cronjobs']),
    rule(WRITE, [extensions], [
      'daemonsets',
      'deployments',
      'deployments/scale',
      'deployments/rollback',
      'ingresses',
      'replicasets',
      'replicasets/scale',
      'replicationcontrollers/scale',
      'networkpolicies',
    ]),
    rule(WRITE, [policy], ['poddisruptionbudgets']),
    rule(WRITE, [networking], ['networkpolicies', 'ingresses']),
  ];
}

function aggregateToViewRules(): PolicyRule[] {
  return [
    rule(READ, [core], [
      'pods',
      'replicationcontrollers',
      'replicationcontrollers/scale',
      'serviceaccounts',
      'services',
      'services/status',
      'endpoints',
      'persistentvolumeclaims',
      'persistentvolumeclaims/status',
      'configmaps',
    ]),
    rule(READ, [core], [
      'limitranges',
      'resourcequotas',
      'bindings',
      'events',
      'pods/status',
      'resourcequotas/status',
      'namespaces/status',
      'replicationcontrollers/status',
      'pods/log',
    ]),
    // read access to namespaces at the namespace scope means you can read *this* namespace
    rule(READ, [core], ['namespaces']),
    rule(READ, [apps], [
      'controllerrevisions',
      'statefulsets',
      'statefulsets/status',
      'statefulsets/scale',
      'daemonsets',
      'daemonsets/status',
      'deployments',
      'deployments/status',
      'deployments/scale',
      'replicasets',
      'replicasets/status',
      'replicasets/scale',
    ]),
    rule(READ, [autoscaling], ['horizontalpodautoscalers', 'horizontalpodautoscalers/status']),
    rule(READ, [batch], ['jobs', 'cronjobs', 'cronjobs/status', 'jobs/status']),
    rule(READ, [extensions], [
      'daemonsets',
      'daemonsets/status',
      'deployments',
      'deployments/scale',
      'deployments/status',
      'ingresses',
      'ingresses/status',
      'replicasets',
      'replicasets/scale',
      'replicasets/status',
      'replicationcontrollers/scale',
      'networkpolicies',
    ]),
    rule(READ, [policy], ['poddisruptionbudgets', 'poddisruptionbudgets/status']),
    rule(READ, [networking], ['networkpolicies', 'ingresses', 'ingresses/status']),
  ];
}

/** The bootstrap ClusterRoleBindings (each named after its ClusterRole, as the real ones are). */
export function bootstrapClusterRoleBindings(): RoleBinding[] {
  return [
    clusterRoleBinding('cluster-admin', groups(SYSTEM_MASTERS)),
    clusterRoleBinding('system:discovery', groups(ALL_AUTHENTICATED)),
    clusterRoleBinding('system:monitoring', groups('system:monitoring')),
    clusterRoleBinding('system:basic-user', groups(ALL_AUTHENTICATED)),
    clusterRoleBinding('system:public-info-viewer', groups(ALL_AUTHENTICATED, ALL_UNAUTHENTICATED)),
    clusterRoleBinding('system:service-account-issuer-discovery', groups(ALL_SERVICE_ACCOUNTS)),
  ];
}

/**
 * Everything to load into a fresh store: the ClusterRoles as a running cluster shows them (aggregation
 * already applied), then the ClusterRoleBindings. Fresh objects on every call.
 */
export function bootstrapRbacObjects(): { clusterRoles: ClusterRole[]; clusterRoleBindings: RoleBinding[] } {
  return { clusterRoles: aggregateClusterRoles(bootstrapClusterRoles()), clusterRoleBindings: bootstrapClusterRoleBindings() };
}
