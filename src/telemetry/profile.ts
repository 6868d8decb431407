/**
 * On-demand CPU profiles of a running process, for operators and benchmarks: "measure before you
 * believe" has to work on the agent as deployed, where the proxy runs in worker threads inside a
 * container and `node --cpu-prof` (written only at a clean exit) is out of reach.
 *
 * `captureCpuProfile` profiles the CALLING thread through its own inspector session (each worker
 * thread has one; `node:inspector` connects to the thread it runs on), for `ms`, and returns the V8
 * profile (the `.cpuprofile` JSON that Chrome DevTools and speedscope open). The sampling interval
 * is V8's default unless given. `summarizeProfile` reduces a profile to the functions with the most
 * self time, for a quick look without a viewer.
 */
import { Session } from 'node:inspector/promises';

/** The V8 CPU profile as the inspector returns it (`Profiler.Profile`). */
export interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number }; hitCount?: number; children?: number[] }>;
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

/** Longest profile one request may ask for: a profile holds the thread's samples in memory. */
export const MAX_PROFILE_MS = 60_000;

let busy = false;

/**
 * Profiles this thread for `ms` (1..MAX_PROFILE_MS). One profile at a time per thread: a second
 * concurrent request is refused rather than silently sharing (V8 has one profiler per isolate).
 */
export async function captureCpuProfile(ms: number, samplingIntervalUs?: number): Promise<CpuProfile> {
  if (!Number.isFinite(ms) || ms < 1 || ms > MAX_PROFILE_MS) throw new RangeError(`profile duration must be 1..${MAX_PROFILE_MS} ms, got ${ms}`);
  if (busy) throw new Error('a CPU profile of this thread is already being taken; try again when it ends');
  busy = true;
  const session = new Session();
  session.connect();
  try {
    await session.post('Profiler.enable');
    if (samplingIntervalUs) await session.post('Profiler.setSamplingInterval', { interval: samplingIntervalUs });
    await session.post('Profiler.start');
    await new Promise((resolve) => setTimeout(resolve, ms));
    const { profile } = (await session.post('Profiler.stop')) as { profile: CpuProfile };
    return profile;
  } finally {
    session.disconnect();
    busy = false;
  }
}

export interface ProfileEntry {
  /** function name (or "(anonymous)"), file base name and line */
  where: string;
  selfMs: number;
  selfPct: number;
}

/**
 * The `top` functions by self time. Time per sample is taken from `timeDeltas` (V8 attributes each
 * delta to the sample after it), so a profile with an uneven sampling rate still adds up.
 */
export function summarizeProfile(p: CpuProfile, top = 25): { totalMs: number; idlePct: number; entries: ProfileEntry[] } {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<string, number>();
  let total = 0;
  let idle = 0;
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    const node = byId.get(samples[i]!);
    const dt = deltas[i + 1] ?? 0;
    if (!node) continue;
    total += dt;
    const f = node.callFrame;
    if (f.functionName === '(idle)') idle += dt;
    const file = f.url ? f.url.slice(f.url.lastIndexOf('/') + 1) : '';
    const key = `${f.functionName || '(anonymous)'}${file ? ` ${file}:${f.lineNumber + 1}` : ''}`;
    selfUs.set(key, (selfUs.get(key) ?? 0) + dt);
  }
  const entries = [...selfUs.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([where, us]) => ({ where, selfMs: Math.round(us / 100) / 10, selfPct: total ? Math.round((1000 * us) / total) / 10 : 0 }));
  return { totalMs: Math.round(total / 1000), idlePct: total ? Math.round((1000 * idle) / total) / 10 : 0, entries };
}
