/**
 * A/B micro-benchmark of the CNI ADD "rules" step without a cluster: the fresh apply of a pod's
 * redirection (`applyRedirection(…, { freshNetns: true })`, backend iptables-nft) with the policy
 * routing written the old way (`nsenter … ip -batch -`, one process per family) against the new way
 * (rtnetlink from inside the netns, no process). Needs root; runs in network namespaces it creates
 * (`ambit-nlbench-<pid>-*`, two per round, deleted at the end and on Ctrl-C).
 *
 * Rounds are interleaved (old, new / new, old alternating), each in fresh namespaces, so drift in
 * machine load hits both sides alike. Per side it reports p50/p90/max of:
 *   - apply:   the whole fresh apply (routing + iptables-nft-restore), what the enroller's
 *              "apply" step sees;
 *   - routing: the routing part alone;
 *   - blocked: how long the routing call held the event loop before returning its promise (the
 *              fork of `spawn` for ip; the whole netlink exchange for netlink).
 * The process carries a ballast (BENCH_BALLAST_MB, default 150: the agent's size), since a fork's
 * cost grows with the parent's memory.
 *
 * Usage: node dist/bench/cni-rules-micro.js [--json]
 * Knobs: BENCH_ROUNDS (40, at most 200), BENCH_FAMILIES ("4", or "4,6"), BENCH_BALLAST_MB (150).
 */
import { TestNetns } from '../src/sys/testing.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { redirectConfig, type IpFamily } from '../src/agent/redirect/config.js';
import { applyRedirection, ipRouting, netnsRunner } from '../src/agent/redirect/exec.js';
import { netlinkRouting, type RoutingTool } from '../src/agent/redirect/routing-netlink.js';

const ROUNDS = Math.min(200, Math.max(1, Number(process.env.BENCH_ROUNDS ?? 40)));
const FAMILIES = (process.env.BENCH_FAMILIES ?? '4').split(',').map((f) => Number(f) as IpFamily);
const BALLAST_MB = Number(process.env.BENCH_BALLAST_MB ?? 150);
const json = process.argv.includes('--json');
const PREFIX = `ambit-nlbench-${process.pid}`;
const CONFIG = redirectConfig({ families: FAMILIES });

type Side = 'ip' | 'netlink';
interface Sample {
  apply: number;
  routing: number;
  blocked: number;
}

const netns = new TestNetns();
const addNamespace = (name: string): string => netns.add(name); // lo up, as the runtime leaves it before CNI ADD
const cleanup = (): void => netns.deleteAll();

/** The tool, with the time of its writes and the part of each that ran before the promise returned. */
function timed(tool: RoutingTool, sample: Partial<Sample>): RoutingTool {
  return {
    read: (p, f) => tool.read(p, f),
    write: (p, commands) => {
      const t0 = performance.now();
      const done = tool.write(p, commands);
      sample.blocked = performance.now() - t0;
      return done.finally(() => (sample.routing = performance.now() - t0));
    },
  };
}

async function once(side: Side, path: string, lockDir: string): Promise<Sample> {
  const sample: Partial<Sample> = {};
  const routing = timed(side === 'ip' ? ipRouting(netnsRunner(path)) : netlinkRouting, sample);
  const t0 = performance.now();
  await applyRedirection(path, { backend: 'iptables-nft', config: CONFIG }, { freshNetns: true, lockDir, routing });
  return { apply: performance.now() - t0, routing: sample.routing!, blocked: sample.blocked! };
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function stats(values: number[]): { p50: number; p90: number; max: number } {
  const s = [...values].sort((a, b) => a - b);
  const r = (v: number) => Math.round(v * 100) / 100;
  return { p50: r(quantile(s, 0.5)), p90: r(quantile(s, 0.9)), max: r(s.at(-1)!) };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('cni-rules-micro needs root (it creates network namespaces)');
  const ballast = Buffer.alloc(BALLAST_MB * 1024 * 1024, 1); // touched, so the fork copies its page tables
  const lockDir = mkdtempSync(join(tmpdir(), 'ambit-nlbench-'));
  const samples: Record<Side, Sample[]> = { ip: [], netlink: [] };
  try {
    // one warm-up round each (koffi load, first exec of each binary), not counted
    for (const side of ['ip', 'netlink'] as const) await once(side, addNamespace(`${PREFIX}-warm-${side}`), lockDir);
    for (let i = 0; i < ROUNDS; i++) {
      const order: Side[] = i % 2 === 0 ? ['ip', 'netlink'] : ['netlink', 'ip'];
      for (const side of order) samples[side].push(await once(side, addNamespace(`${PREFIX}-${i}-${side}`), lockDir));
      // delete as we go: a few hundred netns would slow the kernel's netns walks for both sides
      cleanup();
    }
  } finally {
    cleanup();
    rmSync(lockDir, { recursive: true, force: true });
  }
  const result = Object.fromEntries(
    (['ip', 'netlink'] as const).map((side) => [
      side,
      { apply: stats(samples[side].map((s) => s.apply)), routing: stats(samples[side].map((s) => s.routing)), blocked: stats(samples[side].map((s) => s.blocked)) },
    ]),
  );
  if (json) {
    console.log(JSON.stringify({ rounds: ROUNDS, families: FAMILIES, ballastMb: BALLAST_MB, backend: 'iptables-nft', ...result }));
    return;
  }
  console.log(`fresh apply, iptables-nft, IPv${FAMILIES.join('+IPv')}, ${ROUNDS} rounds interleaved, ${ballast.length >> 20} MB ballast (ms, p50 / p90 / max)`);
  for (const side of ['ip', 'netlink'] as const) {
    const r = result[side]!;
    const show = (s: { p50: number; p90: number; max: number }) => `${s.p50} / ${s.p90} / ${s.max}`.padEnd(24);
    console.log(`  ${side.padEnd(8)} apply ${show(r.apply)} routing ${show(r.routing)} event loop blocked ${show(r.blocked)}`);
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
