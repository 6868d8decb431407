// Images of the demo/test apps and of Ambit itself, built without a registry on top of the base image
// (test/cluster/runtime/images.ts) and cached the same way: docker-archive tarballs in the image cache
// dir, named by a hash of everything that went into them, rebuilt only when missing.
//
// - Demo images: one image per app, each with its app as the entry point, so a manifest needs only
//   `image:` (command/args override as usual). All five share one layer on top of the base holding
//   every app (src/*.js under /opt/ambit-demo, commands in /usr/local/bin, and @grpc/grpc-js +
//   @grpc/proto-loader with their dependencies copied from the project's node_modules), and they are
//   written into ONE multi-image docker-archive, so a node imports the ~300 MB base layer once.
// - The Ambit image: the project's real Dockerfile, built unmodified with `buildah bud --pull=never
//   --network none` from a staging context (package.json, package-lock.json, dist/src and a production
//   node_modules pruned there, never in the work tree).
//
// Every buildah call goes through runtime/images.ts's `buildah()` (our own store and containers.conf):
// plain buildah would create host CNI state, bridges and iptables chains.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import {
  buildah,
  defaultImageCacheConfig,
  ensureBaseImage,
  hashKey,
  loadIntoBuildah,
  cachedArchive,
  type BuiltImage,
  type ImageCacheConfig,
} from '../runtime/images.js';
import { run } from '../runtime/proc.js';
import { appsSourceDir, compiledSourceDir, repoRoot } from './files.js';

/** Bump when the recipe changes in a way the input hashes cannot see. */
const RECIPE_VERSION = 1;

export type DemoApp = 'echo' | 'tcp-echo' | 'grpc' | 'load' | 'tools';

/** Where the apps live inside every demo image. */
export const DEMO_APP_DIR = '/opt/ambit-demo';
/** Commands put in /usr/local/bin of every demo image → their file in test/cluster/apps/src. */
export const DEMO_COMMANDS: Readonly<Record<string, string>> = {
  'echo-server': 'echo.js',
  'tcp-echo': 'tcp-echo.js',
  'grpc-server': 'grpc-server.js',
  'grpc-client': 'grpc-client.js',
  load: 'load.js',
  idle: 'idle.sh',
};
/** npm packages the apps import (the rest is Node's standard library). */
export const DEMO_NPM_PACKAGES = ['@grpc/grpc-js', '@grpc/proto-loader'];

export interface DemoImageSpec {
  name: string;
  entrypoint: string[];
  /** Container ports, for documentation (EXPOSE); the app reads $PORT. */
  ports: number[];
  description: string;
}

const bin = (command: string): string[] => [`/usr/local/bin/${command}`];

export const DEMO_IMAGE_SPECS: Readonly<Record<DemoApp, DemoImageSpec>> = {
  echo: { name: 'localhost/ambit-demo-echo:1', entrypoint: bin('echo-server'), ports: [8080], description: 'HTTP echo server' },
  'tcp-echo': { name: 'localhost/ambit-demo-tcp-echo:1', entrypoint: bin('tcp-echo'), ports: [9000], description: 'TCP echo server (GREETING: server first)' },
  grpc: { name: 'localhost/ambit-demo-grpc:1', entrypoint: bin('grpc-server'), ports: [50051], description: 'gRPC Echo server (grpc-client inside)' },
  load: { name: 'localhost/ambit-demo-load:1', entrypoint: bin('load'), ports: [], description: 'bounded HTTP load client' },
  tools: { name: 'localhost/ambit-demo-tools:1', entrypoint: bin('idle'), ports: [], description: 'idles until SIGTERM; curl, dig, nc, ip, ps and every demo command for kubectl exec' },
};

export const DEMO_IMAGES: Readonly<Record<DemoApp, string>> = Object.fromEntries(
  Object.entries(DEMO_IMAGE_SPECS).map(([app, spec]) => [app, spec.name]),
) as Record<DemoApp, string>;

/** The image the project's Dockerfile builds (entry point `node`; the manifests pick the program). */
export const AMBIT_IMAGE = 'localhost/ambit:dev';

// ---------- small file helpers ----------

