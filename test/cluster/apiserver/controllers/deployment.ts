/**
 * Deployment controller: one ReplicaSet per pod template (named "<deployment>-<pod-template-hash>"),
 * rolled with RollingUpdate (maxSurge / maxUnavailable) or Recreate, proportional scaling of all
 * ReplicaSets when spec.replicas changes mid-rollout, revision history cleanup, and the status and
 * conditions `kubectl rollout status` reads. The steps and their order follow the real controller's
 * sync loop (syncDeployment → rolloutRolling / rolloutRecreate / sync → syncRolloutStatus), so one
 * call here produces the writes one real sync would make.
 */
import type { KObject } from '../types.js';
import { type Action, R, create, del, update, updateStatus } from './actions.js';
import { claim } from './claim.js';
import { computeHash } from './hash.js';
import { scaledValue } from './intstr.js';
import { byCreation, clone, controllerOf, controllerRef, field, getCondition, num, rfc3339, semanticEqual, timeMs, type Condition } from './meta.js';
import { selectorMatches, type LabelSelector } from './selectors.js';

export const REVISION = 'deployment.kubernetes.io/revision';
export const REVISION_HISTORY = 'deployment.kubernetes.io/revision-history';
export const DESIRED_REPLICAS = 'deployment.kubernetes.io/desired-replicas';
export const MAX_REPLICAS = 'deployment.kubernetes.io/max-replicas';
export const POD_TEMPLATE_HASH = 'pod-template-hash';

/** Condition reasons (deploymentutil). */
export const Reason = {
  NewReplicaSetCreated: 'NewReplicaSetCreated',
  FoundNewReplicaSet: 'FoundNewReplicaSet',
  ReplicaSetUpdated: 'ReplicaSetUpdated',
  NewReplicaSetAvailable: 'NewReplicaSetAvailable',
  ProgressDeadlineExceeded: 'ProgressDeadlineExceeded',
  MinimumReplicasAvailable: 'MinimumReplicasAvailable',
  MinimumReplicasUnavailable: 'MinimumReplicasUnavailable',
  DeploymentPaused: 'DeploymentPaused',
  DeploymentResumed: 'DeploymentResumed',
} as const;

const MAX_INT32 = 2147483647;
const MAX_REV_HISTORY_CHARS = 2000;
/** Annotations of the Deployment that are not copied onto its ReplicaSets. */
const SKIP_COPY = new Set([
  'kubectl.kubernetes.io/last-applied-configuration',
  REVISION,
  REVISION_HISTORY,
  DESIRED_REPLICAS,
  MAX_REPLICAS,
  'deprecated.deployment.rollback.to',
]);

export interface DeploymentInput {
  deployment: KObject;
  /** ReplicaSets of the namespace (any owner; the controller claims its own) */
  replicaSets: KObject[];
  /** pods of the namespace; Recreate waits until the old ones are gone */
  pods: KObject[];
}

type Obj = Record<string, unknown>;

const specReplicas = (o: KObject): number => num(field(o, 'spec', 'replicas'), 1);
const statusNum = (o: KObject, f: string): number => num(field(o, 'status', f));
const rsReplicas = (rs: KObject): number => num(field(rs, 'spec', 'replicas'), 1);
const sum = (rss: KObject[], f: (rs: KObject) => number): number => rss.reduce((n, rs) => n + f(rs), 0);
const active = (rss: KObject[]): KObject[] => rss.filter((rs) => rsReplicas(rs) > 0);

function revisionOf(rs: KObject): number {
  const v = rs.metadata.annotations?.[REVISION];
  const n = v === undefined ? 0 : Number.parseInt(v, 10);
  return Number.isNaN(n) ? 0 : n;
}

function strategy(d: KObject): { type: string; maxSurge?: number | string; maxUnavailable?: number | string } {
  const s = (field<Obj>(d, 'spec', 'strategy') ?? {}) as Obj;
  const ru = (s['rollingUpdate'] ?? {}) as Obj;
  return {
    type: (s['type'] as string | undefined) ?? 'RollingUpdate',
    maxSurge: ru['maxSurge'] as number | string | undefined,
    maxUnavailable: ru['maxUnavailable'] as number | string | undefined,
  };
}

