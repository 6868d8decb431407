/**
 * The HBONE server: the :15008 listener of one pod network namespace. It accepts TLS 1.3 with a
 * client certificate that chains to the trust bundle, speaks only HTTP/2, and turns each CONNECT
 * stream into a call of `onTunnel` (where the agent applies policy and connects to the application)
 * followed by a byte relay.
 *
 * Its certificate is the destination pod's own and is read through a getter at every new
 * connection: after a renewal the next handshake presents the new certificate while established
 * sessions go on with theirs (no restart, no dropped tunnel). The same holds for the trust bundle.
 *
 * Bad input closes only what it came on: a failed handshake (garbage, plain HTTP, no client
 * certificate, untrusted CA) closes that connection; a malformed request (non-CONNECT → 405, bad
 * :authority → 400, oversized headers → stream reset) closes that stream. Each is logged with the
 * peer address and reported through `onReject` for metrics.
 */
import { X509Certificate } from 'node:crypto';
import http2 from 'node:http2';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import type tls from 'node:tls';
import { pino, type Logger } from 'pino';
import { relay, abortStream } from './relay.js';
import { DEFAULT_TUNING, h2Settings, type H2Tuning } from './settings.js';
import { secureContextOptions } from './tls.js';
import type { TunnelEvent, TunnelRecord, WorkloadCredentials } from './types.js';
import { describeTlsFailure, flagForStatus, formatAuthority, parseAuthority, spiffeIdFromSubjectAltName } from './wire.js';

const { NGHTTP2_REFUSED_STREAM } = http2.constants;

export interface TunnelRequest {
  /** the client's SPIFFE ID, from its verified certificate */
  peerIdentity: string;
  /** the CONNECT target as sent, ip:port */
  authority: string;
  /** parsed from `authority` */
  host: string;
  port: number;
  family: 4 | 6;
  /** the connecting proxy's address (the source pod's IP when it dials from the pod netns) */
  remoteAddress: string;
  remotePort: number;
  /** aborted when the client gives up on the tunnel before it is set up */
  signal: AbortSignal;
}

/** A refused tunnel: the status sent to the client and the reason for our log. */
export interface TunnelRefusal {
  /** 403 policy denial, 502 application refused, 503 not ready, 504 timeout… */
  refuse: number;
  reason: string;
}

/** Decides on a tunnel: a connected application socket (allowHalfOpen: true) or a refusal. */
export type TunnelHandler = (req: TunnelRequest) => Promise<Duplex | TunnelRefusal>;

/** Input refused before or instead of a tunnel, for logs and metrics. */
export interface RejectEvent {
  /** connection: the TLS/HTTP2 connection was closed; stream: one request was refused */
  scope: 'connection' | 'stream';
  reason: string;
  code?: string;
  remoteAddress?: string;
  status?: number;
}

export interface HboneServerOptions {
  /** this pod's certificate and key; read at every new connection (renewal without restart) */
  credentials: () => WorkloadCredentials;
  /** trusted roots (PEM) for client certificates; read at every new connection */
  trustBundle: () => readonly string[];
  onTunnel: TunnelHandler;
  logger?: Logger;
  onEvent?: (event: TunnelEvent) => void;
  onReject?: (event: RejectEvent) => void;
  /** a TLS handshake must finish within this; default 10 s */
  handshakeTimeoutMs?: number;
  /** `onTunnel` must settle within this, else 504; default 10 s */
  tunnelSetupTimeoutMs?: number;
  /** a session without tunnels and without traffic is closed after this; default 5 min */
  sessionIdleTimeoutMs?: number;
  tuning?: Partial<H2Tuning>;
}

export interface DrainOptions {
  /** how long open tunnels may go on after GOAWAY before they are cut; default 5 s */
  drainMs?: number;
}

interface PeerInfo {
  identity: string;
  remoteAddress: string;
  remotePort: number;
  streams: number;
}

const silent = pino({ level: 'silent' });
let nextTunnelId = 1;

function isRefusal(x: Duplex | TunnelRefusal): x is TunnelRefusal {
  return typeof (x as TunnelRefusal).refuse === 'number';
}

export class HboneServer {
  readonly #opts: HboneServerOptions;
  readonly #tuning: H2Tuning;
  readonly #log: Logger;
  readonly #server: http2.Http2SecureServer;
  readonly #sessions = new Map<http2.ServerHttp2Session, PeerInfo>();
  #leafPem = '';
  #bundle: readonly string[] = [];
  #closing = false;

