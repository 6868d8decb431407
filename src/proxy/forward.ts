/**
 * Plaintext forwarding: the handler strategy the in-pod listeners use until the L4 proxy (issue 6)
 * replaces it. It connects, as the pod (inside its netns, with the proxy mark), to a target — by
 * default the connection's original destination — and splices the two connections.
 *
 * What the application sees on the inbound path: the proxy connects to the app from inside the pod
 * netns, to the pod's own IP, so the app sees the connection come from the pod's own IP (a local
 * address), not from the real client. Keeping the client's address needs a transparent
 * (IP_TRANSPARENT) source bind; issue 6 decides that, and the in-pod routing rule (fwmark → lo) that
 * would carry the replies back is already installed by the redirection.
 */
import net from 'node:net';
import type { SocketAddress } from '../sys/index.js';
import { formatAddress, unmapIPv4, type ConnectionContext, type ConnectionHandler, type Target } from './connection.js';
import { splice, type SpliceEnd } from './splice.js';

export interface ForwardOptions {
  /** Give up on an upstream that has not accepted within this time (the app sees a reset). */
  connectTimeoutMs: number;
  /** End a connection after this long without a byte either way; 0 = never. */
  idleTimeoutMs: number;
  /** Where to connect (default: the original destination), or `{ refuse: reason }` to turn it away. */
  target?: (ctx: ConnectionContext) => Target | { refuse: string };
}

/** The proxy's defaults: Envoy's TCP proxy idles out after 1 h; connects fail after 10 s like ztunnel's. */
export const DEFAULT_FORWARD_TIMEOUTS = Object.freeze({ connectTimeoutMs: 10_000, idleTimeoutMs: 60 * 60 * 1000 });

/** The default target: the destination the app asked for before REDIRECT. */
export function originalDestination(ctx: ConnectionContext): Target | { refuse: string } {
  if (ctx.originalDst === undefined) return { refuse: 'no original destination for this connection' };
  return { host: unmapIPv4(ctx.originalDst.address), port: ctx.originalDst.port };
}

/** A handler that forwards each connection in plaintext to `opts.target` (default: its original destination). */
export function forwardHandler(opts: ForwardOptions): ConnectionHandler {
  const pickTarget = opts.target ?? originalDestination;
  return (downstream, ctx) => {
    const target = pickTarget(ctx);
    if ('refuse' in target) {
      refuse(downstream, ctx, target.refuse);
      return;
    }
    const to = formatAddress(target);
    ctx.record.upstream = to;
    let upstream: net.Socket;
    try {
      upstream = ctx.dial.connect(target);
    } catch (err) {
      failUpstream(downstream, ctx, to, (err as Error).message, 'socket');
      return;
    }
    const timer = setTimeout(() => upstream.destroy(connectTimeoutError(opts.connectTimeoutMs)), opts.connectTimeoutMs);
    const onConnectError = (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      failUpstream(downstream, ctx, to, describeConnectError(err, to, ctx, opts.connectTimeoutMs), err.code ?? 'error');
    };
    upstream.once('error', onConnectError);
    upstream.once('connect', () => {
      clearTimeout(timer);
      upstream.off('error', onConnectError);
      ctx.log.debug({ source: ctx.record.source, upstream: to }, `${ctx.listener} connection forwarded`);
      const onEnd = (end: SpliceEnd, err?: NodeJS.ErrnoException) => {
        ctx.record.end = end;
        if (err !== undefined) ctx.record.error = err.code ?? err.message;
      };
      splice(downstream, upstream, { idleTimeoutMs: opts.idleTimeoutMs, onEnd }, (result) => {
        ctx.record.end ??= result.end;
      });
    });
    // If the app gives up while we are still connecting, stop connecting.
    downstream.once('close', () => {
      if (upstream.connecting) {
        clearTimeout(timer);
        upstream.off('error', onConnectError);
        upstream.on('error', () => {});
        upstream.destroy();
        ctx.record.end ??= 'aborted';
      }
    });
    downstream.on('error', () => {}); // until splice takes over; a reset app connection is not our error
  };
}

/**
 * Why a connection must not be forwarded to `originalDst` because it would come straight back to
 * the proxy: it reached a listener directly (its "original" destination is the listener itself,
 * e.g. an app connecting to 127.0.0.1:15001), or it is addressed to one of the proxy's own ports on
 * this pod. Forwarding those would loop (each hop a new marked connection to ourselves). Pure.
 */
export function selfTargetReason(
  originalDst: SocketAddress,
  local: { address: string; port: number },
  proxyPorts: readonly number[],
  podIps: readonly string[],
): string | undefined {
  const dst = unmapIPv4(originalDst.address);
  if (dst === unmapIPv4(local.address) && originalDst.port === local.port) {
    return `it reached the proxy's port ${local.port} directly (not redirected); nothing to forward it to`;
  }
  const ownAddress = podIps.includes(dst) || isLoopback(dst) || dst === '0.0.0.0' || dst === '::';
  if (ownAddress && proxyPorts.includes(originalDst.port)) {
    return `its destination ${formatAddress({ address: dst, port: originalDst.port })} is the proxy itself`;
  }
  return undefined;
}

function isLoopback(ip: string): boolean {
  return ip === '::1' || (net.isIPv4(ip) && ip.startsWith('127.'));
}

function refuse(downstream: net.Socket, ctx: ConnectionContext, reason: string): void {
  ctx.record.end = 'refused';
  ctx.record.error = reason;
  ctx.warn('refused', { source: ctx.record.source, originalDst: ctx.record.originalDst }, `refusing ${ctx.listener} connection from ${ctx.record.source}: ${reason}`);
  downstream.on('error', () => {});
  downstream.resetAndDestroy();
}

function failUpstream(downstream: net.Socket, ctx: ConnectionContext, to: string, message: string, code: string): void {
  ctx.record.end = 'upstream-failed';
  ctx.record.error = code;
  ctx.warn(`upstream:${code}`, { source: ctx.record.source, upstream: to, code }, message);
  // A reset, not a FIN: the app must not take "connected, then closed cleanly" for an empty reply.
  if (!downstream.destroyed) downstream.resetAndDestroy();
}

function connectTimeoutError(ms: number): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`connect timed out after ${ms} ms`);
  err.code = 'ETIMEDOUT';
  return err;
}

/** An operator-readable sentence for a failed upstream connect: what failed, and what to check. */
export function describeConnectError(err: NodeJS.ErrnoException, to: string, ctx: Pick<ConnectionContext, 'listener'>, timeoutMs: number): string {
  const what = `${ctx.listener} connection to ${to} failed`;
  switch (err.code) {
    case 'ECONNREFUSED':
      return ctx.listener === 'inbound'
        ? `${what}: connection refused — the application does not listen on port ${to.slice(to.lastIndexOf(':') + 1)} in the pod; the client gets a reset`
        : `${what}: connection refused — nothing listens there; the app gets a reset, as it would without the mesh`;
    case 'ETIMEDOUT':
      return `${what}: no answer within ${timeoutMs} ms — is the destination up, and is no NetworkPolicy or firewall dropping traffic from this pod?`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `${what}: ${err.code} — the pod has no route to that address; check the pod's routes and the destination`;
    case 'EPERM':
    case 'EACCES':
      return `${what}: ${err.code} — a firewall rule inside the pod rejected the proxy's connection (it carries the proxy mark)`;
    default:
      return `${what}: ${err.code ?? ''} ${err.message}`.trim();
  }
}
