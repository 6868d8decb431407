/**
 * DaemonSet controller: one pod per eligible node (nodeSelector, required node affinity, taints
 * against the pod's tolerations plus the ones the controller adds), a ControllerRevision per
 * template with the controller-revision-hash label, RollingUpdate with maxUnavailable or maxSurge,
 * and the status `kubectl rollout status ds` reads.
 *
 * Placement: the real controller does not bind pods itself; it pins each pod to its node with
 * node affinity `metadata.name In [<node>]` and leaves binding to the scheduler, which then sets
 * spec.nodeName. Our test cluster may run without a scheduler, so by default (`bindPods`) we set
 * spec.nodeName as well: the object then looks exactly like a real daemon pod after scheduling.
 */
import type { KObject } from '../types.js';
import { type Action, R, create, del, update, updateStatus } from './actions.js';
import { claim } from './claim.js';
import { computeHash } from './hash.js';
import { scaledValue } from './intstr.js';
import { byCreation, clone, controllerOf, controllerRef, field, num, semanticEqual } from './meta.js';
import { availableAt, isPodAvailable, isPodReady, isPodTerminal, nodeNameOf, phaseOf } from './pods.js';
import { podFromTemplate } from './replicaset.js';
import { findUntoleratedTaint, podFitsNodeAffinity, selectorMatches, type LabelSelector, type Taint, type Toleration } from './selectors.js';

export const CONTROLLER_REVISION_HASH = 'controller-revision-hash';
export const POD_TEMPLATE_GENERATION = 'pod-template-generation';
export const TEMPLATE_GENERATION_ANNOTATION = 'deprecated.daemonset.template.generation';

export interface DaemonSetInput {
  ds: KObject;
  nodes: KObject[];
  /** pods of the namespace (any owner; the controller claims its own) */
  pods: KObject[];
  /**
   * ControllerRevisions of the namespace; undefined when the server does not serve them, in which
   * case the hash is computed the same way but no revision objects are kept.
   */
  revisions: KObject[] | undefined;
  /** also set spec.nodeName on new pods (see the header); default true */
  bindPods?: boolean;
}

type Obj = Record<string, unknown>;

