// One node's container runtime for the local cluster: a containerd (Debian package, with runc)
// started INSIDE the node's network namespace, with its own config, root, state, socket and CNI
// config, so several nodes share a machine without sharing anything else.
//
// Pods get their network from the real CNI chain that containerd itself invokes from the node's
// conflist: bridge (one bridge per node) + host-local (the node's pod CIDR) + portmap. A plugin
// appended to that conflist later (Ambit's) is invoked exactly as in production.
//
// Why containerd runs under `nsenter --net` (not `ip netns exec`): `ip netns exec` also puts the
// process in a private mount namespace, so every overlay, shm and netns mount would be invisible
// from the host — tests could not check for leftovers, and host tools could not enter pod netns.
// With `--net` only, containerd shares the host mount namespace; all its mounts live under the
// node's own directory (netns_mounts_under_state_dir), and stop() unmounts them.
//
// A node given a filesystem root of its own (`nodeFsRoot`, see ../nodefs.ts) keeps what a real
// node has at fixed places there: the CNI conf and bin dirs at <root>/etc/cni/net.d and
// <root>/opt/cni/bin, and the pod netns files at <root>/run/netns — containerd's netns dir
// (<state>/io.containerd.grpc.v1.cri/netns) is a symlink to it, and it is a shared bind mount of
// itself, so a container that mounts it with HostToContainer propagation sees pods made later.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, openSync, closeSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, rmdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { nodeFs } from '../nodefs.js';
import { CriClient } from './cri.js';
import { descendants, isRunning, listProcesses, mountsUnder, run, sleep, tail, waitFor } from './proc.js';

export type Snapshotter = 'overlayfs' | 'native';

/** Where the Debian containernetworking-plugins package puts the CNI plugins. */
export const SYSTEM_CNI_BIN_DIR = '/usr/lib/cni';
/** Name of the pod network in every node's conflist (plugins see it as the network name). */
export const POD_NETWORK_NAME = 'ambit-pod-network';
const CNI_CONFLIST_FILE = '10-ambit.conflist';
const PATH_ENV = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface ContainerdOptions {
  /** Node name; used in the default bridge name and in log lines. */
  name: string;
  /** Network namespace (under /run/netns) the caller created for the node. */
  netns: string;
  /** The node's directory: config, root, state, socket, CNI config and IPAM state all live here. */
  dir: string;
  /**
   * The node's own filesystem root (../nodefs.ts, made by the caller). When set, the CNI conf and
   * bin dirs and the pod netns dir are the node's /etc/cni/net.d, /opt/cni/bin and /run/netns in
   * it, instead of dirs under `dir`. stop() unmounts the netns files there but leaves the root.
   */
  nodeFsRoot?: string;
  /** The node's pod CIDR, e.g. 10.244.1.0/24; host-local hands out pod IPs from it. */
  podCidr: string;
  /** Image reference of the sandbox (pause) image; must be imported before the first pod. */
  sandboxImage: string;
  /** Bridge device in the node netns (≤ 15 chars). Default: `ambr-<name>` cut to 15. */
  bridgeName?: string;
  /** Extra CNI plugin binaries (type → path) made available next to the system ones. */
  extraCniPlugins?: Record<string, string>;
  /** Extra plugin configs appended to the conflist after bridge and portmap. */
  extraCniChain?: object[];
  /** Default: detected (overlayfs when the node dir's filesystem can hold an overlay mount). */
  snapshotter?: Snapshotter;
  /** Address the CRI streaming server (exec/attach/port-forward URLs) listens on, in the node netns. */
  streamAddress?: string;
  /** containerd log level (default "info"). */
  logLevel?: string;
  /** Bound on start-up, from spawn to CRI RuntimeReady + NetworkReady (default 30 s). */
  startTimeoutMs?: number;
}

/**
 * The paths of one node's runtime; derived from the node dir (and the node fs root, which start
 * records in the node dir), so `down` can rebuild them after a crash.
 */
