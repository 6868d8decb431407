/**
 * SysError: the one error type of the native layer. Every failed Linux call becomes a SysError that
 * carries the errno, its symbolic code, the call that failed (with its arguments spelled out) and,
 * where we know one, a hint that tells the operator what to do about it.
 */
import { constants } from 'node:os';
import { getSystemErrorMap } from 'node:util';

export class SysError extends Error {
  constructor(
    /** Positive errno value as the kernel returned it (e.g. 1 for EPERM). */
    readonly errno: number,
    /** Symbolic errno name (e.g. 'EPERM'), 'E<n>' when unknown. */
    readonly code: string,
    /** The operation that failed, with its arguments, e.g. 'setsockopt(fd 21, SO_MARK, 1337)'. */
    readonly syscall: string,
    /** What to do about it, when known. Also part of `message`. */
    readonly hint: string | undefined,
  ) {
    super(formatMessage(syscall, code, errnoText(errno), hint));
    this.name = 'SysError';
  }
}

/**
 * Builds a SysError for `errno` returned by `op`. `op` is the operation key used for hints
 * ('setns', 'bind', 'setsockopt SO_MARK', ...); `call` the human-readable call with its arguments.
 */
export function sysError(op: string, call: string, errno: number): SysError {
  const code = errnoName(errno);
  return new SysError(errno, code, call, hintFor(op, code));
}

/**
 * Symbolic name of a positive errno ('EPERM'): libuv's table first (it has the messages too), then
 * the full list in os.constants (libuv lacks some, e.g. EINPROGRESS).
 */
export function errnoName(errno: number): string {
  return getSystemErrorMap().get(-errno)?.[0] ?? ERRNO_NAMES.get(errno) ?? `E${errno}`;
}

const ERRNO_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(constants.errno)
    .reverse() // aliases (EWOULDBLOCK, EDEADLOCK) come after their main name: let the main name win
    .map(([name, value]) => [value, name]),
);

function errnoText(errno: number): string {
  return getSystemErrorMap().get(-errno)?.[1] ?? `errno ${errno}`;
}

function formatMessage(call: string, code: string, text: string, hint: string | undefined): string {
  const base = `${call} failed: ${code} (${text})`;
  return hint === undefined ? base : `${base}: ${hint}`;
}

/**
 * Hints by `<op>:<code>`, falling back to `*:<code>`. They name the missing capability or the likely
 * mistake, because "EPERM" alone does not tell an operator which securityContext line is missing.
 */
const HINTS: ReadonlyMap<string, string> = new Map([
  ['setns:EPERM', 'needs CAP_SYS_ADMIN; grant SYS_ADMIN to the agent container (the DaemonSet manifest does)'],
  ['setns:EINVAL', 'the handle is not a network namespace; open /proc/<pid>/ns/net or /var/run/netns/<name>'],
  ['setns:EBADF', 'the netns handle was already closed'],
  ['open netns:ENOENT', 'the network namespace does not exist (any more); was the pod deleted or the netns removed?'],
  ['open netns:EACCES', 'no permission to open the namespace file; the agent must run as root with hostPID access to /proc'],
  ['open netns:EINVAL', 'the path is not a network namespace; expected /proc/<pid>/ns/net or /var/run/netns/<name>'],
  ['setsockopt SO_MARK:EPERM', 'needs CAP_NET_ADMIN (or CAP_NET_RAW on Linux >= 5.17); grant NET_ADMIN to the container'],
  ['setsockopt IP_TRANSPARENT:EPERM', 'needs CAP_NET_ADMIN (or CAP_NET_RAW); grant NET_ADMIN to the container'],
  ['setsockopt IPV6_TRANSPARENT:EPERM', 'needs CAP_NET_ADMIN (or CAP_NET_RAW); grant NET_ADMIN to the container'],
  ['bind:EADDRINUSE', 'the port is already taken in this network namespace; is another agent or proxy worker running there? Workers sharing a port must all set reusePort'],
  ['bind:EADDRNOTAVAIL', 'the address is not assigned to any interface in this network namespace; set transparent: true to bind a non-local address'],
  ['bind:EACCES', 'ports below 1024 need CAP_NET_BIND_SERVICE'],
  ['listen:EADDRINUSE', 'the port is already taken in this network namespace'],
  ['getsockopt SO_ORIGINAL_DST:ENOENT', 'the connection was not NAT-redirected (no conntrack entry); check that the REDIRECT rule matched it, or it reached the listener directly'],
  ['getsockopt IP6T_SO_ORIGINAL_DST:ENOENT', 'the connection was not NAT-redirected (no conntrack entry); check that the ip6tables REDIRECT rule matched it, or it reached the listener directly'],
  ['getsockopt SO_ORIGINAL_DST:ENOPROTOOPT', 'the kernel has no IPv4 NAT/conntrack support loaded (nf_conntrack_ipv4 / nf_nat)'],
  ['getsockopt IP6T_SO_ORIGINAL_DST:ENOPROTOOPT', 'the kernel has no IPv6 NAT/conntrack support loaded (nf_conntrack / nf_nat)'],
  ['socket:EAFNOSUPPORT', 'this address family is not available (IPv6 disabled in this network namespace?)'],
  ['*:EBADF', 'the file descriptor is closed (was the socket already adopted by Node and closed?)'],
  ['*:ENOTSOCK', 'the file descriptor is not a socket'],
  ['*:EMFILE', 'the process ran out of file descriptors; raise the open-files limit (ulimit -n)'],
  ['*:ENFILE', 'the system ran out of file descriptors (fs.file-max)'],
]);

/** The hint for `op` failing with `code`, if any. Exported for tests. */
export function hintFor(op: string, code: string): string | undefined {
  return HINTS.get(`${op}:${code}`) ?? HINTS.get(`*:${code}`);
}
