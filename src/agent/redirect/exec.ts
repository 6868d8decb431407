/**
 * The thin executor: runs the builders' output inside a pod's network namespace with the real
 * tools (`nsenter --net=<path>` + iptables-*-save/restore, nft) and, for the policy routing,
 * rtnetlink from inside the netns (routing-netlink.ts: no process at all). All decisions are in the
 * pure builders; this file reads the current state, asks them what to run, and runs it. The tools'
 * processes come from a RunnerSource when one is given (ExecOptions.warm: warm.ts's WarmPool, whose
 * processes are started ahead, so CNI ADD's one restore forks nothing on the request's path), else
 * from a spawn per command.
 *
 * Properties the agent relies on:
 * - applying twice equals applying once (the builders compare with the current state);
 * - each iptables table and the nft table change in one atomic commit, so the pod never sees half a
 *   capture (the routing rule is installed first: it is inert until the rules mark packets);
 * - removal deletes every chain, jump, table, rule and route of ours in every backend, whichever
 *   backend put it there (an agent restart or a backend change leaves nothing behind), and nothing
 *   else. Removal order is the reverse: capture rules first, then routing.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import type { Backend } from './detect.js';
import { type IpFamily, type RedirectConfig, DEFAULT_REDIRECT_CONFIG } from './config.js';
import {
  buildIptables,
  buildIptablesRemoval,
  emptyTables,
  hasIptablesRedirection,
  parseIptablesSave,
  withoutRedirection,
  type IptablesState,
} from './iptables.js';
import { buildNftables, buildNftablesRemoval, NFT_FAMILY, NFT_TABLE } from './nftables.js';
import { buildRoutingApply, buildRoutingRemoval, parseIpJson, type IpRoute, type IpRule, type RoutingState } from './routes.js';
import { netlinkRouting, RoutingError, type RoutingTool } from './routing-netlink.js';

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `argv` (no shell) with optional stdin and extra environment. Rejects only when it cannot start. */
export type CommandRunner = (argv: readonly string[], stdin?: string, env?: Record<string, string>) => Promise<CommandResult>;

/** What to program into a pod. */
export interface RedirectionPlan {
  backend: Backend;
  config: RedirectConfig;
}

/** A tool failed; the message names the pod netns, the command, its stderr and what to do. */
export class RedirectionError extends Error {
  constructor(
    readonly netnsPath: string,
    readonly argv: readonly string[],
    readonly result: CommandResult,
  ) {
    const stderr = result.stderr.trim();
    const hint = hintFor(stderr);
    super(
      `in pod netns ${netnsPath}: '${argv.join(' ')}' exited with ${result.code}` +
        (stderr ? `: ${stderr}` : '') +
        (hint ? ` (${hint})` : ''),
    );
    this.name = 'RedirectionError';
  }
}

/** Runs commands on the host (the agent's own netns), e.g. for `probeNode`. */
export const hostRunner: CommandRunner = (argv, stdin, env) => runProcess(argv, stdin, env);

/** Runs commands inside the network namespace at `netnsPath` (and nothing else: mounts stay the agent's). */
export function netnsRunner(netnsPath: string): CommandRunner {
  return (argv, stdin, env) => runProcess(['nsenter', `--net=${netnsPath}`, '--', ...argv], stdin, env);
}

/**
 * Where a netns's command runner comes from: `runner(netnsPath)` runs in that netns, `runner()` in
 * the agent's own. The seam for warm processes (warm.ts's WarmPool), which keep the fork of the
 * agent off a request's path; without one, every command is a fresh spawn.
 */
export interface RunnerSource {
  runner(netnsPath?: string): CommandRunner;
}

