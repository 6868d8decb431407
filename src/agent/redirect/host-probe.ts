/**
 * The node-side half of the kubelet probe exemption. Inside every enrolled pod the capture rules
 * let TCP from the probe address (169.254.7.127, or its IPv6 twin) reach the app uncaptured. This
 * file makes the kubelet's probes carry that address: in the node's own network namespace, TCP
 * that a local socket sends to an enrolled pod's IP is SNATed to the probe address. Replies need
 * nothing: conntrack reverses the SNAT, and the pod routes 169.254.7.127 via its default route,
 * which is the node.
 *
 * "A local socket" is how we tell the kubelet's connections from traffic the node only forwards
 * (other pods, other nodes, a client outside the cluster): forwarded packets have no socket and
 * stay captured. The test for it:
 *   - iptables: `-m owner --socket-exists` in nat POSTROUTING (xt_owner allows that hook).
 *   - nft has no owner match (`iptables-translate` leaves --socket-exists untranslated) and its
 *     `socket` expression is refused in postrouting. `meta skuid` is the equivalent: loading it
 *     fails, and the rule does not match, unless the packet has a full socket with an open file
 *     (the same test xt_owner makes, which additionally accepts file-less kernel sockets), so
 *     `meta skuid >= 0` is "a local process's socket exists". Verified on the kernel: it counts the
 *     node's own connection and not a forwarded one. (`iif 0` behaves the same here, but says
 *     "no input device", which kernel-made packets share.)
 * Every hostNetwork process's connection to an enrolled pod is exempt the same way, not only the
 * kubelet's: there is no telling the kubelet apart by packet, and host processes are outside the
 * mesh anyway.
 *
 * Shapes (pure builders below; the executor only pipes them to the tools):
 *   - iptables (legacy or nft, the backend kube-proxy uses): chain AMBIT-PROBE-SNAT in table nat,
 *     one rule per enrolled pod IP, entered by exactly one jump that is the FIRST rule of
 *     POSTROUTING. First, because the first terminal rule of the table ends its traversal: the
 *     bridge CNI plugin's `-d <pod subnet> -j ACCEPT` or a masquerade ahead of our jump would
 *     decide instead (verified: with the jump appended, probes stay captured). kube-proxy prepends
 *     its own jump when it starts, so every sync moves ours back to the top. 110 pods per node
 *     means at most 110 rules, evaluated once per new connection; no ipset (a tool we would need
 *     on every node) is required.
 *   - nft: table `inet ambit-node` with one set of pod addresses per family and a nat chain at
 *     postrouting, priority srcnat - 1: it runs before every iptables nat POSTROUTING (priority
 *     srcnat, legacy or nft). The kernel runs the nat chains of a hook in priority order until one
 *     binds a source (SNAT, MASQUERADE); an `accept` elsewhere does not stop ours, a masquerade
 *     in an earlier chain would. Replaced in one transaction each sync.
 * The chain name has a hyphen, unlike the pod's AMBIT_ chains, so pod-side cleanup never
 * recognises it.
 *
 * Two ways to sync (syncHostProbeSnat):
 *   - full (agent start, every `maintain()` period, backend switches): reads every backend's nat
 *     table (`*-save`), writes ours from what it read (jump repairs, duplicates gone) and removes
 *     ours from the other backends;
 *   - own backend only (CNI ADD and DEL, reconciles: every process there is latency): NO read.
 *     Our chain is ours alone, so a `restore --noflush` can say everything without looking,
 *     PROVIDED the jump from POSTROUTING exists; each write checks that in the same commit, and a
 *     commit that fails changes nothing and falls back to the read-based write of the full sync,
 *     which repairs the jump. Why check rather than rely on the periodic full sync: that sync
 *     waits for the first reconcile (`maintain()` in agent.ts), and ADDs and the first reconcile's
 *     syncs come before it; a missing jump would leave every probe captured with no error anywhere.
 *     Two shapes, because in nf_tables any deletion in a transaction costs the commit a grace
 *     period (measured: a flush-and-refill of our chain, or of the nft table, ~8-16 ms; appending a
 *     rule or adding a set element, ~2-4 ms, most of it the process):
 *       * the change (the usual case): what our last successful write left is remembered per
 *         node (`written` below), so the commit only adds the new pods' rules at their sorted
 *         places (`-I`), deletes the gone pods' (DEL, off the latency path) and `-C`-checks the
 *         jump and every rule it keeps: anything missing fails the commit. nft: `add element` /
 *         `delete element` in our sets, which fail when our table is gone;
 *       * the whole set (nothing remembered: the agent's first write, or after a failure): our
 *         chain declared (so flushed) and refilled, and `-D POSTROUTING -j AMBIT-PROBE-SNAT` then
 *         `-I POSTROUTING 1 …`: with the jump there, that moves it (back) to the top; with it
 *         missing, the `-D` fails the commit. nft: the table's one transaction (below).
 *     What the own-backend sync does not do: remove duplicate jumps or ours in other backends
 *     (harmless: each holds the same SNAT rules), delete rules it does not know of (an extra rule
 *     SNATs one more address's host connections), or, in the change shape, move our jump back to
 *     the top after kube-proxy prepended its own (kube-proxy's KUBE-POSTROUTING returns what it does
 *     not masquerade); the next full sync does all three, within one `maintain()` period.
 */
