/**
 * Versioned object storage with an event history: the part of the API server that etcd plus the
 * watch cache play in a real cluster. It knows nothing of kinds: keys are "<bucket>" (one per
 * group/resource) and "<namespace>/<name>"; every write takes the next cluster-wide
 * resourceVersion, records an event, and notifies the bucket's watchers synchronously, in order.
 *
 * Objects are stored with their serialized JSON, so list and watch responses are built by string
 * concatenation instead of re-serializing every object (10k-pod lists stay fast).
 */
import type { KObject } from './types.js';

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface Stored {
  readonly obj: KObject;
  /** JSON.stringify(obj), computed once per version */
  readonly json: string;
  readonly rv: number;
}

export interface StoreEvent {
  readonly type: EventType;
  readonly rv: number;
  readonly bucket: string;
  readonly key: string;
  readonly cur: Stored;
  /** the version before this event (MODIFIED, DELETED) */
  readonly old?: Stored;
}

export type Listener = (ev: StoreEvent) => void;

interface Bucket {
  objects: Map<string, Stored>;
  /** sorted keys, rebuilt lazily for ordered (paged) lists */
  sorted: string[] | null;
  listeners: Set<Listener>;
  /** ring of recent events, oldest first */
  history: StoreEvent[];
  /** events older than this rv are gone from history (compacted) */
  compactedRv: number;
}

export class Store {
  private rv = 1;
  private readonly buckets = new Map<string, Bucket>();

  /** @param historySize events kept per bucket for watches that resume from a resourceVersion */
  constructor(private readonly historySize = 5000) {}

  currentRv(): number {
    return this.rv;
  }

  get(bucket: string, key: string): Stored | undefined {
    return this.buckets.get(bucket)?.objects.get(key);
  }

  /** Every stored object of a bucket, optionally only keys starting with `prefix`, in key order. */
  list(bucket: string, prefix = '', startAfter?: string): Stored[] {
    const b = this.buckets.get(bucket);
    if (!b) return [];
    const keys = this.sortedKeys(b);
    let i = prefix ? lowerBound(keys, prefix) : 0;
    if (startAfter !== undefined) i = Math.max(i, upperBound(keys, startAfter));
    const out: Stored[] = [];
    for (; i < keys.length; i++) {
      const k = keys[i]!;
      if (prefix && !k.startsWith(prefix)) break;
      out.push(b.objects.get(k)!);
    }
    return out;
  }

  count(bucket: string): number {
    return this.buckets.get(bucket)?.objects.size ?? 0;
  }

  /**
   * Writes `obj` (which must not be mutated afterwards). `make` receives the new resourceVersion
   * and returns the object to store, so the version can be stamped into metadata before
   * serialization. Returns the stored version.
   */
  put(bucket: string, key: string, make: (rv: number) => KObject): Stored {
    const b = this.bucket(bucket);
    const old = b.objects.get(key);
    const rv = ++this.rv;
    const obj = make(rv);
    const cur: Stored = { obj, json: JSON.stringify(obj), rv };
    if (!old) b.sorted = null;
    b.objects.set(key, cur);
    this.emit(b, old ? { type: 'MODIFIED', rv, bucket, key, cur, old } : { type: 'ADDED', rv, bucket, key, cur });
    return cur;
  }

  /** Removes `key`; the DELETED event carries the object stamped with the deletion's version. */
  remove(bucket: string, key: string, stamp: (obj: KObject, rv: number) => KObject): Stored | undefined {
    const b = this.buckets.get(bucket);
    const old = b?.objects.get(key);
    if (!b || !old) return undefined;
    const rv = ++this.rv;
    const obj = stamp(old.obj, rv);
    const cur: Stored = { obj, json: JSON.stringify(obj), rv };
    b.objects.delete(key);
    b.sorted = null;
    this.emit(b, { type: 'DELETED', rv, bucket, key, cur, old });
    return cur;
  }

  /** Drops a whole bucket (a CRD's objects after the CRD is gone), without events. */
  dropBucket(bucket: string): void {
    this.buckets.delete(bucket);
  }

  /**
   * Events of `bucket` after `rv`, or undefined when `rv` is older than the history kept (the
   * caller answers 410 Gone, as a real server does after etcd compaction).
   */
  since(bucket: string, rv: number): StoreEvent[] | undefined {
    const b = this.bucket(bucket);
    if (rv < b.compactedRv) return undefined;
    const h = b.history;
    let lo = 0;
    let hi = h.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (h[mid]!.rv <= rv) lo = mid + 1;
      else hi = mid;
    }
    return h.slice(lo);
  }

  /** Forgets all history up to now, like an etcd compaction: older watches get 410. */
  compact(): void {
    for (const b of this.buckets.values()) {
      b.history = [];
      b.compactedRv = this.rv;
    }
  }

  /** The oldest resourceVersion a watch on `bucket` may resume from. */
  oldestRv(bucket: string): number {
    return this.bucket(bucket).compactedRv;
  }

  subscribe(bucket: string, l: Listener): () => void {
    const b = this.bucket(bucket);
    b.listeners.add(l);
    return () => b.listeners.delete(l);
  }

  private emit(b: Bucket, ev: StoreEvent): void {
    b.history.push(ev);
    if (b.history.length > this.historySize) {
      const drop = b.history.length - this.historySize;
      b.compactedRv = b.history[drop - 1]!.rv;
      b.history.splice(0, drop);
    }
    for (const l of [...b.listeners]) {
      try {
        l(ev);
      } catch {
        // a broken listener must not stop the others; listeners log their own failures
      }
    }
  }

  private bucket(name: string): Bucket {
    let b = this.buckets.get(name);
    if (!b) {
      b = { objects: new Map(), sorted: null, listeners: new Set(), history: [], compactedRv: 0 };
      this.buckets.set(name, b);
    }
    return b;
  }

  private sortedKeys(b: Bucket): string[] {
    if (!b.sorted) b.sorted = [...b.objects.keys()].sort();
    return b.sorted;
  }
}

function lowerBound(a: string[], x: string): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function upperBound(a: string[], x: string): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid]! <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
