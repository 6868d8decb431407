// The kubelet of one local-cluster node. It speaks the CRI to the node's containerd and the
// in-process ApiClient to the API test server: registers the Node and keeps its status and Lease
// fresh, watches the pods bound to the node and runs one PodWorker per pod, relists the runtime
// every second (the PLEG) to notice container exits quickly, and serves `kubectl logs` and
// `kubectl exec` for its pods (the API server hands those requests over via NodeConnection).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import type { ApiClient, WatchEvent } from '../apiserver/controllers/client.js';
import { SERVER_VERSION, type ApiServer } from '../apiserver/server.js';
import type { KObject } from '../apiserver/types.js';
import { openNetns, type NetnsHandle } from '../../../src/sys/index.js';
import type { ContainerdInstance } from '../runtime/containerd.js';
import type { ContainerState, CriClient } from '../runtime/cri.js';
import { Backoff, CRASH_BACKOFF, IMAGE_BACKOFF } from './backoff.js';
import { EventRecorder } from './events.js';
import { parseLogQuery, streamLog } from './logs.js';
import { leaseObject, nodeObject, nodeStatus, type NodeFacts } from './node.js';
import { PodWorker, type WorkerContext } from './podworker.js';
import { serveExec, type ExecQuery } from './remotecommand.js';
import { LABEL } from './runtimespec.js';
import { podSpec, type Obj } from './spec.js';

export interface KubeletOptions {
  nodeName: string;
  nodeIp: string;
  podCidr: string;
  /** the node's network namespace (probes connect from here), e.g. /run/netns/ambit-c-node-1 */
  netnsPath: string;
  containerd: ContainerdInstance;
  cri: CriClient;
  api: ApiClient;
  issueToken: ApiServer['issueServiceAccountToken'];
  caPem: string;
  clusterDns: string;
  clusterDomain: string;
  /** pod volumes (<dataDir>/pods/<uid>) and logs (<dataDir>/logs/<ns>_<name>_<uid>) */
  dataDir: string;
  /**
   * The node's filesystem root (../nodefs.ts): hostPath `P` of a pod is `<nodeFsRoot>/P`, never
   * this machine's `P`. Created on demand by hostPath volumes that create.
   */
  nodeFsRoot: string;
  log?: (s: string) => void;
  /** pods the node accepts (status.capacity.pods); default 110 */
  maxPods?: number;
  /** retry delay after a failed sandbox creation or container config error; default 10 s (the kubelet's) */
  syncRetryMs?: number;
  /** runtime relist period; default 1 s (the kubelet's PLEG) */
  relistMs?: number;
}

/** The version the kubelet reports: the API server's, so `kubectl get nodes` shows a consistent cluster. */
export const KUBELET_VERSION = SERVER_VERSION.gitVersion;
const NODE_STATUS_MS = 10_000;
const NODE_STATUS_FORCE_MS = 60_000;
const LEASE_RENEW_MS = 10_000;

type HttpError = { code: number; reason: string; message: string };

export class Kubelet {
  private readonly log: (s: string) => void;
  private readonly workers = new Map<string, PodWorker>();
  private readonly timers: NodeJS.Timeout[] = [];
  private unwatch: (() => void) | undefined;
  private netns: NetnsHandle | undefined;
  private ctx: WorkerContext | undefined;
  private facts: NodeFacts | undefined;
  private nodeReady = false;
  private lastNodeStatusMs = 0;
  private lastContainerStates = new Map<string, ContainerState>();
  private relisting = false;
  private stopped = false;

  constructor(readonly opts: KubeletOptions) {
    this.log = opts.log ?? (() => {});
  }

  get nodeName(): string {
    return this.opts.nodeName;
  }

