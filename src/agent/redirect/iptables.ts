/**
 * The in-pod capture rules for iptables (legacy and nft backends alike), as `iptables-restore
 * --noflush` input. Pure: the builders take the redirection config and the pod's current ruleset
 * (parsed `iptables-save` output) and return text; the executor only pipes it to the right binary.
 *
 * Shape: two chains of our own, AMBIT_PREROUTING and AMBIT_OUTPUT, in each of the mangle and nat
 * tables, entered by one jump at the top of the matching built-in chain. Everything we add is
 * either such a jump or inside our chains, so removal can find it all without remembering anything.
 *
 * Why the result depends on the current ruleset: restore has no "add if missing". Declaring our
 * chains (`:AMBIT_X - [0:0]`) flushes them when they exist, so their content is replaced atomically,
 * but a jump in a built-in chain would be added a second time. So the builder adds a jump only when
 * the ruleset lacks it, and deletes extra or outdated jumps: applying twice equals applying once,
 * and an agent restart never duplicates rules. Each `*table ... COMMIT` block is one atomic commit.
 */
import { type IpFamily, type RedirectConfig, hex } from './config.js';

/** Tables we write to, in the order we write them. */
export const IPTABLES_TABLES = ['mangle', 'nat'] as const;
export type IptablesTable = (typeof IPTABLES_TABLES)[number];

/** Our chains; all start with this prefix so that removal recognises them (also older ones). */
export const CHAIN_PREFIX = 'AMBIT_';
const PREROUTING = 'AMBIT_PREROUTING';
const OUTPUT = 'AMBIT_OUTPUT';

/** Which built-in chain jumps to which of ours. */
const HOOKS: readonly { builtin: string; chain: string }[] = [
  { builtin: 'PREROUTING', chain: PREROUTING },
  { builtin: 'OUTPUT', chain: OUTPUT },
];

const BUILTIN_CHAINS = new Set(['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING']);

/** One table of a parsed `iptables-save`. */
export interface IptablesTableState {
  /** Chain name → policy ('ACCEPT', 'DROP', ...) for built-in chains, '-' for user chains. In save order. */
  chains: Map<string, string>;
  /** Rules in save order, as `<chain>` + the rule spec after `-A <chain> `. */
  rules: { chain: string; spec: string }[];
}

/** A parsed `iptables-save` (one family): table name → content. */
export type IptablesState = Map<string, IptablesTableState>;

/**
 * Parses `iptables-save` / `ip6tables-save` output. Comments and counters are dropped; anything it
 * does not understand is an error (a misread ruleset would make us delete the wrong rules).
 */
export function parseIptablesSave(text: string): IptablesState {
  const state: IptablesState = new Map();
  let table: IptablesTableState | undefined;
  const lines = text.split('\n');
  lines.forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const where = () => `iptables-save line ${index + 1}: '${line}'`;
    if (line.startsWith('*')) {
      table = { chains: new Map(), rules: [] };
      state.set(line.slice(1), table);
      return;
    }
    if (table === undefined) throw new Error(`${where()} comes before any *table line`);
    if (line === 'COMMIT') {
      table = undefined;
      return;
    }
    if (line.startsWith(':')) {
      const [name, policy] = line.slice(1).split(/\s+/);
      if (!name || !policy) throw new Error(`${where()} is not a chain declaration`);
      table.chains.set(name, policy);
      return;
    }
    const rule = /^(?:\[\d+:\d+\]\s+)?-A\s+(\S+)\s+(.*)$/.exec(line);
    if (!rule) throw new Error(`${where()} is not a rule`);
    table.rules.push({ chain: rule[1]!, spec: rule[2]!.trim() });
  });
  return state;
}

/**
 * The `iptables-restore --noflush` input that makes the pod's `family` ruleset capture traffic as
 * `config` says, given the current ruleset `current` (empty for a fresh pod netns).
 */
