/**
 * Keeping recomputes small (pure). Two questions the server asks on every change:
 * - `affectsModel`: can this watch event change the mesh model at all? Most events cannot: a
 *   kubelet's Node heartbeat, a Pod's condition flipping, our own status write on a policy. Only
 *   the fields computeModel reads count (kept in step with src/state/model.ts).
 * - `nodesToRecompute`: given the previous and the new model and each node's current snapshot,
 *   which nodes' snapshots can have changed? A workload's own node and every node holding it as a
 *   peer; every node holding a changed Service (and, with namespace services, every node with an
 *   enrolled workload in its namespace); all nodes when a policy, PeerAuthentication,
 *   route or the mesh config changed (their scoping reaches across nodes). Everything else keeps
 *   its snapshot untouched, which is what makes a Pod change cost one node, not a hundred.
 */
import type { WatchEvent } from '../k8s/watch.js';
import type { WatchedResource } from '../k8s/resources.js';
import type { MeshModel } from '../state/model.js';
import type { KubeObject } from '../state/objects.js';
import type { NodeSnapshot } from '../api/types.js';

const json = (v: unknown): string => JSON.stringify(v ?? null);

/** The fields of a Pod the model reads. */
function podFacts(o: KubeObject): string {
  const spec = (o.spec ?? {}) as Record<string, unknown>;
  const status = (o.status ?? {}) as Record<string, unknown>;
  return json([o.metadata.uid, o.metadata.labels, spec['nodeName'], spec['serviceAccountName'], spec['serviceAccount'], spec['hostNetwork'], status['phase'], status['podIP'], status['podIPs']]);
}

/** Whether a watch event of `resource` can change the model computed from the cache. */
export function affectsModel(resource: WatchedResource, event: WatchEvent<KubeObject>): boolean {
  if (event.type !== 'updated') return true;
  const { object: next, old } = event;
  switch (resource) {
    case 'nodes':
    case 'serviceAccounts':
      return false; // the model reads Node names only (add/delete); ServiceAccounts not at all yet
    case 'namespaces':
      return json(old.metadata.labels) !== json(next.metadata.labels);
    case 'pods':
      return podFacts(old) !== podFacts(next);
    case 'authorizationPolicies':
    case 'peerAuthentications':
    case 'httpRoutes':
    case 'grpcRoutes':
      // spec changes bump generation; a status-only update (ours, or another replica's) does not
      return old.metadata.generation !== next.metadata.generation || json(old.metadata.labels) !== json(next.metadata.labels) || (next.metadata.generation === undefined && json(old.spec) !== json(next.spec));
    default:
      return true;
  }
}

function changedKeys<T>(prev: ReadonlyMap<string, T>, next: ReadonlyMap<string, T>): string[] {
  const out: string[] = [];
  for (const [k, v] of next) {
    const old = prev.get(k);
    if (old === undefined || (old !== v && json(old) !== json(v))) out.push(k);
  }
  for (const k of prev.keys()) if (!next.has(k)) out.push(k);
  return out;
}

/**
 * The nodes (of `nodes`) whose snapshot may differ between `prev` and `next`; `current(node)` is
 * the snapshot a node holds now (undefined: never computed, so it is recomputed).
 */
export function nodesToRecompute(
  prev: MeshModel,
  next: MeshModel,
  nodes: Iterable<string>,
  current: (node: string) => NodeSnapshot | undefined,
  opts: { namespaceServices?: boolean } = {},
): Set<string> {
  const all = new Set(nodes);
  const crossNode =
    json(prev.config) !== json(next.config) ||
    changedKeys(prev.authorizationPolicies, next.authorizationPolicies).length > 0 ||
    changedKeys(prev.peerAuthentications, next.peerAuthentications).length > 0 ||
    changedKeys(prev.routes, next.routes).length > 0;
  if (crossNode) return all;
  const workloads = changedKeys(prev.workloads, next.workloads);
  const services = changedKeys(prev.services, next.services);
  const out = new Set<string>();
  for (const uid of workloads) {
    for (const w of [prev.workloads.get(uid), next.workloads.get(uid)]) if (w && all.has(w.node)) out.add(w.node);
  }
  // With namespace scope (snapshot rule (c)), a Service or workload added to (or changed in) a
  // namespace reaches every node with an enrolled workload there, whether or not it held it before.
  const serviceNamespaces = new Set<string>();
  if (opts.namespaceServices) {
    for (const key of services) serviceNamespaces.add(key.split('/')[0]!);
    // peers too: every workload of those namespaces
    for (const uid of workloads) for (const w of [prev.workloads.get(uid), next.workloads.get(uid)]) if (w) serviceNamespaces.add(w.namespace);
  }
  const inServiceNamespace = (snap: NodeSnapshot): boolean => serviceNamespaces.size > 0 && Object.values(snap.workloads).some((w) => w.enrolled && serviceNamespaces.has(w.namespace));
  for (const node of all) {
    if (out.has(node)) continue;
    const snap = current(node);
    if (!snap || services.some((s) => s in snap.services) || workloads.some((uid) => uid in snap.peers) || inServiceNamespace(snap)) out.add(node);
  }
  return out;
}
