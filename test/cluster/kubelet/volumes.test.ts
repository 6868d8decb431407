// Tests of pod volume planning (pure) and materialisation: configMap/secret keys and items with
// modes, downwardAPI, the projected kube-api-access volume, errors that become FailedMount, and
// hostPath volumes in the node's own filesystem root (types, `..`, symlinks out of the root).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KObject } from '../apiserver/types.js';
import { materializeVolumes, planVolumes, VolumeError, type VolumeInput } from './volumes.js';

const cm: KObject = { metadata: { name: 'cfg' }, data: { a: 'A', b: 'B' } };
const secret: KObject = { metadata: { name: 's' }, data: { pw: Buffer.from('hunter2').toString('base64') } };

function input(volumes: object[], podDir = '/pods/u-1', nodeFsRoot = '/nodes/n1/rootfs'): VolumeInput & { tokens: unknown[] } {
  const tokens: unknown[] = [];
  return {
    pod: { metadata: { name: 'web', namespace: 'shop', uid: 'u-1', labels: { app: 'web' } }, spec: { containers: [], volumes } },
    podDir,
    nodeFsRoot,
    hostIp: '192.168.0.1',
    podIps: ['10.244.1.2'],
    configMap: (n) => (n === 'cfg' ? cm : undefined),
    secret: (n) => (n === 's' ? secret : undefined),
    token: (aud, exp) => {
      tokens.push({ aud, exp });
      return 'jwt';
    },
    caPem: 'CA-PEM',
    tokens,
  };
}