/** The tolerations every daemon pod gets (util.AddOrUpdateDaemonPodTolerations). */
function daemonTolerations(hostNetwork: boolean): Toleration[] {
  const t: Toleration[] = [
    { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute' },
    { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute' },
    { key: 'node.kubernetes.io/disk-pressure', operator: 'Exists', effect: 'NoSchedule' },
    { key: 'node.kubernetes.io/memory-pressure', operator: 'Exists', effect: 'NoSchedule' },
    { key: 'node.kubernetes.io/pid-pressure', operator: 'Exists', effect: 'NoSchedule' },
    { key: 'node.kubernetes.io/unschedulable', operator: 'Exists', effect: 'NoSchedule' },
  ];
  if (hostNetwork) t.push({ key: 'node.kubernetes.io/network-unavailable', operator: 'Exists', effect: 'NoSchedule' });
  return t;
}

/** AddOrUpdateTolerationInPodSpec: replace a matching toleration, else append. */
function addToleration(list: Toleration[], t: Toleration): Toleration[] {
  const same = (a: Toleration) =>
    (a.key ?? '') === (t.key ?? '') && (a.effect ?? '') === (t.effect ?? '') && (a.operator ?? '') === (t.operator ?? '') && (a.value ?? '') === (t.value ?? '');
  if (list.some(same)) return list.map((a) => (same(a) ? t : a));
  return [...list, t];
}

function withDaemonTolerations(podSpec: Obj): Obj {
  const spec = clone(podSpec);
  let tols = (spec['tolerations'] as Toleration[] | undefined) ?? [];
  for (const t of daemonTolerations(spec['hostNetwork'] === true)) tols = addToleration(tols, t);
  spec['tolerations'] = tols;
  return spec;
}

/**
 * NodeShouldRunDaemonPod: whether a new daemon pod may be placed on the node, and whether an
 * existing one may keep running there (it may if it only violates NoSchedule taints).
 */
export function nodeShouldRunDaemonPod(node: KObject, ds: KObject): { shouldRun: boolean; shouldContinueRunning: boolean } {
  const templateSpec = (field<Obj>(ds, 'spec', 'template', 'spec') ?? {}) as Obj;
  const pinned = templateSpec['nodeName'] as string | undefined;
  if (pinned && pinned !== node.metadata.name) return { shouldRun: false, shouldContinueRunning: false };
  const spec = withDaemonTolerations(templateSpec);
  if (!podFitsNodeAffinity(spec, node)) return { shouldRun: false, shouldContinueRunning: false };
  const taints = field<Taint[]>(node, 'spec', 'taints') ?? [];
  const tolerations = spec['tolerations'] as Toleration[];
  const blocking = findUntoleratedTaint(taints, tolerations, (t) => t.effect === 'NoExecute' || t.effect === 'NoSchedule');
  if (!blocking) return { shouldRun: true, shouldContinueRunning: true };
  const evicting = findUntoleratedTaint(taints, tolerations, (t) => t.effect === 'NoExecute');
  return { shouldRun: false, shouldContinueRunning: !evicting };
}

/** The node a daemon pod is for: spec.nodeName, or the node its pinning affinity names. */
export function targetNodeName(pod: KObject): string | undefined {
  const n = nodeNameOf(pod);
  if (n) return n;
  const terms = field<{ matchFields?: { key: string; operator: string; values?: string[] }[] }[]>(
    pod, 'spec', 'affinity', 'nodeAffinity', 'requiredDuringSchedulingIgnoredDuringExecution', 'nodeSelectorTerms');
  for (const t of terms ?? []) {
    for (const f of t.matchFields ?? []) {
      if (f.key === 'metadata.name' && f.operator === 'In' && f.values?.length === 1) return f.values[0];
    }
  }
  return undefined;
}

/** The ControllerRevision payload: a patch replacing spec.template (getPatch). */
function revisionData(ds: KObject): Obj {
  return { spec: { template: { ...clone((field<Obj>(ds, 'spec', 'template') ?? {}) as Obj), $patch: 'replace' } } };
}

function templateGeneration(ds: KObject): string | undefined {
  const a = ds.metadata.annotations?.[TEMPLATE_GENERATION_ANNOTATION];
  if (a !== undefined) return a;
  return ds.metadata.generation !== undefined ? String(ds.metadata.generation) : undefined;
}

function isPodUpdated(pod: KObject, hash: string, generation: string | undefined): boolean {
  const labels = pod.metadata.labels ?? {};
  return (hash !== '' && labels[CONTROLLER_REVISION_HASH] === hash) || (generation !== undefined && labels[POD_TEMPLATE_GENERATION] === generation);
}

/** podByCreationTimestampAndPhase: scheduled first, then oldest, then by name. */
function byScheduledThenAge(a: KObject, b: KObject): number {
  const sa = nodeNameOf(a) !== '';
  const sb = nodeNameOf(b) !== '';
  if (sa !== sb) return sa ? -1 : 1;
  return byCreation(a, b);
}

class DaemonSetSync {
  readonly actions: Action[] = [];
  readonly owned: KObject[];
  readonly nodeToPods = new Map<string, KObject[]>();
  readonly nodesByName: Map<string, KObject>;
  readonly minReady: number;
  hash = '';
  readonly generation: string | undefined;

  constructor(
    readonly input: DaemonSetInput,
    readonly now: number,
  ) {
    const { ds } = input;
    const selector = field<LabelSelector>(ds, 'spec', 'selector');
    const c = claim(ds, 'apps/v1', 'DaemonSet', input.pods, (p) => selectorMatches(selector, p.metadata.labels));
    this.actions.push(...c.writes.map((w) => update(R.pods, w)));
    this.owned = c.owned;
    for (const p of this.owned) {
      if (isPodTerminal(p) && p.metadata.deletionTimestamp) continue;
      const n = targetNodeName(p);
      if (n === undefined) continue;
      this.nodeToPods.set(n, [...(this.nodeToPods.get(n) ?? []), p]);
    }
    this.nodesByName = new Map(input.nodes.map((n) => [n.metadata.name ?? '', n]));
    this.minReady = num(field(ds, 'spec', 'minReadySeconds'));
    this.generation = templateGeneration(ds);
  }

  get ds(): KObject {
    return this.input.ds;
  }

  available(pod: KObject): boolean {
    return isPodAvailable(pod, this.minReady, this.now);
  }

  /** constructHistory: find or create the current ControllerRevision; returns the old ones. */
  constructHistory(): KObject[] {
    const ds = this.ds;
    if (!this.input.revisions) {
      this.hash = computeHash(revisionData(ds), field<number>(ds, 'status', 'collisionCount'));
      return [];
    }
    const mine = this.input.revisions.filter((r) => r.metadata.ownerReferences?.some((o) => o.controller && o.uid === ds.metadata.uid));
    const data = revisionData(ds);
    const maxRevision = mine.reduce((m, r) => Math.max(m, num(r['revision'])), 0);
    const current = mine.filter((r) => semanticEqual(r['data'], data)).sort((a, b) => num(b['revision']) - num(a['revision']))[0];
    if (current) {
      this.hash = current.metadata.labels?.[CONTROLLER_REVISION_HASH] ?? computeHash(data, field<number>(ds, 'status', 'collisionCount'));
      if (num(current['revision']) < maxRevision) {
        // A rollback to an earlier template: that revision becomes the newest.
        this.actions.push(update(R.controllerRevisions, { ...clone(current), revision: maxRevision + 1 }));
      }
      return mine.filter((r) => r !== current);
    }
    this.hash = computeHash(data, field<number>(ds, 'status', 'collisionCount'));
    const labels = { ...(field<Record<string, string>>(ds, 'spec', 'template', 'metadata', 'labels') ?? {}), [CONTROLLER_REVISION_HASH]: this.hash };
    this.actions.push(
      create(R.controllerRevisions, {
        apiVersion: 'apps/v1',
        kind: 'ControllerRevision',
        metadata: {
          name: `${(ds.metadata.name ?? '').slice(0, 223)}-${this.hash}`,
          namespace: ds.metadata.namespace,
          labels,
          ownerReferences: [controllerRef(ds, 'apps/v1', 'DaemonSet')],
        },
        data,
        revision: maxRevision + 1,
      }),
    );
    return mine;
  }

  allowsSurge(): boolean {
    return this.rollingParams().surge > 0;
  }

  /** maxSurge / maxUnavailable against the number of nodes that should run a pod (both round up). */
  rollingParams(): { surge: number; unavailable: number; desired: number } {
    const desired = this.input.nodes.filter((n) => nodeShouldRunDaemonPod(n, this.ds).shouldRun).length;
    const strategy = (field<Obj>(this.ds, 'spec', 'updateStrategy') ?? {}) as Obj;
    if ((strategy['type'] ?? 'RollingUpdate') !== 'RollingUpdate') return { surge: 0, unavailable: 0, desired };
    const ru = (strategy['rollingUpdate'] ?? {}) as Obj;
    const surge = scaledValue(ru['maxSurge'] as number | string | undefined, desired, true, 0);
    let unavailable = scaledValue(ru['maxUnavailable'] as number | string | undefined, desired, true, 1);
    if (surge === 0 && unavailable === 0) unavailable = 1;
    return { surge, unavailable, desired };
  }

  /** manage(): create missing daemon pods, delete misplaced, failed and surplus ones. */
  manage(): Action[] {
    const create: string[] = [];
    const remove: KObject[] = [];
    const surge = this.allowsSurge();
    for (const node of this.input.nodes) {
      const r = this.podsShouldBeOnNode(node, surge);
      create.push(...r.create);
      remove.push(...r.remove);
    }
    // Pods for nodes that no longer exist (the real pod GC would remove bound ones).
    for (const [nodeName, pods] of this.nodeToPods) {
      if (this.nodesByName.has(nodeName)) continue;
      remove.push(...pods.filter((p) => !p.metadata.deletionTimestamp));
    }
    return this.syncNodes(remove, create);
  }

  private podsShouldBeOnNode(node: KObject, surge: boolean): { create: string[]; remove: KObject[] } {
    const { shouldRun, shouldContinueRunning } = nodeShouldRunDaemonPod(node, this.ds);
    const name = node.metadata.name ?? '';
    const pods = this.nodeToPods.get(name);
    const remove: KObject[] = [];
    if (shouldRun && !pods) return { create: [name], remove };
    if (shouldContinueRunning && pods) {
      const running: KObject[] = [];
      for (const p of pods) {
        if (p.metadata.deletionTimestamp) continue;
        // Failed and Succeeded daemon pods are replaced (the real one backs off on repeated failures).
        if (phaseOf(p) === 'Failed' || phaseOf(p) === 'Succeeded') remove.push(p);
        else running.push(p);
      }
      if (!surge) {
        if (running.length > 1) remove.push(...[...running].sort(byCreation).slice(1));
        return { create: [], remove };
      }
      // With surge, keep at most the oldest new pod and the oldest old pod.
      let oldestNew: KObject | undefined;
      let oldestOld: KObject | undefined;
      for (const p of [...running].sort(byScheduledThenAge)) {
        if (p.metadata.labels?.[CONTROLLER_REVISION_HASH] === this.hash) {
          if (!oldestNew) { oldestNew = p; continue; }
        } else if (!oldestOld) { oldestOld = p; continue; }
        remove.push(p);
      }
      if (oldestNew && oldestOld && (!isPodReady(oldestOld) || this.available(oldestNew))) remove.push(oldestOld);
      return { create: [], remove };
    }
    if (!shouldContinueRunning && pods) remove.push(...pods.filter((p) => !p.metadata.deletionTimestamp));
    return { create: [], remove };
  }

  syncNodes(remove: KObject[], createOn: string[]): Action[] {
    const out: Action[] = [];
    const seen = new Set<string>();
    for (const name of createOn) out.push(create(R.pods, this.newPod(name)));
    for (const p of remove) {
      const key = p.metadata.name ?? '';
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(del(R.pods, p));
    }
    return out;
  }

  /** A daemon pod for one node: template + tolerations + hash labels + pinning affinity. */
  newPod(nodeName: string): KObject {
    const tpl = clone((field<Obj>(this.ds, 'spec', 'template') ?? {}) as Obj);
    const meta = ((tpl['metadata'] ??= {}) as Obj);
    const labels: Record<string, string> = { ...((meta['labels'] as Record<string, string> | undefined) ?? {}) };
    if (this.generation !== undefined) labels[POD_TEMPLATE_GENERATION] = this.generation;
    if (this.hash) labels[CONTROLLER_REVISION_HASH] = this.hash;
    meta['labels'] = labels;
    const spec = withDaemonTolerations((tpl['spec'] ?? {}) as Obj);
    spec['affinity'] = pinToNode(spec['affinity'] as Obj | undefined, nodeName);
    if (this.input.bindPods !== false) spec['nodeName'] = nodeName;
    tpl['spec'] = spec;
    return podFromTemplate(this.ds, 'apps/v1', 'DaemonSet', tpl);
  }

  /** rollingUpdate(): replace out-of-date pods within maxUnavailable / maxSurge. */
  rollingUpdate(): Action[] {
    const { surge, unavailable, desired } = this.rollingParams();
    const nodes = [...this.nodeToPods.keys()].sort();
    if (surge === 0) {
      let numUnavailable = 0;
      const replace: KObject[] = [];
      const candidates: KObject[] = [];
      for (const n of nodes) {
        const r = this.updatedPodsOnNode(this.nodeToPods.get(n)!);
        if (!r) { numUnavailable++; continue; }
        const { newPod, oldPod } = r;
        if ((!oldPod && !newPod) || (oldPod && newPod)) numUnavailable++;
        else if (newPod) { if (!this.available(newPod)) numUnavailable++; }
        else if (oldPod && !this.available(oldPod)) { replace.push(oldPod); numUnavailable++; }
        else if (oldPod && numUnavailable < unavailable) candidates.push(oldPod);
      }
      const room = Math.min(Math.max(0, unavailable - numUnavailable), candidates.length);
      return this.syncNodes([...replace, ...candidates.slice(0, room)], []);
    }
    const remove: KObject[] = [];
    const shouldNotRun: KObject[] = [];
    const candidateNodes: string[] = [];
    const allowedNodes: string[] = [];
    let numSurge = 0;
    let numAvailable = 0;
    for (const n of nodes) {
      const r = this.updatedPodsOnNode(this.nodeToPods.get(n)!);
      if (!r) { numSurge++; continue; }
      const { newPod, oldPod } = r;
      if (oldPod ? this.available(oldPod) : newPod ? this.available(newPod) : false) numAvailable++;
      if (!oldPod) continue;
      const node = this.nodesByName.get(n);
      const runs = node ? nodeShouldRunDaemonPod(node, this.ds).shouldRun : false;
      if (!newPod) {
        if (!this.available(oldPod)) {
          if (!runs) remove.push(oldPod);
          else allowedNodes.push(n);
        } else if (!runs) shouldNotRun.push(oldPod);
        else if (numSurge < surge) candidateNodes.push(n);
        continue;
      }
      if (!this.available(newPod)) { numSurge++; continue; }
      remove.push(oldPod);
    }
    const deletable = Math.min(Math.max(0, numAvailable - desired), shouldNotRun.length);
    remove.push(...shouldNotRun.slice(0, deletable));
    const room = Math.min(Math.max(0, surge - numSurge), candidateNodes.length);
    return this.syncNodes(remove, [...allowedNodes, ...candidateNodes.slice(0, room)]);
  }

  /** findUpdatedPodsOnNode: at most one new and one old live pod, else undefined. */
  private updatedPodsOnNode(pods: KObject[]): { newPod?: KObject; oldPod?: KObject } | undefined {
    let newPod: KObject | undefined;
    let oldPod: KObject | undefined;
    for (const p of pods) {
      if (p.metadata.deletionTimestamp) continue;
      if (isPodUpdated(p, this.hash, this.generation)) {
        if (newPod) return undefined;
        newPod = p;
      } else {
        if (oldPod) return undefined;
        oldPod = p;
      }
    }
    return { ...(newPod ? { newPod } : {}), ...(oldPod ? { oldPod } : {}) };
  }

  /** cleanupHistory: drop the oldest revisions beyond revisionHistoryLimit that no pod uses. */
  cleanupHistory(old: KObject[]): Action[] {
    let toKill = old.length - num(field(this.ds, 'spec', 'revisionHistoryLimit'), 10);
    if (toKill <= 0) return [];
    const live = new Set(this.owned.map((p) => p.metadata.labels?.[CONTROLLER_REVISION_HASH]).filter(Boolean));
    const out: Action[] = [];
    for (const r of [...old].sort((a, b) => num(a['revision']) - num(b['revision']))) {
      if (toKill <= 0) break;
      if (live.has(r.metadata.labels?.[CONTROLLER_REVISION_HASH])) continue;
      out.push(del(R.controllerRevisions, r));
      toKill--;
    }
    return out;
  }

  status(): Obj {
    let desired = 0, current = 0, misscheduled = 0, ready = 0, updated = 0, available = 0;
    for (const node of this.input.nodes) {
      const { shouldRun } = nodeShouldRunDaemonPod(node, this.ds);
      const pods = this.nodeToPods.get(node.metadata.name ?? '') ?? [];
      if (!shouldRun) {
        if (pods.length) misscheduled++;
        continue;
      }
      desired++;
      if (!pods.length) continue;
      current++;
      const pod = [...pods].sort(byScheduledThenAge)[0]!;
      if (isPodReady(pod)) {
        ready++;
        if (this.available(pod)) available++;
      }
      if (isPodUpdated(pod, this.hash, this.generation)) updated++;
    }
    const old = (this.ds['status'] ?? {}) as Obj;
    const status: Obj = { ...old };
    // The first four are always serialised; the rest are omitempty.
    status['currentNumberScheduled'] = current;
    status['numberMisscheduled'] = misscheduled;
    status['desiredNumberScheduled'] = desired;
    status['numberReady'] = ready;
    setOrDrop(status, 'observedGeneration', this.ds.metadata.generation ?? num(old['observedGeneration']));
    setOrDrop(status, 'updatedNumberScheduled', updated);
    setOrDrop(status, 'numberAvailable', available);
    setOrDrop(status, 'numberUnavailable', desired - available);
    return status;
  }
}

function setOrDrop(o: Obj, k: string, v: number): void {
  if (v) o[k] = v;
  else delete o[k];
}

/** ReplaceDaemonSetPodNodeNameNodeAffinity: the required terms become `metadata.name In [node]`. */
export function pinToNode(affinity: Obj | undefined, nodeName: string): Obj {
  const required = { nodeSelectorTerms: [{ matchFields: [{ key: 'metadata.name', operator: 'In', values: [nodeName] }] }] };
  const a = clone(affinity ?? {});
  const na = ((a['nodeAffinity'] ??= {}) as Obj);
  na['requiredDuringSchedulingIgnoredDuringExecution'] = required;
  return a;
}

export function reconcileDaemonSet(input: DaemonSetInput, now: number): Action[] {
  if (input.ds.metadata.deletionTimestamp) return [];
  const s = new DaemonSetSync(input, now);
  const old = s.constructHistory();
  const managed = s.manage();
  const actions = [...s.actions, ...managed];
  // The real controller only rolls once its own creations and deletions have been observed.
  const strategy = field<string>(input.ds, 'spec', 'updateStrategy', 'type') ?? 'RollingUpdate';
  if (managed.length === 0 && strategy === 'RollingUpdate') actions.push(...s.rollingUpdate());
  actions.push(...s.cleanupHistory(old));
  const status = s.status();
  if (!semanticEqual(status, input.ds['status'] ?? {})) actions.push(updateStatus(R.daemonSets, { ...clone(input.ds), status }));
  return actions;
}

/** When a ready daemon pod passes minReadySeconds (ms). */
export function daemonSetWakeup(input: DaemonSetInput, now: number): number | undefined {
  const minReady = num(field(input.ds, 'spec', 'minReadySeconds'));
  let next: number | undefined;
  for (const p of input.pods) {
    if (controllerOf(p)?.uid !== input.ds.metadata.uid) continue;
    const at = availableAt(p, minReady);
    if (at !== undefined && at > now && (next === undefined || at < next)) next = at;
  }
  return next;
}
