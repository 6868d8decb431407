// A cached, pre-imported containerd root that new nodes start from, so `up` does not unpack the
// same images into every node. Importing (hashing and unpacking some 600 MB of layers) is most of
// a warm `up` — about 12 s per node on a 2-CPU machine — while seeding a node from the template is
// a hard-link copy.
//
// The template is made once per image set and snapshotter: a throw-away containerd imports the
// images, stops, and its root is kept under the image cache. A node's root is then a copy of it
// where only the immutable parts are hard links — content blobs (addressed by digest, never
// rewritten) and committed snapshot trees (overlay lower dirs: a container's writes land in its
// own upper dir by copy-up, never in the lower file) — and everything else (the bolt metadata
// databases, CRI state) is a private copy, because containerd writes those in place.
import { existsSync } from 'node:fs';
import { chmod, copyFile, link, lstat, mkdir, readdir, rename, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { basename, dirname, join, sep } from 'node:path';
import { startContainerd, stopContainerd, type Snapshotter } from './runtime/containerd.js';
import { PAUSE_IMAGE, defaultImageCacheConfig, hashKey, importImage, type BuiltImage } from './runtime/images.js';
import { isAlive } from './runtime/proc.js';

/** Bump when the template layout or the seeding rules change. */
const TEMPLATE_VERSION = 1;
const COMPLETE_MARK = '.complete';

export function templateRootDir(): string {
  return join(defaultImageCacheConfig().cacheDir, '..', 'node-roots');
}

/** The template's key: the exact archives (their names carry their content hashes) and the snapshotter. */
export function templateKey(images: readonly BuiltImage[], snapshotter: Snapshotter): string {
  const archives = [...new Set(images.map((i) => basename(i.archive)))].sort();
  return hashKey({ v: TEMPLATE_VERSION, archives, snapshotter });
}

export interface TemplateOptions {
  images: readonly BuiltImage[];
  snapshotter: Snapshotter;
  /** an existing network namespace the throw-away containerd may run in (it starts no pods) */
  netns: string;
  log?: (s: string) => void;
}

export interface NodeRootTemplate {
  dir: string;
  /** the containerd root to seed nodes from */
  root: string;
  /** true when this call built it */
  built: boolean;
  /** this user's mark in <dir>/users, removed by releaseNodeRootTemplate */
  userMark: string;
}

let marks = 0;

/**
 * The template for `opts.images` (built now if missing), marked as in use by this process until
 * releaseNodeRootTemplate: nodes' snapshot dirs are symlinks into it, so it must outlive them.
 */
export async function acquireNodeRootTemplate(opts: TemplateOptions): Promise<NodeRootTemplate> {
  const dir = join(templateRootDir(), templateKey(opts.images, opts.snapshotter));
  const root = join(dir, 'root');
  const mark = async () => {
    const userMark = join(dir, 'users', `${process.pid}-${++marks}`);
    await mkdir(dirname(userMark), { recursive: true });
    await writeFile(userMark, '');
    return userMark;
  };
  if (existsSync(join(dir, COMPLETE_MARK))) {
    const userMark = await mark();
    // Marked first, checked again: a concurrent prune may have taken it between the two.
    if (existsSync(join(dir, COMPLETE_MARK))) {
      const now = new Date();
      await utimes(join(dir, COMPLETE_MARK), now, now); // recency for pruning
      return { dir, root, built: false, userMark };
    }
  }
  const work = `${dir}.partial-${process.pid}-${Date.now()}`;
  const started = Date.now();
  try {
    const inst = await startContainerd({
      name: `tmpl-${process.pid}`,
      netns: opts.netns,
      dir: work,
      podCidr: '10.255.255.0/24',
      sandboxImage: PAUSE_IMAGE,
      snapshotter: opts.snapshotter,
    });
    try {
      const archives = [...new Set(opts.images.map((i) => i.archive))];
      await Promise.all(archives.map((a) => importImage(inst.socket, a, opts.snapshotter)));
    } finally {
      await stopContainerd(inst, { drain: false, keepDir: true });
    }
    await writeFile(join(work, COMPLETE_MARK), `${JSON.stringify({ images: opts.images.map((i) => i.name), ms: Date.now() - started })}\n`);
    // Another process may have finished the same template meanwhile; theirs is as good as ours.
    if (!existsSync(join(dir, COMPLETE_MARK))) {
      await rm(dir, { recursive: true, force: true });
      await rename(work, dir);
    }
    const userMark = await mark();
    opts.log?.(`node root template ${basename(dir)} built in ${Date.now() - started} ms`);
    await pruneNodeRootTemplates().catch((err: Error) => opts.log?.(`pruning node root templates: ${err.message}`));
    return { dir, root, built: true, userMark };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export async function releaseNodeRootTemplate(t: Pick<NodeRootTemplate, 'userMark'>): Promise<void> {
  await rm(t.userMark, { force: true });
}

export interface TemplateEntry {
  name: string;
  complete: boolean;
  /** last use (mtime of the complete mark) */
  usedMs: number;
  /** pids holding a user mark */
  userPids: number[];
  /** pid that is building it (partial dirs) */
  builderPid?: number;
}

/**
 * Which templates to delete: partial builds whose builder died, and complete templates beyond the
 * `keep` most recently used that no live process holds (image changes leave ~1 GB each behind).
 */
export function templatesToPrune(entries: readonly TemplateEntry[], keep: number, alive: (pid: number) => boolean): string[] {
  const out = entries.filter((e) => !e.complete && e.builderPid !== undefined && !alive(e.builderPid)).map((e) => e.name);
  const complete = entries.filter((e) => e.complete).sort((a, b) => b.usedMs - a.usedMs);
  for (const e of complete.slice(keep)) if (!e.userPids.some(alive)) out.push(e.name);
  return out;
}

const KEEP_TEMPLATES = 2;

export async function pruneNodeRootTemplates(keep = KEEP_TEMPLATES): Promise<string[]> {
  const top = templateRootDir();
  const entries: TemplateEntry[] = [];
  for (const name of await readdir(top).catch(() => [] as string[])) {
    const dir = join(top, name);
    const partial = /\.partial-(\d+)-\d+$/.exec(name);
    const mark = await stat(join(dir, COMPLETE_MARK)).catch(() => undefined);
    const userPids = (await readdir(join(dir, 'users')).catch(() => [] as string[])).map((u) => Number(u.split('-')[0]));
    const e: TemplateEntry = { name, complete: !partial && !!mark, usedMs: mark?.mtimeMs ?? 0, userPids };
    if (partial) e.builderPid = Number(partial[1]);
    entries.push(e);
  }
  const doomed = templatesToPrune(entries, keep, isAlive);
  for (const name of doomed) await rm(join(top, name), { recursive: true, force: true });
  return doomed;
}

export type SeedAction = 'symlink' | 'link' | 'copy' | 'dir' | 'skip';

/**
 * How a template entry (path relative to the root) becomes part of a node's root:
 * - a committed snapshot dir → a symlink to the template's (thousands of files, never written;
 *   containerd removes a snapshot by renaming and deleting its entry: for a symlink, the link);
 * - a content blob → a hard link (addressed by digest, never rewritten);
 * - any other file (bolt databases, CRI state) → a private copy, since containerd writes it in place;
 * - directories are made anew, so what containerd adds later (new blobs, new snapshots) stays the node's.
 */
export function seedAction(rel: string, kind: 'dir' | 'file' | 'other'): SeedAction {
  const parts = rel.split(sep);
  if (parts.length === 3 && parts[0]!.startsWith('io.containerd.snapshotter.v1.') && parts[1] === 'snapshots') return 'symlink';
  if (kind === 'dir') return 'dir';
  if (kind === 'other') return 'skip';
  return parts[0] === 'io.containerd.content.v1.content' && parts[1] === 'blobs' ? 'link' : 'copy';
}

/** Creates `target` (a node's containerd root) from the template at `templateRoot`; see seedAction. */
export async function seedNodeRoot(templateRoot: string, target: string): Promise<void> {
  await mkdir(dirname(target), { recursive: true });
  await seedEntry(templateRoot, target, '');
}

async function seedEntry(from: string, to: string, rel: string): Promise<void> {
  const st = await lstat(from);
  const action = rel === '' ? 'dir' : seedAction(rel, st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other');
  switch (action) {
    case 'symlink':
      return symlink(from, to);
    case 'link':
      return link(from, to);
    case 'copy':
      return copyFile(from, to);
    case 'skip':
      return;
    case 'dir':
      await mkdir(to);
      await chmod(to, st.mode & 0o7777);
      for (const name of await readdir(from)) await seedEntry(join(from, name), join(to, name), rel ? join(rel, name) : name);
  }
}
