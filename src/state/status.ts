/**
 * The status Ambit writes on a user's object to say whether it was accepted: `status.conditions`
 * for AuthorizationPolicy / PeerAuthentication (Istio's shape), and Gateway API route status
 * (`status.parents[]`, one entry per Service parent, our controllerName) for routes. Pure: the
 * caller passes the object as it is now and the time; nothing changes (null) when the condition is
 * already there, so status writes never loop.
 */
import type { KubeObject } from './objects.js';
import type { Condition, ObjectStatus } from './model.js';

/** The controller name Ambit signs route status with. */
export const CONTROLLER_NAME = 'ambit.dev/control';

interface WireCondition extends Condition {
  lastTransitionTime: string;
}

function sameCondition(a: Partial<WireCondition> | undefined, b: Condition): boolean {
  return !!a && a.status === b.status && a.reason === b.reason && a.message === b.message && a.observedGeneration === b.observedGeneration;
}

/** Replaces the Accepted condition, keeping lastTransitionTime when the status did not flip. */
function mergeConditions(existing: unknown, c: Condition, now: string): WireCondition[] {
  const list = Array.isArray(existing) ? (existing as WireCondition[]) : [];
  const old = list.find((x) => x?.type === c.type);
  const lastTransitionTime = old && old.status === c.status && old.lastTransitionTime ? old.lastTransitionTime : now;
  return [...list.filter((x) => x?.type !== c.type), { ...c, lastTransitionTime }];
}

/**
 * The new `status` for `obj` carrying `s.condition`, or null when it already says so.
 * Route status keeps the entries other controllers wrote.
 */
export function statusFor(obj: KubeObject, s: ObjectStatus, now: string): Record<string, unknown> | null {
  const status = (obj.status ?? {}) as Record<string, unknown>;
  if (s.kind === 'AuthorizationPolicy' || s.kind === 'PeerAuthentication') {
    const conds = Array.isArray(status['conditions']) ? (status['conditions'] as WireCondition[]) : [];
    if (sameCondition(conds.find((c) => c?.type === 'Accepted'), s.condition)) return null;
    return { ...status, conditions: mergeConditions(conds, s.condition, now) };
  }
  const refs = ((obj.spec as { parentRefs?: Record<string, unknown>[] } | undefined)?.parentRefs ?? []).filter((r) => r?.['kind'] === 'Service');
  const parents = Array.isArray(status['parents']) ? (status['parents'] as Record<string, unknown>[]) : [];
  const ours = parents.filter((p) => p['controllerName'] === CONTROLLER_NAME);
  const upToDate =
    ours.length === refs.length &&
    refs.every((ref) => {
      const p = ours.find((o) => JSON.stringify(o['parentRef']) === JSON.stringify(ref));
      return p && sameCondition((p['conditions'] as WireCondition[] | undefined)?.find((c) => c?.type === 'Accepted'), s.condition);
    });
  if (upToDate) return null;
  const mine = refs.map((ref) => {
    const old = ours.find((o) => JSON.stringify(o['parentRef']) === JSON.stringify(ref));
    return { parentRef: ref, controllerName: CONTROLLER_NAME, conditions: mergeConditions(old?.['conditions'], s.condition, now) };
  });
  return { ...status, parents: [...parents.filter((p) => p['controllerName'] !== CONTROLLER_NAME), ...mine] };
}
