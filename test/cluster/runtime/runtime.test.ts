// Root test of the local cluster's runtime layer, end to end on the real thing: build (or take
// from the cache) the base and pause images, start a containerd inside a network namespace we
// create, import the images, run a pod over the CRI (its IP comes from the bridge + host-local
// plugins that containerd invokes), serve HTTP from a `node -e` container, reach it by pod IP from
// the node and from a peer netns across an underlay link, exec in it, read its log, tear it all
// down and check that nothing is left: no mounts, processes, links, netns files or cgroups.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cleanupHostLeftovers, containerdPaths, isShimOf, shimSocketPath, nodeCgroupParent, renderCniConflist, startContainerd, stopContainerd, type ContainerdInstance } from './containerd.js';
import { CriClient, nanosToDate, type ContainerConfig, type PodSandboxConfig } from './cri.js';
import { BASE_IMAGE, PAUSE_IMAGE, ensureRuntimeImages, importImage, parseLdd } from './images.js';
import { listProcesses, mountsUnder, run, waitFor } from './proc.js';

const isRoot = process.getuid?.() === 0;
const NODE = `rt${process.pid}`;
const NETNS = `ambit-rt-test-${process.pid}`;
const PEER_NETNS = `ambit-rt-peer-${process.pid}`;
const DIR = `/var/lib/ambit-rt-test-${process.pid}`;
const POD_CIDR = '10.244.77.0/24';
const NODE_IP = '192.168.254.1';
const PEER_IP = '192.168.254.2';

// ---------- pure pieces (run everywhere) ----------

test('conflist chains bridge (own bridge, gateway, no masquerade, hairpin) + host-local on the node CIDR + portmap', () => {
  const conf = renderCniConflist({ bridgeName: 'ambr-n1', podCidr: '10.244.1.0/24', ipamDataDir: '/x/ipam', extraChain: [{ type: 'ambit-cni' }] }) as {
    plugins: Array<Record<string, unknown>>;
  };
  assert.deepEqual(
    conf.plugins.map((p) => p.type),
    ['bridge', 'portmap', 'ambit-cni'],
  );
  assert.equal(conf.plugins[0]!.bridge, 'ambr-n1');
  assert.equal(conf.plugins[0]!.isGateway, true);
  assert.equal(conf.plugins[0]!.ipMasq, false);
  assert.equal(conf.plugins[0]!.hairpinMode, true);
  assert.deepEqual((conf.plugins[0]!.ipam as { ranges: unknown }).ranges, [[{ subnet: '10.244.1.0/24' }]]);
  assert.equal((conf.plugins[0]!.ipam as { dataDir: string }).dataDir, '/x/ipam');
});

test('ldd output parsing yields the absolute library paths', () => {
  const out = `\tlinux-vdso.so.1 (0x00007ff)\n\tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x1)\n\t/lib64/ld-linux-x86-64.so.2 (0x2)\n`;
  assert.deepEqual(parseLdd(out), ['/lib/x86_64-linux-gnu/libstdc++.so.6', '/lib64/ld-linux-x86-64.so.2']);
});

test('shims are recognised by the socket they call back, not by name alone', () => {
  const argv = ['/usr/bin/containerd-shim-runc-v2', '-namespace', 'k8s.io', '-id', 'abc', '-address', '/n1/containerd.sock'];
  assert.equal(isShimOf(argv, '/n1/containerd.sock'), true);
  assert.equal(isShimOf(argv, '/n2/containerd.sock'), false);
});

// ---------- the real runtime (root) ----------

const SERVER = `
const http = require('node:http');
const os = require('node:os');
http.createServer((req, res) => {
  const peer = String(req.socket.remoteAddress).replace(/^::ffff:/, '');
  res.end(JSON.stringify({ pod: process.env.POD_NAME, host: os.hostname(), peer }));
}).listen(8080, () => console.log('listening on 8080'));
process.on('SIGTERM', () => { console.log('bye'); process.exit(0); });
`;

let inst: ContainerdInstance | undefined;
let cri: CriClient | undefined;
const timings: Record<string, number> = {};
const hostLinksBefore = new Set<string>();
const netnsBefore = new Set<string>();

