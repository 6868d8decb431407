/**
 * The controller manager: runs the built-in controllers over the in-process ApiClient. It watches
 * the resources each controller depends on, turns every change into work-queue keys, and syncs a
 * key by reading the current objects, calling the controller's pure reconcile function and
 * performing the returned writes in order. A write that fails (Conflict, AlreadyExists, NotFound,
 * anything) ends that round and the key is retried with backoff; everything is also resynced
 * periodically, and keys are re-queued for the moments that matter without a change
 * (minReadySeconds passing, a progress deadline running out).
 *
 * Processing never happens inside a watch callback: events are recorded and handled on a later
 * turn of the event loop, in bounded batches, so the API server stays responsive.
 */
import type { KObject } from '../types.js';
import type { ApiClient, WatchEvent } from './client.js';
import { ApiError } from '../errors.js';
import { type Action, R, describe } from './actions.js';
import { WorkQueue } from './queue.js';
import { controllerOf, field, keyOf, splitKey } from './meta.js';
import { mapSelectorMatches, selectorMatches, type LabelSelector } from './selectors.js';
import { isManagedSlice, reconcileEndpointSlices, SERVICE_NAME_LABEL } from './endpointslice.js';
import { reconcileEndpoints } from './endpoints.js';
import { reconcileReplicaSet, replicaSetWakeup, type ReplicaSetInput } from './replicaset.js';
import { deploymentWakeup, reconcileDeployment } from './deployment.js';
import { daemonSetWakeup, reconcileDaemonSet } from './daemonset.js';
import { FOREGROUND_FINALIZER, ORPHAN_FINALIZER, reconcileGarbage, type GcItem } from './gc.js';
import { isTerminating, reconcileNamespace, ROOT_CA_CONFIGMAP } from './namespace.js';