export interface ContainerdPaths {
  dir: string;
  /** the node's filesystem root, when it has one */
  nodeFsRoot?: string;
  configPath: string;
  root: string;
  state: string;
  socket: string;
  runcRoot: string;
  cniConfDir: string;
  cniBinDir: string;
  cniIpamDir: string;
  /** where containerd puts pod netns bind mounts (the node's /run/netns when it has a fs root) */
  netnsDir: string;
  logPath: string;
  pidPath: string;
  /** a file holding nodeFsRoot, so stop() after a crash finds the netns mounts in it */
  nodeFsRecord: string;
}

export interface ContainerdInstance extends ContainerdPaths {
  name: string;
  netns: string;
  pid: number;
  snapshotter: Snapshotter;
  bridgeName: string;
  /** Time from spawn until the CRI reported ready, in ms. */
  startMs: number;
}

export function containerdPaths(dir: string, nodeFsRoot?: string): ContainerdPaths {
  const state = join(dir, 'state');
  const fs = nodeFsRoot === undefined ? undefined : nodeFs(nodeFsRoot);
  return {
    dir,
    ...(nodeFsRoot === undefined ? {} : { nodeFsRoot }),
    configPath: join(dir, 'containerd.toml'),
    root: join(dir, 'root'),
    state,
    // Kept short: unix socket paths are limited to 107 bytes.
    socket: join(dir, 'containerd.sock'),
    runcRoot: join(dir, 'runc'),
    cniConfDir: fs?.cniConfDir ?? join(dir, 'cni', 'net.d'),
    cniBinDir: fs?.cniBinDir ?? join(dir, 'cni', 'bin'),
    cniIpamDir: join(dir, 'cni', 'ipam'),
    netnsDir: fs?.netnsDir ?? criNetnsDir(state),
    logPath: join(dir, 'containerd.log'),
    pidPath: join(dir, 'containerd.pid'),
    nodeFsRecord: join(dir, 'node-fs-root'),
  };
}

/** Where containerd 1.6's CRI plugin makes pod netns files with netns_mounts_under_state_dir. */
function criNetnsDir(state: string): string {
  return join(state, 'io.containerd.grpc.v1.cri', 'netns');
}

/** The paths of a node dir, with the node fs root its containerd recorded at start (if any). */
export async function recordedPaths(dir: string): Promise<ContainerdPaths> {
  const root = (await readFile(containerdPaths(dir).nodeFsRecord, 'utf8').catch(() => '')).trim();
  return containerdPaths(dir, root || undefined);
}

export function defaultBridgeName(node: string): string {
  return `ambr-${node.replace(/[^a-zA-Z0-9-]/g, '')}`.slice(0, 15);
}

// ---------- pure renderers ----------

export interface ConflistInput {
  bridgeName: string;
  podCidr: string;
  ipamDataDir: string;
  extraChain?: object[];
}

/** The node's CNI network: bridge + host-local (+ portmap), then any extra chained plugins. */
export function renderCniConflist(input: ConflistInput): object {
  return {
    cniVersion: '1.0.0',
    name: POD_NETWORK_NAME,
    plugins: [
      {
        type: 'bridge',
        bridge: input.bridgeName,
        isGateway: true,
        ipMasq: false,
        hairpinMode: true,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet: input.podCidr }]],
          routes: [{ dst: '0.0.0.0/0' }],
          // Per node: host-local otherwise keeps leases in /var/lib/cni/networks, shared by all nodes.
          dataDir: input.ipamDataDir,
        },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
      ...(input.extraChain ?? []),
    ],
  };
}

export interface ConfigInput {
  paths: ContainerdPaths;
  sandboxImage: string;
  snapshotter: Snapshotter;
  streamAddress: string;
  logLevel: string;
}

const toml = (s: string) => JSON.stringify(s); // paths and image names need no escapes beyond JSON's

