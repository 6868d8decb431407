/**
 * The agent's enrolment core: which pods of this node are enrolled, and the effects that make it so.
 *
 * Inputs: CNI requests (a new sandbox, held until its capture is in place), and the node's pods and
 * namespaces from the watches (`reconcile`, on every change). Output: effects, injected through
 * `EnrolEffects` (find the netns, apply/remove/inspect the in-pod rules, open the in-pod listeners,
 * program the host's probe SNAT), so every case is a table test with fakes (enroller.test.ts).
 *
 * Per pod (keyed by uid; by namespace/name when the runtime gave no uid) the enroller keeps what it
 * wants (`enrolled` / `not-enrolled` / `forget`) and what it has done (rules possibly present in
 * which netns, listeners open). A *converge* step moves one pod from what is done to what is
 * wanted. Properties:
 *
 * - One pod's steps run one at a time (a per-pod queue), so a CNI DEL that arrives during an ADD's
 *   apply waits for it; steps are coalesced (a step queued and not started serves every caller), so
 *   overlapping reconciles never apply twice. Different pods run concurrently, at most
 *   `concurrency` at once.
 * - Enrolment opens the listeners first, then applies the rules: the capture never points at a port
 *   nobody listens on. The one exception is a fresh CNI sandbox: nothing runs in it before ADD
 *   returns, so both go in at once (half the latency); if the listeners fail there, rules that went
 *   in are taken out again. Un-enrolment is the reverse: rules out first (new connections go
 *   direct), then the listeners close, which stops accepting but leaves established connections
 *   running.
 * - Forgetting (pod deleted, CNI DEL, pod finished) only closes the listeners: the netns is going
 *   away and its rules with it.
 * - A failed step is retried with exponential backoff and counted; reconciles do not cut the
 *   backoff short unless what is wanted changes.
 * - After a restart (empty memory) the first reconcile re-applies (idempotently) on enrolled pods,
 *   reopens their listeners, and inspects every other running pod's netns for leftover rules.
 * - The host's probe SNAT always covers the IPs of pods wanted or still enrolled; it is synced
 *   before a reconcile's enrolments (probes are never captured) and after its removals.
 */
import type { Logger } from 'pino';
import type { CniPodRequest, EnrolDecision } from '../../api/cni.js';
import type { PodObject } from '../../state/objects.js';
import { podIps } from '../../state/model.js';
import { CniTryAgain } from '../cni-server.js';
import type { EnrolmentMetrics } from '../metrics.js';
import { desiredEnrolment, isGone } from './desired.js';
import { NetnsAmbiguous } from './netns.js';

/** The pod as the effects see it. `ips` may be [] (a CNI ADD whose prevResult carried none). */
export interface PodRef {
  uid: string;
  namespace: string;
  name: string;
  ips: string[];
}

/** The in-pod listeners of one pod: `close()` stops accepting and leaves established connections running. */
export interface ProxyHandle {
  close(): Promise<void>;
}

export interface EnrolEffects {
  /** The pod's netns path as the agent sees it; `hint` is the CNI netns path. Undefined: not found. */
  findNetns(pod: PodRef, hint?: string): Promise<string | undefined>;
  /**
   * Idempotent: applying twice equals applying once. `freshNetns`: the netns is a sandbox's that CNI
   * ADD just announced and no attempt has touched yet, so the executor may skip reading it (it
   * must still be idempotent; see ExecOptions.freshNetns in redirect/exec.ts).
   */
  applyRedirection(netnsPath: string, opts?: { freshNetns?: boolean }): Promise<void>;
  /** Removes every rule of ours, leaving the rest of the pod's ruleset as it was. */
  removeRedirection(netnsPath: string): Promise<void>;
  /** Whether rules of ours are present (reconcile after a restart). */
  hasRedirection(netnsPath: string): Promise<boolean>;
  openProxy(netnsPath: string, pod: PodRef): Promise<ProxyHandle>;
  /** The full desired set of enrolled pod IPs on the node (host-side SNAT of kubelet probes). */
  /**
   * `full`: the periodic whole-node sync (every backend read, leftovers of other backends removed,
   * our jump first again); otherwise the quick one for a changed set.
   */
  syncProbeSnat(podIps: string[], opts?: { full?: boolean }): Promise<void>;
  /**
   * Optional: read a pod from the API server when a CNI ADD comes for a pod of an ambient namespace
   * that the watch has not delivered yet (after `podWaitMs`). Without it the ADD is "try again".
   */
  lookupPod?(namespace: string, name: string): Promise<PodObject | undefined>;
}

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  /** Random spread of each delay, 0..1 (0.2 = ±20%), so many failing pods do not retry in step. */
  jitter: number;
}