/** The pino-compatible subset of a logger the manager uses. */
export interface ManagerLogger {
  debug(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export type ControllerName = 'endpoints' | 'replicaset' | 'deployment' | 'daemonset' | 'garbagecollector' | 'namespace';

export const ALL_CONTROLLERS: readonly ControllerName[] = ['endpoints', 'replicaset', 'deployment', 'daemonset', 'garbagecollector', 'namespace'];

export interface ManagerOptions {
  /** the cluster CA (PEM), published as kube-root-ca.crt in every namespace */
  caPem: string;
  /** every namespaced resource ("v1/pods", "apps/v1/deployments", CRDs...), re-read on resync */
  namespacedResources: () => string[];
  /** cluster-scoped resources whose objects may own or be owned (garbage collection); default none */
  clusterResources?: () => string[];
  /** the resource serving an owner reference's apiVersion/kind; default: well-known kinds plus kinds seen in lists */
  resourceFor?: (apiVersion: string, kind: string) => string | undefined;
  /** wall clock for timestamps (ms); default Date.now */
  now?: () => number;
  log?: ManagerLogger;
  /** full resync period (ms); default 10 s */
  resyncMs?: number;
  /** set spec.nodeName on daemon pods (see daemonset.ts); default true */
  bindDaemonPods?: boolean;
  /** which controllers to run; default all */
  controllers?: readonly ControllerName[];
}

interface SyncResult {
  actions: Action[];
  /** absolute time (ms, `now` clock) at which to sync the key again */
  wakeAt?: number;
  /** called after the actions were applied, for a wake time that depends on the written state */
  after?: () => number | undefined;
}

interface Loop {
  name: ControllerName;
  queue: WorkQueue;
  sync(key: string): SyncResult;
  /** every key, for the periodic resync */
  keys(): string[];
  /** a write of this round failed */
  failed?(key: string, action: Action, err: unknown): void;
  /** the round succeeded */
  succeeded?(key: string): void;
}

const GC_KEY = '*';
/** Keys handled per event-loop turn before yielding. */
const BATCH = 64;

/** Well-known kinds, so owners of kinds with no object left are still known to be gone. */
const WELL_KNOWN: Record<string, string> = {
  'v1/Pod': R.pods,
  'v1/Service': R.services,
  'v1/ConfigMap': R.configMaps,
  'v1/Secret': 'v1/secrets',
  'v1/ServiceAccount': R.serviceAccounts,
  'v1/Endpoints': R.endpoints,
  'v1/ReplicationController': 'v1/replicationcontrollers',
  'v1/PersistentVolumeClaim': 'v1/persistentvolumeclaims',
  'apps/v1/ReplicaSet': R.replicaSets,
  'apps/v1/Deployment': R.deployments,
  'apps/v1/DaemonSet': R.daemonSets,
  'apps/v1/StatefulSet': 'apps/v1/statefulsets',
  'apps/v1/ControllerRevision': R.controllerRevisions,
  'batch/v1/Job': 'batch/v1/jobs',
  'batch/v1/CronJob': 'batch/v1/cronjobs',
  'discovery.k8s.io/v1/EndpointSlice': R.endpointSlices,
};

export class ControllerManager {
  private readonly loops = new Map<ControllerName, Loop>();
  private readonly watches = new Map<string, () => void>();
  private readonly pending: { resource: string; ev: WatchEvent }[] = [];
  private readonly learnedKinds = new Map<string, string>();
  private readonly now: () => number;
  private scheduled = false;
  private running = false;
  private resyncTimer: NodeJS.Timeout | undefined;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly client: ApiClient,
    private readonly opts: ManagerOptions,
  ) {
    this.now = opts.now ?? Date.now;
    const wanted = new Set(opts.controllers ?? ALL_CONTROLLERS);
    for (const loop of [this.endpointsLoop(), this.replicaSetLoop(), this.deploymentLoop(), this.daemonSetLoop(), this.gcLoop(), this.namespaceLoop()]) {
      if (wanted.has(loop.name)) this.loops.set(loop.name, loop);
    }
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.resync();
    const period = this.opts.resyncMs ?? 10_000;
    this.resyncTimer = setInterval(() => this.resync(), period);
    this.resyncTimer.unref();
  }

  stop(): void {
    this.running = false;
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    this.resyncTimer = undefined;
    for (const stop of this.watches.values()) stop();
    this.watches.clear();
    for (const loop of this.loops.values()) loop.queue.clear();
    this.pending.length = 0;
    this.wakeIdle();
  }

  /** Resolves once no event is pending and no key is queued (delayed retries excepted). */
  whenIdle(): Promise<void> {
    if (!this.running || this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  // ---- plumbing -----------------------------------------------------------------------------

  private schedule = (): void => {
    if (this.scheduled || !this.running) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.pump();
    });
  };

  private newQueue(): WorkQueue {
    return new WorkQueue(this.schedule);
  }

  private isIdle(): boolean {
    return this.pending.length === 0 && [...this.loops.values()].every((l) => l.queue.length === 0);
  }

  private wakeIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  /** Watches every resource any controller needs, and (re)lists everything into the queues. */
  private resync(): void {
    if (!this.running) return;
    const resources = new Set<string>([
      R.services, R.pods, R.endpoints, R.endpointSlices, R.replicaSets, R.deployments, R.daemonSets,
      R.controllerRevisions, R.nodes, R.namespaces, R.serviceAccounts, R.configMaps,
      ...this.safe(() => this.opts.namespacedResources(), []),
      ...this.safe(() => this.opts.clusterResources?.() ?? [], []),
    ]);
    for (const r of resources) {
      if (this.watches.has(r)) continue;
      try {
        this.watches.set(r, this.client.watch(r, (ev) => this.onEvent(r, ev)));
      } catch (err) {
        this.opts.log?.debug({ resource: r, err: String(err) }, 'controller manager: resource not watchable');
      }
    }
    for (const loop of this.loops.values()) for (const k of this.safe(() => loop.keys(), [])) loop.queue.add(k);
  }

  private onEvent(resource: string, ev: WatchEvent): void {
    if (!this.running) return;
    this.pending.push({ resource, ev });
    this.schedule();
  }

  private pump(): void {
    if (!this.running) return;
    while (this.pending.length) {
      const { resource, ev } = this.pending.shift()!;
      this.safe(() => this.route(resource, ev), undefined);
    }
    let budget = BATCH;
    let progressed = true;
    while (budget > 0 && progressed) {
      progressed = false;
      for (const loop of this.loops.values()) {
        const key = loop.queue.pop();
        if (key === undefined) continue;
        progressed = true;
        budget--;
        this.process(loop, key);
      }
    }
    if (!this.isIdle()) this.schedule();
    else this.wakeIdle();
  }

  private process(loop: Loop, key: string): void {
    let result: SyncResult;
    try {
      result = loop.sync(key);
    } catch (err) {
      this.opts.log?.warn({ controller: loop.name, key, err: String(err) }, 'controller sync failed');
      loop.queue.addRateLimited(key);
      return;
    }
    const failure = this.apply(result.actions);
    if (failure) {
      const { action, err } = failure;
      const expected = err instanceof ApiError && ['Conflict', 'AlreadyExists', 'NotFound'].includes(err.reason);
      const fields = { controller: loop.name, key, action: describe(action), err: String(err) };
      if (expected) this.opts.log?.debug(fields, 'controller write failed; retrying');
      else this.opts.log?.warn(fields, 'controller write failed; retrying');
      loop.failed?.(key, action, err);
      loop.queue.addRateLimited(key);
      return;
    }
    loop.queue.forget(key);
    loop.succeeded?.(key);
    const wakeAt = [result.wakeAt, this.safe(() => result.after?.(), undefined)].filter((t): t is number => t !== undefined);
    if (wakeAt.length) loop.queue.addAfter(key, Math.max(0, Math.min(...wakeAt) - this.now()));
  }

  /**
   * Performs the writes in order and stops at the first failure. A later update of an object
   * written earlier in the round carries that write's resourceVersion (update then updateStatus).
   */
  private apply(actions: Action[]): { action: Action; err: unknown } | undefined {
    const rv = new Map<string, string>();
    for (const action of actions) {
      try {
        switch (action.verb) {
          case 'create':
            this.client.create(action.resource, action.object);
            break;
          case 'update':
          case 'updateStatus': {
            let obj = action.object;
            const uid = obj.metadata.uid;
            const fresh = uid ? rv.get(uid) : undefined;
            if (fresh) obj = { ...obj, metadata: { ...obj.metadata, resourceVersion: fresh } };
            const out = action.verb === 'update' ? this.client.update(action.resource, obj) : this.client.updateStatus(action.resource, obj);
            if (uid && out?.metadata.resourceVersion) rv.set(uid, out.metadata.resourceVersion);
            break;
          }
          case 'delete': {
            const opts: { uid?: string; propagationPolicy?: 'Orphan' | 'Background' | 'Foreground' } = {};
            if (action.uid) opts.uid = action.uid;
            if (action.propagationPolicy) opts.propagationPolicy = action.propagationPolicy;
            try {
              this.client.delete(action.resource, action.namespace, action.name, opts);
            } catch (err) {
              // Already gone is what we wanted.
              if (!(err instanceof ApiError && err.code === 404)) throw err;
            }
            break;
          }
        }
      } catch (err) {
        return { action, err };
      }
    }
    return undefined;
  }

  private safe<T>(fn: () => T, dflt: T): T {
    try {
      return fn();
    } catch (err) {
      this.opts.log?.debug({ err: String(err) }, 'controller manager: read failed');
      return dflt;
    }
  }

  private list(resource: string, namespace?: string): KObject[] {
    return this.safe(() => this.client.list(resource, namespace ? { namespace } : {}).items, []);
  }

  /** The objects, or undefined when the server does not serve the resource. */
  private listIfServed(resource: string, namespace?: string): KObject[] | undefined {
    try {
      return this.client.list(resource, namespace ? { namespace } : {}).items;
    } catch {
      return undefined;
    }
  }

  private get(resource: string, namespace: string | undefined, name: string): KObject | undefined {
    return this.safe(() => this.client.get(resource, namespace, name), undefined);
  }

  private enqueue(name: ControllerName, key: string | undefined): void {
    if (key) this.loops.get(name)?.queue.add(key);
  }

  // ---- routing events to keys --------------------------------------------------------------

  private route(resource: string, ev: WatchEvent): void {
    const obj = ev.object;
    const ns = obj.metadata.namespace;
    const key = keyOf(obj);
    switch (resource) {
      case R.services:
        this.enqueue('endpoints', key);
        break;
      case R.pods:
        this.routePod(ev);
        break;
      case R.endpointSlices: {
        const svc = obj.metadata.labels?.[SERVICE_NAME_LABEL];
        if (svc && ns) this.enqueue('endpoints', `${ns}/${svc}`);
        break;
      }
      case R.endpoints:
        this.enqueue('endpoints', key);
        break;
      case R.replicaSets:
        this.enqueue('replicaset', key);
        this.routeToOwner('deployment', R.deployments, 'Deployment', ev);
        break;
      case R.deployments:
        this.enqueue('deployment', key);
        break;
      case R.daemonSets:
        this.enqueue('daemonset', key);
        break;
      case R.controllerRevisions: {
        const ref = controllerOf(obj);
        if (ref?.kind === 'DaemonSet' && ns) this.enqueue('daemonset', `${ns}/${ref.name}`);
        break;
      }
      case R.nodes:
        for (const ds of this.list(R.daemonSets)) this.enqueue('daemonset', keyOf(ds));
        break;
      case R.namespaces:
        this.enqueue('namespace', key);
        break;
      case R.serviceAccounts:
        if (obj.metadata.name === 'default') this.enqueue('namespace', ns);
        break;
      case R.configMaps:
        if (obj.metadata.name === ROOT_CA_CONFIGMAP) this.enqueue('namespace', ns);
        break;
    }
    if (this.mattersToGc(ev)) this.enqueue('garbagecollector', GC_KEY);
    // A terminating namespace waits for its content to disappear.
    if (ev.type === 'DELETED' && ns) this.enqueue('namespace', ns);
  }

  private mattersToGc(ev: WatchEvent): boolean {
    const m = ev.object.metadata;
    if (ev.type === 'DELETED') return true;
    const fins = m.finalizers ?? [];
    if (m.deletionTimestamp && (fins.includes(ORPHAN_FINALIZER) || fins.includes(FOREGROUND_FINALIZER))) return true;
    if (!m.ownerReferences?.length) return false;
    return ev.type === 'ADDED' || JSON.stringify(m.ownerReferences) !== JSON.stringify(ev.old?.metadata.ownerReferences);
  }

  private routePod(ev: WatchEvent): void {
    const pod = ev.object;
    const ns = pod.metadata.namespace;
    if (!ns) return;
    // Services selecting the pod before or after the change.
    for (const svc of this.list(R.services, ns)) {
      const sel = field<Record<string, string>>(svc, 'spec', 'selector');
      if (mapSelectorMatches(sel, pod.metadata.labels) || mapSelectorMatches(sel, ev.old?.metadata.labels)) this.enqueue('endpoints', keyOf(svc));
    }
    this.routeToOwner('replicaset', R.replicaSets, 'ReplicaSet', ev);
    this.routeToOwner('daemonset', R.daemonSets, 'DaemonSet', ev);
    // Recreate waits for old pods to be gone: a pod leaving concerns its ReplicaSet's Deployment.
    const ref = controllerOf(pod);
    if (ev.type === 'DELETED' && ref?.kind === 'ReplicaSet') {
      const rs = this.get(R.replicaSets, ns, ref.name);
      const dref = rs && controllerOf(rs);
      if (dref?.kind === 'Deployment') this.enqueue('deployment', `${ns}/${dref.name}`);
    }
  }

  /** The controller owner of the object (before and after), or for orphans every owner whose selector matches. */
  private routeToOwner(loop: ControllerName, ownerResource: string, kind: string, ev: WatchEvent): void {
    const ns = ev.object.metadata.namespace;
    if (!ns || !this.loops.has(loop)) return;
    const refs = [controllerOf(ev.object), ev.old && controllerOf(ev.old)];
    let owned = false;
    for (const ref of refs) {
      if (!ref) continue;
      owned = true;
      if (ref.kind === kind) this.enqueue(loop, `${ns}/${ref.name}`);
    }
    if (owned || ev.type === 'DELETED') return;
    for (const owner of this.list(ownerResource, ns)) {
      if (selectorMatches(field<LabelSelector>(owner, 'spec', 'selector'), ev.object.metadata.labels)) this.enqueue(loop, keyOf(owner));
    }
  }

  // ---- the controllers ---------------------------------------------------------------------

  private endpointsLoop(): Loop {
    return {
      name: 'endpoints',
      queue: this.newQueue(),
      keys: () => [...this.list(R.services), ...this.list(R.endpoints)].map(keyOf),
      sync: (key) => {
        const { namespace, name } = splitKey(key);
        const service = this.get(R.services, namespace, name);
        const pods = this.list(R.pods, namespace);
        const actions: Action[] = [];
        if (service) {
          const slices = this.list(R.endpointSlices, namespace).filter((s) => isManagedSlice(s, service));
          actions.push(...reconcileEndpointSlices({ service, pods, slices, nodes: this.list(R.nodes) }));
        }
        actions.push(...reconcileEndpoints({ service, pods, endpoints: this.get(R.endpoints, namespace, name) }, this.now()));
        return { actions };
      },
    };
  }

  private replicaSetLoop(): Loop {
    const errors = new Map<string, ReplicaSetInput['manageError']>();
    return {
      name: 'replicaset',
      queue: this.newQueue(),
      keys: () => this.list(R.replicaSets).map(keyOf),
      sync: (key) => {
        const { namespace, name } = splitKey(key);
        const rs = this.get(R.replicaSets, namespace, name);
        if (!rs) {
          errors.delete(key);
          return { actions: [] };
        }
        const pods = this.list(R.pods, namespace);
        const input: ReplicaSetInput = { rs, pods, related: relatedPods(rs, pods, this.list(R.replicaSets, namespace)) };
        const manageError = errors.get(key);
        if (manageError) input.manageError = manageError;
        const now = this.now();
        const wakeAt = replicaSetWakeup(input, now);
        return { actions: reconcileReplicaSet(input, now), ...(wakeAt !== undefined ? { wakeAt } : {}) };
      },
      failed: (key, action, err) => {
        const expected = err instanceof ApiError && ['Conflict', 'AlreadyExists', 'NotFound'].includes(err.reason);
        if (expected || action.resource !== R.pods || (action.verb !== 'create' && action.verb !== 'delete')) return;
        errors.set(key, { reason: action.verb === 'create' ? 'FailedCreate' : 'FailedDelete', message: err instanceof Error ? err.message : String(err) });
      },
      succeeded: (key) => {
        errors.delete(key);
      },
    };
  }

  private deploymentLoop(): Loop {
    return {
      name: 'deployment',
      queue: this.newQueue(),
      keys: () => this.list(R.deployments).map(keyOf),
      sync: (key) => {
        const { namespace, name } = splitKey(key);
        const deployment = this.get(R.deployments, namespace, name);
        if (!deployment) return { actions: [] };
        const recreate = field(deployment, 'spec', 'strategy', 'type') === 'Recreate';
        const actions = reconcileDeployment(
          { deployment, replicaSets: this.list(R.replicaSets, namespace), pods: recreate ? this.list(R.pods, namespace) : [] },
          this.now(),
        );
        return {
          actions,
          after: () => {
            const d = this.get(R.deployments, namespace, name);
            return d ? deploymentWakeup(d, this.now()) : undefined;
          },
        };
      },
    };
  }

  private daemonSetLoop(): Loop {
    return {
      name: 'daemonset',
      queue: this.newQueue(),
      keys: () => this.list(R.daemonSets).map(keyOf),
      sync: (key) => {
        const { namespace, name } = splitKey(key);
        const ds = this.get(R.daemonSets, namespace, name);
        if (!ds) return { actions: [] };
        const input = {
          ds,
          nodes: this.list(R.nodes),
          pods: this.list(R.pods, namespace),
          revisions: this.listIfServed(R.controllerRevisions, namespace),
          bindPods: this.opts.bindDaemonPods !== false,
        };
        const now = this.now();
        const wakeAt = daemonSetWakeup(input, now);
        return { actions: reconcileDaemonSet(input, now), ...(wakeAt !== undefined ? { wakeAt } : {}) };
      },
    };
  }

  private gcLoop(): Loop {
    return {
      name: 'garbagecollector',
      queue: this.newQueue(),
      keys: () => [GC_KEY],
      sync: () => {
        const resources = new Set([...this.opts.namespacedResources(), ...(this.opts.clusterResources?.() ?? [])]);
        const items: GcItem[] = [];
        const listed = new Set<string>();
        for (const resource of resources) {
          try {
            for (const object of this.client.list(resource).items) {
              items.push({ resource, object });
              if (object.apiVersion && object.kind) this.learnedKinds.set(`${object.apiVersion}/${object.kind}`, resource);
            }
            listed.add(resource);
          } catch {
            // Not served (any more): its objects cannot prove anything.
          }
        }
        const resourceFor = (apiVersion: string, kind: string): string | undefined =>
          this.opts.resourceFor?.(apiVersion, kind) ?? WELL_KNOWN[`${apiVersion}/${kind}`] ?? this.learnedKinds.get(`${apiVersion}/${kind}`);
        return { actions: reconcileGarbage({ items, listed, resourceFor }) };
      },
    };
  }

  private namespaceLoop(): Loop {
    return {
      name: 'namespace',
      queue: this.newQueue(),
      keys: () => this.list(R.namespaces).map(keyOf),
      sync: (name) => {
        const namespace = this.get(R.namespaces, undefined, name);
        if (!namespace) return { actions: [] };
        const now = this.now();
        if (!isTerminating(namespace)) {
          const input = { namespace, caPem: this.opts.caPem } as Parameters<typeof reconcileNamespace>[0];
          const sa = this.get(R.serviceAccounts, name, 'default');
          const cm = this.get(R.configMaps, name, ROOT_CA_CONFIGMAP);
          if (sa) input.serviceAccount = sa;
          if (cm) input.rootCA = cm;
          return { actions: reconcileNamespace(input, now) };
        }
        const contents = new Map<string, KObject[]>();
        for (const r of this.opts.namespacedResources()) {
          try {
            contents.set(r, this.client.list(r, { namespace: name }).items);
          } catch {
            // not listable: nothing we can delete
          }
        }
        const left = [...contents.values()].some((objs) => objs.length > 0);
        // Content on its way out (grace periods, finalizers) is checked again shortly.
        return { actions: reconcileNamespace({ namespace, caPem: this.opts.caPem, contents }, now), ...(left ? { wakeAt: now + 1000 } : {}) };
      },
    };
  }
}

/** Active pods of the ReplicaSets that share this ReplicaSet's controller (e.g. one Deployment). */
function relatedPods(rs: KObject, pods: KObject[], replicaSets: KObject[]): KObject[] {
  const owner = controllerOf(rs);
  const siblings = new Set(
    owner ? replicaSets.filter((x) => controllerOf(x)?.uid === owner.uid).map((x) => x.metadata.uid) : [rs.metadata.uid],
  );
  return pods.filter((p) => siblings.has(controllerOf(p)?.uid) && !p.metadata.deletionTimestamp);
}
