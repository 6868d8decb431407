/**
 * The raw libc bindings, through koffi. This is the only file in Ambit that imports koffi (and so the
 * only place that can crash the process with a wrong prototype): keep every prototype here, next to
 * the man-page signature it mirrors, and keep the functions raw (return value + errno). Checking,
 * typing and error messages live in netns.ts and socket.ts.
 *
 * All bindings are synchronous calls on the calling thread. Never use koffi's `.async` variants for
 * these: they run on the libuv threadpool, and setns() there would move a pool thread, not ours.
 */
import koffi, { type LibraryHandle } from 'koffi';

export interface Libc {
  /** int setns(int fd, int nstype) */
  setns(fd: number, nstype: number): number;
  /** int socket(int domain, int type, int protocol) */
  socket(domain: number, type: number, protocol: number): number;
  /** int setsockopt(int fd, int level, int optname, const void *optval, socklen_t optlen) */
  setsockopt(fd: number, level: number, name: number, value: Buffer, length: number): number;
  /** int getsockopt(int fd, int level, int optname, void *optval, socklen_t *optlen) */
  getsockopt(fd: number, level: number, name: number, value: Buffer, length: Buffer): number;
  /** int bind(int fd, const struct sockaddr *addr, socklen_t addrlen) */
  bind(fd: number, addr: Buffer, length: number): number;
  /** int listen(int fd, int backlog) */
  listen(fd: number, backlog: number): number;
  /** int getsockname(int fd, struct sockaddr *addr, socklen_t *addrlen) */
  getsockname(fd: number, addr: Buffer, length: Buffer): number;
  /** int close(int fd) */
  close(fd: number): number;
  /** int ioctl(int fd, unsigned long request, ...), called here without variadic arguments */
  ioctl(fd: number, request: number): number;
  /**
   * ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *dest_addr,
   * socklen_t addrlen). Used for netlink requests (netlink.ts), blocking on the calling thread.
   */
  sendto(fd: number, buf: Buffer, length: number, flags: number, addr: Buffer, addrLength: number): number;
  /** ssize_t recv(int fd, void *buf, size_t len, int flags). Used for netlink replies (netlink.ts). */
  recv(fd: number, buf: Buffer, length: number, flags: number): number;
}

/** glibc first (Debian images), then musl (Alpine) in case someone rebuilds the image on it. */
const LIBC_NAMES = ['libc.so.6', 'libc.musl-x86_64.so.1', 'libc.musl-aarch64.so.1'];

let bound: Libc | undefined;

/** The libc bindings, loaded on first use so that merely importing src/sys costs nothing. */
export function libc(): Libc {
  bound ??= bind(loadLibc());
  return bound;
}

/** errno as left by the last koffi call on this thread (koffi saves it before JS can clobber it). */
export function lastErrno(): number {
  return koffi.errno();
}

function loadLibc(): LibraryHandle {
  if (process.platform !== 'linux') {
    throw new Error(`src/sys needs Linux (setns, SO_MARK, SO_ORIGINAL_DST); this is ${process.platform}`);
  }
  const failures: string[] = [];
  for (const name of LIBC_NAMES) {
    try {
      return koffi.load(name);
    } catch (err) {
      failures.push(`${name}: ${(err as Error).message}`);
    }
  }
  throw new Error(`cannot load the C library for the native layer (${failures.join('; ')})`);
}

function bind(lib: LibraryHandle): Libc {
  return {
    setns: lib.func('int setns(int fd, int nstype)'),
    socket: lib.func('int socket(int domain, int type, int protocol)'),
    setsockopt: lib.func('int setsockopt(int fd, int level, int optname, const void *optval, uint32_t optlen)'),
    getsockopt: lib.func('int getsockopt(int fd, int level, int optname, void *optval, void *optlen)'),
    bind: lib.func('int bind(int fd, const void *addr, uint32_t addrlen)'),
    listen: lib.func('int listen(int fd, int backlog)'),
    getsockname: lib.func('int getsockname(int fd, void *addr, void *addrlen)'),
    close: lib.func('int close(int fd)'),
    ioctl: lib.func('int ioctl(int fd, unsigned long request, ...)'),
    // ssize_t is intptr_t on Linux (koffi has no ssize_t); results fit a JS number
    sendto: lib.func('intptr_t sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)'),
    recv: lib.func('intptr_t recv(int fd, void *buf, size_t len, int flags)'),
  };
}
