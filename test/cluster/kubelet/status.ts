// The pod status the kubelet reports (kubelet_pods.go generateAPIPodStatus / getPhase and the
// status manager's condition rules), computed purely from what the pod worker knows about the
// sandbox and each container. Transition times of unchanged conditions are kept.
import type { KObject } from '../apiserver/types.js';
import type { Obj } from './spec.js';
import { podSpec } from './spec.js';

export interface TerminatedState {
  exitCode: number;
  reason: string;
  message?: string;
  signal?: number;
  startedAt: string | null;
  finishedAt: string | null;
  containerID: string;
}

export interface ContainerState {
  waiting?: { reason: string; message?: string };
  running?: { startedAt: string };
  terminated?: TerminatedState;
}

/** What the pod worker knows about one container (spec name order is kept by the caller). */
export interface ContainerView {
  name: string;
  image: string;
  state: ContainerState;
  lastState: ContainerState;
  ready: boolean;
  started: boolean;
  restartCount: number;
  imageID: string;
  /** containerd://<id>, '' before the first create */
  containerID: string;
}

export interface PodView {
  sandboxReady: boolean;
  podIps: string[];
  hostIp: string;
  startTime?: string;
  initContainers: ContainerView[];
  containers: ContainerView[];
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason?: string;
  message?: string;
  lastProbeTime: null;
  lastTransitionTime: string;
}

/**
 * getPhase: Pending / Running / Succeeded / Failed from the container states. `podIsTerminal`:
 * the pod was stopped for good (deleted), so stopped containers no longer count as restarting.
 */
export function podPhase(pod: KObject, view: PodView, podIsTerminal = false): string {
  const policy = podSpec(pod).restartPolicy ?? 'Always';
  let pendingInit = false;
  for (const c of view.initContainers) {
    const t = c.state.terminated;
    if (t && t.exitCode === 0) continue;
    // Never restarts a failed init container, so the pod has failed.
    if (t && policy === 'Never') return 'Failed';
    pendingInit = true;
  }
  let running = 0;
  let waiting = 0;
  let stopped = 0;
  let succeeded = 0;
  for (const c of view.containers) {
    if (c.state.running) running++;
    else if (c.state.terminated) {
      stopped++;
      if (c.state.terminated.exitCode === 0) succeeded++;
    } else if (c.state.waiting) {
      if (c.lastState.terminated) stopped++;
      else waiting++;
    } else waiting++;
  }
  if (pendingInit && !podIsTerminal) return 'Pending';
  if (waiting > 0) return 'Pending';
  if (running > 0) return 'Running';
  if (stopped > 0) {
    if (podIsTerminal) return stopped === succeeded ? 'Succeeded' : 'Failed';
    if (policy === 'Always') return 'Running';
    if (stopped === succeeded) return 'Succeeded';
    if (policy === 'Never') return 'Failed';
    return 'Running';
  }
  return 'Pending';
}

function names(cs: ContainerView[]): string {
  return `[${cs.map((c) => c.name).join(' ')}]`;
}

/** The conditions the kubelet owns, in the order it writes them. */
export function podConditions(pod: KObject, view: PodView, phase: string): Omit<Condition, 'lastProbeTime' | 'lastTransitionTime'>[] {
  const out: Omit<Condition, 'lastProbeTime' | 'lastTransitionTime'>[] = [];
  const terminal = phase === 'Succeeded' || phase === 'Failed';
  out.push({ type: 'PodReadyToStartContainers', status: view.sandboxReady && !terminal ? 'True' : 'False' });

  const initIncomplete = view.initContainers.filter((c) => !(c.state.terminated && c.state.terminated.exitCode === 0));
  if (initIncomplete.length === 0 || phase === 'Succeeded') out.push({ type: 'Initialized', status: 'True' });
  else out.push({ type: 'Initialized', status: 'False', reason: 'ContainersNotInitialized', message: `containers with incomplete status: ${names(initIncomplete)}` });

  let ready: Omit<Condition, 'lastProbeTime' | 'lastTransitionTime'>;
  let containersReady: Omit<Condition, 'lastProbeTime' | 'lastTransitionTime'>;
  const unready = view.containers.filter((c) => !c.ready);
  if (phase === 'Succeeded' || (terminal && unready.length === view.containers.length)) {
    containersReady = { type: 'ContainersReady', status: 'False', reason: 'PodCompleted' };
    ready = { type: 'Ready', status: 'False', reason: 'PodCompleted' };
  } else if (initIncomplete.length > 0 && phase !== 'Succeeded') {
    const msg = `containers with incomplete status: ${names(initIncomplete)}`;
    containersReady = { type: 'ContainersReady', status: 'False', reason: 'ContainersNotInitialized', message: msg };
    ready = { type: 'Ready', status: 'False', reason: 'ContainersNotInitialized', message: msg };
  } else if (unready.length > 0) {
    const msg = `containers with unready status: ${names(unready)}`;
    containersReady = { type: 'ContainersReady', status: 'False', reason: 'ContainersNotReady', message: msg };
    ready = { type: 'Ready', status: 'False', reason: 'ContainersNotReady', message: msg };
  } else {
    containersReady = { type: 'ContainersReady', status: 'True' };
    ready = readinessGatesCondition(pod) ?? { type: 'Ready', status: 'True' };
  }
  out.push(ready, containersReady);
  return out;
}

