// The local cluster's kube-proxy: ClusterIP (and NodePort) Services become iptables nat rules in
// every node's network namespace, DNATing to ready endpoints from EndpointSlices, in the layout
// the real iptables-mode kube-proxy uses (KUBE-SERVICES → KUBE-SVC-* → KUBE-SEP-*, masquerade
// by the 0x4000 mark in KUBE-POSTROUTING), so people who debug a mesh on it find familiar chains.
//
// renderRules() is pure (table-tested); KubeProxy is the thin shell: it watches Services and
// EndpointSlices through the in-process ApiClient and applies the text with `iptables-restore
// --noflush` inside each node netns. --noflush leaves other writers' chains alone (containerd's
// portmap plugin keeps CNI-HOSTPORT-* in the same nat table); chains we declare are flushed and
// rebuilt in one transaction, and chains we no longer want are deleted (-X) in that same one.
import { createHash } from 'node:crypto';
import type { ApiClient } from './apiserver/controllers/client.js';
import { CLUSTER_CIDR } from './network.js';
import { run } from './runtime/proc.js';
import { backendsFor, buildServiceModel, type ServiceInfo, type ServicePortInfo } from './services.js';

/** The mark kube-proxy uses to ask KUBE-POSTROUTING for masquerade. */
export const MASQ_MARK = '0x4000';
const SERVICES = 'KUBE-SERVICES';
const NODEPORTS = 'KUBE-NODEPORTS';
const POSTROUTING = 'KUBE-POSTROUTING';
const MARK_MASQ = 'KUBE-MARK-MASQ';
/** Chains we create per Service port / endpoint; anything with these prefixes is ours to delete. */
const OWN_PREFIXES = ['KUBE-SVC-', 'KUBE-SEP-'];

export interface RuleInput {
  services: readonly ServiceInfo[];
  /** pods' source range: traffic from outside it is masqueraded, like kube-proxy --cluster-cidr */
  clusterCidr: string;
  /** per-Service chains present from the previous sync, deleted when no longer wanted */
  previousChains?: readonly string[];
}

export interface RuleSet {
  /** iptables-restore input (filter + nat), for --noflush */
  text: string;
  /** the per-Service chains this text leaves in place (feed into the next previousChains) */
  chains: string[];
}

/** Chain name from a hash of what it stands for, as kube-proxy does (≤ 28 characters). */
export function chainName(prefix: 'KUBE-SVC-' | 'KUBE-SEP-', ...parts: string[]): string {
  return prefix + createHash('sha256').update(parts.join('|')).digest('hex').slice(0, 16).toUpperCase();
}

const portName = (svc: ServiceInfo, sp: ServicePortInfo): string => `${svc.namespace}/${svc.name}${sp.name ? `:${sp.name}` : ''}`;
const proto = (sp: ServicePortInfo): string => sp.protocol.toLowerCase();
const comment = (text: string): string => `-m comment --comment ${JSON.stringify(text)}`;

/**
 * The rules that hook our chains into the built-in ones. Applied once per (fresh) node netns: a
 * --noflush restore appends, so repeating it would duplicate the jumps.
 */
export function renderBootstrapRules(): string {
  return [
    '*filter',
    `:${SERVICES} - [0:0]`,
    `-A FORWARD -m conntrack --ctstate NEW ${comment('kubernetes service portals')} -j ${SERVICES}`,
    `-A OUTPUT -m conntrack --ctstate NEW ${comment('kubernetes service portals')} -j ${SERVICES}`,
    'COMMIT',
    '*nat',
    `:${SERVICES} - [0:0]`,
    `:${POSTROUTING} - [0:0]`,
    `-A PREROUTING ${comment('kubernetes service portals')} -j ${SERVICES}`,
    `-A OUTPUT ${comment('kubernetes service portals')} -j ${SERVICES}`,
    `-A POSTROUTING ${comment('kubernetes postrouting rules')} -j ${POSTROUTING}`,
    'COMMIT',
    '',
  ].join('\n');
}

