/**
 * Finding a pod's network namespace from the agent's side of the mount boundary.
 *
 * The agent runs in its own container (host network, not host mounts), so it cannot use the path
 * the runtime passes to CNI as-is: containerd's `/var/run/netns/cni-<uuid>` (or
 * `<state>/netns/cni-<uuid>` with `netns_mounts_under_state_dir`) is a host path. The DaemonSet
 * mounts the runtime's netns directory into the agent (default at /var/run/netns, with
 * bidirectional/HostToContainer propagation so new netns mounts appear), and we translate by base
 * name. Three ways, in the order `find` tries them:
 *
 *  1. the CNI netns path (a hint from CNI ADD): translated, then checked to be a network namespace
 *     that holds the pod's IPs;
 *  2. a scan of the netns directory for the namespace that holds the pod's IPs, for running pods the
 *     agent never heard about from CNI (enrolment by label, or after an agent restart);
 *  3. optionally, a scan of `<procRoot>/<pid>/ns/net`, for runtimes that keep no netns directory.
 *
 * Reading a namespace's addresses: `os.networkInterfaces()` (libuv → getifaddrs) is synchronous and
 * asks the kernel over a netlink socket it creates on the calling thread, so inside `inNetns` it
 * reads the target namespace (netns.netns.test.ts checks exactly this). libuv lists only interfaces
 * that are up and running, which a pod's eth0 is once its sandbox is wired.
 *
 * Scans are cached by namespace inode, so a rescan only reads namespaces it has not seen; a match
 * is always re-read before it is returned, so a stale cache entry (an interface already removed by
 * a CNI DEL whose netns file lingers) can never hand out a wrong namespace.
 */
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Logger } from 'pino';
import { inNetns, openNetns } from '../../sys/index.js';

export const DEFAULT_NETNS_DIR = '/var/run/netns';

export interface NetnsFinderOptions {
  /** Where the agent sees the runtime's netns files (the host's /var/run/netns, mounted). Default /var/run/netns. */
  netnsDir?: string;
  /** A proc filesystem to scan as the last resort (e.g. the host's /proc mounted at /host/proc); unset = no proc scan. */
  procRoot?: string;
  log?: Logger;
}

/** The pod being looked for: only its IPs matter to the scans; the rest names it in messages. */
export interface PodNetnsQuery {
  uid?: string;
  namespace?: string;
  name?: string;
  ips: readonly string[];
}

/** Two namespaces hold the pod's addresses; enrolling either could capture the wrong pod. */
export class NetnsAmbiguous extends Error {
  override readonly name = 'NetnsAmbiguous';
  constructor(
    readonly ips: readonly string[],
    readonly paths: readonly string[],
  ) {
    super(
      `pod IPs ${ips.join(', ')} are held by more than one network namespace (${paths.join(', ')}); ` +
        'a sandbox being torn down still holds the address — the agent retries once it is gone',
    );
  }
}

interface CachedNetns {
  dev: number;
  ino: number;
  ips: string[];
}

/**
 * Where a CNI netns path is seen by the agent: `/proc/<pid>/ns/net` under `procRoot`, anything else
 * by its base name under `netnsDir`. Undefined for an empty path (a DEL after the netns is gone).
 */
export function translateCniNetnsPath(cniPath: string, netnsDir: string, procRoot = '/proc'): string | undefined {
  if (!cniPath) return undefined;
  const proc = /^\/proc\/(\d+|self|thread-self)\/ns\/net$/.exec(cniPath);
  if (proc) return join(procRoot, proc[1]!, 'ns', 'net');
  const name = basename(cniPath);
  return name ? join(netnsDir, name) : undefined;
}

/** The addresses that can identify a pod: not loopback, not link-local (every netns may have those). */
export function identifyingAddresses(ifaces: NodeJS.Dict<NetworkInterfaceInfo[]>): string[] {
  const out = new Set<string>();
  for (const list of Object.values(ifaces)) {
    for (const a of list ?? []) {
      if (a.internal) continue;
      if (a.family === 'IPv6' && /^fe[89ab]/i.test(a.address)) continue;
      if (a.family === 'IPv4' && a.address.startsWith('169.254.')) continue;
      out.add(a.address);
    }
  }
  return [...out].sort();
}

