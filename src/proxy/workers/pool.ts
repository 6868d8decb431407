/**
 * The proxy spread over worker threads (issue 6, "more than one core"). A single Node event loop
 * cannot carry a busy node's data path, so the agent starts N workers (worker.ts), each with its
 * own MeshProxy, and every enrolled pod gets one InPodProxy per worker, all with SO_REUSEPORT on
 * the same ports inside the pod netns: the kernel spreads the pod's new connections (and DNS
 * datagrams) over the workers by a hash of the 4-tuple. The main thread keeps the control work —
 * enrolment, config, certificates, the admin endpoints — and pushes state to the workers:
 *
 *   setConfig(state)             the node's accepted config, on every change; each worker builds its
 *                                own MeshView from it with the builder named in `view`
 *   setCredentials / release…    each pod's certificate on issue and renewal, and its release; the
 *                                key crosses as a string inside the message (protocol.ts), never logged
 *   openPod / closePod           every worker opens (closes) its listeners for the pod; openPod
 *                                resolves when all of them listen
 *   stats / metrics              summed over the workers; `metrics()` merges each worker's
 *                                prom-client registry with the main one (AggregatorRegistry.aggregate)
 *
 * A worker that dies (an uncaught error, or terminated) is logged and started again (backoff when it
 * keeps dying); the new one gets the config, the credentials and every open pod. Meanwhile the other
 * workers' listeners keep serving the pods: a reuseport group lives as long as one member does.
 * The dead worker's own connections are lost, and so are connections queued on its listeners but
 * not yet accepted. Its counters (stats, and counter/histogram metrics as of the last scrape) are
 * kept, so nothing Prometheus sees goes down.
 */
import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue, type Registry } from 'prom-client';
import type { PodRef } from '../connection.js';
import { addStats, emptyStats, type InPodNetConfig, type InPodStats, type InPodTimeouts } from '../inpod.js';
import type { CpuProfile } from '../../telemetry/profile.js';
import {
  cumulativeOnly,
  podKey,
  retireStats,
  toWire,
  type FromWorker,
  type ModuleExport,
  type PoolCredentials,
  type ReplyValues,
  type Request,
  type ToWorker,
  type WorkerInit,
} from './protocol.js';

type Metric = MetricObjectWithValues<MetricValue<string>>;

export interface ProxyWorkerPoolOptions {
  /**
   * On-demand scope: asks about an address a worker does not know; must resolve only after the
   * config that knows it was handed to setConfig (the agent's MeshConfig.resolve does: its
   * 'changed' listeners, the pool's first, run before it answers).
   */
  resolve?: (address: string) => Promise<boolean>;
  /** worker threads; at least 1 (with --proxy-workers=0 the agent keeps its in-thread path and makes no pool) */
  workers: number;
  /** the in-pod ports, marks and families (the agent's RedirectConfig) */
  config: InPodNetConfig;
  /** a function `(state) => MeshView` the workers import; `setConfig`'s state is its argument */
  view: ModuleExport;
  /** the main thread's logger (pool events: starts, exits, restarts) */
  log: Logger;
  /** the main thread's registry, merged into `metrics()` */
  registry?: Registry;
  /** the workers' own pino loggers: name (default ambit-agent), level (default info), fd (default 1: stdout) */
  workerLog?: { name?: string; level?: string; fd?: number };
  /** the workers' MeshProxy settings */
  mesh?: WorkerInit['mesh'];
  timeouts?: Partial<InPodTimeouts>;
  /** how long a request to a worker may take before it counts as failed; default 10 s */
  requestTimeoutMs?: number;
  /** delay before restarting a worker that died; doubles while it keeps dying within 30 s */
  restartBackoff?: { initialMs?: number; maxMs?: number };
}

export interface ProxyWorkerPoolEvents {
  /** a worker thread ended (code 1 after terminate() or an uncaught error) */
  exit: [index: number, code: number];
  /** a replacement worker is up and has re-opened the open pods (`failed`: pods it could not open) */
  restarted: [index: number, info: { pods: number; failed: number }];
}

