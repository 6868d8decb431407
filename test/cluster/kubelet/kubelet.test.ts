// Root integration test of the kubelet and the scheduler on one real node: a network namespace we
// create, a containerd inside it (its CNI chain extended by a test plugin that fails ADD for pods
// named cni-fail-*), an in-process API test server, our Kubelet and Scheduler, and the real kubectl
// as the judge: pods run with IPs from the node CIDR, env/configMap volumes and exec/logs work,
// probes gate readiness and endpoints, a missing image and a failing CNI ADD surface as kubectl
// shows them, capabilities are exactly what the manifest grants, deletion is graceful.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import YAML from 'yaml';
import { ApiServer } from '../apiserver/server.js';
import type { KObject } from '../apiserver/types.js';
import { cleanupHostLeftovers, startContainerd, stopContainerd, type ContainerdInstance } from '../runtime/containerd.js';
import { CriClient } from '../runtime/cri.js';
import { BASE_IMAGE, ensureRuntimeImages, importImage } from '../runtime/images.js';
import { run, waitFor } from '../runtime/proc.js';
import { Kubectl } from '../../helpers/kubectl.js';
import { Scheduler } from '../scheduler.js';
import { Kubelet } from './index.js';

const isRoot = process.getuid?.() === 0;
const rootOnly = { skip: isRoot ? false : 'needs root (network namespaces, containerd); CI runs as root' } as const;
const NODE = 'node-1';
const NETNS = `ambit-kt-${process.pid}`;
const DIR = `/var/lib/ambit-kubelet-test-${process.pid}`;
const POD_CIDR = '10.244.1.0/24';
const NODE_IP = '192.168.252.1';

let inst: ContainerdInstance | undefined;
let cri: CriClient | undefined;
let server: ApiServer | undefined;
let kubelet: Kubelet | undefined;
let scheduler: Scheduler | undefined;
let kubectl: Kubectl | undefined;
const timings: Record<string, number> = {};
const logLines: string[] = [];

/** A chained CNI plugin that passes prevResult through, except that ADD fails for pods named cni-fail-*. */
const FAIL_PLUGIN = `
const chunks = [];
process.stdin.on('data', (d) => chunks.push(d));
process.stdin.on('end', () => {
  const conf = JSON.parse(Buffer.concat(chunks).toString() || '{}');
  const cmd = process.env.CNI_COMMAND;
  if (cmd === 'VERSION') { process.stdout.write(JSON.stringify({ cniVersion: '1.0.0', supportedVersions: ['0.4.0', '1.0.0'] })); return; }
  if (cmd !== 'ADD') return;
  if (/K8S_POD_NAME=cni-fail-/.test(process.env.CNI_ARGS || '')) {
    process.stdout.write(JSON.stringify({ cniVersion: conf.cniVersion, code: 999, msg: 'injected failure for the kubelet test' }));
    process.exit(1);
  }
  process.stdout.write(JSON.stringify(conf.prevResult));
});
`;

const SERVER_JS = `
const http = require('node:http');
http.createServer((req, res) => {
  if (req.url === '/healthz') return res.end('ok');
  res.statusCode = req.url === '/' ? 200 : 404;
  res.end(JSON.stringify({ pod: process.env.POD_NAME, ip: process.env.POD_IP }));
}).listen(8080, () => console.log('listening on 8080'));
process.on('SIGTERM', () => { console.log('got SIGTERM'); setTimeout(() => process.exit(0), 300); });
`;

async function createNode(): Promise<void> {
  await run(['ip', 'netns', 'add', NETNS]);
  await run(['ip', '-n', NETNS, 'link', 'set', 'lo', 'up']);
  // The node's own address, on one end of a veth pair kept inside the node netns.
  await run(['ip', '-n', NETNS, 'link', 'add', 'ul0', 'type', 'veth', 'peer', 'name', 'ul1']);
  await run(['ip', '-n', NETNS, 'link', 'set', 'ul1', 'up']);
  await run(['ip', '-n', NETNS, 'addr', 'add', `${NODE_IP}/24`, 'dev', 'ul0']);
  await run(['ip', '-n', NETNS, 'link', 'set', 'ul0', 'up']);
}

