// Exponential back-off as the kubelet keeps it (client-go flowcontrol.Backoff): per key, a delay
// that starts at `initialMs`, doubles on every `next` up to `maxMs`, and is forgotten once the key
// has been quiet for twice the maximum. Time is passed in, so the rules are table-testable.

export interface BackoffEntry {
  /** the current delay */
  delayMs: number;
  /** when `next` last ran */
  lastUpdateMs: number;
}

export class Backoff {
  private readonly entries = new Map<string, BackoffEntry>();

  constructor(
    readonly initialMs: number,
    readonly maxMs: number,
  ) {}

  /** The current delay for `key` (0 when it has none). */
  get(key: string): number {
    return this.entries.get(key)?.delayMs ?? 0;
  }

  /** Moves `key` to its next delay: initial the first time (or after a long quiet), doubled after. */
  next(key: string, nowMs: number): number {
    const e = this.entries.get(key);
    if (!e || this.expired(e, nowMs)) {
      this.entries.set(key, { delayMs: this.initialMs, lastUpdateMs: nowMs });
      return this.initialMs;
    }
    e.delayMs = Math.min(e.delayMs * 2, this.maxMs);
    e.lastUpdateMs = nowMs;
    return e.delayMs;
  }

  /** True while `nowMs` lies within the current delay counted from `eventMs` (e.g. a container's exit). */
  isInBackoffSince(key: string, eventMs: number, nowMs: number): boolean {
    const e = this.entries.get(key);
    if (!e || this.expired(e, nowMs)) return false;
    return nowMs - eventMs < e.delayMs;
  }

  /** When the back-off that started at `eventMs` ends (ms), or `eventMs` when there is none. */
  until(key: string, eventMs: number): number {
    return eventMs + this.get(key);
  }

  reset(key: string): void {
    this.entries.delete(key);
  }

  /** Drops every key quiet for longer than twice the maximum (the kubelet runs this periodically). */
  gc(nowMs: number): void {
    for (const [k, e] of this.entries) if (this.expired(e, nowMs)) this.entries.delete(k);
  }

  private expired(e: BackoffEntry, nowMs: number): boolean {
    return nowMs - e.lastUpdateMs > 2 * this.maxMs;
  }
}

/** The kubelet's container restart back-off: 10 s doubling to 5 min. */
export const CRASH_BACKOFF = { initialMs: 10_000, maxMs: 300_000 } as const;
/** The kubelet's image pull back-off: 10 s doubling to 5 min. */
export const IMAGE_BACKOFF = { initialMs: 10_000, maxMs: 300_000 } as const;

/** wait.Jitter: `ms` plus up to `factor` times it, at random. */
export function jitter(ms: number, factor: number, random: () => number = Math.random): number {
  return ms + random() * factor * ms;
}

/** "10s", "1m20s", "5m0s" as Go prints a time.Duration of whole seconds (used in kubelet messages). */
export function goDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${s % 60}s`;
  return `${Math.floor(m / 60)}h${m % 60}m${s % 60}s`;
}