export function buildIptables(config: RedirectConfig, family: IpFamily, current: IptablesState = new Map()): string {
  const wanted = captureRules(config, family);
  const out: string[] = [];
  for (const table of IPTABLES_TABLES) {
    const existing = current.get(table);
    out.push(`*${table}`);
    for (const { chain } of HOOKS) out.push(`:${chain} - [0:0]`);
    out.push(...staleChainRemoval(existing));
    out.push(...jumpRepairs(existing));
    for (const [chain, specs] of Object.entries(wanted[table])) {
      for (const spec of specs) out.push(`-A ${chain} ${spec}`);
    }
    out.push('COMMIT');
  }
  return out.join('\n') + '\n';
}

/**
 * The `iptables-restore --noflush` input that removes everything of ours from `current`: every
 * rule anywhere that jumps to an AMBIT_ chain, then those chains. Empty string when there is
 * nothing to remove (the executor then runs nothing).
 */
export function buildIptablesRemoval(current: IptablesState): string {
  const out: string[] = [];
  for (const [table, content] of current) {
    const ours = [...content.chains.keys()].filter(isOurChain);
    const jumps = content.rules.filter((r) => !isOurChain(r.chain) && isOurChain(ruleTarget(r.spec) ?? ''));
    if (ours.length === 0 && jumps.length === 0) continue;
    out.push(`*${table}`);
    for (const r of jumps) out.push(`-D ${r.chain} ${r.spec}`);
    for (const chain of ours) out.push(`-F ${chain}`);
    for (const chain of ours) out.push(`-X ${chain}`);
    out.push('COMMIT');
  }
  return out.length === 0 ? '' : out.join('\n') + '\n';
}

/** `current` as it will be once `buildIptablesRemoval(current)` ran: our chains and jumps gone. */
export function withoutRedirection(current: IptablesState): IptablesState {
  const result: IptablesState = new Map();
  for (const [table, content] of current) {
    result.set(table, {
      chains: new Map([...content.chains].filter(([name]) => !isOurChain(name))),
      rules: content.rules.filter((r) => !isOurChain(r.chain) && !isOurChain(ruleTarget(r.spec) ?? '')),
    });
  }
  return result;
}

/** True when `current` holds any chain or jump of ours. */
export function hasIptablesRedirection(current: IptablesState): boolean {
  return buildIptablesRemoval(current) !== '';
}

/**
 * Tables (of those we write to) that hold nothing but built-in chains with policy ACCEPT: no rules,
 * no user chains. After removal, such a table is what our apply left behind; with the nf_tables
 * backend it can be deleted so the pod's ruleset is exactly as before. (Legacy tables cannot be
 * deleted: the kernel creates them per namespace on first use and keeps them.)
 */
export function emptyTables(current: IptablesState): IptablesTable[] {
  return IPTABLES_TABLES.filter((table) => {
    const content = current.get(table);
    if (content === undefined) return false;
    if (content.rules.length > 0) return false;
    return [...content.chains].every(([name, policy]) => BUILTIN_CHAINS.has(name) && policy === 'ACCEPT');
  });
}

/**
 * The ruleset as it matters to packets: no comments, no counters, and no table that is empty
 * (only built-in chains, policy ACCEPT, no rules). Two rulesets with equal canonical text behave
 * the same; tests use it to prove that removal restores the pod's ruleset.
 */
export function canonicalIptables(saveText: string): string {
  const state = parseIptablesSave(saveText);
  const out: string[] = [];
  for (const [table, content] of [...state].sort(([a], [b]) => a.localeCompare(b))) {
    const meaningful =
      content.rules.length > 0 || [...content.chains].some(([name, policy]) => !BUILTIN_CHAINS.has(name) || policy !== 'ACCEPT');
    if (!meaningful) continue;
    out.push(`*${table}`);
    for (const [name, policy] of content.chains) out.push(`:${name} ${policy}`);
    for (const r of content.rules) out.push(`-A ${r.chain} ${r.spec}`);
    out.push('COMMIT');
  }
  return out.join('\n');
}

