// Root integration test of the local cluster: two nodes come up Ready (as the real kubectl sees
// them), a pod on each node talks to the other by pod IP across the underlay, by ClusterIP
// (kube-proxy rules) and by DNS name (cluster DNS via the pod's resolv.conf), and `down` leaves no
// namespace, link, process, mount, rule or state behind. The pure parts have their own tests
// (network, kubeproxy, dns).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { Kubectl, waitUntil } from '../helpers/kubectl.js';
import { LocalCluster } from './cluster.js';
import { existingClusterNetns } from './network.js';
import { BASE_IMAGE } from './runtime/images.js';
import { listProcesses, mountsUnder, run } from './runtime/proc.js';

const isRoot = process.getuid?.() === 0;
const rootOnly = { skip: isRoot ? false : 'needs root (network namespaces, containerd); CI runs as root' } as const;
const NAME = `ct${process.pid % 100000}`;
const NS = 'nettest';

// Reports the pod it runs in and the peer address it saw, on :8080.
const SERVER = `require('node:http').createServer((q, r) => r.end(JSON.stringify({ pod: process.env.POD_NAME, peer: String(q.socket.remoteAddress).replace(/^::ffff:/, '') }))).listen(8080)`;

const pod = (name: string, node: string) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: NS, labels: { app: name } },
  spec: {
    nodeName: node,
    terminationGracePeriodSeconds: 1,
    containers: [
      {
        name: 'server',
        image: BASE_IMAGE,
        command: ['node', '-e', SERVER],
        env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
        ports: [{ name: 'http', containerPort: 8080 }],
        readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1 },
      },
    ],
  },
});

const manifest = [
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } },
  pod('a', 'node-1'),
  pod('b', 'node-2'),
  { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: NS }, spec: { selector: { app: 'b' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] } },
]
  .map((o) => JSON.stringify(o))
  .join('\n---\n');

let cluster: LocalCluster | undefined;
let kubectl: Kubectl | undefined;
const hostBefore = { links: '', rules: '', sysctls: '' };

async function hostLinks(): Promise<string> {
  return (await run(['ip', '-o', 'link', 'show'])).split('\n').map((l) => l.split(': ')[1]?.split('@')[0] ?? '').filter((n) => n && !/^veth/.test(n)).sort().join(' ');
}
async function hostRules(): Promise<string> {
  const text = await run(['iptables-save']).catch(() => '');
  return text.split('\n').filter((l) => /KUBE-|ambit/.test(l)).join('\n');
}
function hostSysctls(): string {
  return ['net/ipv4/ip_forward', 'net/bridge/bridge-nf-call-iptables'].map((k) => `${k}=${readFileSync(`/proc/sys/${k}`, 'utf8').trim()}`).join(' ');
}

/** `kubectl exec` in a pod, bounded; resolves stdout. */
async function execIn(podName: string, cmd: string[]): Promise<string> {
  return kubectl!.ok(['exec', '-n', NS, podName, '--', ...cmd], { timeoutMs: 30_000 });
}
const curl = (from: string, url: string) => execIn(from, ['curl', '-sS', '--max-time', '5', url]).then((s) => JSON.parse(s) as { pod: string; peer: string });

before(async () => {
  if (!isRoot) return;
  hostBefore.links = await hostLinks();
  hostBefore.rules = await hostRules();
  hostBefore.sysctls = hostSysctls();
  cluster = await LocalCluster.up({ name: NAME, nodes: 2, images: async () => [] });
  console.log(`# up timings: ${JSON.stringify(cluster.timings)}`);
  kubectl = new Kubectl(cluster.server);
}, { timeout: 20 * 60_000 });

after(async () => {
  kubectl?.cleanup();
  await cluster?.down();
});

test('both nodes are Ready, as kubectl sees them', rootOnly, async () => {
  const out = await kubectl!.ok(['get', 'nodes', '-o', 'jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}']);
  assert.deepEqual(out.trim().split('\n').sort(), ['node-1 True', 'node-2 True']);
});

test('pods on two nodes reach each other by pod IP, ClusterIP and DNS name', rootOnly, async () => {
  const applied = await kubectl!.applyText(manifest);
  assert.equal(applied.code, 0, applied.stderr);
  await kubectl!.ok(['wait', '-n', NS, '--for=condition=Ready', 'pod/a', 'pod/b', '--timeout=90s'], { timeoutMs: 100_000 });
  const ips = JSON.parse(await kubectl!.ok(['get', 'pods', '-n', NS, '-o', 'json'])) as { items: Array<{ metadata: { name: string }; spec: { nodeName: string }; status: { podIP: string } }> };
  const ipOf = (n: string) => ips.items.find((p) => p.metadata.name === n)!.status.podIP;
  assert.match(ipOf('a'), /^10\.244\.1\.\d+$/, 'pod a has an IP from node-1\'s CIDR');
  assert.match(ipOf('b'), /^10\.244\.2\.\d+$/, 'pod b has an IP from node-2\'s CIDR');

  // By pod IP, across the underlay: routed, not masqueraded, so b sees a's own address.
  assert.deepEqual(await curl('a', `http://${ipOf('b')}:8080/`), { pod: 'b', peer: ipOf('a') });

  const clusterIp = (await kubectl!.ok(['get', 'svc', 'web', '-n', NS, '-o', 'jsonpath={.spec.clusterIP}'])).trim();
  assert.match(clusterIp, /^10\.96\.\d+\.\d+$/);
  // The endpoint controller and kube-proxy follow b's readiness; allow them a moment.
  const viaClusterIp = await waitUntil(() => curl('a', `http://${clusterIp}/`).catch(() => undefined), 30_000, () => `ClusterIP ${clusterIp} to answer`);
  assert.deepEqual(viaClusterIp, { pod: 'b', peer: ipOf('a') }, 'DNAT to b, source kept (pod to pod)');

  assert.equal((await curl('a', `http://web.${NS}.svc.cluster.local/`)).pod, 'b', 'fully qualified name');
  assert.equal((await curl('a', 'http://web/')).pod, 'b', 'short name via the resolv.conf search path');
  const srv = await execIn('a', ['dig', '+short', 'SRV', `_http._tcp.web.${NS}.svc.cluster.local`]);
  assert.equal(srv.trim(), `0 100 80 web.${NS}.svc.cluster.local.`);
  // The kubernetes Service reaches the API server on the underlay.
  const version = await execIn('a', ['curl', '-sS', '-k', '--max-time', '5', 'https://kubernetes.default.svc/version']);
  assert.equal((JSON.parse(version) as { major: string }).major, '1');
});

test('down leaves no namespace, link, process, mount, rule or state behind', rootOnly, async () => {
  const c = cluster!;
  const sockets = c.nodes.map((n) => n.containerd.socket);
  kubectl!.cleanup();
  kubectl = undefined;
  await c.down();
  cluster = undefined;

  assert.deepEqual(existingClusterNetns(NAME), []);
  const procs = await listProcesses();
  assert.deepEqual(procs.filter((p) => p.argv.some((a) => a.includes(c.dir) || sockets.includes(a))).map((p) => p.argv.join(' ')), []);
  assert.deepEqual(await mountsUnder(c.dir), []);
  assert.equal(existsSync(c.dir), false, 'state dir removed');
  assert.equal(await hostLinks(), hostBefore.links, 'host links unchanged');
  assert.equal(await hostRules(), hostBefore.rules, 'no rules in the host firewall');
  assert.equal(hostSysctls(), hostBefore.sysctls, 'host sysctls unchanged');
});