test('plans: paths per plugin, keys or items, modes, downward API and projected sources', () => {
  const i = input([
    { name: 'all', configMap: { name: 'cfg' } },
    { name: 'some', configMap: { name: 'cfg', items: [{ key: 'b', path: 'sub/b.txt', mode: 0o600 }], defaultMode: 0o640 } },
    { name: 'sec', secret: { secretName: 's', defaultMode: 0o400 } },
    { name: 'info', downwardAPI: { items: [{ path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } }, { path: 'ip', fieldRef: { fieldPath: 'status.podIP' } }] } },
    {
      name: 'kube-api-access-x',
      projected: {
        defaultMode: 0o644,
        sources: [
          { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
          { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
          { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
        ],
      },
    },
    { name: 'scratch', emptyDir: {} },
    { name: 'host', hostPath: { path: '/var/run/x', type: 'DirectoryOrCreate' } },
  ]);
  const plan = planVolumes(i);
  const byName = Object.fromEntries(plan.map((p) => [p.name, p]));
  assert.equal(byName.all!.hostPath, '/pods/u-1/volumes/kubernetes.io~configmap/all');
  assert.deepEqual(byName.all!.files, [
    { path: 'a', data: 'A', mode: 0o644 },
    { path: 'b', data: 'B', mode: 0o644 },
  ]);
  assert.deepEqual(byName.some!.files, [{ path: 'sub/b.txt', data: 'B', mode: 0o600 }]);
  assert.deepEqual(byName.sec!.files, [{ path: 'pw', data: 'hunter2', mode: 0o400 }]);
  assert.deepEqual(byName.info!.files, [
    { path: 'labels', data: 'app="web"', mode: 0o644 },
    { path: 'ip', data: '10.244.1.2', mode: 0o644 },
  ]);
  // kube-root-ca.crt not published yet: the kubelet's CA stands in.
  assert.deepEqual(byName['kube-api-access-x']!.files, [
    { path: 'token', data: 'jwt', mode: 0o644 },
    { path: 'ca.crt', data: 'CA-PEM', mode: 0o644 },
    { path: 'namespace', data: 'shop', mode: 0o644 },
  ]);
  assert.deepEqual(i.tokens, [{ aud: undefined, exp: 3607 }]);
  assert.equal(byName['kube-api-access-x']!.hostPath, '/pods/u-1/volumes/kubernetes.io~projected/kube-api-access-x');
  assert.deepEqual(byName.scratch, { name: 'scratch', kind: 'emptyDir', hostPath: '/pods/u-1/volumes/kubernetes.io~empty-dir/scratch' });
  assert.deepEqual(byName.host, { name: 'host', kind: 'hostPath', hostPath: '/nodes/n1/rootfs/var/run/x', hostPathType: 'DirectoryOrCreate', nodePath: '/var/run/x', nodeFsRoot: '/nodes/n1/rootfs' });
});

test('missing objects and keys fail with the FailedMount message; optional ones are skipped', () => {
  const cases: [object, RegExp][] = [
    [{ name: 'v', configMap: { name: 'absent' } }, /^MountVolume\.SetUp failed for volume "v" : configmap "absent" not found$/],
    [{ name: 'v', secret: { secretName: 'absent' } }, /secret "absent" not found/],
    [{ name: 'v', configMap: { name: 'cfg', items: [{ key: 'zz', path: 'z' }] } }, /configmap references non-existent config key: zz/],
    [{ name: 'v', configMap: { name: 'cfg', items: [{ key: 'a', path: '../escape' }] } }, /invalid path/],
    [{ name: 'v', persistentVolumeClaim: { claimName: 'x' } }, /volume type persistentVolumeClaim is not supported/],
  ];
  for (const [v, re] of cases) assert.throws(() => planVolumes(input([v])), (e: Error) => e instanceof VolumeError && re.test(e.message), String(re));
  assert.deepEqual(planVolumes(input([{ name: 'v', configMap: { name: 'absent', optional: true } }]))[0]!.files, []);
});

test('materialising writes files with their modes, rewrites changes and removes vanished keys', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'kubelet-vol-'));
  try {
    const i = input([{ name: 'cfg', configMap: { name: 'cfg', items: [{ key: 'a', path: 'a' }, { key: 'b', path: 'deep/b', mode: 0o600 }] } }, { name: 'tmp', emptyDir: {} }], dir);
    await materializeVolumes(planVolumes(i));
    const vol = join(dir, 'volumes', 'kubernetes.io~configmap', 'cfg');
    assert.equal(await readFile(join(vol, 'a'), 'utf8'), 'A');
    assert.equal((await stat(join(vol, 'deep/b'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(dir, 'volumes', 'kubernetes.io~empty-dir', 'tmp'))).mode & 0o777, 0o777);
    const j = input([{ name: 'cfg', configMap: { name: 'cfg', items: [{ key: 'b', path: 'a' }] } }], dir);
    await materializeVolumes(planVolumes(j));
    assert.equal(await readFile(join(vol, 'a'), 'utf8'), 'B');
    assert.deepEqual(await readdir(join(vol, 'deep')), []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('hostPath plans map the node path into the node fs root; `..` cannot climb out', () => {
  const cases: [string, string][] = [
    ['/etc/cni/net.d', '/r/etc/cni/net.d'],
    ['/run/xtables.lock', '/r/run/xtables.lock'],
    ['/', '/r'],
    ['/../../etc', '/r/etc'],
    ['/var/../../../../opt/cni/bin/', '/r/opt/cni/bin'],
    ['relative/x', '/r/relative/x'],
  ];
  for (const [path, want] of cases) {
    const [v] = planVolumes(input([{ name: 'h', hostPath: { path } }], '/pods/u-1', '/r'));
    assert.equal(v!.hostPath, want, path);
    assert.equal(v!.nodePath, path);
  }
  assert.throws(() => planVolumes(input([{ name: 'h', hostPath: { path: '' } }])), /hostPath\.path is empty/);
});

test('materialising hostPath volumes: types are checked and created in the node fs, symlinks stay inside it', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'kubelet-hostpath-'));
  const root = join(dir, 'rootfs');
  const outside = join(dir, 'outside');
  try {
    await mkdir(join(root, 'run'), { recursive: true });
    await symlink('../run', join(root, 'var-run-link'));
    await mkdir(join(root, 'var'), { recursive: true });
    await symlink('../run', join(root, 'var', 'run'));
    // What a pod could leave in a hostPath it writes: links pointing at the machine's files.
    await symlink(outside, join(root, 'abs-escape'));
    await symlink('../../outside', join(root, 'run', 'rel-escape'));
    await writeFile(join(root, 'run', 'f'), 'x');
    const sock = createServer();
    await new Promise<void>((res) => sock.listen(join(root, 'run', 's.sock'), res));
    try {
      const vols = [
        { name: 'doc', hostPath: { path: '/var/run/ambit', type: 'DirectoryOrCreate' } },
        { name: 'foc', hostPath: { path: '/run/xtables.lock', type: 'FileOrCreate' } },
        { name: 'dir', hostPath: { path: '/var/run', type: 'Directory' } },
        { name: 'file', hostPath: { path: '/var/run/f', type: 'File' } },
        { name: 'sock', hostPath: { path: '/var/run/s.sock', type: 'Socket' } },
        { name: 'any', hostPath: { path: '/opt/cni/bin' } },
        { name: 'abs', hostPath: { path: '/abs-escape/cni', type: 'DirectoryOrCreate' } },
        { name: 'rel', hostPath: { path: '/run/rel-escape/x', type: 'FileOrCreate' } },
      ];
      const out = await materializeVolumes(planVolumes(input(vols, join(dir, 'pod'), root)));
      const at = Object.fromEntries(out.map((v) => [v.name, v.hostPath]));
      assert.equal(at.doc, join(root, 'run/ambit'), '/var/run is the node\'s ../run');
      assert.ok((await stat(at.doc!)).isDirectory());
      assert.equal(at.foc, join(root, 'run/xtables.lock'));
      assert.ok((await stat(at.foc!)).isFile());
      assert.equal(at.dir, join(root, 'run'));
      assert.equal(at.file, join(root, 'run/f'));
      assert.equal(at.sock, join(root, 'run/s.sock'));
      assert.equal(at.any, join(root, 'opt/cni/bin'), "'' checks nothing and leaves creating to the runtime");
      assert.equal(existsSync(at.any!), false);
      // An absolute link is taken from the node's root, a relative one stops at it.
      assert.equal(at.abs, join(root, dir, 'outside/cni'));
      assert.equal(at.rel, join(root, 'outside/x'));
      assert.equal(existsSync(outside), false, 'nothing was created outside the node fs');
      for (const v of out) assert.ok(v.hostPath.startsWith(`${root}/`), v.name);
    } finally {
      sock.close();
    }

    const fails: [object, RegExp][] = [
      [{ name: 'v', hostPath: { path: '/nope', type: 'Directory' } }, /hostPath type check failed: \/nope is not a directory/],
      [{ name: 'v', hostPath: { path: '/run/f', type: 'Directory' } }, /is not a directory/],
      [{ name: 'v', hostPath: { path: '/run', type: 'File' } }, /\/run is not a file/],
      [{ name: 'v', hostPath: { path: '/run/f', type: 'Socket' } }, /is not a socket file/],
      // /etc/hostname exists on the machine but not in the node fs.
      [{ name: 'v', hostPath: { path: '/etc/hostname', type: 'File' } }, /\/etc\/hostname is not a file/],
    ];
    for (const [v, re] of fails) {
      await assert.rejects(materializeVolumes(planVolumes(input([v], join(dir, 'pod'), root))), (e: Error) => e instanceof VolumeError && re.test(e.message), String(re));
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
