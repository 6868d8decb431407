/**
 * ambit-control composed: Kubernetes watches → debounced recompute (model → node snapshots) →
 * PushHub → agents; status of user objects; the CA with its Secret; telemetry. Every decision is
 * made by the pure modules (state/model, control/snapshot, state/status, control/nack-status,
 * control/authz-csr); this file only wires them to I/O and to each other.
 *
 * Data flow:
 *   WatchedCollection × 10 ──event──► affectsModel? (affected.ts: Node heartbeats, Pod conditions
 *   and status-only writes on policies do not count) ──► debounce (config.debounceMs) ──►
 *   recompute(): computeModel(all cached objects) → nodesToRecompute (the nodes whose snapshot can
 *   have changed: a Pod change costs its node and the nodes holding it as a peer, not every node)
 *   → snapshotFor each → hub.publish (sends only where the version changed) → status writes
 *   (Accepted from validation, Programmed from NACKs), only when they change.
 * Every node (Node objects, nodes running pods, nodes with subscribers) has a current snapshot,
 * not only those with subscribers, so each replica holds the same versions in its history and an
 * agent can resume on either replica with an empty delta.
 *
 * HA: the replicas share nothing but the API server. Both compute, both serve, both write status;
 * status writes carry the resourceVersion they were computed from, so a racing replica gets a
 * 409 and the next watch event shows it the other's (equal) result.
 *
 * On-demand scope: an agent that meets an address outside its node's scope (a Service VIP or pod
 * IP) sends a Demand on its stream; the node's scope then includes the Service or pod behind it
 * (`#demand`, `demandedScope`), pushed at once as a delta and kept in every later recompute.
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { ControlConfig } from '../config/control.js';
import { serviceDnsNames } from '../config/control.js';
import { loadOrCreateCa, type CertificateAuthority } from '../identity/ca.js';
import { ApiError, type KubeConnection } from '../k8s/client.js';
import { RESOURCES, objectPath, type WatchedResource } from '../k8s/resources.js';
import { WatchedCollection } from '../k8s/watch.js';
import { computeModel, type ClusterObjects, type MeshConfig, type MeshModel, type ObjectStatus, type StatusKind } from '../state/model.js';
import type { EndpointSliceObject, KubeObject, PodObject, ServiceObject } from '../state/objects.js';
import { keyOf } from '../state/objects.js';
import { statusFor } from '../state/status.js';
import type { ControlMetrics, Readiness } from '../telemetry/metrics.js';
import { affectsModel, nodesToRecompute } from './affected.js';
import { cachedTokenReview, type AuthzLookups, type PodFacts } from './authz-csr.js';
import { kubeSecretStore, publishTrustRoots } from './ca-secret.js';
import { NackBook, objectOfResource, refKey, withProgrammed, type ObjectRef } from './nack-status.js';
import { PushHub, type PushObserver } from './push-hub.js';
import { PushServer } from './push.js';
import { demandedScope, snapshotBytes, snapshotFor } from './snapshot.js';

/**
 * Node scope: the Services a node's own workloads serve, plus what its agent asked for on demand
 * (a Service VIP or pod IP it met; `#demand`). Rule (c) (every Service of the namespaces of the
 * node's enrolled workloads) stays off: with namespaces spread over nodes it ships a third of the
 * mesh to every node (docs/benchmarks.md, control).
 */
export const NODE_SCOPE = { namespaceServices: false } as const;

/** Bound on a node's on-demand addresses (a misbehaving agent cannot grow the scope without end). */
const MAX_DEMANDS_PER_NODE = 4096;

export interface ControlPlaneOptions {
  config: ControlConfig;
  kube: KubeConnection;
  log: Logger;
  metrics: ControlMetrics;
}

/** The resources whose objects carry a status we write, by model kind. */
const STATUS_RESOURCE: Record<StatusKind, WatchedResource> = {
  AuthorizationPolicy: 'authorizationPolicies',
  PeerAuthentication: 'peerAuthentications',
  HTTPRoute: 'httpRoutes',
  GRPCRoute: 'grpcRoutes',
};

/** Resources whose objects carry a status we write. */
const STATUS_KINDS = new Set<WatchedResource>(Object.values(STATUS_RESOURCE));

/** How often, with no change at all, everything is recomputed (trust-bundle window, status retries) and the roots republished. */
const PERIODIC_MS = 60_000;
/** A status write that failed is retried after this long. */
const STATUS_RETRY_MS = 5000;

