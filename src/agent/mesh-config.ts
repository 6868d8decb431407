/**
 * The agent's view of the mesh: the node's config from ambit-control, checked, and indexed the way
 * the proxy asks per connection — who is behind this pod IP, which Service is this VIP:port and
 * which endpoint takes the connection, which Service an endpoint IP:port belongs to (metrics'
 * destination_service), the policies, the trust roots.
 *
 * Layers, from pure to I/O:
 * - `acceptUpdate(prev, update)`: the checked config after one pushed update, and the resources
 *   it rejects (they become the NACK). Only resources the update touches are checked, so a NACK
 *   names what changed (ambit.proto rule 4: a NACKed resource is not re-applied until it changes).
 * - `buildIndex(snapshot)`: lookup tables over a checked snapshot; immutable except its
 *   round-robin counters. A new config builds a new index; connections in flight keep the old one.
 * - `MeshConfig`: the sink the subscription feeds (`apply`), and `start()`, which subscribes with a
 *   ControlClient for this node. It emits 'changed' with each new index. When ambit-control is
 *   unreachable it keeps serving the last config (the ControlClient reconnects with backoff and
 *   resumes from the version held) and says how stale it is. `liveView()` is what the proxy's
 *   handlers hold: the same lookups, always answered from the newest index.
 *
 * A rejected resource is handled so the agent errs on the side of refusing, never of allowing:
 * the last good version of it is kept when there is one; else a rejected AuthorizationPolicy
 * becomes "deny everything" for the workloads it selects and a rejected PeerAuthentication becomes
 * STRICT for its scope (their scope is still readable), and anything else is left out.
 */
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import type { ConfigSubscription, ConfigUpdate, ConnectionEvent, ControlClient } from '../api/client.js';
import {
  RESOURCE_TYPES,
  type AuthorizationPolicy,
  type Endpoint,
  type NodeSnapshot,
  type PeerAuthentication,
  type ResourceError,
  type ResourceType,
  type Route,
  type Service,
  type ServicePort,
  type SnapshotResources,
  type TrustSettings,
  type Workload,
} from '../api/types.js';
import { parseSpiffeId } from '../identity/spiffe.js';
import { buildDnsIndex, type DnsIndex } from '../proxy/dns/resolve.js';
import type { WorkloadInfo as ProxyWorkloadInfo } from '../proxy/mesh/view.js';
import { resourceProblems, trustProblems } from './mesh-validate.js';

// ------------------------------------------------------------------------------------------------
// Accepting an update (pure)

type AnyResource = SnapshotResources[ResourceType][string];

export interface AcceptResult {
  /** the config the agent runs with: every resource checked, rejected ones handled (file header) */
  accepted: NodeSnapshot;
  /** the rejected resources, for the NACK */
  errors: ResourceError[];
}

/**
 * The checked config after `update`, given the checked config before it (`prev`). A delta checks
 * only the resources it adds or updates; a full snapshot checks everything.
 */
export function acceptUpdate(prev: NodeSnapshot | undefined, update: ConfigUpdate): AcceptResult {
  const next = update.snapshot;
  const errors: ResourceError[] = [];
  const accepted = { node: next.node, version: next.version } as NodeSnapshot;
  const base = update.delta && prev ? prev : undefined;

  for (const type of RESOURCE_TYPES) {
    const record = new Map<string, AnyResource>(base ? Object.entries(base[type] as Record<string, AnyResource>) : []);
    const touched = base ? [...Object.keys(update.delta![type].added), ...Object.keys(update.delta![type].updated)] : Object.keys(next[type]);
    if (base) for (const key of update.delta![type].removed) record.delete(key);
    for (const key of touched) {
      const value = (next[type] as Record<string, AnyResource>)[key];
      if (value === undefined) continue;
      const problems = resourceProblems(type, value);
      if (problems.length === 0) {
        record.set(key, value);
        continue;
      }
      const last = (prev?.[type] as Record<string, AnyResource> | undefined)?.[key];
      const { keep, outcome } = rejectedResource(type, value, last);
      if (keep) record.set(key, keep);
      else record.delete(key);
      errors.push({ type, key, message: `${problems.join('; ')}; ${outcome}` });
    }
    (accepted as unknown as Record<ResourceType, Record<string, AnyResource>>)[type] = sortRecord(record);
  }

  const trustChanged = !base || update.delta!.trust !== undefined;
  if (!trustChanged) accepted.trust = base!.trust;
  else {
    const problems = trustProblems(next.trust);
    if (problems.length === 0) accepted.trust = next.trust;
    else {
      accepted.trust = prev?.trust ?? { trustDomain: typeof next.trust?.trustDomain === 'string' ? next.trust.trustDomain : 'cluster.local', rootNamespace: typeof next.trust?.rootNamespace === 'string' ? next.trust.rootNamespace : 'ambit-system', roots: [] };
      errors.push({ type: 'trust', key: 'trust', message: `${problems.join('; ')}; ${prev ? 'this agent keeps the previous trust settings' : 'this agent trusts no roots until they are fixed, so every mTLS connection fails'}` });
    }
  }
  return { accepted, errors };
}

