// The local cluster: the API test server plus N nodes, each a network namespace with its own
// containerd, kubelet, kube-proxy rules and cluster DNS, on an underlay inside a namespace of its
// own (addressing in network.ts). Used by tests and benchmarks as a library and by
// `npm run cluster` (main.ts) as a daemon.
//
// Life cycle: up() first removes whatever a crashed run of the same name left (cleanup()), then
// builds bottom-up — images and network, API server, runtimes, kube-proxy and DNS, kubelets and
// scheduler — and waits for every node to be Ready. down() takes it apart top-down and ends with
// the same cleanup(), so a failure half-way through either leaves nothing behind. What is left on
// the machine afterwards is the image cache, by design.
//
// Each node has a filesystem root of its own, <dir>/nodes/<node>/rootfs (nodefs.ts): hostPath
// volumes of its pods resolve there, and its containerd keeps the node's /etc/cni/net.d,
// /opt/cni/bin and /run/netns there, so no pod ever writes to this machine's real /etc or /run.
import { mkdir, readFile, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ApiServer } from './apiserver/server.js';
import type { KObject } from './apiserver/types.js';
import { ensureAppImages } from './apps/images.js';
import { ClusterDns } from './dns.js';
import { Kubelet } from './kubelet/index.js';
import { KubeProxy } from './kubeproxy.js';
import { createNodeFs, nodeFs, removeNodeFs, type NodeFs } from './nodefs.js';
import { acquireNodeRootTemplate, releaseNodeRootTemplate, seedNodeRoot, type NodeRootTemplate } from './noderoot.js';
import {
  API_SERVER_IP,
  API_SERVER_PORT,
  CLUSTER_CIDR,
  CLUSTER_DNS_IP,
  CLUSTER_DOMAIN,
  NETNS_DIR,
  POD_BRIDGE,
  SERVICE_CIDR,
  createNetwork,
  deleteNetwork,
  existingClusterNetns,
  planNetwork,
  type NetworkPlan,
  type NodeAddressing,
} from './network.js';
import { cleanupHostLeftovers, cleanupNodeRuntime, containerdPaths, detectSnapshotter, startContainerd, stopContainerd, type ContainerdInstance, type Snapshotter } from './runtime/containerd.js';
import { CriClient } from './runtime/cri.js';
import { PAUSE_IMAGE, ensureRuntimeImages, importImage, type BuiltImage } from './runtime/images.js';
import { isRunning, run, waitFor } from './runtime/proc.js';
import { Scheduler } from './scheduler.js';
import { SERVICE_PROXY_NAME_LABEL } from './services.js';
import { createListenSocket, inNetns, openNetns } from '../../src/sys/index.js';

export const DEFAULT_CLUSTER_NAME = 'ambit';
export const STATE_ROOT = '/var/lib/ambit-cluster';
const STATE_FILE = 'cluster.json';

export interface ClusterOptions {
  /** default "ambit"; names the namespaces (ambit-<name>-…) and the state dir */
  name?: string;
  nodes: number;
  /** state dir, default /var/lib/ambit-cluster/<name> */
  dir?: string;
  /** progress and component messages */
  log?: (s: string) => void;
  /** the API server's request log (default: none) */
  serverLog?: (s: string) => void;
  /**
   * Images imported into every node besides pause and base. Default: the demo-app images
   * (test/cluster/apps); pass `async () => []` for a cluster without them.
   */
  images?: () => Promise<BuiltImage[]>;
  /** bound on nodes becoming Ready (default 60 s) */
  readyTimeoutMs?: number;
}

export interface ClusterNode {
  name: string;
  ip: string;
  podCidr: string;
  /** /run/netns/ambit-<cluster>-<node> */
  netns: string;
  /** ambit-<cluster>-<node> (for `ip netns exec`) */
  netnsName: string;
  /** the node's filesystem root: what `/` is for hostPath volumes of its pods (= fs.root) */
  root: string;
  /** the node's well-known places in it: CNI conf/bin dirs, /run/netns, /run/xtables.lock */
  fs: NodeFs;
  containerd: ContainerdInstance;
  cri: CriClient;
  kubelet: Kubelet;
}

