/**
 * Rate limit for warnings that repeat once per connection or query (a destination refusing, an
 * upstream resolver down). The first occurrence of a key is logged at once; repeats within the
 * window are counted and reported with the next line that gets through, so an operator sees both
 * the cause and its scale without a log flood. Time is passed in: the logic is pure and testable.
 */
export class Throttle {
  readonly #windowMs: number;
  readonly #maxKeys: number;
  readonly #keys = new Map<string, { lastAt: number; suppressed: number }>();

  constructor(windowMs = 10_000, maxKeys = 64) {
    this.#windowMs = windowMs;
    this.#maxKeys = maxKeys;
  }

  /**
   * Whether to log `key` now. When yes, returns how many repeats were suppressed since the last
   * logged one (0 the first time); when no, returns undefined and counts the repeat.
   */
  allow(key: string, now: number): number | undefined {
    const entry = this.#keys.get(key);
    if (entry !== undefined && now - entry.lastAt < this.#windowMs) {
      entry.suppressed += 1;
      return undefined;
    }
    const suppressed = entry?.suppressed ?? 0;
    if (entry === undefined && this.#keys.size >= this.#maxKeys) {
      // Bounded memory: forget the oldest key (Map keeps insertion order).
      const oldest = this.#keys.keys().next().value;
      if (oldest !== undefined) this.#keys.delete(oldest);
    }
    this.#keys.delete(key);
    this.#keys.set(key, { lastAt: now, suppressed: 0 });
    return suppressed;
  }
}