function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Every regular file under `dir` (relative paths, sorted) with its content hash. */
export async function treeDigest(dir: string): Promise<Array<[string, string]>> {
  const out: Array<[string, string]> = [];
  const walk = async (sub: string): Promise<void> => {
    for (const entry of await readdir(join(dir, sub), { withFileTypes: true })) {
      const rel = join(sub, entry.name);
      if (entry.isDirectory()) await walk(rel);
      else if (entry.isFile()) out.push([rel, sha256(await readFile(join(dir, rel)))]);
    }
  };
  await walk('');
  return out.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

// ---------- npm dependency closure ----------

export interface NpmPackage {
  name: string;
  version: string;
  /** Directory relative to the project root, e.g. node_modules/@grpc/grpc-js. */
  dir: string;
}

/** Node's lookup for `name` required from `fromDir`: <dir>/node_modules/<name>, walking up to `root`. */
export function resolvePackageDir(root: string, fromDir: string, name: string, exists: (p: string) => boolean = existsSync): string | undefined {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (exists(join(candidate, 'package.json'))) return candidate;
    if (dir === root || dir === dirname(dir)) return undefined;
  }
}

/**
 * `names` and everything they depend on at run time (dependencies, plus optionalDependencies that are
 * installed), resolved from `root`'s node_modules the way Node resolves them. Sorted by dir.
 */
export async function packageClosure(root: string, names: readonly string[]): Promise<NpmPackage[]> {
  const found = new Map<string, NpmPackage>();
  const visit = async (name: string, fromDir: string, optional: boolean, via: string): Promise<void> => {
    const dir = resolvePackageDir(root, fromDir, name);
    if (!dir) {
      if (optional) return;
      throw new Error(`${name} (needed by ${via}) is not installed under ${root}/node_modules; run npm ci`);
    }
    const rel = relative(root, dir);
    if (found.has(rel)) return;
    const pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as {
      version: string;
      dependencies?: Record<string, string>;
      optionalDependencies?: Record<string, string>;
    };
    found.set(rel, { name, version: pkg.version, dir: rel });
    for (const dep of Object.keys(pkg.dependencies ?? {})) await visit(dep, dir, false, name);
    for (const dep of Object.keys(pkg.optionalDependencies ?? {})) await visit(dep, dir, true, name);
  };
  for (const name of names) await visit(name, root, false, 'the demo apps');
  return [...found.values()].sort((a, b) => (a.dir < b.dir ? -1 : a.dir > b.dir ? 1 : 0));
}

// ---------- cache (the scheme of runtime/images.ts: archive named by input hash, its lock) ----------

/** Archives older than this, of the same image but other inputs, are deleted after a build. */
const STALE_ARCHIVE_MS = 3600_000;

/** `<image>-<16 hex key>.tar` → `<image>-`, the part shared by every build of one image. */
export function archiveStem(fileName: string): string | undefined {
  return /^(.+-)[0-9a-f]{16}\.tar$/.exec(fileName)?.[1];
}

/**
 * Each source change makes a new Ambit or demo archive (hundreds of MB); without pruning the cache
 * grows by one per change. Only archives untouched for an hour go, so a concurrent run that still
 * imports an older build (e.g. from another output dir) keeps it.
 */
/** After a build: drop older archives of the same image (the cache would grow by hundreds of MB per change). */
const pruneOlder = (archive: string): Promise<void> => pruneStaleArchives(dirname(archive), basename(archive));

async function pruneStaleArchives(cacheDir: string, keep: string): Promise<void> {
  const stem = archiveStem(keep);
  if (!stem) return;
  for (const name of await readdir(cacheDir)) {
    if (name === keep || archiveStem(name) !== stem) continue;
    const path = join(cacheDir, name);
    const age = Date.now() - (await stat(path).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs;
    if (age <= STALE_ARCHIVE_MS) continue;
    await rm(path, { force: true });
    await rm(`${path}.json`, { force: true });
  }
}


// ---------- multi-image docker-archive ----------

interface ArchiveManifestEntry {
  Config: string;
  RepoTags: string[];
  Layers: string[];
}

/**
 * manifest.json of a docker-archive holding all images of `parts`. Layer and config files are named
 * by digest, so equal names are equal content; an image tag listed twice keeps its last entry.
 */
export function mergeArchiveManifests(parts: readonly ArchiveManifestEntry[][]): ArchiveManifestEntry[] {
  const byTag = new Map<string, ArchiveManifestEntry>();
  const untagged: ArchiveManifestEntry[] = [];
  for (const entry of parts.flat()) {
    if (!entry.RepoTags?.length) untagged.push(entry);
    for (const tag of entry.RepoTags ?? []) byTag.set(tag, { ...entry, RepoTags: [tag] });
  }
  return [...byTag.values(), ...untagged];
}

/** The legacy `repositories` file: { repo: { tag: id } }, merged. */
export function mergeRepositories(parts: ReadonlyArray<Record<string, Record<string, string>>>): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  for (const part of parts) for (const [repo, tags] of Object.entries(part)) out[repo] = { ...out[repo], ...tags };
  return out;
}

