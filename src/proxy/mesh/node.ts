/**
 * The node's mesh proxy: what the in-pod listeners do with connections once the mesh is on.
 *
 * - outbound (15001): planOutbound → HBONE to the endpoint pod's :15008 with the source pod's
 *   certificate (tunnels pooled per source identity, destination identity and address by
 *   HboneClient), or plain passthrough for destinations outside the mesh, or a reset when a
 *   Service has no endpoint (response flag UH). The tunnel's TCP connection is made in the source
 *   pod's netns, marked, so it leaves from the pod's address and is not captured again. A pod
 *   without a certificate yet waits `certificateWaitMs`, then is reset with a log line saying why.
 * - HBONE (15008): one HboneServer per pod, with that pod's certificate (renewed certificates apply
 *   to new handshakes); each CONNECT passes PeerAuthentication and AuthorizationPolicy
 *   (inboundDecision) and then connects to the application on the requested port from inside the
 *   pod netns. The application sees the pod's own address as the source (no spoofing); the
 *   access log's `src` on this side is the connecting proxy's address, i.e. the source pod's IP
 *   with the port of the HBONE session (shared by the tunnels multiplexed on it).
 * - inbound plaintext (15006): STRICT refuses (reset, logged with the deciding policy), PERMISSIVE
 *   admits and authorizes without a principal, then forwards to the original destination.
 * - DNS (15053): A/AAAA for Service names answered from the config; everything else relayed.
 *
 * Every connection is counted with Istio's metric names and written to the access log: opened
 * when it starts (a refused one is opened and closed at once, so opened − closed is always the
 * number open), closed with its bytes and response flags when it ends.
 *
 * Handlers never throw and never leave a rejected promise behind: a bug in a decision closes that
 * one connection with an error log, and the node keeps serving everyone else.
 */
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Service } from '../../api/types.js';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { type ConnectionContext, type ConnectionHandler, type ListenerKind, type PodRef, formatAddress, unmapIPv4 } from '../connection.js';
import { answerLocally } from '../dns/resolve.js';
import type { DnsAnswerer } from '../dns-relay.js';
import { forwardHandler } from '../forward.js';
import { HBONE_PORT, HboneClient, HboneServer, parseAuthority, type TunnelEvent, type TunnelRefusal, type TunnelRequest, type WorkloadCredentials } from '../hbone/index.js';
import { inboundDecision, l4Connection } from '../policy/index.js';
import { planOutbound } from './outbound.js';
import { MeshTelemetry, tcpLabels } from './telemetry.js';
import type { CredentialSource, MeshView, WorkloadInfo } from './view.js';

export interface MeshProxyOptions {
  view: MeshView;
  credentials: CredentialSource;
  log: Logger;
  registry: Registry;
  /** how long a connection waits for its pod's first certificate (default 5 s) */
  certificateWaitMs?: number;
  /** TCP connect (+ TLS handshake for HBONE) to a destination; default 10 s */
  connectTimeoutMs?: number;
  /** a plaintext (passthrough / 15006) connection without traffic for this long is ended; default 1 h */
  idleTimeoutMs?: number;
  /** a pooled HBONE session without tunnels closes after this; default 60 s */
  hboneSessionIdleMs?: number;
}

/** What one pod's listeners use. */
export interface PodMeshHandlers {
  handlers: Partial<Record<ListenerKind, ConnectionHandler>>;
  dnsAnswer: DnsAnswerer;
  /** stops the pod's HBONE server (open tunnels drain for `drainMs`) */
  close(drainMs?: number): Promise<void>;
}

export class MeshProxy {
  readonly telemetry: MeshTelemetry;
  readonly client: HboneClient;
  private readonly certWaitMs: number;
  readonly connectTimeoutMs: number;
  private readonly idleTimeoutMs: number;

