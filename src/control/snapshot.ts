/**
 * Node-scoped snapshots: the part of the mesh model one node's agent needs, as plain data with a
 * content-derived version, and deltas between two snapshots. Pure.
 *
 * Scoping rule for node N (the one place it is defined):
 * - workloads: every live pod scheduled on N (enrolled or not: the agent enrols and un-enrols);
 * - services: (a) the Services that have one of N's workloads as an endpoint ("own services": the
 *   inbound side names its destination service, and a pod calling its own service hairpins);
 *   (b) the Services the node subscribed to on demand (by name or after resolving an address);
 *   (c) with `namespaceServices`, every Service of the namespaces of N's enrolled workloads (and,
 *   as peers, every workload of those namespaces, so a pod called by its IP is known);
 *   (d) the backends of routes attached to a Service in scope, to a fixed point;
 * - peers: the workloads behind the endpoints of those services (and subscribed workloads) that do
 *   not run on N, with only what a client needs: addresses, node, identity, enrolled;
 * - authorization policies that apply to one of N's enrolled workloads (own namespace, selector,
 *   Service target, or root namespace); PeerAuthentications taking part in their mTLS resolution
 *   (workload, namespace and mesh level); routes whose parent Service is in scope;
 * - mesh-wide trust settings (trust domain, root namespace, the CA bundle).
 * Rule (c) is off by default: with pods spread over nodes, nearly every namespace has a pod on
 * every node, so it ships most of the mesh to every node (measured in snapshot.gen.test.ts).
 *
 * The version is a hash of the content (per-object hashes, see withVersion), so two control-plane replicas computing from the same
 * cluster state hand an agent the same versions, and an agent can resume on either. Hashing and
 * equality use plain JSON.stringify: the model builds every object in a fixed key order (user maps
 * such as labels and selectors are key-sorted when read), which is much cheaper than sorting keys
 * here on every push; `canonicalJson` remains for callers holding objects of unknown origin.
 */
import { createHash } from 'node:crypto';
import { RESOURCE_TYPES, type NodeSnapshot, type PeerWorkload, type ResourceDelta, type ResourceType, type SnapshotDelta, type SnapshotResources, type TrustSettings } from '../api/types.js';
import type { MeshModel, Service, Workload } from '../state/model.js';
import type { AuthorizationPolicy, PeerAuthentication } from '../state/policy.js';
import { canonicalWorkloadName } from '../state/workload-name.js';
import { authorizationPolicyApplies, peerAuthenticationApplies } from '../state/policy.js';
import type { Route } from '../state/routes.js';
import { sortedRecord } from '../api/delta.js';

// Snapshots and deltas are the push protocol's wire types (one definition, in src/api).
export { RESOURCE_TYPES };
export type { NodeSnapshot, PeerWorkload, ResourceDelta, ResourceType, SnapshotDelta, SnapshotResources, TrustSettings };

export interface SnapshotOptions {
  /** the CA bundle to put in `trust.roots` */
  trustRoots?: readonly string[];
  /** on-demand subscriptions of the node: Service keys ("ns/name") */
  subscribedServices?: ReadonlySet<string>;
  /** on-demand subscriptions of the node: workload uids (a pod addressed directly) */
  subscribedWorkloads?: ReadonlySet<string>;
  /** rule (c): also every Service of the namespaces of the node's enrolled workloads */
  namespaceServices?: boolean;
}


/** Indexes over a model that every node's scoping uses; built once per model. */
interface ModelIndex {
  workloadsByNode: Map<string, Workload[]>;
  workloadsByNamespace: Map<string, Workload[]>;
  servicesByNamespace: Map<string, string[]>;
  policiesByNamespace: Map<string, AuthorizationPolicy[]>;
  peerAuthsByNamespace: Map<string, PeerAuthentication[]>;
  routesByParent: Map<string, Route[]>;
  /** address → the Service (cluster IP) or workload (pod IP) behind it; built on a model's first demand */
  byAddress?: { services: Map<string, string>; workloads: Map<string, string> };
}

const indexes = new WeakMap<MeshModel, ModelIndex>();

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