/** The full rule set for `input.services` (see the header). */
export function renderRules(input: RuleInput): RuleSet {
  const filter: string[] = [];
  const nat: string[] = [];
  const chains: string[] = [];
  const nodePorts: string[] = [];

  for (const svc of input.services) {
    if (!svc.proxied || !svc.clusterIP) continue;
    for (const sp of svc.ports) {
      const name = portName(svc, sp);
      const match = `-p ${proto(sp)} -m ${proto(sp)}`;
      const dst = `-d ${svc.clusterIP}/32 ${match} --dport ${sp.port}`;
      const backends = backendsFor(svc, sp);
      if (backends.length === 0) {
        // Refuse at once (the client sees ECONNREFUSED) instead of letting SYNs time out.
        filter.push(`-A ${SERVICES} ${dst} ${comment(`${name} has no endpoints`)} -j REJECT --reject-with icmp-port-unreachable`);
        if (sp.nodePort) filter.push(`-A ${SERVICES} -m addrtype --dst-type LOCAL ${match} --dport ${sp.nodePort} ${comment(`${name} has no endpoints`)} -j REJECT --reject-with icmp-port-unreachable`);
        continue;
      }
      const svcChain = chainName('KUBE-SVC-', name, sp.protocol);
      chains.push(svcChain);
      nat.push(`-A ${SERVICES} ${dst} ${comment(`${name} cluster IP`)} -j ${svcChain}`);
      // Callers from outside the pod network (the node itself, the underlay) are masqueraded, so
      // the backend's reply returns through this node's conntrack.
      nat.push(`-A ${svcChain} ! -s ${input.clusterCidr} ${dst} ${comment(`${name} cluster IP`)} -j ${MARK_MASQ}`);
      if (sp.nodePort) {
        nodePorts.push(`-A ${NODEPORTS} ${match} --dport ${sp.nodePort} ${comment(name)} -j ${MARK_MASQ}`);
        nodePorts.push(`-A ${NODEPORTS} ${match} --dport ${sp.nodePort} ${comment(name)} -j ${svcChain}`);
      }
      backends.forEach((b, i) => {
        const sepChain = chainName('KUBE-SEP-', name, sp.protocol, `${b.ip}:${b.port}`);
        chains.push(sepChain);
        const left = backends.length - i;
        // Each rule takes 1/left of what the earlier ones left over: a uniform pick overall.
        const pick = left > 1 ? ` -m statistic --mode random --probability ${(1 / left).toFixed(10)}` : '';
        nat.push(`-A ${svcChain} ${comment(`${name} -> ${b.ip}:${b.port}`)}${pick} -j ${sepChain}`);
        // Hairpin: a pod reaching itself through the Service must see the reply come from the
        // node, or it would drop a reply from its own address.
        nat.push(`-A ${sepChain} -s ${b.ip}/32 ${comment(name)} -j ${MARK_MASQ}`);
        nat.push(`-A ${sepChain} ${match} ${comment(name)} -j DNAT --to-destination ${b.ip}:${b.port}`);
      });
    }
  }

  const stale = (input.previousChains ?? []).filter((c) => OWN_PREFIXES.some((p) => c.startsWith(p)) && !chains.includes(c));
  const text = [
    '*filter',
    `:${SERVICES} - [0:0]`,
    ...filter,
    'COMMIT',
    '*nat',
    `:${SERVICES} - [0:0]`,
    `:${NODEPORTS} - [0:0]`,
    `:${POSTROUTING} - [0:0]`,
    `:${MARK_MASQ} - [0:0]`,
    ...[...chains, ...stale].map((c) => `:${c} - [0:0]`),
    `-A ${POSTROUTING} -m mark ! --mark ${MASQ_MARK}/${MASQ_MARK} -j RETURN`,
    // Clear the mark so a packet re-entering the stack (e.g. into a tunnel) is not masqueraded twice.
    `-A ${POSTROUTING} -j MARK --xor-mark ${MASQ_MARK}`,
    `-A ${POSTROUTING} ${comment('kubernetes service traffic requiring SNAT')} -j MASQUERADE --random-fully`,
    `-A ${MARK_MASQ} -j MARK --or-mark ${MASQ_MARK}`,
    ...nat,
    ...nodePorts,
    // Last: NodePorts are matched only after every ClusterIP rule had its chance.
    `-A ${SERVICES} -m addrtype --dst-type LOCAL ${comment('kubernetes service nodeports')} -j ${NODEPORTS}`,
    ...stale.map((c) => `-X ${c}`),
    'COMMIT',
    '',
  ].join('\n');
  return { text, chains };
}

// ---------------------------------------------------------------- the executor