import { SocketAddress } from 'node:net';
import { type IpFamily, type RedirectConfig, DEFAULT_REDIRECT_CONFIG } from './config.js';
import type { Backend } from './detect.js';
import { type CommandResult, type CommandRunner, type RunnerSource, binary, hostRunner, NFT_APPLY, nftRuns } from './exec.js';
import { type IptablesState, type IptablesTableState, parseIptablesSave } from './iptables.js';

export const HOST_PROBE_CHAIN = 'AMBIT-PROBE-SNAT';
export const HOST_PROBE_NFT_FAMILY = 'inet';
export const HOST_PROBE_NFT_TABLE = 'ambit-node';
const NAT = 'nat';
const POSTROUTING = 'POSTROUTING';
const JUMP = `-j ${HOST_PROBE_CHAIN}`;
const BUILTIN_CHAINS = new Set(['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING']);

/**
 * The pod IPs of `family` among `podIps`, canonical (IPv6 compressed, lowercase), de-duplicated and
 * sorted so the output does not depend on the caller's order. Addresses of the other family are
 * skipped (the caller passes a pod's every IP); anything that is not an IP literal throws, because
 * one bad address would fail the whole atomic commit for every pod.
 */
export function probeTargets(family: IpFamily, podIps: readonly string[]): string[] {
  const result = new Set<string>();
  for (const ip of podIps) {
    const canonical = canonicalIp(ip);
    if (canonical.family === family) result.add(canonical.address);
  }
  return [...result].sort(compareAddresses);
}

/**
 * The `iptables-restore --noflush` input (one family) that makes our chain SNAT local TCP to each
 * of `podIps` and puts exactly one jump to it at the top of nat POSTROUTING. `current` is the
 * node's parsed `iptables-save` of that family (only its nat table is read). Declaring the chain
 * flushes it, so its rules are replaced in the same commit; applying twice equals applying once.
 */
export function buildHostProbeIptables(
  config: RedirectConfig,
  family: IpFamily,
  podIps: readonly string[],
  current: IptablesState = new Map(),
): string {
  const out = ['*nat', `:${HOST_PROBE_CHAIN} - [0:0]`, ...jumpRepairs(current.get(NAT)), ...snatRules(config, family, podIps), 'COMMIT'];
  return out.join('\n') + '\n';
}

/** Our chain's rules: local TCP to each pod IP of `family` leaves from the probe address. */
function snatRules(config: RedirectConfig, family: IpFamily, podIps: readonly string[]): string[] {
  return probeTargets(family, podIps).map((ip) => `-A ${HOST_PROBE_CHAIN} ${snatMatch(config, family, ip)}`);
}

/** One rule of our chain, after the chain's name; `ip` canonical (probeTargets). */
function snatMatch(config: RedirectConfig, family: IpFamily, ip: string): string {
  return `-d ${ip}/${family === 4 ? 32 : 128} -p tcp -m owner --socket-exists -j SNAT --to-source ${config.probeAddresses[family]}`;
}