  /** Registers the node, starts the heartbeats and begins running the node's pods. */
  async start(): Promise<void> {
    const o = this.opts;
    await mkdir(join(o.dataDir, 'pods'), { recursive: true });
    await mkdir(join(o.dataDir, 'logs'), { recursive: true });
    this.netns = openNetns(o.netnsPath);
    const version = await o.cri.version();
    this.facts = nodeFacts(o, `${version.runtimeName}://${version.runtimeVersion}`);
    this.ctx = {
      node: { nodeName: o.nodeName, nodeIp: o.nodeIp, clusterDns: o.clusterDns, clusterDomain: o.clusterDomain, logRoot: join(o.dataDir, 'logs') },
      dataDir: o.dataDir,
      nodeFsRoot: o.nodeFsRoot,
      cri: o.cri,
      api: o.api,
      events: new EventRecorder(o.api, o.nodeName, this.log),
      netns: this.netns,
      issueToken: o.issueToken,
      caPem: o.caPem,
      kubeletVersion: KUBELET_VERSION.replace(/^v/, '').split('-')[0]!,
      crashBackoff: new Backoff(CRASH_BACKOFF.initialMs, CRASH_BACKOFF.maxMs),
      imageBackoff: new Backoff(IMAGE_BACKOFF.initialMs, IMAGE_BACKOFF.maxMs),
      syncRetryMs: o.syncRetryMs ?? 10_000,
      log: this.log,
    };
    await this.registerNode();
    this.renewLease();
    this.every(LEASE_RENEW_MS, () => this.renewLease());
    this.every(NODE_STATUS_MS, () => this.updateNodeStatus());
    // A restarted kubelet starts its pods afresh: sandboxes left from before are removed.
    await this.removeAllSandboxes();
    this.unwatch = o.api.watch('v1/pods', (ev) => setImmediate(() => this.onPodEvent(ev)));
    for (const pod of o.api.list('v1/pods', { fieldSelector: `spec.nodeName=${o.nodeName}` }).items) this.onPodEvent({ type: 'ADDED', object: pod });
    this.every(o.relistMs ?? 1_000, () => this.relist());
    this.every(60_000, () => {
      this.ctx?.crashBackoff.gc(Date.now());
      this.ctx?.imageBackoff.gc(Date.now());
    });
    this.log(`kubelet of ${o.nodeName} started (${this.facts.containerRuntimeVersion})`);
  }

