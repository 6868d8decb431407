/**
 * The seam between the in-pod listeners and what happens to a connection they accept.
 *
 * A listener (outbound 15001, inbound plaintext 15006, HBONE 15008, DNS 15053) only accepts, finds
 * out where the connection was going (SO_ORIGINAL_DST), counts, and hands the socket to a
 * `ConnectionHandler` together with a `ConnectionContext`. The handler decides everything else:
 * today plaintext forwarding to the original destination (forward.ts) or refusal; with issue 6,
 * HBONE origination, HBONE termination, policy checks. The context gives a handler what it may need
 * and nothing more: the pod, the addresses, a `Dialer` that makes sockets where the pod's traffic
 * must leave from (inside the pod netns, marked so the pod's rules let them through), a logger, and
 * a record to fill in for the access log and metrics.
 */
import type dgram from 'node:dgram';
import type net from 'node:net';
import type { Logger } from '../telemetry/log.js';
import type { IpFamily, SocketAddress } from '../sys/index.js';
import type { SpliceEnd } from './splice.js';

/** The in-pod listeners. */
export type ListenerKind = 'outbound' | 'inbound' | 'tunnel' | 'dns';

/** The pod a proxy instance serves; the identity half of every log line and record. */
export interface PodRef {
  namespace: string;
  name: string;
  uid: string;
  /** The pod's IPs, e.g. ['10.244.1.7'] or ['10.244.1.7', 'fd00:10:244:1::7']. */
  ips: readonly string[];
}

/** Where a handler may connect to: an IP literal and a port (never a hostname: no DNS in a netns switch). */
export interface Target {
  host: string;
  port: number;
}

/**
 * Makes sockets as the pod: created inside the pod's network namespace and carrying the proxy mark,
 * so they leave through the pod's interfaces and its capture rules skip them.
 */
export interface Dialer {
  /**
   * Starts a TCP connection (half-close kept open, as a proxy needs). Returns at once; listen for
   * 'connect' / 'error' as with `net.connect`. Throws a SysError when no socket can be made.
   */
  connect(to: Target): net.Socket;
  /** A UDP socket of `family` bound to an ephemeral port, already adopted by Node (listening). */
  udp(family: IpFamily): dgram.Socket;
}

/** How a connection ended, as the access log and metrics see it. */
export type ConnectionEnd = SpliceEnd | 'refused' | 'upstream-failed';

/** One connection's facts, filled in by the listener and the handler; reported when it closes. */
export interface ConnectionRecord {
  listener: ListenerKind;
  pod: { namespace: string; name: string };
  /** The downstream peer as 'ip:port' ('[ip]:port' for IPv6). */
  source: string;
  /** The destination before redirection, for redirected listeners. */
  originalDst?: string;
  /** Where the handler connected to. */
  upstream?: string;
  startedAt: number;
  durationMs: number;
  /** Read from the downstream socket (what the connection's originator sent). */
  bytesFromDownstream: number;
  /** Written to the downstream socket. */
  bytesToDownstream: number;
  end?: ConnectionEnd;
  /** The error code or text behind 'reset', 'error', 'upstream-failed' or 'refused'. */
  error?: string;
}

export interface ConnectionContext {
  listener: ListenerKind;
  pod: PodRef;
  /** The downstream peer. */
  source: SocketAddress;
  /** The destination before REDIRECT; undefined on listeners reached directly (HBONE). */
  originalDst: SocketAddress | undefined;
  dial: Dialer;
  /** Logger with the pod and the listener already bound. */
  log: Logger;
  /** Fill in `upstream`, `end`, `error`; the listener adds bytes and duration at close. */
  record: ConnectionRecord;
  /** Rate-limited warning for conditions that repeat per connection (refused, timeouts): key groups repeats. */
  warn(key: string, fields: Record<string, unknown>, message: string): void;
}

/**
 * What to do with an accepted connection. It receives the downstream socket paused (nothing read
 * yet) and owns it from then on: it must eventually end or destroy it. It must not throw.
 */
export type ConnectionHandler = (downstream: net.Socket, ctx: ConnectionContext) => void;

/** 'ip:port', '[ip]:port' for IPv6, as operators read addresses in logs. */
export function formatAddress(addr: { address?: string; host?: string; port: number }): string {
  const ip = unmapIPv4(addr.address ?? addr.host ?? '?');
  return ip.includes(':') ? `[${ip}]:${addr.port}` : `${ip}:${addr.port}`;
}

/** '::ffff:10.0.0.1' → '10.0.0.1': an IPv4 peer seen on a dual-stack socket is an IPv4 peer. */
export function unmapIPv4(ip: string): string {
  return ip.toLowerCase().startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

/**
 * A handler that turns every connection away with a reset, logging why once per burst. The default
 * on the HBONE port until issue 6 brings the tunnel: listening there reserves the port and proves
 * the seam, while no peer can mistake a silent accept for a tunnel.
 */
export function refuseHandler(reason: string): ConnectionHandler {
  return (downstream, ctx) => {
    ctx.record.end = 'refused';
    ctx.record.error = reason;
    ctx.warn('refused', { source: ctx.record.source }, `refusing ${ctx.listener} connection from ${ctx.record.source}: ${reason}`);
    downstream.on('error', () => {});
    downstream.resetAndDestroy();
  };
}