/**
 * The read-free `iptables-restore --noflush` input (one family) of the own-backend sync: our chain
 * declared (so flushed) and refilled with one rule per pod IP, and our jump deleted and inserted
 * first in nat POSTROUTING. The delete fails, and the commit with it, when the jump is missing:
 * see the header. Given a node a full sync left, the result is the full sync's for `podIps`.
 */
export function buildHostProbeIptablesFast(config: RedirectConfig, family: IpFamily, podIps: readonly string[]): string {
  const out = ['*nat', `:${HOST_PROBE_CHAIN} - [0:0]`, `-D ${POSTROUTING} ${JUMP}`, `-I ${POSTROUTING} 1 ${JUMP}`, ...snatRules(config, family, podIps), 'COMMIT'];
  return out.join('\n') + '\n';
}

/**
 * The read-free `iptables-restore --noflush` input (one family) that turns our chain from holding
 * `before` (what our last write left) into holding `podIps`, without deleting anything that
 * stays: `-C` of our jump and of each kept rule (the commit fails if one is missing), `-D` of the
 * rules of pods gone, `-I` of the new pods' rules at their places in the sorted order the full
 * sync writes. Given a chain holding exactly `before`, the result is the full sync's for `podIps`.
 */
export function buildHostProbeIptablesDelta(config: RedirectConfig, family: IpFamily, before: readonly string[], podIps: readonly string[]): string {
  const had = new Set(probeTargets(family, before));
  const want = probeTargets(family, podIps);
  const wanted = new Set(want);
  const out = ['*nat', `-C ${POSTROUTING} ${JUMP}`];
  for (const ip of had) if (wanted.has(ip)) out.push(`-C ${HOST_PROBE_CHAIN} ${snatMatch(config, family, ip)}`);
  for (const ip of had) if (!wanted.has(ip)) out.push(`-D ${HOST_PROBE_CHAIN} ${snatMatch(config, family, ip)}`);
  // Ascending: when want[i] goes in, every address before it in `want` is in place.
  want.forEach((ip, i) => {
    if (!had.has(ip)) out.push(`-I ${HOST_PROBE_CHAIN} ${i + 1} ${snatMatch(config, family, ip)}`);
  });
  out.push('COMMIT');
  return out.join('\n') + '\n';
}

/**
 * The `iptables-restore --noflush` input that removes our jumps and chain from `current`; empty
 * when there is nothing of ours (the executor then runs nothing).
 */
export function buildHostProbeIptablesRemoval(current: IptablesState): string {
  const nat = current.get(NAT);
  if (nat === undefined) return '';
  const jumps = ourJumps(nat);
  const hasChain = nat.chains.has(HOST_PROBE_CHAIN);
  if (jumps.length === 0 && !hasChain) return '';
  const out = ['*nat', ...jumps.map((r) => `-D ${r.chain} ${r.spec}`)];
  if (hasChain) out.push(`-F ${HOST_PROBE_CHAIN}`, `-X ${HOST_PROBE_CHAIN}`);
  out.push('COMMIT');
  return out.join('\n') + '\n';
}

/**
 * True when `current`'s nat table holds nothing once ours is removed (no rules, no other chains,
 * built-in policies ACCEPT). With iptables-nft such a table is what our apply created, and deleting
 * it leaves the node's nft ruleset as it was; a nat table with anyone else's rule is never deleted.
 */
export function natEmptyWithoutOurs(current: IptablesState): boolean {
  const nat = current.get(NAT);
  if (nat === undefined) return false;
  const rules = nat.rules.filter((r) => r.chain !== HOST_PROBE_CHAIN && !isOurJump(r));
  const chains = [...nat.chains].filter(([name]) => name !== HOST_PROBE_CHAIN);
  return rules.length === 0 && chains.every(([name, policy]) => BUILTIN_CHAINS.has(name) && policy === 'ACCEPT');
}

/**
 * The `nft -f` input that installs (or replaces) table inet ambit-node for `podIps`, in one
 * transaction: make sure the table exists, delete it, define it anew. Sets and rules for the
 * config's families only.
 */