  constructor(opts: HboneServerOptions) {
    this.#opts = opts;
    this.#tuning = { ...DEFAULT_TUNING, ...opts.tuning };
    this.#log = opts.logger ?? silent;
    const creds = opts.credentials();
    const bundle = opts.trustBundle();
    this.#leafPem = creds.certChainPem[0] ?? '';
    this.#bundle = bundle;
    this.#server = http2.createSecureServer({
      ...secureContextOptions(creds, bundle),
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: ['h2'],
      allowHTTP1: false,
      handshakeTimeout: opts.handshakeTimeoutMs ?? 10_000,
      unknownProtocolTimeout: 1000,
      settings: h2Settings(this.#tuning),
      maxSessionMemory: this.#tuning.maxSessionMemoryMb,
      maxHeaderListPairs: 32,
      maxSessionInvalidFrames: 100,
      maxSessionRejectedStreams: 100,
    });
    const server = this.#server;
    // Runs before the TLS layer wraps the socket, so a renewed certificate applies to this handshake.
    server.prependListener('connection', (socket: net.Socket) => this.#onConnection(socket));
    server.on('tlsClientError', (err: Error & { code?: string }, socket: tls.TLSSocket) => {
      // A client certificate that fails verification is refused by Node after the handshake, and
      // the error seen here is then only the reset; the verification result says why.
      const code = (socket?.authorizationError as unknown as string | undefined) ?? err.code;
      this.#reject({ scope: 'connection', reason: describeTlsFailure(code, err.message), code, remoteAddress: peerAddressOf(socket) });
    });
    server.on('unknownProtocol', (socket: tls.TLSSocket) => {
      this.#reject({ scope: 'connection', reason: `client negotiated ALPN ${String(socket.alpnProtocol)}; HBONE speaks only h2`, remoteAddress: peerAddressOf(socket) });
      socket.destroy();
    });
    server.on('session', (session) => this.#onSession(session));
    server.on('stream', (stream, headers) => void this.#onStream(stream, headers));
    server.on('sessionError', (err: Error & { code?: string }) => {
      this.#log.debug({ err: { code: err.code, message: err.message } }, 'HBONE session error');
    });
  }

  /** Listens (e.g. `{ fd }` of a socket made in the pod netns, or `{ port: 0, host: '127.0.0.1' }`). */
  listen(options: net.ListenOptions): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(options, () => {
        this.#server.off('error', reject);
        resolve(this.#server.address() as net.AddressInfo);
      });
    });
  }

  /** Serves a connection accepted elsewhere (e.g. a worker handed the socket over). */
  acceptSocket(socket: net.Socket): void {
    this.#server.emit('connection', socket);
  }

  address(): net.AddressInfo | null {
    return this.#server.address() as net.AddressInfo | null;
  }

