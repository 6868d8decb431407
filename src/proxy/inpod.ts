/**
 * The shared proxy's listeners inside one enrolled pod's network namespace.
 *
 * The agent process makes every socket here itself: it switches its thread into the pod netns
 * (`inNetns`), creates the socket, and switches back; the socket stays in the pod netns and Node
 * adopts it. One agent serves every enrolled pod on its node this way (110 pods is the kubelet
 * default maximum), so an instance is small: a netns handle, the listener sockets, counters, and the
 * connections it carries. It holds no per-pod timers or buffers while idle.
 *
 * Listeners (ports from the agent's RedirectConfig, passed in as plain numbers):
 *   outbound 15001  TCP, any address — nat OUTPUT REDIRECTs the app's connections here (to 127.0.0.1)
 *   inbound  15006  TCP, any address — nat PREROUTING REDIRECTs inbound plaintext here (to the
 *                   primary address of the interface it came in on)
 *   tunnel   15008  TCP, any address — HBONE, reached directly (issue 6; refused until then)
 *   dns      15053  UDP and TCP on loopback — nat OUTPUT REDIRECTs udp/tcp 53 to 127.0.0.1 / ::1,
 *                   and a UDP answer must come from that address for conntrack to map it back
 * "Any address" is one dual-stack `::` socket when the pod has IPv6, else `0.0.0.0`.
 *
 * What happens to an accepted connection is a `ConnectionHandler` (connection.ts): plaintext
 * forwarding to the original destination by default (forward.ts), replaced per listener by issue 6.
 *
 * Lifecycle: `open()` returns once every socket listens (so the CNI plugin may let the pod start);
 * `close()` stops listening but leaves established connections running to their natural end
 * (re-enrolment and agent restarts must not reset connections); `destroy()` also cuts them.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { Logger } from '../telemetry/log.js';
import {
  closeFd,
  connectSocket,
  createListenSocket,
  createUdpSocket,
  getOriginalDst,
  inNetns,
  openNetns,
  socketFd,
  type IpFamily,
  type NetnsHandle,
  type SocketAddress,
} from '../sys/index.js';
import {
  formatAddress,
  refuseHandler,
  unmapIPv4,
  type ConnectionContext,
  type ConnectionHandler,
  type ConnectionRecord,
  type Dialer,
  type ListenerKind,
  type PodRef,
} from './connection.js';
import { DEFAULT_DNS_RELAY, DnsUdpRelay, dnsTcpHandler, type DnsAnswerer, type DnsUdpStats, type DnsUpstream } from './dns-relay.js';
import { DEFAULT_FORWARD_TIMEOUTS, forwardHandler, selfTargetReason } from './forward.js';
import { Throttle } from './throttle.js';

/**
 * The numbers the proxy shares with the redirection rules. The agent's RedirectConfig has this
 * shape, so it is passed as is; the proxy does not import agent code.
 */
export interface InPodNetConfig {
  ports: { outbound: number; inboundPlaintext: number; inboundTunnel: number; dns: number };
  /** SO_MARK on every socket the proxy makes in the pod, so the pod's rules never capture them. */
  proxyMark: number;
  /** The pod's IP families. */
  families: readonly IpFamily[];
  /** When false, no DNS listeners (the rules do not capture DNS either). Default true. */
  dnsCapture?: boolean;
}

export interface InPodTimeouts {
  /** Upstream TCP connect. */
  connectMs: number;
  /** A TCP connection without a byte either way for this long is ended; 0 = never. */
  idleMs: number;
  /** A relayed DNS query over UDP waits this long for its answer. */
  dnsQueryMs: number;
}

export interface InPodProxyOptions {
  config: InPodNetConfig;
  /** The agent's logger; the proxy adds `component: 'inpod'` and the pod. */
  log: Logger;
  /** The resolver DNS is relayed to, asked per query/connection (the cluster DNS Service). */
  dnsUpstream: () => DnsUpstream | undefined;
  /** Replace what a listener does with its connections (issue 6: HBONE). Defaults: see header. */
  handlers?: Partial<Record<ListenerKind, ConnectionHandler>>;
  timeouts?: Partial<InPodTimeouts>;
  /** Bound on DNS queries over UDP waiting for the upstream, per pod. */
  dnsMaxInflight?: number;
  /** Answers DNS queries over UDP locally (issue 6); unset: every query is relayed. */
  dnsAnswer?: DnsAnswerer;
  /** listen() backlog of the TCP listeners. */
  backlog?: number;
  /**
   * SO_REUSEPORT on every listener, so that proxy workers (threads or processes, each doing its own
   * open()) share the pod's ports and the kernel spreads connections over them. Default false: a
   * second instance on the same ports is then an error, which catches a forgotten close().
   */
  reusePort?: boolean;
  /** Called once per TCP connection when its downstream socket has closed (access log, metrics). */
  onConnectionClosed?: (record: ConnectionRecord) => void;
}

