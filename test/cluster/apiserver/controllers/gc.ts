/**
 * Garbage collector: dependents follow their owners (metadata.ownerReferences) out of the store.
 * - Background: once every owner of an object is gone (or itself waiting for its dependents), the
 *   object is deleted; owners still present keep it, and only dangling references are dropped.
 * - Orphan: an owner being deleted with the `orphan` finalizer has its reference removed from
 *   every dependent, then the finalizer is removed.
 * - Foreground: an owner being deleted with the `foregroundDeletion` finalizer has its dependents
 *   deleted (in foreground themselves when they have dependents); the finalizer is removed once
 *   no dependent with blockOwnerDeletion is left.
 * The store sets the finalizers and the deletionTimestamp when a delete asks for a policy; this
 * module decides the rest from a snapshot of all objects.
 */
import type { KObject, OwnerReference } from '../types.js';
import { type Action, del, update } from './actions.js';
import { clone } from './meta.js';

export const ORPHAN_FINALIZER = 'orphan';
export const FOREGROUND_FINALIZER = 'foregroundDeletion';

export interface GcItem {
  resource: string;
  object: KObject;
}

export interface GcInput {
  /** every object of the resources in `listed` */
  items: GcItem[];
  /** the resources whose objects are all in `items`: only their absence proves an owner gone */
  listed: ReadonlySet<string>;
  /** the resource serving an owner reference's apiVersion/kind, when known */
  resourceFor: (apiVersion: string, kind: string) => string | undefined;
}

type OwnerState = 'solid' | 'dangling' | 'waiting';

const hasFinalizer = (o: KObject, f: string): boolean => !!o.metadata.deletionTimestamp && (o.metadata.finalizers ?? []).includes(f);
const deletingDependents = (o: KObject): boolean => hasFinalizer(o, FOREGROUND_FINALIZER);

interface Plan {
  item: GcItem;
  removeRefs: Set<string>;
  removeFinalizers: Set<string>;
  deletePolicy?: 'Orphan' | 'Background' | 'Foreground';
}

export function reconcileGarbage(input: GcInput): Action[] {
  const byUid = new Map<string, GcItem>();
  const dependents = new Map<string, GcItem[]>();
  for (const it of input.items) {
    const uid = it.object.metadata.uid;
    if (uid) byUid.set(uid, it);
    for (const ref of it.object.metadata.ownerReferences ?? []) dependents.set(ref.uid, [...(dependents.get(ref.uid) ?? []), it]);
  }
  const plans = new Map<GcItem, Plan>();
  const plan = (it: GcItem): Plan => {
    let p = plans.get(it);
    if (!p) plans.set(it, (p = { item: it, removeRefs: new Set(), removeFinalizers: new Set() }));
    return p;
  };

  const ownerState = (ref: OwnerReference): OwnerState => {
    const owner = byUid.get(ref.uid);
    if (owner) return deletingDependents(owner.object) ? 'waiting' : 'solid';
    const resource = input.resourceFor(ref.apiVersion, ref.kind);
    // An owner of a kind we did not list may well exist: never collect on a guess.
    return resource !== undefined && input.listed.has(resource) ? 'dangling' : 'solid';
  };

  for (const it of input.items) {
    const obj = it.object;
    const deps = dependents.get(obj.metadata.uid ?? '') ?? [];
    // Orphan: cut every dependent loose, then let the owner go.
    if (hasFinalizer(obj, ORPHAN_FINALIZER)) {
      for (const d of deps) plan(d).removeRefs.add(obj.metadata.uid!);
      plan(it).removeFinalizers.add(ORPHAN_FINALIZER);
    }
    // Foreground: done when no blocking dependent is left.
    if (deletingDependents(obj)) {
      const blocking = deps.filter((d) => d.object.metadata.ownerReferences?.some((r) => r.uid === obj.metadata.uid && r.blockOwnerDeletion));
      if (blocking.length === 0) plan(it).removeFinalizers.add(FOREGROUND_FINALIZER);
    }
    attemptToDelete(it, deps.length > 0, ownerState, plan);
  }
  return toActions([...plans.values()]);
}

/** attemptToDeleteItem for one object with owners. */
function attemptToDelete(it: GcItem, hasDependents: boolean, ownerState: (r: OwnerReference) => OwnerState, plan: (it: GcItem) => Plan): void {
  const obj = it.object;
  const refs = obj.metadata.ownerReferences ?? [];
  if (refs.length === 0 || obj.metadata.deletionTimestamp) return;
  const solid: OwnerReference[] = [];
  const dangling: OwnerReference[] = [];
  const waiting: OwnerReference[] = [];
  for (const r of refs) {
    const s = ownerState(r);
    (s === 'solid' ? solid : s === 'dangling' ? dangling : waiting).push(r);
  }
  if (solid.length > 0) {
    // Still owned: only drop the references to owners that are gone or waiting on us.
    for (const r of [...dangling, ...waiting]) plan(it).removeRefs.add(r.uid);
    return;
  }
  const p = plan(it);
  if (waiting.length > 0 && hasDependents) p.deletePolicy = 'Foreground';
  else if ((obj.metadata.finalizers ?? []).includes(ORPHAN_FINALIZER)) p.deletePolicy = 'Orphan';
  else if ((obj.metadata.finalizers ?? []).includes(FOREGROUND_FINALIZER)) p.deletePolicy = 'Foreground';
  else p.deletePolicy = 'Background';
}

function toActions(plans: Plan[]): Action[] {
  const updates: Action[] = [];
  const finalizes: Action[] = [];
  const deletes: Action[] = [];
  for (const p of plans) {
    const { resource, object } = p.item;
    if (p.deletePolicy) {
      deletes.push(del(resource, object, p.deletePolicy));
      continue;
    }
    if (p.removeRefs.size === 0 && p.removeFinalizers.size === 0) continue;
    const next = clone(object);
    if (p.removeRefs.size) {
      const refs = (object.metadata.ownerReferences ?? []).filter((r) => !p.removeRefs.has(r.uid));
      if (refs.length) next.metadata.ownerReferences = refs;
      else delete next.metadata.ownerReferences;
    }
    if (p.removeFinalizers.size) {
      next.metadata.finalizers = (object.metadata.finalizers ?? []).filter((f) => !p.removeFinalizers.has(f));
      finalizes.push(update(resource, next));
    } else updates.push(update(resource, next));
  }
  // Dependents are released before their owners' finalizers go, so a failure leaves the owner waiting.
  return [...updates, ...deletes, ...finalizes];
}