/** deploymentutil.ResolveFenceposts: surge rounds up, unavailable rounds down, never both 0. */
export function resolveFenceposts(
  maxSurge: number | string | undefined,
  maxUnavailable: number | string | undefined,
  desired: number,
): { surge: number; unavailable: number } {
  const surge = scaledValue(maxSurge, desired, true, '25%');
  let unavailable = scaledValue(maxUnavailable, desired, false, '25%');
  if (surge === 0 && unavailable === 0) unavailable = 1;
  return { surge, unavailable };
}

export function maxSurge(d: KObject): number {
  const s = strategy(d);
  if (s.type !== 'RollingUpdate') return 0;
  return resolveFenceposts(s.maxSurge, s.maxUnavailable, specReplicas(d)).surge;
}

export function maxUnavailable(d: KObject): number {
  const s = strategy(d);
  const replicas = specReplicas(d);
  if (s.type !== 'RollingUpdate' || replicas === 0) return 0;
  return Math.min(resolveFenceposts(s.maxSurge, s.maxUnavailable, replicas).unavailable, replicas);
}

function progressDeadline(d: KObject): number | undefined {
  const v = field<number>(d, 'spec', 'progressDeadlineSeconds');
  const secs = v === undefined ? 600 : v;
  return secs === MAX_INT32 ? undefined : secs;
}

/** The pod template without the pod-template-hash label, for EqualIgnoreHash. */
function templateIgnoringHash(tpl: unknown): unknown {
  const t = clone((tpl ?? {}) as Obj);
  const labels = (t['metadata'] as Obj | undefined)?.['labels'] as Record<string, string> | undefined;
  if (labels) delete labels[POD_TEMPLATE_HASH];
  return t;
}

export function equalIgnoreHash(a: unknown, b: unknown): boolean {
  return semanticEqual(templateIgnoringHash(a), templateIgnoringHash(b));
}

function newCondition(type: string, status: Condition['status'], reason: string, message: string, now: number): Condition {
  return { type, status, lastUpdateTime: rfc3339(now), lastTransitionTime: rfc3339(now), reason, message };
}

/** deploymentutil.SetDeploymentCondition: same status and reason is a no-op; same status keeps the transition time. */
function setCondition(status: Obj, cond: Condition): void {
  const conds = (status['conditions'] as Condition[] | undefined) ?? [];
  const cur = getCondition(conds, cond.type);
  if (cur && cur.status === cond.status && cur.reason === cond.reason) return;
  const c = { ...cond };
  if (cur && cur.status === cond.status) c.lastTransitionTime = cur.lastTransitionTime;
  status['conditions'] = [...conds.filter((x) => x.type !== cond.type), c];
}

function removeCondition(status: Obj, type: string): void {
  const conds = (status['conditions'] as Condition[] | undefined) ?? [];
  status['conditions'] = conds.filter((c) => c.type !== type);
}

const bySizeOlder = (a: KObject, b: KObject): number => rsReplicas(b) - rsReplicas(a) || byCreation(a, b);
const bySizeNewer = (a: KObject, b: KObject): number => rsReplicas(b) - rsReplicas(a) || byCreation(b, a);
const byRevision = (a: KObject, b: KObject): number => revisionOf(a) - revisionOf(b) || byCreation(a, b);

/** One sync of one Deployment, with the ReplicaSets as working copies. */
class DeploymentSync {
  readonly d: KObject;
  /** owned ReplicaSets (working copies) */
  rsList: KObject[];
  readonly changed = new Set<KObject>();
  created: KObject | undefined;
  readonly deleted: KObject[] = [];
  readonly pre: Action[] = [];
  /** the sync stopped on a name collision; only the status (collisionCount) is written */
  collided = false;
  /** every ReplicaSet of the namespace, to detect a name collision */
  readonly allInNamespace: KObject[];

  constructor(
    input: DeploymentInput,
    readonly now: number,
  ) {
    this.d = clone(input.deployment);
    if (!this.d['status']) this.d['status'] = {};
    const selector = field<LabelSelector>(this.d, 'spec', 'selector');
    const c = claim(this.d, 'apps/v1', 'Deployment', input.replicaSets, (rs) => selectorMatches(selector, rs.metadata.labels));
    this.pre.push(...c.writes.map((w) => update(R.replicaSets, w)));
    this.rsList = c.owned.map(clone);
    this.allInNamespace = input.replicaSets;
  }

  get status(): Obj {
    return this.d['status'] as Obj;
  }

  get replicas(): number {
    return specReplicas(this.d);
  }