  /** Stops syncing. Pods keep running unless `killPods` (then their containers and sandboxes go; API objects stay). */
  async stop(opts: { killPods?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.unwatch?.();
    for (const t of this.timers) clearInterval(t);
    await Promise.all([...this.workers.values()].map((w) => w.stop(opts.killPods === true)));
    this.workers.clear();
    this.netns?.close();
  }

  private every(ms: number, fn: () => void | Promise<void>): void {
    const t = setInterval(() => {
      if (this.stopped) return;
      Promise.resolve(fn()).catch((err: Error) => this.log(`kubelet ${this.nodeName}: ${err.message}`));
    }, ms);
    t.unref();
    this.timers.push(t);
  }

  // ------------------------------------------------------------------ node and lease

  private async registerNode(): Promise<void> {
    const { api } = this.opts;
    const want = nodeObject(this.facts!);
    let node = api.get('v1/nodes', undefined, this.nodeName);
    if (!node) {
      node = api.create('v1/nodes', want);
    } else {
      node = api.update('v1/nodes', { ...node, metadata: { ...node.metadata, labels: { ...(node.metadata.labels ?? {}), ...want.metadata.labels } }, spec: { ...(node.spec as Obj), ...(want.spec as Obj) } });
    }
    await this.updateNodeStatus(true);
  }

  private async updateNodeStatus(force = false): Promise<void> {
    const ready = await this.opts.cri.isReady().catch(() => false);
    const now = Date.now();
    if (!force && ready === this.nodeReady && now - this.lastNodeStatusMs < NODE_STATUS_FORCE_MS) return;
    const { api } = this.opts;
    const node = api.get('v1/nodes', undefined, this.nodeName);
    if (!node) return;
    api.updateStatus('v1/nodes', { ...node, status: { ...(node.status as Obj), ...nodeStatus(this.facts!, ready, now, node.status as Obj) } });
    this.nodeReady = ready;
    this.lastNodeStatusMs = now;
  }

  private renewLease(): void {
    const { api } = this.opts;
    const node = api.get('v1/nodes', undefined, this.nodeName);
    if (!node) return;
    const want = leaseObject(node, Date.now());
    const cur = api.get('coordination.k8s.io/v1/leases', 'kube-node-lease', this.nodeName);
    if (!cur) api.create('coordination.k8s.io/v1/leases', want);
    else api.update('coordination.k8s.io/v1/leases', { ...cur, spec: { ...(cur.spec as Obj), ...(want.spec as Obj) } });
  }

  // ------------------------------------------------------------------ pods

  private onPodEvent(ev: WatchEvent): void {
    if (this.stopped) return;
    const pod = ev.object;
    if (podSpec(pod).nodeName !== this.nodeName) return;
    const uid = pod.metadata.uid ?? '';
    const w = this.workers.get(uid);
    if (ev.type === 'DELETED') {
      w?.markDeleted(pod);
      return;
    }
    if (w) {
      w.update(pod);
      return;
    }
    // A pod that finished before this kubelet saw it is not run again.
    const phase = (pod.status as Obj | undefined)?.phase;
    if ((phase === 'Succeeded' || phase === 'Failed') && !pod.metadata.deletionTimestamp) return;
    if (!pod.metadata.deletionTimestamp && this.rejectOverCapacity(pod)) return;
    const worker = new PodWorker(pod, this.ctx!);
    this.workers.set(uid, worker);
    worker.start(() => {
      if (this.workers.get(uid) === worker) this.workers.delete(uid);
    });
  }

  /**
   * Admission, as the real kubelet does it for pods bound past the scheduler: a node runs at most
   * maxPods pods; one more fails with reason OutOfpods instead of running.
   */
  private rejectOverCapacity(pod: KObject): boolean {
    const capacity = this.opts.maxPods ?? 110;
    const used = this.workers.size;
    if (used < capacity) return false;
    const message = `Pod was rejected: Node didn't have enough resource: pods, requested: 1, used: ${used}, capacity: ${capacity}`;
    const status = { ...((pod.status as Obj | undefined) ?? {}), phase: 'Failed', reason: 'OutOfpods', message };
    try {
      this.opts.api.updateStatus('v1/pods', { ...pod, status });
    } catch (err) {
      this.log(`rejecting ${pod.metadata.namespace}/${pod.metadata.name}: ${(err as Error).message}`);
    }
    return true;
  }

  /** The PLEG: one ListContainers a second; a container whose state changed wakes its pod's worker. */
  private async relist(): Promise<void> {
    if (this.relisting) return;
    this.relisting = true;
    try {
      const states = new Map<string, ContainerState>();
      for (const c of await this.opts.cri.listContainers()) {
        states.set(c.id, c.state);
        if (this.lastContainerStates.get(c.id) !== c.state) this.workers.get(c.labels[LABEL.podUid] ?? '')?.kick();
      }
      this.lastContainerStates = states;
    } finally {
      this.relisting = false;
    }
  }

  private async removeAllSandboxes(): Promise<void> {
    const { cri } = this.opts;
    for (const sb of await cri.listPodSandbox()) {
      await cri.stopPodSandbox(sb.id).catch(() => undefined);
      await cri.removePodSandbox(sb.id).catch(() => undefined);
    }
  }

  // ------------------------------------------------------------------ logs and exec

  /** The container a logs/exec request means: the named one, or the only one. */
  private resolveContainer(pod: KObject, requested: string | undefined): string | HttpError {
    const spec = podSpec(pod);
    const names = spec.containers.map((c) => c.name);
    const initNames = (spec.initContainers ?? []).map((c) => c.name);
    const name = pod.metadata.name;
    if (!requested) {
      if (names.length === 1) return names[0]!;
      let message = `a container name must be specified for pod ${name}, choose one of: [${names.join(' ')}]`;
      if (initNames.length) message += ` or one of the init containers: [${initNames.join(' ')}]`;
      return { code: 400, reason: 'BadRequest', message };
    }
    if (!names.includes(requested) && !initNames.includes(requested)) return { code: 400, reason: 'BadRequest', message: `container ${requested} is not valid for pod ${name}` };
    return requested;
  }

  /** Serves GET pods/log (NodeConnection.logs). */
  logs(pod: KObject, query: URLSearchParams, req: IncomingMessage, res: ServerResponse): void {
    const fail = (e: HttpError) => {
      const body = JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: e.message, reason: e.reason, code: e.code });
      res.writeHead(e.code, { 'Content-Type': 'application/json' });
      res.end(body);
    };
    let opts;
    try {
      opts = parseLogQuery(query, Date.now());
    } catch (err) {
      return fail({ code: 400, reason: 'BadRequest', message: (err as Error).message });
    }
    const name = this.resolveContainer(pod, opts.container);
    if (typeof name !== 'string') return fail(name);
    const w = this.workers.get(pod.metadata.uid ?? '');
    const podName = pod.metadata.name;
    const inst = w?.instance(name, opts.previous);
    if (!w || !inst) {
      if (opts.previous) return fail({ code: 400, reason: 'BadRequest', message: `previous terminated container "${name}" in pod "${podName}" not found` });
      return fail({ code: 400, reason: 'BadRequest', message: `container "${name}" in pod "${podName}" is waiting to start: ${waitingText(w?.waitingReason(name))}` });
    }
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Cache-Control': 'no-cache, private' });
    let closed = false;
    req.on('close', () => (closed = true));
    res.on('close', () => (closed = true));
    const sink = {
      write: (chunk: string) => res.write(chunk),
      get closed() {
        return closed || res.destroyed;
      },
    };
    const stillRunning = async () => !w.isDone && !!w.instance(name, false)?.running && w.instance(name, false)?.id === inst.id;
    streamLog(inst.logPath, opts, sink, stillRunning)
      .catch((err: NodeJS.ErrnoException) => {
        // No log file yet (the container has not written anything): an empty log.
        if (err.code !== 'ENOENT') this.log(`logs of ${podName}/${name}: ${err.message}`);
      })
      .finally(() => res.end());
  }

  /** Serves the pods/exec upgrade (NodeConnection.exec). */
  exec(pod: KObject, query: URLSearchParams, req: IncomingMessage, socket: Socket, head: Buffer): void {
    const w = this.workers.get(pod.metadata.uid ?? '');
    let containerId = '';
    serveExec(req, socket, head, query, {
      check: (q: ExecQuery) => {
        const name = this.resolveContainer(pod, q.container);
        if (typeof name !== 'string') return name.message;
        const inst = w?.instance(name, false);
        if (!inst || !inst.running) return `container not found ("${name}")`;
        containerId = inst.id;
        return undefined;
      },
      run: (q: ExecQuery) => this.opts.cri.execSync(containerId, q.command, 0),
    });
  }
}

