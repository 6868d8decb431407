/**
 * Raw TCP and UDP sockets with the options Node's `net` and `dgram` cannot set (SO_MARK,
 * IP_TRANSPARENT, SO_REUSEPORT), created so that Node can adopt them, plus SO_ORIGINAL_DST for
 * redirected connections.
 *
 * How the proxy uses it:
 * - Listener in a pod netns: `const fd = inNetns(ns, () => createListenSocket({...}))`, then
 *   `server.listen({ fd, backlog })`. Node calls listen() again with its own backlog (default 511),
 *   so pass the same backlog to both.
 * - Outbound connection that the pod's rules must not capture: `connectSocket({ mark: 0x539, ... })`
 *   (inside inNetns when it must leave from a pod netns). We create the socket and set the mark
 *   *before* connect, because the first SYN already passes the nat OUTPUT rules; Node creates its own
 *   sockets inside connect(), too late for that. The unconnected fd is adopted with
 *   `new net.Socket({ fd })` and Node's own `connect()` runs on it, so Node tracks the connecting
 *   state, emits 'connect', applies timeouts and reports ECONNREFUSED as a connect error. (Adopting
 *   an fd whose non-blocking connect() already returned EINPROGRESS also moves bytes, but Node then
 *   thinks it is connected: no 'connect' event, and a refused connection surfaces as a write/read
 *   error. Hence we let Node connect.)
 * - Accepted connection: `getOriginalDst(socketFd(sock))`. `socketFd` reads `sock._handle.fd`, which
 *   Node's TCP handle exposes on Unix (not documented API, but what Node itself uses to pass handles
 *   to child processes; it is -1 until the handle has an fd).
 */
import net from 'node:net';
import { endianness } from 'node:os';
import {
  AF_INET,
  AF_INET6,
  IP6T_SO_ORIGINAL_DST,
  IP_TRANSPARENT,
  IPV6_TRANSPARENT,
  IPV6_V6ONLY,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  SOCKADDR_IN6_SIZE,
  SOL_IP,
  SOL_IPV6,
  SOL_SOCKET,
  SO_DOMAIN,
  SO_MARK,
  SO_ORIGINAL_DST,
  SO_PEERCRED,
  SO_REUSEADDR,
  SO_REUSEPORT,
} from './constants.js';
import { SysError, sysError } from './errors.js';
import { lastErrno, libc } from './native.js';
import { decodeSockaddr, encodeSockaddr, type IpFamily, type SocketAddress } from './sockaddr.js';

/** Options shared by listening and connecting sockets. */
export interface SocketOptions {
  family: IpFamily;
  /** SO_MARK (needs CAP_NET_ADMIN): the pod's rules skip packets carrying the proxy's mark. */
  mark?: number;
  /** IP_TRANSPARENT / IPV6_TRANSPARENT (needs CAP_NET_ADMIN): bind to addresses that are not local. */
  transparent?: boolean;
}

export interface ListenSocketOptions extends SocketOptions {
  host: string;
  /** 0 lets the kernel pick; read it back with `server.address()` or `localAddress(fd)`. */
  port: number;
  /** listen() backlog; default 511 like Node. Pass the same value to `server.listen({ fd, backlog })`. */
  backlog?: number;
  /** SO_REUSEPORT: several proxy workers each bind their own listener on the same port. */
  reusePort?: boolean;
  /** IPV6_V6ONLY for family 6; unset keeps the namespace default (dual-stack unless sysctl says so). */
  v6Only?: boolean;
}

export interface ConnectOptions extends SocketOptions {
  /** Destination IP literal. Hostnames are refused: DNS would resolve in the wrong namespace. */
  host: string;
  port: number;
  /** Source address to bind before connecting (any address when `transparent`). */
  localAddress?: string;
  localPort?: number;
  /**
   * Keep the writable side open when the peer sends FIN (Node's `allowHalfOpen`), as a proxy must to
   * pass a half-close on. Default false, like `net.connect`.
   */
  allowHalfOpen?: boolean;
}

