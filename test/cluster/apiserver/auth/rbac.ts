/**
 * The RBAC authorizer of the Kubernetes API test server, with kube-apiserver's semantics and texts:
 * the system:masters short-cut, binding subjects, rule matching (wildcards, any-resource subresource
 * rules such as "*" + "/scale", resourceNames, nonResourceURL prefixes), ClusterRole aggregation, the
 * rule listing behind SelfSubjectRulesReview (`kubectl auth can-i --list`), the reasons
 * SubjectAccessReview returns and the Forbidden message. All pure: the caller hands in the RBAC objects
 * through a small store interface.
 */
import { forbidden, type ApiError } from '../errors.js';
import type { KObject } from '../types.js';
import { SYSTEM_MASTERS, type UserInfo } from './tokens.js';
import { labelSelectorFromObject, matchesLabels } from '../selectors.js';

export const RBAC_GROUP = 'rbac.authorization.k8s.io';

export interface PolicyRule {
  verbs: string[];
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

export interface Subject {
  kind: 'User' | 'Group' | 'ServiceAccount' | string;
  name: string;
  namespace?: string;
  apiGroup?: string;
}

export interface RoleRef {
  apiGroup: string;
  kind: 'Role' | 'ClusterRole' | string;
  name: string;
}

export interface LabelSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist' | string;
  values?: string[];
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

export interface Role extends KObject {
  rules?: PolicyRule[];
}

export interface ClusterRole extends Role {
  aggregationRule?: { clusterRoleSelectors?: LabelSelector[] };
}

export interface RoleBinding extends KObject {
  subjects?: Subject[];
  roleRef: RoleRef;
}

/** Where the authorizer reads RBAC objects from (the server's store, or plain arrays in tests). */
export interface RbacStore {
  roles(namespace: string): Role[];
  clusterRoles(): ClusterRole[];
  roleBindings(namespace: string): RoleBinding[];
  clusterRoleBindings(): RoleBinding[];
}

/** What is being asked: authorizer.Attributes of kube-apiserver. */
export interface AuthorizationAttributes {
  user: UserInfo;
  verb: string;
  isResourceRequest: boolean;
  apiGroup?: string;
  /** for messages only; RBAC ignores versions */
  apiVersion?: string;
  resource?: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  /** the request path, for non-resource requests */
  path?: string;
}

export interface Decision {
  allowed: boolean;
  /** e.g. `RBAC: allowed by ClusterRoleBinding "x" of ClusterRole "y" to User "z"`; "" when none */
  reason: string;
  /** set when an authorizer failed (RBAC itself never sets it: it reports missing roles in reason) */
  evaluationError?: string;
}

// ---- authorisation ---------------------------------------------------------------------------------

/**
 * kube-apiserver's authorizer chain for the modes this server runs: members of system:masters are
 * allowed everything (the privileged-group authorizer, which gives no reason), then RBAC.
 */
export function authorize(attrs: AuthorizationAttributes, store: RbacStore): Decision {
  if (attrs.user.groups.includes(SYSTEM_MASTERS)) return { allowed: true, reason: '' };
  return authorizeRbac(attrs, store);
}

/** The RBAC authorizer alone: first rule that allows wins; resolution errors become the deny reason. */
export function authorizeRbac(attrs: AuthorizationAttributes, store: RbacStore): Decision {
  const errors: string[] = [];
  let allowedBy: string | undefined;
  visitRules(attrs.user, attrs.namespace ?? '', store, (source, rule, error) => {
    if (rule && ruleAllows(attrs, rule)) {
      allowedBy = source;
      return false;
    }
    if (error) errors.push(error);
    return true;
  });
  if (allowedBy !== undefined) return { allowed: true, reason: `RBAC: allowed by ${allowedBy}` };
  return { allowed: false, reason: errors.length > 0 ? `RBAC: ${aggregateErrors(errors)}` : '' };
}

/** rbac.RuleAllows: does this one rule grant the request? */
export function ruleAllows(attrs: AuthorizationAttributes, rule: PolicyRule): boolean {
  if (!verbMatches(rule, attrs.verb)) return false;
  if (!attrs.isResourceRequest) return nonResourceURLMatches(rule, attrs.path ?? '');
  const subresource = attrs.subresource ?? '';
  const combined = subresource ? `${attrs.resource ?? ''}/${subresource}` : (attrs.resource ?? '');
  return (
    apiGroupMatches(rule, attrs.apiGroup ?? '') &&
    resourceMatches(rule, combined, subresource) &&
    resourceNameMatches(rule, attrs.name ?? '')
  );
}

function verbMatches(rule: PolicyRule, verb: string): boolean {
  return (rule.verbs ?? []).some((v) => v === '*' || v === verb);
}

function apiGroupMatches(rule: PolicyRule, group: string): boolean {
  return (rule.apiGroups ?? []).some((g) => g === '*' || g === group);
}

function resourceMatches(rule: PolicyRule, combined: string, subresource: string): boolean {
  return (rule.resources ?? []).some(
    (r) =>
      r === '*' ||
      r === combined ||
      // "*/scale" grants the scale subresource of every resource
      (subresource !== '' && r === `*/${subresource}`),
  );
}

function resourceNameMatches(rule: PolicyRule, name: string): boolean {
  const names = rule.resourceNames ?? [];
  return names.length === 0 || names.includes(name);
}

function nonResourceURLMatches(rule: PolicyRule, path: string): boolean {
  return (rule.nonResourceURLs ?? []).some(
    (u) => u === '*' || u === path || (u.endsWith('*') && path.startsWith(u.replace(/\*+$/, ''))),
  );
}

/**
 * DefaultRuleResolver.VisitRulesFor: every rule that applies to the user in the namespace, each with the
 * binding it came from; cluster role bindings first, then (namespace given) the namespace's bindings.
 * The visitor returns false to stop.
 */
function visitRules(
  user: UserInfo,
  namespace: string,
  store: RbacStore,
  visit: (source: string, rule: PolicyRule | undefined, error: string | undefined) => boolean,
): void {
  for (const binding of store.clusterRoleBindings()) {
    const subject = firstApplyingSubject(user, binding.subjects ?? [], '');
    if (!subject) continue;
    const rules = roleRefRules(binding.roleRef, '', store);
    if (typeof rules === 'string') {
      if (!visit('', undefined, rules)) return;
      continue;
    }
    const source = `ClusterRoleBinding ${q(binding.metadata.name ?? '')} of ${binding.roleRef.kind} ${q(binding.roleRef.name)} to ${describeSubject(subject, '')}`;
    for (const rule of rules) if (!visit(source, rule, undefined)) return;
  }
  if (!namespace) return;
  for (const binding of store.roleBindings(namespace)) {
    const subject = firstApplyingSubject(user, binding.subjects ?? [], namespace);
    if (!subject) continue;
    const rules = roleRefRules(binding.roleRef, namespace, store);
    if (typeof rules === 'string') {
      if (!visit('', undefined, rules)) return;
      continue;
    }
    const source = `RoleBinding ${q(`${binding.metadata.name ?? ''}/${namespace}`)} of ${binding.roleRef.kind} ${q(binding.roleRef.name)} to ${describeSubject(subject, namespace)}`;
    for (const rule of rules) if (!visit(source, rule, undefined)) return;
  }
}

/** The rules a roleRef points at, or the lister's NotFound text. */
function roleRefRules(ref: RoleRef, bindingNamespace: string, store: RbacStore): PolicyRule[] | string {
  if (ref.kind === 'Role') {
    const role = bindingNamespace ? store.roles(bindingNamespace).find((r) => r.metadata.name === ref.name) : undefined;
    return role ? (role.rules ?? []) : `role.${RBAC_GROUP} ${q(ref.name)} not found`;
  }
  if (ref.kind === 'ClusterRole') {
    const role = store.clusterRoles().find((r) => r.metadata.name === ref.name);
    return role ? (role.rules ?? []) : `clusterrole.${RBAC_GROUP} ${q(ref.name)} not found`;
  }
  return `unsupported role reference kind: ${q(ref.kind)}`;
}

function firstApplyingSubject(user: UserInfo, subjects: Subject[], namespace: string): Subject | undefined {
  return subjects.find((s) => subjectApplies(user, s, namespace));
}

/** Does a binding subject name this user? A ServiceAccount without namespace means the binding's. */
export function subjectApplies(user: UserInfo, subject: Subject, bindingNamespace: string): boolean {
  switch (subject.kind) {
    case 'User':
      return user.username === subject.name;
    case 'Group':
      return user.groups.includes(subject.name);
    case 'ServiceAccount': {
      const ns = subject.namespace || bindingNamespace;
      return ns !== '' && user.username === `system:serviceaccount:${ns}:${subject.name}`;
    }
    default:
      return false;
  }
}

function describeSubject(subject: Subject, bindingNamespace: string): string {
  if (subject.kind === 'ServiceAccount') {
    return `${subject.kind} ${q(`${subject.name}/${subject.namespace || bindingNamespace}`)}`;
  }
  return `${subject.kind} ${q(subject.name)}`;
}

/** utilerrors.NewAggregate(...).Error(): one message alone, several as `[a, b]`, duplicates dropped. */
function aggregateErrors(messages: string[]): string {
  const unique = [...new Set(messages)];
  return unique.length === 1 ? unique[0]! : `[${unique.join(', ')}]`;
}

// ---- SelfSubjectRulesReview ------------------------------------------------------------------------

export interface ResourceRule {
  verbs: string[];
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
}

export interface NonResourceRule {
  verbs: string[];
  nonResourceURLs?: string[];
}

/** authorization.k8s.io/v1 SubjectRulesReviewStatus. */
export interface SubjectRulesReviewStatus {
  resourceRules: ResourceRule[];
  nonResourceRules: NonResourceRule[];
  incomplete: boolean;
  evaluationError?: string;
}

/**
 * The status of a SelfSubjectRulesReview: every rule RBAC grants the user in the namespace, split into
 * resource and non-resource rules, in the order RBAC visits them (kubectl sorts and merges for display).
 */
export function resourceRulesFor(user: UserInfo, namespace: string, store: RbacStore): SubjectRulesReviewStatus {
  const resourceRules: ResourceRule[] = [];
  const nonResourceRules: NonResourceRule[] = [];
  const errors: string[] = [];
  visitRules(user, namespace, store, (_source, rule, error) => {
    if (error) errors.push(error);
    if (!rule) return true;
    if ((rule.resources ?? []).length > 0) resourceRules.push(toResourceRule(rule));
    if ((rule.nonResourceURLs ?? []).length > 0) {
      nonResourceRules.push({ verbs: [...rule.verbs], nonResourceURLs: [...rule.nonResourceURLs!] });
    }
    return true;
  });
  const status: SubjectRulesReviewStatus = { resourceRules, nonResourceRules, incomplete: false };
  if (errors.length > 0) status.evaluationError = aggregateErrors(errors);
  return status;
}

function toResourceRule(rule: PolicyRule): ResourceRule {
  const out: ResourceRule = { verbs: [...rule.verbs] };
  if (rule.apiGroups?.length) out.apiGroups = [...rule.apiGroups];
  if (rule.resources?.length) out.resources = [...rule.resources];
  if (rule.resourceNames?.length) out.resourceNames = [...rule.resourceNames];
  return out;
}

// ---- SubjectAccessReview ---------------------------------------------------------------------------

export interface ResourceAttributes {
  namespace?: string;
  verb?: string;
  group?: string;
  version?: string;
  resource?: string;
  subresource?: string;
  name?: string;
}

export interface NonResourceAttributes {
  path?: string;
  verb?: string;
}

export interface AccessReviewSpec {
  resourceAttributes?: ResourceAttributes;
  nonResourceAttributes?: NonResourceAttributes;
  /** SubjectAccessReview only: the user asked about */
  user?: string;
  groups?: string[];
  uid?: string;
  extra?: Record<string, string[]>;
}

/** The user a SubjectAccessReview asks about: exactly the spec's, no groups added. */
export function userFromAccessReviewSpec(spec: AccessReviewSpec): UserInfo {
  const user: UserInfo = { username: spec.user ?? '', groups: [...(spec.groups ?? [])] };
  if (spec.uid) user.uid = spec.uid;
  if (spec.extra) user.extra = spec.extra;
  return user;
}

/** authorizationutil.AuthorizationAttributesFrom: spec → attributes. */
export function attributesFromAccessReviewSpec(spec: AccessReviewSpec, user: UserInfo): AuthorizationAttributes {
  if (spec.resourceAttributes) {
    const r = spec.resourceAttributes;
    return {
      user,
      verb: r.verb ?? '',
      isResourceRequest: true,
      apiGroup: r.group ?? '',
      apiVersion: r.version || '*',
      resource: r.resource ?? '',
      subresource: r.subresource ?? '',
      namespace: r.namespace ?? '',
      name: r.name ?? '',
    };
  }
  const n = spec.nonResourceAttributes ?? {};
  return { user, verb: n.verb ?? '', isResourceRequest: false, path: n.path ?? '' };
}

/** authorization.k8s.io/v1 SubjectAccessReviewStatus (`denied` never set: RBAC only allows or abstains). */
export function subjectAccessReviewStatus(decision: Decision): { allowed: boolean; reason?: string; evaluationError?: string } {
  const status: { allowed: boolean; reason?: string; evaluationError?: string } = { allowed: decision.allowed };
  if (decision.reason) status.reason = decision.reason;
  if (decision.evaluationError) status.evaluationError = decision.evaluationError;
  return status;
}

// ---- Forbidden -------------------------------------------------------------------------------------

/**
 * The message of the 403 kube-apiserver returns when authorisation fails, e.g.
 * `pods "x" is forbidden: User "u" cannot get resource "pods/log" in API group "" in the namespace "ns"`,
 * `forbidden: User "u" cannot get path "/metrics"`. A non-empty authorizer reason follows after ": ".
 */
export function forbiddenMessage(attrs: AuthorizationAttributes, reason = ''): string {
  // responsewriters.Forbidden HTML-escapes its own part (it may echo the path), not the reason.
  const detail = htmlEscape(denialDetail(attrs)) + (reason ? `: ${reason}` : '');
  const qualified = qualifiedResource(attrs);
  if (!qualified) return `forbidden: ${detail}`;
  return attrs.name ? `${qualified} ${q(attrs.name)} is forbidden: ${detail}` : `${qualified} is forbidden: ${detail}`;
}

/** The same as an ApiError (403 Forbidden, details {name, group, kind: <resource>}). */
export function forbiddenError(attrs: AuthorizationAttributes, reason = ''): ApiError {
  const resource = attrs.isResourceRequest ? (attrs.resource ?? '') : '';
  return forbidden(
    forbiddenMessage(attrs, reason),
    attrs.name || undefined,
    resource || undefined,
    resource && attrs.apiGroup ? attrs.apiGroup : undefined,
  );
}

function denialDetail(attrs: AuthorizationAttributes): string {
  const who = q(attrs.user.username);
  if (!attrs.isResourceRequest) return `User ${who} cannot ${attrs.verb} path ${q(attrs.path ?? '')}`;
  const resource = attrs.subresource ? `${attrs.resource ?? ''}/${attrs.subresource}` : (attrs.resource ?? '');
  const what = `User ${who} cannot ${attrs.verb} resource ${q(resource)} in API group ${q(attrs.apiGroup ?? '')}`;
  return attrs.namespace ? `${what} in the namespace ${q(attrs.namespace)}` : `${what} at the cluster scope`;
}

/** schema.GroupResource.String() of the request: "pods", "deployments.apps"; "" for non-resource URLs. */
function qualifiedResource(attrs: AuthorizationAttributes): string {
  if (!attrs.isResourceRequest || !attrs.resource) return '';
  return attrs.apiGroup ? `${attrs.resource}.${attrs.apiGroup}` : attrs.resource;
}

function htmlEscape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Go's %q for the strings that appear here (printable text). */
function q(s: string): string {
  return JSON.stringify(s);
}

// ---- ClusterRole aggregation -----------------------------------------------------------------------

/**
 * The clusterrole-aggregation controller, run to a fixed point: every ClusterRole with an
 * aggregationRule gets the de-duplicated rules of the other ClusterRoles its selectors match (in name
 * order, selector by selector). Returns the full list; unchanged roles are returned as they were.
 */
export function aggregateClusterRoles(roles: ClusterRole[]): ClusterRole[] {
  let current = roles;
  // Each pass settles at least one more level of nesting (view → edit → admin), so the number of roles
  // bounds the passes needed.
  for (let pass = 0; pass <= roles.length; pass++) {
    let changed = false;
    current = current.map((role) => {
      if (!role.aggregationRule) return role;
      const rules = aggregatedRules(role, current);
      if (sameRules(rules, role.rules ?? [])) return role;
      changed = true;
      return { ...role, rules };
    });
    if (!changed) break;
  }
  return current;
}

/** Only what the controller would write: the aggregated roles whose rules are out of date. */
export function aggregationUpdates(roles: ClusterRole[]): { name: string; rules: PolicyRule[] }[] {
  const before = new Map(roles.map((r) => [r.metadata.name, r]));
  return aggregateClusterRoles(roles)
    .filter((r) => before.get(r.metadata.name) !== r)
    .map((r) => ({ name: r.metadata.name ?? '', rules: r.rules ?? [] }));
}

function aggregatedRules(target: ClusterRole, all: ClusterRole[]): PolicyRule[] {
  const rules: PolicyRule[] = [];
  const seen = new Set<string>();
  const byName = [...all].sort((a, b) => compare(a.metadata.name ?? '', b.metadata.name ?? ''));
  for (const selector of target.aggregationRule?.clusterRoleSelectors ?? []) {
    for (const role of byName) {
      if (role.metadata.name === target.metadata.name) continue;
      if (!labelSelectorMatches(selector, role.metadata.labels ?? {})) continue;
      for (const rule of role.rules ?? []) {
        const key = ruleKey(rule);
        if (seen.has(key)) continue;
        seen.add(key);
        rules.push(rule);
      }
    }
  }
  return rules;
}

/** metav1.LabelSelector semantics; an empty selector matches everything. */
export function labelSelectorMatches(selector: LabelSelector, labels: Record<string, string>): boolean {
  try {
    return matchesLabels(labelSelectorFromObject(selector), labels);
  } catch {
    return false;
  }
}

function sameRules(a: PolicyRule[], b: PolicyRule[]): boolean {
  return a.length === b.length && a.every((rule, i) => ruleKey(rule) === ruleKey(b[i]!));
}

/** Identity of a rule for de-duplication: field order and absent-vs-empty lists do not matter. */
function ruleKey(rule: PolicyRule): string {
  return JSON.stringify([rule.verbs ?? [], rule.apiGroups ?? [], rule.resources ?? [], rule.resourceNames ?? [], rule.nonResourceURLs ?? []]);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