  constructor(private readonly opts: MeshProxyOptions) {
    this.telemetry = new MeshTelemetry(opts.registry, opts.log.child({ component: 'access' }));
    this.certWaitMs = opts.certificateWaitMs ?? 5000;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 3600_000;
    this.client = new HboneClient({
      trustBundle: () => opts.view.trustRoots(),
      logger: opts.log.child({ component: 'hbone-client' }),
      connectTimeoutMs: this.connectTimeoutMs,
      ...(opts.hboneSessionIdleMs !== undefined ? { idleTimeoutMs: opts.hboneSessionIdleMs } : {}),
    });
  }

  /** The handlers for one enrolled pod's listeners. */
  forPod(pod: PodRef): PodMeshHandlers {
    const tunnelServer = new PodTunnelServer(this, pod);
    return {
      handlers: {
        outbound: guarded('outbound', (down, ctx) => this.outbound(down, ctx)),
        inbound: guarded('inbound', (down, ctx) => this.inboundPlaintext(down, ctx)),
        tunnel: guarded('tunnel', (down, ctx) => tunnelServer.accept(down, ctx)),
      },
      dnsAnswer: (query: Buffer) => {
        const r = answerLocally(query, this.opts.view.dnsIndex());
        return r.kind === 'answer' ? r.response : undefined;
      },
      close: (drainMs) => tunnelServer.close(drainMs),
    };
  }