export interface EnrollerOptions {
  nodeName: string;
  effects: EnrolEffects;
  /** Pods whose steps run at once (default 8). */
  concurrency?: number;
  /** Default 500 ms doubling to 30 s, ±20%. */
  backoff?: Partial<BackoffOptions>;
  /** Reconcile requests within this window share one pass (default 50 ms). */
  debounceMs?: number;
  /** How long a CNI ADD waits for the watch to deliver its pod or namespace (default 2000 ms). */
  podWaitMs?: number;
  /**
   * After a CNI DEL, reconciles do not re-enrol the pod by IP scan for this long (default 30 s): the
   * sandbox is being torn down and its netns may still hold the IP. A new CNI ADD ends it.
   */
  releaseGraceMs?: number;
  /**
   * A pod enrolled through CNI that the watch has not listed yet is not forgotten by reconciles for
   * this long (default 120 s): the CNI ADD usually comes before the watch event.
   */
  cniGraceMs?: number;
  metrics?: EnrolmentMetrics;
  log?: Logger;
  /** Injectable clock for tests (default Date.now). */
  now?: () => number;
}

export type PodWant = 'enrolled' | 'not-enrolled' | 'forget';
/** pending: nothing done yet; enrolled: rules and listeners in place; failed: retrying; removed: un-enrolled. */
export type PodState = 'pending' | 'enrolled' | 'failed' | 'removed';

/** One pod, as `snapshot()` shows it (the admin endpoint and tests). */
export interface PodSnapshot {
  key: string;
  namespace: string;
  name: string;
  uid: string;
  ips: string[];
  want: PodWant;
  state: PodState;
  /** why it is wanted so (a DesiredReason, "cni-del", "deleted") */
  reason: string;
  netns?: string;
  /** the CNI netns path, when the pod came through CNI */
  cniNetns?: string;
  listening: boolean;
  attempts: number;
  lastError?: string;
  /** ms until the next retry, while failed */
  retryInMs?: number;
}

interface Entry {
  key: string;
  ref: PodRef;
  want: PodWant;
  state: PodState;
  reason: string;
  /** latest CNI netns path and the sandbox it belongs to */
  hint?: string;
  containerId?: string;
  /** the hint the current enrolment was made from */
  appliedHint?: string;
  /** netns where our rules may be present (set before applying, cleared after removing) */
  rulesIn?: string;
  proxy?: ProxyHandle;
  proxyNetns?: string;
  /** first reconcile after a restart: look for leftover rules of a previous agent */
  checkLeftover: boolean;
  seenInWatch: boolean;
  createdAt: number;
  attempts: number;
  lastError?: string;
  retryTimer?: NodeJS.Timeout;
  retryAt?: number;
  /** resolves when every step queued so far has finished (never rejects) */
  tail: Promise<void>;
  /** a step queued and not yet started, shared by every caller until it starts */
  queued?: Promise<void>;
}

/** A step failed; `reason` is the metric label. */
class StepFailure extends Error {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 500, maxMs: 30_000, jitter: 0.2 };

export class Enroller {
  private readonly nodeName: string;
  private readonly effects: EnrolEffects;
  private readonly limiter: Limiter;
  private readonly backoff: BackoffOptions;
  private readonly debounceMs: number;
  private readonly podWaitMs: number;
  private readonly releaseGraceMs: number;
  private readonly cniGraceMs: number;
  private readonly metrics: EnrolmentMetrics | undefined;
  private readonly log: Logger | undefined;
  private readonly now: () => number;

  private readonly entries = new Map<string, Entry>();
  /** pods released by CNI DEL: key → until when reconciles leave them alone */
  private readonly released = new Map<string, number>();

  // the watch's view, replaced by every reconcile call
  private synced = false;
  private pods: readonly PodObject[] = [];
  private podsByUid = new Map<string, PodObject>();
  private podsByName = new Map<string, PodObject>();
  private namespaces: ReadonlyMap<string, Record<string, string>> = new Map();
  private cacheWaiters = new Set<() => void>();

  // reconcile passes
  private passes = 0;
  private pendingPass: Deferred | undefined;
  private passRunning = false;
  private passTimer: NodeJS.Timeout | undefined;

  // probe SNAT
  private probeSynced: string | undefined;
  private probeChain: Promise<void> = Promise.resolve();
  private probeQueued: Promise<void> | undefined;
  private probeFullWanted = false;
  private probeFailures = 0;
  private probeTimer: NodeJS.Timeout | undefined;

  private stopped = false;