export class ControlPlane {
  readonly hub: PushHub;
  readonly collections: { [K in WatchedResource]: WatchedCollection<KubeObject> };
  #push: PushServer | undefined;
  readonly #opts: ControlPlaneOptions;
  readonly #log: Logger;
  readonly #ca: CertificateAuthority;
  readonly #mesh: MeshConfig;
  readonly #podKeyByUid = new Map<string, string>();
  readonly #subscribedNodes = new Map<string, number>();
  readonly #nacks = new NackBook();
  /** object ref → what the last status write was computed from (resourceVersion + inputs): no duplicate writes */
  readonly #statusWritten = new Map<string, string>();
  #statusQueue: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout | undefined;
  #due = 0;
  #periodic: NodeJS.Timeout | undefined;
  #computed = false;
  /** the model and trust roots the current snapshots were computed from */
  #last: { model: MeshModel; roots: string } | undefined;
  /** on-demand scope: per node, the addresses its agent asked for (kept for the node's life) */
  readonly #demands = new Map<string, Set<string>>();
  #statusOnly: NodeJS.Timeout | undefined;
  #stopped = false;
  #recomputes = 0;

  private constructor(opts: ControlPlaneOptions, ca: CertificateAuthority) {
    this.#opts = opts;
    this.#log = opts.log;
    this.#ca = ca;
    const c = opts.config;
    this.#mesh = { trustDomain: c.trustDomain, rootNamespace: c.rootNamespace, clusterDomain: c.clusterDomain };
    this.hub = new PushHub({ observer: this.#hubObserver() });
    this.collections = Object.fromEntries(
      (Object.keys(RESOURCES) as WatchedResource[]).map((name) => [name, this.#collection(name)]),
    ) as ControlPlane['collections'];
  }

  /**
   * Loads (or creates) the CA, starts the watches, serves the push API. Resolves once the push
   * server listens; readiness follows when every watch has listed and the first push is computed.
   */
  static async start(opts: ControlPlaneOptions): Promise<ControlPlane> {
    const { config: c, kube, log } = opts;
    const caLog = log.child({ component: 'ca' });
    const ca = await loadOrCreateCa(
      {
        own: kubeSecretStore(kube, c.namespace, c.caSecret),
        ...(c.pluggedCaSecret ? { plugged: kubeSecretStore(kube, c.namespace, c.pluggedCaSecret) } : {}),
      },
      { trustDomain: c.trustDomain, workloadTtlMs: c.workloadCertTtlMs },
    );
    caLog.info({ roots: ca.trustBundle().roots.length, caNotAfter: ca.caNotAfter.toISOString() }, 'CA loaded');
    const plane = new ControlPlane(opts, ca);
    await plane.#publishRoots();
    const dnsNames = serviceDnsNames(c);
    const tls = await ca.issueServing({ dnsNames, ips: c.podIp ? [c.podIp] : [], ttlMs: c.servingCertTtlMs, commonName: dnsNames[2] });
    for (const col of Object.values(plane.collections)) col.start();
    plane.#push = await PushServer.start(
      {
        hub: plane.hub,
        sign: {
          ca,
          lookups: plane.lookups(),
          authz: { agentServiceAccount: c.agentServiceAccount, trustDomain: c.trustDomain },
          observer: {
            signed: (agent, identity) => {
              opts.metrics.csrs.inc({ result: 'signed', reason: '' });
              caLog.info({ node: agent.node, agent: agent.podName, identity }, 'certificate issued');
            },
            denied: (denial, agent) => {
              opts.metrics.csrs.inc({ result: 'denied', reason: denial.reason });
              caLog.info({ node: agent?.node, agent: agent?.podName, reason: denial.reason, message: denial.message }, 'certificate request denied');
            },
          },
        },
        tls,
        log: log.child({ component: 'push' }),
        onDemand: (node, addresses) => plane.#demand(node, addresses),
      },
      `${c.grpcAddress.host.includes(':') ? `[${c.grpcAddress.host}]` : c.grpcAddress.host}:${c.grpcAddress.port}`,
    );
    log.info({ port: plane.#push.port, dnsNames }, 'push server listening');
    void Promise.all(Object.values(plane.collections).map((col) => col.synced)).then(() => {
      log.info({}, 'every watch has listed; computing config');
      plane.#schedule(0);
    });
    plane.#periodic = setInterval(() => {
      plane.#schedule(0);
      void plane.#publishRoots();
    }, PERIODIC_MS).unref();
    return plane;
  }

  get pushPort(): number {
    return this.#push?.port ?? 0;
  }

  get ca(): CertificateAuthority {
    return this.#ca;
  }

  /** How many recomputes ran (tests, benchmarks). */
  get recomputes(): number {
    return this.#recomputes;
  }

  readiness(): Readiness {
    if (this.#stopped) return { ready: false, reason: 'shutting down' };
    const waiting = (Object.entries(this.collections) as [string, WatchedCollection][]).filter(([, c]) => !c.isSynced).map(([n]) => n);
    if (waiting.length > 0) return { ready: false, reason: `waiting for the first list of ${waiting.join(', ')}` };
    if (!this.#push) return { ready: false, reason: 'push server not listening yet' };
    if (!this.#computed) return { ready: false, reason: 'first config not computed yet' };
    return { ready: true, reason: '' };
  }

  /** Stops watching and serving; open streams end after `graceMs` and their agents move to another replica. */
  async stop(graceMs = 1000): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#statusOnly);
    clearInterval(this.#periodic);
    for (const col of Object.values(this.collections)) col.stop();
    await this.#push?.close(graceMs);
    await this.#statusQueue;
  }

  /** Drops every agent connection at once (tests: a replica dying). */
  kill(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#statusOnly);
    clearInterval(this.#periodic);
    for (const col of Object.values(this.collections)) col.stop();
    this.#push?.kill();
  }

  /** TokenReview through the API server (cached briefly); pods from the watch cache, the caller's own pod from the API when the cache has not seen it yet. */
  lookups(): AuthzLookups {
    const kube = this.#opts.kube;
    const pods = this.collections.pods;
    return {
      tokenReview: cachedTokenReview((token) => kube.tokenReview(token)),
      getPod: async (namespace, name) => {
        const cached = pods.get(namespace, name) as PodFacts | undefined;
        if (cached) return cached;
        try {
          return (await kube.get(RESOURCES.pods, namespace, name)) as PodFacts;
        } catch (err) {
          if (err instanceof ApiError && err.statusCode === 404) return undefined;
          throw err;
        }
      },
      getPodByUid: async (uid) => {
        const key = this.#podKeyByUid.get(uid);
        if (!key) return undefined;
        const [namespace, name] = key.split('/');
        return pods.get(namespace, name!) as PodFacts | undefined;
      },
    };
  }

  // ------------------------------------------------------------------ watches

  #collection(name: WatchedResource): WatchedCollection<KubeObject> {
    const log = this.#log.child({ component: 'watch', resource: name });
    return new WatchedCollection<KubeObject>({
      resource: RESOURCES[name],
      transport: this.#opts.kube,
      resyncMs: this.#opts.config.resyncMs,
      sink: (event) => {
        if (name === 'pods') {
          const uid = event.object.metadata.uid;
          if (uid) {
            if (event.type === 'deleted') this.#podKeyByUid.delete(uid);
            else this.#podKeyByUid.set(uid, keyOf(event.object));
          }
        }
        if (affectsModel(name, event)) this.#schedule(this.#opts.config.debounceMs);
        else if (STATUS_KINDS.has(name)) this.#scheduleStatusPass();
      },
      onRestart: (reason, error) => {
        this.#opts.metrics.watchRestarts.inc({ resource: name });
        log.warn({ reason, err: error instanceof Error ? error.message : error }, 'watch restarting');
      },
      onSinkError: (error) => log.error({ err: error }, 'watch event handling failed'),
    });
  }

  #allSynced(): boolean {
    return Object.values(this.collections).every((c) => c.isSynced);
  }

  // ------------------------------------------------------------------ recompute and push

  /** Runs a recompute after `delayMs`, unless one is already due sooner (changes coalesce). */
  #schedule(delayMs: number): void {
    if (this.#stopped || !this.#allSynced()) return;
    const due = performance.now() + delayMs;
    if (this.#timer && this.#due <= due) return;
    clearTimeout(this.#timer);
    this.#due = due;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      try {
        this.#recompute();
      } catch (err) {
        this.#log.error({ err }, 'recompute failed; retrying');
        this.#schedule(STATUS_RETRY_MS);
      }
    }, delayMs);
  }

  #objects(): ClusterObjects {
    const c = this.collections;
    return {
      namespaces: c.namespaces.list(),
      pods: c.pods.list() as PodObject[],
      services: c.services.list() as ServiceObject[],
      endpointSlices: c.endpointSlices.list() as EndpointSliceObject[],
      serviceAccounts: c.serviceAccounts.list(),
      nodes: c.nodes.list(),
      authorizationPolicies: c.authorizationPolicies.list(),
      peerAuthentications: c.peerAuthentications.list(),
      httpRoutes: c.httpRoutes.list(),
      grpcRoutes: c.grpcRoutes.list(),
    };
  }

  #recompute(): void {
    const started = performance.now();
    const model = computeModel(this.#objects(), this.#mesh);
    const roots = this.#ca.trustBundle().roots;
    const nodes = new Set<string>(model.nodes);
    for (const w of model.workloads.values()) if (w.node) nodes.add(w.node);
    for (const n of this.#subscribedNodes.keys()) nodes.add(n);
    // only the nodes whose snapshot can have changed (all of them after a trust change or at first)
    const last = this.#last;
    const rootsKey = roots.join('');
    const todo = last && last.roots === rootsKey ? nodesToRecompute(last.model, model, nodes, (n) => this.hub.current(n), NODE_SCOPE) : nodes;
    this.#last = { model, roots: rootsKey };
    let published = 0;
    for (const node of [...todo].sort()) if (this.#publish(model, node, roots)) published++;
    for (const node of this.hub.nodes()) {
      if (nodes.has(node)) continue;
      this.hub.forget(node);
      this.#opts.metrics.snapshotBytes.remove({ node });
    }
    const seconds = (performance.now() - started) / 1000;
    this.#opts.metrics.recompute.observe(seconds);
    this.#recomputes++;
    if (!this.#computed) this.#log.info({ nodes: nodes.size, workloads: model.workloads.size, services: model.services.size, ms: Math.round(seconds * 1000) }, 'first config computed');
    else if (published > 0) this.#log.debug({ published, ms: Math.round(seconds * 1000) }, 'config pushed');
    this.#computed = true;
    this.#writeStatuses(model.statuses);
  }

  /**
   * An agent met addresses outside its node's scope: remember them and push the node its new
   * scope at once (one node, no model recompute). Unknown addresses change nothing.
   */
  #demand(node: string, addresses: string[]): void {
    let held = this.#demands.get(node);
    if (!held) this.#demands.set(node, (held = new Set()));
    const fresh = addresses.filter((a) => !held!.has(a) && held!.size < MAX_DEMANDS_PER_NODE);
    for (const a of fresh) held.add(a);
    const last = this.#last;
    if (fresh.length === 0 || !last || this.#stopped) return;
    this.#publish(last.model, node, this.#ca.trustBundle().roots);
    this.#log.debug({ node, addresses: fresh }, 'on-demand scope extended');
  }

  /** Computes and publishes one node's snapshot (its scope: NODE_SCOPE and its demands); true when it changed. */
  #publish(model: MeshModel, node: string, roots: readonly string[]): boolean {
    const snap = snapshotFor(model, node, { trustRoots: roots, ...NODE_SCOPE, ...demandedScope(model, this.#demands.get(node)) });
    if (!this.hub.publish(snap)) return false;
    this.#opts.metrics.snapshotBytes.set({ node }, snapshotBytes(snap));
    return true;
  }

  /** A status-only change (ours or another replica's write): re-check statuses against the last model, no recompute. */
  #scheduleStatusPass(): void {
    if (this.#statusOnly || !this.#last) return;
    this.#statusOnly = setTimeout(() => {
      this.#statusOnly = undefined;
      if (this.#last && !this.#stopped) this.#writeStatuses(this.#last.model.statuses);
    }, this.#opts.config.debounceMs);
  }

  // ------------------------------------------------------------------ status of user objects

  /** Writes every status that differs from what its object shows: Accepted (validation) and Programmed (NACKs). */
  #writeStatuses(statuses: readonly ObjectStatus[]): void {
    const now = new Date().toISOString();
    const seen = new Set<string>();
    const consider = (ref: ObjectRef, accepted: ObjectStatus | undefined): void => {
      const key = refKey(ref);
      seen.add(key);
      const resource = STATUS_RESOURCE[ref.kind];
      const obj = this.collections[resource].get(ref.namespace, ref.name);
      const nacks = this.#nacks.standing(ref, obj);
      if (!obj) return;
      const rv = obj.metadata.resourceVersion ?? '';
      const afterAccepted = accepted ? statusFor(obj, accepted, now) : null;
      const afterProgrammed = withProgrammed(afterAccepted ? { ...obj, status: afterAccepted } : obj, ref.kind, nacks, now);
      const status = afterProgrammed ?? afterAccepted;
      if (!status) return;
      // the same write against the same object version is in flight or done: the watch brings the result
      const fingerprint = `${rv}|${JSON.stringify({ accepted: accepted?.condition, nacks })}`;
      if (this.#statusWritten.get(key) === fingerprint) return;
      this.#statusWritten.set(key, fingerprint);
      this.#enqueueStatusWrite(resource, ref, rv, status, fingerprint);
    };
    for (const s of statuses) consider({ kind: s.kind, namespace: s.namespace, name: s.name }, s);
    for (const ref of this.#nacks.refs()) if (!seen.has(refKey(ref))) consider(ref, undefined);
    for (const key of this.#statusWritten.keys()) if (!seen.has(key)) this.#statusWritten.delete(key);
  }

  #enqueueStatusWrite(resource: WatchedResource, ref: ObjectRef, rv: string, status: Record<string, unknown>, fingerprint: string): void {
    const log = this.#log.child({ component: 'status' });
    const metrics = this.#opts.metrics;
    const key = refKey(ref);
    // One write at a time: a burst (first start, 500 policies) must not flood the API server.
    this.#statusQueue = this.#statusQueue.then(async () => {
      if (this.#stopped) return;
      try {
        await this.#opts.kube.request('PATCH', objectPath(RESOURCES[resource], ref.namespace, ref.name, 'status'), {
          // the resourceVersion makes this a compare-and-swap: a replica computing from an older object loses
          body: { metadata: { resourceVersion: rv }, status },
          contentType: 'application/merge-patch+json',
        });
        metrics.statusWrites.inc({ result: 'written' });
      } catch (err) {
        const code = err instanceof ApiError ? err.statusCode : 0;
        if (code === 409 || code === 404) {
          // changed or gone meanwhile: the watch brings the newer object and we look again
          metrics.statusWrites.inc({ result: code === 409 ? 'conflict' : 'gone' });
          return;
        }
        metrics.statusWrites.inc({ result: 'failed' });
        log.warn({ object: key, err: (err as Error).message }, 'status write failed; retrying');
        if (this.#statusWritten.get(key) === fingerprint) this.#statusWritten.delete(key);
        this.#schedule(STATUS_RETRY_MS);
      }
    });
  }

  // ------------------------------------------------------------------ agents

  #hubObserver(): PushObserver {
    const log = this.#log.child({ component: 'push' });
    return {
      subscribed: (info, start) => {
        this.#opts.metrics.connectedAgents.inc();
        this.#subscribedNodes.set(info.node, (this.#subscribedNodes.get(info.node) ?? 0) + 1);
        log.info({ node: info.node, agent: info.agent, start }, 'agent subscribed');
        // a node nobody computed yet (no Node object, no pods): compute it now
        if (!this.hub.current(info.node)) this.#schedule(0);
      },
      unsubscribed: (info) => {
        this.#opts.metrics.connectedAgents.dec();
        const n = (this.#subscribedNodes.get(info.node) ?? 1) - 1;
        if (n > 0) this.#subscribedNodes.set(info.node, n);
        else this.#subscribedNodes.delete(info.node);
        log.info({ node: info.node, agent: info.agent }, 'agent unsubscribed');
      },
      acked: (_info, _version, latencyMs) => this.#opts.metrics.pushLatency.observe(latencyMs / 1000),
      nacked: (info, version, errors) => {
        let reported = 0;
        for (const e of errors) {
          this.#opts.metrics.nacks.inc({ type: e.type });
          const ref = objectOfResource(e.type, e.key);
          if (!ref) continue;
          const obj = this.collections[STATUS_RESOURCE[ref.kind]].get(ref.namespace, ref.name);
          this.#nacks.record(ref, { node: info.node, version, message: e.message, generation: obj?.metadata.generation });
          reported++;
        }
        log.warn({ node: info.node, agent: info.agent, version, errors }, 'agent rejected config (NACK)');
        if (reported > 0) this.#schedule(0);
      },
      stalled: (info, stalledMs) => log.warn({ node: info.node, agent: info.agent, stalledMs }, 'agent too slow; closing its stream'),
    };
  }

  async #publishRoots(): Promise<void> {
    const c = this.#opts.config;
    try {
      if (await publishTrustRoots(this.#opts.kube, c.namespace, c.rootCertConfigMap, this.#ca.trustBundle().roots)) {
        this.#log.info({ configMap: `${c.namespace}/${c.rootCertConfigMap}` }, 'trust roots published');
      }
    } catch (err) {
      this.#log.warn({ err: (err as Error).message, configMap: `${c.namespace}/${c.rootCertConfigMap}` }, 'cannot publish the trust roots; agents cannot verify this control plane until it succeeds (retrying every minute)');
    }
  }
}