/** The rules inside our chains, per table and chain, as rule specs. */
function captureRules(config: RedirectConfig, family: IpFamily): Record<IptablesTable, Record<string, string[]>> {
  const proxyMark = `${hex(config.proxyMark)}/${hex(config.markMask)}`;
  const connMark = `${hex(config.connMark)}/${hex(config.markMask)}`;
  const probe = `${config.probeAddresses[family]}/${family === 4 ? 32 : 128}`;
  const { ports } = config;
  const dns = config.dnsCapture
    ? [
        // Resolvers on loopback (e.g. a node-local cache in the pod) are left alone by the lo rule above.
        `-p udp -m udp --dport 53 -j REDIRECT --to-ports ${ports.dns}`,
        `-p tcp -m tcp --dport 53 -j REDIRECT --to-ports ${ports.dns}`,
      ]
    : [];
  return {
    mangle: {
      // The proxy's own packets arriving here (over lo) mark their connection, so that ...
      [PREROUTING]: [`-m mark --mark ${proxyMark} -j CONNMARK --set-xmark ${connMark}`],
      // ... the app's replies on that connection carry the mark again and `ip rule` routes them to lo.
      [OUTPUT]: [`-m connmark --mark ${connMark} -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff`],
    },
    nat: {
      [PREROUTING]: [
        // Kubelet probes, SNATed on the node to the probe address, reach the app directly.
        `-s ${probe} -p tcp -j ACCEPT`,
        `-m mark --mark ${proxyMark} -j ACCEPT`,
        // HBONE from peer proxies goes straight to the proxy's tunnel listener.
        `-p tcp -m tcp --dport ${ports.inboundTunnel} -j ACCEPT`,
        `-p tcp -j REDIRECT --to-ports ${ports.inboundPlaintext}`,
      ],
      [OUTPUT]: [
        // Loopback: the app talking to itself (or to a sidecar-less local helper) is not mesh traffic.
        `-o lo -j ACCEPT`,
        // The proxy's own connections (it connects out from inside the pod with its mark).
        `-m mark --mark ${proxyMark} -j ACCEPT`,
        ...dns,
        `-p tcp -j REDIRECT --to-ports ${ports.outbound}`,
      ],
    },
  };
}

/**
 * Deletes rules that jump to our chains in a way we no longer write (another spec, or a chain we
 * no longer have) and AMBIT_ chains we no longer use, e.g. after an upgrade. Lines for one table.
 */
function staleChainRemoval(existing: IptablesTableState | undefined): string[] {
  if (existing === undefined) return [];
  const current = new Set(HOOKS.map((h) => h.chain));
  const stale = [...existing.chains.keys()].filter((c) => isOurChain(c) && !current.has(c));
  const out: string[] = [];
  for (const r of existing.rules) {
    const target = ruleTarget(r.spec);
    if (target === undefined || !isOurChain(target) || isOurChain(r.chain)) continue;
    if (stale.includes(target)) out.push(`-D ${r.chain} ${r.spec}`);
  }
  for (const chain of stale) out.push(`-F ${chain}`);
  for (const chain of stale) out.push(`-X ${chain}`);
  return out;
}

/**
 * Makes every hook exactly one `-j AMBIT_X` rule in its built-in chain, added at the top. Other
 * rules that jump to our chains (duplicates, extra matches, another chain) are deleted.
 */
function jumpRepairs(existing: IptablesTableState | undefined): string[] {
  const out: string[] = [];
  for (const { builtin, chain } of HOOKS) {
    const jumps = (existing?.rules ?? []).filter((r) => !isOurChain(r.chain) && ruleTarget(r.spec) === chain);
    const keep = jumps.find((r) => r.chain === builtin && r.spec === `-j ${chain}`);
    for (const r of jumps) if (r !== keep) out.push(`-D ${r.chain} ${r.spec}`);
    // First in the chain: a rule of someone else's earlier in nat OUTPUT (a DNAT, an ACCEPT) would
    // otherwise let traffic bypass the mesh.
    if (keep === undefined) out.push(`-I ${builtin} 1 -j ${chain}`);
  }
  return out;
}

/** The chain a rule jumps or goes to (`-j X` / `-g X`), undefined for rules without one. */
function ruleTarget(spec: string): string | undefined {
  return /(?:^|\s)-[jg]\s+(\S+)/.exec(spec)?.[1];
}

function isOurChain(name: string): boolean {
  return name.startsWith(CHAIN_PREFIX);
}
