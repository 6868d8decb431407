/**
 * ambit-agent composed: the node's enrolment (Enroller) wired to the real effects — the pod netns
 * finder, the in-pod redirection executor, the in-pod listeners, the host's probe SNAT — fed by
 * watches of this node's Pods and of Namespaces, answering the CNI plugin, and keeping the plugin
 * installed in the node's CNI chain. src/main/agent.ts builds one from the environment; tests may
 * build one in process.
 *
 * Start order matters for "fail closed": the CNI server listens before the plugin is installed
 * (an installed plugin with nobody answering would hold every new pod), and readiness waits for
 * both the plugin and the first reconcile of the node's pods.
 *
 * Stop has two meanings. A restart or upgrade (the DaemonSet still exists) leaves the rules and the
 * plugin in place: enrolled pods keep their capture (new connections fail until the next agent
 * listens) and new pods in enrolled namespaces wait. An uninstall removes the plugin, every pod's
 * rules and the node's probe SNAT, so nothing of Ambit remains on the node.
 */
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { AgentConfig } from '../config/agent.js';
import { resolverFromResolvConf } from '../config/agent.js';
import type { HostPort } from '../config/settings.js';
import { installCni, uninstallCni } from '../cni/install.js';
import type { KubeConnection } from '../k8s/client.js';
import { RESOURCES } from '../k8s/resources.js';
import { WatchedCollection, type ListWatchTransport } from '../k8s/watch.js';
import { InPodProxy, addStats, emptyStats, type InPodStats } from '../proxy/index.js';
import type { KubeObject, PodObject } from '../state/objects.js';
import { peerCredentials, socketFd } from '../sys/index.js';
import { MeshProxy } from '../proxy/mesh/node.js';
import { ProxyWorkerPool } from '../proxy/workers/index.js';
import { captureCpuProfile, type CpuProfile } from '../telemetry/profile.js';
import { CniServer } from './cni-server.js';
import { AgentCertMetrics, CertificateManager } from './certs.js';
import { ControlLink } from './control-link.js';
import { MeshConfig } from './mesh-config.js';
import { Enroller, NetnsFinder, type EnrolEffects, type PodRef, type PodSnapshot } from './enrol/index.js';
import type { AgentMetrics } from './metrics.js';
import {
  applyRedirection,
  freshApplyCommands,
  hostProbeSyncCommands,
  WarmPool,
  decideBackend,
  hostRunner,
  inspectRedirection,
  probeNode,
  redirectConfig,
  removeHostProbeSnat,
  removeRedirection,
  syncHostProbeSnat,
  type Backend,
  type RedirectConfig,
} from './redirect/index.js';

export interface AgentOptions {
  config: AgentConfig;
  kube: KubeConnection | ListWatchTransport;
  /** GET a pod (the CNI ADD that beats the watch); omitted: such an ADD waits for the watch */
  getPod?: (namespace: string, name: string) => Promise<PodObject | undefined>;
  /** GET the control plane's roots from the API (before the kubelet has mounted them) */
  getRootCert?: () => Promise<string | undefined>;
  log: Logger;
  metrics: AgentMetrics;
  /** how often the plugin's install and the host's probe SNAT are checked again (default 10 s) */
  maintainEveryMs?: number;
}

export interface AgentReadiness {
  ready: boolean;
  reason: string;
}

