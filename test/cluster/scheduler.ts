// The local cluster's scheduler: binds pods that name no node (and ask for default-scheduler) to a
// Ready, schedulable node, as kube-scheduler's default filters would allow — nodeSelector and
// required node affinity, taints against tolerations (NoSchedule/NoExecute), host ports, the
// node's pod capacity — and spreads them by choosing the feasible node with the fewest pods.
// When no node fits it records a FailedScheduling event and the PodScheduled=False condition with
// kube-scheduler's message, and tries again when nodes or pods change (and every few seconds).
import type { ApiClient, WatchEvent } from './apiserver/controllers/client.js';
import { rfc3339, semanticEqual } from './apiserver/controllers/meta.js';
import { findUntoleratedTaint, podFitsNodeAffinity, type Taint, type Toleration } from './apiserver/controllers/selectors.js';
import type { KObject } from './apiserver/types.js';
import { EventRecorder } from './kubelet/events.js';

export interface SchedulerOptions {
  api: ApiClient;
  /** pods/binding: sets spec.nodeName (the server's registry.bind) */
  bind: (ns: string, pod: string, node: string) => void;
  log?: (s: string) => void;
  /** retry period for unschedulable pods; default 5 s */
  retryMs?: number;
}

type Obj = Record<string, any>;

/** Why a node was rejected, as kube-scheduler words it in "0/N nodes are available: ...". */
export type Rejection = string;

function isNodeReady(node: KObject): boolean {
  return ((node.status as Obj | undefined)?.conditions ?? []).some((c: Obj) => c.type === 'Ready' && c.status === 'True');
}

function isTerminal(pod: KObject): boolean {
  const phase = (pod.status as Obj | undefined)?.phase;
  return phase === 'Succeeded' || phase === 'Failed';
}

/** A pod this scheduler should place. */
export function needsScheduling(pod: KObject): boolean {
  const spec = (pod.spec ?? {}) as Obj;
  if (spec.nodeName || pod.metadata.deletionTimestamp || isTerminal(pod)) return false;
  return (spec.schedulerName ?? 'default-scheduler') === 'default-scheduler';
}

/** The taints a node effectively has: its own plus the ones the node lifecycle controller would add. */
export function effectiveTaints(node: KObject): Taint[] {
  const spec = (node.spec ?? {}) as Obj;
  const taints: Taint[] = [...((spec.taints as Taint[] | undefined) ?? [])];
  if (spec.unschedulable && !taints.some((t) => t.key === 'node.kubernetes.io/unschedulable')) taints.push({ key: 'node.kubernetes.io/unschedulable', effect: 'NoSchedule' });
  if (!isNodeReady(node) && !taints.some((t) => t.key === 'node.kubernetes.io/not-ready')) taints.push({ key: 'node.kubernetes.io/not-ready', effect: 'NoSchedule' });
  return taints;
}

function hostPorts(pod: KObject): string[] {
  const out: string[] = [];
  for (const c of ((pod.spec as Obj)?.containers ?? []) as Obj[]) {
    for (const p of (c.ports ?? []) as Obj[]) if (p.hostPort) out.push(`${p.protocol ?? 'TCP'}/${p.hostIP || '0.0.0.0'}/${p.hostPort}`);
  }
  return out;
}

function portsConflict(a: string[], b: string[]): boolean {
  const parse = (s: string) => {
    const [proto, ip, port] = s.split('/');
    return { proto, ip, port };
  };
  return a.some((x) => {
    const p = parse(x);
    return b.some((y) => {
      const q = parse(y);
      return p.proto === q.proto && p.port === q.port && (p.ip === q.ip || p.ip === '0.0.0.0' || q.ip === '0.0.0.0');
    });
  });
}

/** The filter plugins: undefined when `pod` fits `node`, else the reason. `podsOnNode` are active pods bound there. */
export function filterNode(pod: KObject, node: KObject, podsOnNode: KObject[]): Rejection | undefined {
  const spec = (pod.spec ?? {}) as Obj;
  if (!podFitsNodeAffinity(spec, node)) return "node(s) didn't match Pod's node affinity/selector";
  const taint = findUntoleratedTaint(effectiveTaints(node), (spec.tolerations as Toleration[] | undefined) ?? [], (t) => t.effect === 'NoSchedule' || t.effect === 'NoExecute');
  if (taint) return `node(s) had untolerated taint {${taint.key}: ${taint.value ?? ''}}`;
  const maxPods = Number((node.status as Obj | undefined)?.allocatable?.pods ?? 110);
  if (podsOnNode.length + 1 > maxPods) return 'Too many pods';
  const ports = hostPorts(pod);
  if (ports.length && podsOnNode.some((p) => portsConflict(ports, hostPorts(p)))) return "node(s) didn't have free ports for the requested pod ports";
  return undefined;
}

/** kube-scheduler's FitError message: "0/3 nodes are available: 1 Too many pods, 2 node(s) had ...". */
export function unschedulableMessage(nodeCount: number, reasons: Rejection[]): string {
  const counts = new Map<string, number>();
  for (const r of reasons) counts.set(r, (counts.get(r) ?? 0) + 1);
  const parts = [...counts].map(([r, n]) => `${n} ${r}`).sort();
  const head = `0/${nodeCount} nodes are available`;
  const preemption = `preemption: 0/${nodeCount} nodes are available: ${nodeCount} Preemption is not helpful for scheduling.`;
  return parts.length ? `${head}: ${parts.join(', ')}. ${preemption}` : `${head}. ${preemption}`;
}