export function buildHostProbeNftables(config: RedirectConfig, podIps: readonly string[]): string {
  const body: string[] = [];
  for (const family of config.families) {
    const elements = probeTargets(family, podIps);
    body.push(`\tset ${setName(family)} {`, `\t\ttype ${family === 4 ? 'ipv4_addr' : 'ipv6_addr'}`);
    if (elements.length > 0) body.push(`\t\telements = { ${elements.join(', ')} }`);
    body.push('\t}');
  }
  body.push('\tchain probe_snat {', '\t\ttype nat hook postrouting priority srcnat - 1; policy accept;');
  for (const family of config.families) {
    const ip = family === 4 ? 'ip' : 'ip6';
    // `meta skuid >= 0`: true whenever a local process's socket sent the packet (see the header).
    body.push(`\t\tmeta l4proto tcp ${ip} daddr @${setName(family)} meta skuid >= 0 snat ${ip} to ${config.probeAddresses[family]}`);
  }
  body.push('\t}');
  return [buildHostProbeNftablesRemoval().trimEnd(), `table ${HOST_PROBE_NFT_FAMILY} ${HOST_PROBE_NFT_TABLE} {`, ...body, '}', ''].join('\n');
}

/**
 * The `nft -f` input that turns our sets from holding `before` (what our last write left) into
 * holding `podIps`: `add element` for new pods, `delete element` for pods gone; no deletion of the
 * table, so no grace period on the ADD path. Fails when our table or sets are gone (the caller then
 * writes the whole table). Empty when nothing changes.
 */
export function buildHostProbeNftablesDelta(config: RedirectConfig, before: readonly string[], podIps: readonly string[]): string {
  const out: string[] = [];
  for (const family of config.families) {
    const had = new Set(probeTargets(family, before));
    const want = probeTargets(family, podIps);
    const added = want.filter((ip) => !had.has(ip));
    const wanted = new Set(want);
    const gone = [...had].filter((ip) => !wanted.has(ip));
    const set = `${HOST_PROBE_NFT_FAMILY} ${HOST_PROBE_NFT_TABLE} ${setName(family)}`;
    if (added.length > 0) out.push(`add element ${set} { ${added.join(', ')} }`);
    if (gone.length > 0) out.push(`delete element ${set} { ${gone.join(', ')} }`);
  }
  return out.length === 0 ? '' : out.join('\n') + '\n';
}

/** The `nft -f` input that removes our node table; succeeds whether or not it exists. */
export function buildHostProbeNftablesRemoval(): string {
  return `table ${HOST_PROBE_NFT_FAMILY} ${HOST_PROBE_NFT_TABLE} {}\ndelete table ${HOST_PROBE_NFT_FAMILY} ${HOST_PROBE_NFT_TABLE}\n`;
}

/**
 * Keeps the jump only when it is exactly `-j AMBIT-PROBE-SNAT` and the first rule of POSTROUTING;
 * any other jump to our chain (a duplicate, one further down, one with extra matches) is deleted
 * and the jump inserted at the top.
 */
function jumpRepairs(nat: IptablesTableState | undefined): string[] {
  const jumps = nat === undefined ? [] : ourJumps(nat);
  const first = nat?.rules.find((r) => r.chain === POSTROUTING);
  const keep = first !== undefined && first.spec === JUMP ? first : undefined;
  const out = jumps.filter((r) => r !== keep).map((r) => `-D ${r.chain} ${r.spec}`);
  if (keep === undefined) out.push(`-I ${POSTROUTING} 1 ${JUMP}`);
  return out;
}

/** Rules outside our chain that jump or go to it. */
function ourJumps(nat: IptablesTableState): IptablesTableState['rules'] {
  return nat.rules.filter(isOurJump);
}

function isOurJump(rule: { chain: string; spec: string }): boolean {
  return rule.chain !== HOST_PROBE_CHAIN && /(?:^|\s)-[jg]\s+(\S+)/.exec(rule.spec)?.[1] === HOST_PROBE_CHAIN;
}

function setName(family: IpFamily): string {
  return `pods_v${family}`;
}