  constructor(opts: EnrollerOptions) {
    this.nodeName = opts.nodeName;
    this.effects = opts.effects;
    this.limiter = new Limiter(opts.concurrency ?? 8);
    this.backoff = { ...DEFAULT_BACKOFF, ...opts.backoff };
    this.debounceMs = opts.debounceMs ?? 50;
    this.podWaitMs = opts.podWaitMs ?? 2000;
    this.releaseGraceMs = opts.releaseGraceMs ?? 30_000;
    this.cniGraceMs = opts.cniGraceMs ?? 120_000;
    this.metrics = opts.metrics;
    this.log = opts.log;
    this.now = opts.now ?? Date.now;
  }

  // ---------------------------------------------------------------- inputs

  /**
   * CNI ADD: resolves "enrolled" once the listeners are open and the rules applied in the pod's
   * netns, "not-enrolled" at once for pods outside the mesh. Throws CniTryAgain while the agent
   * cannot decide (not synced; pod or namespace not yet seen), an Error when enrolment failed.
   */
  async onCniAdd(req: CniPodRequest): Promise<EnrolDecision> {
    const what = `${req.pod.namespace}/${req.pod.name}`;
    const t0 = performance.now();
    if (this.stopped) throw new CniTryAgain('ambit-agent is shutting down; the runtime will retry the pod sandbox');
    if (!this.synced) throw new CniTryAgain('ambit-agent has not synced with the Kubernetes API yet; the runtime will retry the pod sandbox');

    // Pod labels can only opt out: a namespace known not to be ambient decides without the pod.
    const nsKnown = () => this.namespaces.has(req.pod.namespace);
    if (!nsKnown()) await this.waitForCache(nsKnown);
    const nsLabels = this.namespaces.get(req.pod.namespace);
    if (!nsLabels) throw new CniTryAgain(`namespace ${req.pod.namespace} of pod ${what} is not in ambit-agent's watch yet; the runtime will retry`);
    if (desiredEnrolment(podStub(req, this.nodeName), nsLabels, { nodeName: this.nodeName, fromCni: true }).reason === 'namespace-not-ambient') {
      return 'not-enrolled';
    }

    const pod = await this.podForCni(req);
    if (!pod) throw new CniTryAgain(`pod ${what} is not in ambit-agent's watch yet; the runtime will retry`);
    const decision = desiredEnrolment(pod, this.namespaces.get(req.pod.namespace), { nodeName: this.nodeName, ips: req.ips, fromCni: true });
    if (!decision.enrol) {
      this.log?.debug({ pod: what, reason: decision.reason }, 'CNI ADD: pod not enrolled');
      return 'not-enrolled';
    }

    const uid = req.pod.uid || pod.metadata.uid || '';
    const ref: PodRef = { uid, namespace: req.pod.namespace, name: req.pod.name, ips: [...req.ips] };
    let e = this.entryFor(ref);
    if (!e) e = this.createEntry(ref);
    else e.ref = { ...ref, ips: ref.ips.length ? ref.ips : e.ref.ips };
    this.released.delete(e.key);
    if (req.netns) e.hint = req.netns;
    e.containerId = req.containerId;
    e.reason = decision.reason;
    e.want = 'enrolled';
    const t1 = performance.now();
    // A CNI ADD always tries now, even while a reconcile's retry is backing off.
    const enrolled = satisfied(e) ? e.tail : this.schedule(e);
    // The host's probe SNAT takes the pod's IPs meanwhile (the want above put them in the set): no
    // probe can reach the sandbox before ADD returns, so here the two need no order. (A reconcile
    // enrols running pods, whose probes already run: it syncs the SNAT first.)
    let probesMs = 0;
    const probes = this.syncProbes().then(() => (probesMs = performance.now() - t1));
    await enrolled;
    const t2 = performance.now();
    await probes;
    if (e.state !== 'enrolled' || e.want !== 'enrolled') {
      throw new Error(`could not enrol pod ${what}: ${e.want !== 'enrolled' ? 'the pod was released while enrolling' : (e.lastError ?? 'unknown error')}`);
    }
    this.log?.debug({ pod: what, stepsMs: { decide: round(t1 - t0), enrol: round(t2 - t1), probes: round(probesMs), total: round(performance.now() - t0) } }, 'CNI ADD: enrolled');
    return 'enrolled';
  }

  /** CNI DEL: the sandbox is going away. Closes the listeners and forgets the pod. Tolerates repeats and unknown pods. */
  async onCniDel(req: CniPodRequest): Promise<void> {
    const uid = req.pod.uid || this.podsByName.get(`${req.pod.namespace}/${req.pod.name}`)?.metadata.uid || '';
    const e = this.entryFor({ uid, namespace: req.pod.namespace, name: req.pod.name, ips: [] });
    if (!e) return;
    // A late DEL of an older sandbox must not tear down the pod's current one.
    if (e.containerId && req.containerId && e.containerId !== req.containerId) {
      this.log?.debug({ pod: `${req.pod.namespace}/${req.pod.name}`, containerId: req.containerId }, 'CNI DEL of an older sandbox; ignored');
      return;
    }
    this.released.set(e.key, this.now() + this.releaseGraceMs);
    await this.setWant(e, 'forget', 'cni-del');
    await this.syncProbes();
  }