function apply(manifest: object | object[]): Promise<string> {
  const docs = (Array.isArray(manifest) ? manifest : [manifest]).map((m) => YAML.stringify(m)).join('---\n');
  return kubectl!.applyText(docs).then((r) => {
    if (r.code !== 0) throw new Error(`kubectl apply failed: ${r.stderr}`);
    return r.stdout;
  });
}

function getPod(name: string): KObject | undefined {
  return server!.registry.clientFor().get('v1/pods', 'default', name);
}

function podStatus(name: string): Record<string, any> {
  return (getPod(name)?.status ?? {}) as Record<string, any>;
}

function eventsFor(name: string): Array<Record<string, any>> {
  return server!.registry
    .clientFor()
    .list('v1/events', { namespace: 'default' })
    .items.filter((e) => (e.involvedObject as Record<string, any>)?.name === name) as Array<Record<string, any>>;
}

function pod(name: string, spec: Record<string, unknown>, labels: Record<string, string> = {}): object {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, labels: { test: name, ...labels } }, spec: { terminationGracePeriodSeconds: 5, ...spec } };
}

before(async () => {
  if (!isRoot) return;
  const t = Date.now();
  const images = await ensureRuntimeImages();
  await createNode();
  await mkdir(DIR, { recursive: true });
  const plugin = join(DIR, 'fail-cni');
  await writeFile(plugin, `#!${process.execPath}\n${FAIL_PLUGIN}`);
  await chmod(plugin, 0o755);
  inst = await startContainerd({
    name: NODE,
    netns: NETNS,
    dir: join(DIR, 'containerd'),
    podCidr: POD_CIDR,
    sandboxImage: images.pause.name,
    extraCniPlugins: { 'fail-cni': plugin },
    extraCniChain: [{ type: 'fail-cni' }],
  });
  await Promise.all([images.pause, images.base].map((img) => importImage(inst!.socket, img.archive, inst!.snapshotter)));
  cri = new CriClient(inst.socket);
  server = await ApiServer.start();
  kubelet = new Kubelet({
    nodeName: NODE,
    nodeIp: NODE_IP,
    podCidr: POD_CIDR,
    netnsPath: `/run/netns/${NETNS}`,
    containerd: inst,
    cri,
    api: server.registry.clientFor(),
    issueToken: (ns, sa, spec) => server!.issueServiceAccountToken(ns, sa, spec),
    caPem: server.caPem,
    clusterDns: '10.96.0.10',
    clusterDomain: 'cluster.local',
    dataDir: join(DIR, 'kubelet'),
    nodeFsRoot: join(DIR, 'rootfs'),
    syncRetryMs: 1_000,
    log: (s) => logLines.push(s),
  });
  await kubelet.start();
  scheduler = new Scheduler({ api: server.registry.clientFor(), bind: (ns, p, n) => server!.registry.bind(ns, p, n), retryMs: 1_000 });
  scheduler.start();
  server.nodeConnection = { logs: (p, q, req, res) => kubelet!.logs(p, q, req, res), exec: (p, q, req, sock, head) => kubelet!.exec(p, q, req, sock, head) };
  kubectl = new Kubectl(server);
  timings.setupMs = Date.now() - t;
}, { timeout: 20 * 60_000 });

after(async () => {
  if (process.env.KUBELET_TEST_LOG && server) {
    const api = server.registry.clientFor();
    for (const p of api.list('v1/pods').items) {
      console.log(`# pod ${p.metadata.name}: ${JSON.stringify(p.status)}`);
      const logs = await kubectl?.run(['logs', p.metadata.name!, '--all-containers', '--tail=20']).catch(() => undefined);
      console.log(`# logs of ${p.metadata.name}: ${JSON.stringify(logs)}`);
    }
    for (const e of api.list('v1/events').items) console.log(`# event ${(e.involvedObject as any).name} ${e.reason} x${e.count}: ${e.message}`);
  }
  scheduler?.stop();
  await kubelet?.stop({ killPods: true }).catch(() => undefined);
  cri?.close();
  if (inst) await stopContainerd(inst).catch(() => undefined);
  await cleanupHostLeftovers().catch(() => undefined);
  await run(['ip', 'netns', 'del', NETNS]).catch(() => undefined);
  await rm(DIR, { recursive: true, force: true });
  kubectl?.cleanup();
  await server?.close();
  if (isRoot) {
    console.log(`# kubelet timings: ${JSON.stringify(timings)}`);
    if (process.env.KUBELET_TEST_LOG) console.log(logLines.join('\n'));
  }
});