/** What the kubelet says about a container that cannot be logged yet (kuberuntime logs). */
function waitingText(reason: string | undefined): string {
  if (reason === 'ErrImagePull') return 'trying and failing to pull image';
  if (reason === 'ImagePullBackOff') return 'image can\'t be pulled';
  return reason ?? 'ContainerCreating';
}

function nodeFacts(o: KubeletOptions, containerRuntimeVersion: string): NodeFacts {
  const osRelease = readText('/etc/os-release');
  const pretty = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(osRelease)?.[1] ?? 'Linux';
  const arch = os.arch() === 'x64' ? 'amd64' : os.arch() === 'arm64' ? 'arm64' : os.arch();
  return {
    name: o.nodeName,
    ip: o.nodeIp,
    podCidr: o.podCidr,
    cpus: os.cpus().length,
    memoryBytes: os.totalmem(),
    maxPods: o.maxPods ?? 110,
    kernelVersion: os.release(),
    osImage: pretty,
    containerRuntimeVersion,
    kubeletVersion: KUBELET_VERSION,
    // Distinct per node (they share one machine): derived from the node name.
    machineId: createHash('sha256').update(`ambit-node/${o.nodeName}`).digest('hex').slice(0, 32),
    bootId: readText('/proc/sys/kernel/random/boot_id').trim(),
    architecture: arch,
  };
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