  /** FindNewReplicaSet / FindOldReplicaSets. */
  split(): { newRS: KObject | undefined; oldRSs: KObject[] } {
    const sorted = [...this.rsList].sort(byCreation);
    const tpl = field(this.d, 'spec', 'template');
    const newRS = sorted.find((rs) => equalIgnoreHash(field(rs, 'spec', 'template'), tpl));
    return { newRS, oldRSs: sorted.filter((rs) => rs !== newRS) };
  }

  /** getAllReplicaSetsAndSyncRevision. */
  allAndSyncRevision(createIfMissing: boolean): { newRS: KObject | undefined; oldRSs: KObject[] } {
    const { newRS, oldRSs } = this.split();
    return { newRS: this.getNewReplicaSet(newRS, oldRSs, createIfMissing), oldRSs };
  }

  private getNewReplicaSet(existing: KObject | undefined, oldRSs: KObject[], createIfMissing: boolean): KObject | undefined {
    const maxOld = oldRSs.reduce((m, rs) => Math.max(m, revisionOf(rs)), 0);
    const newRevision = String(maxOld + 1);
    const deadline = progressDeadline(this.d) !== undefined;
    if (existing) {
      const annotationsUpdated = this.setNewReplicaSetAnnotations(existing, newRevision, true);
      const minReady = num(field(this.d, 'spec', 'minReadySeconds'));
      if (annotationsUpdated || num(field(existing, 'spec', 'minReadySeconds')) !== minReady) {
        (existing['spec'] as Obj)['minReadySeconds'] = minReady;
        this.markChanged(existing);
        return existing;
      }
      this.setDeploymentRevision(existing.metadata.annotations?.[REVISION] ?? '');
      if (deadline && !getCondition(this.status['conditions'] as Condition[] | undefined, 'Progressing')) {
        setCondition(this.status, newCondition('Progressing', 'True', Reason.FoundNewReplicaSet, `Found new replica set "${existing.metadata.name}"`, this.now));
      }
      return existing;
    }
    if (!createIfMissing) return undefined;

    const collisionCount = field<number>(this.d, 'status', 'collisionCount');
    const hash = computeHash(field(this.d, 'spec', 'template'), collisionCount);
    const template = clone((field<Obj>(this.d, 'spec', 'template') ?? {}) as Obj);
    const tmeta = ((template['metadata'] ??= {}) as Obj);
    tmeta['labels'] = { ...((tmeta['labels'] as Record<string, string> | undefined) ?? {}), [POD_TEMPLATE_HASH]: hash };
    const selector = clone(field<LabelSelector>(this.d, 'spec', 'selector') ?? {});
    selector.matchLabels = { ...(selector.matchLabels ?? {}), [POD_TEMPLATE_HASH]: hash };
    const name = `${this.d.metadata.name}-${hash}`;

    const clash = this.allInNamespace.find((rs) => rs.metadata.name === name);
    if (clash) {
      // The name is taken by a ReplicaSet that is not ours or has another template: bump
      // collisionCount so the next sync computes a different hash.
      this.status['collisionCount'] = (collisionCount ?? 0) + 1;
      this.collided = true;
      return undefined;
    }

    const rs: KObject = {
      apiVersion: 'apps/v1',
      kind: 'ReplicaSet',
      metadata: {
        name,
        namespace: this.d.metadata.namespace,
        ownerReferences: [controllerRef(this.d, 'apps/v1', 'Deployment')],
        labels: tmeta['labels'] as Record<string, string>,
      },
      spec: { replicas: 0, minReadySeconds: num(field(this.d, 'spec', 'minReadySeconds')), selector, template },
    };
    (rs['spec'] as Obj)['replicas'] = this.newRSNewReplicas([...oldRSs, rs], rs);
    this.setNewReplicaSetAnnotations(rs, newRevision, false);
    this.created = rs;
    this.rsList.push(rs);
    this.setDeploymentRevision(newRevision);
    if (deadline) {
      setCondition(this.status, newCondition('Progressing', 'True', Reason.NewReplicaSetCreated, `Created new replica set "${name}"`, this.now));
    }
    return rs;
  }