  /**
   * The node's pods and all namespaces' labels, as the watches see them now. Call on every change;
   * passes are coalesced (one runs at a time; calls meanwhile share the next one, `debounceMs`
   * after). Resolves when a pass that saw these inputs has finished. The first call also marks the
   * agent synced (CNI ADDs are answered from then on).
   */
  reconcile(pods: readonly PodObject[], namespaces: ReadonlyMap<string, Record<string, string>>): Promise<void> {
    this.pods = pods;
    this.namespaces = namespaces;
    this.podsByUid = new Map();
    this.podsByName = new Map();
    for (const p of pods) {
      if (p.metadata.uid) this.podsByUid.set(p.metadata.uid, p);
      this.podsByName.set(`${p.metadata.namespace}/${p.metadata.name}`, p);
    }
    this.synced = true;
    for (const wake of [...this.cacheWaiters]) wake();
    return this.requestPass();
  }

  /** True once the first reconcile pass has finished (every pod's step settled, failures included). */
  ready(): boolean {
    return this.passes > 0;
  }

  /**
   * The periodic whole-node sync of the host probe SNAT (kube-proxy restarting puts its jump ahead
   * of ours; another backend's leftovers go), with the same set and in the same queue as every
   * other sync: a pod whose CNI ADD is under way is in the set, and no two syncs interleave.
   */
  refreshProbes(): Promise<void> {
    return this.syncProbes({ full: true });
  }

  /** Every pod the enroller manages, sorted by namespace/name. */
  snapshot(): PodSnapshot[] {
    const now = this.now();
    return [...this.entries.values()]
      .map((e) => ({
        key: e.key,
        namespace: e.ref.namespace,
        name: e.ref.name,
        uid: e.ref.uid,
        ips: [...e.ref.ips],
        want: e.want,
        state: e.state,
        reason: e.reason,
        ...(e.rulesIn ? { netns: e.rulesIn } : e.proxyNetns ? { netns: e.proxyNetns } : {}),
        ...(e.hint ? { cniNetns: e.hint } : {}),
        listening: !!e.proxy,
        attempts: e.attempts,
        ...(e.lastError ? { lastError: e.lastError } : {}),
        ...(e.retryAt !== undefined ? { retryInMs: Math.max(0, e.retryAt - now) } : {}),
      }))
      .sort((a, b) => (`${a.namespace}/${a.name}` < `${b.namespace}/${b.name}` ? -1 : 1));
  }

  /**
   * Stops retries and passes and waits for steps in flight. Listeners stay open unless
   * `closeListeners` (rules stay either way: a restarted agent adopts them).
   */
  async stop(opts: { closeListeners?: boolean } = {}): Promise<void> {
    this.stopped = true;
    clearTimeout(this.passTimer);
    clearTimeout(this.probeTimer);
    for (const e of this.entries.values()) this.clearRetry(e);
    for (const wake of [...this.cacheWaiters]) wake();
    await Promise.all([...this.entries.values()].map((e) => e.tail));
    this.pendingPass?.resolve();
    if (opts.closeListeners) await Promise.all([...this.entries.values()].map((e) => this.closeProxy(e)));
  }

  // ---------------------------------------------------------------- reconcile passes

  private requestPass(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (!this.pendingPass) {
      this.pendingPass = deferred();
      this.armPass();
    }
    return this.pendingPass.promise;
  }

  private armPass(): void {
    if (this.passRunning || this.passTimer || this.stopped) return;
    this.passTimer = setTimeout(() => {
      this.passTimer = undefined;
      void this.startPass();
    }, this.debounceMs);
  }

  private async startPass(): Promise<void> {
    const waiting = this.pendingPass;
    if (!waiting || this.stopped) return;
    this.pendingPass = undefined;
    this.passRunning = true;
    const started = this.now();
    try {
      await this.runPass();
    } catch (err) {
      this.log?.error({ err }, 'reconcile pass failed');
    } finally {
      this.passRunning = false;
      this.passes++;
      this.metrics?.observeReconcile((this.now() - started) / 1000);
      waiting.resolve();
      if (this.pendingPass) this.armPass();
    }
  }