export class Agent {
  private readonly proxies = new Map<string, InPodProxy>();
  /** stats of closed proxies, so the captured-traffic counters never go down */
  private retired: InPodStats = emptyStats();
  private cniInstalled = false;
  private cniProblem = 'the CNI plugin is not installed yet';
  private maintainTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** processes started ahead for CNI ADD's rule writes (no fork of the agent on the request's path) */
  private warm: WarmPool | undefined;

  private constructor(
    private readonly opts: AgentOptions,
    readonly backend: Backend,
    readonly redirect: RedirectConfig,
    readonly enroller: Enroller,
    private readonly pods: WatchedCollection<PodObject>,
    private readonly namespaces: WatchedCollection<KubeObject>,
    private readonly cni: CniServer,
    readonly mesh: MeshConfig,
    readonly certs: CertificateManager,
    private readonly control: ControlLink,
    readonly proxy: MeshProxy,
    /**
     * the proxy's worker threads (--proxy-workers ≥ 1); undefined (0): the main thread proxies.
     * Even one worker pays: the data path's buffers make V8 collect often, and a worker's heap holds
     * only the proxy, while the main thread's holds the watches and the config as well.
     */
    readonly workers: ProxyWorkerPool | undefined,
  ) {}

  static async start(opts: AgentOptions): Promise<Agent> {
    const { config, log, metrics } = opts;
    const evidence = await probeNode(hostRunner);
    const decision = decideBackend(config.redirectBackend, evidence);
    log.info({ backend: decision.value, why: decision.reason }, 'redirection backend chosen');
    const redirect = redirectConfig({ dnsCapture: config.dnsCapture });
    const upstream = config.dnsUpstream ?? (await readResolver(log));

    // The mesh: config and certificates from ambit-control. Never awaited here: enrolment (capture)
    // needs no control plane; connections wait for a certificate or use the last config held.
    const mesh = new MeshConfig({ log: log.child({ component: 'mesh-config' }) });
    const workers = config.proxyWorkers >= 1 ? await startWorkers(opts, redirect, mesh) : undefined;
    const control = ControlLink.start({
      node: config.nodeName,
      address: config.controlAddress,
      serverName: config.controlServerName,
      rootsFile: config.controlRoots,
      tokenFile: config.tokenFile,
      log: log.child({ component: 'control' }),
      mesh,
      ...(opts.getRootCert ? { fetchRoots: opts.getRootCert } : {}),
    });
    const certs: CertificateManager = new CertificateManager({
      signer: control,
      log: log.child({ component: 'certs' }),
      metrics: new AgentCertMetrics(metrics.registry, () => certs),
      ttlSeconds: Math.round(config.certTtlMs / 1000),
    });
    const proxy = new MeshProxy({ view: mesh.liveView(), credentials: certs, log: log.child({ component: 'proxy' }), registry: metrics.registry, certificateWaitMs: config.certWaitMs });
    if (workers) {
      // Certificates reach every worker on issue and renewal; release makes them forget the key.
      certs.on('issued', (cert) => workers.setCredentials(cert.podUid, cert));
      certs.on('released', (uid) => workers.releaseCredentials(uid));
      certs.on('failed', (pod, err) => workers.credentialsFailed(pod.uid, err.message));
    }

    const finder = new NetnsFinder({ netnsDir: config.netnsDir, log });
    const warm = new WarmPool({ commands: [...freshApplyCommands(decision.value, redirect.families), ...hostProbeSyncCommands(decision.value, redirect.families)] });
    const holder: { agent?: Agent } = {};
    const effects: EnrolEffects = {
      findNetns: (pod, hint) => finder.find(pod, hint),
      // (the enroller times both into ambit_agent_rule_programming_seconds)
      applyRedirection: (netns, opts) => applyRedirection(netns, { backend: decision.value, config: redirect }, { ...opts, warm }),
      removeRedirection: (netns) => removeRedirection(netns, redirect),
      hasRedirection: async (netns) => {
        const p = await inspectRedirection(netns, redirect);
        return p['iptables-legacy'] || p['iptables-nft'] || p.nft || p.routing[4] || p.routing[6];
      },
      openProxy: async (netns, pod) => {
        if (pod.uid) certs.ensure(pod);
        return holder.agent!.openProxy(netns, pod, upstream);
      },
      // The fast path (own backend only): on the CNI ADD path every process is latency; the
      // periodic sync in maintain() cleans the other backends.
      syncProbeSnat: (ips, o) => syncHostProbeSnat(ips, { backend: decision.value, config: redirect, warm, ...(o?.full ? {} : { ownBackendOnly: true }) }),
      ...(opts.getPod ? { lookupPod: opts.getPod } : {}),
    };
    const enroller = new Enroller({ nodeName: config.nodeName, effects, metrics, log: log.child({ component: 'enrol' }) });

    const onChange = (): void => holder.agent?.reconcileSoon();
    const pods = new WatchedCollection<PodObject>({
      resource: RESOURCES.pods,
      transport: opts.kube,
      fieldSelector: `spec.nodeName=${config.nodeName}`,
      sink: onChange,
      resyncMs: config.resyncMs,
      onRestart: (reason, err) => log.warn({ err, reason }, 'pod watch restarted'),
    });
    const namespaces = new WatchedCollection<KubeObject>({
      resource: RESOURCES.namespaces,
      transport: opts.kube,
      sink: onChange,
      resyncMs: config.resyncMs,
      onRestart: (reason, err) => log.warn({ err, reason }, 'namespace watch restarted'),
    });

    const cni = await CniServer.start({
      socketPath: config.cniSocket,
      handlers: {
        enrol: (req) => enroller.onCniAdd(req),
        release: (req) => enroller.onCniDel(req),
        check: async (req) => {
          const entry = enroller.snapshot().find((p) => p.uid === req.pod.uid || (p.namespace === req.pod.namespace && p.name === req.pod.name));
          if (!entry || entry.want !== 'enrolled') return { ok: true };
          if (entry.state !== 'enrolled') return { ok: false, problem: `the pod is ${entry.state}${entry.lastError ? `: ${entry.lastError}` : ''}` };
          return (await effects.hasRedirection(entry.netns!)) ? { ok: true } : { ok: false, problem: 'the redirection rules are missing from the pod netns' };
        },
      },
      log: log.child({ component: 'cni' }),
      onRequest: (r) => metrics.recordCniRequest(r),
      // Any process in the node's netns can reach an abstract socket; only root (the runtime) may ask.
      verifyPeer: (sock) => {
        const { uid, pid } = peerCredentials(socketFd(sock));
        return uid === 0 ? undefined : `the caller (pid ${pid}, uid ${uid}) is not root; only the container runtime runs ambit-cni`;
      },
    });

    const agent = new Agent(opts, decision.value, redirect, enroller, pods, namespaces, cni, mesh, certs, control, proxy, workers);
    holder.agent = agent;
    agent.warm = warm;
    agent.registerTrafficMetrics(metrics.registry);
    pods.start();
    namespaces.start();
    await agent.maintain();
    agent.maintainTimer = setInterval(() => void agent.maintain(), opts.maintainEveryMs ?? 10_000);
    agent.maintainTimer.unref();
    void Promise.all([pods.synced, namespaces.synced]).then(() => agent.reconcileSoon());
    return agent;
  }

  readiness(): AgentReadiness {
    if (!this.cniInstalled) return { ready: false, reason: this.cniProblem };
    if (!this.pods.isSynced || !this.namespaces.isSynced) return { ready: false, reason: 'waiting for the pod and namespace watches to sync' };
    if (!this.enroller.ready()) return { ready: false, reason: "reconciling the node's pods" };
    return { ready: true, reason: '' };
  }

  /** Per-pod enrolment state, for the admin endpoint and tests. */
  snapshot(): PodSnapshot[] {
    return this.enroller.snapshot();
  }

  /** CPU profiles of the main thread and every proxy worker, taken side by side (/debug/cpu-profile). */
  async cpuProfiles(ms: number): Promise<{ main: CpuProfile; workers: Array<CpuProfile | { error: string }> }> {
    const [main, workers] = await Promise.all([captureCpuProfile(ms), this.workers ? this.workers.cpuProfiles(ms) : Promise.resolve([])]);
    return { main, workers };
  }

  /** What the in-pod listeners relayed so far, over every pod this agent has served. */
  async trafficStats(): Promise<InPodStats> {
    if (this.workers) return this.workers.stats();
    let total = this.retired;
    for (const p of this.proxies.values()) total = addStats(total, p.stats());
    return total;
  }

  /**
   * Stops the agent. `uninstall`: also remove the CNI plugin, every pod's redirection and the
   * host's probe SNAT (the DaemonSet is gone). Otherwise everything stays for the next agent.
   */
  async stop(opts: { uninstall: boolean }): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.maintainTimer);
    this.pods.stop();
    this.namespaces.stop();
    const { log, config } = this.opts;
    if (opts.uninstall) {
      // The plugin first: from now on new pods start unmeshed instead of waiting for an agent that never comes.
      await uninstallCni({ confDir: config.cniConfDir, binDir: config.cniBinDir }).catch((err: Error) => log.error({ err }, 'could not remove ambit-cni from the CNI chain'));
    }
    await this.cni.close();
    const enrolled = this.enroller.snapshot().filter((p) => p.netns && p.state === 'enrolled');
    await this.enroller.stop({ closeListeners: false });
    this.control.close();
    this.certs.close();
    await this.warm?.close();
    if (opts.uninstall) {
      for (const p of enrolled) {
        await removeRedirection(p.netns!, this.redirect).catch((err: Error) => log.error({ err, pod: `${p.namespace}/${p.name}` }, 'could not remove the redirection'));
      }
      await removeHostProbeSnat({ config: this.redirect }).catch((err: Error) => log.error({ err }, 'could not remove the host probe SNAT'));
      log.info({ pods: enrolled.length }, 'uninstalled: CNI plugin, pod redirection and probe SNAT removed');
    }
    await this.drain(config.drainMs);
  }

  /**
   * Graceful drain: the in-pod listeners stop accepting at once (the pods' rules stay: a restart's
   * next agent takes over), open connections get `drainMs` to finish, then the rest is cut.
   */
  private async drain(drainMs: number): Promise<void> {
    if (this.workers) {
      const { open, left } = await this.workers.drain(drainMs);
      this.opts.log.info({ open, left, drainMs, workers: this.workers.size }, left === 0 ? 'drained: every connection finished' : 'drain time over: the connections still open were cut');
      await this.workers.close();
      await this.proxy.close(0);
      return;
    }
    const started = Date.now();
    const proxies = [...this.proxies.values()];
    for (const p of proxies) p.close();
    const open = (): number => proxies.reduce((n, p) => n + p.activeConnections, 0);
    const before = open();
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([
      Promise.all(proxies.map((p) => p.idle())).then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), drainMs))),
    ]);
    clearTimeout(timer);
    this.opts.log.info({ open: before, left: open(), ms: Date.now() - started, drainMs }, finished ? 'drained: every connection finished' : 'drain time over: cutting the connections still open');
    await this.proxy.close(Math.max(0, drainMs - (Date.now() - started)));
    for (const p of proxies) p.destroy();
  }

  private reconcileSoon(): void {
    if (this.stopped || !this.pods.isSynced || !this.namespaces.isSynced) return;
    const labels = new Map<string, Record<string, string>>();
    for (const ns of this.namespaces.list()) if (ns.metadata.name) labels.set(ns.metadata.name, ns.metadata.labels ?? {});
    void this.enroller.reconcile(this.pods.list(), labels).catch((err: Error) => this.opts.log.error({ err }, 'reconcile failed'));
  }

  private async openProxy(netns: string, pod: PodRef, upstream: HostPort | undefined): Promise<{ close(): Promise<void> }> {
    const key = pod.uid || `${pod.namespace}/${pod.name}`;
    const workers = this.workers;
    if (workers) {
      // Every worker listens (SO_REUSEPORT); established connections keep running after close.
      await workers.openPod(netns, pod, upstream);
      return {
        close: async () => {
          await workers.closePod(key);
          if (pod.uid) this.certs.release(pod.uid);
        },
      };
    }
    const mesh = this.proxy.forPod(pod);
    const proxy = await InPodProxy.open(netns, pod, {
      config: this.redirect,
      log: this.opts.log.child({ component: 'proxy', pod: `${pod.namespace}/${pod.name}` }),
      dnsUpstream: () => upstream,
      handlers: mesh.handlers,
      dnsAnswer: mesh.dnsAnswer,
    });
    this.proxies.set(key, proxy);
    return {
      close: async () => {
        proxy.close();
        if (pod.uid) this.certs.release(pod.uid);
        // Open tunnels run on (un-enrolment must not cut connections); the server takes no new ones.
        void mesh.close(3600_000);
        if (this.proxies.get(key) === proxy) this.proxies.delete(key);
        // Established connections keep running after close(); their bytes count once they end.
        void proxy.idle().then(() => (this.retired = addStats(this.retired, proxy.stats())));
      },
    };
  }

  /** Keeps the plugin installed (a rewritten conflist loses our entry) and the probe SNAT first in line. */
  private async maintain(): Promise<void> {
    const { config, log } = this.opts;
    try {
      const r = await installCni({
        confDir: config.cniConfDir,
        binDir: config.cniBinDir,
        binary: config.cniPlugin,
        entry: { agentSocket: config.cniSocket, excludeNamespaces: config.cniExcludeNamespaces },
      });
      if (r.conflistChanged || r.pluginChanged || !this.cniInstalled) log.info({ conflist: r.conflist, plugin: r.plugin }, 'ambit-cni installed in the node CNI chain');
      this.cniInstalled = true;
    } catch (err) {
      this.cniProblem = (err as Error).message;
      if (this.cniInstalled) log.error({ err }, 'ambit-cni is no longer installed');
      else log.warn({ err }, 'cannot install ambit-cni yet; retrying');
      this.cniInstalled = false;
    }
    if (!this.enroller.ready()) return;
    // kube-proxy restarting puts its jump ahead of ours; a periodic full sync puts ours first again.
    await this.enroller.refreshProbes();
  }

  /** The node's metrics as /metrics serves them: with workers, their registries merged with the agent's. */
  metrics(): Promise<string> {
    return this.workers ? this.workers.metrics() : this.opts.metrics.registry.metrics();
  }

  /** Captured connections and bytes as counters, read from the listeners when Prometheus scrapes. */
  private registerTrafficMetrics(registry: Registry): void {
    const m = this.opts.metrics;
    let last = emptyStats();
    // (a counter never goes down: max(0, …) guards against a worker whose last counts were lost)
    const inc = (counter: { inc(labels: { direction: string }, n: number): void }, direction: string, n: number): void => counter.inc({ direction }, Math.max(0, n));
    let running: Promise<void> | undefined;
    // Asynchronous with workers (their stats come by message); concurrent scrapes share one collection.
    const collect = (): Promise<void> =>
      (running ??= (async () => {
        try {
          const now = await this.trafficStats();
          inc(m.capturedConnections, 'outbound', now.outbound.opened - last.outbound.opened);
          inc(m.capturedConnections, 'inbound', now.inbound.opened - last.inbound.opened);
          inc(m.capturedBytesTotal, 'outbound', bytes(now.outbound) - bytes(last.outbound));
          inc(m.capturedBytesTotal, 'inbound', bytes(now.inbound) - bytes(last.inbound));
          m.dnsQueries.inc(Math.max(0, now.dnsUdp.queries + now.dns.opened - last.dnsUdp.queries - last.dns.opened));
          last = now;
        } finally {
          running = undefined;
        }
      })());
    // prom-client reads every metric of a scrape at once, each after its own collect(): all three
    // wait for the one shared collection, so none is a scrape behind.
    for (const name of ['ambit_agent_captured_connections_total', 'ambit_agent_captured_bytes_total', 'ambit_agent_dns_queries_total']) {
      (registry.getSingleMetric(name) as unknown as { collect?: () => Promise<void> }).collect = collect;
    }
  }
}

