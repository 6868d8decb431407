/**
 * The DNS relay behind the in-pod port 15053: the pod's DNS (UDP and TCP port 53) is redirected
 * here and relayed, unchanged, to the upstream resolver (the agent passes the cluster DNS Service).
 * Issue 6 will answer Service names itself and forward only the rest; until then every query —
 * A, AAAA, SRV, TXT, dynamic updates alike — passes through byte for byte, so nothing a pod's
 * resolver does breaks (a pain point of other meshes' DNS capture).
 *
 * UDP: each query goes out on its own socket made in the pod netns with the proxy mark (so the
 * pod's DNS capture skips it), from a kernel-picked port. The answer is the datagram that comes back
 * on that socket from the upstream address with the query's DNS id and the response bit set; it is
 * sent back to the client's address and port from the listener socket. Per-query sockets make
 * matching trivial and keep each query's source port unpredictable (spoofing resistance); a query
 * rate where the extra socket() calls matter is far above what a pod's resolver sends.
 * Bounded: at most `maxInflight` queries per pod wait for an answer; more are dropped (the client's
 * resolver retries, as after any lost datagram), and each waits at most `timeoutMs`.
 *
 * TCP: a connection to 15053 is spliced to the upstream resolver over a marked TCP connection
 * (forward.ts), which carries DNS's length-prefixed messages unchanged.
 */
import type dgram from 'node:dgram';
import net from 'node:net';
import type { IpFamily } from '../sys/index.js';
import { formatAddress, unmapIPv4, type ConnectionHandler, type Target } from './connection.js';
import { forwardHandler } from './forward.js';

/** The resolver the relay forwards to. */
export type DnsUpstream = Target;

export interface DnsUdpStats {
  /** Datagrams received on the listener(s). */
  queries: number;
  /** Answers relayed back to the client. */
  answered: number;
  /** Queries the upstream did not answer in time. */
  timedOut: number;
  /** Dropped on arrival: not a DNS query, or too many already in flight. */
  dropped: number;
  /** Could not be sent: no upstream configured, socket errors. */
  failed: number;
  /** Waiting for an answer now. */
  inflight: number;
}

export interface DnsUdpRelayOptions {
  /** Asked per query, so a changed cluster DNS address applies at once. */
  upstream: () => DnsUpstream | undefined;
  /** A UDP socket as the pod (in its netns, marked), bound to an ephemeral port. */
  dialUdp: (family: IpFamily) => dgram.Socket;
  timeoutMs: number;
  maxInflight: number;
  /** Rate-limited warning (see Throttle). */
  warn: (key: string, fields: Record<string, unknown>, message: string) => void;
  /**
   * Answers a query locally instead of relaying it (issue 6: Service names from the pushed config):
   * returns the response message, or undefined to relay the query unchanged.
   */
  answer?: DnsAnswerer;
}

/** A local answer for a query, or undefined to forward it upstream unchanged. */
export type DnsAnswerer = (query: Buffer, client: { address: string; port: number }) => Buffer | undefined;

/** Relay defaults: glibc's resolver waits 5 s per try; 256 in-flight queries are far above one pod's need. */
export const DEFAULT_DNS_RELAY = Object.freeze({ timeoutMs: 5_000, maxInflight: 256 });

/** A DNS header is 12 bytes: id (2), flags (2), four counts (2 each). RFC 1035 §4.1.1. */
export const DNS_HEADER_LENGTH = 12;

/** The message id (first two bytes), or undefined when `msg` is too short to be DNS. Pure. */
export function dnsId(msg: Uint8Array): number | undefined {
  return msg.length < DNS_HEADER_LENGTH ? undefined : (msg[0]! << 8) | msg[1]!;
}

/** The QR bit: set in responses, clear in queries. Pure. */
export function isDnsResponse(msg: Uint8Array): boolean {
  return msg.length >= DNS_HEADER_LENGTH && (msg[2]! & 0x80) !== 0;
}

/** Whether `reply` answers `query`: same id, response bit set. Pure. */
export function answers(query: Uint8Array, reply: Uint8Array): boolean {
  const id = dnsId(query);
  return id !== undefined && dnsId(reply) === id && isDnsResponse(reply);
}

/** Why a datagram arriving on the listener is not relayed, or undefined when it should be. Pure. */
export function rejectQueryReason(msg: Uint8Array, inflight: number, maxInflight: number): string | undefined {
  if (msg.length < DNS_HEADER_LENGTH) return `a ${msg.length}-byte datagram is not a DNS message`;
  if (isDnsResponse(msg)) return 'a DNS response arrived on the query port';
  if (inflight >= maxInflight) return `${inflight} queries already wait for the upstream resolver (limit ${maxInflight})`;
  return undefined;
}

/** Relays the DNS queries arriving on one or more listener sockets (one per IP family). */
export class DnsUdpRelay {
  readonly #opts: DnsUdpRelayOptions;
  readonly #pending = new Set<() => void>();
  readonly #stats: DnsUdpStats = { queries: 0, answered: 0, timedOut: 0, dropped: 0, failed: 0, inflight: 0 };