export interface ExecOptions {
  /** Defaults to `netnsRunner(netnsPath)`; tests inject a fake. */
  run?: CommandRunner;
  /**
   * How the policy routing is read and written. Default: rtnetlink from inside the netns
   * (`netlinkRouting`), or, when `run` is injected, `ip` commands through that runner
   * (`ipRouting(run)`), so a fake runner still sees every command. Tests inject a fake.
   */
  routing?: RoutingTool;
  /**
   * Directory for the per-pod xtables lock of the legacy backend (default /var/run/ambit). Legacy iptables serialises all
   * writers on one lock file; the default /run/xtables.lock is the node's, shared with kube-proxy,
   * while a pod netns has its own tables and needs no such contention.
   */
  lockDir?: string;
  /**
   * Whether `applyRedirection` looks for (and removes) rules of the other backends. Default true.
   * CNI ADD for a netns the runtime just made may pass false: nothing can be there yet, and the
   * reads are a third of the cost of an apply.
   */
  cleanOtherBackends?: boolean;
  /**
   * The runtime has just made this netns (CNI ADD) and nothing of ours has been tried in it:
   * `applyRedirection` skips every read and writes from an empty state: the routing over netlink,
   * then one capture process. Checked, not trusted: our ip rule goes in first, as `ip rule add`
   * (NLM_F_EXCL), which the kernel refuses (EEXIST) when an identical rule exists, and rules
   * of ours anywhere imply that rule (apply adds it before any capture; removal deletes it after).
   * On EEXIST the full apply runs instead (reads, repairs, other backends cleaned), so applying
   * twice still equals applying once.
   */
  freshNetns?: boolean;
  /**
   * Where the tools' processes come from when `run` is not injected: e.g. a WarmPool (warm.ts)
   * keeping `freshApplyCommands(…)` ready, so the fresh apply's one restore forks nothing at use.
   * Default: a spawn per command (`netnsRunner`).
   */
  warm?: RunnerSource;
}

/**
 * Programs the pod's redirection: routing rule and route per family, then the capture rules with
 * the plan's backend, and removes leftovers of the other backends (a changed backend never leaves
 * two captures in place). All reads run in parallel first (they are most of the cost: each is a
 * process), then the writes in order.
 */
export async function applyRedirection(netnsPath: string, plan: RedirectionPlan, opts: ExecOptions = {}): Promise<void> {
  const tools = new Tools(netnsPath, opts);
  if (opts.freshNetns && (await applyFresh(tools, plan))) return;
  const { config, backend } = plan;
  const others = opts.cleanOtherBackends === false ? [] : BACKENDS.filter((b) => b !== backend);
  const [routing, leftovers, own] = await Promise.all([
    tools.readRouting(config.families),
    Promise.all(others.map((b) => readRules(tools, b))),
    backend === 'nft' ? undefined : readRules(tools, backend),
  ]);
  await tools.writeRouting(config.families.flatMap((family, i) => buildRoutingApply(config, family, routing[i]!)));
  for (const rules of leftovers) await removeRules(tools, rules);
  if (backend === 'nft') {
    await tools.nft(buildNftables(config));
    return;
  }
  if (own?.kind !== 'iptables') throw new Error('unreachable: iptables state for an iptables backend');
  // The families' rulesets are independent: restore them side by side.
  await Promise.all(
    FAMILIES.map((family) =>
      config.families.includes(family)
        ? tools.iptablesRestore(backend, family, buildIptables(config, family, own.state[family]))
        : removeIptables(tools, backend, family, own.state[family]), // a family the pod no longer has
    ),
  );
}

/**
 * The apply for a netns nothing of ours has touched (see ExecOptions.freshNetns): routing first,
 * which doubles as the check, then the capture built against an empty ruleset. False when our ip
 * rule already exists (nothing after it has been changed then: the write stops at the failing
 * command; an earlier family's rule and route are ours and the full apply keeps them).
 */
async function applyFresh(tools: Tools, plan: RedirectionPlan): Promise<boolean> {
  const { config, backend } = plan;
  const none: RoutingState = { rules: [], routes: [] };
  try {
    await tools.writeRouting(config.families.flatMap((family) => buildRoutingApply(config, family, none)));
  } catch (err) {
    if (isRoutingExists(err)) return false;
    throw err;
  }
  // Our ip rule was not there, so neither is anything else of ours (see ExecOptions.freshNetns):
  // the nft table is only added, not replaced.
  if (backend === 'nft') await tools.nft(buildNftables(config, { fresh: true }));
  else await Promise.all(config.families.map((family) => tools.iptablesRestore(backend, family, buildIptables(config, family))));
  return true;
}

