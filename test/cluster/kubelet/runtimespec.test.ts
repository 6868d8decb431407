// Table tests of the Pod → CRI translation: DNS per dnsPolicy, hostname, namespaces, the sandbox
// config, the container security context, mounts and /etc/hosts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KObject } from '../apiserver/types.js';
import { containerConfig, containerMounts, containerSecurityContext, dnsConfigFor, hostsFile, namespaceOptions, parseCpu, parseQuantity, podHostname, sandboxConfig, type NodeContext } from './runtimespec.js';
import type { PodSpec } from './spec.js';

const node: NodeContext = { nodeName: 'node-1', nodeIp: '192.168.0.11', clusterDns: '10.96.0.10', clusterDomain: 'cluster.local', logRoot: '/data/logs' };
const pod = (spec: Partial<PodSpec>, name = 'web'): KObject => ({ metadata: { name, namespace: 'shop', uid: 'u-1', labels: { app: 'web' } }, spec: { containers: [{ name: 'c', image: 'img' }], ...spec } });

test('DNS config per dnsPolicy, merged with spec.dnsConfig', () => {
  const cluster = { servers: ['10.96.0.10'], searches: ['shop.svc.cluster.local', 'svc.cluster.local', 'cluster.local'], options: ['ndots:5'] };
  const cases: [string, Partial<PodSpec>, unknown][] = [
    ['default ClusterFirst', {}, cluster],
    ['hostNetwork falls back to the node', { hostNetwork: true }, undefined],
    ['ClusterFirstWithHostNet', { hostNetwork: true, dnsPolicy: 'ClusterFirstWithHostNet' }, cluster],
    ['Default', { dnsPolicy: 'Default' }, undefined],
    ['None + dnsConfig', { dnsPolicy: 'None', dnsConfig: { nameservers: ['1.1.1.1'], searches: ['x'], options: [{ name: 'edns0' }] } }, { servers: ['1.1.1.1'], searches: ['x'], options: ['edns0'] }],
    [
      'ClusterFirst + extra options override ndots',
      { dnsConfig: { options: [{ name: 'ndots', value: '2' }], searches: ['extra.local'] } },
      { ...cluster, searches: [...cluster.searches, 'extra.local'], options: ['ndots:2'] },
    ],
  ];
  for (const [what, spec, want] of cases) assert.deepEqual(dnsConfigFor(pod(spec), node), want, what);
});

test('hostname and namespaces', () => {
  assert.equal(podHostname(pod({}), node), 'web');
  assert.equal(podHostname(pod({ hostname: 'h1' }), node), 'h1');
  assert.equal(podHostname(pod({}, `${'a'.repeat(62)}-b`), node), 'a'.repeat(62));
  assert.deepEqual(namespaceOptions({ containers: [] }), { network: 'POD', pid: 'CONTAINER', ipc: 'POD' });
  assert.deepEqual(namespaceOptions({ containers: [], hostNetwork: true, hostPID: true, hostIPC: true }), { network: 'NODE', pid: 'NODE', ipc: 'NODE' });
  assert.deepEqual(namespaceOptions({ containers: [], shareProcessNamespace: true }), { network: 'POD', pid: 'POD', ipc: 'POD' });
});

test('the sandbox config: labels, log dir, ports, cgroup parent, privileged, no hostname for hostNetwork', () => {
  const cfg = sandboxConfig(pod({ containers: [{ name: 'c', ports: [{ containerPort: 80, hostPort: 8080 }], securityContext: { privileged: true } }] }), node, 2);
  assert.deepEqual(cfg.metadata, { name: 'web', uid: 'u-1', namespace: 'shop', attempt: 2 });
  assert.equal(cfg.hostname, 'web');
  assert.equal(cfg.logDirectory, '/data/logs/shop_web_u-1');
  assert.deepEqual(cfg.portMappings, [{ protocol: 'TCP', containerPort: 80, hostPort: 8080, hostIp: '' }]);
  assert.equal(cfg.labels!['io.kubernetes.pod.uid'], 'u-1');
  assert.equal(cfg.labels!.app, 'web');
  assert.equal(cfg.linux!.cgroupParent, '/ambit/node-1/podu-1');
  assert.equal(cfg.linux!.securityContext!.privileged, true);
  assert.equal('hostname' in sandboxConfig(pod({ hostNetwork: true }), node, 0), false);
});

