/**
 * The messages between the proxy worker pool (main thread) and its worker threads, and the pure
 * helpers both sides use on them. Kept apart from pool.ts and worker.ts so each side can be read
 * against one list of what may cross the thread boundary.
 *
 * Everything here is structured-clone data. Two kinds of message:
 *   - state, pushed and never answered: the node's config (`config`, opaque to the proxy: the
 *     worker hands it to the view builder the agent named) and each pod's credentials
 *     (`credentials`, `released`, `credentials-failed`);
 *   - requests with an `id`, answered by one `reply` with the same id: open/close a pod's
 *     listeners, stats, metrics, drain.
 *
 * Keys: a pod's private key crosses as a plain string inside a `credentials` message
 * (`WireCredentials.keyPem`), because a `Sensitive` wrapper does not survive structured cloning
 * (its value is a private field). `toWire` reveals it at the last moment and `fromWire` wraps it
 * again first thing in the worker, so on both sides the key lives only inside `Sensitive`; the
 * message object itself is never logged (neither side logs messages, only their type and pod).
 */
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import { Sensitive } from '../../identity/sensitive.js';
import type { PodRef } from '../connection.js';
import type { WorkloadCredentials } from '../hbone/index.js';
import type { InPodNetConfig, InPodStats, InPodTimeouts } from '../inpod.js';
import type { CpuProfile } from '../../telemetry/profile.js';

/** A module the worker imports and the function it calls there (the agent names its view builder). */
export interface ModuleExport {
  /** a file: URL or an absolute path of an ES module */
  module: string;
  /** the exported function's name */
  export: string;
}

/** What a worker is started with (workerData). */
export interface WorkerInit {
  index: number;
  config: InPodNetConfig;
  /** `(state) => MeshView`: called with every `config` message's state */
  view: ModuleExport;
  log: { name: string; level: string; /** file descriptor the worker's pino writes to; default 1 */ fd: number };
  mesh: {
    certificateWaitMs?: number;
    connectTimeoutMs?: number;
    idleTimeoutMs?: number;
    hboneSessionIdleMs?: number;
  };
  timeouts?: Partial<InPodTimeouts>;
}

/** A pod's credentials as they cross to a worker (see the header on keys). */
export interface WireCredentials {
  identity: string;
  certChainPem: string[];
  keyPem: string;
  /** ms since epoch; the worker stops using it afterwards */
  notAfterMs?: number;
}

/** Credentials as the pool receives them (the agent's WorkloadCertificate fits). */
export interface PoolCredentials extends WorkloadCredentials {
  notAfterMs?: number;
}

export type ToWorker =
  | { type: 'config'; state: unknown }
  | { type: 'credentials'; uid: string; credentials: WireCredentials }
  | { type: 'released'; uid: string }
  | { type: 'credentials-failed'; uid: string; why: string }
  | { type: 'open'; id: number; netns: string; pod: PodRef; upstream?: { host: string; port: number } }
  | { type: 'close'; id: number; key: string }
  | { type: 'stats'; id: number }
  | { type: 'metrics'; id: number }
  | { type: 'drain'; id: number; drainMs: number }
  /** a CPU profile of the worker's thread for ms (telemetry/profile.ts) */
  | { type: 'profile'; id: number; ms: number }
  /** the answer to a worker's 'resolve' (after the config that knows it, when found) */
  | { type: 'resolved'; rid: number; found: boolean };

export type Request = Extract<ToWorker, { id: number }>;
export type RequestType = Request['type'];

/** What each request's reply carries. */
export interface ReplyValues {
  open: null;
  close: null;
  stats: InPodStats;
  metrics: MetricObjectWithValues<MetricValue<string>>[];
  drain: { open: number; left: number };
  profile: CpuProfile;
}

export type FromWorker =
  | { type: 'reply'; id: number; ok: true; value: unknown }
  | { type: 'reply'; id: number; ok: false; error: string }
  /** the worker could not start (its view module failed to load): the pool does not restart it */
  | { type: 'fatal'; error: string }
  /** on-demand scope: the worker met an unknown address; the main thread asks the control plane */
  | { type: 'resolve'; rid: number; address: string };

/** The key a pod's listeners are known by on both sides: its uid, else namespace/name. */
export function podKey(pod: Pick<PodRef, 'uid' | 'namespace' | 'name'>): string {
  return pod.uid || `${pod.namespace}/${pod.name}`;
}

/** Reveals the key into a message. Call only to post it to a worker. */
export function toWire(c: PoolCredentials): WireCredentials {
  return { identity: c.identity, certChainPem: [...c.certChainPem], keyPem: c.keyPem.reveal(), ...(c.notAfterMs !== undefined ? { notAfterMs: c.notAfterMs } : {}) };
}

/** The worker's side: the key goes back into Sensitive before anything else sees it. */
export function fromWire(w: WireCredentials): PoolCredentials {
  return { identity: w.identity, certChainPem: w.certChainPem, keyPem: new Sensitive(w.keyPem), ...(w.notAfterMs !== undefined ? { notAfterMs: w.notAfterMs } : {}) };
}

type Metric = MetricObjectWithValues<MetricValue<string>>;

/**
 * The cumulative metrics of a worker (counters, histograms): what must outlive the worker, since a
 * counter that went down would look like a reset to Prometheus. Gauges describe the present, so a
 * dead worker's are dropped.
 */
export function cumulativeOnly(metrics: readonly Metric[]): Metric[] {
  return metrics.filter((m) => String(m.type) === 'counter' || String(m.type) === 'histogram');
}

/**
 * Stats of listeners that are gone (a worker that exited or drained): nothing is open any more, so
 * every opened connection counts as closed and nothing is in flight. Pure.
 */
export function retireStats(s: InPodStats): InPodStats {
  const tcp = (t: InPodStats['outbound']): InPodStats['outbound'] => ({ ...t, closed: t.opened, active: 0 });
  return { outbound: tcp(s.outbound), inbound: tcp(s.inbound), tunnel: tcp(s.tunnel), dns: tcp(s.dns), dnsUdp: { ...s.dnsUdp, inflight: 0 } };
}
