/**
 * Linux constants for the calls Node's `net` lacks (setns, socket options, SO_ORIGINAL_DST).
 *
 * Values are the asm-generic ones used on x86_64 and arm64, the two architectures Ambit ships for.
 * A few socket options differ on mips/sparc/parisc/alpha (e.g. SO_REUSEPORT); those are not supported.
 * The socket tests read some of them back from the kernel (SO_DOMAIN, SO_TYPE) to catch a wrong table.
 */

/** Address families (sys/socket.h). */
export const AF_INET = 2;
export const AF_INET6 = 10;

/** socket(2) type and flags. The flags are OR-ed into the type argument. */
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;

/** Option levels for setsockopt/getsockopt. */
export const SOL_SOCKET = 1;
export const SOL_IP = 0;
export const SOL_TCP = 6;
export const SOL_IPV6 = 41;

/** SOL_SOCKET options. */
export const SO_REUSEADDR = 2;
export const SO_TYPE = 3;
export const SO_PEERCRED = 17;
export const SO_ERROR = 4;
export const SO_REUSEPORT = 15;
export const SO_MARK = 36;
export const SO_DOMAIN = 39;

/** SOL_IP options. */
export const IP_FREEBIND = 15;
export const IP_TRANSPARENT = 19;
/** netfilter: original destination of a NAT-redirected IPv4 connection (linux/netfilter_ipv4.h). */
export const SO_ORIGINAL_DST = 80;

/** SOL_IPV6 options. */
export const IPV6_V6ONLY = 26;
export const IPV6_TRANSPARENT = 75;
export const IPV6_FREEBIND = 78;
/** netfilter: original destination of a NAT-redirected IPv6 connection (linux/netfilter_ipv6/ip6_tables.h). */
export const IP6T_SO_ORIGINAL_DST = 80;

/** setns(2) namespace type for network namespaces (sched.h). */
export const CLONE_NEWNET = 0x40000000;

/** ioctl on a namespace fd returning its CLONE_NEW* type (linux/nsfs.h: _IO(0xb7, 0x3)). */
export const NS_GET_NSTYPE = 0xb703;

/** CLONE_NEW* values by namespace name, to say what a wrong namespace file is. */
export const NAMESPACE_TYPES: Readonly<Record<string, number>> = {
  mnt: 0x00020000,
  cgroup: 0x02000000,
  uts: 0x04000000,
  ipc: 0x08000000,
  user: 0x10000000,
  pid: 0x20000000,
  net: CLONE_NEWNET,
  time: 0x00000080,
};

/** Sizes of the socket address structs the kernel fills in or reads. */
export const SOCKADDR_IN_SIZE = 16;
export const SOCKADDR_IN6_SIZE = 28;