export interface ProxyNode {
  name: string;
  /** network namespace name (under /run/netns) */
  netns: string;
  /**
   * The node's xtables lock file (its /run/xtables.lock, see nodefs.ts): iptables on the node —
   * here, and in hostNetwork pods that mount /run/xtables.lock — serialise on it. Default: the
   * machine's /run/xtables.lock.
   */
  xtablesLock?: string;
}

export interface KubeProxyOptions {
  api: ApiClient;
  nodes: readonly ProxyNode[];
  clusterCidr?: string;
  /** coalesce bursts of changes (a rollout) into one sync; default 20 ms */
  debounceMs?: number;
  log?: (s: string) => void;
}

/**
 * iptables-restore inside a node netns; `-w` waits for the xtables lock instead of failing, and
 * XTABLES_LOCKFILE (read by iptables itself) names the node's lock instead of the machine's.
 */
export async function applyRules(netns: string, text: string, xtablesLock?: string): Promise<void> {
  const env = xtablesLock === undefined ? process.env : { ...process.env, XTABLES_LOCKFILE: xtablesLock };
  await run(['ip', 'netns', 'exec', netns, 'iptables-restore', '-w', '5', '--noflush'], { input: text, timeoutMs: 15_000, env });
}

/** Programs every node's nat table from the API's Services and EndpointSlices. */
export class KubeProxy {
  private readonly chainsByNode = new Map<string, string[]>();
  private readonly stops: Array<() => void> = [];
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private dirty = false;
  private stopped = false;
  private generation = 0;
  private syncedGeneration = 0;
  private waiters: Array<{ gen: number; resolve: () => void }> = [];
  /** Duration and size of the last sync, for benchmarks. */
  lastSync = { ms: 0, rules: 0, error: '' };

  constructor(private readonly opts: KubeProxyOptions) {}

  async start(): Promise<void> {
    await Promise.all(this.opts.nodes.map((n) => applyRules(n.netns, renderBootstrapRules(), n.xtablesLock)));
    for (const r of ['v1/services', 'discovery.k8s.io/v1/endpointslices']) this.stops.push(this.opts.api.watch(r, () => this.schedule()));
    this.schedule();
    await this.synced();
  }

  stop(): void {
    this.stopped = true;
    for (const s of this.stops.splice(0)) s();
    clearTimeout(this.timer);
    for (const w of this.waiters.splice(0)) w.resolve();
  }

  /** Resolves once a sync that started after this call has finished (rules reflect the API now). */
  synced(): Promise<void> {
    const gen = this.generation;
    if (this.syncedGeneration >= gen && !this.dirty && !this.running) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ gen, resolve }));
  }

  private schedule(): void {
    if (this.stopped) return;
    this.generation++;
    this.dirty = true;
    if (this.timer || this.running) return;
    this.timer = setTimeout(() => void this.loop(), this.opts.debounceMs ?? 20);
  }

  private async loop(): Promise<void> {
    this.timer = undefined;
    while (this.dirty && !this.stopped) {
      this.dirty = false;
      const gen = this.generation;
      this.running = this.syncOnce();
      await this.running;
      this.running = undefined;
      this.syncedGeneration = gen;
      this.waiters = this.waiters.filter((w) => (w.gen <= gen ? (w.resolve(), false) : true));
    }
  }

  private async syncOnce(): Promise<void> {
    const started = Date.now();
    const services = buildServiceModel(this.opts.api.list('v1/services').items, this.opts.api.list('discovery.k8s.io/v1/endpointslices').items);
    const clusterCidr = this.opts.clusterCidr ?? CLUSTER_CIDR;
    const results = await Promise.allSettled(
      this.opts.nodes.map(async (n) => {
        const set = renderRules({ services, clusterCidr, previousChains: this.chainsByNode.get(n.name) ?? [] });
        await applyRules(n.netns, set.text, n.xtablesLock);
        this.chainsByNode.set(n.name, set.chains);
        return set;
      }),
    );
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    const ok = results.find((r): r is PromiseFulfilledResult<RuleSet> => r.status === 'fulfilled');
    this.lastSync = { ms: Date.now() - started, rules: ok ? ok.value.text.split('\n').filter((l) => l.startsWith('-A')).length : 0, error: failed.map((f) => String(f.reason)).join('; ') };
    if (failed.length) {
      this.opts.log?.(`kube-proxy: sync failed: ${this.lastSync.error}`);
      // Try again soon: a node netns may be busy (xtables lock) or a rule may reference a chain being removed.
      if (!this.stopped) setTimeout(() => this.schedule(), 1_000).unref();
    }
  }
}
