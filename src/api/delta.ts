/**
 * The meaning of a SnapshotDelta, as both ends of the push protocol understand it:
 * `diffSnapshots(prev, next)` and `applyDelta(snapshot, delta)`, with the law
 * `applyDelta(prev, diffSnapshots(prev, next))` deep-equals `next`. The control plane's own diff
 * (src/control/snapshot.ts) follows the same rules; push-compat.test.ts checks the two agree. Pure.
 */
import { createHash } from 'node:crypto';
import { RESOURCE_TYPES, type NodeSnapshot, type ResourceDelta, type ResourceType, type SnapshotDelta } from './types.js';

/** JSON with object keys sorted at every level: equal values give equal strings, whatever the key order. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    const sorted: Record<string, unknown> = {};
    for (const k of Object.keys(v as Record<string, unknown>).sort()) sorted[k] = (v as Record<string, unknown>)[k];
    return sorted;
  });
}

/** A content version for a snapshot (hash of everything but `version`); for producers without their own. */
export function snapshotVersion(snapshot: Omit<NodeSnapshot, 'version'> & { version?: string }): string {
  const { version: _ignored, ...content } = snapshot;
  return createHash('sha256').update(canonicalJson(content)).digest('hex').slice(0, 16);
}

/** The record with its keys in code-unit order (the order producers build records in). */
export function sortedRecord<T>(entries: Iterable<[string, T]>): Record<string, T> {
  const out: Record<string, T> = {};
  for (const [k, v] of [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) out[k] = v;
  return out;
}

export function emptyResourceDelta<T>(): ResourceDelta<T> {
  return { added: {}, updated: {}, removed: [] };
}

/** The changes that turn `prev` into `next` (both for the same node). */
export function diffSnapshots(prev: NodeSnapshot, next: NodeSnapshot): SnapshotDelta {
  const delta = { node: next.node, from: prev.version, to: next.version } as SnapshotDelta;
  for (const t of RESOURCE_TYPES) {
    (delta as unknown as Record<ResourceType, ResourceDelta<unknown>>)[t] = diffRecords<unknown>(prev[t], next[t]);
  }
  if (canonicalJson(prev.trust) !== canonicalJson(next.trust)) delta.trust = next.trust;
  return delta;
}

/** A delta computed from another version than the snapshot's. */
export class DeltaMismatchError extends Error {
  constructor(
    readonly have: string,
    readonly deltaFrom: string,
  ) {
    super(`delta applies to version ${deltaFrom} but the snapshot is at ${have}; ask for a full snapshot`);
    this.name = 'DeltaMismatchError';
  }
}

/**
 * Applies a delta. Throws DeltaMismatchError when `delta.from` is not the snapshot's version (the
 * agent then resubscribes for a full snapshot, rule 6 of the protocol).
 */
export function applyDelta(snapshot: NodeSnapshot, delta: SnapshotDelta): NodeSnapshot {
  if (delta.from !== snapshot.version) throw new DeltaMismatchError(snapshot.version, delta.from);
  const out = { node: delta.node, version: delta.to, trust: delta.trust ?? snapshot.trust } as NodeSnapshot;
  for (const t of RESOURCE_TYPES) {
    const d = delta[t] as ResourceDelta<unknown>;
    const merged = new Map(Object.entries(snapshot[t] as Record<string, unknown>));
    for (const k of d.removed) merged.delete(k);
    for (const [k, v] of Object.entries(d.added)) merged.set(k, v);
    for (const [k, v] of Object.entries(d.updated)) merged.set(k, v);
    (out as unknown as Record<ResourceType, unknown>)[t] = sortedRecord(merged);
  }
  return out;
}

/** True when the delta changes nothing (the versions may still differ). */
export function isEmptyDelta(d: SnapshotDelta): boolean {
  return d.trust === undefined && RESOURCE_TYPES.every((t) => Object.keys(d[t].added).length + Object.keys(d[t].updated).length + d[t].removed.length === 0);
}

/** Number of resources a delta touches (for logs and metrics). */
export function deltaSize(d: SnapshotDelta): number {
  return RESOURCE_TYPES.reduce((n, t) => n + Object.keys(d[t].added).length + Object.keys(d[t].updated).length + d[t].removed.length, d.trust ? 1 : 0);
}

function diffRecords<T>(prev: Record<string, T>, next: Record<string, T>): ResourceDelta<T> {
  const d = emptyResourceDelta<T>();
  for (const [k, v] of Object.entries(next)) {
    const old = prev[k];
    if (old === undefined) d.added[k] = v;
    else if (old !== v && canonicalJson(old) !== canonicalJson(v)) d.updated[k] = v;
  }
  for (const k of Object.keys(prev)) if (!(k in next)) d.removed.push(k);
  return d;
}