/** Writes one docker-archive holding every image of the single-image archives `inputs`. */
async function mergeDockerArchives(inputs: readonly string[], out: string, work: string): Promise<void> {
  const merged = join(work, 'merged');
  await mkdir(merged, { recursive: true });
  const manifests: ArchiveManifestEntry[][] = [];
  const repositories: Array<Record<string, Record<string, string>>> = [];
  for (const [i, input] of inputs.entries()) {
    const dir = join(work, `part-${i}`);
    await mkdir(dir);
    await run(['tar', '-xf', input, '-C', dir], { timeoutMs: 5 * 60_000 });
    await rm(input, { force: true }); // keeps the peak disk use near two archives
    manifests.push(JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')));
    if (existsSync(join(dir, 'repositories'))) repositories.push(JSON.parse(await readFile(join(dir, 'repositories'), 'utf8')));
    for (const name of await readdir(dir)) {
      if (name === 'manifest.json' || name === 'repositories') continue;
      // Content-addressed names: a file already taken from an earlier part is the same bytes.
      if (!existsSync(join(merged, name))) await rename(join(dir, name), join(merged, name));
    }
    await rm(dir, { recursive: true, force: true });
  }
  await writeFile(join(merged, 'manifest.json'), JSON.stringify(mergeArchiveManifests(manifests)));
  if (repositories.length) await writeFile(join(merged, 'repositories'), JSON.stringify(mergeRepositories(repositories)));
  const names = (await readdir(merged)).sort();
  await run(['tar', '--numeric-owner', '--owner=0', '--group=0', '-cf', out, '-C', merged, ...names], { timeoutMs: 5 * 60_000 });
}

// ---------- demo images ----------

/** Stages the demo layer as a tarball rooted at /: apps, their npm packages and the command links. */
async function stageDemoLayer(work: string, srcDir: string, root: string, packages: readonly NpmPackage[]): Promise<string> {
  const stage = join(work, 'stage');
  const appDir = join(stage, DEMO_APP_DIR);
  await mkdir(appDir, { recursive: true });
  for (const name of await readdir(srcDir)) await cp(join(srcDir, name), join(appDir, name));
  // The apps are ESM `.js` files: the package.json beside them says so to Node.
  await writeFile(join(appDir, 'package.json'), `${JSON.stringify({ name: 'ambit-demo', private: true, type: 'module' }, null, 2)}\n`);
  for (const pkg of packages) await cp(join(root, pkg.dir), join(appDir, pkg.dir), { recursive: true });
  await mkdir(join(stage, 'usr/local/bin'), { recursive: true });
  for (const [command, file] of Object.entries(DEMO_COMMANDS)) {
    await chmod(join(appDir, file), 0o755);
    await symlink(join(DEMO_APP_DIR, file), join(stage, 'usr/local/bin', command));
  }
  const tarball = join(work, 'demo-layer.tar');
  // The tar's directory entries (/, /opt, /usr/local/bin) overwrite the base's: keep them 0755 root.
  await chmod(stage, 0o755);
  await run(['tar', '--numeric-owner', '--owner=0', '--group=0', '-C', stage, '-cf', tarball, '.'], { timeoutMs: 120_000 });
  return tarball;
}

/** `buildah config` flags of one demo image. */
export function demoConfigFlags(app: DemoApp, spec: DemoImageSpec, key: string): string[] {
  return [
    '--entrypoint', JSON.stringify(spec.entrypoint),
    // The base's CMD ["node"] would otherwise become the entry point's first argument.
    '--cmd', '[]',
    '--workingdir', DEMO_APP_DIR,
    ...spec.ports.flatMap((p) => ['--port', `${p}/tcp`]),
    '--label', `io.ambit.image.key=${key}`,
    '--label', `io.ambit.demo.app=${app}`,
    '--label', `org.opencontainers.image.description=Ambit demo: ${spec.description}`,
  ];
}

async function demoInputsKey(base: BuiltImage, srcDir: string, packages: readonly NpmPackage[]): Promise<string> {
  return hashKey({
    recipe: RECIPE_VERSION,
    base: base.key,
    sources: await treeDigest(srcDir),
    packages: packages.map((p) => `${p.dir}@${p.version}`),
    specs: DEMO_IMAGE_SPECS,
    commands: DEMO_COMMANDS,
    appDir: DEMO_APP_DIR,
  });
}

/** Commits one image per app from the shared layer and writes them all into `outArchive`. */
async function buildDemoImages(cfg: ImageCacheConfig, base: BuiltImage, layerTar: string, key: string, work: string, outArchive: string): Promise<void> {
  await loadIntoBuildah(base, cfg);
  const layerImage = `localhost/ambit-demo-layer:${key}`;
  const unique = `${process.pid}-${Date.now()}`;
  const container = await buildah(['from', '--pull=never', '--name', `ambit-demo-layer-${unique}`, base.name], cfg);
  try {
    await buildah(['add', container, layerTar, '/'], cfg);
    await buildah(['commit', '--quiet', container, layerImage], cfg);
  } finally {
    await buildah(['rm', container], cfg).catch(() => undefined);
  }
  const parts: string[] = [];
  try {
    for (const [app, spec] of Object.entries(DEMO_IMAGE_SPECS) as Array<[DemoApp, DemoImageSpec]>) {
      const c = await buildah(['from', '--pull=never', '--name', `ambit-demo-${app}-${unique}`, layerImage], cfg);
      try {
        await buildah(['config', ...demoConfigFlags(app, spec, key), c], cfg);
        await buildah(['commit', '--quiet', c, spec.name], cfg);
      } finally {
        await buildah(['rm', c], cfg).catch(() => undefined);
      }
      const part = join(work, `part-${app}.tar`);
      await buildah(['push', '--quiet', spec.name, `docker-archive:${part}:${spec.name}`], cfg);
      parts.push(part);
    }
    await mergeDockerArchives(parts, outArchive, join(work, 'merge'));
  } finally {
    await buildah(['rmi', layerImage], cfg).catch(() => undefined);
    // A rebuild under the same names leaves the old images dangling; our store is ours to prune.
    await buildah(['rmi', '--prune'], cfg).catch(() => undefined);
  }
}

/**
 * The demo images (DEMO_IMAGES), built on the base image or taken from the cache. Returns one
 * BuiltImage per image; they all name the SAME multi-image archive, so import each distinct
 * `archive` once (see distinctArchives) — importing it once brings in all five names.
 */
export async function ensureAppImages(cfg: ImageCacheConfig = defaultImageCacheConfig()): Promise<BuiltImage[]> {
  const started = Date.now();
  const base = await ensureBaseImage(cfg);
  const root = repoRoot();
  const srcDir = appsSourceDir();
  const packages = await packageClosure(root, DEMO_NPM_PACKAGES);
  const key = await demoInputsKey(base, srcDir, packages);
  const { archive, built } = await cachedArchive(cfg, 'localhost/ambit-demo:all', key, async (out) => {
    const work = await mkdtemp(join(cfg.cacheDir, '.ambit-demo-'));
    try {
      const layerTar = await stageDemoLayer(work, srcDir, root, packages);
      await buildDemoImages(cfg, base, layerTar, key, work, out);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }, pruneOlder);
  const ms = Date.now() - started;
  return Object.values(DEMO_IMAGES).map((name) => ({ name, archive, key, built, ms }));
}

/** The distinct archives of a list of images, in first-seen order: what to import into a node. */
export function distinctArchives(images: readonly BuiltImage[]): string[] {
  return [...new Set(images.map((i) => i.archive))];
}

// ---------- the Ambit image (the project's real Dockerfile) ----------

export interface AmbitImageOptions {
  /** Compiled sources to ship (default: the src/ compiled with this module, else <repo>/dist/src). */
  distSrc?: string;
  /** Compiled native binaries to ship as dist/native (default: native/ beside distSrc, the same build; absent: an empty dir). */
  distNative?: string;
  /** Repository root holding Dockerfile, .dockerignore, package.json, package-lock.json, node_modules. */
  root?: string;
  /** Image name (default AMBIT_IMAGE). */
  name?: string;
}

/** Files the Dockerfile reads from its context besides dist/src and node_modules. */
const AMBIT_CONTEXT_FILES = ['Dockerfile', '.dockerignore', 'package.json', 'package-lock.json'];

/**
 * A build context holding exactly what the Dockerfile copies: package files, dist/src, dist/native
 * (empty when nothing native was built, since COPY needs the dir) and a production node_modules (a
 * copy of the project's, pruned with `npm prune --omit=dev` HERE, so the work tree's node_modules
 * is never touched and nothing is downloaded).
 */
async function stageAmbitContext(root: string, distSrc: string, distNative: string, context: string): Promise<void> {
  await mkdir(join(context, 'dist', 'native'), { recursive: true });
  for (const file of AMBIT_CONTEXT_FILES) if (existsSync(join(root, file))) await cp(join(root, file), join(context, file));
  await cp(distSrc, join(context, 'dist', 'src'), { recursive: true });
  if (existsSync(distNative)) await cp(distNative, join(context, 'dist', 'native'), { recursive: true });
  await run(['cp', '-a', join(root, 'node_modules'), join(context, 'node_modules')], { timeoutMs: 5 * 60_000 });
  await run(['npm', 'prune', '--omit=dev', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: context, timeoutMs: 5 * 60_000 });
}

/**
 * The project's image: its real Dockerfile (FROM localhost/ambit-base:bookworm) built with
 * `buildah bud --pull=never --network none`, taken from the cache when nothing it reads changed.
 * Needs compiled sources (`npm run build`) and an installed node_modules.
 */
export async function ensureAmbitImage(opts: AmbitImageOptions = {}, cfg: ImageCacheConfig = defaultImageCacheConfig()): Promise<BuiltImage> {
  const started = Date.now();
  const root = opts.root ?? repoRoot();
  const distSrc = opts.distSrc ?? compiledSourceDir();
  const distNative = opts.distNative ?? join(dirname(distSrc), 'native');
  const name = opts.name ?? AMBIT_IMAGE;
  if (!existsSync(join(distSrc, 'sys', 'index.js'))) {
    throw new Error(`${distSrc} holds no compiled sources (sys/index.js); run \`npm run build\` first`);
  }
  if (!existsSync(join(root, 'node_modules'))) throw new Error(`${root}/node_modules is missing; run \`npm ci\` first`);
  const base = await ensureBaseImage(cfg);
  const contextFiles: Record<string, string> = {};
  for (const file of AMBIT_CONTEXT_FILES) contextFiles[file] = existsSync(join(root, file)) ? sha256(await readFile(join(root, file))) : '';
  const native = existsSync(distNative) ? await treeDigest(distNative) : [];
  const key = hashKey({ recipe: RECIPE_VERSION, name, base: base.key, contextFiles, distSrc: await treeDigest(distSrc), native });
  const { archive, built } = await cachedArchive(cfg, name, key, async (out) => {
    const work = await mkdtemp(join(cfg.cacheDir, '.ambit-image-'));
    try {
      const context = join(work, 'context');
      await stageAmbitContext(root, distSrc, distNative, context);
      await loadIntoBuildah(base, cfg);
      await buildah(
        [
          'bud', '--pull=never', '--network', 'none', '--layers=false', '--quiet',
          '--label', `io.ambit.image.key=${key}`,
          '--label', 'org.opencontainers.image.description=Ambit: ambit-control, ambit-agent and ambit-cni (entry point node)',
          '-f', join(context, 'Dockerfile'), '-t', name, context,
        ],
        cfg,
      );
      await buildah(['push', '--quiet', name, `docker-archive:${out}:${name}`], cfg);
      await buildah(['rmi', '--prune'], cfg).catch(() => undefined);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }, pruneOlder);
  return { name, archive, key, built, ms: Date.now() - started };
}
