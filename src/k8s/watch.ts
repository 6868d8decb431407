/**
 * A watched collection: the one way Ambit follows a Kubernetes resource. It lists, then watches from
 * the list's resourceVersion, and keeps going whatever happens — the things client-node's informer
 * does not do:
 * - any error (connection refused or reset, 5xx, a watch ERROR event, a failed list) restarts it
 *   after a capped exponential backoff with jitter; a watch that ends normally (server timeout) is
 *   resumed at once from the last resourceVersion seen;
 * - 410 Gone (history compacted) relists, and the relist is diffed against what we hold, so the
 *   sink hears of adds, updates and deletes that happened while we were away;
 * - a periodic resync relists the same way (this also recovers a watch whose TCP connection died
 *   silently, which no event would ever report);
 * - objects are keyed by namespace/name but a changed uid is a delete plus an add, and an update
 *   whose resourceVersion is unchanged is dropped.
 * The sink gets typed added/updated/deleted events; `synced` resolves after the first list.
 * Time (timers, jitter) comes from an injectable clock; the API comes from an injectable transport.
 */
import type { KubeObject } from '../state/objects.js';
import { keyOf } from '../state/objects.js';
import type { ResourceKind } from './resources.js';
import { collectionPath } from './resources.js';
import type { KubeConnection } from './client.js';

export type WatchEvent<T> = { type: 'added'; object: T } | { type: 'updated'; object: T; old: T } | { type: 'deleted'; object: T };
export type WatchSink<T> = (event: WatchEvent<T>) => void;

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  /** uniform in [0, 1): the jitter source */
  random(): number;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  random: () => Math.random(),
};

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  factor: number;
  /** ± share of the delay drawn at random (0.2 = ±20%) */
  jitter: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 200, maxMs: 30_000, factor: 2, jitter: 0.2 };

/** The delay before retry number `attempt` (0-based): initial·factor^attempt, capped, ± jitter. */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: number): number {
  const base = Math.min(policy.maxMs, policy.initialMs * Math.pow(policy.factor, Math.max(0, attempt)));
  return Math.max(0, Math.round(base * (1 + policy.jitter * (2 * random - 1))));
}

/** The two API calls a collection makes; KubeConnection provides them, tests may fake them. */
export interface ListWatchTransport {
  list(r: ResourceKind, opts: { namespace?: string; labelSelector?: string; fieldSelector?: string }): Promise<{ items: KubeObject[]; resourceVersion: string }>;
  watch(path: string, query: Record<string, string | number | boolean | undefined>, onEvent: (type: string, obj: unknown) => void, onDone: (err: unknown) => void): Promise<{ abort(): void }>;
}

export interface WatchOptions<T extends KubeObject> {
  resource: ResourceKind;
  transport: ListWatchTransport | KubeConnection;
  sink: WatchSink<T>;
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  clock?: Clock;
  backoff?: BackoffPolicy;
  /** relist and diff this often (default 5 min); 0 disables */
  resyncMs?: number;
  /** server-side watch timeout; each watch draws from [t, 2t) like client-go's reflector (default 300 s) */
  watchTimeoutSeconds?: number;
  /** told about every restart (for logs and the watch-restarts metric) */
  onRestart?: (reason: string, error: unknown) => void;
  /** told when the sink throws (the collection carries on) */
  onSinkError?: (error: unknown, event: WatchEvent<T>) => void;
}

/** A watch that ran shorter than this and ended cleanly without any event counts as a failure (no hot loop). */
const MIN_HEALTHY_WATCH_MS = 1000;

type Phase = 'idle' | 'listing' | 'watching' | 'waiting' | 'stopped';

export class WatchedCollection<T extends KubeObject = KubeObject> {
  /** restarts after errors and 410s (the watch-restarts metric) */
  restarts = 0;
  /** periodic (or requested) relists */
  resyncs = 0;
  readonly synced: Promise<void>;
  private markSynced!: () => void;
  private hasSynced = false;
  private readonly cache = new Map<string, T>();
  private phase: Phase = 'idle';
  private rv = '';
  private attempt = 0;
  private watchHandle: { abort(): void } | undefined;
  /** identifies the current watch, so a late callback of an aborted one is ignored */
  private generation = 0;
  private timer: unknown;
  private resyncTimer: unknown;
  private readonly clock: Clock;
  private readonly backoff: BackoffPolicy;

  constructor(private readonly opts: WatchOptions<T>) {
    this.clock = opts.clock ?? realClock;
    this.backoff = opts.backoff ?? DEFAULT_BACKOFF;
    this.synced = new Promise((resolve) => (this.markSynced = resolve));
  }

  get isSynced(): boolean {
    return this.hasSynced;
  }

  get state(): Phase {
    return this.phase;
  }

  /** The resourceVersion the next watch resumes from. */
  get resourceVersion(): string {
    return this.rv;
  }