function canonicalIp(ip: string): { family: IpFamily; address: string } {
  // No zone ids (fe80::1%eth0): a pod IP never has one, and the tools would reject it.
  if (!ip.includes('%')) {
    for (const [family, name] of [[4, 'ipv4'], [6, 'ipv6']] as const) {
      try {
        return { family, address: new SocketAddress({ address: ip, family: name }).address };
      } catch {
        // not this family
      }
    }
  }
  throw new Error(`probe SNAT: '${ip}' is not a pod IP address (an IPv4 or IPv6 literal); check the pod's status.podIPs`);
}

/** Numeric order for IPv4, text order for canonical IPv6: readable and stable. */
function compareAddresses(a: string, b: string): number {
  const key = (ip: string) => (ip.includes(':') ? ip : ip.split('.').map((o) => o.padStart(3, '0')).join('.'));
  return key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------
// The executor: reads the node's rulesets, asks the builders, runs the tools on the node.

/** Where and how the node's probe SNAT is programmed. */
export interface HostProbeOptions {
  /**
   * The backend kube-proxy uses on this node (`decideBackend('auto', await probeNode(hostRunner))`),
   * or 'nft' for native nftables.
   */
  backend: Backend;
  /** Probe addresses and families; defaults to DEFAULT_REDIRECT_CONFIG. */
  config?: RedirectConfig;
  /** Runs the tools; defaults to `warm.runner()`, else `hostRunner` (the agent runs with hostNetwork). Tests use `netnsRunner`. */
  run?: CommandRunner;
  /**
   * Where the tools' processes come from when `run` is not given: e.g. a WarmPool (warm.ts)
   * keeping `hostProbeSyncCommands(…)` ready, so the own-backend sync forks nothing at use.
   */
  warm?: RunnerSource;
  /**
   * XTABLES_LOCKFILE for iptables-legacy. Default: the tools' own /run/xtables.lock, which kube-proxy
   * takes too (the agent must mount the host's file for the lock to mean anything). Tests use a
   * private file.
   */
  lockFile?: string;
}

export interface HostProbeSyncOptions extends HostProbeOptions {
  /**
   * Write only the chosen backend, without reading it: one restore per family (nft: one
   * transaction), only the change when our last write is known; when our jump (or a rule it
   * keeps) is missing, that restore fails and a save plus a restore repair it (see the header). For the CNI ADD path, where every process is latency: leftovers in the
   * other backends are cleaned by the next full sync (the agent's periodic one), and they never
   * conflict — each backend's chain holds the same SNAT rules.
   */
  ownBackendOnly?: boolean;
}

export type HostProbeCleanupOptions = Omit<HostProbeOptions, 'backend'>;

/** Which backends hold our node rules; for reconciliation and tests. */
export type HostProbePresence = Record<Backend, boolean>;

/** A tool failed on the node; the message names the command, its stderr and what to do. */
export class HostProbeError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly result: CommandResult,
  ) {
    const stderr = result.stderr.trim();
    const hint = hostProbeHint(stderr);
    super(
      `probe SNAT on the node: '${argv.join(' ')}' exited with ${result.code}` + (stderr ? `: ${stderr}` : '') + (hint ? ` (${hint})` : ''),
    );
    this.name = 'HostProbeError';
  }
}

/**
 * Makes the node SNAT local TCP to exactly `podIps` (the full set of enrolled pods' IPs, every
 * time) to the probe address, in `backend`, and removes what an earlier backend left. Each
 * family's iptables nat table, or the nft table, changes in one atomic commit; applying twice
 * equals applying once.
 */