  /**
   * Closes the pooled HBONE sessions: no new tunnels; open ones may finish for up to `drainMs`,
   * then whatever is left is cut (a long-lived tunnel must not hold a shutdown forever).
   */
  async close(drainMs = 5000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), drainMs)));
    const outcome = await Promise.race([this.client.close().then(() => 'closed' as const), deadline]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      this.opts.log.info({ tunnels: this.client.stats().activeTunnels }, `HBONE client drain: cutting the tunnels still open after ${drainMs} ms`);
      this.client.destroy();
    }
  }

  get view(): MeshView {
    return this.opts.view;
  }

  get log(): Logger {
    return this.opts.log;
  }

  get credentials(): CredentialSource {
    return this.opts.credentials;
  }

  get certificateWaitMs(): number {
    return this.certWaitMs;
  }

  self(pod: PodRef): WorkloadInfo | undefined {
    for (const ip of pod.ips) {
      const w = this.opts.view.workloadByIp(ip);
      if (w) return w;
    }
    return undefined;
  }

  private async outbound(down: import('node:net').Socket, ctx: ConnectionContext): Promise<void> {
    const dst = ctx.originalDst!;
    let plan = planOutbound({ address: dst.address, port: dst.port }, this.opts.view);
    // On-demand scope: an address the node's config does not know may be a Service or a pod
    // outside the node's scope; ask once (brief wait, remembered when it is neither) and plan again.
    if (plan.kind === 'passthrough' && plan.peer === undefined && plan.service === undefined && this.opts.view.resolve) {
      if (await this.opts.view.resolve(dst.address)) plan = planOutbound({ address: dst.address, port: dst.port }, this.opts.view);
    }
    const source = this.self(ctx.pod);
    if (plan.kind === 'refuse') {
      ctx.warn('no-endpoint', { dst: formatAddress(dst) }, `outbound connection refused: ${plan.reason}`);
      ctx.record.end = 'refused';
      ctx.record.error = plan.reason;
      const labels = tcpLabels({ reporter: 'source', source, sourcePrincipal: source?.identity, destinationService: plan.service?.hostname, mtls: false, flags: 'UH' });
      this.telemetry.refused({ labels, source: ctx.record.source, destination: formatAddress(dst), durationMs: 0, requestBytes: 0, responseBytes: 0, error: plan.reason });
      down.resetAndDestroy();
      return;
    }
    if (plan.kind === 'passthrough') {
      this.passthrough(down, ctx, plan, source);
      return;
    }
    const authority = formatAddress({ address: plan.address, port: plan.port });
    ctx.record.upstream = `${formatAddress({ address: plan.address, port: HBONE_PORT })} (HBONE ${authority})`;
    const base = { reporter: 'source' as const, source, destination: plan.peer, destinationPrincipal: plan.peer.identity, destinationService: plan.service?.hostname, mtls: true };
    let creds: WorkloadCredentials;
    try {
      creds = await this.opts.credentials.get(ctx.pod.uid, this.certWaitMs);
    } catch (err) {
      const why = `outbound connection to ${authority} refused: pod ${ctx.pod.namespace}/${ctx.pod.name} has no workload certificate yet (${(err as Error).message}) — is ambit-control reachable from the agent, and does it sign for this service account?`;
      ctx.warn('no-cert', {}, why);
      ctx.record.end = 'refused';
      ctx.record.error = 'no certificate';
      this.telemetry.refused({ labels: tcpLabels({ ...base, sourcePrincipal: source?.identity, flags: 'UF' }), source: ctx.record.source, destination: authority, durationMs: Date.now() - ctx.record.startedAt, requestBytes: 0, responseBytes: 0, error: why });
      down.resetAndDestroy();
      return;
    }
    // The principal is the one the certificate carries: that is what the destination will see.
    const labels = { ...base, sourcePrincipal: creds.identity };
    this.telemetry.open(tcpLabels(labels));
    const record = await this.client.tunnel(
      {
        source: creds,
        expectedPeer: plan.peer.identity,
        address: plan.address,
        authority,
        ...(ctx.pod.ips[0] ? { sourceAddress: ctx.pod.ips[0] } : {}),
        connectSocket: (t) => {
          // A session socket, not a relayed one: when the peer dies without GOAWAY its FIN must
          // close the session, not leave it half-open in CLOSE-WAIT with new tunnels hanging on it.
          const s = ctx.dial.connect({ host: t.host, port: t.port });
          s.allowHalfOpen = false;
          return s;
        },
      },
      down as Duplex,
      // Nothing listens on the destination's :15008: its proxy is not (or no longer) there — the
      // pod is being enrolled or un-enrolled, and its capture is not in place either. The
      // connection goes as it would without the mesh rather than failing in that window.
      { fallback: (err) => err.code === 'CONNECT_REFUSED' },
    );
    if (record.fellBack) {
      this.telemetry.close({ labels: tcpLabels({ ...labels, flags: 'UF' }), source: ctx.record.source, destination: authority, durationMs: record.durationMs, requestBytes: 0, responseBytes: 0, error: record.error ?? 'refused' });
      ctx.warn('hbone-refused', { dst: authority }, `${plan.address}:${HBONE_PORT} refused the tunnel: the destination pod's proxy is not listening (enrolment in progress?); sent without the mesh`);
      this.passthrough(down, ctx, { address: plan.address, port: plan.port, peer: plan.peer, ...(plan.service ? { service: plan.service } : {}) }, source);
      return;
    }
    if (record.error) {
      ctx.record.end = 'upstream-failed';
      ctx.record.error = record.error;
      ctx.warn(`hbone:${record.responseFlags}`, { dst: authority }, record.error);
    }
    this.telemetry.close({ labels: tcpLabels({ ...labels, flags: record.responseFlags }), source: ctx.record.source, destination: authority, durationMs: record.durationMs, requestBytes: record.requestBytes, responseBytes: record.responseBytes, ...(record.error ? { error: record.error } : {}) });
  }

  /** Plain TCP to the destination from the pod netns (marked), counted as connection_security_policy none. */
  private passthrough(down: net.Socket, ctx: ConnectionContext, plan: { address: string; port: number; peer?: WorkloadInfo; service?: Service }, source: WorkloadInfo | undefined): void {
    const labels = tcpLabels({ reporter: 'source', source, sourcePrincipal: source?.identity, destination: plan.peer, destinationService: plan.service?.hostname, mtls: false });
    this.telemetry.open(labels);
    down.once('close', () => this.telemetry.close({ labels, source: ctx.record.source, destination: `${plan.address}:${plan.port}`, durationMs: Date.now() - ctx.record.startedAt, requestBytes: down.bytesRead, responseBytes: down.bytesWritten, ...(ctx.record.error ? { error: ctx.record.error } : {}) }));
    forwardHandler({ connectTimeoutMs: this.connectTimeoutMs, idleTimeoutMs: this.idleTimeoutMs, target: () => ({ host: plan.address, port: plan.port }) })(down, ctx);
  }

  private inboundPlaintext(down: import('node:net').Socket, ctx: ConnectionContext): void {
    const dst = ctx.originalDst!;
    const self = this.self(ctx.pod);
    const decision = inboundDecision(l4Connection({ sourceIp: ctx.source.address, destinationIp: dst.address, destinationPort: dst.port }), 'plaintext', {
      workload: subject(ctx.pod, self),
      authorizationPolicies: this.opts.view.authorizationPolicies(),
      peerAuthentications: this.opts.view.peerAuthentications(),
      rootNamespace: this.opts.view.rootNamespace(),
    });
    const service = this.opts.view.serviceByEndpoint(dst.address, dst.port)?.hostname;
    const peer = this.opts.view.workloadByIp(ctx.source.address);
    const labels = (flags: string) => tcpLabels({ reporter: 'destination', source: peer, destination: self, destinationPrincipal: self?.identity, destinationService: service, mtls: false, flags });
    if (!decision.allowed) {
      ctx.warn(`deny:${decision.code}`, { src: ctx.record.source }, decision.reason);
      ctx.record.end = 'refused';
      ctx.record.error = decision.code;
      this.telemetry.refused({ labels: labels('RBAC'), source: ctx.record.source, destination: formatAddress(dst), durationMs: 0, requestBytes: 0, responseBytes: 0, error: decision.reason });
      down.resetAndDestroy();
      return;
    }
    const l = labels('-');
    this.telemetry.open(l);
    down.once('close', () => this.telemetry.close({ labels: l, source: ctx.record.source, destination: formatAddress(dst), durationMs: Date.now() - ctx.record.startedAt, requestBytes: down.bytesRead, responseBytes: down.bytesWritten }));
    forwardHandler({ connectTimeoutMs: this.connectTimeoutMs, idleTimeoutMs: this.idleTimeoutMs })(down, ctx);
  }
}

