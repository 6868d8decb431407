/**
 * The HBONE client: opens tunnels (HTTP/2 CONNECT streams) to a destination pod's :15008 over
 * TLS 1.3 mutual TLS, presenting the source workload's certificate and accepting only a server
 * certificate that carries the expected destination SPIFFE ID.
 *
 * Sessions are pooled per (source identity, destination identity, source address, destination
 * address): one TLS + HTTP/2 session carries many tunnels, is opened on first use, reused while it
 * has stream capacity, and leaves the pool on GOAWAY, close, error, idle timeout, or when the source
 * certificate is renewed (new tunnels then go on a session with the new certificate; the old one
 * finishes its tunnels and closes). The socket under a session is injectable (`connectSocket`), so
 * the agent can dial from inside a pod's network namespace with the proxy's mark.
 */
import http2 from 'node:http2';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { pino, type Logger } from 'pino';
import { HboneError } from './errors.js';
import { relay, abortStream } from './relay.js';
import { DEFAULT_TUNING, h2Settings, type H2Tuning } from './settings.js';
import { SecureContextCache, checkPeerIdentity } from './tls.js';
import type { TunnelEvent, TunnelRecord, WorkloadCredentials } from './types.js';
import { HBONE_PORT, describeStatus, describeTlsFailure, flagForStatus, formatAuthority, poolKey, type ResponseFlag } from './wire.js';

const { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM } = http2.constants;

export interface HboneClientOptions {
  /** trusted root certificates (PEM); read for every new session, so a rotated bundle applies at once */
  trustBundle: () => readonly string[];
  logger?: Logger;
  /** TCP connect + TLS handshake + HTTP/2 setup; default 10 s */
  connectTimeoutMs?: number;
  /** CONNECT sent → response headers; default 15 s (the destination may be connecting to a slow app) */
  responseTimeoutMs?: number;
  /** a session without tunnels closes after this; default 60 s */
  idleTimeoutMs?: number;
  /** tunnels per session before another session to the same key opens; default 100 */
  maxStreamsPerSession?: number;
  tuning?: Partial<H2Tuning>;
  /** tunnel open/close records from `tunnel()`, for metrics and access logs */
  onEvent?: (event: TunnelEvent) => void;
}

/** Dials the TCP connection under a session; must return a socket that is connecting or connected. */
export type SocketDialer = (target: { host: string; port: number; family: 4 | 6 }) => net.Socket;

export interface HboneConnectRequest {
  /** the source workload's certificate and key */
  source: WorkloadCredentials;
  /** the SPIFFE ID the destination's certificate must carry */
  expectedPeer: string;
  /** destination pod IP */
  address: string;
  /** default 15008 */
  port?: number;
  /** CONNECT target, `ip:port` of the application (usually address:targetPort) */
  authority: string;
  /** the source pod's IP; part of the pool key (see the file header) */
  sourceAddress?: string;
  /** default: net.connect with TCP_NODELAY */
  connectSocket?: SocketDialer;
}

export interface HboneClientStats {
  /** sessions in the pool or still carrying tunnels */
  sessions: number;
  /** sessions dialled since start */
  sessionsOpened: number;
  /** tunnels open now */
  activeTunnels: number;
}

interface PooledSession {
  key: string;
  session: http2.ClientHttp2Session;
  /** leaf certificate the session was made with: a renewed certificate needs a new session */
  leafPem: string;
  target: string;
  ready: Promise<void>;
  active: number;
  capacity: number;
  draining: boolean;
  idleTimer: NodeJS.Timeout | undefined;
  /** the first error of the session or its sockets */
  error: (Error & { code?: string }) | undefined;
  /** the server has answered at least one CONNECT on it (so it accepted our certificate) */
  answered: boolean;
}

const silent = pino({ level: 'silent' });
let nextTunnelId = 1;