  private async runPass(): Promise<void> {
    const first = this.passes === 0;
    const namespaces = this.namespaces;
    const seen = new Set<Entry>();
    const plans: { e: Entry; want: PodWant; reason: string }[] = [];
    const now = this.now();
    for (const [key, until] of this.released) if (until <= now) this.released.delete(key);

    for (const pod of this.pods) {
      if (pod.spec?.nodeName !== this.nodeName) continue;
      const ref = refOf(pod);
      let e = this.entryFor(ref);
      if (e) {
        seen.add(e);
        e.seenInWatch = true;
        e.ref = { ...ref, ips: ref.ips.length ? ref.ips : e.ref.ips };
      }
      const d = desiredEnrolment(pod, namespaces.get(ref.namespace), { nodeName: this.nodeName, ips: e?.ref.ips ?? ref.ips });
      if (d.enrol) {
        if (!e) {
          if (this.released.has(keyOf(ref))) continue;
          e = this.createEntry(ref);
          e.seenInWatch = true;
          seen.add(e);
        }
        plans.push({ e, want: 'enrolled', reason: d.reason });
      } else if (e) {
        plans.push({ e, want: isGone(d.reason) ? 'forget' : 'not-enrolled', reason: d.reason });
      } else if (first && !isGone(d.reason) && d.reason !== 'host-network' && ref.ips.length > 0) {
        // After a restart: a previous agent may have left rules in this pod.
        e = this.createEntry(ref);
        e.seenInWatch = true;
        e.checkLeftover = true;
        seen.add(e);
        plans.push({ e, want: 'not-enrolled', reason: d.reason });
      }
    }
    for (const e of this.entries.values()) {
      if (seen.has(e)) continue;
      const cniFresh = !e.seenInWatch && now - e.createdAt < this.cniGraceMs;
      if (!cniFresh) plans.push({ e, want: 'forget', reason: 'deleted' });
    }
    // Wants first, so the probe SNAT covers newly wanted pods before any of their rules go in...
    const changed = plans.map((p) => this.assignWant(p.e, p.want, p.reason));
    await this.syncProbes();
    await Promise.all(plans.map((p, i) => this.kick(p.e, changed[i]!)));
    // ...and the IPs of removed and forgotten pods leave the set once their rules are gone.
    await this.syncProbes();
  }

  // ---------------------------------------------------------------- per-pod steps

  /** The entry of a pod, by uid or by namespace/name; an entry made without a uid is re-keyed once the uid is known. */
  private entryFor(ref: PodRef): Entry | undefined {
    if (ref.uid) {
      const byUid = this.entries.get(ref.uid);
      if (byUid) return byUid;
      const byName = this.entries.get(`${ref.namespace}/${ref.name}`);
      if (byName && !byName.ref.uid) {
        this.entries.delete(byName.key);
        byName.key = ref.uid;
        byName.ref = { ...byName.ref, uid: ref.uid };
        this.entries.set(byName.key, byName);
        return byName;
      }
      return undefined;
    }
    const byName = this.entries.get(`${ref.namespace}/${ref.name}`);
    if (byName) return byName;
    for (const e of this.entries.values()) if (e.ref.namespace === ref.namespace && e.ref.name === ref.name) return e;
    return undefined;
  }

  private createEntry(ref: PodRef): Entry {
    const e: Entry = {
      key: keyOf(ref),
      ref,
      want: 'enrolled',
      state: 'pending',
      reason: '',
      checkLeftover: false,
      seenInWatch: false,
      createdAt: this.now(),
      attempts: 0,
      tail: Promise.resolve(),
    };
    this.entries.set(e.key, e);
    return e;
  }

  /**
   * Sets what is wanted of a pod and, when that needs work, queues a step. Resolves when the pod's
   * steps queued so far have run.
   */
  private setWant(e: Entry, want: PodWant, reason: string): Promise<void> {
    return this.kick(e, this.assignWant(e, want, reason));
  }

  /** Records the want; true when it changed. */
  private assignWant(e: Entry, want: PodWant, reason: string): boolean {
    e.reason = reason;
    const changed = e.want !== want;
    e.want = want;
    return changed;
  }

  /** Queues a step when the want needs work. An unchanged want of a failed pod leaves the retry to its backoff. */
  private kick(e: Entry, changed: boolean): Promise<void> {
    if (!changed && (satisfied(e) || (e.state === 'failed' && e.retryTimer))) return e.tail;
    return this.schedule(e);
  }

  /** Queues a converge step for `e` behind its earlier ones, or joins the one already queued. */
  private schedule(e: Entry): Promise<void> {
    if (e.queued) return e.queued;
    const step = e.tail.then(() => {
      e.queued = undefined;
      return this.converge(e);
    });
    e.queued = step;
    e.tail = step;
    return step;
  }

