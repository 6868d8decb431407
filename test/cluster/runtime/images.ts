// Container images for the local cluster, built without a registry.
//
// - the base image: a debootstrap'ed Debian bookworm minbase rootfs (plus the shell tools people
//   reach for in `kubectl exec`) and this machine's Node.js runtime (+ npm), tagged
//   `localhost/ambit-base:bookworm` — the name the project's Dockerfile starts FROM;
// - the pause image: one static binary compiled from pause.c beside this file (Debian ships no
//   Kubernetes pause binary, and the sandbox must not depend on a libc in the image).
//
// Both are built with buildah in a buildah store of our own (see buildahArgs), exported as
// docker-archive tarballs and cached in /var/cache/ambit/images under a hash of everything that
// went into them, so a warm machine only imports; a missing archive is rebuilt. Nodes get images
// with `ctr images import` into containerd's `k8s.io` namespace, where the CRI plugin sees them.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, realpath, rename, rm, stat, symlink, writeFile, cp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runtimeFile } from './files.js';
import { isAlive, run, sleep } from './proc.js';

export const BASE_IMAGE = 'localhost/ambit-base:bookworm';
export const PAUSE_IMAGE = 'localhost/ambit-pause:1';

/** Bump when the recipe changes in a way the input hashes cannot see. */
const RECIPE_VERSION = 1;

export const DEBIAN_SUITE = 'bookworm';
/**
 * Added to minbase: what tests and `kubectl exec` sessions use (curl, ip, ps, dig, nc), and what
 * the ambit-agent runs in pod netns: iptables (legacy and nft variants), nft. minbase already has
 * util-linux, whose nsenter the agent uses too.
 */
export const BASE_PACKAGES = ['ca-certificates', 'curl', 'iproute2', 'procps', 'bind9-dnsutils', 'netcat-openbsd', 'iptables', 'nftables'];

export interface ImageCacheConfig {
  /** Where built archives live (default /var/cache/ambit/images, or $AMBIT_IMAGE_CACHE). */
  cacheDir: string;
  /** buildah's own storage, kept apart from /var/lib/containers so `down` and tests never touch it. */
  buildahRoot: string;
  buildahRunRoot: string;
  /** Debian mirror for debootstrap (default: deb.debian.org, or $AMBIT_DEBIAN_MIRROR). */
  mirror: string;
  /** Node.js binary copied into the base image (default: the one running us). */
  nodeBinary: string;
}

export function defaultImageCacheConfig(): ImageCacheConfig {
  const cacheRoot = process.env.AMBIT_IMAGE_CACHE ?? '/var/cache/ambit';
  return {
    cacheDir: join(cacheRoot, 'images'),
    buildahRoot: join(cacheRoot, 'buildah'),
    buildahRunRoot: '/run/ambit-buildah',
    mirror: process.env.AMBIT_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian',
    nodeBinary: process.execPath,
  };
}

export interface BuiltImage {
  /** Image reference, e.g. localhost/ambit-base:bookworm. */
  name: string;
  /** docker-archive tarball to import. */
  archive: string;
  /** Content hash of the build inputs (also part of the archive's file name). */
  key: string;
  /** True when this call built it, false when it came from the cache. */
  built: boolean;
  /** Time this call spent (build or cache check), in ms. */
  ms: number;
}

/** Global flags that point buildah at our store; pass them to every buildah command (and to
 *  `buildah bud --pull=never` for Dockerfiles that start FROM the base image). */
export function buildahArgs(cfg: ImageCacheConfig = defaultImageCacheConfig()): string[] {
  return ['--root', cfg.buildahRoot, '--runroot', cfg.buildahRunRoot, '--storage-driver', 'overlay'];
}

/**
 * Environment for buildah: a containers.conf of our own. Without it every `buildah from` creates
 * /etc/cni/net.d/cni.lock on the host, and a RUN step with the default network creates the host
 * bridge cni-podman0, CNI-FORWARD iptables chains and sets net.ipv4.ip_forward=1. For Dockerfile
 * builds also pass `--network host` (or `none`) to `bud`, so RUN steps never create a network.
 */
export async function buildahEnv(cfg: ImageCacheConfig = defaultImageCacheConfig()): Promise<NodeJS.ProcessEnv> {
  const conf = join(cfg.buildahRoot, 'containers.conf');
  if (!existsSync(conf)) {
    await mkdir(cfg.buildahRoot, { recursive: true });
    await writeFile(conf, `[network]\nnetwork_backend = "cni"\nnetwork_config_dir = ${JSON.stringify(join(cfg.buildahRoot, 'net.d'))}\n`);
  }
  return { ...process.env, CONTAINERS_CONF: conf };
}