export interface UdpSocketOptions extends SocketOptions {
  /** Local address to bind: '0.0.0.0' / '::' for any, or e.g. '127.0.0.1' for a loopback-only relay. */
  host: string;
  /** 0 lets the kernel pick an ephemeral port. */
  port: number;
  /** IPV6_V6ONLY for family 6; unset keeps the namespace default. */
  v6Only?: boolean;
  /** SO_REUSEPORT: several proxy workers each bind their own socket on the same port. */
  reusePort?: boolean;
}

const DEFAULT_BACKLOG = 511;
const HOST_LE = endianness() === 'LE';

/**
 * socket + options + bind + listen, non-blocking and close-on-exec. Returns the listening fd for
 * `net.Server.listen({ fd })`. On failure the fd is closed and a SysError says which step failed.
 * Call inside `inNetns` to listen in another network namespace.
 */
export function createListenSocket(opts: ListenSocketOptions): number {
  const fd = createTcpSocket(opts);
  try {
    setsockoptInt(fd, SOL_SOCKET, SO_REUSEADDR, 1); // like Node: restart without waiting out TIME_WAIT
    if (opts.reusePort) setsockoptInt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    if (opts.family === 6 && opts.v6Only !== undefined) setsockoptInt(fd, SOL_IPV6, IPV6_V6ONLY, opts.v6Only ? 1 : 0);
    bindFd(fd, { family: opts.family, address: opts.host, port: opts.port });
    const backlog = opts.backlog ?? DEFAULT_BACKLOG;
    check(libc().listen(fd, backlog), 'listen', () => `listen(fd ${fd}, ${backlog})`);
    return fd;
  } catch (err) {
    closeQuietly(fd);
    throw err;
  }
}

/**
 * A fresh, unbound, unconnected TCP socket (non-blocking, close-on-exec) with mark/transparent set.
 * Adopt it with `new net.Socket({ fd })` and call `connect()` in the same tick (an adopted socket
 * starts reading at once; an unconnected one polls as hung up once the event loop runs).
 * `connectSocket` does all of that.
 */
export function createTcpSocket(opts: SocketOptions): number {
  const domain = opts.family === 4 ? AF_INET : opts.family === 6 ? AF_INET6 : invalidFamily(opts.family);
  const fd = libc().socket(domain, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  check(fd, 'socket', () => `socket(${opts.family === 4 ? 'AF_INET' : 'AF_INET6'}, SOCK_STREAM)`);
  try {
    if (opts.mark !== undefined) setMark(fd, opts.mark);
    if (opts.transparent) {
      if (opts.family === 4) setsockoptInt(fd, SOL_IP, IP_TRANSPARENT, 1);
      else setsockoptInt(fd, SOL_IPV6, IPV6_TRANSPARENT, 1);
    }
    return fd;
  } catch (err) {
    closeQuietly(fd);
    throw err;
  }
}

/**
 * Creates a socket with `createTcpSocket`, adopts it as a `net.Socket` and starts Node's connect.
 * Listen for 'connect' / 'error' as with `net.connect`. Inside `inNetns` the socket is created in
 * that namespace; the connect itself runs on the next tick, which is fine because a socket keeps
 * the namespace it was created in.
 */
export function connectSocket(opts: ConnectOptions): net.Socket {
  if (net.isIP(opts.host) !== opts.family) {
    throw new TypeError(`connectSocket: host must be an IPv${opts.family} literal, got '${opts.host}'`);
  }
  const fd = createTcpSocket(opts);
  let sock: net.Socket;
  try {
    sock = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: opts.allowHalfOpen === true });
  } catch (err) {
    closeQuietly(fd);
    throw err;
  }
  const target: net.TcpSocketConnectOpts = { host: opts.host, port: opts.port };
  if (opts.localAddress !== undefined) target.localAddress = opts.localAddress;
  if (opts.localPort !== undefined) target.localPort = opts.localPort;
  return sock.connect(target);
}

/**
 * socket(SOCK_DGRAM) + SO_MARK + bind, non-blocking and close-on-exec: a UDP socket for
 * `dgram.createSocket('udp4' | 'udp6').bind({ fd })` (Node documents `fd` for dgram bind; it adopts
 * the socket as is and never binds it again, so the bind happens here). Call inside `inNetns` to make
 * it in a pod netns: a DNS relay's listener, or its marked upstream socket (port 0).
 */