async function hostLinks(): Promise<string[]> {
  return (await run(['ip', '-o', 'link', 'show'])).split('\n').filter(Boolean).map((l) => l.split(': ')[1]!.split('@')[0]!);
}

async function inNetns(ns: string, argv: string[], timeoutMs = 10_000): Promise<string> {
  return run(['ip', 'netns', 'exec', ns, ...argv], { timeoutMs });
}

async function createNetworks(): Promise<void> {
  await run(['ip', 'netns', 'add', NETNS]);
  await run(['ip', 'netns', 'add', PEER_NETNS]);
  for (const ns of [NETNS, PEER_NETNS]) await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
  // The underlay: one veth between the node and a peer (as another node would be), created in
  // the node netns so it never appears among the host's links.
  await run(['ip', '-n', NETNS, 'link', 'add', 'ul0', 'type', 'veth', 'peer', 'name', 'ul1', 'netns', PEER_NETNS]);
  await run(['ip', '-n', NETNS, 'addr', 'add', `${NODE_IP}/24`, 'dev', 'ul0']);
  await run(['ip', '-n', PEER_NETNS, 'addr', 'add', `${PEER_IP}/24`, 'dev', 'ul1']);
  await run(['ip', '-n', NETNS, 'link', 'set', 'ul0', 'up']);
  await run(['ip', '-n', PEER_NETNS, 'link', 'set', 'ul1', 'up']);
  await run(['ip', '-n', PEER_NETNS, 'route', 'add', POD_CIDR, 'via', NODE_IP]);
}

async function deleteNetworks(): Promise<void> {
  for (const ns of [NETNS, PEER_NETNS]) await run(['ip', 'netns', 'del', ns]).catch(() => undefined);
}

const rootOnly = { skip: isRoot ? false : 'needs root (network namespaces, containerd); CI runs as root' } as const;

before(async () => {
  if (!isRoot) return;
  for (const l of await hostLinks()) hostLinksBefore.add(l);
  for (const n of readdirSync('/run/netns', { withFileTypes: true })) netnsBefore.add(n.name);
  let t = Date.now();
  const images = await ensureRuntimeImages();
  timings.imagesMs = Date.now() - t;
  timings.imagesBuilt = Number(images.base.built || images.pause.built);
  await createNetworks();
  inst = await startContainerd({ name: NODE, netns: NETNS, dir: DIR, podCidr: POD_CIDR, sandboxImage: images.pause.name });
  timings.containerdStartMs = inst.startMs;
  t = Date.now();
  await Promise.all([images.pause, images.base].map((img) => importImage(inst!.socket, img.archive, inst!.snapshotter)));
  timings.importMs = Date.now() - t;
  cri = new CriClient(inst.socket);
}, { timeout: 20 * 60_000 });

after(async () => {
  cri?.close();
  if (inst) await stopContainerd(inst).catch(() => undefined);
  await deleteNetworks();
  if (isRoot) console.log(`# runtime timings: ${JSON.stringify(timings)}`);
});

test('containerd in the node netns serves the CRI with the imported images', rootOnly, async () => {
  const v = await cri!.version();
  assert.equal(v.runtimeName, 'containerd');
  assert.equal(v.runtimeApiVersion, 'v1');
  assert.equal(await cri!.isReady(), true);
  const pause = await cri!.imageStatus(PAUSE_IMAGE);
  const base = await cri!.imageStatus(BASE_IMAGE);
  assert.ok(pause && base, 'both images are known to the CRI');
  assert.deepEqual(base.repoTags, [BASE_IMAGE]);
  assert.equal(await cri!.imageStatus('localhost/not-there:1'), undefined);
  await assert.rejects(cri!.pullImage('localhost/not-there:1'), /PullImage/);
  // containerd itself runs in the node netns, not the host's.
  const [own, node] = await Promise.all([
    run(['readlink', `/proc/${inst!.pid}/ns/net`]),
    run(['stat', '-L', '-c', 'net:[%i]', `/run/netns/${NETNS}`]),
  ]);
  assert.equal(own.trim(), node.trim());
});

