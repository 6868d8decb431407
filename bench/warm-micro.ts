/**
 * A/B micro-benchmark of the two process steps left on CNI ADD's path, without a cluster:
 *
 *   fresh apply  — `applyRedirection(…, { freshNetns: true })` (routing over netlink, then one
 *                  restore per family), its restore spawned (cold) vs taken from a WarmPool (warm);
 *   probe sync   — the node's probe SNAT for the own backend, as CNI ADD runs it (one pod more
 *                  than the last write, every round):
 *                  save+restore (the read-based sync this change replaces: `*-save`, then the full
 *                  builder's restore), change cold / change warm (the read-free restore of the
 *                  change since the last write, spawned / from a WarmPool: what ADD runs), whole
 *                  warm (the read-free whole-set restore, from a WarmPool: the first write after
 *                  an agent start or a failure).
 *
 * Needs root; runs in network namespaces it creates (`ambit-warmbench-<pid>-*`: two per fresh-apply
 * round, and one node netns per probe-sync side with kube-proxy-like nat rules; deleted at the end
 * and on Ctrl-C). Rounds are interleaved (the order alternates), so drift in machine load hits every side
 * alike. Between rounds the pool refills (a quiet node between two ADDs; back-to-back ADDs beyond
 * the pool's size spawn, as before). Per side: p50/p90/max of
 *   - total:   the step as the enroller awaits it;
 *   - blocked: how long the step held the event loop in its runner calls (the synchronous part of
 *              each: the fork of a spawn; a write to a pipe for a warm process);
 *   - refill:  for warm sides, the event loop held by the refill's spawn, which runs AFTER the
 *              result was delivered (setImmediate), off the request's path.
 * The process carries a ballast (BENCH_BALLAST_MB, default 150: the agent's size), since a fork's
 * cost grows with the parent's memory.
 *
 * Usage: node dist/bench/warm-micro.js [--json]
 * Knobs: BENCH_ROUNDS (40, at most 200), BENCH_FAMILIES ("4", or "4,6"), BENCH_BALLAST_MB (150),
 *        BENCH_BACKEND (iptables-nft | iptables-legacy | nft), BENCH_PODS (30: pods already in the
 *        node's probe set), BENCH_LOAD (0: busy-loop processes to run meanwhile, killed at the end).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { run, TestNetns } from '../src/sys/testing.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { redirectConfig, type IpFamily } from '../src/agent/redirect/config.js';
import type { Backend } from '../src/agent/redirect/detect.js';
import { applyRedirection, freshApplyCommands, netnsRunner, type CommandRunner, type RunnerSource } from '../src/agent/redirect/exec.js';
import { buildHostProbeIptables, hostProbeSyncCommands, natSection, syncHostProbeSnat } from '../src/agent/redirect/host-probe.js';
import { parseIptablesSave } from '../src/agent/redirect/iptables.js';
import { WarmPool } from '../src/agent/redirect/warm.js';

const ROUNDS = Math.min(200, Math.max(1, Number(process.env.BENCH_ROUNDS ?? 40)));
const FAMILIES = (process.env.BENCH_FAMILIES ?? '4').split(',').map((f) => Number(f) as IpFamily);
const BALLAST_MB = Number(process.env.BENCH_BALLAST_MB ?? 150);
const BACKEND = (process.env.BENCH_BACKEND ?? 'iptables-nft') as Backend;
const PODS = Math.max(0, Number(process.env.BENCH_PODS ?? 30));
const LOAD = Math.max(0, Number(process.env.BENCH_LOAD ?? 0));
const json = process.argv.includes('--json');
const PREFIX = `ambit-warmbench-${process.pid}`;
const CONFIG = redirectConfig({ families: FAMILIES });

interface Sample {
  total: number;
  blocked: number;
  refill: number;
}
type ApplySide = 'cold' | 'warm';
type ProbeSide = 'save+restore' | 'change cold' | 'change warm' | 'whole warm';
const PROBE_SIDES: readonly ProbeSide[] = ['save+restore', 'change cold', 'change warm', 'whole warm'];

const netns = new TestNetns();
const burners: ChildProcess[] = [];

/** `ip <args>`, failing with its stderr. */
function sh(args: string[], input?: string): void {
  run('ip', args, input);
}

const addNamespace = (name: string): string => netns.add(name); // lo up, as the runtime leaves it before CNI ADD

/** Deletes the namespaces made so far, but those in `keep`. */
function deleteNamespaces(keep: readonly string[] = []): void {
  for (const name of netns.names) if (!keep.includes(name)) netns.delete(name);
}

function cleanup(): void {
  deleteNamespaces();
  for (const b of burners.splice(0)) if (b.exitCode === null) b.kill('SIGKILL');
}

/** `run`, adding the synchronous part of every call (the fork, for a spawn) to `sample.blocked`. */
function timed(run: CommandRunner, sample: Sample): CommandRunner {
  return (argv, stdin, env) => {
    const t0 = performance.now();
    const done = run(argv, stdin, env);
    sample.blocked += performance.now() - t0;
    return done;
  };
}