  /** Established sessions (one per connecting proxy and source pod) and the tunnels on them. */
  stats(): { sessions: number; tunnels: number } {
    let tunnels = 0;
    for (const p of this.#sessions.values()) tunnels += p.streams;
    return { sessions: this.#sessions.size, tunnels };
  }

  /**
   * Graceful drain: stop accepting, send GOAWAY on every session (clients open new tunnels
   * elsewhere), let open tunnels finish for up to `drainMs`, then cut what is left.
   */
  async close(opts: DrainOptions = {}): Promise<void> {
    const drainMs = opts.drainMs ?? 5000;
    this.#closing = true;
    if (this.#server.listening) this.#server.close();
    for (const session of this.#sessions.keys()) if (!session.closed) session.close();
    const deadline = Date.now() + drainMs;
    await this.#sessionsGone(deadline);
    if (this.#sessions.size > 0) {
      this.#log.info({ sessions: this.#sessions.size, tunnels: this.stats().tunnels }, `HBONE drain: cutting what is still open after ${drainMs} ms`);
      for (const session of this.#sessions.keys()) session.destroy();
      await this.#sessionsGone(Date.now() + 1000); // 'close' follows destroy() asynchronously
    }
    // Connections still in their TLS handshake end by the handshake timeout. (Destroying the raw
    // socket under a TLS socket from outside leaves Node unable to finish its handle cleanup at exit.)
  }

  async #sessionsGone(deadline: number): Promise<void> {
    while (this.#sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }

  #onConnection(socket: net.Socket): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    this.#refreshSecureContext();
  }

  /** Our identity for records; the last presented one when the credentials are gone. */
  #localIdentity(): string {
    try {
      return this.#opts.credentials().identity;
    } catch {
      return spiffeIdFromLeaf(this.#leafPem);
    }
  }

  #refreshSecureContext(): void {
    let creds: WorkloadCredentials;
    let bundle: readonly string[];
    try {
      creds = this.#opts.credentials();
      bundle = this.#opts.trustBundle();
    } catch (err) {
      // No credentials right now (e.g. released): keep presenting the last ones; never throw from
      // a connection event, which would take the process down.
      this.#log.warn({ err }, 'HBONE credentials unavailable; the listener keeps its previous certificate');
      return;
    }
    const leaf = creds.certChainPem[0] ?? '';
    if (leaf === this.#leafPem && (bundle === this.#bundle || (bundle.length === this.#bundle.length && bundle.every((p, i) => p === this.#bundle[i])))) return;
    try {
      this.#server.setSecureContext({ ...secureContextOptions(creds, bundle) });
      this.#leafPem = leaf;
      this.#bundle = bundle;
      this.#log.info({ identity: creds.identity }, 'HBONE listener now presents a renewed certificate / trust bundle');
    } catch (err) {
      // Keep serving with the previous certificate rather than failing every handshake.
      this.#log.error({ err: { message: (err as Error).message }, identity: creds.identity }, 'HBONE: the renewed certificate or key is unusable; still presenting the previous one');
    }
  }

  #onSession(session: http2.ServerHttp2Session): void {
    const socket = session.socket as tls.TLSSocket;
    const remoteAddress = socket.remoteAddress ?? '';
    const remotePort = socket.remotePort ?? 0;
    session.on('error', () => {}); // reported via sessionError; a session error must not crash the process
    const peer = spiffeIdFromSubjectAltName(socket.getPeerCertificate()?.subjectaltname);
    if (!peer.ok) {
      this.#reject({ scope: 'connection', reason: `client certificate is not a workload certificate: ${peer.error}`, remoteAddress: formatAuthority(remoteAddress, remotePort) });
      session.destroy();
      return;
    }
    const info: PeerInfo = { identity: peer.value, remoteAddress, remotePort, streams: 0 };
    this.#sessions.set(session, info);
    session.once('close', () => this.#sessions.delete(session));
    if (this.#closing) {
      session.close();
      return;
    }
    session.setLocalWindowSize(this.#tuning.connectionWindow);
    session.setTimeout(this.#opts.sessionIdleTimeoutMs ?? 300_000, () => {
      if (info.streams === 0) session.close();
    });
  }

  async #onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): Promise<void> {
    stream.on('error', () => {}); // the relay reports stream errors; a reset must not crash the process
    const info = this.#sessions.get(stream.session as http2.ServerHttp2Session);
    if (!info) {
      stream.close(NGHTTP2_REFUSED_STREAM);
      return;
    }
    const from = formatAuthority(info.remoteAddress, info.remotePort);
    if (this.#closing) {
      stream.close(NGHTTP2_REFUSED_STREAM);
      return;
    }
    const method = headers[':method'];
    if (method !== 'CONNECT') {
      this.#refuseStream(stream, 405, `${String(method)} request on the HBONE port (only CONNECT is served)`, from);
      return;
    }
    // The advertised SETTINGS_MAX_HEADER_LIST_SIZE binds only after the client acknowledged our
    // SETTINGS; a client that sends at once is held to it here (RFC 9113 §6.5.2 size rule).
    const headerBytes = headerListSize(headers);
    if (headerBytes > this.#tuning.maxHeaderListSize) {
      this.#refuseStream(stream, 431, `header block of ${headerBytes} bytes is over the ${this.#tuning.maxHeaderListSize}-byte limit`, from);
      return;
    }
    const authority = headers[':authority'];
    const target = parseAuthority(authority);
    if (!target.ok) {
      this.#refuseStream(stream, 400, target.error, from);
      return;
    }

    info.streams += 1;
    stream.once('close', () => {
      info.streams -= 1;
    });
    const record: TunnelRecord = {
      side: 'server',
      id: nextTunnelId++,
      localIdentity: this.#localIdentity(),
      peerIdentity: info.identity,
      authority: authority!,
      peerAddress: from,
      startTime: Date.now(),
      durationMs: 0,
      requestBytes: 0,
      responseBytes: 0,
      status: 0,
      responseFlags: '-',
    };
    const outcome = await this.#decide(stream, {
      peerIdentity: info.identity,
      authority: authority!,
      host: target.value.host,
      port: target.value.port,
      family: target.value.family,
      remoteAddress: info.remoteAddress,
      remotePort: info.remotePort,
    });
    if (stream.destroyed || stream.closed) {
      if (outcome && !isRefusal(outcome)) abortStream(outcome);
      record.responseFlags = 'DC';
      record.error = 'the client cancelled the tunnel before it was set up';
      this.#finish(record);
      return;
    }
    if (isRefusal(outcome)) {
      record.status = outcome.refuse;
      record.responseFlags = flagForStatus(outcome.refuse);
      record.error = outcome.reason;
      this.#log.debug({ peer: info.identity, from, authority, status: outcome.refuse, reason: outcome.reason }, 'HBONE tunnel refused');
      stream.respond({ ':status': outcome.refuse }, { endStream: true });
      this.#finish(record);
      return;
    }
    record.status = 200;
    stream.respond({ ':status': 200 });
    this.#opts.onEvent?.({ type: 'open', tunnel: { ...record } });
    const result = await relay(stream, outcome);
    record.requestBytes = result.fromTunnel;
    record.responseBytes = result.toTunnel;
    if (result.aborted) {
      record.responseFlags = result.aborted === 'tunnel' ? 'DC' : 'UC';
      if (result.error) record.error = result.error.message;
    }
    this.#finish(record);
  }

  /** Runs the handler with a setup deadline and an abort signal tied to the stream. */
  async #decide(stream: http2.ServerHttp2Stream, req: Omit<TunnelRequest, 'signal'>): Promise<Duplex | TunnelRefusal> {
    const abort = new AbortController();
    const onClose = (): void => abort.abort();
    stream.once('close', onClose);
    const timeoutMs = this.#opts.tunnelSetupTimeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<TunnelRefusal>((resolve) => {
      timer = setTimeout(() => resolve({ refuse: 504, reason: `the tunnel was not set up within ${timeoutMs} ms (application connect too slow?)` }), timeoutMs);
    });
    const decision = this.#opts.onTunnel({ ...req, signal: abort.signal }).catch(
      (err: unknown): TunnelRefusal => ({ refuse: 502, reason: `connecting to the application failed: ${(err as Error).message ?? String(err)}` }),
    );
    try {
      const first = await Promise.race([decision, timeout]);
      // A socket that arrives after the deadline has nobody to talk to.
      if (isRefusal(first) && first.refuse === 504) void decision.then((late) => !isRefusal(late) && abortStream(late));
      return first;
    } finally {
      clearTimeout(timer);
      stream.off('close', onClose);
    }
  }

  #refuseStream(stream: http2.ServerHttp2Stream, status: number, reason: string, from: string): void {
    this.#reject({ scope: 'stream', reason, status, remoteAddress: from });
    if (!stream.closed && !stream.headersSent) stream.respond({ ':status': status }, { endStream: true });
  }

  #finish(record: TunnelRecord): void {
    record.durationMs = Date.now() - record.startTime;
    this.#opts.onEvent?.({ type: 'close', tunnel: record });
  }

  #reject(event: RejectEvent): void {
    this.#log.warn({ from: event.remoteAddress, code: event.code, status: event.status }, `HBONE ${event.scope} refused: ${event.reason}`);
    this.#opts.onReject?.(event);
  }
}

/** RFC 9113 §6.5.2: the uncompressed size of a header list, 32 bytes of overhead per field. */
function headerListSize(headers: http2.IncomingHttpHeaders): number {
  let size = 0;
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) size += name.length + v.length + 32;
  }
  return size;
}

function peerAddressOf(socket: net.Socket | undefined): string | undefined {
  if (!socket?.remoteAddress) return undefined;
  return formatAuthority(socket.remoteAddress, socket.remotePort ?? 0);
}

/** The SPIFFE ID in a PEM leaf certificate's URI SAN ('' when none). */
function spiffeIdFromLeaf(pem: string): string {
  try {
    const id = spiffeIdFromSubjectAltName(new X509Certificate(pem).subjectAltName);
    return id.ok ? id.value : '';
  } catch {
    return '';
  }
}