/** What the agent runs with in place of a rejected resource, and how it says so in the NACK. */
function rejectedResource(type: ResourceType, raw: AnyResource, last: AnyResource | undefined): { keep?: AnyResource; outcome: string } {
  if (last) return { keep: last, outcome: 'this agent keeps the previous version' };
  const r = raw as unknown as Record<string, unknown>;
  const scope = policyScope(r);
  if (type === 'authorizationPolicies' && scope && r['action'] !== 'AUDIT') {
    const deny: AuthorizationPolicy = { ...scope, action: 'DENY', rules: [{}] };
    if (Array.isArray(r['targetServices']) && r['targetServices'].every((s) => typeof s === 'string')) deny.targetServices = r['targetServices'] as string[];
    return { keep: deny, outcome: 'until it is fixed this agent denies every connection to the workloads it selects (fail closed)' };
  }
  if (type === 'peerAuthentications' && scope) {
    const strict: PeerAuthentication = { ...scope, createdAt: typeof r['createdAt'] === 'string' ? r['createdAt'] : '', mode: 'STRICT' };
    return { keep: strict, outcome: 'until it is fixed this agent applies STRICT mTLS to the workloads it selects (fail closed)' };
  }
  return { outcome: 'this agent leaves it out' };
}

function policyScope(r: Record<string, unknown>): { key: string; namespace: string; name: string; selector?: Record<string, string> } | undefined {
  const { key, namespace, name, selector } = r;
  if (typeof key !== 'string' || typeof namespace !== 'string' || typeof name !== 'string') return undefined;
  if (selector === undefined) return { key, namespace, name };
  if (selector === null || typeof selector !== 'object' || Array.isArray(selector) || !Object.values(selector).every((v) => typeof v === 'string')) return undefined;
  return { key, namespace, name, selector: selector as Record<string, string> };
}

function sortRecord<T>(m: Map<string, T>): Record<string, T> {
  const out: Record<string, T> = {};
  for (const k of [...m.keys()].sort()) out[k] = m.get(k)!;
  return out;
}

// ------------------------------------------------------------------------------------------------
// Indexes (pure)

/**
 * Who is behind a pod IP: a workload of this node or a peer on another node. The proxy's
 * WorkloadInfo (what its handlers read, e.g. `services` for policies that target a Service) plus
 * what the agent's index keeps.
 */
export interface WorkloadInfo extends ProxyWorkloadInfo {
  ips: readonly string[];
  /** the full record when the pod runs on this node */
  local?: Workload;
}

/** A Service port reached through one of the Service's cluster IPs. */
export interface ServiceTarget {
  service: Service;
  port: ServicePort;
  endpoints: readonly Endpoint[];
}

/** The endpoint picked for a connection to a ServiceTarget. */
export interface EndpointChoice {
  ip: string;
  /** the port on the endpoint (the Service port's target port) */
  port: number;
  endpoint: Endpoint;
  /** the pod behind the endpoint, when it is one the snapshot knows */
  workload?: WorkloadInfo;
}

export interface IndexOptions {
  /** [0, 1): where each target's round robin starts, so agents do not all begin at the same endpoint */
  random?: () => number;
}

/** Lookups over one checked snapshot. */
export class MeshIndex {
  readonly version: string;
  readonly node: string;
  readonly trust: TrustSettings;
  /** key order */
  readonly routes: readonly Route[];
  /** this node's workloads, key (uid) order */
  readonly localWorkloads: readonly Workload[];