  constructor(opts: DnsUdpRelayOptions) {
    this.#opts = opts;
  }

  /** Starts relaying what arrives on `listener`. */
  attach(listener: dgram.Socket): void {
    listener.on('message', (msg, from) => this.#query(listener, msg, from));
    listener.on('error', (err) => this.#opts.warn('listener-error', { err }, `DNS listener socket error: ${err.message}`));
  }

  stats(): DnsUdpStats {
    return { ...this.#stats, inflight: this.#pending.size };
  }

  /** Abandons every query still waiting (their clients retry). */
  destroy(): void {
    for (const abandon of [...this.#pending]) abandon();
  }

  /** True when the local answerer produced a response and it was sent. */
  #answerLocally(listener: dgram.Socket, msg: Buffer, from: dgram.RemoteInfo): boolean {
    let reply: Buffer | undefined;
    try {
      reply = this.#opts.answer?.(msg, from);
    } catch (err) {
      this.#opts.warn('answer', { err }, `local DNS answer failed, relaying the query instead: ${(err as Error).message}`);
      return false;
    }
    if (reply === undefined) return false;
    this.#reply(listener, reply, from);
    return true;
  }

  #reply(listener: dgram.Socket, reply: Buffer, from: dgram.RemoteInfo): void {
    const failed = (err: Error) => {
      this.#stats.answered -= 1;
      this.#stats.failed += 1;
      this.#opts.warn('reply', { err }, `cannot return a DNS answer to ${formatAddress(from)}: ${err.message}`);
    };
    this.#stats.answered += 1; // counted as sent; a failure reported later takes it back
    try {
      listener.send(reply, from.port, from.address, (err) => err && failed(err));
    } catch (err) {
      failed(err as Error); // the listener was closed meanwhile (the proxy stopped listening)
    }
  }

  #query(listener: dgram.Socket, msg: Buffer, from: dgram.RemoteInfo): void {
    const opts = this.#opts;
    this.#stats.queries += 1;
    const rejected = rejectQueryReason(msg, this.#pending.size, opts.maxInflight);
    if (rejected !== undefined) {
      this.#stats.dropped += 1;
      opts.warn('dropped', { client: formatAddress(from) }, `DNS query from ${formatAddress(from)} dropped: ${rejected}`);
      return;
    }
    if (opts.answer !== undefined && this.#answerLocally(listener, msg, from)) return;
    const upstream = opts.upstream();
    const family = upstream === undefined ? 0 : net.isIP(upstream.host);
    if (upstream === undefined || family === 0) {
      this.#stats.failed += 1;
      opts.warn(
        'no-upstream',
        {},
        `DNS query dropped: no upstream resolver is configured${upstream ? ` ('${upstream.host}' is not an IP address)` : ''}; the agent passes the cluster DNS Service address`,
      );
      return;
    }
    let sock: dgram.Socket;
    try {
      sock = opts.dialUdp(family as IpFamily);
    } catch (err) {
      this.#stats.failed += 1;
      opts.warn('socket', { err }, `DNS query dropped: cannot make the upstream socket: ${(err as Error).message}`);
      return;
    }
    const to = formatAddress(upstream);
    const finish = () => {
      clearTimeout(timer);
      this.#pending.delete(finish);
      sock.close();
    };
    this.#pending.add(finish);
    const timer = setTimeout(() => {
      this.#stats.timedOut += 1;
      opts.warn('timeout', { upstream: to }, `upstream DNS ${to} did not answer within ${opts.timeoutMs} ms; is the cluster DNS Service up and reachable from the pod?`);
      finish();
    }, opts.timeoutMs);
    sock.on('message', (reply, replyFrom) => {
      // Anything else reaching this port (a late answer to a different query, a stray datagram) is ignored.
      if (unmapIPv4(replyFrom.address) !== unmapIPv4(upstream.host) || replyFrom.port !== upstream.port) return;
      if (!answers(msg, reply)) return;
      finish();
      this.#reply(listener, reply, from);
    });
    sock.on('error', (err) => {
      this.#stats.failed += 1;
      opts.warn('upstream-error', { upstream: to, err }, `DNS query to ${to} failed: ${err.message}`);
      finish();
    });
    sock.send(msg, upstream.port, upstream.host);
  }
}

/** The TCP half: splice each DNS-over-TCP connection to the upstream resolver. */
export function dnsTcpHandler(opts: { upstream: () => DnsUpstream | undefined; connectTimeoutMs: number; idleTimeoutMs: number }): ConnectionHandler {
  return forwardHandler({
    connectTimeoutMs: opts.connectTimeoutMs,
    idleTimeoutMs: opts.idleTimeoutMs,
    target: () => {
      const upstream = opts.upstream();
      if (upstream === undefined || net.isIP(upstream.host) === 0) {
        return { refuse: 'no upstream DNS resolver is configured; the agent passes the cluster DNS Service address' };
      }
      return upstream;
    },
  });
}