test('security context: capabilities without CAP_, container overrides pod, escalation and seccomp', () => {
  const spec: PodSpec = { containers: [], securityContext: { runAsUser: 1000, runAsGroup: 3000, fsGroup: 2000 } };
  const sc = containerSecurityContext(spec, { name: 'c', securityContext: { capabilities: { add: ['NET_ADMIN', 'CAP_NET_RAW'], drop: ['all'] }, runAsUser: 0, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false } });
  assert.deepEqual(sc.capabilities, { addCapabilities: ['NET_ADMIN', 'NET_RAW'], dropCapabilities: ['ALL'] });
  assert.deepEqual(sc.runAsUser, { value: 0 });
  assert.deepEqual(sc.runAsGroup, { value: 3000 });
  assert.deepEqual(sc.supplementalGroups, [2000]);
  assert.equal(sc.readonlyRootfs, true);
  assert.equal(sc.noNewPrivs, true);
  assert.equal(sc.privileged, false);
  assert.equal(sc.seccomp, undefined, 'unset profile: Unconfined, the kubelet default');
  assert.deepEqual(containerSecurityContext({ containers: [], securityContext: { seccompProfile: { type: 'RuntimeDefault' } } }, { name: 'c' }).seccomp, { profileType: 'RuntimeDefault' });
});

test('mounts: volumes (files read-only), subPath, /etc/hosts and the termination log', () => {
  const volumes = [
    { name: 'cfg', kind: 'files' as const, hostPath: '/p/volumes/kubernetes.io~configmap/cfg' },
    { name: 'data', kind: 'emptyDir' as const, hostPath: '/p/volumes/kubernetes.io~empty-dir/data' },
  ];
  const mounts = containerMounts({ name: 'c', volumeMounts: [{ name: 'cfg', mountPath: '/etc/cfg' }, { name: 'data', mountPath: '/data', subPath: 'sub' }] }, volumes, { etcHosts: '/p/etc-hosts', terminationLog: '/p/tl' });
  assert.deepEqual(mounts, [
    { containerPath: '/etc/cfg', hostPath: '/p/volumes/kubernetes.io~configmap/cfg', readonly: true, propagation: 'PROPAGATION_PRIVATE' },
    { containerPath: '/data', hostPath: '/p/volumes/kubernetes.io~empty-dir/data/sub', readonly: false, propagation: 'PROPAGATION_PRIVATE' },
    { containerPath: '/etc/hosts', hostPath: '/p/etc-hosts' },
    { containerPath: '/dev/termination-log', hostPath: '/p/tl' },
  ]);
  assert.throws(() => containerMounts({ name: 'c', volumeMounts: [{ name: 'nope', mountPath: '/x' }] }, volumes, {}), /volume "nope" is not defined/);
});

test('container config: attempt, log path, labels, resources', () => {
  const cfg = containerConfig({
    pod: pod({}),
    container: { name: 'c', image: 'img:1', resources: { limits: { cpu: '500m', memory: '64Mi' } } },
    restartCount: 3,
    imageRef: 'sha256:abc',
    envs: [],
    command: ['sh'],
    args: [],
    mounts: [],
  });
  assert.deepEqual(cfg.metadata, { name: 'c', attempt: 3 });
  assert.equal(cfg.logPath, 'c/3.log');
  assert.deepEqual(cfg.image, { image: 'sha256:abc', userSpecifiedImage: 'img:1' });
  assert.equal(cfg.labels!['io.kubernetes.container.name'], 'c');
  assert.deepEqual(cfg.linux!.resources, { cpuShares: 512, cpuPeriod: 100_000, cpuQuota: 50_000, memoryLimitInBytes: 64 * 2 ** 20 });
  const q: [string, number | undefined][] = [
    ['128Mi', 134217728],
    ['1G', 1e9],
    ['100', 100],
    ['bogus', undefined],
  ];
  for (const [s, want] of q) assert.equal(parseQuantity(s), want, s);
  assert.equal(parseCpu('250m'), 0.25);
  assert.equal(parseCpu('2'), 2);
});

test('/etc/hosts: localhost lines, the pod IP with hostname (and FQDN with a subdomain), host aliases', () => {
  const h = hostsFile(pod({ subdomain: 'db', hostAliases: [{ ip: '10.1.1.1', hostnames: ['a.example', 'b.example'] }] }), ['10.244.1.9'], node);
  assert.match(h, /^# Kubernetes-managed hosts file\.\n127\.0\.0\.1\tlocalhost\n/);
  assert.match(h, /\n10\.244\.1\.9\tweb\.db\.shop\.svc\.cluster\.local\tweb\n/);
  assert.match(h, /# Entries added by HostAliases\.\n10\.1\.1\.1\ta\.example\tb\.example\n$/);
});