/** What `npm run cluster -- down` needs to find a cluster, also after its process died. */
export interface ClusterState {
  name: string;
  /** the process that runs the cluster */
  pid: number;
  dir: string;
  kubeconfig: string;
  apiUrl: string;
  nodes: Array<Pick<NodeAddressing, 'name' | 'ip' | 'podCidr' | 'netns'>>;
  startedAt: string;
}

/** Where each phase of up() went, in ms (for docs/benchmarks.md). */
export interface UpTimings {
  images: number;
  network: number;
  apiServer: number;
  runtimes: number;
  imports: number;
  services: number;
  nodesReady: number;
  total: number;
  imagesBuilt: boolean;
}

export function defaultStateDir(name: string): string {
  return join(STATE_ROOT, name);
}

const nodeDir = (dir: string, node: string): string => join(dir, 'nodes', node);
const containerdDir = (dir: string, node: string): string => join(nodeDir(dir, node), 'containerd');
/** The node's filesystem root (see nodefs.ts). */
export const nodeFsRoot = (dir: string, node: string): string => join(nodeDir(dir, node), 'rootfs');

export class LocalCluster {
  readonly nodes: ClusterNode[] = [];
  readonly kubeconfigPath: string;
  readonly timings: UpTimings = { images: 0, network: 0, apiServer: 0, runtimes: 0, imports: 0, services: 0, nodesReady: 0, total: 0, imagesBuilt: false };
  kubeProxy: KubeProxy | undefined;
  dns: ClusterDns | undefined;
  private scheduler: Scheduler | undefined;
  private template: NodeRootTemplate | undefined;
  private images: BuiltImage[] = [];
  private downing: Promise<void> | undefined;
  private readonly log: (s: string) => void;

  private constructor(
    readonly name: string,
    readonly dir: string,
    readonly plan: NetworkPlan,
    readonly server: ApiServer,
    log: ((s: string) => void) | undefined,
  ) {
    this.kubeconfigPath = join(dir, 'kubeconfig');
    this.log = log ?? (() => {});
  }

  /** Brings a cluster up (cleaning stale state of the same name first) and waits for its nodes to be Ready. */
  static async up(opts: ClusterOptions): Promise<LocalCluster> {
    const started = Date.now();
    const name = opts.name ?? DEFAULT_CLUSTER_NAME;
    const plan = planNetwork(name, opts.nodes);
    const dir = opts.dir ?? defaultStateDir(name);
    const log = opts.log ?? (() => {});
    await refuseIfRunning(dir);
    await LocalCluster.cleanup(name, dir);
    await mkdir(dir, { recursive: true });

    const timings: UpTimings = { images: 0, network: 0, apiServer: 0, runtimes: 0, imports: 0, services: 0, nodesReady: 0, total: 0, imagesBuilt: false };
    const phase = async <T>(what: Exclude<keyof UpTimings, 'imagesBuilt' | 'total'>, fn: () => Promise<T>): Promise<T> => {
      const t = Date.now();
      const r = await fn();
      timings[what] = Date.now() - t;
      log(`${what}: ${timings[what]} ms`);
      return r;
    };

    // Images may take minutes on a cold machine; the network and the API server do not need them.
    const imagesReady = phase('images', () => collectImages(opts.images));
    imagesReady.catch(() => undefined);
    let server: ApiServer | undefined;
    let cluster: LocalCluster | undefined;
    try {
      await phase('network', () => createNetwork(plan));
      server = await phase('apiServer', () => startApiServer(plan, opts.serverLog ?? (() => {})));
      cluster = new LocalCluster(name, dir, plan, server, log);
      Object.assign(cluster.timings, timings);
      await cluster.writeState();
      server.writeKubeconfig(cluster.kubeconfigPath);

      const { images, built } = await imagesReady;
      cluster.images = images;
      timings.imagesBuilt = built;
      // Nodes start from a pre-imported containerd root (see noderoot.ts); without one, each imports.
      const snapshotter = await detectSnapshotter(join(dir, 'nodes'));
      const template = await phase('imports', () => acquireNodeRootTemplate({ images, snapshotter, netns: plan.underlayNetns, log })).catch((err: Error) => {
        log(`no node root template (${err.message}); importing into each node`);
        return undefined;
      });
      cluster.template = template;
      const runtimes = await phase('runtimes', () => Promise.all(plan.nodes.map((n) => startNodeRuntime(dir, n, snapshotter, template?.root))));
      if (!template) await phase('imports', () => Promise.all(runtimes.map((c) => importAll(c, images))));
      await phase('services', () => cluster!.startServices(runtimes));
      await phase('nodesReady', () => cluster!.waitNodesReady(opts.readyTimeoutMs ?? 60_000));
      timings.total = Date.now() - started;
      Object.assign(cluster.timings, timings);
      log(`cluster ${name} up with ${plan.nodes.length} node(s) in ${timings.total} ms`);
      return cluster;
    } catch (err) {
      log(`up failed: ${(err as Error).message}; cleaning up`);
      if (cluster) await cluster.down().catch(() => undefined);
      else {
        await server?.close().catch(() => undefined);
        await LocalCluster.cleanup(name, dir).catch(() => undefined);
      }
      throw err;
    }
  }