  /** deploymentutil.SetNewReplicaSetAnnotations. */
  private setNewReplicaSetAnnotations(rs: KObject, newRevision: string, exists: boolean): boolean {
    const ann = (rs.metadata.annotations ??= {});
    let changed = false;
    for (const [k, v] of Object.entries(this.d.metadata.annotations ?? {})) {
      if (SKIP_COPY.has(k) || ann[k] === v) continue;
      ann[k] = v;
      changed = true;
    }
    const oldRevision = ann[REVISION];
    const oldInt = oldRevision === undefined || oldRevision === '' ? 0 : Number.parseInt(oldRevision, 10);
    if (Number.isNaN(oldInt)) return false;
    const newInt = Number.parseInt(newRevision, 10);
    if (oldInt < newInt) {
      ann[REVISION] = newRevision;
      changed = true;
      if (oldRevision !== undefined) {
        // A rollback to this ReplicaSet: keep the revisions it had before.
        const history = ann[REVISION_HISTORY] ?? '';
        if (!history) ann[REVISION_HISTORY] = oldRevision;
        else {
          const parts = history.split(',');
          let total = history.length + oldRevision.length + 1;
          let start = 0;
          while (total > MAX_REV_HISTORY_CHARS && start < parts.length) total -= parts[start++]!.length + 1;
          if (total <= MAX_REV_HISTORY_CHARS) ann[REVISION_HISTORY] = [...parts.slice(start), oldRevision].join(',');
        }
      }
    }
    if (!exists && this.setReplicasAnnotations(rs)) changed = true;
    return changed;
  }

  private replicasAnnotationsNeedUpdate(rs: KObject): boolean {
    const ann = rs.metadata.annotations ?? {};
    return ann[DESIRED_REPLICAS] !== String(this.replicas) || ann[MAX_REPLICAS] !== String(this.replicas + maxSurge(this.d));
  }

  private setReplicasAnnotations(rs: KObject): boolean {
    if (!this.replicasAnnotationsNeedUpdate(rs)) return false;
    const ann = (rs.metadata.annotations ??= {});
    ann[DESIRED_REPLICAS] = String(this.replicas);
    ann[MAX_REPLICAS] = String(this.replicas + maxSurge(this.d));
    return true;
  }

  private setDeploymentRevision(revision: string): void {
    const ann = (this.d.metadata.annotations ??= {});
    if (ann[REVISION] !== revision) ann[REVISION] = revision;
  }

  private markChanged(rs: KObject): void {
    if (rs !== this.created) this.changed.add(rs);
  }

  /** deploymentutil.NewRSNewReplicas. */
  newRSNewReplicas(allRSs: KObject[], newRS: KObject): number {
    const s = strategy(this.d);
    if (s.type !== 'RollingUpdate') return this.replicas;
    const surge = scaledValue(s.maxSurge, this.replicas, true, '25%');
    const current = sum(allRSs, rsReplicas);
    const maxTotal = this.replicas + surge;
    if (current >= maxTotal) return rsReplicas(newRS);
    const up = Math.min(maxTotal - current, this.replicas - rsReplicas(newRS));
    return rsReplicas(newRS) + up;
  }

  /** scaleReplicaSet: returns whether the size changed. */
  scale(rs: KObject, newScale: number): boolean {
    const sizeChanged = rsReplicas(rs) !== newScale;
    if (sizeChanged || this.replicasAnnotationsNeedUpdate(rs)) {
      (rs['spec'] as Obj)['replicas'] = newScale;
      this.setReplicasAnnotations(rs);
      this.markChanged(rs);
    }
    return sizeChanged;
  }

  /** cleanupDeployment: delete the oldest unused ReplicaSets beyond revisionHistoryLimit. */
  cleanup(oldRSs: KObject[]): void {
    const limit = field<number>(this.d, 'spec', 'revisionHistoryLimit') ?? 10;
    if (limit === MAX_INT32) return;
    const cleanable = oldRSs.filter((rs) => !rs.metadata.deletionTimestamp);
    const diff = cleanable.length - limit;
    if (diff <= 0) return;
    for (const rs of [...cleanable].sort(byRevision).slice(0, diff)) {
      if (statusNum(rs, 'replicas') !== 0 || rsReplicas(rs) !== 0) continue;
      if (num(rs.metadata.generation) > statusNum(rs, 'observedGeneration')) continue;
      this.deleted.push(rs);
    }
  }