function indexOf(model: MeshModel): ModelIndex {
  let ix = indexes.get(model);
  if (ix) return ix;
  ix = { workloadsByNode: new Map(), workloadsByNamespace: new Map(), servicesByNamespace: new Map(), policiesByNamespace: new Map(), peerAuthsByNamespace: new Map(), routesByParent: new Map() };
  for (const w of model.workloads.values()) {
    push(ix.workloadsByNode, w.node, w);
    push(ix.workloadsByNamespace, w.namespace, w);
  }
  for (const s of model.services.values()) push(ix.servicesByNamespace, s.namespace, s.key);
  for (const p of model.authorizationPolicies.values()) push(ix.policiesByNamespace, p.namespace, p);
  for (const p of model.peerAuthentications.values()) push(ix.peerAuthsByNamespace, p.namespace, p);
  for (const r of model.routes.values()) for (const parent of new Set(r.parents.map((p) => p.service))) push(ix.routesByParent, parent, r);
  indexes.set(model, ix);
  return ix;
}

/**
 * On-demand scope (rule (b)): the Services and workloads behind the addresses an agent met (a
 * Service VIP or a pod IP), as snapshotFor's subscriptions. An address that is neither adds nothing.
 */
export function demandedScope(model: MeshModel, addresses: ReadonlySet<string> | undefined): Pick<SnapshotOptions, 'subscribedServices' | 'subscribedWorkloads'> {
  if (!addresses || addresses.size === 0) return {};
  const ix = indexOf(model);
  if (!ix.byAddress) {
    ix.byAddress = { services: new Map(), workloads: new Map() };
    for (const svc of model.services.values()) for (const vip of svc.vips) ix.byAddress.services.set(vip, svc.key);
    for (const w of model.workloads.values()) for (const ip of w.ips) ix.byAddress.workloads.set(ip, w.uid);
  }
  const services = new Set<string>();
  const workloads = new Set<string>();
  for (const a of addresses) {
    const svc = ix.byAddress.services.get(a);
    if (svc) services.add(svc);
    const uid = ix.byAddress.workloads.get(a);
    if (uid) workloads.add(uid);
  }
  return { subscribedServices: services, subscribedWorkloads: workloads };
}

function trustOf(model: MeshModel, opts: SnapshotOptions): TrustSettings {
  return { trustDomain: model.config.trustDomain, rootNamespace: model.config.rootNamespace, roots: [...(opts.trustRoots ?? [])] };
}

function peerOf(w: Workload): PeerWorkload {
  return { uid: w.uid, ips: w.ips, node: w.node, identity: w.identity, enrolled: w.enrolled, workload: canonicalWorkloadName(w) };
}

/**
 * The hash of one resource object, computed once per object: a model's Services, workloads and
 * policies are shared by the snapshots of many nodes, so hashing them per object (instead of
 * serialising every node's whole snapshot) does each one once per recompute. Model objects are
 * never mutated after computeModel returns, which is what makes the memo safe.
 */
const objectHashes = new WeakMap<object, string>();
function objectHash(o: object): string {
  let h = objectHashes.get(o);
  if (h === undefined) {
    h = createHash('sha256').update(JSON.stringify(o)).digest('base64');
    objectHashes.set(o, h);
  }
  return h;
}

/** The version: a hash over the node, the trust settings, and every resource's key and content hash, in order. */
function withVersion(node: string, trust: TrustSettings, r: SnapshotResources): NodeSnapshot {
  const hash = createHash('sha256').update(JSON.stringify({ node, trust }));
  for (const t of RESOURCE_TYPES) {
    hash.update(`\n${t}`);
    for (const [k, v] of Object.entries(r[t])) hash.update(`\n${k}=${objectHash(v)}`);
  }
  return { node, version: hash.digest('hex').slice(0, 16), trust, ...r };
}

/** The Services in node scope: rules (a)–(d) of the header. */
function servicesInScope(model: MeshModel, ix: ModelIndex, local: readonly Workload[], opts: SnapshotOptions): Set<string> {
  const scope = new Set<string>();
  for (const w of local) for (const s of w.services) scope.add(s);
  for (const s of opts.subscribedServices ?? []) if (model.services.has(s)) scope.add(s);
  if (opts.namespaceServices) for (const w of local) if (w.enrolled) for (const s of ix.servicesByNamespace.get(w.namespace) ?? []) scope.add(s);
  // route backends: a client of an in-scope Service may be sent to them
  const queue = [...scope];
  while (queue.length > 0) {
    for (const r of ix.routesByParent.get(queue.pop()!) ?? [])
      for (const rule of r.rules)
        for (const b of rule.backends)
          if (!scope.has(b.service) && model.services.has(b.service)) {
            scope.add(b.service);
            queue.push(b.service);
          }
  }
  return scope;
}