/** containerd config (version 2) for one node. */
export function renderContainerdConfig(input: ConfigInput): string {
  const { paths } = input;
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  return `# Generated for the Ambit local cluster; one containerd per node.
version = 2
root = ${toml(paths.root)}
state = ${toml(paths.state)}
# Fail fast if the CRI plugin cannot load, rather than serving a socket the kubelet cannot use.
required_plugins = ["io.containerd.grpc.v1.cri"]
# Storage drivers we never use, and the opt plugin (it would create /opt/containerd on the host).
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.internal.v1.opt",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = ${toml(paths.socket)}

[ttrpc]
  address = ${toml(`${paths.socket}.ttrpc`)}

[debug]
  level = ${toml(input.logLevel)}

[metrics]
  address = ""

[${cri}]
  sandbox_image = ${toml(input.sandboxImage)}
  # This machine lacks CAP_SYS_RESOURCE: lowering oom_score_adj below ours would fail.
  restrict_oom_score_adj = true
  # Pod netns bind mounts under this node's state dir, not the host's /run/netns.
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false
  disable_tcp_service = true
  stream_server_address = ${toml(input.streamAddress)}
  stream_server_port = "0"
  enable_unprivileged_ports = false
  enable_unprivileged_icmp = false
  max_container_log_line_size = 16384

  [${cri}.containerd]
    snapshotter = ${toml(input.snapshotter)}
    default_runtime_name = "runc"
    disable_snapshot_annotations = true

    [${cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [${cri}.containerd.runtimes.runc.options]
        # cgroup v1 and no systemd on this machine.
        SystemdCgroup = false
        Root = ${toml(paths.runcRoot)}

  [${cri}.cni]
    bin_dir = ${toml(paths.cniBinDir)}
    conf_dir = ${toml(paths.cniConfDir)}
    max_conf_num = 1

  [${cri}.registry]
    # No registry is used; an empty per-node dir keeps the host's registry config out.
    config_path = ${toml(join(paths.dir, 'certs.d'))}
`;
}

// ---------- snapshotter detection ----------

const snapshotterCache = new Map<string, Snapshotter>();