interface PodEntry {
  netns: string;
  pod: PodRef;
  upstream?: { host: string; port: number };
}

interface Pending {
  resolve(value: unknown): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

interface Slot {
  index: number;
  worker: Worker | undefined;
  pending: Map<number, Pending>;
  /** the last stats and cumulative metrics this worker generation answered */
  lastStats: InPodStats;
  lastMetrics: Metric[];
  startedAt: number;
  backoffMs: number;
  restartTimer?: NodeJS.Timeout;
  fatal?: string;
  exited?: Promise<void>;
}

/** A request failed because its worker ended; the pool restarts it and re-opens its pods. */
export class WorkerGoneError extends Error {
  readonly code = 'AMBIT_WORKER_GONE';
}

const STABLE_MS = 30_000;

export class ProxyWorkerPool extends EventEmitter<ProxyWorkerPoolEvents> {
  readonly #opts: ProxyWorkerPoolOptions;
  readonly #log: Logger;
  readonly #slots: Slot[] = [];
  readonly #pods = new Map<string, PodEntry>();
  readonly #credentials = new Map<string, PoolCredentials>();
  readonly #failures = new Map<string, string>();
  #state: { value: unknown } | undefined;
  #nextId = 1;
  #closing = false;
  /** stats and cumulative metrics of worker generations that ended */
  #lostStats: InPodStats = emptyStats();
  #lostMetrics: Metric[] = [];

  private constructor(opts: ProxyWorkerPoolOptions) {
    super();
    this.#opts = opts;
    this.#log = opts.log.child({ component: 'proxy-workers' });
  }