test('a pod gets its IP from the CNI chain, serves HTTP, execs and logs, then goes away cleanly', rootOnly, async () => {
  const uid = randomUUID();
  const logDirectory = join(DIR, 'pods', `default_web_${uid}`);
  const sandboxConfig: PodSandboxConfig = {
    metadata: { name: 'web', uid, namespace: 'default', attempt: 0 },
    hostname: 'web',
    logDirectory,
    labels: { 'io.kubernetes.pod.name': 'web', 'io.kubernetes.pod.namespace': 'default', 'io.kubernetes.pod.uid': uid },
    linux: {
      cgroupParent: nodeCgroupParent(NODE, uid),
      securityContext: { namespaceOptions: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } },
    },
  };
  let t = Date.now();
  const sandboxId = await cri!.runPodSandbox(sandboxConfig);
  timings.runPodSandboxMs = Date.now() - t;

  const sb = await cri!.podSandboxStatus(sandboxId, true);
  assert.equal(sb.status?.state, 'SANDBOX_READY');
  const podIp = sb.status?.network?.ip ?? '';
  assert.match(podIp, /^10\.244\.77\.\d+$/, 'pod IP from the node CIDR via host-local');
  assert.ok(nanosToDate(sb.status!.createdAt)!.getTime() > Date.now() - 60_000);
  // The netns mount lives under the node dir (netns_mounts_under_state_dir), not in /run/netns.
  const info = JSON.parse(sb.info.info ?? '{}') as { runtimeSpec?: { linux?: { namespaces?: Array<{ type: string; path?: string }> } } };
  const netnsPath = info.runtimeSpec?.linux?.namespaces?.find((n) => n.type === 'network')?.path ?? '';
  assert.ok(netnsPath.startsWith(DIR), `pod netns ${netnsPath} under ${DIR}`);

  const config: ContainerConfig = {
    metadata: { name: 'server', attempt: 0 },
    image: { image: BASE_IMAGE },
    command: ['node', '-e', SERVER],
    envs: [{ key: 'POD_NAME', value: 'web' }],
    logPath: 'server/0.log',
    labels: { 'io.kubernetes.container.name': 'server' },
  };
  t = Date.now();
  const containerId = await cri!.createContainer(sandboxId, config, sandboxConfig);
  await cri!.startContainer(containerId);
  timings.createStartContainerMs = Date.now() - t;
  const status = (await cri!.containerStatus(containerId)).status!;
  assert.equal(status.state, 'CONTAINER_RUNNING');

  // From the node netns, straight over the CNI bridge.
  const body = await waitFor(
    'the pod to answer HTTP on its IP',
    async () => inNetns(NETNS, ['curl', '-sS', '--max-time', '2', `http://${podIp}:8080/`]).catch(() => undefined),
    20_000,
    100,
  );
  timings.podReadyMs = Date.now() - t;
  const fromNode = JSON.parse(body) as { pod: string; host: string; peer: string };
  assert.equal(fromNode.pod, 'web');
  assert.equal(fromNode.host, 'web');
  assert.equal(fromNode.peer, '10.244.77.1', 'the node reaches the pod from the bridge gateway address');

  // From a peer across the underlay: routed by the node, no masquerade, so the pod sees the peer's address.
  const fromPeer = JSON.parse(await inNetns(PEER_NETNS, ['curl', '-sS', '--max-time', '5', `http://${podIp}:8080/`])) as { peer: string };
  assert.equal(fromPeer.peer, PEER_IP);

  const exec = await cri!.execSync(containerId, ['cat', '/etc/hostname'], 10);
  assert.equal(exec.exitCode, 0);
  assert.equal(exec.stdout.toString(), 'web\n');
  const failing = await cri!.execSync(containerId, ['sh', '-c', 'echo oops >&2; exit 3'], 10);
  assert.equal(failing.exitCode, 3);
  assert.equal(failing.stderr.toString(), 'oops\n');

  const url = await cri!.exec({ containerId, cmd: ['true'], stdout: true });
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/exec\//);

  assert.equal(status.logPath, join(logDirectory, 'server/0.log'));
  const log = await waitFor('the container log line', async () => {
    const text = await readFile(status.logPath, 'utf8').catch(() => '');
    return text.includes('listening on 8080') ? text : undefined;
  }, 10_000);
  // CRI log format: RFC3339Nano timestamp, stream, P(artial)/F(ull) tag, content.
  assert.match(log, /^\S+Z? stdout F listening on 8080$/m);

  assert.deepEqual((await cri!.listContainers({ podSandboxId: sandboxId })).map((c) => c.id), [containerId]);
  assert.deepEqual((await cri!.listPodSandbox({ labelSelector: { 'io.kubernetes.pod.uid': uid } })).map((s) => s.id), [sandboxId]);

  t = Date.now();
  await cri!.stopContainer(containerId, 5);
  timings.stopContainerMs = Date.now() - t;
  const stopped = (await cri!.containerStatus(containerId)).status!;
  assert.equal(stopped.state, 'CONTAINER_EXITED');
  assert.equal(stopped.exitCode, 0, 'SIGTERM handler ran');
  assert.match(await readFile(status.logPath, 'utf8'), /stdout F bye$/m);
  await cri!.removeContainer(containerId);
  await cri!.stopPodSandbox(sandboxId);
  await cri!.removePodSandbox(sandboxId);
  assert.deepEqual(await cri!.listPodSandbox(), []);
  assert.deepEqual(await cri!.listContainers(), []);
  // The IP went back to host-local (CNI DEL ran).
  const leases = readdirSync(join(containerdPaths(DIR).cniIpamDir, 'ambit-pod-network')).filter((f) => /^\d/.test(f));
  assert.deepEqual(leases, []);
});