test('the node registers Ready with its addresses, capacity, runtime version and a Lease', rootOnly, async () => {
  const out = await kubectl!.ok(['get', 'nodes', '-o', 'wide']);
  assert.match(out, new RegExp(`${NODE}\\s+Ready\\s+<none>\\s+\\S+\\s+v1\\.33\\.0-ambit\\s+${NODE_IP.replace(/\./g, '\\.')}`));
  assert.match(out, /containerd:\/\/1\./);
  const node = JSON.parse(await kubectl!.ok(['get', 'node', NODE, '-o', 'json']));
  assert.equal(node.spec.podCIDR, POD_CIDR);
  assert.equal(node.status.capacity.pods, '110');
  assert.deepEqual(node.status.addresses, [
    { type: 'InternalIP', address: NODE_IP },
    { type: 'Hostname', address: NODE },
  ]);
  const lease = JSON.parse(await kubectl!.ok(['get', 'lease', '-n', 'kube-node-lease', NODE, '-o', 'json']));
  assert.equal(lease.spec.holderIdentity, NODE);
});

test('a pod runs with an IP from the node CIDR; env, configMap volume, exec and logs work through kubectl', rootOnly, async () => {
  await apply([
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'web-config' }, data: { greeting: 'hello from configmap', MODE: 'test' } },
    pod('web', {
      containers: [
        {
          name: 'web',
          image: BASE_IMAGE,
          command: ['node', '-e', SERVER_JS],
          ports: [{ name: 'http', containerPort: 8080 }],
          env: [
            { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
            { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
            { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
            { name: 'GREETING', valueFrom: { configMapKeyRef: { name: 'web-config', key: 'greeting' } } },
            { name: 'COMPOSED', value: '$(POD_NAME)-on-$(NODE_NAME)' },
          ],
          envFrom: [{ configMapRef: { name: 'web-config' }, prefix: 'CM_' }],
          volumeMounts: [{ name: 'config', mountPath: '/etc/web' }],
          readinessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 1 },
        },
      ],
      volumes: [{ name: 'config', configMap: { name: 'web-config' } }],
    }),
  ]);
  const t = Date.now();
  await waitFor('web Running', () => (podStatus('web').phase === 'Running' ? true : undefined), 60_000, 20);
  timings.createToRunningMs = Date.now() - t;
  await kubectl!.ok(['wait', '--for=condition=Ready', 'pod/web', '--timeout=60s'], { timeoutMs: 70_000 });
  timings.createToReadyMs = Date.now() - t;

  const st = podStatus('web');
  assert.match(st.podIP, /^10\.244\.1\.\d+$/);
  assert.equal(st.hostIP, NODE_IP);
  const types = st.conditions.map((c: { type: string; status: string }) => `${c.type}=${c.status}`).sort();
  assert.deepEqual(types, ['ContainersReady=True', 'Initialized=True', 'PodReadyToStartContainers=True', 'PodScheduled=True', 'Ready=True']);
  const cs = st.containerStatuses[0];
  assert.equal(cs.ready, true);
  assert.equal(cs.started, true);
  assert.equal(cs.restartCount, 0);
  assert.match(cs.containerID, /^containerd:\/\/[0-9a-f]{64}$/);
  assert.match(cs.imageID, /^sha256:/);

  const env = await kubectl!.ok(['exec', 'web', '--', 'env']);
  assert.match(env, /^POD_NAME=web$/m);
  assert.match(env, new RegExp(`^POD_IP=${st.podIP.replace(/\./g, '\\.')}$`, 'm'));
  assert.match(env, /^GREETING=hello from configmap$/m);
  assert.match(env, /^COMPOSED=web-on-node-1$/m);
  assert.match(env, /^CM_MODE=test$/m);
  assert.match(env, /^KUBERNETES_SERVICE_HOST=10\.96\.0\.1$/m);
  assert.match(env, /^KUBERNETES_SERVICE_PORT=443$/m);
  assert.equal(await kubectl!.ok(['exec', 'web', '--', 'cat', '/etc/web/greeting']), 'hello from configmap');
  // The service-account token volume the API server injected: token, CA and namespace.
  const sa = await kubectl!.ok(['exec', 'web', '--', 'sh', '-c', 'ls /var/run/secrets/kubernetes.io/serviceaccount; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace']);
  assert.match(sa, /^ca\.crt\nnamespace\ntoken\n/);
  assert.match(sa, /default$/);
  const resolv = await kubectl!.ok(['exec', 'web', '--', 'cat', '/etc/resolv.conf']);
  assert.match(resolv, /nameserver 10\.96\.0\.10/);
  assert.match(resolv, /search default\.svc\.cluster\.local svc\.cluster\.local cluster\.local/);
  assert.match(resolv, /options ndots:5/);
  assert.match(await kubectl!.ok(['exec', 'web', '--', 'cat', '/etc/hosts']), new RegExp(`${st.podIP.replace(/\./g, '\\.')}\\tweb`));

  // Exit codes and stderr travel back as kubectl expects.
  const failing = await kubectl!.run(['exec', 'web', '--', 'sh', '-c', 'echo to-stderr >&2; exit 3']);
  assert.equal(failing.code, 3);
  assert.match(failing.stderr, /to-stderr/);
  assert.match(failing.stderr, /command terminated with exit code 3/);
  const interactive = await kubectl!.run(['exec', '-i', 'web', '--', 'cat'], { stdin: 'x' });
  assert.notEqual(interactive.code, 0);
  assert.match(interactive.stderr, /interactive exec/);

  // The node reaches the pod over the CNI bridge (what probes do).
  const body = await run(['ip', 'netns', 'exec', NETNS, 'curl', '-sS', '--max-time', '3', `http://${st.podIP}:8080/`]);
  assert.deepEqual(JSON.parse(body), { pod: 'web', ip: st.podIP });

  const wide = await kubectl!.ok(['get', 'pod', 'web', '-o', 'wide']);
  assert.match(wide, new RegExp(`web\\s+1/1\\s+Running\\s+0\\s+\\S+\\s+${st.podIP.replace(/\./g, '\\.')}\\s+${NODE}`));
  const described = await kubectl!.ok(['describe', 'pod', 'web']);
  assert.match(described, /Status:\s+Running/);
  assert.match(described, /Ready:\s+True/);
  assert.match(described, /Readiness:\s+http-get http:\/\/:http\/healthz/);
  assert.match(described, /Normal\s+Started\s+\S+\s+kubelet\s+Started container web/);

  assert.match(await kubectl!.ok(['logs', 'web']), /^listening on 8080\n$/);
  assert.match(await kubectl!.ok(['logs', 'web', '--timestamps']), /^\d{4}-\d\d-\d\dT\S+Z listening on 8080\n$/);
  assert.equal(await kubectl!.ok(['logs', 'web', '--tail=0']), '');
  const prev = await kubectl!.run(['logs', 'web', '--previous']);
  assert.match(prev.stderr, /previous terminated container "web" in pod "web" not found/);
});

