// One pod on one node: the kubelet's per-pod sync loop (pod_workers.go + kuberuntime_manager.go
// SyncPod, much reduced). Each sync looks at the sandbox and containers over the CRI and takes the
// next step: volumes, sandbox (RunPodSandbox, retried after a failure), init containers one by one
// to completion, then the app containers (image check, env, mounts, create, start), probes,
// restarts with back-off per restartPolicy, and finally the status written back to the API. A pod
// with a deletionTimestamp is stopped gracefully, its sandbox removed, and the object deleted.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ApiClient } from '../apiserver/controllers/client.js';
import { rfc3339, semanticEqual } from '../apiserver/controllers/meta.js';
import type { ApiServer } from '../apiserver/server.js';
import type { KObject } from '../apiserver/types.js';
import type { NetnsHandle } from '../../../src/sys/index.js';
import { CriError, isNotFound, nanosToDate, type CriClient, type PodSandboxConfig } from '../runtime/cri.js';
import { Backoff, goDuration, jitter } from './backoff.js';
import { buildEnv, ContainerConfigError, expandCommand } from './env.js';
import { containerFieldPath, type EventRecorder, type EventSpec } from './events.js';
import { ProbeWorker, runProbe, type ProbeKind, type ProbeOutcome } from './probes.js';
import { containerConfig, containerMounts, hostsFile, podLogDir, sandboxConfig, type NodeContext } from './runtimespec.js';
import { podDesc, podSpec, type Container, type Obj } from './spec.js';
import { computePodStatus, terminatedReason, type ContainerState, type ContainerView, type PodView, type TerminatedState } from './status.js';
import { materializeVolumes, planVolumes, VolumeError, type PlannedVolume } from './volumes.js';

/** What every pod worker of a node shares. */
export interface WorkerContext {
  node: NodeContext;
  dataDir: string;
  /** the node's filesystem root: hostPath volumes resolve in it (see volumes.ts) */
  nodeFsRoot: string;
  cri: CriClient;
  api: ApiClient;
  events: EventRecorder;
  netns: NetnsHandle;
  issueToken: ApiServer['issueServiceAccountToken'];
  caPem: string;
  kubeletVersion: string;
  crashBackoff: Backoff;
  imageBackoff: Backoff;
  /** delay before a failed sandbox creation is retried (jittered by up to 50 %) */
  syncRetryMs: number;
  log: (s: string) => void;
}

/** One created container (an "attempt"). */
interface Instance {
  id: string;
  attempt: number;
  logPath: string;
  terminationLog: string;
  startedAt?: string;
  terminated?: TerminatedState;
}

interface ContainerRecord {
  spec: Container;
  isInit: boolean;
  current?: Instance;
  previous?: Instance;
  imageRef: string;
  /** why the kubelet holds the container back (image, config, back-off) */
  waiting?: { reason: string; message?: string };
  imageFailureAt?: number;
  probes: Partial<Record<ProbeKind, ProbeWorker>>;
  started: boolean;
  /** set by a failed liveness/startup probe: the message of the Killing event */
  killReason?: string;
}

/** Resync period of a quiet pod; container exits and probe changes wake the worker earlier. */
const RESYNC_MS = 10_000;
/** The kubelet never gives a container less than this to stop (minimumGracePeriodInSeconds). */
const MIN_GRACE_SECONDS = 2;
/** How often volume contents (ConfigMaps, Secrets) are refreshed. */
const VOLUME_REFRESH_MS = 60_000;

export class PodWorker {
  pod: KObject;
  /** the API object is gone (deleted without us): stop without writing to the API */
  private deleted = false;
  private done = false;
  /** the pod reached Succeeded/Failed; nothing restarts any more */
  private finished = false;
  private sandboxId: string | undefined;
  private sandboxCfg: PodSandboxConfig | undefined;
  private sandboxAttempt = 0;
  private sandboxRetryAt = 0;
  private podIps: string[] = [];
  private volumes: PlannedVolume[] | undefined;
  private volumesAt = 0;
  private readonly tokens = new Map<string, { token: string; refreshAt: number }>();
  private readonly init: ContainerRecord[];
  private readonly main: ContainerRecord[];
  private readonly startTime: string;
  private wakeInMs = RESYNC_MS;
  private wakeUp: (() => void) | undefined;
  private loopDone: Promise<void> | undefined;
  private stopping = false;
  /** resourceVersion of our last status write */
  private ownWriteRv: string | undefined;