const bytes = (s: { bytesFromDownstream: number; bytesToDownstream: number }): number => s.bytesFromDownstream + s.bytesToDownstream;

async function readResolver(log: Logger): Promise<HostPort | undefined> {
  const text = await readFile('/etc/resolv.conf', 'utf8').catch(() => '');
  const upstream = resolverFromResolvConf(text);
  if (upstream) log.info({ upstream }, 'captured DNS goes to the cluster resolver from resolv.conf');
  else log.warn('no nameserver in /etc/resolv.conf: captured DNS queries cannot be answered; set --dns-upstream');
  return upstream;
}

/** The proxy's worker threads, fed with every accepted config (certificates are wired by the caller). */
async function startWorkers(opts: AgentOptions, redirect: RedirectConfig, mesh: MeshConfig): Promise<ProxyWorkerPool> {
  const { config, log, metrics } = opts;
  const workers = await ProxyWorkerPool.start({
    workers: config.proxyWorkers,
    config: redirect,
    // The workers index the config with the agent's own builder (src/proxy never imports the agent).
    view: { module: new URL('./mesh-config.js', import.meta.url).href, export: 'buildIndex' },
    log,
    registry: metrics.registry,
    workerLog: { name: 'ambit-agent', level: config.logLevel },
    mesh: { certificateWaitMs: config.certWaitMs },
    resolve: (address) => mesh.resolve(address),
  }).catch((err: Error) => {
    throw new Error(`${err.message}; --proxy-workers=0 runs the proxy on the main thread instead`, { cause: err });
  });
  // Registered before any on-demand lookup waits on 'changed': a worker has the config before the
  // answer to its lookup reaches it.
  mesh.on('changed', () => workers.setConfig(mesh.accepted!));
  if (mesh.accepted) workers.setConfig(mesh.accepted);
  return workers;
}