  /** calculateStatus. */
  calculateStatus(allRSs: KObject[], newRS: KObject | undefined): Obj {
    const available = sum(allRSs, (rs) => statusNum(rs, 'availableReplicas'));
    const total = sum(allRSs, rsReplicas);
    const status: Obj = {
      observedGeneration: this.d.metadata.generation,
      replicas: sum(allRSs, (rs) => statusNum(rs, 'replicas')),
      updatedReplicas: newRS ? statusNum(newRS, 'replicas') : 0,
      readyReplicas: sum(allRSs, (rs) => statusNum(rs, 'readyReplicas')),
      availableReplicas: available,
      unavailableReplicas: Math.max(0, total - available),
      collisionCount: this.status['collisionCount'],
      conditions: [...((this.status['conditions'] as Condition[] | undefined) ?? [])],
    };
    if (available >= this.replicas - maxUnavailable(this.d)) {
      setCondition(status, newCondition('Available', 'True', Reason.MinimumReplicasAvailable, 'Deployment has minimum availability.', this.now));
    } else {
      setCondition(status, newCondition('Available', 'False', Reason.MinimumReplicasUnavailable, 'Deployment does not have minimum availability.', this.now));
    }
    return status;
  }

  complete(status: Obj): boolean {
    return (
      num(status['updatedReplicas']) === this.replicas &&
      num(status['replicas']) === this.replicas &&
      num(status['availableReplicas']) === this.replicas &&
      num(status['observedGeneration']) >= num(this.d.metadata.generation)
    );
  }

  /** syncRolloutStatus: the status with the Progressing condition advanced. */
  rolloutStatus(allRSs: KObject[], newRS: KObject | undefined): Obj {
    const next = this.calculateStatus(allRSs, newRS);
    const deadline = progressDeadline(this.d);
    if (deadline === undefined) removeCondition(next, 'Progressing');
    const cur = getCondition(this.status['conditions'] as Condition[] | undefined, 'Progressing');
    const isComplete = num(next['replicas']) === num(next['updatedReplicas']) && cur?.reason === Reason.NewReplicaSetAvailable;
    if (deadline !== undefined && !isComplete) {
      const rsName = newRS?.metadata.name ?? '';
      if (this.complete(next)) {
        setCondition(next, newCondition('Progressing', 'True', Reason.NewReplicaSetAvailable, `ReplicaSet "${rsName}" has successfully progressed.`, this.now));
      } else if (this.progressing(next)) {
        const c = newCondition('Progressing', 'True', Reason.ReplicaSetUpdated, `ReplicaSet "${rsName}" is progressing.`, this.now);
        // Progress refreshes lastUpdateTime even when the reason stays the same.
        if (cur) {
          if (cur.status === 'True') c.lastTransitionTime = cur.lastTransitionTime;
          removeCondition(next, 'Progressing');
        }
        setCondition(next, c);
      } else if (this.timedOut(cur, deadline)) {
        setCondition(next, newCondition('Progressing', 'False', Reason.ProgressDeadlineExceeded, `ReplicaSet "${rsName}" has timed out progressing.`, this.now));
      }
    }
    this.copyReplicaFailures(next, allRSs, newRS);
    return next;
  }

  private progressing(next: Obj): boolean {
    const old = this.status;
    const oldOld = num(old['replicas']) - num(old['updatedReplicas']);
    const newOld = num(next['replicas']) - num(next['updatedReplicas']);
    return (
      num(next['updatedReplicas']) > num(old['updatedReplicas']) ||
      newOld < oldOld ||
      num(next['readyReplicas']) > num(old['readyReplicas']) ||
      num(next['availableReplicas']) > num(old['availableReplicas'])
    );
  }

  private timedOut(cur: Condition | undefined, deadline: number): boolean {
    if (!cur || cur.reason === Reason.NewReplicaSetAvailable) return false;
    if (cur.reason === Reason.ProgressDeadlineExceeded) return true;
    return timeMs(cur.lastUpdateTime) + deadline * 1000 < this.now;
  }

  private copyReplicaFailures(next: Obj, allRSs: KObject[], newRS: KObject | undefined): void {
    const failures = (rss: KObject[]) =>
      rss.flatMap((rs) => (field<Condition[]>(rs, 'status', 'conditions') ?? []).filter((c) => c.type === 'ReplicaFailure'));
    let found = newRS ? failures([newRS]) : [];
    if (!found.length) found = failures(allRSs);
    const first = found[0];
    if (first) {
      setCondition(next, {
        type: 'ReplicaFailure',
        status: first.status,
        lastUpdateTime: first.lastTransitionTime,
        lastTransitionTime: first.lastTransitionTime,
        reason: first.reason,
        message: first.message,
      });
    } else removeCondition(next, 'ReplicaFailure');
  }