/** The snapshot for one node, by the scoping rule of the header. */
export function snapshotFor(model: MeshModel, node: string, opts: SnapshotOptions = {}): NodeSnapshot {
  const ix = indexOf(model);
  const root = model.config.rootNamespace;
  const local = ix.workloadsByNode.get(node) ?? [];
  const enrolled = local.filter((w) => w.enrolled);
  const scope = servicesInScope(model, ix, local, opts);

  const services = new Map<string, Service>();
  const peers = new Map<string, PeerWorkload>();
  const addPeer = (uid: string): void => {
    const w = model.workloads.get(uid);
    if (w && w.node !== node && !peers.has(uid)) peers.set(uid, peerOf(w));
  };
  for (const key of scope) {
    const svc = model.services.get(key)!;
    services.set(key, svc);
    for (const ep of svc.endpoints) if (ep.workload) addPeer(ep.workload);
  }
  for (const uid of opts.subscribedWorkloads ?? []) addPeer(uid);
  // rule (c) for pods: the workloads of those namespaces too, so a pod called by its IP is known
  if (opts.namespaceServices) for (const ns of new Set(enrolled.map((w) => w.namespace))) for (const w of ix.workloadsByNamespace.get(ns) ?? []) addPeer(w.uid);

  const namespaces = new Set([root, ...enrolled.map((w) => w.namespace)]);
  const authz = new Map<string, AuthorizationPolicy>();
  const peerAuths = new Map<string, PeerAuthentication>();
  for (const ns of namespaces) {
    for (const p of ix.policiesByNamespace.get(ns) ?? []) if (enrolled.some((w) => authorizationPolicyApplies(p, w, root))) authz.set(p.key, p);
    for (const p of ix.peerAuthsByNamespace.get(ns) ?? []) if (enrolled.some((w) => peerAuthenticationApplies(p, w, root))) peerAuths.set(p.key, p);
  }
  const routes = new Map<string, Route>();
  for (const key of scope) for (const r of ix.routesByParent.get(key) ?? []) routes.set(r.key, r);

  return withVersion(node, trustOf(model, opts), {
    workloads: sortedRecord(local.map((w) => [w.uid, w])),
    peers: sortedRecord(peers),
    services: sortedRecord(services),
    authorizationPolicies: sortedRecord(authz),
    peerAuthentications: sortedRecord(peerAuths),
    routes: sortedRecord(routes),
  });
}

/** The whole mesh as one snapshot (node ""): what every node would get without scoping. */
export function fullSnapshot(model: MeshModel, opts: Pick<SnapshotOptions, 'trustRoots'> = {}): NodeSnapshot {
  return withVersion('', trustOf(model, opts), {
    workloads: sortedRecord([...model.workloads].map(([k, w]) => [k, w])),
    peers: {},
    services: sortedRecord(model.services),
    authorizationPolicies: sortedRecord(model.authorizationPolicies),
    peerAuthentications: sortedRecord(model.peerAuthentications),
    routes: sortedRecord(model.routes),
  });
}

/** Snapshots of every node the model knows (Node objects and nodes running workloads). */
export function snapshotsForAllNodes(model: MeshModel, optsFor: (node: string) => SnapshotOptions = () => ({})): Map<string, NodeSnapshot> {
  const nodes = new Set([...model.nodes, ...indexOf(model).workloadsByNode.keys()].filter((n) => n !== ''));
  return new Map([...nodes].sort().map((n) => [n, snapshotFor(model, n, optsFor(n))]));
}

/** Serialised size of a snapshot in bytes (what the ratio goal is measured in). */
export function snapshotBytes(s: NodeSnapshot): number {
  return Buffer.byteLength(JSON.stringify(s));
}

// The delta rules are the protocol's (src/api/delta.ts), shared with the agent.
export { canonicalJson, diffSnapshots as diff, applyDelta as apply, isEmptyDelta, deltaSize, DeltaMismatchError } from '../api/delta.js';
