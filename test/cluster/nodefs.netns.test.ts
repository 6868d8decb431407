// Root test: every local-cluster node has its own filesystem root for hostPath volumes
// (nodefs.ts). A hostNetwork pod's hostPath /etc/cni/net.d is the node's CNI conf dir (with the
// node's conflist), a file written there lands in the node's root and not in this machine's
// /etc/cni/net.d, and two nodes do not see each other's files; /run/xtables.lock is the node's
// lock (iptables-legacy in a pod waits for it); a hostPath /var/run/netns mounted with
// HostToContainer propagation in a pod started first shows the netns of a pod started later,
// and nsenter into it sees that pod's IP; the agent's tools are in the base image; `down` leaves
// no node root and no mount behind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { Kubectl, waitUntil } from '../helpers/kubectl.js';
import { LocalCluster } from './cluster.js';
import { BASE_IMAGE } from './runtime/images.js';
import { mountsUnder } from './runtime/proc.js';

const isRoot = process.getuid?.() === 0;
const rootOnly = { skip: isRoot ? false : 'needs root (network namespaces, containerd); CI runs as root' } as const;
const NAME = `nfs${process.pid % 100000}`;
const NS = 'nodefs';
/** A file name no one else uses, so "absent on the host" means something. */
const MARK = `ambit-nodefs-${process.pid}.conf`;

let cluster: LocalCluster | undefined;
let kubectl: Kubectl | undefined;

type Vol = { name: string; path: string; type?: string; mountPath: string; propagation?: string };

/** A privileged hostNetwork pod (as the agent DaemonSet's) with hostPath volumes, pinned to `node`. */
function hostPod(name: string, node: string, vols: Vol[]): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS },
    spec: {
      nodeName: node,
      hostNetwork: true,
      terminationGracePeriodSeconds: 1,
      volumes: vols.map((v) => ({ name: v.name, hostPath: { path: v.path, ...(v.type ? { type: v.type } : {}) } })),
      containers: [
        {
          name: 'c',
          image: BASE_IMAGE,
          command: ['sleep', 'infinity'],
          securityContext: { privileged: true },
          volumeMounts: vols.map((v) => ({ name: v.name, mountPath: v.mountPath, ...(v.propagation ? { mountPropagation: v.propagation } : {}) })),
        },
      ],
    },
  };
}

const plainPod = (name: string, node: string): object => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: NS },
  spec: { nodeName: node, terminationGracePeriodSeconds: 1, containers: [{ name: 'c', image: BASE_IMAGE, command: ['sleep', 'infinity'] }] },
});

async function apply(...objs: object[]): Promise<void> {
  const r = await kubectl!.applyText(objs.map((o) => JSON.stringify(o)).join('\n---\n'));
  assert.equal(r.code, 0, r.stderr);
}
async function waitReady(...pods: string[]): Promise<void> {
  await kubectl!.ok(['wait', '-n', NS, '--for=condition=Ready', ...pods.map((p) => `pod/${p}`), '--timeout=90s'], { timeoutMs: 100_000 });
}
const sh = (pod: string, script: string): Promise<string> => kubectl!.ok(['exec', '-n', NS, pod, '--', 'sh', '-c', script], { timeoutMs: 30_000 });
/** Like sh, but resolves the exit code and output instead of failing on non-zero. */
async function shCode(pod: string, script: string): Promise<{ code: number; out: string }> {
  const r = await kubectl!.run(['exec', '-n', NS, pod, '--', 'sh', '-c', script], { timeoutMs: 30_000 });
  return { code: r.code, out: r.stdout + r.stderr };
}

before(async () => {
  if (!isRoot) return;
  assert.equal(existsSync(`/etc/cni/net.d/${MARK}`), false, 'test precondition: the marker is not on the host');
  cluster = await LocalCluster.up({ name: NAME, nodes: 2, images: async () => [] });
  kubectl = new Kubectl(cluster.server);
  await apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
  await waitUntil(() => cluster!.server.registry.clientFor().get('v1/serviceaccounts', NS, 'default'), 20_000, () => 'the default service account');
}, { timeout: 20 * 60_000 });

after(async () => {
  kubectl?.cleanup();
  await cluster?.down();
});

