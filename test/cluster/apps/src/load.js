#!/usr/bin/env node
// load: a bounded HTTP load client. Prints one JSON object with counts, status codes, error kinds,
// latency percentiles and the response bytes received (with their rate).
//
//   load --url U [--rps N] [--duration S] [--requests N] [--concurrency C] [--timeout MS] [--method M]
//        [--new-connection] [--warmup S]
//
// --rps with --duration sends rps*duration requests on a fixed schedule (requests wait for a free
// worker when all C are busy, so an overloaded server shows as latency, measured from the schedule);
// --requests alone sends N as fast as C workers go; --duration alone runs closed-loop for S seconds;
// --requests with --duration sends at most N within S.
// Workers keep their connections alive (C connections at most); --new-connection opens a new TCP
// connection for every request and closes it after the response (`Connection: close`), to measure
// connection set-up. --warmup S first runs closed-loop for S seconds with the same workers and
// connections and throws those samples away, so the measured part starts with every connection
// open and the code warm (a fixed-rate run would otherwise count connection set-up as latency).
// Hard caps (refused, not clamped): MAX_REQUESTS requests, MAX_DURATION_S seconds, MAX_CONCURRENCY
// workers, MAX_RPS; no request starts after the duration (or the cap) and none outlives --timeout,
// so a run ends by duration + timeout whatever the server does.
import http from 'node:http';
import https from 'node:https';
import { isMain, parseFlags, UsageError } from './lib.js';

export const MAX_REQUESTS = 200_000;
export const MAX_DURATION_S = 300;
export const MAX_CONCURRENCY = 256;
export const MAX_RPS = 20_000;
export const MAX_WARMUP_S = 60;

const USAGE =
  'usage: load --url URL [--rps N] [--duration S] [--requests N] [--concurrency C] [--timeout MS] [--method M] [--new-connection] [--warmup S]\n' +
  `  caps: requests <= ${MAX_REQUESTS}, duration <= ${MAX_DURATION_S} s, concurrency <= ${MAX_CONCURRENCY}, rps <= ${MAX_RPS}`;

