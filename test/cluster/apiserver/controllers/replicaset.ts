/**
 * ReplicaSet controller: keeps the number of active pods matching spec.replicas and reports
 * replicas / fullyLabeledReplicas / readyReplicas / availableReplicas in status.
 */
import type { KObject } from '../types.js';
import { type Action, R, create, del, update, updateStatus } from './actions.js';
import { claim } from './claim.js';
import { clone, controllerRef, field, generatePrefix, num, rfc3339, semanticEqual, type Condition } from './meta.js';
import { availableAt, isPodActive, isPodAvailable, isPodReady, podsToDelete } from './pods.js';
import { labelsContain, selectorMatches, type LabelSelector } from './selectors.js';

export interface ReplicaSetInput {
  rs: KObject;
  /** pods of the ReplicaSet's namespace (any owner; the controller claims its own) */
  pods: KObject[];
  /** active pods of sibling ReplicaSets (same controller owner), used to rank deletions */
  related?: KObject[];
  /** the failure of the previous create/delete round, surfaced as the ReplicaFailure condition */
  manageError?: { reason: 'FailedCreate' | 'FailedDelete'; message: string };
}

/** The real controller creates at most this many pods per sync. */
const BURST_REPLICAS = 500;

export const replicasOf = (obj: KObject): number => num(field(obj, 'spec', 'replicas'), 1);

/** The active pods this ReplicaSet owns (after adoption/release), and the ownership writes. */
export function claimReplicaSetPods(rs: KObject, pods: KObject[]): { owned: KObject[]; writes: KObject[] } {
  const selector = field<LabelSelector>(rs, 'spec', 'selector');
  return claim(rs, 'apps/v1', 'ReplicaSet', pods.filter(isPodActive), (p) => selectorMatches(selector, p.metadata.labels));
}

export function reconcileReplicaSet(input: ReplicaSetInput, now: number): Action[] {
  const { rs } = input;
  const { owned, writes } = claimReplicaSetPods(rs, input.pods);
  const claims = writes.map((w) => update(R.pods, w));
  const manage = rs.metadata.deletionTimestamp ? [] : manageReplicas(rs, owned, input.related ?? owned, now);
  const status = replicaSetStatus(rs, owned, input.manageError, now);
  const report = semanticEqual(status, rs['status']) ? [] : [updateStatus(R.replicaSets, { ...clone(rs), status })];
  // After a failed round the failure is reported before the retry, which may well fail again
  // (the manager stops a round at its first failed write).
  return input.manageError ? [...claims, ...report, ...manage] : [...claims, ...manage, ...report];
}

function manageReplicas(rs: KObject, pods: KObject[], related: KObject[], now: number): Action[] {
  const diff = pods.length - replicasOf(rs);
  if (diff < 0) {
    const n = Math.min(-diff, BURST_REPLICAS);
    return Array.from({ length: n }, () => create(R.pods, podFromTemplate(rs, 'apps/v1', 'ReplicaSet')));
  }
  if (diff > 0) return podsToDelete(pods, related, diff, now).map((p) => del(R.pods, p));
  return [];
}

/** controller.GetPodFromTemplate: a new pod for `owner` from its spec.template. */
export function podFromTemplate(owner: KObject, apiVersion: string, kind: string, template?: Record<string, unknown>): KObject {
  const tpl = clone(template ?? field<Record<string, unknown>>(owner, 'spec', 'template') ?? {});
  const tmeta = (tpl['metadata'] ?? {}) as Record<string, unknown>;
  const metadata: KObject['metadata'] = {
    generateName: generatePrefix(owner.metadata.name ?? ''),
    namespace: owner.metadata.namespace,
    ownerReferences: [controllerRef(owner, apiVersion, kind)],
  };
  if (tmeta['labels']) metadata.labels = tmeta['labels'] as Record<string, string>;
  if (tmeta['annotations']) metadata.annotations = tmeta['annotations'] as Record<string, string>;
  if (tmeta['finalizers']) metadata.finalizers = tmeta['finalizers'] as string[];
  return { apiVersion: 'v1', kind: 'Pod', metadata, spec: tpl['spec'] ?? {} };
}

/** calculateStatus + updateReplicaSetStatus (observedGeneration follows metadata.generation). */
export function replicaSetStatus(
  rs: KObject,
  pods: KObject[],
  manageError: ReplicaSetInput['manageError'],
  now: number,
): Record<string, unknown> {
  const old = (rs['status'] ?? {}) as Record<string, unknown>;
  const minReady = num(field(rs, 'spec', 'minReadySeconds'));
  const templateLabels = field<Record<string, string>>(rs, 'spec', 'template', 'metadata', 'labels');
  let fullyLabeled = 0;
  let ready = 0;
  let available = 0;
  for (const p of pods) {
    if (labelsContain(p.metadata.labels, templateLabels)) fullyLabeled++;
    if (isPodReady(p)) {
      ready++;
      if (isPodAvailable(p, minReady, now)) available++;
    }
  }
  let conditions = (old['conditions'] as Condition[] | undefined) ?? [];
  const failure = conditions.find((c) => c.type === 'ReplicaFailure');
  if (manageError && !failure) {
    conditions = [...conditions, { type: 'ReplicaFailure', status: 'True', lastTransitionTime: rfc3339(now), reason: manageError.reason, message: manageError.message }];
  } else if (!manageError && failure) {
    conditions = conditions.filter((c) => c.type !== 'ReplicaFailure');
  }
  // replicas is always serialised; the other counters are omitempty in the Go type.
  const status: Record<string, unknown> = { replicas: pods.length };
  if (fullyLabeled) status['fullyLabeledReplicas'] = fullyLabeled;
  if (ready) status['readyReplicas'] = ready;
  if (available) status['availableReplicas'] = available;
  const generation = rs.metadata.generation;
  if (generation !== undefined) status['observedGeneration'] = generation;
  else if (old['observedGeneration'] !== undefined) status['observedGeneration'] = old['observedGeneration'];
  if (conditions.length) status['conditions'] = conditions;
  return status;
}

/**
 * When to look again although nothing changes: the moment a ready pod passes minReadySeconds.
 * (The real controller requeues after minReadySeconds once all replicas are ready; this is exact.)
 */
export function replicaSetWakeup(input: ReplicaSetInput, now: number): number | undefined {
  const minReady = num(field(input.rs, 'spec', 'minReadySeconds'));
  if (minReady <= 0) return undefined;
  const { owned } = claimReplicaSetPods(input.rs, input.pods);
  let next: number | undefined;
  for (const p of owned) {
    const at = availableAt(p, minReady);
    if (at !== undefined && at > now && (next === undefined || at < next)) next = at;
  }
  return next;
}