export async function syncHostProbeSnat(podIps: readonly string[], opts: HostProbeSyncOptions): Promise<void> {
  const config = opts.config ?? DEFAULT_REDIRECT_CONFIG;
  for (const family of FAMILIES) probeTargets(family, podIps); // bad input fails before anything runs
  const tools = new NodeTools(opts);
  if (opts.ownBackendOnly) {
    const backend = opts.backend;
    if (backend === 'nft') await syncNftOwn(tools, config, podIps);
    else await Promise.all(config.families.map((family) => syncIptablesOwn(tools, config, backend, family, podIps)));
    return;
  }
  tools.forgetAll();
  const state = await readNode(tools);
  for (const backend of IPTABLES_BACKENDS) {
    for (const family of FAMILIES) {
      const current = state[backend][family];
      if (backend === opts.backend && config.families.includes(family)) {
        if (current === undefined) throw new HostProbeError(...tools.unreadable(backend, family));
        await tools.iptablesRestore(backend, family, buildHostProbeIptables(config, family, podIps, current));
        tools.remember(`${backend}/${family}`, probeTargets(family, podIps));
      } else if (current !== undefined) {
        await removeIptables(tools, backend, family, current);
      }
    }
  }
  if (opts.backend === 'nft') {
    await tools.nft(buildHostProbeNftables(config, podIps));
    tools.remember('nft', nftTargets(config, podIps));
  } else if (state.nft) await tools.nft(buildHostProbeNftablesRemoval());
}

/** The own-backend sync of one iptables family: the change if we know what is there, else the whole set; then the read-based write if that fails. */
async function syncIptablesOwn(tools: NodeTools, config: RedirectConfig, backend: IptablesBackend, family: IpFamily, podIps: readonly string[]): Promise<void> {
  const key = `${backend}/${family}`;
  const before = tools.written(key);
  tools.forget(key); // until this write is known to have landed
  const input = before === undefined ? buildHostProbeIptablesFast(config, family, podIps) : buildHostProbeIptablesDelta(config, family, before, podIps);
  const fast = await tools.tryIptablesRestore(backend, family, input);
  if (fast.code !== 0) {
    // Our jump or a rule we kept is missing (or the restore failed for another reason, which the
    // read-based write will meet and report with its own error): read, repair, write.
    const current = await tools.iptablesState(backend, family);
    if (current === undefined) throw new HostProbeError(...tools.unreadable(backend, family));
    await tools.iptablesRestore(backend, family, buildHostProbeIptables(config, family, podIps, current));
  }
  tools.remember(key, probeTargets(family, podIps));
}

/** The own-backend sync with nft: the sets' change if we know what is there, else (or if that fails) the whole table. */
async function syncNftOwn(tools: NodeTools, config: RedirectConfig, podIps: readonly string[]): Promise<void> {
  const before = tools.written('nft');
  tools.forget('nft');
  const delta = before === undefined ? '' : buildHostProbeNftablesDelta(config, before, podIps);
  const changed = delta !== '' && (await tools.tryNft(delta)).code === 0;
  if (!changed) await tools.nft(buildHostProbeNftables(config, podIps));
  tools.remember('nft', nftTargets(config, podIps));
}

function nftTargets(config: RedirectConfig, podIps: readonly string[]): string[] {
  return config.families.flatMap((family) => probeTargets(family, podIps));
}

/**
 * What our last successful write left on a node, per `backend/family` (nft: 'nft'): the pod IPs,
 * canonical. Keyed by the injected runner (a test's node netns) or, for the agent's own netns (the
 * plain spawns and a warm pool alike), by OWN_NETNS. A full sync or a removal starts it afresh;
 * a write that fails leaves nothing remembered, so the next one writes the whole set.
 */
const written = new WeakMap<object, Map<string, readonly string[]>>();
const OWN_NETNS = {};

/** Removes our chain, jumps and nft table from the node, in every backend; kube-proxy's rules stay. */
export async function removeHostProbeSnat(opts: HostProbeCleanupOptions = {}): Promise<void> {
  const tools = new NodeTools(opts);
  tools.forgetAll();
  const state = await readNode(tools);
  for (const backend of IPTABLES_BACKENDS) {
    for (const family of FAMILIES) {
      const current = state[backend][family];
      if (current !== undefined) await removeIptables(tools, backend, family, current);
    }
  }
  if (state.nft) await tools.nft(buildHostProbeNftablesRemoval());
}