test('kubectl logs -f streams new lines until the container exits', rootOnly, async () => {
  await apply(pod('ticker', { restartPolicy: 'Never', containers: [{ name: 'c', image: BASE_IMAGE, command: ['sh', '-c', 'for i in 1 2 3; do echo tick $i; sleep 1; done'] }] }));
  await waitFor('ticker started', () => (podStatus('ticker').containerStatuses?.[0]?.state?.running || podStatus('ticker').phase === 'Succeeded' ? true : undefined), 30_000, 20);
  const started = Date.now();
  const out = await kubectl!.ok(['logs', '-f', 'ticker'], { timeoutMs: 20_000 });
  assert.equal(out, 'tick 1\ntick 2\ntick 3\n');
  assert.ok(Date.now() - started >= 1000, 'follow waited for lines still to come');
  await waitFor('ticker Succeeded', () => (podStatus('ticker').phase === 'Succeeded' ? true : undefined), 15_000);
  const cs = podStatus('ticker').containerStatuses[0];
  assert.equal(cs.state.terminated.exitCode, 0);
  assert.equal(cs.state.terminated.reason, 'Completed');
});

test('a failing readiness probe keeps the pod NotReady and out of the Service endpoints', rootOnly, async () => {
  await apply([
    pod('unready', {
      containers: [{ name: 'web', image: BASE_IMAGE, command: ['node', '-e', SERVER_JS], readinessProbe: { httpGet: { path: '/not-there', port: 8080 }, periodSeconds: 1, failureThreshold: 1 } }],
    }, { app: 'probe-test' }),
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'probe-test' }, spec: { selector: { app: 'probe-test' }, ports: [{ port: 80, targetPort: 8080 }] } },
  ]);
  await waitFor('unready Running', () => (podStatus('unready').phase === 'Running' ? true : undefined), 60_000);
  // (The first probe may come before the server listens and fail with "connection refused".)
  const ev = await waitFor('an Unhealthy event for the 404', () => eventsFor('unready').find((e) => e.reason === 'Unhealthy' && /statuscode/.test(e.message)), 15_000);
  assert.equal(ev.message, 'Readiness probe failed: HTTP probe failed with statuscode: 404');
  assert.deepEqual(ev.source, { component: 'kubelet', host: NODE });
  const st = podStatus('unready');
  assert.equal(st.conditions.find((c: { type: string }) => c.type === 'Ready').status, 'False');
  assert.equal(st.containerStatuses[0].ready, false);
  const slices = await waitFor(
    'an EndpointSlice listing the pod as not ready',
    async () => {
      const list = JSON.parse(await kubectl!.ok(['get', 'endpointslices', '-l', 'kubernetes.io/service-name=probe-test', '-o', 'json']));
      const eps = list.items.flatMap((s: { endpoints?: unknown[] }) => s.endpoints ?? []);
      return eps.length ? eps : undefined;
    },
    20_000,
    200,
  );
  assert.equal(slices.length, 1);
  assert.equal(slices[0].conditions.ready, false);
  assert.deepEqual(slices[0].addresses, [st.podIP]);
});

