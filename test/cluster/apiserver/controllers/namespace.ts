/**
 * Namespace-scoped housekeeping controllers:
 * - ServiceAccount controller: the `default` ServiceAccount in every active namespace;
 * - root CA publisher: the `kube-root-ca.crt` ConfigMap in every active namespace;
 * - namespace deletion: a Terminating namespace has all its content deleted, its status
 *   conditions kept as the real controller reports them, and, once empty, the `kubernetes`
 *   finalizer removed from spec.finalizers so the store can remove it.
 */
import type { KObject } from '../types.js';
import { type Action, R, create, del, update, updateStatus } from './actions.js';
import { clone, field, rfc3339, semanticEqual, type Condition } from './meta.js';

export const ROOT_CA_CONFIGMAP = 'kube-root-ca.crt';
export const DESCRIPTION_ANNOTATION = 'kubernetes.io/description';
export const ROOT_CA_DESCRIPTION =
  'Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. ' +
  'No other usage is guaranteed across distributions of Kubernetes clusters.';
export const NAMESPACE_FINALIZER = 'kubernetes';

export interface NamespaceInput {
  namespace: KObject;
  /** the `default` ServiceAccount, if it exists */
  serviceAccount?: KObject;
  /** the `kube-root-ca.crt` ConfigMap, if it exists */
  rootCA?: KObject;
  caPem: string;
  /** for a terminating namespace: what is left in it, by resource ("v1/pods" → objects) */
  contents?: Map<string, KObject[]>;
}

export function isTerminating(ns: KObject): boolean {
  return !!ns.metadata.deletionTimestamp || field(ns, 'status', 'phase') === 'Terminating';
}

export function reconcileNamespace(input: NamespaceInput, now: number): Action[] {
  return isTerminating(input.namespace) ? deleteContent(input, now) : ensureDefaults(input);
}

function ensureDefaults(input: NamespaceInput): Action[] {
  const namespace = input.namespace.metadata.name;
  const actions: Action[] = [];
  if (!input.serviceAccount) {
    actions.push(create(R.serviceAccounts, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace } }));
  }
  const data = { 'ca.crt': input.caPem };
  const cm = input.rootCA;
  if (!cm) {
    actions.push(
      create(R.configMaps, {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: ROOT_CA_CONFIGMAP, namespace, annotations: { [DESCRIPTION_ANNOTATION]: ROOT_CA_DESCRIPTION } },
        data,
      }),
    );
  } else if (!semanticEqual(cm['data'], data) || !cm.metadata.annotations?.[DESCRIPTION_ANNOTATION]) {
    const next = clone(cm);
    next['data'] = data;
    next.metadata.annotations = { ...(cm.metadata.annotations ?? {}), [DESCRIPTION_ANNOTATION]: ROOT_CA_DESCRIPTION };
    actions.push(update(R.configMaps, next));
  }
  return actions;
}

/** "pods." / "deployments.apps": schema.GroupResource.String() of "group/version/plural". */
export function groupResource(resource: string): string {
  const parts = resource.split('/');
  const plural = parts[parts.length - 1]!;
  const group = parts.length === 3 ? parts[0]! : '';
  return `${plural}.${group}`;
}

const CONDITION_TYPES = [
  'NamespaceDeletionDiscoveryFailure',
  'NamespaceDeletionGroupVersionParsingFailure',
  'NamespaceDeletionContentFailure',
  'NamespaceContentRemaining',
  'NamespaceFinalizersRemaining',
] as const;

const OK: Record<string, [string, string]> = {
  NamespaceDeletionDiscoveryFailure: ['ResourcesDiscovered', 'All resources successfully discovered'],
  NamespaceDeletionGroupVersionParsingFailure: ['ParsedGroupVersions', 'All legacy kube types successfully parsed'],
  NamespaceDeletionContentFailure: ['ContentDeleted', 'All content successfully deleted, may be waiting on finalization'],
  NamespaceContentRemaining: ['ContentRemoved', 'All content successfully removed'],
  NamespaceFinalizersRemaining: ['ContentHasNoFinalizers', 'All content-preserving finalizers finished'],
};

function deleteContent(input: NamespaceInput, now: number): Action[] {
  const ns = input.namespace;
  const finalizers = field<string[]>(ns, 'spec', 'finalizers') ?? [];
  if (!finalizers.includes(NAMESPACE_FINALIZER)) return [];
  const actions: Action[] = [];
  const remaining: string[] = [];
  const finalizerCounts = new Map<string, number>();
  for (const [resource, objects] of [...(input.contents ?? new Map<string, KObject[]>()).entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
    let left = 0;
    for (const o of objects) {
      if (!o.metadata.deletionTimestamp) actions.push(del(resource, o));
      // Objects already being deleted, or held by finalizers, are what remains after this pass.
      const fins = o.metadata.finalizers ?? [];
      if (o.metadata.deletionTimestamp || fins.length) left++;
      for (const f of fins) finalizerCounts.set(f, (finalizerCounts.get(f) ?? 0) + 1);
    }
    if (left) remaining.push(`${groupResource(resource)} has ${left} resource instances`);
  }
  const found: Condition[] = [];
  if (remaining.length) {
    found.push({ type: 'NamespaceContentRemaining', status: 'True', reason: 'SomeResourcesRemain', message: `Some resources are remaining: ${remaining.sort().join(', ')}` });
  }
  if (finalizerCounts.size) {
    const parts = [...finalizerCounts.entries()].map(([f, n]) => `${f} in ${n} resource instances`).sort();
    found.push({ type: 'NamespaceFinalizersRemaining', status: 'True', reason: 'SomeFinalizersRemain', message: `Some content in the namespace has finalizers remaining: ${parts.join(', ')}` });
  }
  const conditions = namespaceConditions(field<Condition[]>(ns, 'status', 'conditions') ?? [], found, now);
  let status = (ns['status'] ?? {}) as Record<string, unknown>;
  if (!semanticEqual(conditions, status['conditions'])) {
    status = { ...status, phase: 'Terminating', conditions };
    actions.push(updateStatus(R.namespaces, { ...clone(ns), status }));
  }
  const empty = [...(input.contents ?? new Map<string, KObject[]>()).values()].every((objs) => objs.length === 0);
  if (empty) {
    const next: KObject = { ...clone(ns), status };
    next['spec'] = { ...((ns['spec'] as object | undefined) ?? {}), finalizers: finalizers.filter((f) => f !== NAMESPACE_FINALIZER) };
    actions.push(update(R.namespaces, next));
  }
  return actions;
}

/** updateConditions: one condition per type; the transition time moves only when the status does. */
function namespaceConditions(existing: Condition[], found: Condition[], now: number): Condition[] {
  const out = existing.filter((c) => !(CONDITION_TYPES as readonly string[]).includes(c.type));
  const owned: Condition[] = [];
  for (const type of CONDITION_TYPES) {
    const [reason, message] = OK[type]!;
    const want = found.find((c) => c.type === type) ?? { type, status: 'False' as const, reason, message };
    const cur = existing.find((c) => c.type === type);
    if (cur && cur.status === want.status && cur.reason === want.reason && cur.message === want.message) {
      owned.push(cur);
      continue;
    }
    const lastTransitionTime = cur && cur.status === want.status ? cur.lastTransitionTime : rfc3339(now);
    owned.push({ type, status: want.status, lastTransitionTime, reason: want.reason, message: want.message });
  }
  return [...out, ...owned];
}