/** Counters of one TCP listener. Bytes include those of connections still open. */
export interface TcpListenerStats {
  /** Connections accepted. */
  opened: number;
  /** Of those, closed. */
  closed: number;
  /** Open now (opened - closed). */
  active: number;
  /** Closed without carrying traffic: refused, or the upstream could not be reached. */
  failed: number;
  /** Bytes read from the connections' originators. */
  bytesFromDownstream: number;
  /** Bytes written back to them. */
  bytesToDownstream: number;
}

export interface InPodStats {
  outbound: TcpListenerStats;
  inbound: TcpListenerStats;
  tunnel: TcpListenerStats;
  /** DNS over TCP. */
  dns: TcpListenerStats;
  dnsUdp: DnsUdpStats;
}

/** One socket to create in the pod netns. */
export interface ListenerSpec {
  kind: ListenerKind;
  protocol: 'tcp' | 'udp';
  family: IpFamily;
  host: string;
  port: number;
  v6Only?: boolean;
}

/** The sockets a pod with `config` gets, in creation order. Pure. */
export function listenerPlan(config: InPodNetConfig): ListenerSpec[] {
  const hasV6 = config.families.includes(6);
  const hasV4 = config.families.includes(4);
  const any = hasV6 ? { family: 6 as const, host: '::', v6Only: !hasV4 } : { family: 4 as const, host: '0.0.0.0' };
  const plan: ListenerSpec[] = [
    { kind: 'outbound', protocol: 'tcp', ...any, port: config.ports.outbound },
    { kind: 'inbound', protocol: 'tcp', ...any, port: config.ports.inboundPlaintext },
    { kind: 'tunnel', protocol: 'tcp', ...any, port: config.ports.inboundTunnel },
  ];
  if (config.dnsCapture !== false) {
    for (const family of [4, 6] as const) {
      if (!config.families.includes(family)) continue;
      const loopback = family === 4 ? { family, host: '127.0.0.1' } : { family, host: '::1', v6Only: true };
      plan.push({ kind: 'dns', protocol: 'udp', ...loopback, port: config.ports.dns });
      plan.push({ kind: 'dns', protocol: 'tcp', ...loopback, port: config.ports.dns });
    }
  }
  return plan;
}

/** The handlers a listener uses unless `opts.handlers` replaces them. */
export function defaultHandlers(opts: Pick<InPodProxyOptions, 'dnsUpstream'>, timeouts: InPodTimeouts): Record<ListenerKind, ConnectionHandler> {
  const forward = forwardHandler({ connectTimeoutMs: timeouts.connectMs, idleTimeoutMs: timeouts.idleMs });
  return {
    outbound: forward,
    inbound: forward,
    tunnel: refuseHandler('HBONE is not served yet (it arrives with the L4 proxy, issue 6)'),
    dns: dnsTcpHandler({ upstream: opts.dnsUpstream, connectTimeoutMs: timeouts.connectMs, idleTimeoutMs: timeouts.idleMs }),
  };
}

const TCP_KINDS: readonly ListenerKind[] = ['outbound', 'inbound', 'tunnel', 'dns'];

function emptyTcpStats(): TcpListenerStats {
  return { opened: 0, closed: 0, active: 0, failed: 0, bytesFromDownstream: 0, bytesToDownstream: 0 };
}