/** The policy subject for a pod: the config's record of it, or what the listener knows. */
function subject(pod: PodRef, self: WorkloadInfo | undefined): { namespace: string; labels: Record<string, string>; services: readonly string[]; name?: string } {
  return { namespace: self?.namespace ?? pod.namespace, labels: self?.labels ?? {}, services: self?.services ?? [], name: pod.name };
}

/**
 * A pod's :15008: an HboneServer made once the pod has a certificate (a tunnel that arrives
 * before it waits up to the certificate wait), fed with the sockets the listener accepts.
 */
class PodTunnelServer {
  private server: HboneServer | undefined;
  private starting: Promise<HboneServer> | undefined;
  private closed = false;

  constructor(
    private readonly mesh: MeshProxy,
    private readonly pod: PodRef,
  ) {}

  async accept(down: import('node:net').Socket, ctx: ConnectionContext): Promise<void> {
    this.dialer ??= ctx.dial;
    let server: HboneServer;
    try {
      server = this.server ?? (await (this.starting ??= this.start()));
    } catch (err) {
      this.starting = undefined;
      ctx.warn('no-cert', {}, `HBONE connection from ${ctx.record.source} refused: ${(err as Error).message}`);
      ctx.record.end = 'refused';
      ctx.record.error = 'no certificate';
      down.resetAndDestroy();
      return;
    }
    if (this.closed) {
      ctx.record.end = 'refused';
      down.destroy();
      return;
    }
    ctx.record.upstream = 'hbone';
    down.allowHalfOpen = false; // a session socket (see the client side)
    server.acceptSocket(down);
  }

  async close(drainMs = 5000): Promise<void> {
    this.closed = true;
    const server = this.server ?? (await this.starting?.catch(() => undefined));
    await server?.close({ drainMs });
  }