  /** checkPausedConditions. */
  checkPaused(): void {
    if (progressDeadline(this.d) === undefined) return;
    const cur = getCondition(this.status['conditions'] as Condition[] | undefined, 'Progressing');
    if (cur?.reason === Reason.ProgressDeadlineExceeded) return;
    const paused = field<boolean>(this.d, 'spec', 'paused') === true;
    const pausedCond = cur?.reason === Reason.DeploymentPaused;
    if (paused && !pausedCond) {
      setCondition(this.status, newCondition('Progressing', 'Unknown', Reason.DeploymentPaused, 'Deployment is paused', this.now));
    } else if (!paused && pausedCond) {
      setCondition(this.status, newCondition('Progressing', 'Unknown', Reason.DeploymentResumed, 'Deployment is resumed', this.now));
    }
  }

  /** isScalingEvent: an active ReplicaSet was sized for a different spec.replicas. */
  isScalingEvent(): boolean {
    const { newRS, oldRSs } = this.allAndSyncRevision(false);
    return active([...oldRSs, ...(newRS ? [newRS] : [])]).some((rs) => {
      const v = rs.metadata.annotations?.[DESIRED_REPLICAS];
      if (v === undefined) return false;
      const n = Number.parseInt(v, 10);
      return !Number.isNaN(n) && n !== this.replicas;
    });
  }

  /** scale(): proportional scaling of all active ReplicaSets. */
  scaleAll(newRS: KObject | undefined, oldRSs: KObject[]): void {
    const activeOrLatest = findActiveOrLatest(newRS, oldRSs);
    if (activeOrLatest) {
      if (rsReplicas(activeOrLatest) !== this.replicas) this.scale(activeOrLatest, this.replicas);
      return;
    }
    if (newRS && isSaturated(this.d, newRS)) {
      for (const old of active(oldRSs)) this.scale(old, 0);
      return;
    }
    if (strategy(this.d).type !== 'RollingUpdate') return;
    const all = active([...oldRSs, ...(newRS ? [newRS] : [])]);
    const allowed = this.replicas > 0 ? this.replicas + maxSurge(this.d) : 0;
    const toAdd = allowed - sum(all, rsReplicas);
    if (toAdd > 0) all.sort(bySizeNewer);
    else if (toAdd < 0) all.sort(bySizeOlder);
    let added = 0;
    const size = new Map<KObject, number>();
    for (const rs of all) {
      if (toAdd !== 0) {
        const p = this.proportion(rs, toAdd, added);
        size.set(rs, rsReplicas(rs) + p);
        added += p;
      } else size.set(rs, rsReplicas(rs));
    }
    all.forEach((rs, i) => {
      if (i === 0 && toAdd !== 0) size.set(rs, Math.max(0, size.get(rs)! + toAdd - added));
      this.scale(rs, size.get(rs)!);
    });
  }

  /** GetReplicaSetProportion. */
  private proportion(rs: KObject, toAdd: number, added: number): number {
    if (rsReplicas(rs) === 0 || toAdd === 0 || toAdd === added) return 0;
    const fraction = this.fraction(rs);
    const allowed = toAdd - added;
    return toAdd > 0 ? Math.min(fraction, allowed) : Math.max(fraction, allowed);
  }

  private fraction(rs: KObject): number {
    if (this.replicas === 0) return -rsReplicas(rs);
    const maxNow = this.replicas + maxSurge(this.d);
    const annotated = Number.parseInt(rs.metadata.annotations?.[MAX_REPLICAS] ?? '', 10);
    const before = Number.isNaN(annotated) || annotated === 0 ? statusNum(this.d, 'replicas') : annotated;
    // Go's math.Round: halves away from zero.
    const x = (rsReplicas(rs) * maxNow) / before;
    const rounded = Math.sign(x) * Math.round(Math.abs(x));
    return rounded - rsReplicas(rs);
  }
}

function findActiveOrLatest(newRS: KObject | undefined, oldRSs: KObject[]): KObject | undefined {
  if (!newRS && oldRSs.length === 0) return undefined;
  const newestFirst = [...oldRSs].sort((a, b) => byCreation(b, a));
  const all = active([...newestFirst, ...(newRS ? [newRS] : [])]);
  if (all.length === 0) return newRS ?? newestFirst[0];
  return all.length === 1 ? all[0] : undefined;
}