  /** Everything held now (sorted by key for determinism). */
  list(): T[] {
    return [...this.cache.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, v]) => v);
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.cache.get(namespace ? `${namespace}/${name}` : name);
  }

  start(): void {
    if (this.phase !== 'idle') return;
    this.scheduleResync();
    void this.relist();
  }

  stop(): void {
    this.phase = 'stopped';
    this.generation++;
    this.clock.clearTimeout(this.timer);
    this.clock.clearTimeout(this.resyncTimer);
    this.watchHandle?.abort();
    this.watchHandle = undefined;
  }

  /** Relists now and diffs (what the periodic resync does); tests and operators may call it. */
  resync(): void {
    if (this.phase === 'stopped' || this.phase === 'listing') return;
    this.restart('resync', undefined, 'relist', 0);
  }

  private emit(event: WatchEvent<T>): void {
    try {
      this.opts.sink(event);
    } catch (e) {
      this.opts.onSinkError?.(e, event);
    }
  }

  /** Stores an object, telling the sink what it is to us: new, changed, or replaced (uid changed). */
  private upsert(obj: T): void {
    const key = keyOf(obj);
    const old = this.cache.get(key);
    this.cache.set(key, obj);
    if (!old) return this.emit({ type: 'added', object: obj });
    if (old.metadata.uid && obj.metadata.uid && old.metadata.uid !== obj.metadata.uid) {
      this.emit({ type: 'deleted', object: old });
      return this.emit({ type: 'added', object: obj });
    }
    if (old.metadata.resourceVersion !== undefined && old.metadata.resourceVersion === obj.metadata.resourceVersion) return;
    this.emit({ type: 'updated', object: obj, old });
  }

  private remove(obj: T): void {
    const key = keyOf(obj);
    const old = this.cache.get(key);
    if (!old) return;
    this.cache.delete(key);
    this.emit({ type: 'deleted', object: obj });
  }

  private async relist(): Promise<void> {
    if (this.phase === 'stopped') return;
    this.phase = 'listing';
    const gen = ++this.generation;
    let result: { items: KubeObject[]; resourceVersion: string };
    try {
      result = await this.opts.transport.list(this.opts.resource, { namespace: this.opts.namespace, labelSelector: this.opts.labelSelector, fieldSelector: this.opts.fieldSelector });
    } catch (e) {
      if (gen !== this.generation) return;
      return this.restart('list failed', e, 'relist', this.attempt++);
    }
    if (gen !== this.generation) return;
    const seen = new Set<string>();
    for (const item of result.items as T[]) {
      seen.add(keyOf(item));
      this.upsert(item);
    }
    for (const [key, obj] of [...this.cache]) if (!seen.has(key)) this.remove(obj);
    this.rv = result.resourceVersion;
    this.attempt = 0;
    if (!this.hasSynced) {
      this.hasSynced = true;
      this.markSynced();
    }
    void this.startWatch();
  }

  private async startWatch(): Promise<void> {
    if (this.phase === 'stopped') return;
    this.phase = 'watching';
    const gen = ++this.generation;
    const startedAt = this.clock.now();
    let events = 0;
    let gone = false;
    let failure: unknown;
    const base = this.opts.watchTimeoutSeconds ?? 300;
    const onEvent = (type: string, raw: unknown): void => {
      if (gen !== this.generation) return;
      const obj = raw as T & { code?: number; reason?: string; message?: string };
      events++;
      if (type === 'ERROR') {
        // a Status: 410 means our resourceVersion is too old; anything else is a failure
        if (obj.code === 410) gone = true;
        else failure = new Error(`watch error ${obj.code ?? ''} ${obj.reason ?? ''}: ${obj.message ?? ''}`);
        return;
      }
      const rv = obj.metadata?.resourceVersion;
      if (type === 'ADDED' || type === 'MODIFIED') this.upsert(obj);
      else if (type === 'DELETED') this.remove(obj);
      if (rv) this.rv = rv;
      this.attempt = 0;
    };
    const onDone = (err: unknown): void => {
      if (gen !== this.generation || this.phase === 'stopped') return;
      this.watchHandle = undefined;
      if (gone || isGone(err)) return this.restart('410 Gone', err, 'relist', 0);
      const error = err ?? failure;
      if (error) return this.restart('watch failed', error, 'watch', this.attempt++);
      if (events === 0 && this.clock.now() - startedAt < MIN_HEALTHY_WATCH_MS) return this.restart('watch ended at once', undefined, 'watch', this.attempt++);
      void this.startWatch(); // a normal end (server timeout): resume from where we are
    };
    try {
      const handle = await this.opts.transport.watch(
        collectionPath(this.opts.resource, this.opts.namespace),
        { resourceVersion: this.rv, allowWatchBookmarks: true, timeoutSeconds: base + Math.floor(this.clock.random() * base), labelSelector: this.opts.labelSelector, fieldSelector: this.opts.fieldSelector },
        onEvent,
        onDone,
      );
      if (gen !== this.generation) handle.abort();
      else this.watchHandle = handle;
    } catch (e) {
      onDone(e);
    }
  }

  /** Ends the current watch and, after the backoff for `attempt`, relists or resumes watching. */
  private restart(reason: string, error: unknown, next: 'relist' | 'watch', attempt: number): void {
    if (this.phase === 'stopped') return;
    if (reason === 'resync') this.resyncs++;
    else {
      this.restarts++;
      this.opts.onRestart?.(reason, error);
    }
    this.generation++;
    this.watchHandle?.abort();
    this.watchHandle = undefined;
    this.clock.clearTimeout(this.timer);
    const delay = reason === 'resync' || reason === '410 Gone' ? 0 : backoffDelay(attempt, this.backoff, this.clock.random());
    this.phase = 'waiting';
    this.timer = this.clock.setTimeout(() => void (next === 'relist' ? this.relist() : this.startWatch()), delay);
  }

  private scheduleResync(): void {
    const every = this.opts.resyncMs ?? 5 * 60_000;
    if (every <= 0) return;
    this.resyncTimer = this.clock.setTimeout(() => {
      if (this.phase === 'stopped') return;
      if (this.phase === 'watching') this.resync();
      this.scheduleResync();
    }, every);
  }
}

function isGone(err: unknown): boolean {
  const e = err as { statusCode?: number; code?: number } | null | undefined;
  return e?.statusCode === 410 || e?.code === 410;
}