export class HboneClient {
  readonly #opts: Required<Omit<HboneClientOptions, 'logger' | 'onEvent' | 'tuning'>>;
  readonly #tuning: H2Tuning;
  readonly #log: Logger;
  readonly #onEvent: ((event: TunnelEvent) => void) | undefined;
  readonly #pool = new Map<string, PooledSession[]>();
  /** every session not yet closed, pooled or draining */
  readonly #live = new Set<PooledSession>();
  readonly #contexts = new SecureContextCache();
  #sessionsOpened = 0;
  #closed = false;

  constructor(opts: HboneClientOptions) {
    this.#opts = {
      trustBundle: opts.trustBundle,
      connectTimeoutMs: opts.connectTimeoutMs ?? 10_000,
      responseTimeoutMs: opts.responseTimeoutMs ?? 15_000,
      idleTimeoutMs: opts.idleTimeoutMs ?? 60_000,
      maxStreamsPerSession: opts.maxStreamsPerSession ?? 100,
    };
    this.#tuning = { ...DEFAULT_TUNING, ...opts.tuning };
    this.#log = opts.logger ?? silent;
    this.#onEvent = opts.onEvent;
  }

  stats(): HboneClientStats {
    let activeTunnels = 0;
    for (const p of this.#live) activeTunnels += p.active;
    return { sessions: this.#live.size, sessionsOpened: this.#sessionsOpened, activeTunnels };
  }

  /**
   * Opens a tunnel and returns its stream once the destination answered 200: what is written to it
   * reaches the destination application, what it yields came from it. Rejects with an HboneError.
   */
  async connect(req: HboneConnectRequest): Promise<Duplex> {
    if (this.#closed) throw new HboneError('SESSION_CLOSED', 'the HBONE client is closed');
    try {
      return await this.#openOnce(req);
    } catch (err) {
      // A tunnel refused because its session was going away (GOAWAY, or closed between pick and
      // request) never reached the destination application: one retry on a fresh session is safe.
      if (err instanceof HboneError && err.code === 'SESSION_CLOSED' && !this.#closed) return this.#openOnce(req);
      throw err;
    }
  }

  /**
   * Connects and relays `downstream` (the captured application connection, created with
   * `allowHalfOpen: true`) through the tunnel until both are closed. Emits open/close events and
   * resolves with the tunnel's record; never rejects (a failed connect resets `downstream` and is
   * reported in the record's `error` and `responseFlags` — unless `fallback` takes the error, in
   * which case `downstream` is left as it was and the record says `fellBack`).
   */
  async tunnel(req: HboneConnectRequest, downstream: Duplex, opts: { fallback?: (err: HboneError) => boolean } = {}): Promise<TunnelRecord & { fellBack?: boolean }> {
    const port = req.port ?? HBONE_PORT;
    const record: TunnelRecord = {
      side: 'client',
      id: nextTunnelId++,
      localIdentity: req.source.identity,
      peerIdentity: req.expectedPeer,
      authority: req.authority,
      peerAddress: formatAuthority(req.address, port),
      startTime: Date.now(),
      durationMs: 0,
      requestBytes: 0,
      responseBytes: 0,
      status: 0,
      responseFlags: '-',
    };
    let stream: Duplex;
    try {
      stream = await this.connect(req);
    } catch (err) {
      const e = err instanceof HboneError ? err : new HboneError('TLS_FAILED', String(err));
      record.status = e.status;
      record.responseFlags = flagForError(e);
      record.error = e.message;
      record.durationMs = Date.now() - record.startTime;
      // The caller may take the connection another way (downstream untouched); else it is reset.
      if (opts.fallback?.(e)) return { ...record, fellBack: true };
      abortStream(downstream);
      this.#onEvent?.({ type: 'close', tunnel: record });
      return record;
    }
    record.status = 200;
    this.#onEvent?.({ type: 'open', tunnel: { ...record } });
    const result = await relay(stream, downstream);
    record.requestBytes = result.toTunnel;
    record.responseBytes = result.fromTunnel;
    record.durationMs = Date.now() - record.startTime;
    if (result.aborted) {
      record.responseFlags = result.aborted === 'tunnel' ? 'UC' : 'DC';
      if (result.error) record.error = result.error.message;
    }
    this.#onEvent?.({ type: 'close', tunnel: record });
    return record;
  }

  /** Closes every session gracefully (open tunnels finish) and refuses new tunnels. */
  async close(): Promise<void> {
    this.#closed = true;
    const closing = [...this.#live].map(
      (p) =>
        new Promise<void>((resolve) => {
          if (p.session.closed || p.session.destroyed) return resolve();
          p.session.close(() => resolve());
        }),
    );
    for (const p of this.#live) this.#drain(p);
    await Promise.all(closing);
  }

  /** Destroys every session and its tunnels at once. */
  destroy(): void {
    this.#closed = true;
    for (const p of [...this.#live]) p.session.destroy();
  }

  async #openOnce(req: HboneConnectRequest): Promise<Duplex> {
    const pooled = this.#acquire(req);
    try {
      await pooled.ready;
    } catch (err) {
      this.#release(pooled);
      throw err;
    }
    let stream: http2.ClientHttp2Stream;
    try {
      stream = pooled.session.request({ ':method': 'CONNECT', ':authority': req.authority }, { endStream: false });
    } catch (err) {
      this.#release(pooled);
      this.#drain(pooled);
      throw new HboneError('SESSION_CLOSED', `HBONE session to ${pooled.target} is closing: ${(err as Error).message}`, 0, { cause: err });
    }
    stream.once('close', () => this.#release(pooled));
    // The relay (or the caller) reports stream errors; this keeps an unwatched RST from crashing.
    stream.on('error', () => {});
    return this.#awaitResponse(stream, pooled, req.authority);
  }

  #awaitResponse(stream: http2.ClientHttp2Stream, pooled: PooledSession, authority: string): Promise<Duplex> {
    const target = pooled.target;
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (err?: HboneError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          if (!stream.closed) stream.close(NGHTTP2_CANCEL);
          reject(err);
        } else resolve(stream);
      };
      const timer = setTimeout(() => {
        settle(new HboneError('TUNNEL_TIMEOUT', `HBONE CONNECT ${authority} via ${target} got no answer in ${this.#opts.responseTimeoutMs} ms — is the destination proxy overloaded, or the application slow to accept?`));
      }, this.#opts.responseTimeoutMs);
      stream.once('response', (headers) => {
        pooled.answered = true;
        const status = Number(headers[':status']);
        if (status === 200) return settle();
        settle(new HboneError('TUNNEL_REFUSED', `HBONE CONNECT ${authority} via ${target} refused with ${status}: ${describeStatus(status)}`, status));
      });
      stream.once('close', () => {
        if (settled) return; // the usual case: answered long ago; building an error here costs a stack trace
        if (!pooled.answered && pooled.session.destroyed) {
          // In TLS 1.3 the client finishes its handshake before the server has checked the client
          // certificate: a server that refuses it shows up here, as a session gone before any answer.
          const cause = pooled.error ? describeTlsFailure(pooled.error.code, pooled.error.message) : 'no error given';
          settle(new HboneError('TLS_FAILED', `server at ${target} closed the session before answering any tunnel (${cause}) — it most likely rejected our client certificate: do both sides trust the same CA, and is our certificate current?`));
          return;
        }
        const refused = stream.rstCode === NGHTTP2_REFUSED_STREAM;
        const why = refused ? 'the destination refused the stream (going away or at its stream limit)' : `stream closed with code ${stream.rstCode}`;
        settle(new HboneError('SESSION_CLOSED', `HBONE CONNECT ${authority} via ${target} ended before an answer: ${why}`));
      });
    });
  }

  /** A session for `req` with room for one more tunnel (counted as taken), dialling one if needed. */
  #acquire(req: HboneConnectRequest): PooledSession {
    const port = req.port ?? HBONE_PORT;
    const key = poolKey({ sourceIdentity: req.source.identity, destinationIdentity: req.expectedPeer, sourceAddress: req.sourceAddress, address: req.address, port });
    const leafPem = req.source.certChainPem[0] ?? '';
    for (const p of this.#pool.get(key) ?? []) {
      if (p.draining) continue;
      if (p.leafPem !== leafPem) {
        this.#drain(p); // the source certificate was renewed: let this session finish its tunnels
        continue;
      }
      if (p.active >= p.capacity) continue;
      p.active += 1;
      if (p.idleTimer) clearTimeout(p.idleTimer);
      p.idleTimer = undefined;
      return p;
    }
    const p = this.#dial(key, req, port, leafPem);
    p.active = 1;
    const list = this.#pool.get(key);
    if (list) list.push(p);
    else this.#pool.set(key, [p]);
    return p;
  }

  #release(p: PooledSession): void {
    p.active -= 1;
    if (p.active > 0) return;
    if (p.draining) {
      if (!p.session.closed && !p.session.destroyed) p.session.close();
      return;
    }
    if (p.idleTimer) clearTimeout(p.idleTimer);
    p.idleTimer = setTimeout(() => {
      p.idleTimer = undefined;
      if (p.active === 0) this.#drain(p);
    }, this.#opts.idleTimeoutMs);
    p.idleTimer.unref();
  }

  /** Takes `p` out of the pool: no new tunnels; closes once its tunnels are done. */
  #drain(p: PooledSession): void {
    if (!p.draining) {
      p.draining = true;
      const list = this.#pool.get(p.key);
      if (list) {
        const rest = list.filter((x) => x !== p);
        if (rest.length > 0) this.#pool.set(p.key, rest);
        else this.#pool.delete(p.key);
      }
    }
    if (p.idleTimer) clearTimeout(p.idleTimer);
    p.idleTimer = undefined;
    if (p.active === 0 && !p.session.closed && !p.session.destroyed) p.session.close();
  }

  #dial(key: string, req: HboneConnectRequest, port: number, leafPem: string): PooledSession {
    const family = net.isIP(req.address);
    if (family === 0) throw new HboneError('CONNECT_REFUSED', `HBONE destination "${req.address}" is not an IP address`);
    const target = formatAuthority(req.address, port);
    const socket = req.connectSocket ? req.connectSocket({ host: req.address, port, family: family as 4 | 6 }) : net.connect({ host: req.address, port, noDelay: true });
    socket.setNoDelay(true);
    const tlsSocket = tls.connect({
      socket,
      host: req.address, // an IP: no SNI is sent
      secureContext: this.#contexts.get(req.source, this.#opts.trustBundle()),
      ALPNProtocols: ['h2'],
      rejectUnauthorized: true,
      // Replaces hostname matching: the server must be the expected workload, whatever its IP.
      checkServerIdentity: (_host, cert) => checkPeerIdentity(req.expectedPeer, target, cert),
    });
    const session = http2.connect(`https://${target}`, {
      createConnection: () => tlsSocket,
      settings: h2Settings(this.#tuning),
      maxSessionMemory: this.#tuning.maxSessionMemoryMb,
    });
    this.#sessionsOpened += 1;
    const p: PooledSession = {
      key,
      session,
      leafPem,
      target,
      ready: undefined as unknown as Promise<void>,
      active: 0,
      capacity: this.#opts.maxStreamsPerSession,
      draining: false,
      idleTimer: undefined,
      error: undefined,
      answered: false,
    };
    this.#live.add(p);
    p.ready = this.#setup(p, socket, tlsSocket, req);
    p.ready.catch(() => {}); // callers await it; this keeps a failure nobody awaits from being unhandled
    return p;
  }

  /** Resolves when the session is usable; wires its lifetime events to the pool. */
  #setup(p: PooledSession, socket: net.Socket, tlsSocket: tls.TLSSocket, req: HboneConnectRequest): Promise<void> {
    const { session, target } = p;
    const log = this.#log;
    const noteError = (err: Error): void => {
      p.error ??= err;
    };
    socket.on('error', noteError);
    tlsSocket.on('error', noteError);

    session.on('remoteSettings', (settings) => {
      if (settings.maxConcurrentStreams !== undefined) p.capacity = Math.min(this.#opts.maxStreamsPerSession, settings.maxConcurrentStreams);
    });
    session.on('goaway', (code) => {
      log.debug({ target, code }, 'HBONE session got GOAWAY; new tunnels go on a new session');
      this.#drain(p);
    });
    session.on('error', (err) => {
      noteError(err);
      log.warn({ target, peer: req.expectedPeer, err: describeSessionError(err, target) }, 'HBONE session failed');
    });
    session.once('close', () => {
      this.#live.delete(p);
      this.#drain(p);
    });

    return new Promise<void>((resolve, reject) => {
      const fail = (err: HboneError): void => {
        clearTimeout(timer);
        reject(err);
        this.#drain(p);
        // A session whose socket never connected emits no 'close': forget it and free the sockets here.
        this.#live.delete(p);
        if (!session.destroyed) session.destroy();
        tlsSocket.destroy();
        // Only a socket that never connected is ours to destroy: once TLS took its handle over,
        // destroying it from outside leaves Node unable to finish handle cleanup at exit.
        if (socket.connecting || socket.pending) socket.destroy();
      };
      const timer = setTimeout(() => {
        fail(
          socket.connecting
            ? new HboneError('CONNECT_TIMEOUT', `connection to ${target} timed out after ${this.#opts.connectTimeoutMs} ms — is a NetworkPolicy blocking port ${target.slice(target.lastIndexOf(':') + 1)}, or the destination node down?`)
            : new HboneError('TLS_TIMEOUT', `connected to ${target} but the TLS/HTTP2 handshake did not finish in ${this.#opts.connectTimeoutMs} ms — is something other than the ambit proxy listening there?`),
        );
      }, this.#opts.connectTimeoutMs);
      session.once('connect', () => {
        clearTimeout(timer);
        if (tlsSocket.alpnProtocol !== 'h2') {
          return fail(new HboneError('TLS_FAILED', `server at ${target} did not agree to ALPN h2 (got ${String(tlsSocket.alpnProtocol)}); it is not an HBONE endpoint`));
        }
        session.setLocalWindowSize(this.#tuning.connectionWindow);
        this.#log.debug({ target, peer: req.expectedPeer }, 'HBONE session established');
        resolve();
      });
      session.once('close', () => fail(connectError(p.error, target)));
    });
  }
}

function connectError(err: (Error & { code?: string }) | undefined, target: string): HboneError {
  if (!err) return new HboneError('SESSION_CLOSED', `HBONE session to ${target} closed during setup`);
  const code = err.code;
  if (code === 'ERR_HBONE_PEER_IDENTITY') return new HboneError('PEER_IDENTITY', err.message, 0, { cause: err });
  if (code === 'ECONNREFUSED') {
    return new HboneError('CONNECT_REFUSED', `connection to ${target} refused — nothing listens on the HBONE port there: is the destination pod enrolled and the ambit agent running on its node?`, 0, { cause: err });
  }
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return new HboneError('CONNECT_REFUSED', `${target} is unreachable (${code}) — check the pod network routes`, 0, { cause: err });
  if (code === 'ETIMEDOUT') return new HboneError('CONNECT_TIMEOUT', `connection to ${target} timed out — is a NetworkPolicy blocking port 15008?`, 0, { cause: err });
  return new HboneError('TLS_FAILED', `TLS with ${target} failed: ${describeTlsFailure(code, err.message)}`, 0, { cause: err });
}

function describeSessionError(err: Error & { code?: string }, target: string): string {
  return `${target}: ${err.code === 'ERR_HBONE_PEER_IDENTITY' ? err.message : describeTlsFailure(err.code, err.message)}`;
}

function flagForError(err: HboneError): ResponseFlag {
  if (err.code === 'TUNNEL_REFUSED') return flagForStatus(err.status);
  if (err.code === 'CONNECT_TIMEOUT' || err.code === 'TLS_TIMEOUT' || err.code === 'TUNNEL_TIMEOUT') return 'UT';
  return 'UF';
}