/** The identifying addresses inside the network namespace at `path` (synchronous; throws SysError if it is not one). */
export function netnsAddresses(path: string): string[] {
  const ns = openNetns(path);
  try {
    return identifyingAddresses(inNetns(ns, () => networkInterfaces()));
  } finally {
    ns.close();
  }
}

/** Canonical text of an IP for comparison (IPv6 lower case; Node prints addresses compressed). */
function canonicalIp(ip: string): string {
  return ip.toLowerCase();
}

function holdsAny(held: readonly string[], wanted: readonly string[]): boolean {
  return wanted.some((ip) => held.includes(canonicalIp(ip)));
}

function holdsAll(held: readonly string[], wanted: readonly string[]): boolean {
  return wanted.every((ip) => held.includes(canonicalIp(ip)));
}

export class NetnsFinder {
  readonly netnsDir: string;
  readonly procRoot: string | undefined;
  private readonly log: Logger | undefined;
  /** netns dir entries by path */
  private readonly dirCache = new Map<string, CachedNetns>();
  /** proc scan: by "dev:ino" of the namespace, with the first pid path seen */
  private readonly procCache = new Map<string, CachedNetns & { path: string }>();

  constructor(opts: NetnsFinderOptions = {}) {
    this.netnsDir = opts.netnsDir ?? DEFAULT_NETNS_DIR;
    this.procRoot = opts.procRoot;
    this.log = opts.log;
  }

  /**
   * The pod's netns path as the agent sees it, or undefined when none can be found. Throws
   * NetnsAmbiguous when two namespaces hold the pod's IPs.
   */
  async find(pod: PodNetnsQuery, hint?: string): Promise<string | undefined> {
    if (hint) {
      const found = await this.fromCniPath(hint, pod.ips);
      if (found) return found;
      this.log?.warn(
        { pod: `${pod.namespace}/${pod.name}`, hint, netnsDir: this.netnsDir },
        `the runtime's netns path ${hint} is not visible as ${translateCniNetnsPath(hint, this.netnsDir)}: is the runtime's netns directory mounted at ${this.netnsDir} (with mount propagation)? Falling back to a scan by IP`,
      );
    }
    if (pod.ips.length === 0) return undefined;
    const inDir = await this.scanDir(pod.ips);
    if (inDir || this.procRoot === undefined) return inDir;
    return this.scanProc(pod.ips);
  }

  /**
   * The agent's view of a CNI netns path, checked to be a network namespace (and, when `ips` are
   * given, to hold one of them). Tries the translated path, then the path itself (an agent that
   * shares the host's mounts). Undefined when neither works.
   */
  async fromCniPath(cniPath: string, ips: readonly string[] = []): Promise<string | undefined> {
    const translated = translateCniNetnsPath(cniPath, this.netnsDir, this.procRoot);
    const candidates = [...new Set([translated, cniPath].filter((p): p is string => !!p))];
    for (const path of candidates) {
      let held: string[];
      try {
        held = netnsAddresses(path);
      } catch {
        continue; // missing, or not a netns (e.g. a stale file left by a dead runtime)
      }
      if (ips.length === 0 || holdsAny(held, ips)) return path;
      this.log?.warn({ path, held, ips }, 'CNI netns path does not hold the pod IPs; ignoring it');
    }
    return undefined;
  }

  /**
   * Scans the netns directory for the namespace holding `ips`. On a miss the cache is dropped and
   * the directory read once more in full: an address may have moved into a namespace cached before
   * it had it.
   */
  async scanDir(ips: readonly string[]): Promise<string | undefined> {
    const found = await this.scanDirCached(ips);
    if (found || this.dirCache.size === 0) return found;
    this.dirCache.clear();
    return this.scanDirCached(ips);
  }