export function createUdpSocket(opts: UdpSocketOptions): number {
  const domain = opts.family === 4 ? AF_INET : opts.family === 6 ? AF_INET6 : invalidFamily(opts.family);
  const fd = libc().socket(domain, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  check(fd, 'socket', () => `socket(${opts.family === 4 ? 'AF_INET' : 'AF_INET6'}, SOCK_DGRAM)`);
  try {
    if (opts.mark !== undefined) setMark(fd, opts.mark);
    if (opts.transparent) {
      if (opts.family === 4) setsockoptInt(fd, SOL_IP, IP_TRANSPARENT, 1);
      else setsockoptInt(fd, SOL_IPV6, IPV6_TRANSPARENT, 1);
    }
    if (opts.reusePort) setsockoptInt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    if (opts.family === 6 && opts.v6Only !== undefined) setsockoptInt(fd, SOL_IPV6, IPV6_V6ONLY, opts.v6Only ? 1 : 0);
    bindFd(fd, { family: opts.family, address: opts.host, port: opts.port });
    return fd;
  } catch (err) {
    closeQuietly(fd);
    throw err;
  }
}

/**
 * The destination a connection had before the nat REDIRECT rule sent it to our listener.
 * `fd` is an accepted socket (`socketFd(sock)`). IPv6 listeners fall back to the IPv4 query, for
 * IPv4 connections accepted on a dual-stack socket.
 */
export function getOriginalDst(fd: number): SocketAddress {
  const domain = getsockoptInt(fd, SOL_SOCKET, SO_DOMAIN);
  if (domain !== AF_INET6) return originalDst(fd, SOL_IP, SO_ORIGINAL_DST, 'SO_ORIGINAL_DST');
  try {
    return originalDst(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, 'IP6T_SO_ORIGINAL_DST');
  } catch (err) {
    if (!(err instanceof SysError) || err.code !== 'ENOENT') throw err;
    try {
      return originalDst(fd, SOL_IP, SO_ORIGINAL_DST, 'SO_ORIGINAL_DST');
    } catch {
      throw err; // the IPv6 error is the one that describes this socket
    }
  }
}

function originalDst(fd: number, level: number, name: number, label: string): SocketAddress {
  const addr = Buffer.alloc(SOCKADDR_IN6_SIZE); // large enough for either struct
  const len = uint32Buffer(addr.length);
  check(libc().getsockopt(fd, level, name, addr, len), `getsockopt ${label}`, () => `getsockopt(fd ${fd}, ${label})`);
  return decodeSockaddr(addr);
}

/** Who is at the other end of a unix socket: SO_PEERCRED (pid, uid, gid as of connect()). */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/**
 * SO_PEERCRED of a connected unix socket (`socketFd(sock)`): the kernel's record of the connecting
 * process, which it cannot forge. The agent's CNI socket answers root only with it.
 */
export function peerCredentials(fd: number): PeerCredentials {
  const cred = Buffer.alloc(12); // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
  const len = uint32Buffer(cred.length);
  check(libc().getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, len), 'getsockopt SO_PEERCRED', () => `getsockopt(fd ${fd}, SO_PEERCRED)`);
  const read = (offset: number): number => (HOST_LE ? cred.readInt32LE(offset) : cred.readInt32BE(offset)) >>> 0;
  return { pid: read(0), uid: read(4), gid: read(8) };
}

/** The local address a socket is bound to (getsockname), e.g. to learn a kernel-picked port. */
export function localAddress(fd: number): SocketAddress {
  const addr = Buffer.alloc(SOCKADDR_IN6_SIZE);
  const len = uint32Buffer(addr.length);
  check(libc().getsockname(fd, addr, len), 'getsockname', () => `getsockname(fd ${fd})`);
  return decodeSockaddr(addr);
}