function source(make: (netnsPath?: string) => CommandRunner, sample: Sample): RunnerSource {
  return { runner: (netnsPath) => timed(make(netnsPath), sample) };
}

/** The refill's spawns that ran since `before` (the pool times them). */
async function refillOf(pool: WarmPool, before: number): Promise<number> {
  if (!(await pool.whenFull(5000))) throw new Error('the warm pool did not refill within 5 s');
  return pool.stats().spawnMs - before;
}

async function applyOnce(side: ApplySide, pool: WarmPool, lockDir: string, round: number): Promise<Sample> {
  const path = addNamespace(`${PREFIX}-${round}-${side}`);
  const sample: Sample = { total: 0, blocked: 0, refill: 0 };
  const warm = side === 'warm' ? source((p) => pool.runner(p), sample) : source((p) => netnsRunner(p!), sample);
  const spawnMs = pool.stats().spawnMs;
  const t0 = performance.now();
  await applyRedirection(path, { backend: BACKEND, config: CONFIG }, { freshNetns: true, lockDir, warm });
  sample.total = performance.now() - t0;
  if (side === 'warm') sample.refill = await refillOf(pool, spawnMs);
  return sample;
}

/** kube-proxy-like nat rules in the node netns (a masquerade chain and the bridge plugin's ACCEPT). */
function addNodeRules(node: string): void {
  if (BACKEND === 'nft') return;
  const mode = BACKEND === 'iptables-legacy' ? 'legacy' : 'nft';
  for (const family of FAMILIES) {
    const subnet = family === 4 ? '10.244.0.0/16' : 'fd00:244::/48';
    const rules = ['*nat', ':KUBE-POSTROUTING - [0:0]', '-A POSTROUTING -j KUBE-POSTROUTING', `-A POSTROUTING -d ${subnet} -j ACCEPT`, '-A KUBE-POSTROUTING -j MASQUERADE', 'COMMIT', ''];
    sh(['netns', 'exec', node, `${family === 4 ? 'iptables' : 'ip6tables'}-${mode}-restore`, '--noflush'], rules.join('\n'));
  }
}

function podIps(n: number): string[] {
  const ips: string[] = [];
  for (let i = 0; i < n; i++) {
    if (FAMILIES.includes(4)) ips.push(`10.244.${(i >> 8) & 255}.${(i & 255) + 1}`);
    if (FAMILIES.includes(6)) ips.push(`fd00:244::${(i + 1).toString(16)}`);
  }
  return ips;
}

/** The read-based own-backend sync this change replaces: one save, then the full builder's restore, per family. */
async function saveAndRestore(run: CommandRunner, ips: string[], lockEnv: Record<string, string> | undefined): Promise<void> {
  const mode = BACKEND === 'iptables-legacy' ? 'legacy' : 'nft';
  await Promise.all(
    FAMILIES.map(async (family) => {
      const bin = `${family === 4 ? 'iptables' : 'ip6tables'}-${mode}`;
      const save = await run([`${bin}-save`], undefined, lockEnv);
      if (save.code !== 0) throw new Error(`${bin}-save: ${save.stderr}`);
      const input = buildHostProbeIptables(CONFIG, family, ips, parseIptablesSave(natSection(save.stdout)));
      const restore = await run([`${bin}-restore`, '--noflush', '--wait=10'], input, lockEnv);
      if (restore.code !== 0) throw new Error(`${bin}-restore: ${restore.stderr}`);
    }),
  );
}

/** One node netns per probe-sync side (each side's memory of its last write must be its node's). */
interface ProbeNode {
  path: string;
  /** The side's runner, stable across rounds (the own-backend sync remembers its last write per runner); times into `sample`. */
  run: CommandRunner;
  sample: Sample;
}

function probeNode(side: ProbeSide, pool: WarmPool): ProbeNode {
  const name = `${PREFIX}-node-${PROBE_SIDES.indexOf(side)}`;
  const path = addNamespace(name);
  addNodeRules(name);
  const node: ProbeNode = { path, sample: { total: 0, blocked: 0, refill: 0 }, run: async () => ({ code: 0, stdout: '', stderr: '' }) };
  const inner = side.endsWith('warm') ? pool.runner(path) : netnsRunner(path);
  node.run = (argv, stdin, env) => timed(inner, node.sample)(argv, stdin, env);
  return node;
}

