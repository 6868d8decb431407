// Tests of a node's own filesystem root (nodefs.ts): the layout, lexical mapping and in-root
// symlink resolution of node paths, the skeleton, and removal that unmounts before deleting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readlinkSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNodeFs, nodeFs, nodePath, removeNodeFs, resolveNodePath } from './nodefs.js';
import { mountsUnder, run } from './runtime/proc.js';

const isRoot = process.getuid?.() === 0;

test('layout: the places a real node has them', () => {
  assert.deepEqual(nodeFs('/c/nodes/n1/rootfs'), {
    root: '/c/nodes/n1/rootfs',
    cniConfDir: '/c/nodes/n1/rootfs/etc/cni/net.d',
    cniBinDir: '/c/nodes/n1/rootfs/opt/cni/bin',
    netnsDir: '/c/nodes/n1/rootfs/run/netns',
    xtablesLock: '/c/nodes/n1/rootfs/run/xtables.lock',
  });
});

test('nodePath: normalised, `..` stops at the root', () => {
  const cases: [string, string][] = [
    ['/etc/cni/net.d', '/r/etc/cni/net.d'],
    ['/', '/r'],
    ['', '/r'],
    ['/..', '/r'],
    ['/a/../../b', '/r/b'],
    ['//a//./b/', '/r/a/b'],
    ['a/b', '/r/a/b'],
  ];
  for (const [p, want] of cases) assert.equal(nodePath('/r', p), want, p);
});

test('resolveNodePath: symlinks are followed inside the root, missing parts kept, loops refused', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'nodefs-'));
  const root = join(dir, 'root');
  try {
    await mkdir(join(root, 'run/netns'), { recursive: true });
    await mkdir(join(root, 'var'), { recursive: true });
    await symlink('../run', join(root, 'var/run'));
    await symlink('/run/netns', join(root, 'abs'));
    await symlink('/', join(root, 'top'));
    await symlink('../../../../..', join(root, 'run/up'));
    await symlink('/etc/passwd', join(root, 'run/passwd'));
    await symlink('loop-b', join(root, 'loop-a'));
    await symlink('loop-a', join(root, 'loop-b'));
    await writeFile(join(root, 'run/file'), '');
    const cases: [string, string][] = [
      ['/var/run/netns', 'run/netns'],
      ['/var/run/netns/cni-1', 'run/netns/cni-1'],
      ['/abs/x', 'run/netns/x'],
      ['/top/top/etc', 'etc'],
      ['/run/up/etc/cni', 'etc/cni'],
      ['/run/passwd', 'etc/passwd'],
      ['/var/run/../opt', 'opt'],
      ['/missing/../var/run', 'run'],
      ['/run/file', 'run/file'],
      ['/', ''],
    ];
    for (const [p, want] of cases) assert.equal(await resolveNodePath(root, p), join(root, want), p);
    await assert.rejects(resolveNodePath(root, '/loop-a/x'), /too many levels of symbolic links/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('createNodeFs makes the skeleton (idempotent); removeNodeFs unmounts, then deletes', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'nodefs-'));
  const root = join(dir, 'rootfs');
  const outside = join(dir, 'outside');
  try {
    const fs = await createNodeFs(root);
    await writeFile(fs.xtablesLock, 'kept');
    await createNodeFs(root);
    for (const d of [fs.cniConfDir, fs.cniBinDir, join(root, 'run'), join(root, 'tmp'), fs.xtablesLock]) assert.ok(existsSync(d), d);
    assert.equal(readlinkSync(join(root, 'var/run')), '../run');
    if (isRoot) {
      // A bind mount of a dir outside the root (as a Bidirectional pod mount could leave): removal
      // must unmount it, not delete through it.
      await mkdir(join(outside, 'keep'), { recursive: true });
      await mkdir(join(root, 'mnt'));
      await run(['mount', '--bind', outside, join(root, 'mnt')]);
    }
    await removeNodeFs(root);
    assert.equal(existsSync(root), false);
    assert.deepEqual(await mountsUnder(dir), []);
    if (isRoot) assert.ok(existsSync(join(outside, 'keep')), 'what the bind mount showed is untouched');
  } finally {
    for (const m of (await mountsUnder(dir)).reverse()) await run(['umount', '-l', m]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
});