export async function inspectHostProbeSnat(opts: HostProbeCleanupOptions = {}): Promise<HostProbePresence> {
  const state = await readNode(new NodeTools(opts));
  const has = (b: IptablesBackend) => FAMILIES.some((f) => buildHostProbeIptablesRemoval(state[b][f] ?? new Map()) !== '');
  return { 'iptables-legacy': has('iptables-legacy'), 'iptables-nft': has('iptables-nft'), nft: state.nft };
}

/**
 * The commands an own-backend sync writes with, exactly as the runner is asked for them (one
 * restore per family, or `nft -f -`): what a WarmPool should keep ready for CNI ADD.
 */
export function hostProbeSyncCommands(backend: Backend, families: readonly IpFamily[]): string[][] {
  return backend === 'nft' ? [[...NFT_APPLY]] : families.map((family) => restoreArgv(backend, family));
}

/** `--wait`: kube-proxy writes the same nat table (legacy serialises on the xtables lock; nft ignores it). */
function restoreArgv(backend: IptablesBackend, family: IpFamily): string[] {
  return [binary(backend, family, 'restore'), '--noflush', `--wait=${LOCK_WAIT_SECONDS}`];
}

type IptablesBackend = Exclude<Backend, 'nft'>;
const IPTABLES_BACKENDS: readonly IptablesBackend[] = ['iptables-legacy', 'iptables-nft'];
const FAMILIES: readonly IpFamily[] = [4, 6];
/** Seconds iptables-legacy-restore waits for the xtables lock; kube-proxy holds it while it restores. */
const LOCK_WAIT_SECONDS = 10;

/** Per backend and family, the parsed nat table; undefined where that backend's save does not run. */
interface NodeState {
  'iptables-legacy': Record<IpFamily, IptablesState | undefined>;
  'iptables-nft': Record<IpFamily, IptablesState | undefined>;
  /** Our nft table exists. */
  nft: boolean;
}

/** Everything the builders need, read in parallel (each read is a process). */
async function readNode(tools: NodeTools): Promise<NodeState> {
  const [l4, l6, n4, n6, nft] = await Promise.all([
    tools.iptablesState('iptables-legacy', 4),
    tools.iptablesState('iptables-legacy', 6),
    tools.iptablesState('iptables-nft', 4),
    tools.iptablesState('iptables-nft', 6),
    tools.hasNftTable(),
  ]);
  return { 'iptables-legacy': { 4: l4, 6: l6 }, 'iptables-nft': { 4: n4, 6: n6 }, nft };
}

async function removeIptables(tools: NodeTools, backend: IptablesBackend, family: IpFamily, current: IptablesState): Promise<void> {
  const removal = buildHostProbeIptablesRemoval(current);
  if (removal === '') return;
  await tools.iptablesRestore(backend, family, removal);
  // iptables-nft made the nat table for us if nobody else had rules there: delete it so the nft
  // ruleset is as before (legacy tables cannot be deleted; an empty one changes no packet).
  if (backend === 'iptables-nft' && natEmptyWithoutOurs(current) && (await tools.hasNft())) {
    await tools.nft(`delete table ${family === 4 ? 'ip' : 'ip6'} ${NAT}\n`);
  }
}

/** The tools with their exact binaries and flags, in the agent's (the node's) netns. */
class NodeTools {
  readonly #run: CommandRunner;
  readonly #lockEnv: Record<string, string> | undefined;
  readonly #nftKey: object | undefined;
  readonly #unreadable = new Map<string, CommandResult>();
  readonly #written: Map<string, readonly string[]>;

  constructor(opts: HostProbeCleanupOptions) {
    this.#run = opts.run ?? opts.warm?.runner() ?? hostRunner;
    this.#nftKey = opts.run;
    this.#lockEnv = opts.lockFile === undefined ? undefined : { XTABLES_LOCKFILE: opts.lockFile };
    const node = opts.run ?? OWN_NETNS;
    let known = written.get(node);
    if (known === undefined) written.set(node, (known = new Map()));
    this.#written = known;
  }

  /** What our last successful write left (see `written`). */
  written(key: string): readonly string[] | undefined {
    return this.#written.get(key);
  }

  remember(key: string, podIps: readonly string[]): void {
    this.#written.set(key, podIps);
  }

  forget(key: string): void {
    this.#written.delete(key);
  }