async function probeOnce(side: ProbeSide, pool: WarmPool, node: ProbeNode, lockFile: string, ips: string[]): Promise<Sample> {
  const sample: Sample = (node.sample = { total: 0, blocked: 0, refill: 0 });
  const lockEnv = BACKEND === 'iptables-legacy' ? { XTABLES_LOCKFILE: lockFile } : undefined;
  const spawnMs = pool.stats().spawnMs;
  const t0 = performance.now();
  if (side === 'save+restore') {
    if (BACKEND === 'nft') throw new Error('unreachable: nft has no read-based side');
    await saveAndRestore(node.run, ips, lockEnv);
  } else {
    // 'whole warm': a new runner each time, so nothing is remembered and the whole set is written
    const run: CommandRunner = side === 'whole warm' ? (argv, stdin, env) => node.run(argv, stdin, env) : node.run;
    await syncHostProbeSnat(ips, { backend: BACKEND, config: CONFIG, run, lockFile, ownBackendOnly: true });
  }
  sample.total = performance.now() - t0;
  if (side.endsWith('warm')) sample.refill = await refillOf(pool, spawnMs);
  return sample;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

type Stats = { p50: number; p90: number; max: number };

function stats(values: number[]): Stats {
  const s = [...values].sort((a, b) => a - b);
  const r = (v: number) => Math.round(v * 100) / 100;
  return { p50: r(quantile(s, 0.5)), p90: r(quantile(s, 0.9)), max: r(s.at(-1)!) };
}

function summary(samples: Sample[]): { total: Stats; blocked: Stats; refill: Stats } {
  return { total: stats(samples.map((s) => s.total)), blocked: stats(samples.map((s) => s.blocked)), refill: stats(samples.map((s) => s.refill)) };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('warm-micro needs root (it creates network namespaces)');
  for (let i = 0; i < LOAD; i++) burners.push(spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' }));
  const ballast = Buffer.alloc(BALLAST_MB * 1024 * 1024, 1); // touched, so the fork copies its page tables
  const lockDir = mkdtempSync(join(tmpdir(), 'ambit-warmbench-'));
  const lockFile = join(lockDir, 'node-xtables.lock');
  const pool = new WarmPool({ commands: [...freshApplyCommands(BACKEND, FAMILIES), ...hostProbeSyncCommands(BACKEND, FAMILIES)], size: 2 });
  const applySides: ApplySide[] = ['cold', 'warm'];
  const probeSides = PROBE_SIDES.filter((s) => BACKEND !== 'nft' || s !== 'save+restore');
  const apply: Record<ApplySide, Sample[]> = { cold: [], warm: [] };
  const probe: Record<ProbeSide, Sample[]> = { 'save+restore': [], 'change cold': [], 'change warm': [], 'whole warm': [] };
  try {
    if (!(await pool.whenFull(10_000))) throw new Error('the warm pool did not fill within 10 s');
    const nodes = new Map(probeSides.map((side) => [side, probeNode(side, pool)] as const));
    const keep = [...netns.names];
    for (const node of nodes.values()) {
      // the agent's start: a full sync puts our jump in place (and is remembered for that runner)
      await syncHostProbeSnat(podIps(PODS), { backend: BACKEND, config: CONFIG, run: node.run, lockFile });
    }
    // one warm-up round each (koffi load, first exec of each binary), not counted
    for (const side of applySides) await applyOnce(side, pool, lockDir, -1);
    for (const side of probeSides) await probeOnce(side, pool, nodes.get(side)!, lockFile, podIps(PODS + 1));
    for (let i = 0; i < ROUNDS; i++) {
      const a = i % 2 === 0 ? applySides : [...applySides].reverse();
      for (const side of a) apply[side].push(await applyOnce(side, pool, lockDir, i));
      // an ADD adds one pod to the node's set (every side writes the same set this round)
      const ips = podIps(PODS + 2 + i);
      const p = probeSides.map((_, k) => probeSides[(k + i) % probeSides.length]!);
      for (const side of p) probe[side].push(await probeOnce(side, pool, nodes.get(side)!, lockFile, ips));
      // delete the pods' netns as we go: hundreds would slow the kernel's netns walks for every side
      deleteNamespaces(keep);
    }
  } finally {
    await pool.close();
    cleanup();
    rmSync(lockDir, { recursive: true, force: true });
  }
  const result = {
    apply: Object.fromEntries(applySides.map((s) => [s, summary(apply[s])])),
    probe: Object.fromEntries(probeSides.map((s) => [s, summary(probe[s])])),
  };
  if (json) {
    console.log(JSON.stringify({ rounds: ROUNDS, families: FAMILIES, backend: BACKEND, ballastMb: BALLAST_MB, pods: PODS, load: LOAD, ...result }));
    return;
  }
  const show = (s: Stats) => `${s.p50} / ${s.p90} / ${s.max}`.padEnd(22);
  console.log(
    `${BACKEND}, IPv${FAMILIES.join('+IPv')}, ${ROUNDS} rounds interleaved, ${ballast.length >> 20} MB ballast, ${LOAD} busy loops (ms, p50 / p90 / max)`,
  );
  console.log('fresh apply (routing + restore):');
  for (const side of applySides) {
    const r = result.apply[side]!;
    console.log(`  ${side.padEnd(13)} total ${show(r.total)} blocked ${show(r.blocked)}${side === 'warm' ? ` refill (after) ${show(r.refill)}` : ''}`);
  }
  console.log(`probe SNAT sync, own backend (${PODS}+ pods, one more each round):`);
  for (const side of probeSides) {
    const r = result.probe[side]!;
    console.log(`  ${side.padEnd(13)} total ${show(r.total)} blocked ${show(r.blocked)}${side.endsWith('warm') ? ` refill (after) ${show(r.refill)}` : ''}`);
  }
}

process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});

main().catch((err: unknown) => {
  cleanup();
  console.error(err);
  process.exitCode = 1;
});