/** Removes every rule, chain, table, ip rule and route of ours from the pod, in every backend. */
export async function removeRedirection(
  netnsPath: string,
  config: RedirectConfig = DEFAULT_REDIRECT_CONFIG,
  opts: ExecOptions = {},
): Promise<void> {
  const tools = new Tools(netnsPath, opts);
  const [rules, routing] = await Promise.all([Promise.all(BACKENDS.map((b) => readRules(tools, b))), tools.readRouting(FAMILIES)]);
  for (const r of rules) await removeRules(tools, r);
  await tools.writeRouting(FAMILIES.flatMap((family, i) => buildRoutingRemoval(config, family, routing[i]!)));
  tools.forgetLock();
}

/** What of ours is present in the pod, per backend and family; for reconciliation and tests. */
export interface RedirectionPresence {
  'iptables-legacy': boolean;
  'iptables-nft': boolean;
  nft: boolean;
  /** Our ip rule or route exists, per family. */
  routing: { 4: boolean; 6: boolean };
}

export async function inspectRedirection(
  netnsPath: string,
  config: RedirectConfig = DEFAULT_REDIRECT_CONFIG,
  opts: ExecOptions = {},
): Promise<RedirectionPresence> {
  const tools = new Tools(netnsPath, opts);
  const [legacy, iptNft, nft, [routing4, routing6]] = await Promise.all([
    readRules(tools, 'iptables-legacy'),
    readRules(tools, 'iptables-nft'),
    readRules(tools, 'nft'),
    tools.readRouting(FAMILIES),
  ]);
  return {
    'iptables-legacy': isPresent(legacy),
    'iptables-nft': isPresent(iptNft),
    nft: isPresent(nft),
    routing: {
      4: buildRoutingRemoval(config, 4, routing4!).length > 0,
      6: buildRoutingRemoval(config, 6, routing6!).length > 0,
    },
  };
}

/**
 * The commands a fresh apply (ExecOptions.freshNetns) writes with, exactly as the runner is asked
 * for them: one restore per family, or one `nft -f -`. What a WarmPool should keep ready for CNI ADD.
 */
export function freshApplyCommands(backend: Backend, families: readonly IpFamily[]): string[][] {
  return backend === 'nft' ? [[...NFT_APPLY]] : families.map((family) => restoreArgv(backend, family));
}

/** `nft -f -`: how every nft ruleset (pod and node) is written. */
export const NFT_APPLY = ['nft', '-f', '-'] as const;

function restoreArgv(backend: IptablesBackend, family: IpFamily): string[] {
  const wait = backend === 'iptables-legacy' ? ['--wait', '10'] : [];
  return [binary(backend, family, 'restore'), '--noflush', ...wait];
}

const BACKENDS: readonly Backend[] = ['iptables-legacy', 'iptables-nft', 'nft'];
const FAMILIES: readonly IpFamily[] = [4, 6];
type IptablesBackend = Exclude<Backend, 'nft'>;

/** One backend's current content in the pod. */
type BackendRules =
  | { kind: 'nft'; present: boolean }
  | { kind: 'iptables'; backend: IptablesBackend; state: Record<IpFamily, IptablesState> };

async function readRules(tools: Tools, backend: Backend): Promise<BackendRules> {
  if (backend === 'nft') return { kind: 'nft', present: await tools.hasNftTable() };
  const [v4, v6] = await Promise.all([tools.iptablesState(backend, 4), tools.iptablesState(backend, 6)]);
  return { kind: 'iptables', backend, state: { 4: v4, 6: v6 } };
}

function isPresent(rules: BackendRules): boolean {
  return rules.kind === 'nft' ? rules.present : FAMILIES.some((f) => hasIptablesRedirection(rules.state[f]));
}

async function removeRules(tools: Tools, rules: BackendRules): Promise<void> {
  if (rules.kind === 'nft') {
    if (rules.present) await tools.nft(buildNftablesRemoval());
    return;
  }
  for (const family of FAMILIES) await removeIptables(tools, rules.backend, family, rules.state[family]);
}

async function removeIptables(tools: Tools, backend: IptablesBackend, family: IpFamily, current: IptablesState): Promise<void> {
  const removal = buildIptablesRemoval(current);
  if (removal === '') return;
  await tools.iptablesRestore(backend, family, removal);
  // With nf_tables, the tables our apply created can go too, so the pod's ruleset is exactly as
  // before (legacy tables cannot be deleted). Only tables that are empty once ours is gone.
  if (backend === 'iptables-nft') {
    const empty = emptyTables(withoutRedirection(current));
    if (empty.length > 0 && (await tools.hasNft())) {
      await tools.nft(empty.map((t) => `delete table ${family === 4 ? 'ip' : 'ip6'} ${t}`).join('\n') + '\n');
    }
  }
}