  constructor(
    pod: KObject,
    private readonly ctx: WorkerContext,
  ) {
    this.pod = pod;
    const spec = podSpec(pod);
    const record = (c: Container, isInit: boolean): ContainerRecord => ({ spec: c, isInit, imageRef: '', probes: {}, started: false });
    this.init = (spec.initContainers ?? []).map((c) => record(c, true));
    this.main = spec.containers.map((c) => record(c, false));
    this.startTime = ((pod.status as Obj | undefined)?.startTime as string | undefined) ?? rfc3339(Date.now());
  }

  get uid(): string {
    return this.pod.metadata.uid ?? '';
  }

  get podDir(): string {
    return join(this.ctx.dataDir, 'pods', this.uid);
  }

  get isDone(): boolean {
    return this.done;
  }

  /** A newer version of the pod from the watch. */
  update(pod: KObject): void {
    if (pod.metadata.uid !== this.uid) return;
    this.pod = pod;
    // Our own status write coming back needs no sync (it would cut ErrImagePull & co. short).
    if (pod.metadata.resourceVersion !== this.ownWriteRv) this.kick();
  }

  /** The API object was removed (e.g. force-deleted): stop the pod and forget it. */
  markDeleted(pod: KObject): void {
    this.pod = pod;
    this.deleted = true;
    this.kick();
  }

  /** Run a sync now rather than at the next resync. */
  kick(): void {
    const w = this.wakeUp;
    this.wakeUp = undefined;
    w?.();
  }

  /** Starts the sync loop; `onDone` runs once the pod is gone from the node (not on stop()). */
  start(onDone: () => void = () => {}): void {
    this.loopDone = this.loop().then(() => {
      if (this.done) onDone();
    });
  }

  /** Stops the loop (and with killPods the pod's containers and sandbox); the pod is not deleted from the API. */
  async stop(killPods: boolean): Promise<void> {
    this.stopping = true;
    this.kick();
    await this.loopDone;
    this.stopProbes();
    if (killPods) await this.teardown(0).catch((err: Error) => this.ctx.log(`stopping pod ${podDesc(this.pod)}: ${err.message}`));
  }