  /** Starts the workers; resolves when every one answers (its modules loaded), rejects when one cannot start. */
  static async start(opts: ProxyWorkerPoolOptions): Promise<ProxyWorkerPool> {
    if (!Number.isInteger(opts.workers) || opts.workers < 1) throw new RangeError(`proxy workers must be a whole number ≥ 1, not ${opts.workers}`);
    const pool = new ProxyWorkerPool(opts);
    for (let i = 0; i < opts.workers; i++) {
      const slot: Slot = { index: i, worker: undefined, pending: new Map(), lastStats: emptyStats(), lastMetrics: [], startedAt: 0, backoffMs: opts.restartBackoff?.initialMs ?? 100 };
      pool.#slots.push(slot);
      pool.#spawn(slot);
    }
    try {
      await Promise.all(pool.#slots.map((s) => pool.#request(s, { type: 'stats' })));
    } catch (err) {
      const fatal = pool.#slots.find((s) => s.fatal)?.fatal;
      await pool.close();
      throw new Error(`cannot start the proxy workers: ${fatal ?? (err as Error).message}`, { cause: err });
    }
    pool.#log.info({ workers: opts.workers, threads: pool.#slots.map((s) => s.worker?.threadId) }, `proxy spread over ${opts.workers} worker threads (SO_REUSEPORT in every pod)`);
    return pool;
  }

  get size(): number {
    return this.#slots.length;
  }

  /** Thread ids of the running workers (undefined while one is being restarted). */
  get threadIds(): (number | undefined)[] {
    return this.#slots.map((s) => s.worker?.threadId);
  }

  /** The node's config changed: every worker rebuilds its view from `state` (kept for restarts). */
  setConfig(state: unknown): void {
    this.#state = { value: state };
    this.#broadcast({ type: 'config', state });
  }

  /** A pod's certificate was issued or renewed. */
  setCredentials(uid: string, credentials: PoolCredentials): void {
    this.#credentials.set(uid, credentials);
    this.#failures.delete(uid);
    for (const s of this.#slots) s.worker?.postMessage({ type: 'credentials', uid, credentials: toWire(credentials) } satisfies ToWorker);
  }

  /** The pod's certificate was released (un-enrolment): the workers forget the key. */
  releaseCredentials(uid: string): void {
    this.#credentials.delete(uid);
    this.#failures.delete(uid);
    this.#broadcast({ type: 'released', uid });
  }

  /** Why the pod has no certificate yet; a connection whose wait runs out says so. */
  credentialsFailed(uid: string, why: string): void {
    this.#failures.set(uid, why);
    this.#broadcast({ type: 'credentials-failed', uid, why });
  }

  /**
   * Every worker listens for the pod (SO_REUSEPORT); resolves when all do. When one cannot, the
   * others close again and this rejects with its error. A worker that is being restarted opens the
   * pod when it is back.
   */
  async openPod(netns: string, pod: PodRef, upstream?: { host: string; port: number }): Promise<void> {
    const key = podKey(pod);
    // only the PodRef fields cross to the workers (now and when one is restarted)
    const entry: PodEntry = { netns, pod: { namespace: pod.namespace, name: pod.name, uid: pod.uid, ips: [...pod.ips] }, ...(upstream ? { upstream } : {}) };
    this.#pods.set(key, entry);
    const msg = openMessage(entry);
    const results = await Promise.allSettled(this.#live().map((s) => this.#request(s, msg)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && !(r.reason instanceof WorkerGoneError));
    if (failed || !results.some((r) => r.status === 'fulfilled')) {
      await this.closePod(key);
      throw (failed?.reason as Error | undefined) ?? new Error(`pod ${pod.namespace}/${pod.name}: no proxy worker is running to listen for it; they are being restarted (see the log)`);
    }
  }

  /** Every worker stops listening for the pod (`podKey`: its uid); established connections run on. */
  async closePod(key: string): Promise<void> {
    this.#pods.delete(key);
    await Promise.allSettled(this.#live().map((s) => this.#request(s, { type: 'close', key })));
  }

  /** Keys of the pods the workers listen for. */
  pods(): string[] {
    return [...this.#pods.keys()];
  }

  /** Stats of one worker (its current generation), for tests and /debug. */
  async workerStats(index: number): Promise<InPodStats> {
    const slot = this.#slots[index];
    if (!slot) throw new RangeError(`no proxy worker ${index}`);
    return this.#request(slot, { type: 'stats' });
  }

  /** What every worker's listeners relayed, summed; never goes down (dead workers' last counts are kept). */
  async stats(): Promise<InPodStats> {
    const each = await Promise.all(
      this.#slots.map(async (s) => {
        if (!s.worker) return emptyStats();
        try {
          return await this.#request(s, { type: 'stats' });
        } catch {
          return s.lastStats;
        }
      }),
    );
    return each.reduce(addStats, this.#lostStats);
  }

  /** The workers' metrics (and the main registry's) merged: counters and histograms summed. */
  async metricsJson(): Promise<Metric[][]> {
    const each = await Promise.all(
      this.#slots.map(async (s) => {
        if (!s.worker) return [];
        try {
          return await this.#request(s, { type: 'metrics' });
        } catch (err) {
          this.#log.warn({ worker: s.index, err }, `proxy worker ${s.index} did not report its metrics; its last counters are used`);
          return s.lastMetrics;
        }
      }),
    );
    const main = this.#opts.registry ? [await this.#opts.registry.getMetricsAsJSON()] : [];
    return [...main, ...each, this.#lostMetrics].filter((m) => m.length > 0);
  }

  /** A CPU profile of every running worker's thread, taken side by side for `ms` (index = worker). */
  async cpuProfiles(ms: number): Promise<Array<CpuProfile | { error: string }>> {
    return Promise.all(
      this.#slots.map((s) =>
        this.#request(s, { type: 'profile', ms }, ms + 10_000).catch((err: Error) => ({ error: `proxy worker ${s.index}: ${err.message}` })),
      ),
    );
  }

  /** Prometheus text of `metricsJson()`, for /metrics. */
  async metrics(): Promise<string> {
    return AggregatorRegistry.aggregate(await this.metricsJson()).metrics();
  }

  /**
   * Graceful drain: every worker stops accepting at once, open connections get `drainMs` to finish,
   * then the rest are cut. Returns the connections open at the start and those cut.
   */
  async drain(drainMs: number): Promise<{ open: number; left: number }> {
    const results = await Promise.allSettled(this.#live().map((s) => this.#request(s, { type: 'drain', drainMs }, drainMs + (this.#opts.requestTimeoutMs ?? 10_000))));
    let open = 0;
    let left = 0;
    for (const r of results) {
      if (r.status === 'fulfilled') {
        open += r.value.open;
        left += r.value.left;
      }
    }
    return { open, left };
  }

  /** Ends every worker (their connections with them). */
  async close(): Promise<void> {
    this.#closing = true;
    for (const s of this.#slots) clearTimeout(s.restartTimer);
    await Promise.all(
      this.#slots.map(async (s) => {
        const exited = s.exited;
        await s.worker?.terminate();
        await exited;
      }),
    );
  }

  /**
   * Ends worker `index` abruptly, as a crash would (tests; a worker found wedged): it is restarted
   * like any worker that died.
   */
  async terminateWorker(index: number): Promise<void> {
    const slot = this.#slots[index];
    if (!slot?.worker) throw new RangeError(`proxy worker ${index} is not running`);
    const exited = slot.exited;
    await slot.worker.terminate();
    await exited;
  }

  // ---------------------------------------------------------------- workers

  #live(): Slot[] {
    return this.#slots.filter((s) => s.worker !== undefined);
  }

  #broadcast(msg: ToWorker): void {
    for (const s of this.#slots) s.worker?.postMessage(msg);
  }

  #spawn(slot: Slot): void {
    const opts = this.#opts;
    const init: WorkerInit = {
      index: slot.index,
      config: opts.config,
      view: opts.view,
      log: { name: opts.workerLog?.name ?? 'ambit-agent', level: opts.workerLog?.level ?? 'info', fd: opts.workerLog?.fd ?? 1 },
      mesh: opts.mesh ?? {},
      ...(opts.timeouts ? { timeouts: opts.timeouts } : {}),
    };
    const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: init, name: `ambit-proxy-${slot.index}` });
    slot.worker = worker;
    slot.startedAt = Date.now();
    slot.lastStats = emptyStats();
    slot.lastMetrics = [];
    delete slot.fatal;
    slot.exited = new Promise((resolve) => worker.once('exit', () => resolve()));
    worker.on('message', (m: FromWorker) => this.#onMessage(slot, m));
    worker.on('error', (err) => this.#log.error({ err, worker: slot.index }, `proxy worker ${slot.index} failed: ${err.message}`));
    worker.once('exit', (code) => this.#onExit(slot, worker, code));
    // The state it needs before any pod: messages queue until the worker listens, and keep their order.
    if (this.#state) worker.postMessage({ type: 'config', state: this.#state.value } satisfies ToWorker);
    for (const [uid, c] of this.#credentials) worker.postMessage({ type: 'credentials', uid, credentials: toWire(c) } satisfies ToWorker);
    for (const [uid, why] of this.#failures) worker.postMessage({ type: 'credentials-failed', uid, why } satisfies ToWorker);
  }

  #onMessage(slot: Slot, m: FromWorker): void {
    if (m.type === 'resolve') {
      const answer = (found: boolean): void => slot.worker?.postMessage({ type: 'resolved', rid: m.rid, found } satisfies ToWorker);
      const resolver = this.#opts.resolve;
      if (!resolver) return answer(false);
      resolver(m.address).then(answer, () => answer(false));
      return;
    }
    if (m.type === 'fatal') {
      slot.fatal = m.error;
      this.#log.error({ worker: slot.index }, m.error);
      return;
    }
    const p = slot.pending.get(m.id);
    if (!p) return;
    slot.pending.delete(m.id);
    clearTimeout(p.timer);
    if (m.ok) p.resolve(m.value);
    else p.reject(new Error(m.error));
  }

  #onExit(slot: Slot, worker: Worker, code: number): void {
    if (slot.worker !== worker) return;
    slot.worker = undefined;
    for (const p of slot.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new WorkerGoneError(`proxy worker ${slot.index} exited (code ${code})`));
    }
    slot.pending.clear();
    // What it counted stays counted.
    this.#lostStats = addStats(this.#lostStats, retireStats(slot.lastStats));
    if (slot.lastMetrics.length > 0) this.#lostMetrics = mergeCumulative([this.#lostMetrics, slot.lastMetrics]);
    this.emit('exit', slot.index, code);
    if (this.#closing) return;
    slot.backoffMs = Date.now() - slot.startedAt > STABLE_MS ? (this.#opts.restartBackoff?.initialMs ?? 100) : slot.backoffMs;
    const delay = slot.backoffMs;
    slot.backoffMs = Math.min(slot.backoffMs * 2, this.#opts.restartBackoff?.maxMs ?? 10_000);
    this.#log.error(
      { worker: slot.index, code, pods: this.#pods.size, restartInMs: delay },
      `proxy worker ${slot.index} exited unexpectedly (code ${code})${slot.fatal ? `: ${slot.fatal}` : ''}; its connections are lost, the other workers keep serving; restarting it in ${delay} ms and re-opening ${this.#pods.size} pod(s)`,
    );
    slot.restartTimer = setTimeout(() => void this.#restart(slot), delay);
    slot.restartTimer.unref();
  }

  async #restart(slot: Slot): Promise<void> {
    if (this.#closing) return;
    this.#spawn(slot);
    const entries = [...this.#pods.values()];
    const results = await Promise.allSettled(
      entries.map((e) => this.#request(slot, openMessage(e))),
    );
    let failed = 0;
    results.forEach((r, i) => {
      if (r.status === 'rejected' && !(r.reason instanceof WorkerGoneError)) {
        failed++;
        const { pod } = entries[i]!;
        this.#log.error({ worker: slot.index, pod: `${pod.namespace}/${pod.name}`, err: r.reason as Error }, `restarted proxy worker ${slot.index} cannot listen for pod ${pod.namespace}/${pod.name}; the other workers still serve it`);
      }
    });
    if (slot.worker) {
      this.#log.info({ worker: slot.index, pods: entries.length, failed }, `proxy worker ${slot.index} restarted`);
      this.emit('restarted', slot.index, { pods: entries.length, failed });
    }
  }

  #request<M extends RequestBody>(slot: Slot, msg: M, timeoutMs = this.#opts.requestTimeoutMs ?? 10_000): Promise<ReplyValues[M['type']]> {
    const worker = slot.worker;
    if (!worker) return Promise.reject(new WorkerGoneError(`proxy worker ${slot.index} is not running`));
    const id = this.#nextId++;
    return new Promise<ReplyValues[M['type']]>((resolve, reject) => {
      const timer = setTimeout(() => {
        slot.pending.delete(id);
        reject(new Error(`proxy worker ${slot.index} did not answer '${msg.type}' within ${timeoutMs} ms (is it stuck? its thread is ${worker.threadId})`));
      }, timeoutMs);
      slot.pending.set(id, {
        resolve: (v) => {
          if (msg.type === 'stats') slot.lastStats = v as InPodStats;
          if (msg.type === 'metrics') slot.lastMetrics = cumulativeOnly(v as Metric[]);
          resolve(v as ReplyValues[M['type']]);
        },
        reject,
        timer,
      });
      worker.postMessage({ ...msg, id } as ToWorker);
    });
  }
}

/** The request that makes a worker listen for a pod. */
function openMessage(e: PodEntry): RequestBody & { type: 'open' } {
  return { type: 'open', netns: e.netns, pod: e.pod, ...(e.upstream ? { upstream: e.upstream } : {}) };
}

type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;
/** A request as the pool writes it; #request adds the id. */
type RequestBody = DistributiveOmit<Request, 'id'>;

/** Sums cumulative metric sets into one (a dead worker's counters folded into what was lost before). */
function mergeCumulative(sets: Metric[][]): Metric[] {
  const nonEmpty = sets.filter((s) => s.length > 0);
  if (nonEmpty.length <= 1) return nonEmpty[0] ?? [];
  // aggregate() builds a registry whose metrics answer get() synchronously with the summed values.
  const registry = AggregatorRegistry.aggregate(nonEmpty) as unknown as { getMetricsAsArray(): { get(): Metric }[] };
  return registry.getMetricsAsArray().map((m) => m.get());
}