  /** Moves one pod from what is done to what is wanted. Never rejects. */
  private async converge(e: Entry): Promise<void> {
    this.clearRetry(e);
    if (this.stopped) return;
    const want = e.want;
    try {
      if (want === 'forget') await this.forget(e);
      else await this.limiter.run(() => (want === 'enrolled' ? this.enrol(e) : this.unenrol(e)));
      e.attempts = 0;
      delete e.lastError;
    } catch (err) {
      this.failed(e, err);
    }
    this.metrics?.setEnrolledPods(this.countEnrolled());
    // A retry driven by its timer has no caller to sync the probe set afterwards (skipped when unchanged).
    void this.syncProbes();
  }

  private async enrol(e: Entry): Promise<void> {
    if (e.state === 'enrolled' && (!e.hint || e.hint === e.appliedHint)) return;
    const what = `${e.ref.namespace}/${e.ref.name}`;
    // Per-step times go into the "pod enrolled" line: where a slow CNI ADD spent its time.
    const t0 = performance.now();
    const path = await this.findNetns(e);
    const t1 = performance.now();
    if (e.state === 'enrolled' && e.rulesIn === path) {
      e.appliedHint = e.hint;
      return;
    }
    // A new sandbox: the old listeners belong to the old netns.
    if (e.proxy && e.proxyNetns !== path) await this.closeProxy(e);
    if (e.state === 'enrolled') e.state = 'pending';
    // A sandbox CNI just announced, not yet tried by any step (a failed try leaves rulesIn set, so
    // its retry reads the netns first).
    const freshNetns = e.hint !== undefined && e.hint !== e.appliedHint && e.rulesIn !== path;
    // In a fresh sandbox nothing runs before ADD returns, so the listeners and the rules may go in
    // side by side; anywhere else the listeners come first (see the header).
    const overlapped = freshNetns && !e.proxy;
    const { proxyMs, applyMs } = overlapped ? await this.openAndApply(e, path) : await this.openThenApply(e, path, freshNetns);
    this.metrics?.observeRuleProgramming('apply', applyMs / 1000);
    e.appliedHint = e.hint;
    e.state = 'enrolled';
    const steps = { netns: round(t1 - t0), proxy: round(proxyMs), apply: round(applyMs) };
    this.log?.info({ pod: what, netns: path, ips: e.ref.ips, stepsMs: steps, ...(overlapped ? { overlapped } : {}) }, 'pod enrolled');
  }

  /** Listeners (unless open), then rules: the capture never points at a port nobody listens on. */
  private async openThenApply(e: Entry, path: string, freshNetns: boolean): Promise<{ proxyMs: number; applyMs: number }> {
    const t0 = performance.now();
    if (!e.proxy) {
      try {
        e.proxy = await this.effects.openProxy(path, e.ref);
        e.proxyNetns = path;
      } catch (err) {
        throw new StepFailure('proxy', `cannot open the proxy listeners in ${path}: ${messageOf(err)}`);
      }
    }
    const t1 = performance.now();
    e.rulesIn = path;
    try {
      await this.effects.applyRedirection(path, freshNetns ? { freshNetns } : undefined);
    } catch (err) {
      throw new StepFailure('apply', `cannot apply the redirection in ${path}: ${messageOf(err)}`);
    }
    return { proxyMs: t1 - t0, applyMs: performance.now() - t1 };
  }

  /**
   * Listeners and rules at once, for a fresh CNI sandbox. Outcomes match the sequential path's:
   * listeners that opened are kept (a retry re-applies only), rulesIn is set (a retry reads the
   * netns first). When the listeners failed but the rules went in, the rules are taken out again
   * before failing, so they never capture into a closed port. Each step's time is its own.
   */
  private async openAndApply(e: Entry, path: string): Promise<{ proxyMs: number; applyMs: number }> {
    const t0 = performance.now();
    let proxyMs = 0;
    let applyMs = 0;
    e.rulesIn = path;
    const [opened, applied] = await Promise.allSettled([
      timed(() => this.effects.openProxy(path, e.ref), (ms) => (proxyMs = ms), t0),
      timed(() => this.effects.applyRedirection(path, { freshNetns: true }), (ms) => (applyMs = ms), t0),
    ]);
    if (opened.status === 'fulfilled') {
      e.proxy = opened.value;
      e.proxyNetns = path;
    } else {
      let message = `cannot open the proxy listeners in ${path}: ${messageOf(opened.reason)}`;
      if (applied.status === 'fulfilled') {
        await this.remove(path).catch((err: unknown) => (message += `; the rules applied meanwhile are still in place (${messageOf(err)}), the retry re-applies them`));
      } else message += `; applying the redirection failed too: ${messageOf(applied.reason)}`;
      throw new StepFailure('proxy', message);
    }
    if (applied.status === 'rejected') throw new StepFailure('apply', `cannot apply the redirection in ${path}: ${messageOf(applied.reason)}`);
    return { proxyMs, applyMs };
  }

