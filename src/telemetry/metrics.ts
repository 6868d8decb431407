/**
 * Metrics: one prom-client Registry per program (never the library's global one, so tests can
 * run several programs in one process), the control plane's metric set, and the small HTTP
 * server that serves `/metrics` (Prometheus text), `/ready` (readiness), `/healthz` (liveness) and,
 * when given, `/debug/state` (JSON) and `/debug/cpu-profile?seconds=N` (CPU profiles, see profile.ts).
 */
import http from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { MAX_PROFILE_MS } from './profile.js';

/** The control plane's metrics (names prefixed ambit_control_). */
export class ControlMetrics {
  readonly registry = new Registry();
  readonly connectedAgents = new Gauge({ name: 'ambit_control_connected_agents', help: 'Agents with an open config subscription on this replica', registers: [this.registry] });
  readonly pushLatency = new Histogram({
    name: 'ambit_control_push_latency_seconds',
    help: 'From publishing a node config version to the agent acknowledging it',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly snapshotBytes = new Gauge({ name: 'ambit_control_snapshot_bytes', help: 'Size of the current node-scoped snapshot (JSON bytes)', labelNames: ['node'], registers: [this.registry] });
  readonly nacks = new Counter({ name: 'ambit_control_nacks_total', help: 'Resources agents rejected (NACK), by resource type', labelNames: ['type'], registers: [this.registry] });
  readonly csrs = new Counter({ name: 'ambit_control_csrs_total', help: 'Certificate requests, by result (signed, denied) and denial reason', labelNames: ['result', 'reason'], registers: [this.registry] });
  readonly watchRestarts = new Counter({ name: 'ambit_control_watch_restarts_total', help: 'Restarts of a Kubernetes watch after an error or 410 Gone', labelNames: ['resource'], registers: [this.registry] });
  readonly recompute = new Histogram({
    name: 'ambit_control_recompute_seconds',
    help: 'Time to compute the mesh model and every node snapshot after a change',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly statusWrites = new Counter({ name: 'ambit_control_status_writes_total', help: 'Status writes on user objects, by result', labelNames: ['result'], registers: [this.registry] });

  constructor(opts: { processMetrics?: boolean } = {}) {
    // process_resident_memory_bytes, process_cpu_seconds_total, event loop lag, heap
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }
}

export interface Readiness {
  ready: boolean;
  /** why not, for the probe's body */
  reason: string;
}

/** Serves /metrics, /ready and /healthz; resolves once listening (fails loudly when it cannot bind). */
export async function startAdminServer(opts: {
  host: string;
  port: number;
  /** what /metrics serves (its content type is used in any case) */
  registry: Registry;
  /**
   * Instead of `registry.metrics()`: the text to serve, made per scrape (the agent merges its
   * proxy workers' registries with its own).
   */
  metrics?: () => Promise<string>;
  readiness: () => Readiness;
  /** served as JSON on /debug/state (the agent's per-pod enrolment, for operators and tests) */
  debug?: () => unknown;
  /** served as JSON on /debug/cpu-profile?seconds=N (1–60, default 10): CPU profiles of the process's threads */
  profile?: (ms: number) => Promise<unknown>;
}): Promise<http.Server & { boundPort: number }> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET' }).end();
      return;
    }
    if (path === '/metrics') {
      (opts.metrics ? opts.metrics() : opts.registry.metrics()).then(
        (text) => res.writeHead(200, { 'Content-Type': opts.registry.contentType }).end(text),
        (err: Error) => res.writeHead(500).end(`metrics failed: ${err.message}\n`),
      );
      return;
    }
    if (path === '/ready') {
      const r = opts.readiness();
      res.writeHead(r.ready ? 200 : 503, { 'Content-Type': 'text/plain' }).end(r.ready ? 'ready\n' : `not ready: ${r.reason}\n`);
      return;
    }
    if (path === '/debug/state' && opts.debug) {
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(`${JSON.stringify(opts.debug(), null, 1)}\n`);
      return;
    }
    if (path === '/debug/cpu-profile' && opts.profile) {
      const seconds = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('seconds') ?? 10);
      if (!Number.isFinite(seconds) || seconds <= 0 || seconds * 1000 > MAX_PROFILE_MS) {
        res.writeHead(400, { 'Content-Type': 'text/plain' }).end(`seconds must be a number in (0, ${MAX_PROFILE_MS / 1000}]\n`);
        return;
      }
      opts.profile(seconds * 1000).then(
        (p) => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(p)),
        (err: Error) => res.writeHead(409, { 'Content-Type': 'text/plain' }).end(`cannot profile: ${err.message}\n`),
      );
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok\n');
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: try /metrics, /ready or /healthz\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`cannot serve metrics on ${opts.host}:${opts.port}: ${err.message}`)));
    server.listen(opts.port, opts.host, () => resolve());
  });
  return Object.assign(server, { boundPort: (server.address() as { port: number }).port });
}