/** setsockopt with an int value. */
export function setsockoptInt(fd: number, level: number, name: number, value: number): void {
  const buf = Buffer.alloc(4);
  if (HOST_LE) buf.writeInt32LE(value | 0);
  else buf.writeInt32BE(value | 0);
  const label = optionName(level, name);
  check(libc().setsockopt(fd, level, name, buf, 4), `setsockopt ${label}`, () => `setsockopt(fd ${fd}, ${label}, ${value})`);
}

/** getsockopt of an int option; the value is signed like the C int (use `>>> 0` for marks). */
export function getsockoptInt(fd: number, level: number, name: number): number {
  const buf = Buffer.alloc(4);
  const len = uint32Buffer(4);
  const label = optionName(level, name);
  check(libc().getsockopt(fd, level, name, buf, len), `getsockopt ${label}`, () => `getsockopt(fd ${fd}, ${label})`);
  return HOST_LE ? buf.readInt32LE(0) : buf.readInt32BE(0);
}

/** SO_MARK (0 .. 0xffffffff). Needs CAP_NET_ADMIN. Only useful before connect(), see header. */
export function setMark(fd: number, mark: number): void {
  if (!Number.isInteger(mark) || mark < 0 || mark > 0xffffffff) throw new TypeError(`invalid mark ${mark}`);
  setsockoptInt(fd, SOL_SOCKET, SO_MARK, mark);
}

export function getMark(fd: number): number {
  return getsockoptInt(fd, SOL_SOCKET, SO_MARK) >>> 0;
}

/** close(2) for an fd that Node has not adopted (once adopted, close the Node object instead). */
export function closeFd(fd: number): void {
  check(libc().close(fd), 'close', () => `close(fd ${fd})`);
}

/**
 * The kernel fd behind a Node socket or server (`_handle.fd`, see header). Throws when Node has no
 * fd for it (not yet connected/listening, already closed, or not a TCP handle).
 */
export function socketFd(handleOwner: net.Socket | net.Server): number {
  const fd = (handleOwner as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    throw new Error('socketFd: this socket has no file descriptor (not connected/listening yet, or closed)');
  }
  return fd;
}

function bindFd(fd: number, addr: SocketAddress): void {
  const sa = encodeSockaddr(addr);
  const shown = addr.family === 6 ? `[${addr.address}]:${addr.port}` : `${addr.address}:${addr.port}`;
  check(libc().bind(fd, sa, sa.length), 'bind', () => `bind(fd ${fd}, ${shown})`);
}

/** Throws a SysError when a libc call returned -1. `call` is built lazily: only on failure. */
function check(rc: number, op: string, call: () => string): void {
  if (rc < 0) throw sysError(op, call(), lastErrno());
}

function closeQuietly(fd: number): void {
  libc().close(fd);
}

function uint32Buffer(value: number): Buffer {
  const buf = Buffer.alloc(4);
  if (HOST_LE) buf.writeUInt32LE(value);
  else buf.writeUInt32BE(value);
  return buf;
}

function invalidFamily(family: unknown): never {
  throw new TypeError(`invalid address family ${String(family)}; expected 4 or 6`);
}

const OPTION_NAMES: ReadonlyMap<string, string> = new Map([
  [`${SOL_SOCKET}/${SO_REUSEADDR}`, 'SO_REUSEADDR'],
  [`${SOL_SOCKET}/${SO_REUSEPORT}`, 'SO_REUSEPORT'],
  [`${SOL_SOCKET}/${SO_MARK}`, 'SO_MARK'],
  [`${SOL_SOCKET}/${SO_DOMAIN}`, 'SO_DOMAIN'],
  [`${SOL_IP}/${IP_TRANSPARENT}`, 'IP_TRANSPARENT'],
  [`${SOL_IPV6}/${IPV6_TRANSPARENT}`, 'IPV6_TRANSPARENT'],
  [`${SOL_IPV6}/${IPV6_V6ONLY}`, 'IPV6_V6ONLY'],
]);

/** Option name for messages and hint keys; 'level/name' for options we have no name for. */
export function optionName(level: number, name: number): string {
  return OPTION_NAMES.get(`${level}/${name}`) ?? `${level}/${name}`;
}