/** Ready=False when a readiness gate's condition is missing or not True (undefined: all gates pass). */
function readinessGatesCondition(pod: KObject): Omit<Condition, 'lastProbeTime' | 'lastTransitionTime'> | undefined {
  const conds = ((pod.status as Obj | undefined)?.conditions ?? []) as Condition[];
  const missing: string[] = [];
  const notTrue: string[] = [];
  for (const g of podSpec(pod).readinessGates ?? []) {
    const c = conds.find((x) => x.type === g.conditionType);
    if (!c) missing.push(g.conditionType);
    else if (c.status !== 'True') notTrue.push(g.conditionType);
  }
  if (missing.length === 0 && notTrue.length === 0) return undefined;
  const parts = [
    ...missing.map((t) => `corresponding condition of pod readiness gate "${t}" does not exist.`),
    ...(notTrue.length ? [`the status of pod readiness gate ${JSON.stringify(notTrue.join(', '))} is not "True", but False.`] : []),
  ];
  return { type: 'Ready', status: 'False', reason: 'ReadinessGatesNotReady', message: parts.join(', ') };
}

const KUBELET_CONDITIONS = new Set(['PodReadyToStartContainers', 'Initialized', 'Ready', 'ContainersReady']);

function containerStatus(c: ContainerView): Obj {
  const s: Obj = {
    name: c.name,
    state: c.state,
    lastState: c.lastState,
    ready: c.ready,
    restartCount: c.restartCount,
    image: c.image,
    imageID: c.imageID,
    started: c.started,
  };
  if (c.containerID) s.containerID = c.containerID;
  return s;
}

/**
 * The full status to write: ours for phase, IPs, our conditions and container statuses; kept
 * from `pod.status` for the rest (PodScheduled, conditions set by others, qosClass, ...).
 */
export function computePodStatus(pod: KObject, view: PodView, nowIso: string, podIsTerminal = false): Obj {
  const old = (pod.status as Obj | undefined) ?? {};
  const phase = podPhase(pod, view, podIsTerminal);
  const oldConds = ((old.conditions ?? []) as Condition[]).filter((c) => c && typeof c.type === 'string');
  const conditions: Condition[] = podConditions(pod, view, phase).map((c) => {
    const prev = oldConds.find((o) => o.type === c.type);
    const since = prev && prev.status === c.status ? prev.lastTransitionTime : nowIso;
    return { ...c, lastProbeTime: null, lastTransitionTime: since };
  });
  for (const c of oldConds) if (!KUBELET_CONDITIONS.has(c.type)) conditions.push(c);
  const status: Obj = { ...old, phase, conditions, hostIP: view.hostIp, hostIPs: [{ ip: view.hostIp }] };
  if (view.podIps.length) {
    status.podIP = view.podIps[0];
    status.podIPs = view.podIps.map((ip) => ({ ip }));
  }
  if (view.startTime) status.startTime = view.startTime;
  if (view.initContainers.length) status.initContainerStatuses = view.initContainers.map(containerStatus);
  status.containerStatuses = view.containers.map(containerStatus);
  return status;
}

/** Equal apart from ordering of keys (no timestamps are generated for unchanged data). */
export function statusEqual(a: unknown, b: unknown): boolean {
  return stable(a) === stable(b);
}

function stable(x: unknown): string {
  return JSON.stringify(x, (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Obj).sort(([p], [q]) => (p < q ? -1 : 1))) : v,
  );
}

/** The reason the kubelet gives a terminated container: Completed (0), OOMKilled, else Error. */
export function terminatedReason(exitCode: number, runtimeReason: string): string {
  if (runtimeReason === 'OOMKilled') return 'OOMKilled';
  return exitCode === 0 ? 'Completed' : 'Error';
}