  /**
   * Removes every trace of cluster `name` that a (crashed) run left: node runtimes (containerd,
   * shims, containers, mounts), namespaces (with their links, routes and rules), the state dir,
   * and the runtime's empty host dirs. Safe to call when nothing is there.
   */
  static async cleanup(name: string, dir: string = defaultStateDir(name)): Promise<void> {
    const nodesDir = join(dir, 'nodes');
    for (const node of await readdir(nodesDir).catch(() => [] as string[])) {
      await cleanupNodeRuntime(containerdDir(dir, node), node);
      // Throws (leaving the state dir) if something stays mounted in it: rm would go through it.
      await removeNodeFs(nodeFsRoot(dir, node));
    }
    await deleteNetwork(name);
    await rm(dir, { recursive: true, force: true });
    await rmdir(STATE_ROOT).catch(() => undefined); // only when no other cluster (or daemon log) is left in it
    await cleanupHostLeftovers();
  }

  /** The cluster's recorded state, if a cluster of that dir exists (running or crashed). */
  static async readState(dir: string): Promise<ClusterState | undefined> {
    const text = await readFile(join(dir, STATE_FILE), 'utf8').catch(() => undefined);
    return text ? (JSON.parse(text) as ClusterState) : undefined;
  }

  /** Stops everything and removes every trace (the image cache stays). Idempotent. */
  down(): Promise<void> {
    this.downing ??= this.teardown();
    return this.downing;
  }

  /** Imports another image (e.g. one built after up) into every node. */
  async importImage(image: BuiltImage): Promise<void> {
    await Promise.all(this.nodes.map((n) => importAll(n.containerd, [image])));
    if (!this.images.some((i) => i.name === image.name)) this.images.push(image);
  }

  /** Runs a command in a node's network namespace (host tools; the node has no other isolation). */
  runInNode(node: string, argv: string[], timeoutMs = 30_000): Promise<string> {
    const n = this.node(node);
    return run(['ip', 'netns', 'exec', n.netnsName, ...argv], { timeoutMs });
  }