  private async unenrol(e: Entry): Promise<void> {
    const what = `${e.ref.namespace}/${e.ref.name}`;
    if (e.rulesIn) {
      await this.remove(e.rulesIn);
      this.log?.info({ pod: what, netns: e.rulesIn, reason: e.reason }, 'pod un-enrolled');
      delete e.rulesIn;
    } else if (e.checkLeftover) {
      const path = await this.findNetns(e).catch((err: unknown) => {
        if (err instanceof StepFailure && err.reason === 'netns-not-found') return undefined; // nothing to clean where nothing is found
        throw err;
      });
      let present = false;
      if (path) {
        try {
          present = await this.effects.hasRedirection(path);
        } catch (err) {
          throw new StepFailure('inspect', `cannot inspect the rules in ${path}: ${messageOf(err)}`);
        }
      }
      if (path && present) {
        await this.remove(path);
        this.log?.info({ pod: what, netns: path, reason: e.reason }, 'removed rules left by an earlier agent');
      }
      e.checkLeftover = false;
      // Checked (and cleaned if needed): a pod this agent never enrolled needs no entry.
      if (!e.proxy && this.entries.get(e.key) === e && !e.queued) this.entries.delete(e.key);
    }
    // After the rules: new connections already go direct, established ones keep their proxy.
    await this.closeProxy(e);
    e.state = 'removed';
    delete e.appliedHint;
  }

  private async forget(e: Entry): Promise<void> {
    await this.closeProxy(e);
    delete e.rulesIn;
    e.state = 'removed';
    if (this.entries.get(e.key) === e && e.want === 'forget' && !e.queued) {
      this.entries.delete(e.key);
      this.log?.debug({ pod: `${e.ref.namespace}/${e.ref.name}`, reason: e.reason }, 'pod forgotten');
    }
  }

  private async findNetns(e: Entry): Promise<string> {
    let path: string | undefined;
    try {
      path = await this.effects.findNetns(e.ref, e.hint);
    } catch (err) {
      throw new StepFailure(err instanceof NetnsAmbiguous ? 'netns-ambiguous' : 'netns-not-found', `cannot find the network namespace: ${messageOf(err)}`);
    }
    if (!path) {
      throw new StepFailure(
        'netns-not-found',
        e.hint
          ? `the pod's network namespace ${e.hint} is not visible to ambit-agent (is the runtime's netns directory mounted into the agent?)`
          : `no network namespace visible to ambit-agent holds the pod IPs ${e.ref.ips.join(', ') || '(none known)'}`,
      );
    }
    return path;
  }

  private async remove(path: string): Promise<void> {
    const started = this.now();
    try {
      await this.effects.removeRedirection(path);
    } catch (err) {
      throw new StepFailure('remove', `cannot remove the redirection in ${path}: ${messageOf(err)}`);
    }
    this.metrics?.observeRuleProgramming('remove', (this.now() - started) / 1000);
  }

  private async closeProxy(e: Entry): Promise<void> {
    const proxy = e.proxy;
    if (!proxy) return;
    delete e.proxy;
    delete e.proxyNetns;
    try {
      await proxy.close();
    } catch (err) {
      this.log?.warn({ pod: `${e.ref.namespace}/${e.ref.name}`, err }, 'closing the in-pod listeners failed');
    }
  }

  private failed(e: Entry, err: unknown): void {
    const reason = err instanceof StepFailure ? err.reason : 'unknown';
    e.state = 'failed';
    e.attempts++;
    e.lastError = messageOf(err);
    this.metrics?.enrolmentFailure(reason);
    const delay = this.retryDelay(e.attempts);
    this.log?.warn({ pod: `${e.ref.namespace}/${e.ref.name}`, want: e.want, reason, attempt: e.attempts, retryInMs: delay }, `${e.want === 'enrolled' ? 'enrolment' : 'un-enrolment'} failed: ${e.lastError}`);
    if (this.stopped) return;
    e.retryAt = this.now() + delay;
    e.retryTimer = setTimeout(() => {
      delete e.retryTimer;
      delete e.retryAt;
      if (this.entries.get(e.key) === e && !this.stopped) void this.schedule(e);
    }, delay);
    e.retryTimer.unref();
  }

  private clearRetry(e: Entry): void {
    clearTimeout(e.retryTimer);
    delete e.retryTimer;
    delete e.retryAt;
  }