/** The commands, with their exact binaries and flags, in one pod netns. */
class Tools {
  readonly #run: CommandRunner;
  readonly #routing: RoutingTool;
  readonly #lockFile: string;
  readonly #nftKey: object;

  constructor(
    readonly netnsPath: string,
    opts: ExecOptions,
  ) {
    this.#run = opts.run ?? opts.warm?.runner(netnsPath) ?? netnsRunner(netnsPath);
    this.#routing = opts.routing ?? (opts.run ? ipRouting(opts.run) : netlinkRouting);
    this.#nftKey = opts.run ?? nftAvailable;
    const id = createHash('sha256').update(netnsPath).digest('hex').slice(0, 16);
    const dir = opts.lockDir ?? '/var/run/ambit';
    mkdirSync(dir, { recursive: true });
    this.#lockFile = `${dir}/xtables-${id}.lock`;
  }

  /** Runs and fails on a non-zero exit. */
  async must(argv: string[], stdin?: string, env?: Record<string, string>): Promise<CommandResult> {
    const result = await this.#run(argv, stdin, env);
    if (result.code !== 0) throw new RedirectionError(this.netnsPath, argv, result);
    return result;
  }

  async iptablesState(backend: IptablesBackend, family: IpFamily): Promise<IptablesState> {
    const { stdout } = await this.must([binary(backend, family, 'save')], undefined, this.#env(backend));
    return parseIptablesSave(stdout);
  }

  async iptablesRestore(backend: IptablesBackend, family: IpFamily, input: string): Promise<void> {
    await this.must(restoreArgv(backend, family), input, this.#env(backend));
  }

  async nft(input: string): Promise<void> {
    await this.must([...NFT_APPLY], input);
  }

  async hasNft(): Promise<boolean> {
    return nftRuns(this.#run, this.#nftKey);
  }

  async hasNftTable(): Promise<boolean> {
    if (!(await this.hasNft())) return false;
    const result = await this.#run(['nft', 'list', 'table', NFT_FAMILY, NFT_TABLE]);
    return result.code === 0;
  }

  /** The routing state of each family, in `families` order. */
  async readRouting(families: readonly IpFamily[]): Promise<RoutingState[]> {
    return this.#routing.read(this.netnsPath, families);
  }

  /** Runs routes.ts's commands in order; stops at the first failure. */
  async writeRouting(commands: readonly (readonly string[])[]): Promise<void> {
    await this.#routing.write(this.netnsPath, commands);
  }

  /** Deletes the pod's legacy lock file (legacy iptables creates it; one per pod would pile up). */
  forgetLock(): void {
    rmSync(this.#lockFile, { force: true });
  }

  #env(backend: IptablesBackend): Record<string, string> | undefined {
    return backend === 'iptables-legacy' ? { XTABLES_LOCKFILE: this.#lockFile } : undefined;
  }
}

/** Whether `nft` runs, per runner (the real tools: keyed by this map itself). */
const nftAvailable = new WeakMap<object, Promise<boolean>>();

/**
 * Whether the `nft` binary runs. It does not change while the agent runs, so a yes is asked once
 * per `key` (the injected runner, or one shared key for the real tools) — pod netns and node
 * alike. A no is asked again next time: one failed start (a fork refused under memory pressure)
 * must not turn the iptables-nft table cleanup off for the agent's lifetime.
 */
export function nftRuns(run: CommandRunner, key: object = nftAvailable): Promise<boolean> {
  let known = nftAvailable.get(key);
  if (known === undefined) {
    known = run(['nft', '--version']).then(
      (r) => r.code === 0,
      () => false,
    );
    nftAvailable.set(key, known);
    void known.then((yes) => {
      if (!yes && nftAvailable.get(key) === known) nftAvailable.delete(key);
    });
  }
  return known;
}

/**
 * The policy routing through `ip` processes run by `run` (in the pod netns): `ip -j … show` to read,
 * one `ip -<family> -batch -` per family to write (families side by side; a batch stops at its first
 * failing line). The executor's choice when a command runner is injected; also the "before" side of
 * bench/cni-rules-micro.ts.
 */
export function ipRouting(run: CommandRunner): RoutingTool {
  const must = async (netnsPath: string, argv: string[], stdin?: string): Promise<CommandResult> => {
    const result = await run(argv, stdin);
    if (result.code !== 0) throw new RedirectionError(netnsPath, argv, result);
    return result;
  };
  const readFamily = async (netnsPath: string, family: IpFamily): Promise<RoutingState> => {
    const [rules, routes] = await Promise.all([
      must(netnsPath, ['ip', '-j', `-${family}`, 'rule', 'show']),
      must(netnsPath, ['ip', '-j', `-${family}`, 'route', 'show', 'table', 'all']),
    ]);
    return { rules: parseIpJson<IpRule>(rules.stdout), routes: parseIpJson<IpRoute>(routes.stdout) };
  };
  return {
    read: (netnsPath, families) => Promise.all(families.map((f) => readFamily(netnsPath, f))),
    async write(netnsPath, commands) {
      const families = [...new Set(commands.map((c) => c[0]))];
      await Promise.all(
        families.map((flag) => {
          if (flag !== '-4' && flag !== '-6') throw new Error(`ip routing command without -4/-6: ${commands.find((c) => c[0] === flag)?.join(' ')}`);
          const lines = commands.filter((c) => c[0] === flag).map((c) => c.slice(1).join(' '));
          return must(netnsPath, ['ip', flag, '-batch', '-'], lines.join('\n') + '\n');
        }),
      );
    },
  };
}

/** A rule add met an identical rule (EEXIST), from netlink or from `ip`. */
function isRoutingExists(err: unknown): boolean {
  if (err instanceof RoutingError) return err.exists;
  return err instanceof RedirectionError && /File exists/.test(err.result.stderr);
}

/** The iptables tool of `backend` and `family`, e.g. ip6tables-nft-save (pod and node alike). */
export function binary(backend: IptablesBackend, family: IpFamily, tool: 'save' | 'restore'): string {
  return `${family === 4 ? 'iptables' : 'ip6tables'}-${backend === 'iptables-legacy' ? 'legacy' : 'nft'}-${tool}`;
}

/** What to do about the failures we have seen; undefined when the stderr says enough. */
function hintFor(stderr: string): string | undefined {
  if (/Operation not permitted|Permission denied/i.test(stderr)) {
    return 'the agent needs CAP_NET_ADMIN, and CAP_SYS_ADMIN to enter the pod netns';
  }
  if (/No such file or directory.*\/(proc|netns)|reassociate to namespace/i.test(stderr)) {
    return 'the pod netns is gone: the pod was deleted or its sandbox restarted';
  }
  if (/Couldn't load (target|match)|Extension .* revision|No chain\/target\/match/i.test(stderr)) {
    return 'the kernel lacks an xtables module (xt_REDIRECT, xt_connmark, xt_mark): load it on the node or use another backend';
  }
  if (/Nexthop device is not up/i.test(stderr)) {
    return "the pod's lo is down; the runtime brings it up before CNI ADD, so the netns is not a pod's yet or is being torn down";
  }
  if (/Could not process rule: No such file or directory/i.test(stderr)) {
    return 'the kernel lacks an nf_tables expression (nft_redirect, nft_ct, nft_nat): load it on the node or use another backend';
  }
  return undefined;
}

function runProcess(argv: readonly string[], stdin?: string, env?: Record<string, string>): Promise<CommandResult> {
  const [command, ...args] = argv;
  if (command === undefined) return Promise.reject(new TypeError('empty command'));
  const child = spawn(command, args, {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: env === undefined ? process.env : { ...process.env, ...env },
  });
  return finishProcess(child, stdin ?? '');
}

/**
 * Gives a started child its whole stdin and collects what it prints until it exits: the
 * CommandRunner contract (a signal counts as exit 128; rejects only when the process could not be
 * started). Shared by fresh spawns and warm processes (warm.ts).
 */
export function finishProcess(child: ChildProcessWithoutNullStreams, stdin: string): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => stdout.push(d));
    child.stderr.on('data', (d: Buffer) => stderr.push(d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      resolve({
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(stdout).toString(),
        stderr: Buffer.concat(stderr).toString(),
      });
    });
    child.stdin.on('error', () => {}); // a tool that exits without reading stdin closes the pipe
    child.stdin.end(stdin);
  });
}