test('a missing image shows ErrImagePull, then ImagePullBackOff with a clear message and events', rootOnly, async () => {
  await apply(pod('noimage', { containers: [{ name: 'c', image: 'localhost/does-not-exist:1' }] }));
  await waitFor('ErrImagePull', () => (podStatus('noimage').containerStatuses?.[0]?.state?.waiting?.reason === 'ErrImagePull' ? true : undefined), 30_000, 20);
  const msg = podStatus('noimage').containerStatuses[0].state.waiting.message;
  assert.match(msg, /image "localhost\/does-not-exist:1" is not present on node node-1/);
  await waitFor('ImagePullBackOff', () => (podStatus('noimage').containerStatuses?.[0]?.state?.waiting?.reason === 'ImagePullBackOff' ? true : undefined), 10_000, 50);
  const out = await kubectl!.ok(['get', 'pod', 'noimage']);
  assert.match(out, /noimage\s+0\/1\s+ImagePullBackOff/);
  const reasons = eventsFor('noimage').map((e) => e.reason);
  for (const r of ['Scheduled', 'Pulling', 'Failed', 'BackOff']) assert.ok(reasons.includes(r), `event ${r} in ${reasons}`);
  const logs = await kubectl!.run(['logs', 'noimage']);
  assert.match(logs.stderr, /is waiting to start: (trying and failing to pull image|image can't be pulled)/);
});

test('a hostNetwork pod can do what its added capability grants, and nothing more', rootOnly, async () => {
  const script = [
    'ip link add kt-a type veth peer name kt-b && echo link-ok',
    'mount -t tmpfs none /mnt 2>/dev/null && echo mount-ok || echo mount-denied',
    'grep CapEff /proc/self/status',
    'sleep infinity',
  ].join('; ');
  await apply([
    pod('netadmin', { hostNetwork: true, terminationGracePeriodSeconds: 1, containers: [{ name: 'c', image: BASE_IMAGE, command: ['sh', '-c', script], securityContext: { capabilities: { add: ['NET_ADMIN'] } } }] }),
    pod('plain', { hostNetwork: true, terminationGracePeriodSeconds: 1, containers: [{ name: 'c', image: BASE_IMAGE, command: ['sh', '-c', 'ip link add kt-c type veth peer name kt-d 2>&1 && echo link-ok || echo link-denied; sleep infinity'] }] }),
  ]);
  const out = await waitFor('netadmin output', async () => {
    const r = await kubectl!.run(['logs', 'netadmin']);
    return /CapEff/.test(r.stdout) ? r.stdout : undefined;
  }, 60_000, 200);
  assert.match(out, /^link-ok$/m);
  assert.match(out, /^mount-denied$/m);
  const capEff = BigInt(`0x${/CapEff:\s+([0-9a-f]+)/.exec(out)![1]}`);
  assert.equal((capEff >> 12n) & 1n, 1n, 'CAP_NET_ADMIN effective');
  assert.equal((capEff >> 21n) & 1n, 0n, 'no CAP_SYS_ADMIN');
  // The link was created in the node's netns (hostNetwork), not in a pod netns.
  assert.match(await run(['ip', '-n', NETNS, 'link', 'show', 'kt-a']), /kt-a/);
  assert.equal(podStatus('netadmin').podIP, NODE_IP);
  const plain = await waitFor('plain output', async () => {
    const r = await kubectl!.run(['logs', 'plain']);
    return /link-/.test(r.stdout) ? r.stdout : undefined;
  }, 60_000, 200);
  assert.match(plain, /link-denied/);
  await kubectl!.ok(['delete', 'pod', 'netadmin', 'plain', '--wait=true'], { timeoutMs: 30_000 });
  await run(['ip', '-n', NETNS, 'link', 'del', 'kt-a']).catch(() => undefined);
});

test('a failing CNI ADD becomes a FailedCreatePodSandBox event, is retried, and leaves other pods alone', rootOnly, async () => {
  await apply(pod('cni-fail-1', { containers: [{ name: 'c', image: BASE_IMAGE, command: ['sleep', 'infinity'] }] }));
  // Each attempt names its own sandbox id in the message, so every retry is an event of its own.
  const ev = await waitFor(
    'two FailedCreatePodSandBox attempts',
    () => {
      const failures = eventsFor('cni-fail-1').filter((e) => e.reason === 'FailedCreatePodSandBox');
      return failures.length >= 2 ? failures[0] : undefined;
    },
    30_000,
    100,
  );
  assert.equal(ev.type, 'Warning');
  assert.match(ev.message, /^Failed to create pod sandbox: .*injected failure for the kubelet test/);
  const out = await kubectl!.ok(['get', 'pod', 'cni-fail-1']);
  assert.match(out, /cni-fail-1\s+0\/1\s+ContainerCreating/);
  const web = podStatus('web');
  assert.equal(web.phase, 'Running');
  assert.equal(web.containerStatuses[0].ready, true);
  await kubectl!.ok(['delete', 'pod', 'cni-fail-1', '--wait=true'], { timeoutMs: 30_000 });
});

test('crashing containers restart with back-off; a failing liveness probe restarts the container', rootOnly, async () => {
  await apply([
    pod('crasher', { containers: [{ name: 'c', image: BASE_IMAGE, command: ['sh', '-c', 'echo boom; exit 2'] }] }),
    pod('live', {
      containers: [{ name: 'c', image: BASE_IMAGE, command: ['sh', '-c', 'touch /tmp/alive; sleep 2; rm /tmp/alive; sleep infinity'], livenessProbe: { exec: { command: ['cat', '/tmp/alive'] }, periodSeconds: 1, failureThreshold: 1 } }],
      terminationGracePeriodSeconds: 1,
    }),
  ]);
  await waitFor('CrashLoopBackOff', () => (podStatus('crasher').containerStatuses?.[0]?.state?.waiting?.reason === 'CrashLoopBackOff' ? true : undefined), 30_000, 50);
  const cs = podStatus('crasher').containerStatuses[0];
  assert.ok(cs.restartCount >= 1);
  assert.equal(cs.lastState.terminated.exitCode, 2);
  assert.equal(cs.lastState.terminated.reason, 'Error');
  assert.match(cs.state.waiting.message, /^back-off 10s restarting failed container=c pod=crasher_default\(/);
  assert.equal(podStatus('crasher').phase, 'Running');
  assert.match(await kubectl!.ok(['get', 'pod', 'crasher']), /crasher\s+0\/1\s+CrashLoopBackOff/);
  assert.equal(await kubectl!.ok(['logs', 'crasher']), 'boom\n');

  await waitFor('live restarted', () => (podStatus('live').containerStatuses?.[0]?.restartCount >= 1 ? true : undefined), 30_000, 100);
  const killing = eventsFor('live').find((e) => e.reason === 'Killing');
  assert.equal(killing?.message, 'Container c failed liveness probe, will be restarted');
  await kubectl!.ok(['delete', 'pod', 'crasher', 'live', '--wait=true'], { timeoutMs: 30_000 });
});

test('init containers run to completion in order before the app container', rootOnly, async () => {
  await apply(
    pod('inits', {
      initContainers: [
        { name: 'one', image: BASE_IMAGE, command: ['sh', '-c', 'echo one > /work/order'], volumeMounts: [{ name: 'work', mountPath: '/work' }] },
        { name: 'two', image: BASE_IMAGE, command: ['sh', '-c', 'echo two >> /work/order'], volumeMounts: [{ name: 'work', mountPath: '/work' }] },
      ],
      containers: [{ name: 'app', image: BASE_IMAGE, command: ['sh', '-c', 'cat /work/order; sleep infinity'], volumeMounts: [{ name: 'work', mountPath: '/work' }] }],
      volumes: [{ name: 'work', emptyDir: {} }],
      terminationGracePeriodSeconds: 1,
    }),
  );
  await waitFor('inits Running', () => (podStatus('inits').phase === 'Running' ? true : undefined), 60_000);
  const st = podStatus('inits');
  assert.deepEqual(st.initContainerStatuses.map((c: any) => c.state.terminated?.reason), ['Completed', 'Completed']);
  const out = await waitFor('app output', async () => (await kubectl!.ok(['logs', 'inits', '-c', 'app'])) || undefined, 10_000);
  assert.equal(out, 'one\ntwo\n');
  const noContainer = await kubectl!.run(['logs', 'inits', '-c', 'nope']);
  assert.match(noContainer.stderr, /container nope is not valid for pod inits/);
  await kubectl!.ok(['delete', 'pod', 'inits', '--wait=true'], { timeoutMs: 30_000 });
});

test('the scheduler holds a pod whose nodeSelector no node matches (FailedScheduling) and binds it once one does', rootOnly, async () => {
  await apply(pod('nowhere', { nodeSelector: { disk: 'ssd' }, containers: [{ name: 'c', image: BASE_IMAGE }] }));
  const ev = await waitFor('FailedScheduling', () => eventsFor('nowhere').find((e) => e.reason === 'FailedScheduling'), 10_000);
  assert.equal(ev.message, "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.");
  assert.match(await kubectl!.ok(['get', 'pod', 'nowhere']), /nowhere\s+0\/1\s+Pending/);
  await kubectl!.ok(['label', 'node', NODE, 'disk=ssd']);
  await waitFor('nowhere bound', () => (getPod('nowhere')?.spec as any)?.nodeName, 10_000);
  await kubectl!.ok(['delete', 'pod', 'nowhere', '--wait=true'], { timeoutMs: 30_000 });
  await kubectl!.ok(['label', 'node', NODE, 'disk-']);
});

test('twenty pods created at once all run, with distinct IPs, and go away together', rootOnly, async () => {
  const names = Array.from({ length: 20 }, (_, i) => `batch-${i}`);
  const t = Date.now();
  await apply(names.map((n) => pod(n, { terminationGracePeriodSeconds: 1, containers: [{ name: 'c', image: BASE_IMAGE, command: ['sleep', 'infinity'] }] }, { batch: 'twenty' })));
  await waitFor('all batch pods Running', () => (names.every((n) => podStatus(n).phase === 'Running') ? true : undefined), 120_000, 50);
  timings.twentyPodsRunningMs = Date.now() - t;
  const ips = new Set(names.map((n) => podStatus(n).podIP));
  assert.equal(ips.size, 20);
  const d = Date.now();
  await kubectl!.ok(['delete', 'pods', '-l', 'batch=twenty', '--wait=true'], { timeoutMs: 60_000 });
  timings.twentyPodsDeletedMs = Date.now() - d;
  for (const n of names) assert.equal(getPod(n), undefined);
});

test('deletion is graceful: SIGTERM, the container exits, the sandbox goes, then the pod object', rootOnly, async () => {
  const before = getPod('web')!;
  const uid = before.metadata.uid!;
  const t = Date.now();
  await kubectl!.ok(['delete', 'pod', 'web', '--wait=true'], { timeoutMs: 30_000 });
  timings.deleteMs = Date.now() - t;
  assert.ok(timings.deleteMs < 5_000, `the pod left within its grace period (${timings.deleteMs} ms)`);
  assert.equal(getPod('web'), undefined);
  assert.deepEqual(await cri!.listPodSandbox({ labelSelector: { 'io.kubernetes.pod.uid': uid } }), []);
  const killing = eventsFor('web').find((e) => e.reason === 'Killing');
  assert.equal(killing?.message, 'Stopping container web');
});