function isSaturated(d: KObject, rs: KObject): boolean {
  const desired = Number.parseInt(rs.metadata.annotations?.[DESIRED_REPLICAS] ?? '', 10);
  if (Number.isNaN(desired)) return false;
  const replicas = specReplicas(d);
  return rsReplicas(rs) === replicas && desired === replicas && statusNum(rs, 'availableReplicas') === replicas;
}

/** oldPodsRunning: Recreate waits until no pod of an old ReplicaSet is left running. */
function oldPodsRunning(newRS: KObject | undefined, oldRSs: KObject[], rsList: KObject[], pods: KObject[]): boolean {
  if (sum(oldRSs, (rs) => statusNum(rs, 'replicas')) > 0) return true;
  const uids = new Set(rsList.map((rs) => rs.metadata.uid).filter((u) => u && u !== newRS?.metadata.uid));
  return pods.some((p) => {
    if (!uids.has(controllerOf(p)?.uid)) return false;
    const phase = field<string>(p, 'status', 'phase');
    return phase !== 'Failed' && phase !== 'Succeeded';
  });
}

export function reconcileDeployment(input: DeploymentInput, now: number): Action[] {
  const original = input.deployment;
  const sel = field<LabelSelector>(original, 'spec', 'selector');
  if (sel && Object.keys(sel.matchLabels ?? {}).length === 0 && (sel.matchExpressions ?? []).length === 0) {
    // An empty selector would select every pod: the real controller refuses to act.
    const gen = original.metadata.generation;
    if (gen !== undefined && num(field(original, 'status', 'observedGeneration')) < gen) {
      return [updateStatus(R.deployments, { ...clone(original), status: { ...((original['status'] as Obj) ?? {}), observedGeneration: gen } })];
    }
    return [];
  }

  const s = new DeploymentSync(input, now);
  let status: Obj;
  if (original.metadata.deletionTimestamp) {
    const { newRS, oldRSs } = s.allAndSyncRevision(false);
    status = s.calculateStatus(withNew(oldRSs, newRS), newRS);
  } else {
    s.checkPaused();
    if (field<boolean>(s.d, 'spec', 'paused') === true || s.isScalingEvent()) status = syncScale(s);
    else if (strategy(s.d).type === 'Recreate') status = rolloutRecreate(s, input.pods);
    else status = rolloutRolling(s);
  }
  if (s.collided) status = { ...((original['status'] as Obj) ?? {}), collisionCount: s.status['collisionCount'] };
  return emit(s, original, status);
}

const withNew = (oldRSs: KObject[], newRS: KObject | undefined): KObject[] => (newRS ? [...oldRSs, newRS] : oldRSs);

/** sync(): scaling event or paused Deployment. */
function syncScale(s: DeploymentSync): Obj {
  const { newRS, oldRSs } = s.allAndSyncRevision(false);
  if (s.collided) return {};
  s.scaleAll(newRS, oldRSs);
  if (field<boolean>(s.d, 'spec', 'paused') === true) s.cleanup(oldRSs);
  return s.calculateStatus(withNew(oldRSs, newRS), newRS);
}

function rolloutRolling(s: DeploymentSync): Obj {
  const { newRS, oldRSs } = s.allAndSyncRevision(true);
  if (!newRS) return {};
  const all = withNew(oldRSs, newRS);
  if (reconcileNewReplicaSet(s, all, newRS)) return s.rolloutStatus(all, newRS);
  if (reconcileOldReplicaSets(s, all, active(oldRSs), newRS)) return s.rolloutStatus(all, newRS);
  if (s.complete(s.status)) s.cleanup(oldRSs);
  return s.rolloutStatus(all, newRS);
}

function reconcileNewReplicaSet(s: DeploymentSync, all: KObject[], newRS: KObject): boolean {
  const cur = rsReplicas(newRS);
  if (cur === s.replicas) return false;
  if (cur > s.replicas) return s.scale(newRS, s.replicas);
  return s.scale(newRS, s.newRSNewReplicas(all, newRS));
}

