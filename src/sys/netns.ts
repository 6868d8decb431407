/**
 * Network namespaces: open a handle to one, and run a synchronous function with the calling thread
 * inside it.
 *
 * Why a thread switch is safe in Node: setns(fd, CLONE_NEWNET) moves only the calling OS thread.
 * All JS of an isolate runs on one thread (the main thread, or one worker_thread), so while `fn`
 * runs nothing else of ours can observe the switch, and we switch back before returning to the
 * event loop. A socket belongs to the namespace it was created in for its whole life, so a socket()
 * made inside `fn` stays in the pod's namespace after we switch back, and bind/listen/connect on it
 * later (from any thread) still act there. libuv's threadpool (fs, dns.lookup, crypto, zlib) is
 * never moved: work queued from inside `fn` runs in the host namespace.
 *
 * Hence, inside `fn`: only synchronous calls. No `await` and no returning a promise (the part after
 * the first await would run outside the namespace; inNetns throws if `fn` returns a thenable), no
 * hostname lookups (dns runs on the threadpool, in the host namespace), no `net.createServer().listen
 * (port)` (Node creates that socket asynchronously). Create raw sockets with socket.ts and hand the
 * fd to Node after returning.
 *
 * Module state (the thread's home namespace, the active handle) is per isolate, hence per thread,
 * which is exactly the scope setns() acts on: worker_threads each track their own.
 */
import { closeSync, fstatSync, openSync, readlinkSync } from 'node:fs';
import { CLONE_NEWNET, NAMESPACE_TYPES, NS_GET_NSTYPE } from './constants.js';
import { errnoName, SysError, sysError } from './errors.js';
import { lastErrno, libc } from './native.js';

/** An open file descriptor on a network namespace. Close it when the pod goes away. */
export class NetnsHandle {
  #fd: number;

  constructor(
    fd: number,
    /** The path it was opened from, for messages. */
    readonly path: string,
    /** The namespace identity as the kernel prints it, 'net:[4026532201]'; equal ids = same netns. */
    readonly id: string,
  ) {
    this.#fd = fd;
  }

  /** The descriptor; throws once closed, so a stale handle never setns()es into a reused fd. */
  get fd(): number {
    if (this.#fd < 0) throw new Error(`netns handle for ${this.path} is closed`);
    return this.#fd;
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  /** Closes the descriptor. Idempotent. Sockets already created in the namespace are unaffected. */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    closeSync(fd);
  }
}

/**
 * Opens a network namespace file: /proc/<pid>/ns/net, /var/run/netns/<name>, or a CNI-provided
 * netns path. Verifies with NS_GET_NSTYPE that it really is a network namespace, so a wrong path
 * fails here, with a message, rather than later in setns().
 */
export function openNetns(path: string): NetnsHandle {
  let fd: number;
  try {
    fd = openSync(path, 'r'); // libuv opens with O_CLOEXEC: children never inherit pod netns fds
  } catch (err) {
    throw fromNodeError(err, 'open netns', `open(${path})`);
  }
  try {
    checkIsNetns(fd, path);
    // The nsfs inode is the namespace's identity; readlink of /proc/<pid>/ns/net prints the same.
    return new NetnsHandle(fd, path, `net:[${fstatSync(fd).ino}]`);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

function checkIsNetns(fd: number, path: string): void {
  const type = libc().ioctl(fd, NS_GET_NSTYPE);
  if (type === CLONE_NEWNET) return;
  const kind = Object.entries(NAMESPACE_TYPES).find(([, value]) => value === type)?.[0];
  // ENOTTY: the file does not answer namespace ioctls, i.e. it is no namespace file at all.
  const what = type < 0 ? 'not a namespace file' : `a ${kind ?? `type ${type}`} namespace, not a network namespace`;
  throw new SysError(22, 'EINVAL', `open(${path})`, `${what}; expected /proc/<pid>/ns/net or /var/run/netns/<name>`);
}

/** Identity of the namespace the calling thread is in now, e.g. 'net:[4026531840]'. */
export function currentNetnsId(): string {
  return readlinkSync('/proc/thread-self/ns/net');
}

/**
 * Runs `fn` with the calling thread inside `ns`, and always switches back (also when `fn` throws).
 * Nests: an inner call returns to the outer call's namespace. `fn` must be synchronous (see header)
 * and must not close the handles of running inNetns calls.
 */
export function inNetns<T>(ns: NetnsHandle, fn: () => T): T {
  const outer = active;
  const back = outer ?? homeNetns();
  enter(ns);
  active = ns;
  let result: T;
  try {
    result = fn();
  } finally {
    active = outer;
    restore(back);
  }
  if (isThenable(result)) {
    throw new TypeError(
      'inNetns: fn returned a promise; it must be synchronous (code after an await would run outside the namespace)',
    );
  }
  return result;
}

/** The namespace this thread was in before any inNetns, opened once per thread and kept open. */
let home: NetnsHandle | undefined;
/** The handle of the innermost running inNetns on this thread, undefined when at home. */
let active: NetnsHandle | undefined;

function homeNetns(): NetnsHandle {
  // thread-self, not self: in a worker_thread /proc/self/ns/net is the main thread's namespace.
  const path = '/proc/thread-self/ns/net';
  home ??= new NetnsHandle(openSync(path, 'r'), path, currentNetnsId());
  return home;
}

function enter(ns: NetnsHandle): void {
  if (libc().setns(ns.fd, CLONE_NEWNET) !== 0) {
    throw sysError('setns', `setns(${ns.path}, CLONE_NEWNET)`, lastErrno());
  }
}

function restore(to: NetnsHandle): void {
  // A closed outer handle means its fd number may already name another file: do not setns on it.
  const errno = to.closed ? EBADF : libc().setns(to.fd, CLONE_NEWNET) === 0 ? 0 : lastErrno();
  if (errno === 0) return;
  // Not recoverable in place: every socket this thread creates from now on would land in the wrong
  // namespace. Say so, so that the caller (the agent's main) exits rather than limps on.
  throw new SysError(
    errno,
    errnoName(errno),
    `setns(${to.path}, CLONE_NEWNET) back to the previous namespace`,
    'the thread is stuck in another network namespace; the process must exit',
  );
}

const EBADF = 9;

/** Node's fs errors carry a negative errno; turn them into SysErrors with our hints. */
function fromNodeError(err: unknown, op: string, call: string): Error {
  const errno = (err as NodeJS.ErrnoException).errno;
  return typeof errno === 'number' ? sysError(op, call, Math.abs(errno)) : (err as Error);
}

function isThenable(value: unknown): boolean {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}
