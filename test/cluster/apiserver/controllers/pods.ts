/**
 * Pod predicates the workload controllers agree on (active, ready, available) and the ranking the
 * ReplicaSet controller uses to choose which pods to delete when scaling down.
 */
import type { KObject } from '../types.js';
import { field, num, timeMs, type Condition } from './meta.js';

export const phaseOf = (pod: KObject): string => field<string>(pod, 'status', 'phase') ?? '';
export const nodeNameOf = (pod: KObject): string => field<string>(pod, 'spec', 'nodeName') ?? '';

/** Terminal: Succeeded or Failed (distinct from terminating, which is deletionTimestamp). */
export function isPodTerminal(pod: KObject): boolean {
  const p = phaseOf(pod);
  return p === 'Succeeded' || p === 'Failed';
}

/** controller.IsPodActive: not terminal and not being deleted. */
export function isPodActive(pod: KObject): boolean {
  return !isPodTerminal(pod) && !pod.metadata.deletionTimestamp;
}

function readyCondition(pod: KObject): Condition | undefined {
  return field<Condition[]>(pod, 'status', 'conditions')?.find((c) => c.type === 'Ready');
}

export function isPodReady(pod: KObject): boolean {
  return readyCondition(pod)?.status === 'True';
}

/** Ready for at least minReadySeconds (strictly: ready-since + minReady must lie before now). */
export function isPodAvailable(pod: KObject, minReadySeconds: number, now: number): boolean {
  const c = readyCondition(pod);
  if (c?.status !== 'True') return false;
  if (minReadySeconds <= 0) return true;
  const since = timeMs(c.lastTransitionTime);
  return since !== 0 && since + minReadySeconds * 1000 < now;
}

/** When a ready-but-not-yet-available pod becomes available (ms), or undefined. */
export function availableAt(pod: KObject, minReadySeconds: number): number | undefined {
  const c = readyCondition(pod);
  if (c?.status !== 'True' || minReadySeconds <= 0) return undefined;
  const since = timeMs(c.lastTransitionTime);
  return since ? since + minReadySeconds * 1000 + 1 : undefined;
}

function podReadyTime(pod: KObject): number {
  const c = readyCondition(pod);
  return c?.status === 'True' ? timeMs(c.lastTransitionTime) : 0;
}

function maxRestarts(pod: KObject): number {
  const statuses = [
    ...(field<{ restartCount?: number }[]>(pod, 'status', 'containerStatuses') ?? []),
    ...(field<{ restartCount?: number }[]>(pod, 'status', 'initContainerStatuses') ?? []),
  ];
  return statuses.reduce((m, s) => Math.max(m, num(s.restartCount)), 0);
}

const phaseOrdinal: Record<string, number> = { Pending: 0, Unknown: 1, Running: 2 };

/** afterOrZero: a zero time sorts first, otherwise the later time does. */
function afterOrZero(t1: number, t2: number): boolean {
  if (t1 === 0 || t2 === 0) return t1 === 0;
  return t1 > t2;
}

/** LogarithmicScaleDown: compare ages on a log2(nanoseconds) scale so near-equal ages tie. */
function logRankDiff(t1: number, t2: number, now: number): number {
  const rank = (t: number) => {
    const d = (now - t) * 1e6;
    return d > 0 ? Math.floor(Math.log2(d)) : -1;
  };
  return rank(t1) - rank(t2);
}

/**
 * controller.ActivePodsWithRanks.Less: true when pod `a` should be deleted before pod `b`.
 * `rankA`/`rankB` count related active pods on the same node (doubled-up pods go first).
 */
function deleteBefore(a: KObject, b: KObject, rankA: number, rankB: number, now: number): boolean {
  const na = nodeNameOf(a);
  const nb = nodeNameOf(b);
  // 1. unassigned < assigned
  if (na !== nb && (na === '' || nb === '')) return na === '';
  // 2. Pending < Unknown < Running
  const pa = phaseOrdinal[phaseOf(a)] ?? 0;
  const pb = phaseOrdinal[phaseOf(b)] ?? 0;
  if (pa !== pb) return pa < pb;
  // 3. not ready < ready
  const ra = isPodReady(a);
  const rb = isPodReady(b);
  if (ra !== rb) return !ra;
  // 4. lower pod-deletion-cost first
  const ca = deletionCost(a);
  const cb = deletionCost(b);
  if (ca !== cb) return ca < cb;
  // 5. doubled up < not doubled up
  if (rankA !== rankB) return rankA > rankB;
  // 6. ready for less time < more time
  const uidLess = (a.metadata.uid ?? '') < (b.metadata.uid ?? '');
  if (ra && rb) {
    const ta = podReadyTime(a);
    const tb = podReadyTime(b);
    if (ta !== tb) {
      if (ta === 0 || tb === 0) return afterOrZero(ta, tb);
      const d = logRankDiff(ta, tb, now);
      return d === 0 ? uidLess : d < 0;
    }
  }
  // 7. more restarts first
  const xa = maxRestarts(a);
  const xb = maxRestarts(b);
  if (xa !== xb) return xa > xb;
  // 8. newer first
  const ta = timeMs(a.metadata.creationTimestamp);
  const tb = timeMs(b.metadata.creationTimestamp);
  if (ta !== tb) {
    if (ta === 0 || tb === 0) return afterOrZero(ta, tb);
    const d = logRankDiff(ta, tb, now);
    return d === 0 ? uidLess : d < 0;
  }
  return false;
}

function deletionCost(pod: KObject): number {
  const v = pod.metadata.annotations?.['controller.kubernetes.io/pod-deletion-cost'];
  const n = v === undefined ? 0 : Number.parseInt(v, 10);
  return Number.isNaN(n) ? 0 : n;
}

/**
 * The `count` pods to delete first, ranked as the ReplicaSet controller does; `related` are the
 * active pods of sibling ReplicaSets (same owner) used to detect pods doubled up on a node.
 */
export function podsToDelete(pods: KObject[], related: KObject[], count: number, now: number): KObject[] {
  if (count >= pods.length) return [...pods];
  const onNode = new Map<string, number>();
  for (const p of related) if (isPodActive(p)) onNode.set(nodeNameOf(p), (onNode.get(nodeNameOf(p)) ?? 0) + 1);
  const ranked = pods.map((pod) => ({ pod, rank: onNode.get(nodeNameOf(pod)) ?? 0 }));
  ranked.sort((x, y) => (deleteBefore(x.pod, y.pod, x.rank, y.rank, now) ? -1 : deleteBefore(y.pod, x.pod, y.rank, x.rank, now) ? 1 : 0));
  return ranked.slice(0, count).map((r) => r.pod);
}