/** Validated plan of a run: total requests (or unbounded until the deadline), pacing and limits. */
export function parseLoadArgs(argv) {
  const { flags, positional } = parseFlags(argv, {
    url: 'string', rps: 'number', duration: 'number', requests: 'number', concurrency: 'number', timeout: 'number', method: 'string', 'new-connection': 'boolean', warmup: 'number', help: 'boolean',
  });
  if (flags.help) throw new UsageError(USAGE);
  if (positional.length) throw new UsageError(`unexpected argument ${JSON.stringify(positional[0])}\n${USAGE}`);
  if (!flags.url) throw new UsageError(`--url is required\n${USAGE}`);
  let url;
  try {
    url = new URL(flags.url);
  } catch {
    throw new UsageError(`--url ${JSON.stringify(flags.url)} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError('--url must be http:// or https://');
  const check = (name, value, min, max) => {
    if (value === undefined) return;
    if (value < min || value > max) throw new UsageError(`--${name} must be between ${min} and ${max}, got ${value}`);
  };
  check('rps', flags.rps, 0.1, MAX_RPS);
  check('duration', flags.duration, 0.001, MAX_DURATION_S);
  check('requests', flags.requests, 1, MAX_REQUESTS);
  check('concurrency', flags.concurrency, 1, MAX_CONCURRENCY);
  check('timeout', flags.timeout, 1, 60_000);
  check('warmup', flags.warmup, 0, MAX_WARMUP_S);
  if (flags.requests !== undefined && !Number.isInteger(flags.requests)) throw new UsageError('--requests must be an integer');
  if (flags.concurrency !== undefined && !Number.isInteger(flags.concurrency)) throw new UsageError('--concurrency must be an integer');
  if (flags.rps !== undefined && flags.duration === undefined && flags.requests === undefined) {
    throw new UsageError('--rps needs --duration or --requests');
  }
  if (flags.duration === undefined && flags.requests === undefined) throw new UsageError(`give --requests or --duration\n${USAGE}`);
  let total = flags.requests;
  if (total === undefined && flags.rps !== undefined) total = Math.ceil(flags.rps * flags.duration);
  if (total !== undefined && total > MAX_REQUESTS) throw new UsageError(`that is ${total} requests; the cap is ${MAX_REQUESTS}`);
  const timeoutMs = flags.timeout ?? 5000;
  // How long new requests may start: the given duration, else the schedule's length at --rps,
  // else the cap (--requests alone ends when they are done).
  const durationS = flags.duration ?? (flags.rps !== undefined ? total / flags.rps : MAX_DURATION_S);
  if (durationS > MAX_DURATION_S) throw new UsageError(`that run would take ${durationS} s; the cap is ${MAX_DURATION_S} s`);
  return {
    url: url.href,
    method: (flags.method ?? 'GET').toUpperCase(),
    rps: flags.rps,
    total, // undefined: closed loop until the duration ends
    concurrency: flags.concurrency ?? 1,
    newConnection: flags['new-connection'] === true,
    warmupMs: (flags.warmup ?? 0) * 1000,
    timeoutMs,
    // The hard bound of a run: no request starts after durationMs, none lasts longer than timeoutMs.
    durationMs: durationS * 1000,
  };
}

/** Nearest-rank percentile of an ascending array (undefined when empty). */
export function percentile(sorted, p) {
  if (!sorted.length) return undefined;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(Math.max(rank, 1), sorted.length) - 1];
}

const round = (x) => (x === undefined ? undefined : Math.round(x * 1000) / 1000);

/** The printed result, from raw samples. */
export function summarize(plan, samples, elapsedMs, stoppedEarly) {
  const latencies = samples.filter((s) => s.ok).map((s) => s.ms).sort((a, b) => a - b);
  const statusCodes = {};
  const errorKinds = {};
  for (const s of samples) {
    if (s.status !== undefined) statusCodes[s.status] = (statusCodes[s.status] ?? 0) + 1;
    if (s.error) errorKinds[s.error] = (errorKinds[s.error] ?? 0) + 1;
  }
  const errors = samples.filter((s) => !s.ok).length;
  const bytes = samples.reduce((sum, s) => sum + (s.bytes ?? 0), 0);
  const seconds = Math.max(elapsedMs / 1000, 1e-9);
  return {
    url: plan.url,
    method: plan.method,
    concurrency: plan.concurrency,
    newConnection: plan.newConnection === true,
    rps: plan.rps ?? null,
    planned: plan.total ?? null,
    count: samples.length,
    ok: samples.length - errors,
    errors,
    statusCodes,
    errorKinds,
    elapsedMs: Math.round(elapsedMs),
    achievedRps: round(samples.length / seconds),
    // response body bytes, also of failed responses; MB = 10^6 bytes
    bytes,
    megabytesPerS: round(bytes / 1e6 / seconds),
    stoppedEarly,
    latencyMs: {
      min: round(latencies[0]),
      mean: round(latencies.length ? latencies.reduce((a, b) => a + b, 0) / latencies.length : undefined),
      p50: round(percentile(latencies, 50)),
      p90: round(percentile(latencies, 90)),
      p99: round(percentile(latencies, 99)),
      max: round(latencies[latencies.length - 1]),
    },
  };
}

/**
 * One request, bounded in total time by `timeoutMs` (not just socket idle time). `agent` false: a
 * connection of its own, closed after the response.
 */
function oneRequest(plan, agent, transport) {
  return new Promise((resolve) => {
    const req = transport.request(plan.url, { method: plan.method, agent, signal: AbortSignal.timeout(plan.timeoutMs) }, (res) => {
      let bytes = 0;
      res.on('data', (chunk) => (bytes += chunk.length));
      res.on('end', () => resolve({ status: res.statusCode, ok: res.statusCode < 500, bytes }));
      res.on('error', (err) => resolve({ status: res.statusCode, ok: false, error: errorKind(err), bytes }));
    });
    req.on('error', (err) => resolve({ ok: false, error: errorKind(err) }));
    req.end();
  });
}

function errorKind(err) {
  return err.name === 'AbortError' || err.name === 'TimeoutError' ? 'ETIMEDOUT' : (err.code ?? err.message);
}

/** Runs the plan; resolves the summary. Responses >= 500 count as errors (the status is kept). */
export async function runLoad(plan) {
  const transport = plan.url.startsWith('https:') ? https : http;
  const agent = plan.newConnection ? false : new transport.Agent({ keepAlive: true, maxSockets: plan.concurrency });
  if (plan.warmupMs > 0) {
    // Closed loop with the same agent (so its connections stay open for the run); bounded by
    // warmupMs + timeoutMs like any run.
    const warmEnd = performance.now() + plan.warmupMs;
    const warm = async () => {
      while (performance.now() < warmEnd) await oneRequest(plan, agent, transport);
    };
    await Promise.all(Array.from({ length: plan.concurrency }, warm));
  }
  const samples = [];
  const start = performance.now();
  const issueEnd = start + plan.durationMs;
  let next = 0;
  let stoppedEarly = false;
  const interval = plan.rps ? 1000 / plan.rps : 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (plan.total !== undefined && i >= plan.total) return;
      const scheduled = interval ? start + i * interval : performance.now();
      if (scheduled >= issueEnd || performance.now() >= issueEnd) {
        // A closed loop ends here by design; a counted run that did not finish in time says so.
        if (plan.total !== undefined) stoppedEarly = true;
        return;
      }
      const wait = scheduled - performance.now();
      // Timers take whole milliseconds; round up so a request never leaves before its slot.
      if (wait > 0) await new Promise((r) => setTimeout(r, Math.ceil(wait)));
      const sent = performance.now();
      const result = await oneRequest(plan, agent, transport);
      // Measured from the scheduled time when sent late, so queueing behind busy workers counts as latency.
      samples.push({ ...result, ms: performance.now() - Math.min(scheduled, sent) });
    }
  };
  await Promise.all(Array.from({ length: plan.concurrency }, worker));
  if (agent) agent.destroy();
  return summarize(plan, samples, performance.now() - start, stoppedEarly);
}

if (isMain(import.meta.url)) {
  try {
    const plan = parseLoadArgs(process.argv.slice(2));
    const result = await runLoad(plan);
    console.log(JSON.stringify(result));
    process.exit(result.count > 0 && result.errors === 0 ? 0 : 1);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(err.message);
    process.exit(2);
  }
}
