/**
 * A controller work queue: each key at most once in the queue (changes arriving while a key waits
 * are folded into one sync), delayed adds that keep the earliest deadline, and per-key exponential
 * backoff for failed syncs (client-go's rate-limited queue, without the worker threads).
 */

export interface QueueOptions {
  /** first retry delay (ms) */
  baseDelayMs?: number;
  /** longest retry delay (ms) */
  maxDelayMs?: number;
}

export class WorkQueue {
  private readonly order: string[] = [];
  private readonly queued = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly base: number;
  private readonly max: number;

  constructor(
    /** called whenever a key becomes ready, so the owner can schedule processing */
    private readonly onReady: () => void,
    opts: QueueOptions = {},
  ) {
    this.base = opts.baseDelayMs ?? 5;
    this.max = opts.maxDelayMs ?? 10_000;
  }

  add(key: string): void {
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.order.push(key);
    this.onReady();
  }

  /** Adds the key after `ms`; an earlier pending deadline for the key wins. */
  addAfter(key: string, ms: number): void {
    if (ms <= 0) return this.add(key);
    const at = Date.now() + ms;
    const cur = this.timers.get(key);
    if (cur && cur.at <= at) return;
    if (cur) clearTimeout(cur.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, ms);
    timer.unref();
    this.timers.set(key, { at, timer });
  }

  /** Retry with exponential backoff: base·2^failures, capped. */
  addRateLimited(key: string): void {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    this.addAfter(key, Math.min(this.max, this.base * 2 ** n));
  }

  /** The key synced cleanly: its backoff starts over. */
  forget(key: string): void {
    this.failures.delete(key);
  }

  pop(): string | undefined {
    const key = this.order.shift();
    if (key !== undefined) this.queued.delete(key);
    return key;
  }

  get length(): number {
    return this.order.length;
  }

  /** Keys waiting on a timer (delayed or backing off). */
  get delayed(): number {
    return this.timers.size;
  }

  clear(): void {
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.order.length = 0;
    this.queued.clear();
    this.failures.clear();
  }
}