  readonly #byIp = new Map<string, WorkloadInfo>();
  readonly #byUid = new Map<string, WorkloadInfo>();
  readonly #byVip = new Map<string, ServiceTarget>();
  readonly #vips = new Set<string>();
  readonly #byEndpoint = new Map<string, { service: Service; port: ServicePort }>();
  readonly #byHostname = new Map<string, Service>();
  readonly #services: readonly Service[];
  readonly #policies: readonly AuthorizationPolicy[];
  readonly #peerAuthentications: readonly PeerAuthentication[];
  #dns: DnsIndex | undefined;
  readonly #next = new Map<ServiceTarget, number>();
  readonly #random: () => number;

  constructor(snapshot: NodeSnapshot, opts: IndexOptions = {}) {
    this.version = snapshot.version;
    this.node = snapshot.node;
    this.trust = snapshot.trust;
    this.#random = opts.random ?? Math.random;
    this.#policies = Object.values(snapshot.authorizationPolicies);
    this.#peerAuthentications = Object.values(snapshot.peerAuthentications);
    this.routes = Object.values(snapshot.routes);
    this.localWorkloads = Object.values(snapshot.workloads);
    this.#services = Object.values(snapshot.services);

    // This node's workloads first: when an IP appears twice (a reused address not yet cleaned up), the local pod wins.
    for (const w of this.localWorkloads) this.#addWorkload({ uid: w.uid, identity: w.identity, enrolled: w.enrolled, node: w.node, ips: w.ips, namespace: w.namespace, name: w.name, serviceAccount: w.serviceAccount, labels: w.labels, services: w.services, local: w });
    for (const p of Object.values(snapshot.peers)) {
      const id = parseSpiffeId(p.identity);
      const info: WorkloadInfo = { uid: p.uid, identity: p.identity, enrolled: p.enrolled, node: p.node, ips: p.ips };
      if (typeof p.workload === 'string' && p.workload) info.workload = p.workload;
      if (id.ok && id.id.namespace !== undefined) info.namespace = id.id.namespace;
      if (id.ok && id.id.serviceAccount !== undefined) info.serviceAccount = id.id.serviceAccount;
      this.#addWorkload(info);
    }
    for (const s of this.#services) {
      if (!this.#byHostname.has(s.hostname)) this.#byHostname.set(s.hostname, s);
      for (const port of s.ports) {
        const target: ServiceTarget = { service: s, port, endpoints: s.endpoints };
        for (const vip of s.vips) {
          addressKeySet(this.#byVip, vip, port.port, target);
          this.#vips.add(vip);
        }
        for (const e of s.endpoints) {
          const p = endpointPort(e, port);
          // Several Services may select one pod; the first in key order names it (deterministic on every node).
          if (p !== undefined) addressKeySet(this.#byEndpoint, e.ip, p, { service: s, port });
        }
      }
    }
  }

  get services(): readonly Service[] {
    return this.#services;
  }

  /** The AuthorizationPolicies of this node's workloads, key order (src/proxy/policy decides which apply). */
  authorizationPolicies(): readonly AuthorizationPolicy[] {
    return this.#policies;
  }

  /** The PeerAuthentications taking part in this node's mTLS modes, key order. */
  peerAuthentications(): readonly PeerAuthentication[] {
    return this.#peerAuthentications;
  }

  rootNamespace(): string {
    return this.trust.rootNamespace;
  }

  /** PEM roots peers' certificates are verified against. */
  trustRoots(): readonly string[] {
    return this.trust.roots;
  }

  /** Service names → addresses for the DNS proxy (built on first use). */
  dnsIndex(): DnsIndex {
    return (this.#dns ??= buildDnsIndex(this.#services));
  }

  /** The workload (this node's or a peer) with this IP. IPv4-mapped IPv6 addresses are accepted. */
  workloadByIp(ip: string): WorkloadInfo | undefined {
    return this.#byIp.get(normalizeIp(ip));
  }

  workloadByUid(uid: string): WorkloadInfo | undefined {
    return this.#byUid.get(uid);
  }

  /** The Service port behind a cluster IP and port, or undefined (not a Service VIP). */
  serviceByVip(ip: string, port: number): ServiceTarget | undefined {
    return this.#byVip.get(addressKey(ip, port));
  }

  /** Whether `ip` is the cluster IP of a Service held (any port). */
  knowsVip(ip: string): boolean {
    return this.#vips.has(ip);
  }

  /** The Service an endpoint address belongs to (for destination_service when a pod IP is dialled directly). */
  serviceOfEndpoint(ip: string, port: number): { service: Service; port: ServicePort } | undefined {
    return this.#byEndpoint.get(addressKey(ip, port));
  }

  /** serviceOfEndpoint's Service alone. */
  serviceByEndpoint(ip: string, port: number): Service | undefined {
    return this.#byEndpoint.get(addressKey(ip, port))?.service;
  }

  /** A Service by `<name>.<namespace>.svc.<clusterDomain>` (the DNS proxy). */
  serviceByHostname(hostname: string): Service | undefined {
    return this.#byHostname.get(hostname.toLowerCase().replace(/\.$/, ''));
  }

  /**
   * The endpoint a new connection to `target` goes to: round robin over the ready endpoints; only
   * when none is ready, over the terminating ones (still serving while they drain); never a
   * notReady one. Endpoints that do not serve the port (a named target port they lack) are skipped.
   * Undefined when no endpoint can take the connection.
   */
  pickEndpoint(target: ServiceTarget): EndpointChoice | undefined {
    const usable = (status: Endpoint['status']): Endpoint[] => target.endpoints.filter((e) => e.status === status && endpointPort(e, target.port) !== undefined);
    let candidates = usable('ready');
    if (candidates.length === 0) candidates = usable('terminating');
    if (candidates.length === 0) return undefined;
    let n = this.#next.get(target);
    if (n === undefined) n = Math.floor(this.#random() * candidates.length);
    this.#next.set(target, (n + 1) % Number.MAX_SAFE_INTEGER);
    const endpoint = candidates[n % candidates.length]!;
    const choice: EndpointChoice = { ip: endpoint.ip, port: endpointPort(endpoint, target.port)!, endpoint };
    const workload = (endpoint.workload !== undefined ? this.#byUid.get(endpoint.workload) : undefined) ?? this.#byIp.get(normalizeIp(endpoint.ip));
    if (workload) choice.workload = workload;
    return choice;
  }

  #addWorkload(info: WorkloadInfo): void {
    if (!this.#byUid.has(info.uid)) this.#byUid.set(info.uid, info);
    for (const ip of info.ips) {
      const k = normalizeIp(ip);
      if (!this.#byIp.has(k)) this.#byIp.set(k, info);
    }
  }
}

/** Builds the lookup tables of a checked snapshot. */
export function buildIndex(snapshot: NodeSnapshot, opts: IndexOptions = {}): MeshIndex {
  return new MeshIndex(snapshot, opts);
}

/** The port an endpoint serves a Service port on: its own mapping for a named target port, else the target port. */
export function endpointPort(e: Endpoint, port: ServicePort): number | undefined {
  return e.ports?.[port.name] ?? port.targetPort;
}

/** "::ffff:10.0.0.1" → "10.0.0.1"; IPv6 in lower case. */
export function normalizeIp(ip: string): string {
  const lower = ip.toLowerCase();
  if (lower.startsWith('::ffff:') && isIP(lower.slice(7)) === 4) return lower.slice(7);
  return lower;
}

function addressKey(ip: string, port: number): string {
  return `${normalizeIp(ip)}#${port}`;
}

function addressKeySet<T>(map: Map<string, T>, ip: string, port: number, value: T): void {
  const k = addressKey(ip, port);
  if (!map.has(k)) map.set(k, value);
}

// ------------------------------------------------------------------------------------------------
// The subscription (I/O shell)

/** The per-connection lookups of MeshIndex, always answered from the newest config. */
export type LiveMeshView = Pick<
  MeshIndex,
  | 'workloadByIp'
  | 'workloadByUid'
  | 'serviceByVip'
  | 'serviceByEndpoint'
  | 'serviceOfEndpoint'
  | 'serviceByHostname'
  | 'pickEndpoint'
  | 'authorizationPolicies'
  | 'peerAuthentications'
  | 'rootNamespace'
  | 'trustRoots'
  | 'dnsIndex'
> & {
  /** on demand: ask the control plane about an unknown address (see MeshConfig.resolve) */
  resolve(address: string): Promise<boolean>;
}

const EMPTY_DNS: DnsIndex = new Map();

export interface MeshConfigOptions {
  log: Logger;
  index?: IndexOptions;
  /** ms since epoch (tests) */
  now?: () => number;
  /** how often "config is N s stale" is logged while ambit-control is unreachable; default 30 s */
  staleLogEveryMs?: number;
}

export interface MeshConfigEvents {
  changed: [index: MeshIndex, update: { version: string; errors: ResourceError[]; full: boolean }];
  connection: [event: ConnectionEvent];
}

/**
 * The node's config as the proxy reads it. Feed it with `apply` (what `start` does with the
 * control-plane subscription; a test or a file source can call it directly).
 */
/** An address the control plane did not know is not asked again for this long. */
const NEGATIVE_MS = 60_000;
const MAX_NEGATIVE = 10_000;

export class MeshConfig extends EventEmitter<MeshConfigEvents> {
  #accepted: NodeSnapshot | undefined;
  #index: MeshIndex | undefined;
  #subscription: ConfigSubscription | undefined;
  /** addresses asked for on demand that the control plane did not know: when */
  readonly #misses = new Map<string, number>();
  #connected = false;
  /** when the config last came from a live connection (ms since epoch); undefined before the first */
  #freshAt: number | undefined;
  #disconnectedAt: number | undefined;
  #lastError: string | undefined;
  #staleTimer: NodeJS.Timeout | undefined;
  #firstResolve!: () => void;
  /** resolves with the first config applied */
  readonly ready: Promise<void> = new Promise((resolve) => (this.#firstResolve = resolve));

  constructor(private readonly opts: MeshConfigOptions) {
    super();
  }

  /** Subscribes to this node's config (the ControlClient reconnects and resumes on its own). */
  static start(opts: MeshConfigOptions & { client: Pick<ControlClient, 'subscribe'>; node: string; backoff?: { initialMs?: number; maxMs?: number } }): MeshConfig {
    const mesh = new MeshConfig(opts);
    mesh.subscribe(opts.client, opts.node, opts.backoff);
    return mesh;
  }

  /**
   * Subscribes through `client`; called again (e.g. with a client for new roots), it replaces the
   * subscription and resumes from the version the previous one held, so nothing is re-sent in full.
   */
  subscribe(client: Pick<ControlClient, 'subscribe'>, node: string, backoff?: { initialMs?: number; maxMs?: number }): void {
    const held = this.#subscription?.snapshot;
    this.#subscription?.close();
    this.#subscription = client.subscribe({
      node,
      ...(held ? { resumeVersion: held.version, resumeSnapshot: held } : {}),
      onUpdate: (update) => this.apply(update),
      onConnection: (event) => this.onConnection(event),
      ...(backoff ? { backoff } : {}),
    });
  }

  /** The current index; undefined until the first config arrives. */
  get current(): MeshIndex | undefined {
    return this.#index;
  }

  get version(): string | undefined {
    return this.#accepted?.version;
  }

  get connected(): boolean {
    return this.#connected;
  }

  /** Seconds the config may be behind the cluster: 0 while connected; since the disconnect otherwise. */
  staleSeconds(): number {
    if (this.#connected || this.#disconnectedAt === undefined) return 0;
    return Math.max(0, Math.round((this.#now() - this.#disconnectedAt) / 1000));
  }

  /**
   * A view that always reads the newest index (a handler may hold it for the life of the
   * process); before the first config it knows nothing: no workloads, no Services, no policies, no
   * roots (so mTLS fails closed). Its methods are MeshIndex's.
   */
  liveView(): LiveMeshView {
    const ix = (): MeshIndex | undefined => this.#index;
    return {
      workloadByIp: (ip) => ix()?.workloadByIp(ip),
      workloadByUid: (uid) => ix()?.workloadByUid(uid),
      serviceByVip: (ip, port) => ix()?.serviceByVip(ip, port),
      serviceByEndpoint: (ip, port) => ix()?.serviceByEndpoint(ip, port),
      serviceOfEndpoint: (ip, port) => ix()?.serviceOfEndpoint(ip, port),
      serviceByHostname: (name) => ix()?.serviceByHostname(name),
      pickEndpoint: (target) => ix()?.pickEndpoint(target),
      authorizationPolicies: () => ix()?.authorizationPolicies() ?? [],
      peerAuthentications: () => ix()?.peerAuthentications() ?? [],
      rootNamespace: () => ix()?.rootNamespace() ?? 'ambit-system',
      trustRoots: () => ix()?.trustRoots() ?? [],
      dnsIndex: () => ix()?.dnsIndex() ?? EMPTY_DNS,
      resolve: (address) => this.resolve(address),
    };
  }

  /**
   * On-demand scope: an address the index does not know (a VIP or pod IP outside the node's
   * scope) is asked of the control plane; resolves true once an update makes it known, false after
   * `waitMs` (an address outside the cluster: remembered for `negativeMs`, so it costs the wait
   * once per address and minute, not per connection).
   */
  async resolve(address: string, waitMs = 500): Promise<boolean> {
    const known = (): boolean => this.#index?.workloadByIp(address) !== undefined || (this.#index?.knowsVip(address) ?? false);
    if (known()) return true;
    const now = this.#now();
    const miss = this.#misses.get(address);
    if (miss !== undefined && now - miss < NEGATIVE_MS) return false;
    if (!this.#subscription) return false;
    this.#subscription.demand([address]);
    const found = await new Promise<boolean>((resolvePromise) => {
      const onChanged = (): void => {
        if (!known()) return;
        cleanup();
        resolvePromise(true);
      };
      const timer = setTimeout(() => {
        cleanup();
        resolvePromise(false);
      }, waitMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.off('changed', onChanged);
      };
      this.on('changed', onChanged);
    });
    if (!found) {
      if (this.#misses.size >= MAX_NEGATIVE) this.#misses.clear();
      this.#misses.set(address, now);
    }
    return found;
  }

  /** For /debug/state and readiness. */
  status(): { version?: string; connected: boolean; staleSeconds: number; lastError?: string; freshAt?: number } {
    return {
      ...(this.version ? { version: this.version } : {}),
      connected: this.#connected,
      staleSeconds: this.staleSeconds(),
      ...(this.#lastError ? { lastError: this.#lastError } : {}),
      ...(this.#freshAt !== undefined ? { freshAt: this.#freshAt } : {}),
    };
  }

  /** The accepted snapshot behind the current index (what proxy workers build their own index from). */
  get accepted(): NodeSnapshot | undefined {
    return this.#accepted;
  }

  /** Applies one update: checks it, rebuilds the index, emits 'changed'; returns what it rejects (the NACK). */
  apply(update: ConfigUpdate): ResourceError[] {
    const { accepted, errors } = acceptUpdate(this.#accepted, update);
    this.#accepted = accepted;
    this.#index = buildIndex(accepted, this.opts.index);
    this.#freshAt = this.#now();
    const log = this.opts.log;
    if (errors.length > 0) log.warn({ version: accepted.version, rejected: errors }, `config ${accepted.version}: ${errors.length} resource(s) rejected (NACK); see each message`);
    if (update.decodeErrors.length > 0) log.warn({ version: accepted.version, undecodable: update.decodeErrors }, 'config resources that could not be decoded were left out (NACK)');
    log.debug({ version: accepted.version, full: !update.delta, workloads: this.#index.localWorkloads.length, services: this.#index.services.length }, 'config applied');
    this.emit('changed', this.#index, { version: accepted.version, errors, full: !update.delta });
    this.#firstResolve();
    return errors;
  }

  /** Connection events of the subscription: tracks staleness and says so in the log. */
  onConnection(event: ConnectionEvent): void {
    const log = this.opts.log;
    if (event.state === 'connected') {
      if (this.#disconnectedAt !== undefined) log.info({ downSeconds: this.staleSeconds() }, 'ambit-control reachable again; resuming config from the version held');
      this.#connected = true;
      this.#disconnectedAt = undefined;
      this.#lastError = undefined;
      clearInterval(this.#staleTimer);
      this.#staleTimer = undefined;
    } else {
      const first = this.#disconnectedAt === undefined;
      this.#connected = false;
      this.#disconnectedAt ??= this.#now();
      this.#lastError = event.error.message;
      if (first) {
        log.warn({ err: event.error.message, retryInMs: event.retryInMs }, this.#staleMessage());
        this.#staleTimer = setInterval(() => log.warn({ err: this.#lastError }, this.#staleMessage()), this.opts.staleLogEveryMs ?? 30_000);
        this.#staleTimer.unref();
      }
    }
    this.emit('connection', event);
  }

  close(): void {
    this.#subscription?.close();
    clearInterval(this.#staleTimer);
  }

  #staleMessage(): string {
    if (!this.#accepted) return `ambit-control unreachable (${this.#lastError}) and no config yet: enrolled pods' connections cannot be routed until it answers; check the ambit-control pods and --control-address`;
    return `ambit-control unreachable (${this.#lastError}): serving config ${this.#accepted.version}, which is ${this.staleSeconds()} s stale; running traffic is unaffected, changes in the cluster wait until it is back`;
  }

  #now(): number {
    return (this.opts.now ?? Date.now)();
  }
}