  node(name: string): ClusterNode {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no node ${name} in cluster ${this.name} (nodes: ${this.nodes.map((x) => x.name).join(', ')})`);
    return n;
  }

  // ------------------------------------------------------------------ up, step by step

  private async startServices(runtimes: ContainerdInstance[]): Promise<void> {
    const api = this.server.registry.clientFor();
    createKubeDnsService(api.create.bind(api));
    // kube-proxy takes each node's own xtables lock, the one a hostPath /run/xtables.lock shows.
    const proxyNodes = this.plan.nodes.map((n) => ({ name: n.name, netns: n.netns, xtablesLock: nodeFs(nodeFsRoot(this.dir, n.name)).xtablesLock }));
    this.kubeProxy = new KubeProxy({ api, nodes: proxyNodes, clusterCidr: CLUSTER_CIDR, log: this.log });
    this.dns = new ClusterDns({ api, nodes: this.plan.nodes.map((n) => ({ name: n.name, netnsPath: join(NETNS_DIR, n.netns) })), log: this.log });
    await Promise.all([this.kubeProxy.start(), this.dns.start()]);

    this.plan.nodes.forEach((n, i) => {
      const containerd = runtimes[i]!;
      const cri = new CriClient(containerd.socket);
      const kubelet = new Kubelet({
        nodeName: n.name,
        nodeIp: n.ip,
        podCidr: n.podCidr,
        netnsPath: join(NETNS_DIR, n.netns),
        containerd,
        cri,
        api,
        issueToken: this.server.issueServiceAccountToken.bind(this.server),
        caPem: this.server.caPem,
        clusterDns: CLUSTER_DNS_IP,
        clusterDomain: CLUSTER_DOMAIN,
        dataDir: join(nodeDir(this.dir, n.name), 'kubelet'),
        nodeFsRoot: nodeFsRoot(this.dir, n.name),
        log: (s) => this.log(`${n.name}: ${s}`),
      });
      const fs = nodeFs(nodeFsRoot(this.dir, n.name));
      this.nodes.push({ name: n.name, ip: n.ip, podCidr: n.podCidr, netns: join(NETNS_DIR, n.netns), netnsName: n.netns, root: fs.root, fs, containerd, cri, kubelet });
    });
    this.server.nodeConnection = {
      logs: (pod, q, req, res) => this.kubeletOf(pod).logs(pod, q, req, res),
      exec: (pod, q, req, socket, head) => this.kubeletOf(pod).exec(pod, q, req, socket, head),
    };
    await Promise.all(this.nodes.map((n) => n.kubelet.start()));
    this.scheduler = new Scheduler({ api, bind: (ns, pod, node) => this.server.registry.bind(ns, pod, node), log: this.log });
    this.scheduler.start();
  }

  private kubeletOf(pod: KObject): Kubelet {
    const nodeName = (pod.spec as { nodeName?: string } | undefined)?.nodeName;
    const n = this.nodes.find((x) => x.name === nodeName);
    if (!n) throw new Error(`pod ${pod.metadata.namespace}/${pod.metadata.name} is not on a node of this cluster`);
    return n.kubelet;
  }

  private async waitNodesReady(timeoutMs: number): Promise<void> {
    const api = this.server.registry.clientFor();
    await waitFor(
      `nodes ${this.plan.nodes.map((n) => n.name).join(', ')} to be Ready`,
      () => (this.plan.nodes.every((n) => isNodeReady(api.get('v1/nodes', undefined, n.name))) ? true : undefined),
      timeoutMs,
      50,
    );
  }

  private async writeState(): Promise<void> {
    const state: ClusterState = {
      name: this.name,
      pid: process.pid,
      dir: this.dir,
      kubeconfig: this.kubeconfigPath,
      apiUrl: this.server.url,
      nodes: this.plan.nodes.map((n) => ({ name: n.name, ip: n.ip, podCidr: n.podCidr, netns: n.netns })),
      startedAt: new Date().toISOString(),
    };
    await writeFile(join(this.dir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
  }

  // ------------------------------------------------------------------ down

  private async teardown(): Promise<void> {
    const step = async (what: string, fn: () => unknown) => {
      try {
        await fn();
      } catch (err) {
        this.log(`down: ${what}: ${(err as Error).message}`);
      }
    };
    await step('scheduler', () => this.scheduler?.stop());
    // Kubelets stop their loops; containerd's stop below drains every pod sandbox (CNI DEL included).
    await step('kubelets', () => Promise.all(this.nodes.map((n) => withTimeout(n.kubelet.stop(), 30_000, `kubelet ${n.name} stop`))));
    await step('kube-proxy', () => this.kubeProxy?.stop());
    await step('dns', () => this.dns?.stop());
    this.server.nodeConnection = undefined;
    await step('api server', () => withTimeout(this.server.close(), 10_000, 'API server close'));
    for (const n of this.nodes) n.cri.close();
    await step('runtimes', () => Promise.all(this.plan.nodes.map((n) => stopContainerd({ dir: containerdDir(this.dir, n.name), name: n.name }))));
    await step('cleanup', () => LocalCluster.cleanup(this.name, this.dir));
    // Only now: the nodes' snapshot dirs were symlinks into the template.
    if (this.template) await step('template', () => releaseNodeRootTemplate(this.template!));
    const left = existingClusterNetns(this.name);
    if (left.length) this.log(`down: namespaces still present: ${left.join(', ')}`);
  }
}

// ------------------------------------------------------------------ helpers of up()

async function refuseIfRunning(dir: string): Promise<void> {
  const state = await LocalCluster.readState(dir);
  if (state && state.pid !== process.pid && isRunning(state.pid) && (await isClusterProcess(state.pid))) {
    throw new Error(`cluster ${state.name} is running (pid ${state.pid}); stop it first with: npm run cluster -- down --name ${state.name}`);
  }
}

/** A recycled pid must not pass for the cluster's process: it has to be a node process. */
async function isClusterProcess(pid: number): Promise<boolean> {
  const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
  return (argv[0] ?? '').endsWith('node');
}

async function collectImages(extra: ClusterOptions['images']): Promise<{ images: BuiltImage[]; built: boolean }> {
  const [{ base, pause }, more] = await Promise.all([ensureRuntimeImages(), (extra ?? defaultAppImages)()]);
  const images = [pause, base, ...more];
  return { images, built: images.some((i) => i.built) };
}

/** The demo-app images (test/cluster/apps), built or taken from the cache. */
export function defaultAppImages(): Promise<BuiltImage[]> {
  return ensureAppImages();
}

async function startApiServer(plan: NetworkPlan, log: (s: string) => void): Promise<ApiServer> {
  const server = await ApiServer.start({
    host: '127.0.0.1',
    port: 0,
    serviceCidr: SERVICE_CIDR,
    advertiseAddress: API_SERVER_IP,
    advertisePort: API_SERVER_PORT,
    extraSans: { ips: [API_SERVER_IP] },
    log,
  });
  try {
    // Nodes and pods reach the server on the underlay; kubectl on the host uses loopback.
    const ns = openNetns(join(NETNS_DIR, plan.underlayNetns));
    let fd: number;
    try {
      fd = inNetns(ns, () => createListenSocket({ family: 4, host: API_SERVER_IP, port: API_SERVER_PORT }));
    } finally {
      ns.close();
    }
    await server.addListener(fd);
  } catch (err) {
    await server.close();
    throw err;
  }
  return server;
}

async function startNodeRuntime(dir: string, n: NodeAddressing, snapshotter: Snapshotter, templateRoot: string | undefined): Promise<ContainerdInstance> {
  if (templateRoot) await seedNodeRoot(templateRoot, containerdPaths(containerdDir(dir, n.name)).root);
  const fs = await createNodeFs(nodeFsRoot(dir, n.name));
  return startContainerd({
    snapshotter,
    name: n.name,
    netns: n.netns,
    dir: containerdDir(dir, n.name),
    nodeFsRoot: fs.root,
    podCidr: n.podCidr,
    sandboxImage: PAUSE_IMAGE,
    bridgeName: POD_BRIDGE,
    // Exec/attach streams are served inside the node netns; the kubelet connects there.
    streamAddress: '127.0.0.1',
  });
}

/** Imports each archive once: several images may share one multi-image archive. */
async function importAll(c: ContainerdInstance, images: readonly BuiltImage[]): Promise<void> {
  const archives = [...new Set(images.map((img) => img.archive))];
  await Promise.all(archives.map((archive) => importImage(c.socket, archive, c.snapshotter)));
}

/**
 * kube-system/kube-dns at the cluster DNS address, as clusters have it (tools look it up). The DNS
 * server itself binds that address on every node, so the Service carries the service-proxy-name
 * label: kube-proxy must not program it (it has no endpoints and would be REJECTed).
 */
function createKubeDnsService(create: (resource: string, obj: KObject) => KObject): void {
  create('v1/services', {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: 'kube-dns',
      namespace: 'kube-system',
      labels: { 'k8s-app': 'kube-dns', 'kubernetes.io/name': 'CoreDNS', [SERVICE_PROXY_NAME_LABEL]: 'ambit-node-local-dns' },
    },
    spec: {
      type: 'ClusterIP',
      clusterIP: CLUSTER_DNS_IP,
      ports: [
        { name: 'dns', port: 53, protocol: 'UDP', targetPort: 53 },
        { name: 'dns-tcp', port: 53, protocol: 'TCP', targetPort: 53 },
      ],
    },
  } as KObject);
}

export function isNodeReady(node: KObject | undefined): boolean {
  const conds = ((node?.status as { conditions?: Array<{ type: string; status: string }> } | undefined)?.conditions ?? []);
  return conds.some((c) => c.type === 'Ready' && c.status === 'True');
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