export type Decision = { node: string } | { message: string };

/** Picks the feasible node with the fewest pods (ties: by name), or explains why none fits. */
export function schedule(pod: KObject, nodes: KObject[], podsByNode: Map<string, KObject[]>): Decision {
  const reasons: Rejection[] = [];
  let best: { name: string; count: number } | undefined;
  for (const node of [...nodes].sort((a, b) => (a.metadata.name! < b.metadata.name! ? -1 : 1))) {
    const name = node.metadata.name!;
    const onNode = podsByNode.get(name) ?? [];
    const why = filterNode(pod, node, onNode);
    if (why) {
      reasons.push(why);
      continue;
    }
    if (!best || onNode.length < best.count) best = { name, count: onNode.length };
  }
  return best ? { node: best.name } : { message: unschedulableMessage(nodes.length, reasons) };
}

export class Scheduler {
  private readonly log: (s: string) => void;
  private readonly events: EventRecorder;
  private unwatchPods: (() => void) | undefined;
  private unwatchNodes: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private scheduled = false;
  private stopped = true;
  /** last FailedScheduling message per pod uid, so a retry that fails the same way writes nothing new */
  private readonly lastFailure = new Map<string, string>();

  constructor(readonly opts: SchedulerOptions) {
    this.log = opts.log ?? (() => {});
    this.events = new EventRecorder(opts.api, '', this.log, 'default-scheduler');
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    const onChange = (ev: WatchEvent) => {
      if (ev.type === 'DELETED' && ev.object.kind !== 'Node') this.lastFailure.delete(ev.object.metadata.uid ?? '');
      this.soon();
    };
    this.unwatchPods = this.opts.api.watch('v1/pods', onChange);
    this.unwatchNodes = this.opts.api.watch('v1/nodes', onChange);
    this.timer = setInterval(() => this.soon(), this.opts.retryMs ?? 5_000);
    this.timer.unref();
    this.soon();
  }

  stop(): void {
    this.stopped = true;
    this.unwatchPods?.();
    this.unwatchNodes?.();
    if (this.timer) clearInterval(this.timer);
  }

  /** Coalesces bursts of watch events into one scheduling pass (never inside a watch callback). */
  private soon(): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (this.stopped) return;
      try {
        this.pass();
      } catch (err) {
        this.log(`scheduler: ${(err as Error).message}`);
      }
    });
  }

  /** One pass over every pending pod, oldest first; each binding counts for the next decision. */
  private pass(): void {
    const { api } = this.opts;
    const pods = api.list('v1/pods').items;
    const pending = pods.filter(needsScheduling).sort((a, b) => (a.metadata.creationTimestamp ?? '').localeCompare(b.metadata.creationTimestamp ?? ''));
    if (pending.length === 0) return;
    const nodes = api.list('v1/nodes').items;
    const podsByNode = new Map<string, KObject[]>();
    for (const p of pods) {
      const n = (p.spec as Obj)?.nodeName;
      if (n && !isTerminal(p)) podsByNode.set(n, [...(podsByNode.get(n) ?? []), p]);
    }
    for (const pod of pending) {
      const d = schedule(pod, nodes, podsByNode);
      const ns = pod.metadata.namespace!;
      const name = pod.metadata.name!;
      if ('node' in d) {
        try {
          this.opts.bind(ns, name, d.node);
        } catch (err) {
          this.log(`scheduler: binding ${ns}/${name} to ${d.node}: ${(err as Error).message}`);
          continue;
        }
        podsByNode.set(d.node, [...(podsByNode.get(d.node) ?? []), pod]);
        this.lastFailure.delete(pod.metadata.uid ?? '');
        this.events.record(pod, { type: 'Normal', reason: 'Scheduled', message: `Successfully assigned ${ns}/${name} to ${d.node}` });
      } else {
        this.markUnschedulable(pod, d.message);
      }
    }
  }

  private markUnschedulable(pod: KObject, message: string): void {
    const uid = pod.metadata.uid ?? '';
    if (this.lastFailure.get(uid) === message) return;
    this.lastFailure.set(uid, message);
    this.events.record(pod, { type: 'Warning', reason: 'FailedScheduling', message });
    const { api } = this.opts;
    const cur = api.get('v1/pods', pod.metadata.namespace, pod.metadata.name!);
    if (!cur || cur.metadata.uid !== uid) return;
    const status = { ...((cur.status as Obj | undefined) ?? {}) };
    const conds = ((status.conditions ?? []) as Obj[]).filter((c) => c.type !== 'PodScheduled');
    const prev = ((status.conditions ?? []) as Obj[]).find((c) => c.type === 'PodScheduled');
    const cond = { type: 'PodScheduled', status: 'False', lastProbeTime: null, lastTransitionTime: prev?.status === 'False' ? prev.lastTransitionTime : rfc3339(Date.now()), reason: 'Unschedulable', message };
    status.conditions = [...conds, cond];
    status.phase = status.phase ?? 'Pending';
    if (semanticEqual(status, cur.status)) return;
    try {
      api.updateStatus('v1/pods', { ...cur, status });
    } catch (err) {
      this.log(`scheduler: status of ${pod.metadata.namespace}/${pod.metadata.name}: ${(err as Error).message}`);
    }
  }
}
