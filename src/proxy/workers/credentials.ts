/**
 * A worker's CredentialSource: the pods' credentials as the main thread pushed them (the agent's
 * CertificateManager issues and renews; the pool forwards every 'issued' and 'released'). The mesh
 * handlers in the worker read it exactly as they read the manager in the single-thread agent:
 * `current(uid)` for the newest certificate (renewals apply to new handshakes), `get(uid, waitMs)`
 * for a connection that arrives before the first one — it waits for the message, then fails with
 * an Error that says why (the manager's last failure reason when the main thread sent one).
 */
import type { CredentialSource } from '../mesh/view.js';
import type { PoolCredentials } from './protocol.js';

interface Waiter {
  resolve(c: PoolCredentials): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

export class PushedCredentials implements CredentialSource {
  readonly #held = new Map<string, PoolCredentials>();
  readonly #why = new Map<string, string>();
  readonly #waiters = new Map<string, Set<Waiter>>();
  readonly #now: () => number;

  constructor(opts: { now?: () => number } = {}) {
    this.#now = opts.now ?? Date.now;
  }

  /** A pod's new (or renewed) credentials; connections waiting for them go on. */
  set(uid: string, creds: PoolCredentials): void {
    this.#held.set(uid, creds);
    this.#why.delete(uid);
    const waiting = this.#waiters.get(uid);
    if (!waiting) return;
    this.#waiters.delete(uid);
    for (const w of waiting) {
      clearTimeout(w.timer);
      w.resolve(creds);
    }
  }

  /** The pod left the mesh on this node: forget its key; connections waiting for it fail now. */
  release(uid: string): void {
    this.#held.delete(uid);
    this.#why.delete(uid);
    this.#fail(uid, `no certificate for pod ${uid}: the pod was removed from the mesh on this node — the connection is refused`);
  }

  /** Why the main thread has no certificate for the pod yet (said when a wait runs out). */
  failed(uid: string, why: string): void {
    this.#why.set(uid, why);
  }

  current(uid: string): PoolCredentials | undefined {
    const c = this.#held.get(uid);
    return c && (c.notAfterMs === undefined || c.notAfterMs > this.#now()) ? c : undefined;
  }

  get(uid: string, waitMs: number): Promise<PoolCredentials> {
    const c = this.current(uid);
    if (c) return Promise.resolve(c);
    return new Promise((resolve, reject) => {
      const set = this.#waiters.get(uid) ?? new Set<Waiter>();
      this.#waiters.set(uid, set);
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          set.delete(waiter);
          if (set.size === 0 && this.#waiters.get(uid) === set) this.#waiters.delete(uid);
          reject(new Error(this.#unavailable(uid, waitMs)));
        }, waitMs),
      };
      set.add(waiter);
    });
  }

  /** Pods with credentials held (expired ones included), for tests and debugging. */
  get size(): number {
    return this.#held.size;
  }

  /** Fails every waiting connection (the worker is stopping). */
  close(): void {
    for (const uid of [...this.#waiters.keys()]) this.#fail(uid, `no certificate for pod ${uid}: the proxy worker is stopping`);
  }

  #fail(uid: string, message: string): void {
    const waiting = this.#waiters.get(uid);
    if (!waiting) return;
    this.#waiters.delete(uid);
    for (const w of waiting) {
      clearTimeout(w.timer);
      w.reject(new Error(message));
    }
  }

  #unavailable(uid: string, waitMs: number): string {
    const held = this.#held.get(uid);
    if (held?.notAfterMs !== undefined) return `the certificate of pod ${uid} expired at ${new Date(held.notAfterMs).toISOString()} and no renewal arrived within ${waitMs} ms${this.#why.has(uid) ? `: ${this.#why.get(uid)}` : ''}`;
    return `no certificate for pod ${uid} after ${waitMs} ms: ${this.#why.get(uid) ?? 'the agent is still requesting it'}`;
  }
}