/** Sum of per-pod stats, for node-level metrics. Pure. */
export function addStats(a: InPodStats, b: InPodStats): InPodStats {
  const tcp = (x: TcpListenerStats, y: TcpListenerStats): TcpListenerStats => ({
    opened: x.opened + y.opened,
    closed: x.closed + y.closed,
    active: x.active + y.active,
    failed: x.failed + y.failed,
    bytesFromDownstream: x.bytesFromDownstream + y.bytesFromDownstream,
    bytesToDownstream: x.bytesToDownstream + y.bytesToDownstream,
  });
  const u = a.dnsUdp;
  const v = b.dnsUdp;
  return {
    outbound: tcp(a.outbound, b.outbound),
    inbound: tcp(a.inbound, b.inbound),
    tunnel: tcp(a.tunnel, b.tunnel),
    dns: tcp(a.dns, b.dns),
    dnsUdp: {
      queries: u.queries + v.queries,
      answered: u.answered + v.answered,
      timedOut: u.timedOut + v.timedOut,
      dropped: u.dropped + v.dropped,
      failed: u.failed + v.failed,
      inflight: u.inflight + v.inflight,
    },
  };
}

/** Stats of a pod with no traffic; the identity of `addStats`. */
export function emptyStats(): InPodStats {
  return {
    outbound: emptyTcpStats(),
    inbound: emptyTcpStats(),
    tunnel: emptyTcpStats(),
    dns: emptyTcpStats(),
    dnsUdp: { queries: 0, answered: 0, timedOut: 0, dropped: 0, failed: 0, inflight: 0 },
  };
}

interface Active {
  kind: ListenerKind;
  record: ConnectionRecord;
}