  private async loop(): Promise<void> {
    while (!this.done && !this.stopping) {
      this.wakeInMs = RESYNC_MS;
      try {
        await this.sync();
      } catch (err) {
        this.ctx.log(`sync of pod ${podDesc(this.pod)} failed: ${(err as Error).stack ?? err}`);
        this.wakeIn(2_000);
      }
      if (this.done || this.stopping) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(this.wakeInMs, 0));
        timer.unref();
        this.wakeUp = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeUp = undefined;
    }
  }

  /** Ask for the next sync no later than `ms` from now. */
  private wakeIn(ms: number): void {
    this.wakeInMs = Math.min(this.wakeInMs, Math.max(ms, 0));
  }

  private event(e: EventSpec): void {
    this.ctx.events.record(this.pod, e);
  }

  private containerEvent(rec: ContainerRecord, type: EventSpec['type'], reason: string, message: string): void {
    this.event({ type, reason, message, fieldPath: containerFieldPath(rec.spec.name, rec.isInit) });
  }

  // ------------------------------------------------------------------ the sync

  private async sync(): Promise<void> {
    if (this.deleted || this.pod.metadata.deletionTimestamp) {
      await this.terminate();
      return;
    }
    if (this.finished) return;
    if (!(await this.ensureVolumes()) || !(await this.ensureSandbox())) {
      this.writeStatus();
      return;
    }
    await this.refreshContainers();
    const init = await this.syncInitContainers();
    if (init === 'failed') await this.finish();
    else if (init === 'done') {
      await this.syncContainers();
      if (this.allStoppedForGood()) await this.finish();
    }
    this.writeStatus();
  }

  private get restartPolicy(): string {
    return podSpec(this.pod).restartPolicy ?? 'Always';
  }

  private shouldRestart(rec: ContainerRecord, exitCode: number): boolean {
    if (this.finished) return false;
    if (rec.isInit) return exitCode !== 0 && this.restartPolicy !== 'Never';
    return this.restartPolicy === 'Always' || (this.restartPolicy === 'OnFailure' && exitCode !== 0);
  }

  // ------------------------------------------------------------------ volumes

  private async ensureVolumes(): Promise<boolean> {
    if (this.volumes && Date.now() - this.volumesAt < VOLUME_REFRESH_MS) return true;
    try {
      const plan = planVolumes({
        pod: this.pod,
        podDir: this.podDir,
        nodeFsRoot: this.ctx.nodeFsRoot,
        hostIp: this.ctx.node.nodeIp,
        podIps: this.podIps,
        configMap: (n) => this.ctx.api.get('v1/configmaps', this.pod.metadata.namespace, n),
        secret: (n) => this.ctx.api.get('v1/secrets', this.pod.metadata.namespace, n),
        token: (aud, exp) => this.token(aud, exp),
        caPem: this.ctx.caPem,
      });
      this.volumes = await materializeVolumes(plan);
      this.volumesAt = Date.now();
      return true;
    } catch (err) {
      if (!(err instanceof VolumeError)) throw err;
      this.event({ type: 'Warning', reason: 'FailedMount', message: err.message });
      this.wakeIn(this.volumes ? VOLUME_REFRESH_MS : 2_000);
      // A refresh failing later (e.g. the ConfigMap was deleted) keeps the running pod going, as in Kubernetes.
      return this.volumes !== undefined;
    }
  }

  /** A bound service-account token, reissued at 80 % of its lifetime (as the kubelet's token manager does). */
  private token(audience: string | undefined, expirationSeconds: number): string {
    const key = `${audience ?? ''}/${expirationSeconds}`;
    const cached = this.tokens.get(key);
    if (cached && Date.now() < cached.refreshAt) return cached.token;
    const spec = podSpec(this.pod);
    const m = this.pod.metadata;
    const issued = this.ctx.issueToken(m.namespace!, spec.serviceAccountName ?? 'default', {
      ...(audience ? { audiences: [audience] } : {}),
      expirationSeconds,
      boundObjectRef: { kind: 'Pod', name: m.name!, uid: m.uid! },
    });
    this.tokens.set(key, { token: issued.token, refreshAt: Date.now() + expirationSeconds * 800 });
    return issued.token;
  }

  // ------------------------------------------------------------------ sandbox

  private async ensureSandbox(): Promise<boolean> {
    const { cri } = this.ctx;
    if (this.sandboxId) {
      const st = await cri.podSandboxStatus(this.sandboxId).catch((err: unknown) => {
        if (isNotFound(err)) return undefined;
        throw err;
      });
      if (st?.status?.state === 'SANDBOX_READY') return true;
      this.event({ type: 'Normal', reason: 'SandboxChanged', message: 'Pod sandbox changed, it will be killed and re-created.' });
      await this.killContainers(0);
      await this.removeSandbox();
      this.sandboxAttempt++;
    }
    const now = Date.now();
    if (now < this.sandboxRetryAt) {
      this.wakeIn(this.sandboxRetryAt - now);
      return false;
    }
    const cfg = sandboxConfig(this.pod, this.ctx.node, this.sandboxAttempt);
    await mkdir(cfg.logDirectory!, { recursive: true });
    let id: string;
    const started = Date.now();
    try {
      id = await cri.runPodSandbox(cfg);
    } catch (err) {
      const detail = err instanceof CriError ? `rpc error: code = ${grpcCodeName(err.code)} desc = ${err.details}` : (err as Error).message;
      this.ctx.log(`RunPodSandbox for pod ${podDesc(this.pod)} failed after ${Date.now() - started} ms: ${detail}`);
      this.event({ type: 'Warning', reason: 'FailedCreatePodSandBox', message: `Failed to create pod sandbox: ${detail}` });
      const delay = jitter(this.ctx.syncRetryMs, 0.5);
      this.sandboxRetryAt = Date.now() + delay;
      this.wakeIn(delay);
      return false;
    }
    this.sandboxId = id;
    this.sandboxCfg = cfg;
    if (podSpec(this.pod).hostNetwork) {
      this.podIps = [this.ctx.node.nodeIp];
    } else {
      const st = await cri.podSandboxStatus(id);
      const net = st.status?.network;
      this.podIps = net?.ip ? [net.ip, ...net.additionalIps.map((a) => a.ip)] : [];
      // the pod dir exists only if a volume made it so far; /etc/hosts needs it in any case
      await mkdir(this.podDir, { recursive: true });
      await writeFile(this.etcHostsPath, hostsFile(this.pod, this.podIps, this.ctx.node));
    }
    // The downward API may name status.podIP: write the volumes again now that it is known.
    this.volumes = undefined;
    await this.ensureVolumes();
    return true;
  }

  private get etcHostsPath(): string {
    return join(this.podDir, 'etc-hosts');
  }

  private async removeSandbox(): Promise<void> {
    const id = this.sandboxId;
    if (!id) return;
    const { cri } = this.ctx;
    await cri.stopPodSandbox(id).catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
    for (const rec of [...this.init, ...this.main]) {
      for (const inst of [rec.previous, rec.current]) if (inst) await cri.removeContainer(inst.id).catch(() => undefined);
    }
    await cri.removePodSandbox(id).catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
    this.sandboxId = undefined;
    this.sandboxCfg = undefined;
  }

  // ------------------------------------------------------------------ containers

  /** Reads the runtime state of every live container instance; notes exits. */
  private async refreshContainers(): Promise<void> {
    for (const rec of [...this.init, ...this.main]) await this.refresh(rec);
  }

  private async refresh(rec: ContainerRecord): Promise<void> {
    const inst = rec.current;
    if (!inst || inst.terminated) return;
    const res = await this.ctx.cri.containerStatus(inst.id).catch((err: unknown) => {
      if (isNotFound(err)) return undefined;
      throw err;
    });
    const st = res?.status;
    if (st && st.state !== 'CONTAINER_EXITED' && st.state !== 'CONTAINER_UNKNOWN') {
      const started = nanosToDate(st.startedAt);
      if (started) inst.startedAt = rfc3339(started.getTime());
      return;
    }
    const exitCode = st ? st.exitCode : 137;
    const finished = st ? nanosToDate(st.finishedAt) : undefined;
    const started = st ? nanosToDate(st.startedAt) : undefined;
    const message = await readTerminationMessage(inst.terminationLog);
    inst.terminated = {
      exitCode,
      reason: st ? terminatedReason(exitCode, st.reason) : 'ContainerStatusUnknown',
      ...(message ? { message } : st?.message ? { message: st.message } : {}),
      startedAt: started ? rfc3339(started.getTime()) : (inst.startedAt ?? null),
      finishedAt: rfc3339((finished ?? new Date()).getTime()),
      containerID: `containerd://${inst.id}`,
    };
    this.stopProbes(rec);
    rec.started = false;
  }

  private async syncInitContainers(): Promise<'done' | 'waiting' | 'failed'> {
    for (const rec of this.init) {
      const cur = rec.current;
      if (cur?.terminated?.exitCode === 0) continue;
      if (!cur) {
        await this.startContainer(rec);
        return 'waiting';
      }
      if (!cur.terminated) return 'waiting';
      if (!this.shouldRestart(rec, cur.terminated.exitCode)) return 'failed';
      await this.restartWithBackoff(rec);
      return 'waiting';
    }
    return 'done';
  }

  private async syncContainers(): Promise<void> {
    for (const rec of this.main) {
      const cur = rec.current;
      if (!cur) {
        await this.startContainer(rec);
      } else if (!cur.terminated) {
        if (rec.killReason) await this.killForRestart(rec);
        else this.ensureProbes(rec);
      }
      if (rec.current?.terminated && this.shouldRestart(rec, rec.current.terminated.exitCode)) await this.restartWithBackoff(rec);
    }
  }

  /** Every app container exited and none will restart: the pod is Succeeded or Failed. */
  private allStoppedForGood(): boolean {
    return this.main.every((r) => r.current?.terminated && !this.shouldRestart(r, r.current.terminated.exitCode));
  }

  /** The pod reached a terminal phase: stop probes and the sandbox (containers stay for their logs). */
  private async finish(): Promise<void> {
    this.finished = true;
    this.stopProbes();
    await this.killContainers(0);
    if (this.sandboxId) await this.ctx.cri.stopPodSandbox(this.sandboxId).catch(() => undefined);
  }

  private async restartWithBackoff(rec: ContainerRecord): Promise<void> {
    const t = rec.current!.terminated!;
    const key = `${this.uid}/${rec.spec.name}`;
    const now = Date.now();
    const finishedMs = t.finishedAt ? Date.parse(t.finishedAt) : now;
    const { crashBackoff } = this.ctx;
    if (crashBackoff.isInBackoffSince(key, finishedMs, now)) {
      const delay = crashBackoff.get(key);
      rec.waiting = { reason: 'CrashLoopBackOff', message: `back-off ${goDuration(delay)} restarting failed container=${rec.spec.name} pod=${podDesc(this.pod)}` };
      this.containerEvent(rec, 'Warning', 'BackOff', `Back-off restarting failed container ${rec.spec.name} in pod ${podDesc(this.pod)}`);
      this.wakeIn(finishedMs + delay - now + 10);
      return;
    }
    crashBackoff.next(key, now);
    await this.startContainer(rec);
  }

  private async startContainer(rec: ContainerRecord): Promise<void> {
    const { cri } = this.ctx;
    const c = rec.spec;
    const image = c.image ?? '';
    const img = await cri.imageStatus(image);
    if (!img) return this.imageMissing(rec, image);
    rec.imageRef = img.id;
    rec.imageFailureAt = undefined;

    let envs;
    try {
      envs = buildEnv({
        pod: this.pod,
        container: c,
        hostIp: this.ctx.node.nodeIp,
        podIps: this.podIps,
        configMap: (n) => this.ctx.api.get('v1/configmaps', this.pod.metadata.namespace, n),
        secret: (n) => this.ctx.api.get('v1/secrets', this.pod.metadata.namespace, n),
        services: this.services(),
      });
    } catch (err) {
      if (!(err instanceof ContainerConfigError)) throw err;
      return this.holdBack(rec, 'CreateContainerConfigError', err.message);
    }
    this.containerEvent(rec, 'Normal', 'Pulled', `Container image "${image}" already present on machine`);

    const attempt = rec.current ? rec.current.attempt + 1 : 0;
    // Keep one dead instance per container (for logs --previous), as the kubelet's container GC does.
    if (rec.previous) await cri.removeContainer(rec.previous.id).catch(() => undefined);
    const terminationLog = join(this.podDir, 'containers', c.name, randomBytes(4).toString('hex'));
    await mkdir(join(this.podDir, 'containers', c.name), { recursive: true });
    await writeFile(terminationLog, '', { mode: 0o666 });

    let containerId: string;
    try {
      const mounts = containerMounts(c, this.volumes ?? [], { ...(podSpec(this.pod).hostNetwork ? {} : { etcHosts: this.etcHostsPath }), terminationLog });
      const cfg = containerConfig({
        pod: this.pod,
        container: c,
        restartCount: attempt,
        imageRef: rec.imageRef,
        envs,
        command: expandCommand(c.command, envs),
        args: expandCommand(c.args, envs),
        mounts,
      });
      containerId = await cri.createContainer(this.sandboxId!, cfg, this.sandboxCfg!);
      rec.previous = rec.current;
      rec.current = { id: containerId, attempt, logPath: join(this.sandboxCfg!.logDirectory!, cfg.logPath!), terminationLog };
    } catch (err) {
      const message = err instanceof CriError ? err.details : (err as Error).message;
      if (err instanceof VolumeError) return this.holdBack(rec, 'CreateContainerConfigError', err.message);
      return this.holdBack(rec, 'CreateContainerError', message);
    }
    this.containerEvent(rec, 'Normal', 'Created', `Created container: ${c.name}`);
    rec.waiting = undefined;
    rec.started = false;
    rec.killReason = undefined;
    try {
      await cri.startContainer(containerId);
    } catch (err) {
      const message = err instanceof CriError ? err.details : (err as Error).message;
      this.containerEvent(rec, 'Warning', 'Failed', `Error: ${message}`);
      rec.current.terminated = { exitCode: 128, reason: 'StartError', message, startedAt: null, finishedAt: rfc3339(Date.now()), containerID: `containerd://${containerId}` };
      rec.waiting = { reason: 'RunContainerError', message };
      this.wakeIn(0);
      return;
    }
    rec.current.startedAt = rfc3339(Date.now());
    this.containerEvent(rec, 'Normal', 'Started', `Started container ${c.name}`);
    this.ensureProbes(rec);
  }

  /** The container cannot be created yet for a configuration reason; try again on a later sync. */
  private holdBack(rec: ContainerRecord, reason: string, message: string): void {
    rec.waiting = { reason, message };
    this.containerEvent(rec, 'Warning', 'Failed', `Error: ${message}`);
    this.wakeIn(this.ctx.syncRetryMs);
  }

  private imageMissing(rec: ContainerRecord, image: string): void {
    const policy = rec.spec.imagePullPolicy ?? (image.endsWith(':latest') || !/:[^/]+$/.test(image) ? 'Always' : 'IfNotPresent');
    if (policy === 'Never') {
      const message = `Container image "${image}" is not present with pull policy of Never`;
      rec.waiting = { reason: 'ErrImageNeverPull', message };
      this.containerEvent(rec, 'Warning', 'ErrImageNeverPull', message);
      this.wakeIn(this.ctx.syncRetryMs);
      return;
    }
    const key = `${this.uid}/${image}`;
    const now = Date.now();
    const { imageBackoff } = this.ctx;
    const error = `image "${image}" is not present on node ${this.ctx.node.nodeName}, and the local cluster has no registry to pull it from: build it and import it into every node's containerd (runtime importImage)`;
    if (rec.imageFailureAt !== undefined && imageBackoff.isInBackoffSince(key, rec.imageFailureAt, now)) {
      rec.waiting = { reason: 'ImagePullBackOff', message: `Back-off pulling image "${image}": ErrImagePull: ${error}` };
      this.containerEvent(rec, 'Normal', 'BackOff', `Back-off pulling image "${image}"`);
      this.wakeIn(rec.imageFailureAt + imageBackoff.get(key) - now + 10);
      return;
    }
    this.containerEvent(rec, 'Normal', 'Pulling', `Pulling image "${image}"`);
    this.containerEvent(rec, 'Warning', 'Failed', `Failed to pull image "${image}": ${error}`);
    this.containerEvent(rec, 'Warning', 'Failed', 'Error: ErrImagePull');
    rec.waiting = { reason: 'ErrImagePull', message: error };
    rec.imageFailureAt = now;
    imageBackoff.next(key, now);
    // Show ErrImagePull for a moment, then ImagePullBackOff until the back-off ends (as the kubelet does).
    this.wakeIn(1_000);
  }

  private services(): KObject[] {
    const { api } = this.ctx;
    const own = api.list('v1/services', { namespace: this.pod.metadata.namespace }).items;
    const master = api.get('v1/services', 'default', 'kubernetes');
    return master && this.pod.metadata.namespace !== 'default' ? [master, ...own] : own;
  }

  // ------------------------------------------------------------------ probes

  private ensureProbes(rec: ContainerRecord): void {
    const c = rec.spec;
    const inst = rec.current;
    if (!inst || inst.terminated || rec.isInit) {
      if (inst && !inst.terminated) rec.started = true;
      return;
    }
    if (rec.probes.Startup || rec.probes.Liveness || rec.probes.Readiness) return;
    if (rec.started) {
      // started (or no startup probe): liveness and readiness run
      if (c.livenessProbe) rec.probes.Liveness = this.probeWorker(rec, 'Liveness', c.livenessProbe);
      if (c.readinessProbe) rec.probes.Readiness = this.probeWorker(rec, 'Readiness', c.readinessProbe);
      if (!c.livenessProbe && !c.readinessProbe) rec.probes = {};
      return;
    }
    if (c.startupProbe) {
      rec.probes.Startup = this.probeWorker(rec, 'Startup', c.startupProbe);
      return;
    }
    rec.started = true;
    this.ensureProbes(rec);
  }

  private probeWorker(rec: ContainerRecord, kind: ProbeKind, probe: NonNullable<Container['livenessProbe']>): ProbeWorker {
    const inst = rec.current!;
    const target = { podIp: this.podIps[0] ?? '', containerId: inst.id, container: rec.spec, netns: this.ctx.netns, cri: this.ctx.cri, kubeletVersion: this.ctx.kubeletVersion };
    const w = new ProbeWorker(kind, probe, () => runProbe(probe, target), (outcome, changed, result) => this.onProbe(rec, inst, kind, outcome, changed, result));
    w.start();
    return w;
  }

  private onProbe(rec: ContainerRecord, inst: Instance, kind: ProbeKind, outcome: ProbeOutcome, changed: boolean, result: boolean): void {
    if (rec.current !== inst || inst.terminated) return;
    if (!outcome.ok) this.containerEvent(rec, 'Warning', 'Unhealthy', `${kind} probe failed: ${outcome.message.trimEnd()}`);
    if (!changed) return;
    if (kind === 'Startup' && result) {
      rec.probes.Startup?.stop();
      rec.probes = {};
      rec.started = true;
      this.ensureProbes(rec);
    } else if ((kind === 'Startup' || kind === 'Liveness') && !result) {
      rec.killReason = `Container ${rec.spec.name} failed ${kind.toLowerCase()} probe, will be restarted`;
    }
    this.kick();
  }

  private stopProbes(rec?: ContainerRecord): void {
    for (const r of rec ? [rec] : [...this.init, ...this.main]) {
      for (const w of Object.values(r.probes)) w?.stop();
      r.probes = {};
    }
  }

  private async killForRestart(rec: ContainerRecord): Promise<void> {
    const inst = rec.current!;
    this.containerEvent(rec, 'Normal', 'Killing', rec.killReason!);
    rec.killReason = undefined;
    this.stopProbes(rec);
    const probeGrace = rec.spec.livenessProbe?.terminationGracePeriodSeconds;
    const grace = probeGrace ?? podSpec(this.pod).terminationGracePeriodSeconds ?? 30;
    await this.ctx.cri.stopContainer(inst.id, Math.max(grace, MIN_GRACE_SECONDS)).catch(() => undefined);
    await this.refresh(rec);
  }

  // ------------------------------------------------------------------ termination

  /** Stops every running container with the grace period, in parallel. */
  private async killContainers(graceSeconds: number, withEvents = false): Promise<void> {
    const running = [...this.init, ...this.main].filter((r) => r.current && !r.current.terminated);
    await Promise.all(
      running.map(async (rec) => {
        if (withEvents) this.containerEvent(rec, 'Normal', 'Killing', `Stopping container ${rec.spec.name}`);
        await this.ctx.cri.stopContainer(rec.current!.id, graceSeconds).catch((err: unknown) => {
          if (!isNotFound(err)) throw err;
        });
        await this.refresh(rec);
      }),
    );
  }

  private graceSeconds(): number {
    const m = this.pod.metadata;
    const g = m.deletionGracePeriodSeconds ?? podSpec(this.pod).terminationGracePeriodSeconds ?? 30;
    return Math.max(g, MIN_GRACE_SECONDS);
  }

  /** Graceful deletion: SIGTERM, grace period, SIGKILL; sandbox removal; then the API object goes. */
  private async terminate(): Promise<void> {
    this.stopProbes();
    const grace = this.finished ? 0 : this.graceSeconds();
    await this.killContainers(grace, true);
    if (!this.deleted) {
      this.finished = true;
      this.writeStatus(true);
    }
    await this.teardown(0);
    if (!this.deleted) {
      const m = this.pod.metadata;
      try {
        this.ctx.api.delete('v1/pods', m.namespace, m.name!, { gracePeriodSeconds: 0, uid: m.uid! });
      } catch (err) {
        const code = (err as { code?: number }).code;
        if (code !== 404 && code !== 409) throw err;
      }
    }
    this.ctx.events.forget(this.uid);
    this.done = true;
  }

  /** Removes containers, sandbox, volumes and logs of the pod from the node. */
  private async teardown(graceSeconds: number): Promise<void> {
    this.stopProbes();
    await this.killContainers(graceSeconds);
    await this.removeSandbox();
    // Leftover sandboxes of this pod (e.g. from before a kubelet restart).
    for (const sb of await this.ctx.cri.listPodSandbox({ labelSelector: { 'io.kubernetes.pod.uid': this.uid } }).catch(() => [])) {
      await this.ctx.cri.stopPodSandbox(sb.id).catch(() => undefined);
      await this.ctx.cri.removePodSandbox(sb.id).catch(() => undefined);
    }
    await rm(this.podDir, { recursive: true, force: true });
    await rm(podLogDir(this.pod, this.ctx.node.logRoot), { recursive: true, force: true });
  }

  // ------------------------------------------------------------------ status

  private containerView(rec: ContainerRecord, podInitializing: boolean): ContainerView {
    const cur = rec.current;
    const prevTerm = rec.previous?.terminated;
    let state: ContainerState;
    let lastState: ContainerState = prevTerm ? { terminated: prevTerm } : {};
    if (!cur) {
      state = { waiting: rec.waiting ?? { reason: podInitializing ? 'PodInitializing' : 'ContainerCreating' } };
      lastState = {};
    } else if (!cur.terminated) {
      state = { running: { startedAt: cur.startedAt ?? rfc3339(Date.now()) } };
    } else if (this.shouldRestart(rec, cur.terminated.exitCode)) {
      state = { waiting: rec.waiting ?? { reason: 'ContainerCreating' } };
      lastState = { terminated: cur.terminated };
    } else {
      state = { terminated: cur.terminated };
    }
    const running = !!state.running;
    const readiness = rec.probes.Readiness;
    const ready = running && rec.started && (rec.spec.readinessProbe ? !!readiness && readiness.result : true);
    return {
      name: rec.spec.name,
      image: rec.spec.image ?? '',
      state,
      lastState,
      ready: rec.isInit ? false : ready,
      started: running && rec.started,
      restartCount: cur ? cur.attempt : 0,
      imageID: rec.imageRef,
      containerID: cur ? `containerd://${cur.id}` : '',
    };
  }

  private view(): PodView {
    const initDone = this.init.every((r) => r.current?.terminated?.exitCode === 0);
    const firstPendingInit = this.init.find((r) => r.current?.terminated?.exitCode !== 0);
    return {
      sandboxReady: !!this.sandboxId && !this.finished,
      podIps: this.podIps,
      hostIp: this.ctx.node.nodeIp,
      startTime: this.startTime,
      initContainers: this.init.map((r) => this.containerView(r, r !== firstPendingInit)),
      containers: this.main.map((r) => this.containerView(r, !initDone)),
    };
  }

  /** Writes the status when it changed; `terminal` marks the final status of a deleted pod. */
  private writeStatus(terminal = false): void {
    const { api } = this.ctx;
    const m = this.pod.metadata;
    const fresh = api.get('v1/pods', m.namespace, m.name!);
    if (!fresh || fresh.metadata.uid !== m.uid) return;
    const status = computePodStatus(fresh, this.view(), rfc3339(Date.now()), terminal);
    if (semanticEqual(status, fresh.status)) return;
    try {
      this.ownWriteRv = api.updateStatus('v1/pods', { ...fresh, status }).metadata.resourceVersion;
    } catch (err) {
      this.ctx.log(`status of pod ${podDesc(this.pod)} not written: ${(err as Error).message}`);
      this.wakeIn(500);
    }
  }

  // ------------------------------------------------------------------ logs and exec support

  /** The container instance for logs/exec: current, or the previous one. */
  instance(name: string, previous: boolean): { id: string; logPath: string; running: boolean } | undefined {
    const rec = [...this.main, ...this.init].find((r) => r.spec.name === name);
    // As the kubelet: the newest instance (running or not), or with previous the one before it.
    const inst = previous ? rec?.previous : rec?.current;
    if (!inst) return undefined;
    return { id: inst.id, logPath: inst.logPath, running: !inst.terminated };
  }

  /** Why a container has no instance yet (its waiting reason), for log errors. */
  waitingReason(name: string): string | undefined {
    const rec = [...this.main, ...this.init].find((r) => r.spec.name === name);
    return rec?.waiting?.reason;
  }
}

async function readTerminationMessage(path: string): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text.slice(0, 4096);
}

/** Go's codes.Code names, as gRPC errors print in kubelet messages ("rpc error: code = Unknown desc = ..."). */
const GRPC_CODES = ['OK', 'Canceled', 'Unknown', 'InvalidArgument', 'DeadlineExceeded', 'NotFound', 'AlreadyExists', 'PermissionDenied', 'ResourceExhausted', 'FailedPrecondition', 'Aborted', 'OutOfRange', 'Unimplemented', 'Internal', 'Unavailable', 'DataLoss', 'Unauthenticated'];
function grpcCodeName(code: number): string {
  return GRPC_CODES[code] ?? `Code(${code})`;
}