  forgetAll(): void {
    this.#written.clear();
  }

  async must(argv: string[], stdin?: string, env?: Record<string, string>): Promise<CommandResult> {
    const result = await this.#run(argv, stdin, env);
    if (result.code !== 0) throw new HostProbeError(argv, result);
    return result;
  }

  /**
   * Plain `*-save` (no `-t nat`): with legacy, naming a table instantiates it, and reading must not
   * change the node. Undefined when the save tool is missing or fails (then nothing of ours can be
   * there; the sync fails only if that is the backend it must write).
   */
  async iptablesState(backend: IptablesBackend, family: IpFamily): Promise<IptablesState | undefined> {
    const result = await this.#run([binary(backend, family, 'save')], undefined, this.#env(backend)).catch(() => undefined);
    if (result === undefined || result.code !== 0) {
      this.#unreadable.set(`${backend}/${family}`, result ?? { code: -1, stdout: '', stderr: 'could not be started (not installed?)' });
      return undefined;
    }
    return parseIptablesSave(natSection(result.stdout));
  }

  /** The failed read of `iptablesState`, as HostProbeError arguments. */
  unreadable(backend: IptablesBackend, family: IpFamily): [string[], CommandResult] {
    const result = this.#unreadable.get(`${backend}/${family}`) ?? { code: -1, stdout: '', stderr: '' };
    return [[binary(backend, family, 'save')], result];
  }

  async iptablesRestore(backend: IptablesBackend, family: IpFamily, input: string): Promise<void> {
    await this.must(restoreArgv(backend, family), input, this.#env(backend));
  }

  /** The restore, its failure returned rather than thrown. */
  async tryIptablesRestore(backend: IptablesBackend, family: IpFamily, input: string): Promise<CommandResult> {
    return this.#run(restoreArgv(backend, family), input, this.#env(backend));
  }

  async nft(input: string): Promise<void> {
    await this.must([...NFT_APPLY], input);
  }

  /** `nft -f -`, its failure returned rather than thrown. */
  async tryNft(input: string): Promise<CommandResult> {
    return this.#run([...NFT_APPLY], input);
  }

  /** Asked once per agent (per injected runner), not on every sync. */
  async hasNft(): Promise<boolean> {
    return nftRuns(this.#run, this.#nftKey);
  }

  async hasNftTable(): Promise<boolean> {
    if (!(await this.hasNft())) return false;
    const result = await this.#run(['nft', 'list', 'table', HOST_PROBE_NFT_FAMILY, HOST_PROBE_NFT_TABLE]);
    return result.code === 0;
  }

  #env(backend: IptablesBackend): Record<string, string> | undefined {
    return backend === 'iptables-legacy' ? this.#lockEnv : undefined;
  }
}

/**
 * Only the `*nat` block of a save: a node's filter table (kube-proxy's, a firewall's) can be large
 * and is none of our business.
 */
export function natSection(saveText: string): string {
  const start = saveText.search(/^\*nat\s*$/m);
  if (start < 0) return '';
  const end = saveText.slice(start).search(/^COMMIT\s*$/m);
  return end < 0 ? saveText.slice(start) : saveText.slice(start, start + end) + 'COMMIT\n';
}


function hostProbeHint(stderr: string): string | undefined {
  if (/not installed/.test(stderr)) return "install iptables (1.8.4 or newer) in the agent image, or use the node's backend";
  if (/Operation not permitted|Permission denied/i.test(stderr)) return 'the agent needs CAP_NET_ADMIN in the node network namespace';
  if (/xtables lock|holding the xtables lock/i.test(stderr)) {
    return 'another program (kube-proxy?) held the xtables lock for too long; the next sync retries';
  }
  if (/Couldn't load (target|match)|Extension .* revision|No chain\/target\/match/i.test(stderr)) {
    return 'the kernel lacks an xtables module (xt_owner, xt_nat): load it on the node or use another backend';
  }
  if (/Could not process rule: No such file or directory/i.test(stderr)) {
    return 'the kernel lacks an nf_tables expression (nft_nat, nft_meta): load it on the node or use another backend';
  }
  return undefined;
}