test('hostPath volumes are the node\'s own files: the node\'s CNI dir, not the host\'s, and not the other node\'s', rootOnly, async () => {
  const c = cluster!;
  const cni: Vol[] = [{ name: 'cni', path: '/etc/cni/net.d', type: 'DirectoryOrCreate', mountPath: '/host/etc/cni/net.d' }];
  await apply(hostPod('writer-1', 'node-1', cni), hostPod('writer-2', 'node-2', cni));
  await waitReady('writer-1', 'writer-2');

  // The mount shows the conflist containerd of that node reads.
  assert.match(await sh('writer-1', 'ls /host/etc/cni/net.d'), /10-ambit\.conflist/);
  await sh('writer-1', `echo node-1 > /host/etc/cni/net.d/${MARK}`);
  await sh('writer-2', `echo node-2 > /host/etc/cni/net.d/${MARK}-2`);

  const n1 = c.node('node-1');
  const n2 = c.node('node-2');
  assert.equal(n1.fs.cniConfDir, `${n1.root}/etc/cni/net.d`);
  assert.equal(n1.containerd.cniConfDir, n1.fs.cniConfDir, 'containerd reads the node fs conf dir');
  assert.equal(readFileSync(`${n1.fs.cniConfDir}/${MARK}`, 'utf8'), 'node-1\n');
  assert.equal(readFileSync(`${n2.fs.cniConfDir}/${MARK}-2`, 'utf8'), 'node-2\n');
  assert.equal(existsSync(`${n2.fs.cniConfDir}/${MARK}`), false, 'node-2 does not see node-1\'s file');
  assert.equal(existsSync(`${n1.fs.cniConfDir}/${MARK}-2`), false, 'node-1 does not see node-2\'s file');
  assert.equal((await shCode('writer-2', `test -e /host/etc/cni/net.d/${MARK}`)).code, 1);
  assert.equal(existsSync(`/etc/cni/net.d/${MARK}`), false, 'nothing written to the machine\'s /etc/cni/net.d');
  assert.equal(existsSync(`/etc/cni/net.d/${MARK}-2`), false);
  await kubectl!.ok(['delete', '-n', NS, 'pod/writer-1', 'pod/writer-2', '--wait=true', '--timeout=60s'], { timeoutMs: 70_000 });
});

test('/run/xtables.lock is the node\'s lock: iptables-legacy in a pod waits while the node\'s lock is held', rootOnly, async () => {
  const n1 = cluster!.node('node-1');
  await apply(hostPod('locker', 'node-1', [{ name: 'lock', path: '/run/xtables.lock', type: 'FileOrCreate', mountPath: '/run/xtables.lock' }]));
  await waitReady('locker');
  assert.equal((await shCode('locker', 'iptables-legacy -w 2 -t filter -S OUTPUT >/dev/null')).code, 0, 'free lock: iptables runs');
  // Hold the node's lock file from the host, as kube-proxy's iptables-restore would.
  const holder: ChildProcess = spawn('flock', [n1.fs.xtablesLock, 'sleep', '20'], { stdio: 'ignore' });
  try {
    await waitUntil(() => (readFileSync('/proc/locks', 'utf8').includes(`:${statSync(n1.fs.xtablesLock).ino} `) ? true : undefined), 5_000, () => 'flock to hold the lock');
    const held = await shCode('locker', 'iptables-legacy -w 1 -t filter -S OUTPUT');
    assert.notEqual(held.code, 0);
    assert.match(held.out, /holding the xtables lock/);
  } finally {
    holder.kill('SIGKILL');
  }
  await kubectl!.ok(['delete', '-n', NS, 'pod/locker', '--wait=true', '--timeout=60s'], { timeoutMs: 70_000 });
});

test('a HostToContainer /var/run/netns mount shows the netns of pods started later, and nsenter sees their IP', rootOnly, async () => {
  const n1 = cluster!.node('node-1');
  await apply(hostPod('watcher', 'node-1', [{ name: 'netns', path: '/var/run/netns', type: 'DirectoryOrCreate', mountPath: '/var/run/netns', propagation: 'HostToContainer' }]));
  await waitReady('watcher');
  const before = (await sh('watcher', 'ls /var/run/netns')).split('\n').filter(Boolean);
  assert.deepEqual(before.sort(), readdirSync(n1.fs.netnsDir).sort(), 'the mount is the node\'s /run/netns');

  await apply(plainPod('late', 'node-1'));
  await waitReady('late');
  const podIp = (await kubectl!.ok(['get', 'pod', '-n', NS, 'late', '-o', 'jsonpath={.status.podIP}'])).trim();
  assert.match(podIp, /^10\.244\.1\.\d+$/);
  const fresh = (await sh('watcher', 'ls /var/run/netns')).split('\n').filter((f) => f && !before.includes(f));
  assert.ok(fresh.length >= 1, 'the new pod\'s netns file appeared in the running container');
  const addrs = await Promise.all(fresh.map((f) => sh('watcher', `nsenter --net=/var/run/netns/${f} ip -o -4 addr show`)));
  assert.ok(addrs.some((a) => a.includes(` ${podIp}/`)), `nsenter into ${fresh.join(', ')} shows ${podIp}:\n${addrs.join('\n')}`);
});

test('the base image has the agent\'s tools: iptables (legacy, nft), nft, ip, nsenter', rootOnly, async () => {
  const out = await sh('watcher', 'iptables-legacy -V && iptables-nft -V && ip6tables-legacy -V && nft -v && ip -V && nsenter -V');
  assert.match(out, /iptables v1\.8\.\d+ \(legacy\)/);
  assert.match(out, /iptables v1\.8\.\d+ \(nf_tables\)/);
  assert.match(out, /nftables v\d/);
  assert.match(out, /iproute2/);
  assert.match(out, /nsenter from util-linux/);
});

test('down removes the node roots and every mount in them', rootOnly, async () => {
  const c = cluster!;
  const roots = c.nodes.map((n) => n.root);
  kubectl!.cleanup();
  kubectl = undefined;
  await c.down();
  cluster = undefined;
  for (const r of roots) assert.equal(existsSync(r), false, r);
  assert.deepEqual(await mountsUnder(c.dir), []);
  assert.equal(existsSync(c.dir), false);
  assert.equal(existsSync(`/etc/cni/net.d/${MARK}`), false);
});