/** Runs `buildah <global flags> ...args` against our store with our containers.conf; resolves stdout. */
export async function buildah(args: string[], cfg: ImageCacheConfig = defaultImageCacheConfig(), timeoutMs = 10 * 60_000): Promise<string> {
  return (await run(['buildah', ...buildahArgs(cfg), ...args], { timeoutMs, env: await buildahEnv(cfg) })).trim();
}

// ---------- hashing (pure apart from reading files) ----------

export function hashKey(parts: unknown): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 16);
}

async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Cache file name for an image archive: readable name plus input hash. */
export function archiveFileName(image: string, key: string): string {
  return `${image.replace(/^localhost\//, '').replace(/[^a-zA-Z0-9.-]+/g, '-')}-${key}.tar`;
}

// ---------- cache lock: several test processes may ask for the same image at once ----------

/** Runs `fn` holding a lock directory (mkdir is atomic); a lock whose owner died is taken over. */
export async function withLock<T>(lockDir: string, timeoutMs: number, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  await mkdir(dirname(lockDir), { recursive: true });
  for (;;) {
    try {
      await mkdir(lockDir);
      await writeFile(join(lockDir, 'pid'), String(process.pid));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number(await readFile(join(lockDir, 'pid'), 'utf8').catch(() => '0'));
      // A lock whose owner died (or never wrote its pid for a while) is stale.
      const age = Date.now() - (await stat(lockDir).catch(() => ({ mtimeMs: 0 }))).mtimeMs;
      if ((owner && !isAlive(owner)) || (!owner && age > 10_000)) {
        await rm(lockDir, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`image cache lock ${lockDir} held by pid ${owner} for too long`);
      await sleep(250);
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lockDir, { recursive: true, force: true });
  }
}

/**
 * Returns the cached archive for `key`, or builds it with `build(tmpArchive)` under a lock;
 * `afterBuild` runs once a new archive is in place (e.g. to prune older ones).
 */
export async function cachedArchive(
  cfg: ImageCacheConfig,
  name: string,
  key: string,
  build: (outArchive: string) => Promise<void>,
  afterBuild?: (archive: string) => Promise<void>,
): Promise<BuiltImage> {
  const started = Date.now();
  const archive = join(cfg.cacheDir, archiveFileName(name, key));
  if (existsSync(archive)) return { name, archive, key, built: false, ms: Date.now() - started };
  await mkdir(cfg.cacheDir, { recursive: true });
  return withLock(`${archive}.lock`, 20 * 60_000, async () => {
    if (existsSync(archive)) return { name, archive, key, built: false, ms: Date.now() - started };
    const partial = `${archive}.partial-${process.pid}`;
    try {
      await build(partial);
      await rename(partial, archive);
    } finally {
      await rm(partial, { force: true });
    }
    await writeFile(`${archive}.json`, JSON.stringify({ name, key, builtAt: new Date().toISOString(), buildMs: Date.now() - started }, null, 2));
    await afterBuild?.(archive);
    return { name, archive, key, built: true, ms: Date.now() - started };
  });
}

// ---------- buildah steps ----------

interface ImageRecipe {
  name: string;
  /** `buildah add` sources: local tarballs extracted at /. */
  tarballs: string[];
  /** `buildah config` flags. */
  config: string[];
}

/** from scratch → add tarballs → config → commit → push to a docker-archive. */
async function buildWithBuildah(cfg: ImageCacheConfig, recipe: ImageRecipe, outArchive: string): Promise<void> {
  await mkdir(cfg.buildahRoot, { recursive: true });
  const container = await buildah(['from', '--name', `ambit-build-${process.pid}-${Date.now()}`, 'scratch'], cfg);
  try {
    for (const tarball of recipe.tarballs) await buildah(['add', container, tarball, '/'], cfg);
    await buildah(['config', ...recipe.config, container], cfg);
    await buildah(['commit', '--quiet', container, recipe.name], cfg);
  } finally {
    await buildah(['rm', container], cfg).catch(() => undefined);
  }
  await buildah(['push', '--quiet', recipe.name, `docker-archive:${outArchive}:${recipe.name}`], cfg);
  // A rebuild under the same name leaves the old image dangling; our store is ours to prune.
  await buildah(['rmi', '--prune'], cfg).catch(() => undefined);
}

/** Makes sure our buildah store holds `image` (e.g. for a Dockerfile `FROM` it), loading its archive if not. */
export async function loadIntoBuildah(image: BuiltImage, cfg: ImageCacheConfig = defaultImageCacheConfig()): Promise<void> {
  const present = await buildah(['inspect', '--type', 'image', '--format', '{{.FromImageID}}', image.name], cfg).then(
    () => true,
    () => false,
  );
  if (!present) await buildah(['pull', '--quiet', `docker-archive:${image.archive}`], cfg);
}

// ---------- the base image ----------

interface RootfsSpec {
  suite: string;
  variant: 'minbase';
  packages: string[];
  mirror: string;
}

/** A cached tarball of the debootstrap'ed rootfs, so a new Node.js does not mean a new debootstrap. */
async function ensureRootfsTarball(cfg: ImageCacheConfig, spec: RootfsSpec): Promise<string> {
  const key = hashKey({ recipe: RECIPE_VERSION, ...spec });
  const tarball = join(cfg.cacheDir, `rootfs-${spec.suite}-${spec.variant}-${key}.tar`);
  if (existsSync(tarball)) return tarball;
  await mkdir(cfg.cacheDir, { recursive: true });
  return withLock(`${tarball}.lock`, 20 * 60_000, async () => {
    if (existsSync(tarball)) return tarball;
    const work = await mkdtemp(join(tmpdir(), 'ambit-rootfs-'));
    const rootfs = join(work, 'rootfs');
    try {
      await run(
        ['debootstrap', `--variant=${spec.variant}`, `--include=${spec.packages.join(',')}`, spec.suite, rootfs, spec.mirror],
        { timeoutMs: 15 * 60_000 },
      );
      // Drop what only apt needs and what debootstrap copied from this host.
      await run(['sh', '-c', 'rm -rf var/cache/apt/archives/*.deb var/lib/apt/lists/* var/log/*.log etc/resolv.conf', 'x'], { cwd: rootfs });
      await writeFile(join(rootfs, 'etc/hostname'), 'localhost\n');
      // /dev is a tmpfs the runtime provides; the device nodes debootstrap made do not belong in a layer.
      const partial = `${tarball}.partial-${process.pid}`;
      await run(['tar', '--numeric-owner', '--exclude=./dev/*', '-C', rootfs, '-cf', partial, '.'], { timeoutMs: 5 * 60_000 });
      await rename(partial, tarball);
      return tarball;
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
}

/** Shared libraries the node binary links against (absolute paths, per ldd). */
export function parseLdd(output: string): string[] {
  const libs: string[] = [];
  for (const line of output.split('\n')) {
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m?.[1]) libs.push(m[1]);
  }
  return libs;
}

/** Paths in a tar listing, normalised to absolute form without trailing slash. */
function tarPaths(listing: string): Set<string> {
  return new Set(listing.split('\n').filter(Boolean).map((p) => p.replace(/^\.\//, '/').replace(/\/$/, '')));
}

/** Whether a library path exists in a merged-/usr rootfs (where /lib and /lib64 point into /usr). */
function rootfsHasLib(paths: Set<string>, lib: string): boolean {
  return paths.has(lib) || paths.has(`/usr${lib}`);
}

async function npmDir(): Promise<string | undefined> {
  try {
    const cli = await realpath((await run(['sh', '-c', 'command -v npm'])).trim()); // …/node_modules/npm/bin/npm-cli.js
    return dirname(dirname(cli));
  } catch {
    return undefined;
  }
}

/** Stages Node.js (+ npm, + any libraries the rootfs lacks) as /usr/local in a tarball. */
async function stageNodeTarball(cfg: ImageCacheConfig, rootfsTar: string, work: string): Promise<string> {
  const stage = join(work, 'node');
  await mkdir(join(stage, 'usr/local/bin'), { recursive: true });
  await cp(cfg.nodeBinary, join(stage, 'usr/local/bin/node'));
  const npm = await npmDir();
  if (npm) {
    await mkdir(join(stage, 'usr/local/lib/node_modules'), { recursive: true });
    await cp(npm, join(stage, 'usr/local/lib/node_modules/npm'), { recursive: true });
    await symlink('../lib/node_modules/npm/bin/npm-cli.js', join(stage, 'usr/local/bin/npm'));
    await symlink('../lib/node_modules/npm/bin/npx-cli.js', join(stage, 'usr/local/bin/npx'));
  }
  // Both sides are bookworm here, so normally nothing is missing; should a newer host's node need
  // more, the missing libraries go into the loader's default directory (no ldconfig run needed).
  const present = tarPaths(await run(['tar', '-tf', rootfsTar], { timeoutMs: 120_000 }));
  for (const lib of parseLdd(await run(['ldd', cfg.nodeBinary]))) {
    if (rootfsHasLib(present, lib)) continue;
    const target = join(stage, lib.startsWith('/usr/') ? lib : `/usr${lib}`);
    await mkdir(dirname(target), { recursive: true });
    await cp(await realpath(lib), target);
  }
  await chmod(stage, 0o755);
  const tarball = join(work, 'node.tar');
  await run(['tar', '--numeric-owner', '--owner=0', '--group=0', '-C', stage, '-cf', tarball, '.'], { timeoutMs: 120_000 });
  return tarball;
}

async function nodeVersion(nodeBinary: string): Promise<string> {
  return (await run([nodeBinary, '--version'])).trim();
}

/** The base image archive: bookworm minbase + tools + Node.js. Builds it (about a minute) when missing. */
export async function ensureBaseImage(cfg: ImageCacheConfig = defaultImageCacheConfig()): Promise<BuiltImage> {
  const spec: RootfsSpec = { suite: DEBIAN_SUITE, variant: 'minbase', packages: BASE_PACKAGES, mirror: cfg.mirror };
  const npm = await npmDir();
  const npmVersion = npm ? JSON.parse(await readFile(join(npm, 'package.json'), 'utf8')).version : null;
  const key = hashKey({
    recipe: RECIPE_VERSION,
    image: BASE_IMAGE,
    rootfs: spec,
    node: await fileSha256(cfg.nodeBinary),
    npm: npmVersion,
  });
  return cachedArchive(cfg, BASE_IMAGE, key, async (out) => {
    const rootfsTar = await ensureRootfsTarball(cfg, spec);
    const work = await mkdtemp(join(tmpdir(), 'ambit-base-'));
    try {
      const nodeTar = await stageNodeTarball(cfg, rootfsTar, work);
      const version = await nodeVersion(cfg.nodeBinary);
      await buildWithBuildah(
        cfg,
        {
          name: BASE_IMAGE,
          tarballs: [rootfsTar, nodeTar],
          config: [
            '--os', 'linux',
            '--arch', 'amd64',
            '--env', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
            '--env', `NODE_VERSION=${version.replace(/^v/, '')}`,
            '--workingdir', '/',
            '--cmd', '["node"]',
            '--label', `io.ambit.image.key=${key}`,
            '--label', `org.opencontainers.image.description=Debian ${DEBIAN_SUITE} minbase + Node.js ${version} (Ambit local cluster base)`,
          ],
        },
        out,
      );
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
}

// ---------- the pause image ----------

export async function ensurePauseImage(cfg: ImageCacheConfig = defaultImageCacheConfig()): Promise<BuiltImage> {
  const source = runtimeFile('pause.c');
  const gcc = (await run(['gcc', '--version'])).split('\n')[0];
  const key = hashKey({ recipe: RECIPE_VERSION, image: PAUSE_IMAGE, source: await readFile(source, 'utf8'), gcc });
  return cachedArchive(cfg, PAUSE_IMAGE, key, async (out) => {
    const work = await mkdtemp(join(tmpdir(), 'ambit-pause-'));
    try {
      await run(['gcc', '-Os', '-static', '-s', '-o', join(work, 'pause'), source]);
      await run(['tar', '--numeric-owner', '--owner=0', '--group=0', '-C', work, '-cf', join(work, 'pause.tar'), 'pause']);
      await buildWithBuildah(
        cfg,
        {
          name: PAUSE_IMAGE,
          tarballs: [join(work, 'pause.tar')],
          config: ['--os', 'linux', '--arch', 'amd64', '--entrypoint', '["/pause"]', '--label', `io.ambit.image.key=${key}`],
        },
        out,
      );
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
}

/** Both images the runtime needs, built or taken from the cache. */
export async function ensureRuntimeImages(cfg: ImageCacheConfig = defaultImageCacheConfig()): Promise<{ base: BuiltImage; pause: BuiltImage }> {
  const pause = await ensurePauseImage(cfg);
  const base = await ensureBaseImage(cfg);
  return { base, pause };
}

// ---------- containerd import ----------

/** Imports a docker-archive into a containerd's `k8s.io` namespace, unpacked for `snapshotter`. */
export async function importImage(address: string, archive: string, snapshotter: string): Promise<void> {
  await run(['ctr', '--address', address, '--namespace', 'k8s.io', 'images', 'import', '--snapshotter', snapshotter, archive], {
    timeoutMs: 5 * 60_000,
  });
}

// `node images.js` builds (or confirms) the cached images and prints what it did.
if (process.argv[1] && (await realpath(process.argv[1]).catch(() => '')) === fileURLToPath(import.meta.url)) {
  const { base, pause } = await ensureRuntimeImages();
  for (const img of [pause, base]) {
    console.log(`${img.name} ${img.built ? 'built' : 'cached'} in ${img.ms} ms: ${img.archive}`);
  }
}