test('stopping the node leaves no process, mount, link, netns file or cgroup behind', rootOnly, async () => {
  // Leave a pod running so stop() has to drain it.
  const uid = randomUUID();
  const sandboxConfig: PodSandboxConfig = {
    metadata: { name: 'left', uid, namespace: 'default' },
    hostname: 'left',
    logDirectory: join(DIR, 'pods', `default_left_${uid}`),
    linux: { cgroupParent: nodeCgroupParent(NODE, uid) },
  };
  const sandboxId = await cri!.runPodSandbox(sandboxConfig);
  const cid = await cri!.createContainer(
    sandboxId,
    { metadata: { name: 'sleeper' }, image: { image: BASE_IMAGE }, command: ['sleep', 'infinity'], logPath: 'sleeper/0.log' },
    sandboxConfig,
  );
  await cri!.startContainer(cid);
  const sock = inst!.socket;
  assert.ok((await listProcesses()).some((p) => isShimOf(p.argv, sock)), 'a shim runs for the pod');

  cri!.close();
  cri = undefined;
  const t = Date.now();
  await stopContainerd(inst!);
  timings.stopContainerdMs = Date.now() - t;
  const pid = inst!.pid;
  inst = undefined;

  const procs = await listProcesses();
  assert.equal(procs.some((p) => p.pid === pid), false, 'containerd exited');
  assert.deepEqual(procs.filter((p) => isShimOf(p.argv, sock) || p.argv.some((a) => a.includes(DIR))), []);
  assert.deepEqual(await mountsUnder(DIR), []);
  assert.equal(existsSync(DIR), false);
  assert.equal(existsSync(`/sys/fs/cgroup/memory/ambit/${NODE}`), false);
  // containerd and libcni also write at fixed host paths, keyed by sandbox id.
  assert.equal(existsSync(shimSocketPath(sock, 'k8s.io', sandboxId)), false, 'shim socket removed');
  const cniCache = existsSync('/var/lib/cni/results') ? readdirSync('/var/lib/cni/results') : [];
  assert.deepEqual(cniCache.filter((f) => f.includes(sandboxId)), []);
  await cleanupHostLeftovers(); // removes /run/containerd/s, /var/lib/cni, our cgroup root when empty

  await deleteNetworks();
  // Other suites may create their own namespaces meanwhile; judge only names this layer could make.
  const netnsAfter = readdirSync('/run/netns').filter((n) => !netnsBefore.has(n) && (n.startsWith('cni-') || n === NETNS || n === PEER_NETNS));
  assert.deepEqual(netnsAfter, []);
  const linksAfter = (await hostLinks()).filter((l) => !hostLinksBefore.has(l) && /^(ambr-|veth|ul[01]$)/.test(l));
  assert.deepEqual(linksAfter, []);
});