  private async start(): Promise<HboneServer> {
    const { credentials, view, log } = this.mesh;
    const pod = `${this.pod.namespace}/${this.pod.name}`;
    const t0 = Date.now();
    let last = await credentials.get(this.pod.uid, this.mesh.certificateWaitMs).catch((err: Error) => {
      throw new Error(`pod ${pod} has no workload certificate yet (${err.message}) — is ambit-control reachable from the agent?`, { cause: err });
    });
    // The certificate and the trust bundle come by different ways (a CSR; the pushed config), so
    // right after the agent starts one may be here without the other. Without the bundle every
    // client certificate would be refused (SELF_SIGNED_CERT_IN_CHAIN) and the caller's connection
    // reset: the socket waits for it instead, within the same bound.
    if (!(await waitUntilTrue(() => view.trustRoots().length > 0, Math.max(0, this.mesh.certificateWaitMs - (Date.now() - t0))))) {
      throw new Error(`pod ${pod} has no trust bundle yet (no config from ambit-control) to verify HBONE clients with — is ambit-control reachable from the agent?`);
    }
    const podLog = log.child({ component: 'hbone-server', pod });
    const server = new HboneServer({
      // Read at every handshake. A pod whose certificate was dropped keeps presenting the last one
      // until the listener closes: throwing here would throw inside the server's event handlers.
      credentials: () => (last = credentials.current(this.pod.uid) ?? last),
      trustBundle: () => view.trustRoots(),
      logger: podLog,
      // The app connect has its own, shorter deadline (with a clearer reason) inside this one.
      tunnelSetupTimeoutMs: this.mesh.connectTimeoutMs + 1000,
      onTunnel: (req) => Promise.resolve(this.decide(req, podLog)),
      onEvent: (ev) => this.report(ev),
      onReject: (ev) => this.mesh.telemetry.rejected(ev),
    });
    this.server = server;
    return server;
  }

  /**
   * A peer the node's config does not know (a pod on another node, outside this node's scope) is
   * looked up first, as outbound does for destinations: the metrics and access log then name its
   * workload instead of "unknown". L4 policy itself needs only the principal, namespace and
   * address; the lookup is a bounded wait (MeshView.resolve) once per peer, and an address the
   * control plane does not know is remembered by the view, so it costs nothing the next time.
   */
  private decide(req: TunnelRequest, podLog: Logger): TunnelRefusal | Promise<Duplex | TunnelRefusal> {
    const { view } = this.mesh;
    const peerIp = unmapIPv4(req.remoteAddress);
    if (view.resolve && !view.workloadByIp(peerIp)) {
      return view.resolve(peerIp).then(
        () => this.decideKnown(req, podLog),
        () => this.decideKnown(req, podLog),
      );
    }
    return this.decideKnown(req, podLog);
  }

  /** Policy first (cheap, and the answer a denied peer gets whatever it asked for), then the app. */
  private decideKnown(req: TunnelRequest, podLog: Logger): TunnelRefusal | Promise<Duplex | TunnelRefusal> {
    const pod = `${this.pod.namespace}/${this.pod.name}`;
    if (!this.pod.ips.includes(req.host)) {
      return { refuse: 400, reason: `CONNECT to ${req.authority}: not an address of pod ${pod} (its addresses: ${this.pod.ips.join(', ')})` };
    }
    const { view } = this.mesh;
    const decision = inboundDecision(l4Connection({ sourcePrincipal: req.peerIdentity, sourceIp: unmapIPv4(req.remoteAddress), destinationIp: req.host, destinationPort: req.port }), 'mtls', {
      workload: subject(this.pod, this.mesh.self(this.pod)),
      authorizationPolicies: view.authorizationPolicies(),
      peerAuthentications: view.peerAuthentications(),
      rootNamespace: view.rootNamespace(),
    });
    // No log line of our own for a denial: the access log carries the reason (one line per connection).
    if (!decision.allowed) return { refuse: 403, reason: decision.reason };
    return connectApp(this.pod, req.host, req.port, this.dialer, this.mesh.connectTimeoutMs, podLog);
  }