  private retryDelay(attempt: number): number {
    const base = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** Math.min(attempt - 1, 30));
    const spread = base * this.backoff.jitter * (2 * Math.random() - 1);
    return Math.max(0, Math.round(base + spread));
  }

  private countEnrolled(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.state === 'enrolled') n++;
    return n;
  }

  // ---------------------------------------------------------------- CNI helpers

  /** The pod of a CNI request from the watch, waiting up to podWaitMs for it, then `lookupPod`. */
  private async podForCni(req: CniPodRequest): Promise<PodObject | undefined> {
    const name = `${req.pod.namespace}/${req.pod.name}`;
    const fromCache = () => (req.pod.uid ? this.podsByUid.get(req.pod.uid) : undefined) ?? this.matchingName(name, req.pod.uid);
    if (!fromCache()) await this.waitForCache(() => !!fromCache());
    const cached = fromCache();
    if (cached) return cached;
    const looked = await this.effects.lookupPod?.(req.pod.namespace, req.pod.name).catch((err: unknown) => {
      this.log?.warn({ pod: name, err }, 'looking up the pod of a CNI ADD failed');
      return undefined;
    });
    return looked && (!req.pod.uid || looked.metadata.uid === req.pod.uid) ? looked : undefined;
  }

  /** The cached pod of that name, unless the request's uid says it is another incarnation. */
  private matchingName(name: string, uid: string): PodObject | undefined {
    const p = this.podsByName.get(name);
    return p && (!uid || !p.metadata.uid || p.metadata.uid === uid) ? p : undefined;
  }

  private async waitForCache(ready: () => boolean): Promise<void> {
    const deadline = this.now() + this.podWaitMs;
    while (!ready() && !this.stopped) {
      const left = deadline - this.now();
      if (left <= 0) return;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.cacheWaiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, left);
        this.cacheWaiters.add(done);
      });
    }
  }

  // ---------------------------------------------------------------- probe SNAT

  /** The IPs the host's probe SNAT must cover: pods wanted enrolled, and pods whose rules are still in place. */
  private probeIps(): string[] {
    const ips = new Set<string>();
    for (const e of this.entries.values()) {
      if (e.want === 'enrolled' || e.rulesIn || e.state === 'enrolled') for (const ip of e.ref.ips) ips.add(ip);
    }
    return [...ips].sort();
  }

  /**
   * Brings the host's probe SNAT to the current set. Serialised and coalesced; skipped when the set
   * is unchanged since the last success. Never rejects: a failure is logged, counted and retried
   * with backoff.
   */
  private syncProbes(opts: { full?: boolean } = {}): Promise<void> {
    if (opts.full) this.probeFullWanted = true;
    if (this.probeQueued) return this.probeQueued;
    const step = this.probeChain.then(async () => {
      this.probeQueued = undefined;
      if (this.stopped) return;
      const full = this.probeFullWanted;
      this.probeFullWanted = false;
      const ips = this.probeIps();
      const key = ips.join(',');
      if (key === this.probeSynced && !full) return;
      try {
        await this.effects.syncProbeSnat(ips, full ? { full } : undefined);
        this.probeSynced = key;
        this.probeFailures = 0;
      } catch (err) {
        this.probeFailures++;
        this.metrics?.enrolmentFailure('probe-snat');
        const delay = this.retryDelay(this.probeFailures);
        this.log?.warn({ err, retryInMs: delay }, `programming the host's probe SNAT failed: ${messageOf(err)}`);
        clearTimeout(this.probeTimer);
        this.probeTimer = setTimeout(() => void this.syncProbes(), delay);
        this.probeTimer.unref();
      }
    });
    this.probeQueued = step;
    this.probeChain = step;
    return step;
  }
}

// ---------------------------------------------------------------- helpers

function keyOf(ref: PodRef): string {
  return ref.uid || `${ref.namespace}/${ref.name}`;
}

function refOf(pod: PodObject): PodRef {
  return { uid: pod.metadata.uid ?? '', namespace: pod.metadata.namespace ?? '', name: pod.metadata.name ?? '', ips: podIps(pod) };
}

/** Whether what is done already matches what is wanted. */
function satisfied(e: Entry): boolean {
  switch (e.want) {
    case 'enrolled':
      return e.state === 'enrolled' && (!e.hint || e.hint === e.appliedHint);
    case 'not-enrolled':
      return e.state === 'removed';
    case 'forget':
      return false;
  }
}

/** A pod known only from a CNI request, enough to test namespace membership. */
function podStub(req: CniPodRequest, nodeName: string): PodObject {
  return { metadata: { namespace: req.pod.namespace, name: req.pod.name, uid: req.pod.uid }, spec: { nodeName } };
}

/** Runs `fn` and reports its time since `t0` (also when it fails). */
async function timed<T>(fn: () => Promise<T>, report: (ms: number) => void, t0: number): Promise<T> {
  try {
    return await fn();
  } finally {
    report(performance.now() - t0);
  }
}

/** Milliseconds to 0.1 ms, for log lines. */
function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** At most `limit` tasks at once; a finishing task hands its slot straight to the next waiter. */
class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly limit: number) {
    if (!(limit >= 1)) throw new Error(`concurrency must be at least 1, got ${limit}`);
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}