export class InPodProxy {
  readonly pod: PodRef;
  readonly netnsPath: string;
  readonly #opts: InPodProxyOptions;
  readonly #log: Logger;
  readonly #handlers: Record<ListenerKind, ConnectionHandler>;
  readonly #proxyPorts: number[];
  readonly #throttle = new Throttle();
  #ns: NetnsHandle;
  readonly #servers: net.Server[] = [];
  readonly #udp: dgram.Socket[] = [];
  readonly #relay: DnsUdpRelay;
  readonly #active = new Map<net.Socket, Active>();
  /** Counters of closed connections; live ones are added from #active in stats(). */
  readonly #done: Record<ListenerKind, TcpListenerStats> = {
    outbound: emptyTcpStats(),
    inbound: emptyTcpStats(),
    tunnel: emptyTcpStats(),
    dns: emptyTcpStats(),
  };
  readonly #dial: Dialer;
  #listening = true;
  #idleWaiters: (() => void)[] = [];

  /**
   * Opens the pod's netns at `netnsPath` and listens there on every port of `listenerPlan`. Resolves
   * when all listen; on any failure closes what it made and rejects with an Error that names the
   * pod, the socket and what to do.
   */
  static async open(netnsPath: string, pod: PodRef, opts: InPodProxyOptions): Promise<InPodProxy> {
    let ns: NetnsHandle;
    try {
      ns = openNetns(netnsPath);
    } catch (err) {
      throw new Error(`pod ${pod.namespace}/${pod.name}: cannot open its network namespace: ${(err as Error).message}`, { cause: err });
    }
    const proxy = new InPodProxy(netnsPath, pod, opts, ns);
    try {
      await proxy.#listen();
    } catch (err) {
      proxy.destroy();
      throw err;
    }
    return proxy;
  }

  private constructor(netnsPath: string, pod: PodRef, opts: InPodProxyOptions, ns: NetnsHandle) {
    this.netnsPath = netnsPath;
    this.pod = pod;
    this.#opts = opts;
    this.#ns = ns;
    this.#log = opts.log.child({ component: 'inpod', pod: `${pod.namespace}/${pod.name}` });
    const timeouts = resolveTimeouts(opts.timeouts);
    this.#handlers = { ...defaultHandlers(opts, timeouts), ...opts.handlers };
    const { ports } = opts.config;
    this.#proxyPorts = [ports.outbound, ports.inboundPlaintext, ports.inboundTunnel, ports.dns];
    this.#dial = this.#makeDialer();
    this.#relay = new DnsUdpRelay({
      upstream: opts.dnsUpstream,
      dialUdp: (family) => this.#dial.udp(family),
      timeoutMs: timeouts.dnsQueryMs,
      maxInflight: opts.dnsMaxInflight ?? DEFAULT_DNS_RELAY.maxInflight,
      warn: (key, fields, message) => this.#warn(`dns-udp:${key}`, fields, message),
      ...(opts.dnsAnswer !== undefined ? { answer: opts.dnsAnswer } : {}),
    });
  }

  /** Live counters per listener (bytes of open connections included). */
  stats(): InPodStats {
    const out = emptyStats();
    for (const kind of TCP_KINDS) Object.assign(out[kind], this.#done[kind]);
    for (const [sock, { kind }] of this.#active) {
      const s = out[kind];
      s.opened += 1;
      s.active += 1;
      s.bytesFromDownstream += sock.bytesRead;
      s.bytesToDownstream += sock.bytesWritten;
    }
    out.dnsUdp = this.#relay.stats();
    return out;
  }

  /** TCP connections open now, across listeners. */
  get activeConnections(): number {
    return this.#active.size;
  }

  /** Whether the listeners are open (false after close()/destroy()). */
  get listening(): boolean {
    return this.#listening;
  }

  /**
   * Stops listening: closes every listener socket, so the ports are free for a new instance at once.
   * Established TCP connections keep running until they end; the netns handle is released after
   * the last one. DNS queries in flight over UDP lose their answers (the client retries).
   */
  close(): void {
    if (!this.#listening) return;
    this.#listening = false;
    for (const server of this.#servers) server.close();
    for (const sock of this.#udp) sock.close();
    this.#log.info({ active: this.#active.size }, 'stopped listening in the pod netns; established connections continue');
    this.#releaseIfIdle();
  }

  /** Resolves when no TCP connection is left (after close(), for a graceful drain). */
  idle(): Promise<void> {
    if (this.#active.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** close() and cut every connection and DNS query now. For tests and pod deletion. */
  destroy(): void {
    this.close();
    for (const sock of [...this.#active.keys()]) sock.destroy();
    this.#relay.destroy();
    this.#ns.close();
  }

  async #listen(): Promise<void> {
    const plan = listenerPlan(this.#opts.config);
    const backlog = this.#opts.backlog ?? 511;
    const fds: { spec: ListenerSpec; fd: number }[] = [];
    try {
      inNetns(this.#ns, () => {
        for (const spec of plan) {
          const base = {
            family: spec.family,
            host: spec.host,
            port: spec.port,
            mark: this.#opts.config.proxyMark,
            reusePort: this.#opts.reusePort === true,
          };
          const withV6 = spec.v6Only === undefined ? base : { ...base, v6Only: spec.v6Only };
          fds.push({
            spec,
            fd: spec.protocol === 'tcp' ? createListenSocket({ ...withV6, backlog }) : createUdpSocket(withV6),
          });
        }
      });
    } catch (err) {
      for (const { fd } of fds) closeFd(fd);
      const spec = plan[fds.length]!;
      throw new Error(
        `pod ${this.pod.namespace}/${this.pod.name}: cannot listen on ${spec.protocol} ${formatAddress({ address: spec.host, port: spec.port })} ` +
          `(${spec.kind}) in netns ${this.netnsPath}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    const listening: Promise<void>[] = [];
    for (const { spec, fd } of fds) {
      if (spec.protocol === 'udp') {
        const sock = dgram.createSocket(spec.family === 4 ? 'udp4' : 'udp6');
        sock.bind({ fd }); // adopts the bound fd; 'listening' is emitted inside this call
        this.#udp.push(sock);
        this.#relay.attach(sock);
        continue;
      }
      const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
      server.on('connection', (sock: net.Socket) => this.#accept(spec.kind, sock));
      server.on('error', (err: NodeJS.ErrnoException) =>
        this.#warn(`accept:${err.code}`, { err, listener: spec.kind }, `${spec.kind} listener error: ${err.message}${err.code === 'EMFILE' ? ' (raise the agent\'s open-files limit)' : ''}`),
      );
      server.listen({ fd, backlog });
      this.#servers.push(server);
      listening.push(
        new Promise<void>((resolve, reject) => {
          server.once('listening', resolve);
          server.once('error', reject);
        }),
      );
    }
    await Promise.all(listening);
    this.#log.info({ netns: this.netnsPath, ports: plan.map((s) => `${s.protocol}/${s.port}`) }, 'listening in the pod netns');
  }

  #accept(kind: ListenerKind, sock: net.Socket): void {
    if (sock.remoteAddress === undefined || sock.remotePort === undefined) {
      sock.destroy(); // already gone (reset before we got to it)
      return;
    }
    const source: SocketAddress = { family: net.isIP(unmapIPv4(sock.remoteAddress)) as IpFamily, address: unmapIPv4(sock.remoteAddress), port: sock.remotePort };
    const record: ConnectionRecord = {
      listener: kind,
      pod: { namespace: this.pod.namespace, name: this.pod.name },
      source: formatAddress(source),
      startedAt: Date.now(),
      durationMs: 0,
      bytesFromDownstream: 0,
      bytesToDownstream: 0,
    };
    this.#active.set(sock, { kind, record });
    sock.once('close', (hadError: boolean) => this.#closed(kind, sock, record, hadError));

    let originalDst: SocketAddress | undefined;
    let refusal: string | undefined;
    if (kind !== 'tunnel') {
      try {
        originalDst = getOriginalDst(socketFd(sock));
        record.originalDst = formatAddress(originalDst);
      } catch (err) {
        if (kind !== 'dns') refusal = `its original destination is unknown: ${(err as Error).message}`;
      }
    }
    if (originalDst !== undefined && (kind === 'outbound' || kind === 'inbound')) {
      refusal = selfTargetReason(originalDst, { address: sock.localAddress ?? '', port: sock.localPort ?? 0 }, this.#proxyPorts, this.pod.ips);
    }
    const ctx: ConnectionContext = {
      listener: kind,
      pod: this.pod,
      source,
      originalDst,
      dial: this.#dial,
      log: this.#log,
      record,
      warn: (key, fields, message) => this.#warn(`${kind}:${key}`, fields, message),
    };
    const handler = refusal === undefined ? this.#handlers[kind] : refuseHandler(refusal);
    try {
      handler(sock, ctx);
    } catch (err) {
      this.#log.error({ err, listener: kind }, `${kind} connection handler threw; closing that connection (a bug: please report it)`);
      sock.destroy();
    }
  }

  #closed(kind: ListenerKind, sock: net.Socket, record: ConnectionRecord, hadError: boolean): void {
    this.#active.delete(sock);
    record.durationMs = Date.now() - record.startedAt;
    record.bytesFromDownstream = sock.bytesRead;
    record.bytesToDownstream = sock.bytesWritten;
    record.end ??= sock.readableEnded && sock.writableFinished ? 'closed' : hadError ? 'error' : 'aborted';
    const s = this.#done[kind];
    s.opened += 1;
    s.closed += 1;
    if (record.end === 'refused' || record.end === 'upstream-failed') s.failed += 1;
    s.bytesFromDownstream += record.bytesFromDownstream;
    s.bytesToDownstream += record.bytesToDownstream;
    this.#log.debug({ connection: record }, `${kind} connection closed`);
    try {
      this.#opts.onConnectionClosed?.(record);
    } catch (err) {
      this.#log.error({ err }, 'onConnectionClosed callback threw');
    }
    if (this.#active.size === 0) {
      for (const resolve of this.#idleWaiters.splice(0)) resolve();
      this.#releaseIfIdle();
    }
  }

  /** After close(), the netns handle is only needed while connections may still dial. */
  #releaseIfIdle(): void {
    if (!this.#listening && this.#active.size === 0) this.#ns.close();
  }

  #makeDialer(): Dialer {
    const mark = this.#opts.config.proxyMark;
    return {
      connect: (to) => {
        const family = net.isIP(to.host);
        if (family === 0) throw new TypeError(`cannot dial '${to.host}': not an IP address (no DNS inside a pod netns switch)`);
        return inNetns(this.#ns, () => connectSocket({ family: family as IpFamily, host: to.host, port: to.port, mark, allowHalfOpen: true }));
      },
      udp: (family) => {
        const fd = inNetns(this.#ns, () => createUdpSocket({ family, host: family === 4 ? '0.0.0.0' : '::', port: 0, mark }));
        const sock = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
        try {
          sock.bind({ fd });
        } catch (err) {
          closeFd(fd);
          throw err;
        }
        return sock;
      },
    };
  }

  #warn(key: string, fields: Record<string, unknown>, message: string): void {
    const suppressed = this.#throttle.allow(key, Date.now());
    if (suppressed === undefined) return;
    this.#log.warn(suppressed > 0 ? { ...fields, suppressed } : fields, suppressed > 0 ? `${message} (and ${suppressed} more like it since the last report)` : message);
  }
}

function resolveTimeouts(partial: Partial<InPodTimeouts> | undefined): InPodTimeouts {
  return {
    connectMs: partial?.connectMs ?? DEFAULT_FORWARD_TIMEOUTS.connectTimeoutMs,
    idleMs: partial?.idleMs ?? DEFAULT_FORWARD_TIMEOUTS.idleTimeoutMs,
    dnsQueryMs: partial?.dnsQueryMs ?? DEFAULT_DNS_RELAY.timeoutMs,
  };
}