function reconcileOldReplicaSets(s: DeploymentSync, all: KObject[], oldRSs: KObject[], newRS: KObject): boolean {
  const oldPods = sum(oldRSs, rsReplicas);
  if (oldPods === 0) return false;
  const minAvailable = s.replicas - maxUnavailable(s.d);
  const newUnavailable = rsReplicas(newRS) - statusNum(newRS, 'availableReplicas');
  const maxScaledDown = sum(all, rsReplicas) - minAvailable - newUnavailable;
  if (maxScaledDown <= 0) return false;
  // First the old ReplicaSets' unhealthy replicas, which cost no availability.
  let cleaned = 0;
  for (const rs of [...oldRSs].sort(byCreation)) {
    if (cleaned >= maxScaledDown) break;
    const unhealthy = rsReplicas(rs) - statusNum(rs, 'availableReplicas');
    if (rsReplicas(rs) === 0 || unhealthy <= 0) continue;
    const n = Math.min(maxScaledDown - cleaned, unhealthy);
    s.scale(rs, rsReplicas(rs) - n);
    cleaned += n;
  }
  // Then healthy ones, down to minAvailable available pods in total.
  let scaledDown = 0;
  const availableNow = sum(all, (rs) => statusNum(rs, 'availableReplicas'));
  if (availableNow > minAvailable) {
    const total = availableNow - minAvailable;
    for (const rs of [...oldRSs].sort(byCreation)) {
      if (scaledDown >= total) break;
      if (rsReplicas(rs) === 0) continue;
      const n = Math.min(rsReplicas(rs), total - scaledDown);
      s.scale(rs, rsReplicas(rs) - n);
      scaledDown += n;
    }
  }
  return cleaned + scaledDown > 0;
}

function rolloutRecreate(s: DeploymentSync, pods: KObject[]): Obj {
  let { newRS, oldRSs } = s.allAndSyncRevision(false);
  if (s.collided) return {};
  let scaledDown = false;
  for (const rs of active(oldRSs)) scaledDown = s.scale(rs, 0) || scaledDown;
  if (scaledDown) return s.rolloutStatus(withNew(oldRSs, newRS), newRS);
  if (oldPodsRunning(newRS, oldRSs, s.rsList, pods)) return s.rolloutStatus(withNew(oldRSs, newRS), newRS);
  if (!newRS) {
    ({ newRS, oldRSs } = s.allAndSyncRevision(true));
    if (!newRS) return {};
  }
  s.scale(newRS, s.replicas);
  if (s.complete(s.status)) s.cleanup(oldRSs);
  return s.rolloutStatus(withNew(oldRSs, newRS), newRS);
}

/** DeploymentStatus fields are all omitempty: drop zeros and empties as the wire form does. */
function wireStatus(status: Obj): Obj {
  const out: Obj = {};
  for (const [k, v] of Object.entries(status)) {
    if (v === undefined || v === 0 || (Array.isArray(v) && v.length === 0)) continue;
    out[k] = v;
  }
  return out;
}

function emit(s: DeploymentSync, original: KObject, status: Obj): Action[] {
  const actions: Action[] = [...s.pre];
  if (s.created) actions.push(create(R.replicaSets, s.created));
  for (const rs of s.changed) actions.push(update(R.replicaSets, rs));
  for (const rs of s.deleted) actions.push(del(R.replicaSets, rs));
  const annotations = s.d.metadata.annotations;
  if (!semanticEqual(annotations, original.metadata.annotations)) {
    // The real controller writes the revision annotation through the status subresource (the
    // Deployment status strategy keeps metadata changes); a plain update works with any store.
    const d = clone(original);
    d.metadata.annotations = annotations;
    actions.push(update(R.deployments, d));
  }
  const next = wireStatus(status);
  if (!s.collided && Object.keys(status).length === 0) return actions;
  if (!semanticEqual(next, original['status'] ?? {})) {
    const d = clone(original);
    d.metadata.annotations = annotations;
    d['status'] = next;
    actions.push(updateStatus(R.deployments, d));
  }
  return actions;
}

/** When the progress deadline of a rollout in flight passes (ms), so the manager can look again. */
export function deploymentWakeup(d: KObject, _now: number): number | undefined {
  const deadline = progressDeadline(d);
  if (deadline === undefined || field<boolean>(d, 'spec', 'paused') === true) return undefined;
  const cur = getCondition(field<Condition[]>(d, 'status', 'conditions'), 'Progressing');
  if (!cur || cur.reason === Reason.NewReplicaSetAvailable || cur.reason === Reason.ProgressDeadlineExceeded) return undefined;
  return timeMs(cur.lastUpdateTime) + deadline * 1000 + 1000;
}