/** overlayfs when an overlay mount works on `dir`'s filesystem (not, e.g., on overlay itself), else native. */
export async function detectSnapshotter(dir: string): Promise<Snapshotter> {
  const cached = snapshotterCache.get(dir);
  if (cached) return cached;
  await mkdir(dir, { recursive: true });
  const probe = await mkdtemp(join(dir, '.overlay-probe-'));
  const [lower, upper, work, merged] = ['lower', 'upper', 'work', 'merged'].map((d) => join(probe, d)) as [string, string, string, string];
  let result: Snapshotter = 'native';
  try {
    await Promise.all([lower, upper, work, merged].map((d) => mkdir(d)));
    await run(['mount', '-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, merged], { timeoutMs: 10_000 });
    await run(['umount', merged], { timeoutMs: 10_000 });
    result = 'overlayfs';
  } catch {
    result = 'native';
  } finally {
    await rm(probe, { recursive: true, force: true });
  }
  snapshotterCache.set(dir, result);
  return result;
}

// ---------- start ----------

/** The per-node CNI bin dir: links to every system plugin plus the extra ones (containerd 1.6 takes one bin_dir). */
async function populateCniBinDir(binDir: string, extra: Record<string, string>): Promise<void> {
  await rm(binDir, { recursive: true, force: true });
  await mkdir(binDir, { recursive: true });
  for (const plugin of await readdir(SYSTEM_CNI_BIN_DIR)) {
    if (!(plugin in extra)) await symlink(join(SYSTEM_CNI_BIN_DIR, plugin), join(binDir, plugin));
  }
  for (const [type, path] of Object.entries(extra)) await symlink(path, join(binDir, type));
}

/**
 * Makes the node's /run/netns the dir containerd puts pod netns files in: a symlink from
 * containerd's own netns dir, and a shared bind mount of itself. This machine's `/` is a private
 * mount, so without the shared mount a netns file mounted after a container started would never
 * show in that container's HostToContainer (rslave) hostPath mount of the dir.
 */
async function prepareNodeNetnsDir(paths: ContainerdPaths): Promise<void> {
  const cri = criNetnsDir(paths.state);
  await mkdir(paths.netnsDir, { recursive: true, mode: 0o755 });
  if (!(await mountsUnder(paths.netnsDir)).includes(paths.netnsDir)) {
    await run(['mount', '--bind', paths.netnsDir, paths.netnsDir], { timeoutMs: 10_000 });
    await run(['mount', '--make-shared', paths.netnsDir], { timeoutMs: 10_000 });
  }
  await mkdir(join(paths.state, 'io.containerd.grpc.v1.cri'), { recursive: true });
  await rm(cri, { recursive: true, force: true });
  await symlink(paths.netnsDir, cri);
}

/** Writes the node's config and CNI files, starts containerd in the node netns and waits until the CRI is ready. */
export async function startContainerd(opts: ContainerdOptions): Promise<ContainerdInstance> {
  if (!existsSync(`/run/netns/${opts.netns}`)) throw new Error(`network namespace ${opts.netns} does not exist (create it with ip netns add)`);
  if (opts.nodeFsRoot !== undefined && !existsSync(opts.nodeFsRoot)) throw new Error(`node fs root ${opts.nodeFsRoot} does not exist (create it with createNodeFs)`);
  const paths = containerdPaths(opts.dir, opts.nodeFsRoot);
  if (existsSync(paths.pidPath)) {
    throw new Error(`${opts.dir} holds a containerd pid file; stop it first (stopContainerd / cleanupNodeRuntime)`);
  }
  const bridgeName = opts.bridgeName ?? defaultBridgeName(opts.name);
  if (bridgeName.length > 15) throw new Error(`bridge name ${bridgeName} is longer than 15 characters`);
  for (const d of [paths.root, paths.state, paths.runcRoot, paths.cniConfDir, paths.cniIpamDir, join(paths.dir, 'certs.d')]) {
    await mkdir(d, { recursive: true });
  }
  if (paths.nodeFsRoot !== undefined) {
    // Recorded before anything is mounted there, so a crash at any later point is cleaned up.
    await writeFile(paths.nodeFsRecord, `${paths.nodeFsRoot}\n`);
    await prepareNodeNetnsDir(paths);
  }
  await populateCniBinDir(paths.cniBinDir, opts.extraCniPlugins ?? {});
  const conflist = renderCniConflist({ bridgeName, podCidr: opts.podCidr, ipamDataDir: paths.cniIpamDir, extraChain: opts.extraCniChain });
  await writeFile(join(paths.cniConfDir, CNI_CONFLIST_FILE), `${JSON.stringify(conflist, null, 2)}\n`);
  const snapshotter = opts.snapshotter ?? (await detectSnapshotter(paths.root));
  await writeFile(
    paths.configPath,
    renderContainerdConfig({ paths, sandboxImage: opts.sandboxImage, snapshotter, streamAddress: opts.streamAddress ?? '127.0.0.1', logLevel: opts.logLevel ?? 'info' }),
  );

  const started = Date.now();
  const logFd = openSync(paths.logPath, 'a');
  // nsenter execs containerd in place, so the pid we get is containerd's own.
  const child = spawn('nsenter', [`--net=/run/netns/${opts.netns}`, '--', 'containerd', '--config', paths.configPath], {
    detached: true, // its own process group: a test runner's Ctrl-C must not kill the node under the kubelet
    stdio: ['ignore', logFd, logFd],
    env: { PATH: PATH_ENV, HOME: '/root' },
  });
  closeSync(logFd);
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start containerd for node ${opts.name}`);
  child.unref();
  let exited: string | undefined;
  child.on('exit', (code, signal) => (exited = `exited (code ${code}, signal ${signal})`));
  await writeFile(paths.pidPath, String(pid));

  const inst: ContainerdInstance = { ...paths, name: opts.name, netns: opts.netns, pid, snapshotter, bridgeName, startMs: 0 };
  const cri = new CriClient(paths.socket, { defaultTimeoutMs: 2_000 });
  try {
    await waitFor(
      `containerd of node ${opts.name} to report RuntimeReady and NetworkReady`,
      async () => {
        if (exited) throw new Error(`containerd ${exited}; log:\n${tail(await readFile(paths.logPath, 'utf8'), 3000)}`);
        if (!existsSync(paths.socket)) return undefined;
        return (await cri.isReady()) ? true : undefined;
      },
      opts.startTimeoutMs ?? 30_000,
      25,
    ).catch(async (err: Error) => {
      if (exited) throw err;
      throw new Error(`${err.message}\ncontainerd log:\n${tail(await readFile(paths.logPath, 'utf8').catch(() => ''), 3000)}`);
    });
  } catch (err) {
    await stopContainerd(inst, { drain: false }).catch(() => undefined);
    throw err;
  } finally {
    cri.close();
  }
  inst.startMs = Date.now() - started;
  return inst;
}

// ---------- stop and cleanup ----------

export interface StopOptions {
  /** Stop and remove every pod sandbox over the CRI first (runs CNI DEL). Default true. */
  drain?: boolean;
  /** Leave the node dir (logs, config) in place instead of deleting it. Default false. */
  keepDir?: boolean;
  /** Bound for each phase (drain, containerd exit, shim exit). Default 20 s. */
  timeoutMs?: number;
}

/** Stops the node's pods, containerd and shims, unmounts everything under the node dir and removes it. */
export async function stopContainerd(inst: Pick<ContainerdInstance, 'dir' | 'name'> & Partial<ContainerdInstance>, opts: StopOptions = {}): Promise<void> {
  const paths = inst.nodeFsRoot !== undefined ? containerdPaths(inst.dir, inst.nodeFsRoot) : await recordedPaths(inst.dir);
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const pid = inst.pid ?? (await readPid(paths.pidPath));
  const ours = pid !== undefined && (await isOurContainerd(pid, paths.configPath));
  if (ours && (opts.drain ?? true)) await drainPods(paths.socket, timeoutMs).catch(() => undefined);

  // Shims outlive containerd by design; find ours by the socket they were told to call back.
  const procs = await listProcesses();
  const shims = procs.filter((p) => isShimOf(p.argv, paths.socket));
  const shimTree = descendants(procs, shims.map((p) => p.pid));
  const taskIds = new Set([...shims.map((p) => argAfter(p.argv, '-id')).filter((id): id is string => !!id), ...(await knownTaskIds(paths))]);

  if (ours && pid !== undefined) await terminate(pid, timeoutMs);
  for (const p of shimTree) killQuietly(p, 'SIGKILL');
  await waitFor('shims and their containers to exit', () => (shimTree.some(isRunning) ? undefined : true), timeoutMs).catch(() => undefined);

  await unmountAll(paths.dir);
  // The node's /run/netns: pod netns files containerd did not unmount, then the shared bind itself.
  if (paths.nodeFsRoot !== undefined) await unmountAll(paths.netnsDir);
  // What killed shims and skipped CNI DELs leave at fixed host paths, keyed by sandbox/task id.
  for (const id of taskIds) await removeHostFilesOf(paths.socket, id);
  await removeCgroups(join('ambit', inst.name)).catch(() => undefined);
  await rm(paths.pidPath, { force: true });
  if (!opts.keepDir) await rm(paths.dir, { recursive: true, force: true });
}

function argAfter(argv: readonly string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  return i >= 0 ? argv[i + 1] : undefined;
}

/** Sandbox and container ids the node's containerd has state for (works when it and its shims are dead). */
async function knownTaskIds(paths: ContainerdPaths): Promise<string[]> {
  const dirs = [join(paths.root, 'io.containerd.grpc.v1.cri', 'sandboxes'), join(paths.state, 'io.containerd.runtime.v2.task', 'k8s.io')];
  const ids = await Promise.all(dirs.map((d) => readdir(d).catch(() => [] as string[])));
  return ids.flat();
}

/** containerd 1.6 puts shim sockets at /run/containerd/s/sha256(<grpc address>/<namespace>/<id>). */
export function shimSocketPath(socket: string, namespace: string, id: string): string {
  return join('/run/containerd/s', createHash('sha256').update(join(socket, namespace, id)).digest('hex'));
}

const CNI_RESULT_CACHE = '/var/lib/cni/results';

async function removeHostFilesOf(socket: string, id: string): Promise<void> {
  await rm(shimSocketPath(socket, 'k8s.io', id), { force: true });
  // libcni caches each ADD result as <network>-<container id>-<ifname> until the DEL.
  for (const f of await readdir(CNI_RESULT_CACHE).catch(() => [] as string[])) {
    if (f.includes(`-${id}-`)) await rm(join(CNI_RESULT_CACHE, f), { force: true });
  }
}

/** Removes whatever a crashed run left for this node dir (no-op when there is nothing). */
export async function cleanupNodeRuntime(dir: string, name: string): Promise<void> {
  if (!existsSync(dir)) return;
  await stopContainerd({ dir, name }, { drain: true, timeoutMs: 10_000 });
}

/**
 * After the last node stopped: removes the host-side directories the runtime creates at fixed
 * places (shim sockets in /run/containerd/s, libcni's result cache, our cgroup root) — each only
 * when empty, so a system containerd or a still-running node is never disturbed.
 */
export async function cleanupHostLeftovers(): Promise<void> {
  const dirs = ['/run/containerd/s', '/run/containerd', '/var/lib/cni/results', '/var/lib/cni'];
  for (const controller of await readdir('/sys/fs/cgroup').catch(() => [])) dirs.push(join('/sys/fs/cgroup', controller, 'ambit'));
  for (const d of dirs) await rmdir(d).catch(() => undefined);
}

async function readPid(path: string): Promise<number | undefined> {
  const text = await readFile(path, 'utf8').catch(() => '');
  const pid = Number(text.trim());
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** Guards against a recycled pid: only a containerd started with this config file is ours. */
async function isOurContainerd(pid: number, configPath: string): Promise<boolean> {
  const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
  return argv.includes(configPath) && argv.some((a) => a.endsWith('containerd'));
}

export function isShimOf(argv: readonly string[], socket: string): boolean {
  const i = argv.indexOf('-address');
  return (argv[0] ?? '').includes('containerd-shim') && i >= 0 && argv[i + 1] === socket;
}

async function drainPods(socket: string, timeoutMs: number): Promise<void> {
  const cri = new CriClient(socket, { defaultTimeoutMs: timeoutMs });
  try {
    for (const sb of await cri.listPodSandbox()) {
      await cri.stopPodSandbox(sb.id, timeoutMs).catch(() => undefined);
      await cri.removePodSandbox(sb.id, timeoutMs).catch(() => undefined);
    }
  } finally {
    cri.close();
  }
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

async function terminate(pid: number, timeoutMs: number): Promise<void> {
  killQuietly(pid, 'SIGTERM');
  const gone = await waitFor('containerd to exit', () => (isRunning(pid) ? undefined : true), timeoutMs).catch(() => false);
  if (!gone) {
    killQuietly(pid, 'SIGKILL');
    await waitFor('containerd to die', () => (isRunning(pid) ? undefined : true), 5_000);
  }
}

/** Unmounts every mount at or under `dir`, deepest first; a busy mount is detached lazily. */
async function unmountAll(dir: string): Promise<void> {
  for (let round = 0; round < 5; round++) {
    const mounts = (await mountsUnder(dir)).sort((a, b) => b.length - a.length);
    if (mounts.length === 0) return;
    for (const m of mounts) {
      await run(['umount', m], { timeoutMs: 10_000 }).catch(() => run(['umount', '-l', m], { timeoutMs: 10_000 }).catch(() => undefined));
    }
    await sleep(20);
  }
}

/** cgroup v1: removes (empty) cgroup dirs `<controller>/<relative>` and below, deepest first. */
export async function removeCgroups(relative: string): Promise<void> {
  const base = '/sys/fs/cgroup';
  for (const controller of await readdir(base)) {
    const top = join(base, controller, relative);
    if (!existsSync(top)) continue;
    for (const d of (await cgroupDirs(top)).sort((a, b) => b.length - a.length)) await rmdir(d).catch(() => undefined);
  }
}

async function cgroupDirs(dir: string): Promise<string[]> {
  const out = [dir];
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (entry.isDirectory()) out.push(...(await cgroupDirs(join(dir, entry.name))));
  }
  return out;
}

/** The cgroup parent the kubelet should give this node's pods (cgroupfs syntax), so stop() can clean it. */
export function nodeCgroupParent(node: string, podUid: string): string {
  return `/ambit/${node}/pod${podUid}`;
}
