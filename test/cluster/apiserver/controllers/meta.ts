/**
 * Object-metadata helpers shared by the controllers: timestamps in the wire format, owner
 * references, semantic equality (nil and empty collections are equal, as in apimachinery), keys.
 */
import type { KObject, OwnerReference } from '../types.js';

/** metav1.Time on the wire: RFC 3339 with second precision. */
export function rfc3339(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Milliseconds of a wire timestamp; 0 when absent (Go's zero time sorts first). */
export function timeMs(s: unknown): number {
  if (typeof s !== 'string' || !s) return 0;
  const t = Date.parse(s);
  return Number.isNaN(t) ? 0 : t;
}

export function clone<T>(x: T): T {
  return structuredClone(x);
}

/**
 * A canonical JSON form for comparisons: keys sorted, and null, undefined, empty arrays and empty
 * objects dropped, because the real controllers compare with apimachinery's semantic equality,
 * which treats nil and empty alike.
 */
export function canonical(x: unknown): string {
  return JSON.stringify(normalize(x)) ?? 'null';
}

function normalize(x: unknown): unknown {
  if (Array.isArray(x)) {
    const items = x.map(normalize);
    return items.length ? items : undefined;
  }
  if (x && typeof x === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(x).sort()) {
      const v = normalize((x as Record<string, unknown>)[k]);
      if (v !== undefined) out[k] = v;
    }
    return Object.keys(out).length ? out : undefined;
  }
  return x === null ? undefined : x;
}

export function semanticEqual(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

/** "ns/name" or "name" for cluster-scoped objects: the work-queue key. */
export function keyOf(obj: KObject): string {
  const m = obj.metadata;
  return m.namespace ? `${m.namespace}/${m.name}` : (m.name ?? '');
}

export function splitKey(key: string): { namespace: string | undefined; name: string } {
  const i = key.indexOf('/');
  return i < 0 ? { namespace: undefined, name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

/** metav1.NewControllerRef: the reference a controller puts on what it creates. */
export function controllerRef(owner: KObject, apiVersion: string, kind: string): OwnerReference {
  return {
    apiVersion,
    kind,
    name: owner.metadata.name ?? '',
    uid: owner.metadata.uid ?? '',
    controller: true,
    blockOwnerDeletion: true,
  };
}

export function controllerOf(obj: KObject): OwnerReference | undefined {
  return obj.metadata.ownerReferences?.find((r) => r.controller === true);
}

export function isControlledBy(obj: KObject, owner: KObject): boolean {
  return controllerOf(obj)?.uid === owner.metadata.uid;
}

/** generateName of a controller's children: "<owner>-" (the store truncates long prefixes). */
export function generatePrefix(name: string): string {
  return `${name}-`;
}

/** Sort helper: oldest first, ties broken by name (ReplicaSetsByCreationTimestamp and friends). */
export function byCreation(a: KObject, b: KObject): number {
  const d = timeMs(a.metadata.creationTimestamp) - timeMs(b.metadata.creationTimestamp);
  if (d !== 0) return d;
  return (a.metadata.name ?? '') < (b.metadata.name ?? '') ? -1 : (a.metadata.name ?? '') > (b.metadata.name ?? '') ? 1 : 0;
}

/** Reads a nested field without a cast at every step. */
export function field<T = unknown>(obj: unknown, ...path: string[]): T | undefined {
  let cur: unknown = obj;
  for (const p of path) {
    if (!cur || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[p];
  }
  return cur as T | undefined;
}

export function num(v: unknown, dflt = 0): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : dflt;
}

/** A condition as the apps and core types carry them. */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason?: string;
  message?: string;
  lastUpdateTime?: string;
  lastTransitionTime?: string;
  [k: string]: unknown;
}

export function getCondition(conds: Condition[] | undefined, type: string): Condition | undefined {
  return conds?.find((c) => c.type === type);
}