  private async scanDirCached(ips: readonly string[]): Promise<string | undefined> {
    const names = await readdir(this.netnsDir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw new Error(`cannot list ${this.netnsDir} to find pod network namespaces: ${err.message} (is the runtime's netns directory mounted there?)`);
    });
    const seen = new Set<string>();
    for (const name of names) {
      const path = join(this.netnsDir, name);
      seen.add(path);
      const st = await stat(path).catch(() => undefined);
      if (!st) continue;
      const cached = this.dirCache.get(path);
      if (cached && cached.dev === st.dev && cached.ino === st.ino) continue;
      const held = tryAddresses(path);
      // A namespace without addresses may be a sandbox still being wired: read it again next time.
      if (held && held.length > 0) this.dirCache.set(path, { dev: st.dev, ino: st.ino, ips: held });
      else this.dirCache.delete(path);
    }
    for (const path of this.dirCache.keys()) if (!seen.has(path)) this.dirCache.delete(path);
    return this.pick(ips, [...this.dirCache].map(([path, c]) => ({ path, ips: c.ips })), (path) => this.dirCache.delete(path));
  }

  /** Scans `<procRoot>/<pid>/ns/net` for the namespace holding `ips` (each namespace read once). */
  async scanProc(ips: readonly string[]): Promise<string | undefined> {
    const found = await this.scanProcCached(ips);
    if (found || this.procCache.size === 0) return found;
    this.procCache.clear();
    return this.scanProcCached(ips);
  }

  private async scanProcCached(ips: readonly string[]): Promise<string | undefined> {
    const root = this.procRoot ?? '/proc';
    const own = await stat('/proc/self/ns/net').catch(() => undefined);
    const pids = (await readdir(root)).filter((n) => /^\d+$/.test(n));
    const live = new Set<string>();
    for (const pid of pids) {
      const path = join(root, pid, 'ns', 'net');
      const st = await stat(path).catch(() => undefined);
      if (!st || (own && st.ino === own.ino && st.dev === own.dev)) continue;
      const key = `${st.dev}:${st.ino}`;
      if (live.has(key)) continue;
      live.add(key);
      if (this.procCache.has(key)) continue;
      const held = tryAddresses(path);
      if (held && held.length > 0) this.procCache.set(key, { dev: st.dev, ino: st.ino, ips: held, path });
    }
    for (const key of this.procCache.keys()) if (!live.has(key)) this.procCache.delete(key);
    return this.pick(ips, [...this.procCache].map(([key, c]) => ({ path: c.path, key, ips: c.ips })), (_path, key) => key && this.procCache.delete(key));
  }

  /** How many namespaces the caches hold (for tests and the admin view). */
  get cached(): { dir: number; proc: number } {
    return { dir: this.dirCache.size, proc: this.procCache.size };
  }

  /**
   * From cached candidates, the one namespace that really holds `ips` now: candidates are re-read
   * (the cache may be stale), narrowed to those holding all IPs when several hold some.
   */
  private pick(
    ips: readonly string[],
    entries: { path: string; key?: string; ips: string[] }[],
    evict: (path: string, key?: string) => unknown,
  ): string | undefined {
    const fresh: { path: string; ips: string[] }[] = [];
    for (const e of entries.filter((c) => holdsAny(c.ips, ips))) {
      const held = tryAddresses(e.path);
      if (held && holdsAny(held, ips)) fresh.push({ path: e.path, ips: held });
      else evict(e.path, e.key);
    }
    if (fresh.length <= 1) return fresh[0]?.path;
    const all = fresh.filter((c) => holdsAll(c.ips, ips));
    if (all.length === 1) return all[0]!.path;
    throw new NetnsAmbiguous(ips, (all.length ? all : fresh).map((c) => c.path));
  }
}

function tryAddresses(path: string): string[] | undefined {
  try {
    return netnsAddresses(path);
  } catch {
    return undefined;
  }
}
