/**
 * The node's mesh proxy: what the in-pod listeners do with connections once the mesh is on.
 *
 * - outbound (15001): planOutbound → HBONE to the endpoint pod's :15008 with the source pod's
 *   certificate (tunnels pooled per source identity, destination identity and address by
 *   HboneClient), or plain passthrough for destinations outside the mesh, or a reset when a
 *   Service has no endpoint. The tunnel's TCP connection is made in the source pod's netns, marked,
 *   so it leaves from the pod's address and is not captured again.
 * - HBONE (15008): one HboneServer per pod, with that pod's certificate (renewed certificates apply
 *   to new handshakes); each CONNECT passes PeerAuthentication and AuthorizationPolicy
 *   (inboundDecision) and then connects to the application on the requested port from inside the
 *   pod netns. The application sees the pod's own address as the source (no spoofing).
 * - inbound plaintext (15006): STRICT refuses (reset, logged with the deciding policy), PERMISSIVE
 *   admits and authorizes without a principal, then forwards to the original destination.
 * - DNS (15053): A/AAAA for Service names answered from the config; everything else relayed.
 *
 * Every connection is counted with Istio's metric names and written to the access log.
 */
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { type ConnectionContext, type ConnectionHandler, type ListenerKind, type PodRef, formatAddress } from '../connection.js';
import { answerLocally } from '../dns/resolve.js';
import type { DnsAnswerer } from '../dns-relay.js';
import { forwardHandler } from '../forward.js';
import { HboneClient, HboneServer, type TunnelRecord } from '../hbone/index.js';
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
  connectTimeoutMs?: number;
  idleTimeoutMs?: number;
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
  private readonly connectTimeoutMs: number;
  private readonly idleTimeoutMs: number;

  constructor(private readonly opts: MeshProxyOptions) {
    this.telemetry = new MeshTelemetry(opts.registry, opts.log.child({ component: 'access' }));
    this.certWaitMs = opts.certificateWaitMs ?? 5000;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 3600_000;
    this.client = new HboneClient({ trustBundle: () => opts.view.trustRoots(), logger: opts.log.child({ component: 'hbone-client' }) });
  }

  /** The handlers for one enrolled pod's listeners. */
  forPod(pod: PodRef): PodMeshHandlers {
    const tunnelServer = new PodTunnelServer(this, pod);
    return {
      handlers: {
        outbound: (down, ctx) => void this.outbound(down, ctx),
        inbound: (down, ctx) => this.inboundPlaintext(down, ctx),
        tunnel: (down, ctx) => void tunnelServer.accept(down, ctx),
      },
      dnsAnswer: (query: Buffer) => {
        const r = answerLocally(query, this.opts.view.dnsIndex());
        return r.kind === 'answer' ? r.response : undefined;
      },
      close: (drainMs) => tunnelServer.close(drainMs),
    };
  }

  /** Closes pooled tunnels gracefully. */
  async close(): Promise<void> {
    await this.client.close();
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

  self(pod: PodRef): WorkloadInfo | undefined {
    for (const ip of pod.ips) {
      const w = this.opts.view.workloadByIp(ip);
      if (w) return w;
    }
    return undefined;
  }

  private async outbound(down: import('node:net').Socket, ctx: ConnectionContext): Promise<void> {
    const dst = ctx.originalDst!;
    const plan = planOutbound({ address: dst.address, port: dst.port }, this.opts.view);
    const source = this.self(ctx.pod);
    if (plan.kind === 'refuse') {
      ctx.warn('no-endpoint', { dst: formatAddress(dst) }, `outbound connection refused: ${plan.reason}`);
      ctx.record.end = 'refused';
      down.resetAndDestroy();
      return;
    }
    if (plan.kind === 'passthrough') {
      const labels = tcpLabels({ reporter: 'source', source, sourcePrincipal: source?.identity, destination: plan.peer, destinationService: plan.service?.hostname, mtls: false });
      this.telemetry.open(labels);
      down.once('close', () => this.telemetry.close({ labels, source: ctx.record.source, destination: `${plan.address}:${plan.port}`, durationMs: Date.now() - ctx.record.startedAt, requestBytes: down.bytesRead, responseBytes: down.bytesWritten, ...(ctx.record.error ? { error: ctx.record.error } : {}) }));
      forwardHandler({ connectTimeoutMs: this.connectTimeoutMs, idleTimeoutMs: this.idleTimeoutMs, target: () => ({ host: plan.address, port: plan.port }) })(down, ctx);
      return;
    }
    const authority = `${plan.address.includes(':') ? `[${plan.address}]` : plan.address}:${plan.port}`;
    ctx.record.upstream = `${plan.address}:15008 (HBONE ${authority})`;
    const base = { reporter: 'source' as const, source, sourcePrincipal: source?.identity, destination: plan.peer, destinationPrincipal: plan.peer.identity, destinationService: plan.service?.hostname, mtls: true };
    let creds;
    try {
      creds = await this.opts.credentials.get(ctx.pod.uid, this.certWaitMs);
    } catch (err) {
      ctx.warn('no-cert', {}, `outbound connection to ${authority} refused: ${(err as Error).message}`);
      ctx.record.end = 'refused';
      ctx.record.error = 'no certificate';
      this.telemetry.close({ labels: tcpLabels({ ...base, flags: 'UF' }), source: ctx.record.source, destination: authority, durationMs: Date.now() - ctx.record.startedAt, requestBytes: 0, responseBytes: 0, error: (err as Error).message });
      down.resetAndDestroy();
      return;
    }
    this.telemetry.open(tcpLabels(base));
    const record: TunnelRecord = await this.client.tunnel(
      {
        source: creds,
        expectedPeer: plan.peer.identity,
        address: plan.address,
        authority,
        ...(ctx.pod.ips[0] ? { sourceAddress: ctx.pod.ips[0] } : {}),
        connectSocket: (t) => ctx.dial.connect({ host: t.host, port: t.port }),
      },
      down as Duplex,
    );
    if (record.error) {
      ctx.record.end = 'upstream-failed';
      ctx.record.error = record.error;
      ctx.warn(`hbone:${record.responseFlags}`, { dst: authority }, record.error);
    }
    this.telemetry.close({ labels: tcpLabels({ ...base, flags: record.responseFlags }), source: ctx.record.source, destination: authority, durationMs: record.durationMs, requestBytes: record.requestBytes, responseBytes: record.responseBytes, ...(record.error ? { error: record.error } : {}) });
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
      this.telemetry.close({ labels: labels('RBAC'), source: ctx.record.source, destination: formatAddress(dst), durationMs: 0, requestBytes: 0, responseBytes: 0, error: decision.reason });
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
      down.resetAndDestroy();
      return;
    }
    if (this.closed) {
      down.destroy();
      return;
    }
    ctx.record.upstream = 'hbone';
    down.resume();
    server.acceptSocket(down);
  }

  async close(drainMs = 5000): Promise<void> {
    this.closed = true;
    await this.server?.close({ drainMs });
  }

  private async start(): Promise<HboneServer> {
    const { credentials, view, log } = this.mesh;
    await credentials.get(this.pod.uid, 5000);
    const self = () => this.mesh.self(this.pod);
    const podLog = log.child({ component: 'hbone-server', pod: `${this.pod.namespace}/${this.pod.name}` });
    const server = new HboneServer({
      credentials: () => {
        const c = credentials.current(this.pod.uid);
        if (!c) throw new Error(`pod ${this.pod.namespace}/${this.pod.name} has no certificate`);
        return c;
      },
      trustBundle: () => view.trustRoots(),
      logger: podLog,
      onTunnel: async (req) => {
        const me = self();
        const decision = inboundDecision(l4Connection({ sourcePrincipal: req.peerIdentity, sourceIp: req.remoteAddress, destinationIp: req.host, destinationPort: req.port }), 'mtls', {
          workload: subject(this.pod, me),
          authorizationPolicies: view.authorizationPolicies(),
          peerAuthentications: view.peerAuthentications(),
          rootNamespace: view.rootNamespace(),
        });
        if (!decision.allowed) {
          podLog.warn({ peer: req.peerIdentity, src: req.remoteAddress, dst: req.authority, policy: decision.policy }, `HBONE tunnel denied: ${decision.reason}`);
          return { refuse: 403, reason: decision.reason };
        }
        if (!this.pod.ips.includes(req.host)) return { refuse: 400, reason: `CONNECT to ${req.authority}: not an address of pod ${this.pod.namespace}/${this.pod.name}` };
        return connectApp(this.pod, req.host, req.port, this.dialer, podLog);
      },
      onEvent: (ev) => {
        if (ev.type === 'open') return;
        this.report(ev.tunnel);
      },
      onReject: (ev) => podLog.warn({ ...ev }, `HBONE input rejected: ${ev.reason}`),
    });
    this.server = server;
    return server;
  }

  /** The pod netns dialer of the listener that accepted the first socket. */
  dialer: ConnectionContext['dial'] | undefined;

  private report(t: TunnelRecord): void {
    const me = this.mesh.self(this.pod);
    const [host, port] = splitAuthority(t.authority);
    const labels = tcpLabels({
      reporter: 'destination',
      source: this.mesh.view.workloadByIp(t.peerAddress.replace(/:\d+$/, '').replace(/^\[|\]$/g, '')),
      sourcePrincipal: t.peerIdentity,
      destination: me,
      destinationPrincipal: t.localIdentity,
      destinationService: this.mesh.view.serviceByEndpoint(host, port)?.hostname,
      mtls: true,
      flags: t.responseFlags,
    });
    this.mesh.telemetry.open(labels);
    this.mesh.telemetry.close({ labels, source: t.peerAddress, destination: t.authority, durationMs: t.durationMs, requestBytes: t.requestBytes, responseBytes: t.responseBytes, ...(t.error ? { error: t.error } : {}) });
  }
}

function splitAuthority(a: string): [string, number] {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(a);
  return m ? [m[1]!, Number(m[2])] : [a, 0];
}

/** Connects to the application inside the pod netns; resolves once connected (or a refusal). */
function connectApp(pod: PodRef, host: string, port: number, dial: ConnectionContext['dial'] | undefined, log: Logger): Promise<Duplex | { refuse: number; reason: string }> {
  if (!dial) return Promise.resolve({ refuse: 503, reason: 'the pod listener is not ready' });
  return new Promise((resolve) => {
    const sock = dial.connect({ host, port });
    const timer = setTimeout(() => {
      sock.destroy();
      resolve({ refuse: 504, reason: `the application in ${pod.namespace}/${pod.name} did not accept on port ${port} within 10 s` });
    }, 10_000);
    sock.once('connect', () => {
      clearTimeout(timer);
      resolve(sock);
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      log.debug({ err, port }, 'application connect failed');
      resolve({ refuse: err.code === 'ECONNREFUSED' ? 502 : 503, reason: `nothing accepts on port ${port} in pod ${pod.namespace}/${pod.name} (${err.code ?? err.message})` });
    });
  });
}
