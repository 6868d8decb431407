// A local-cluster node's own filesystem root ("node fs"): the directory that stands for `/` of
// one node. All nodes share this machine's real root, so without it a pod's hostPath volume of
// `/etc/cni/net.d` would be the machine's real /etc/cni/net.d — a DaemonSet like ambit-agent,
// which writes CNI config and iptables locks through hostPath, would change the host itself.
//
// The kubelet maps every hostPath `P` to `<root>/P` (resolveNodePath); the node's containerd keeps
// the files a real node has at those places inside the root:
//
//   <root>/etc/cni/net.d     containerd's CNI conf_dir (the node's conflist)
//   <root>/opt/cni/bin       containerd's CNI bin_dir (links to the system plugins + extras)
//   <root>/run/netns         the pod netns bind mounts (containerd's netns dir points here); a
//                            shared mount, so a HostToContainer hostPath mount sees new pods
//   <root>/run/xtables.lock  the node's xtables lock (kube-proxy's iptables-restore uses it too)
//   <root>/var/run           -> ../run, as on a Debian node, so /var/run/X and /run/X are one file
//
// Paths are resolved as if `root` were `/`: `..` stops at the root and symlinks met on the way
// (absolute or relative) are followed inside the root, so neither a hostPath like `/../../etc`
// nor a symlink a pod made (e.g. `<root>/x -> /etc`) reaches the machine's files.
import { lstat, mkdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { mountsUnder, run, sleep } from './runtime/proc.js';

export interface NodeFs {
  /** the directory that stands for `/` on the node */
  root: string;
  /** `/etc/cni/net.d` of the node */
  cniConfDir: string;
  /** `/opt/cni/bin` of the node */
  cniBinDir: string;
  /** `/run/netns` (= `/var/run/netns`) of the node: pod netns bind mounts */
  netnsDir: string;
  /** `/run/xtables.lock` of the node */
  xtablesLock: string;
}

/** The node's well-known places under `root` (pure). */
export function nodeFs(root: string): NodeFs {
  return {
    root,
    cniConfDir: join(root, 'etc/cni/net.d'),
    cniBinDir: join(root, 'opt/cni/bin'),
    netnsDir: join(root, 'run/netns'),
    xtablesLock: join(root, 'run/xtables.lock'),
  };
}

/**
 * `p` (a path on the node, e.g. a hostPath) as a path under `root`, lexically: normalised as an
 * absolute path first, so `..` cannot climb above the root. Symlinks are not looked at (see
 * resolveNodePath for what is actually mounted).
 */
export function nodePath(root: string, p: string): string {
  const abs = posix.normalize(`/${p}`).replace(/\/+$/, '');
  return abs === '' ? root : join(root, abs);
}

/** How many symlinks one resolution may follow (Linux's limit for a path walk). */
const MAX_SYMLINKS = 40;

/**
 * `p` resolved inside `root` like a path walk chrooted at `root`: every symlink on the way (the
 * last component too, since runc follows it when mounting) is followed with absolute targets taken
 * from the root and `..` stopping there. Components that do not exist are kept as written. The
 * result holds no symlink that existed at the time of the call and always lies under `root`.
 */
export async function resolveNodePath(root: string, p: string): Promise<string> {
  const pending = p.split('/');
  const done: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      done.pop();
      continue;
    }
    const here = join(root, ...done, part);
    const st = await lstat(here).catch(() => undefined);
    if (st?.isSymbolicLink()) {
      if (++links > MAX_SYMLINKS) throw new Error(`too many levels of symbolic links resolving ${p} in node root ${root}`);
      const target = await readlink(here);
      if (target.startsWith('/')) done.length = 0;
      pending.unshift(...target.split('/'));
      continue;
    }
    done.push(part);
  }
  return join(root, ...done);
}

/** Creates the node's root with the skeleton above (idempotent). containerd adds run/netns. */
export async function createNodeFs(root: string): Promise<NodeFs> {
  const fs = nodeFs(root);
  for (const d of [fs.cniConfDir, fs.cniBinDir, join(root, 'run'), join(root, 'var'), join(root, 'tmp')]) await mkdir(d, { recursive: true, mode: 0o755 });
  if (!(await lstat(join(root, 'var/run')).catch(() => undefined))) await symlink('../run', join(root, 'var/run'));
  // Exists from the start, as on a node where iptables ran once; a DaemonSet mounts it with FileOrCreate.
  await writeFile(fs.xtablesLock, '', { flag: 'a', mode: 0o600 });
  return fs;
}

/**
 * Removes the node's root. Everything mounted under it (netns files, a pod's Bidirectional
 * mounts) is unmounted first, deepest first; if a mount stays, the root is left in place and
 * this throws — deleting recursively through a bind mount would delete what it shows.
 */
export async function removeNodeFs(root: string): Promise<void> {
  for (let round = 0; round < 5; round++) {
    const mounts = (await mountsUnder(root)).sort((a, b) => b.length - a.length);
    if (mounts.length === 0) break;
    for (const m of mounts) {
      await run(['umount', m], { timeoutMs: 10_000 }).catch(() => run(['umount', '-l', m], { timeoutMs: 10_000 }).catch(() => undefined));
    }
    await sleep(20);
  }
  const left = await mountsUnder(root);
  if (left.length) throw new Error(`node root ${root} still has mounts (${left.join(', ')}); unmount them, then remove the dir`);
  await rm(root, { recursive: true, force: true });
}