  /** The pod netns dialer of the listener that accepted the first socket. */
  dialer: ConnectionContext['dial'] | undefined;

  /** Opened when the tunnel is up; a refused tunnel is opened and closed at once. */
  private report(ev: TunnelEvent): void {
    const t = ev.tunnel;
    const target = parseAuthority(t.authority);
    const [host, port] = target.ok ? [target.value.host, target.value.port] : [t.authority, 0];
    const peer = parseAuthority(t.peerAddress);
    const labels = (flags: string) =>
      tcpLabels({
        reporter: 'destination',
        source: peer.ok ? this.mesh.view.workloadByIp(unmapIPv4(peer.value.host)) : undefined,
        sourcePrincipal: t.peerIdentity,
        destination: this.mesh.self(this.pod),
        destinationPrincipal: t.localIdentity,
        destinationService: this.mesh.view.serviceByEndpoint(host, port)?.hostname,
        mtls: true,
        flags,
      });
    if (ev.type === 'open') {
      this.opened.add(t.id);
      this.mesh.telemetry.open(labels('-'));
      return;
    }
    const report = { labels: labels(t.responseFlags), source: t.peerAddress, destination: t.authority, durationMs: t.durationMs, requestBytes: t.requestBytes, responseBytes: t.responseBytes, ...(t.error ? { error: t.error } : {}) };
    if (this.opened.delete(t.id)) this.mesh.telemetry.close(report);
    else this.mesh.telemetry.refused(report);
  }

  /** ids of this server's tunnels that are open (their close is then a close, not a refusal) */
  private readonly opened = new Set<number>();
}

/** Polls `cond` every 50 ms for up to `ms`; true as soon as it holds. */
async function waitUntilTrue(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() >= end) return false;
    await new Promise((resolve) => setTimeout(resolve, Math.min(50, Math.max(1, end - Date.now()))));
  }
  return true;
}

/**
 * Wraps a handler so that neither a throw nor a rejected promise escapes: the connection is cut
 * and the bug logged, and the listener goes on serving everyone else.
 */
function guarded(kind: ListenerKind, fn: (down: import('node:net').Socket, ctx: ConnectionContext) => void | Promise<void>): ConnectionHandler {
  return (down, ctx) => {
    const fail = (err: unknown): void => {
      ctx.log.error({ err, listener: kind }, `mesh ${kind} handler failed; closing that connection (a bug: please report it)`);
      ctx.record.end = 'error';
      ctx.record.error = (err as Error)?.message ?? String(err);
      down.destroy();
    };
    try {
      const done = fn(down, ctx);
      if (done) done.catch(fail);
    } catch (err) {
      fail(err);
    }
  };
}


/** Connects to the application inside the pod netns; resolves once connected (or a refusal). */
function connectApp(pod: PodRef, host: string, port: number, dial: ConnectionContext['dial'] | undefined, timeoutMs: number, log: Logger): Promise<Duplex | TunnelRefusal> {
  const name = `${pod.namespace}/${pod.name}`;
  if (!dial) return Promise.resolve({ refuse: 503, reason: `the listeners of pod ${name} are not ready` });
  return new Promise((resolve) => {
    let sock: import('node:net').Socket;
    try {
      sock = dial.connect({ host, port });
    } catch (err) {
      resolve({ refuse: 503, reason: `cannot make a socket in pod ${name}: ${(err as Error).message}` });
      return;
    }
    const timer = setTimeout(() => {
      sock.destroy();
      resolve({ refuse: 504, reason: `the application in ${name} did not accept on port ${port} within ${timeoutMs} ms` });
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      resolve(sock);
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      log.debug({ err, port }, 'application connect failed');
      resolve({ refuse: err.code === 'ECONNREFUSED' ? 502 : 503, reason: `nothing accepts on port ${port} in pod ${name} (${err.code ?? err.message})` });
    });
  });
}
