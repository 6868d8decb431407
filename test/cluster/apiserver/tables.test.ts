import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildTable, humanDuration, podSummary, tableColumns, tableColumnsFor, tableRow, tableRowFor } from './tables.js';
import type { CrdPrinterColumn, KObject } from './types.js';

const NOW = Date.parse('2024-06-01T12:00:00Z');
const S = 1000;
const M = 60 * S;
const H = 60 * M;
const D = 24 * H;
/** An RFC3339 timestamp `ms` before NOW, second precision like the server writes them. */
const ago = (ms: number): string => new Date(NOW - ms).toISOString().replace('.000Z', 'Z');

test('humanDuration matches apimachinery HumanDuration', () => {
  const cases: [number, string][] = [
    [-2 * S, '<invalid>'],
    [-1500, '0s'],
    [0, '0s'],
    [5 * S, '5s'],
    [119 * S, '119s'],
    [120 * S, '2m'],
    [3 * M + 2 * S, '3m2s'],
    [9 * M + 59 * S, '9m59s'],
    [10 * M + 30 * S, '10m'],
    [179 * M, '179m'],
    [3 * H, '3h'],
    [5 * H + 3 * M, '5h3m'],
    [8 * H + 59 * M, '8h'],
    [47 * H, '47h'],
    [48 * H, '2d'],
    [2 * D + 3 * H, '2d3h'],
    [8 * D, '8d'],
    [45 * D + 5 * H, '45d'],
    [729 * D, '729d'],
    [730 * D, '2y'],
    [760 * D, '2y30d'],
    [8 * 365 * D + 40 * D, '8y'],
  ];
  for (const [ms, want] of cases) assert.equal(humanDuration(ms), want, String(ms));
});

// --- Pods -------------------------------------------------------------------------------------

function pod(status: Record<string, unknown>, spec: Record<string, unknown> = {}, meta: Record<string, unknown> = {}): KObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'web-0', namespace: 'default', creationTimestamp: ago(10 * M), ...meta },
    spec: { containers: [{ name: 'app', image: 'nginx' }], ...spec },
    status,
  };
}

const running = { running: { startedAt: ago(9 * M) } };
const waiting = (reason: string): Record<string, unknown> => ({ waiting: { reason } });
const terminated = (t: Record<string, unknown>): Record<string, unknown> => ({ terminated: t });
const cs = (state: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  name: 'app',
  ready: false,
  restartCount: 0,
  state,
  lastState: {},
  ...extra,
});

test('pod READY / STATUS / RESTARTS as the pod printer computes them', () => {
  const twoInits = { initContainers: [{ name: 'i1', image: 'busybox' }, { name: 'i2', image: 'busybox' }] };
  const cases: [string, KObject, [string, string, string]][] = [
    ['no status yet', pod({ phase: 'Pending' }), ['0/1', 'Pending', '0']],
    ['creating', pod({ phase: 'Pending', containerStatuses: [cs(waiting('ContainerCreating'))] }), ['0/1', 'ContainerCreating', '0']],
    ['running', pod({ phase: 'Running', containerStatuses: [cs(running, { ready: true })] }), ['1/1', 'Running', '0']],
    ['running, not ready', pod({ phase: 'Running', containerStatuses: [cs(running)] }), ['0/1', 'Running', '0']],
    ['completed', pod({ phase: 'Succeeded', containerStatuses: [cs(terminated({ exitCode: 0, reason: 'Completed' }))] }), ['0/1', 'Completed', '0']],
    [
      'crash loop with restarts',
      pod({
        phase: 'Running',
        containerStatuses: [
          cs(waiting('CrashLoopBackOff'), { restartCount: 3, lastState: { terminated: { exitCode: 1, reason: 'Error', finishedAt: ago(5 * M) } } }),
        ],
      }),
      ['0/1', 'CrashLoopBackOff', '3 (5m ago)'],
    ],
    ['image pull', pod({ phase: 'Pending', containerStatuses: [cs(waiting('ErrImagePull'))] }), ['0/1', 'ErrImagePull', '0']],
    ['image backoff', pod({ phase: 'Pending', containerStatuses: [cs(waiting('ImagePullBackOff'))] }), ['0/1', 'ImagePullBackOff', '0']],
    ['killed without reason', pod({ phase: 'Failed', containerStatuses: [cs(terminated({ exitCode: 137, signal: 9 }))] }), ['0/1', 'Signal:9', '0']],
    ['exit code without reason', pod({ phase: 'Failed', containerStatuses: [cs(terminated({ exitCode: 2 }))] }), ['0/1', 'ExitCode:2', '0']],
    [
      'terminating',
      pod({ phase: 'Running', containerStatuses: [cs(running, { ready: true })] }, {}, { deletionTimestamp: ago(5 * S) }),
      ['1/1', 'Terminating', '0'],
    ],
    [
      'deleted after completing stays Completed',
      pod({ phase: 'Succeeded', containerStatuses: [cs(terminated({ exitCode: 0, reason: 'Completed' }))] }, {}, { deletionTimestamp: ago(5 * S) }),
      ['0/1', 'Completed', '0'],
    ],
    ['node lost', pod({ phase: 'Running', reason: 'NodeLost' }, {}, { deletionTimestamp: ago(5 * S) }), ['0/1', 'Unknown', '0']],
    ['evicted', pod({ phase: 'Failed', reason: 'Evicted' }), ['0/1', 'Evicted', '0']],
    [
      'scheduling gated',
      pod({ phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'SchedulingGated' }] }),
      ['0/1', 'SchedulingGated', '0'],
    ],
    [
      'first init container running',
      pod({ phase: 'Pending', initContainerStatuses: [cs(running, { name: 'i1' }), cs(waiting('PodInitializing'), { name: 'i2' })] }, twoInits),
      ['0/1', 'Init:0/2', '0'],
    ],
    [
      'second init container pending',
      pod(
        { phase: 'Pending', initContainerStatuses: [cs(terminated({ exitCode: 0, reason: 'Completed' }), { name: 'i1' }), cs(waiting('PodInitializing'), { name: 'i2' })] },
        twoInits,
      ),
      ['0/1', 'Init:1/2', '0'],
    ],
    [
      'init crash loop',
      pod(
        {
          phase: 'Pending',
          initContainerStatuses: [
            cs(waiting('CrashLoopBackOff'), { name: 'i1', restartCount: 2, lastState: { terminated: { exitCode: 1, finishedAt: ago(30 * S) } } }),
          ],
        },
        twoInits,
      ),
      ['0/1', 'Init:CrashLoopBackOff', '2 (30s ago)'],
    ],
    [
      'init failed',
      pod({ phase: 'Failed', initContainerStatuses: [cs(terminated({ exitCode: 1, reason: 'Error' }), { name: 'i1' })] }, twoInits),
      ['0/1', 'Init:Error', '0'],
    ],
    [
      'init exit code',
      pod({ phase: 'Failed', initContainerStatuses: [cs(terminated({ exitCode: 3 }), { name: 'i1' })] }, twoInits),
      ['0/1', 'Init:ExitCode:3', '0'],
    ],
    [
      'sidecar counts as a container',
      pod(
        {
          phase: 'Running',
          conditions: [{ type: 'Initialized', status: 'True' }, { type: 'Ready', status: 'True' }],
          initContainerStatuses: [cs(running, { name: 'proxy', ready: true, started: true, restartCount: 1 })],
          containerStatuses: [cs(running, { ready: true })],
        },
        { initContainers: [{ name: 'proxy', image: 'envoy', restartPolicy: 'Always' }] },
      ),
      ['2/2', 'Running', '1'],
    ],
    [
      'one container completed, one running, pod not ready',
      pod(
        {
          phase: 'Running',
          containerStatuses: [cs(terminated({ exitCode: 0, reason: 'Completed' })), cs(running, { name: 'b', ready: true })],
        },
        { containers: [{ name: 'app' }, { name: 'b' }] },
      ),
      ['1/2', 'NotReady', '0'],
    ],
    [
      'one container completed, one running, pod ready',
      pod(
        {
          phase: 'Running',
          conditions: [{ type: 'Ready', status: 'True' }],
          containerStatuses: [cs(terminated({ exitCode: 0, reason: 'Completed' })), cs(running, { name: 'b', ready: true })],
        },
        { containers: [{ name: 'app' }, { name: 'b' }] },
      ),
      ['1/2', 'Running', '0'],
    ],
    [
      'restarts summed over containers, latest restart shown',
      pod(
        {
          phase: 'Running',
          containerStatuses: [
            cs(running, { ready: true, restartCount: 1, lastState: { terminated: { exitCode: 1, finishedAt: ago(2 * H) } } }),
            cs(running, { name: 'b', ready: true, restartCount: 4, lastState: { terminated: { exitCode: 1, finishedAt: ago(90 * S) } } }),
          ],
        },
        { containers: [{ name: 'app' }, { name: 'b' }] },
      ),
      ['2/2', 'Running', '5 (90s ago)'],
    ],
  ];
  for (const [what, p, [ready, status, restarts]] of cases) {
    assert.deepEqual(podSummary(p, NOW), { ready, status, restarts }, what);
  }
});

test('pod rows carry the wide columns', () => {
  const p = pod(
    {
      phase: 'Running',
      podIP: '10.1.0.9',
      podIPs: [{ ip: '10.1.0.9' }, { ip: 'fd00::9' }],
      nominatedNodeName: 'node-2',
      conditions: [{ type: 'example.com/gate', status: 'True' }],
      containerStatuses: [cs(running, { ready: true })],
    },
    { nodeName: 'node-1', readinessGates: [{ conditionType: 'example.com/gate' }, { conditionType: 'example.com/other' }] },
  );
  assert.deepEqual(tableRow('', 'Pod', p, NOW), ['web-0', '1/1', 'Running', '0', '10m', '10.1.0.9', 'node-1', 'node-2', '1/2']);
  assert.deepEqual(tableRow('', 'Pod', pod({ phase: 'Pending' }), NOW).slice(5), ['<none>', '<none>', '<none>', '<none>']);
});

// --- Column definitions -----------------------------------------------------------------------

test('column definitions: names, types and wide priorities', () => {
  const summary = (group: string, kind: string, crd?: CrdPrinterColumn[]): string =>
    tableColumns(group, kind, crd)
      .map((c) => `${c.name}:${c.type}${c.priority ? '*' : ''}${c.format ? `(${c.format})` : ''}`)
      .join(' ');
  const cases: [string, string, string][] = [
    ['', 'Pod', 'Name:string(name) Ready:string Status:string Restarts:string Age:string IP:string* Node:string* Nominated Node:string* Readiness Gates:string*'],
    ['', 'Service', 'Name:string(name) Type:string Cluster-IP:string External-IP:string Port(s):string Age:string Selector:string*'],
    ['apps', 'Deployment', 'Name:string(name) Ready:string Up-to-date:string Available:string Age:string Containers:string* Images:string* Selector:string*'],
    ['apps', 'ReplicaSet', 'Name:string(name) Desired:integer Current:integer Ready:integer Age:string Containers:string* Images:string* Selector:string*'],
    [
      'apps',
      'DaemonSet',
      'Name:string(name) Desired:integer Current:integer Ready:integer Up-to-date:integer Available:integer Node Selector:string Age:string Containers:string* Images:string* Selector:string*',
    ],
    ['apps', 'StatefulSet', 'Name:string(name) Ready:string Age:string Containers:string* Images:string*'],
    [
      '',
      'Node',
      'Name:string(name) Status:string Roles:string Age:string Version:string Internal-IP:string* External-IP:string* OS-Image:string* Kernel-Version:string* Container-Runtime:string*',
    ],
    ['', 'Namespace', 'Name:string(name) Status:string Age:string'],
    ['', 'ConfigMap', 'Name:string(name) Data:string Age:string'],
    ['', 'Secret', 'Name:string(name) Type:string Data:string Age:string'],
    ['', 'ServiceAccount', 'Name:string(name) Secrets:string Age:string'],
    [
      '',
      'Event',
      'Last Seen:string Type:string Reason:string Object:string Subobject:string* Source:string* Message:string First Seen:string* Count:string* Name:string*(name)',
    ],
    ['discovery.k8s.io', 'EndpointSlice', 'Name:string(name) AddressType:string Ports:string Endpoints:string Age:string'],
    ['', 'Endpoints', 'Name:string(name) Endpoints:string Age:string'],
    ['rbac.authorization.k8s.io', 'Role', 'Name:string(name) Created At:date'],
    ['rbac.authorization.k8s.io', 'ClusterRole', 'Name:string(name) Created At:date'],
    ['rbac.authorization.k8s.io', 'RoleBinding', 'Name:string(name) Role:string Age:string Users:string* Groups:string* ServiceAccounts:string*'],
    ['rbac.authorization.k8s.io', 'ClusterRoleBinding', 'Name:string(name) Role:string Age:string Users:string* Groups:string* ServiceAccounts:string*'],
    ['apiextensions.k8s.io', 'CustomResourceDefinition', 'Name:string(name) Created At:date'],
    ['coordination.k8s.io', 'Lease', 'Name:string(name) Holder:string Age:string'],
  ];
  for (const [group, kind, want] of cases) assert.equal(summary(group, kind), want, kind);
  assert.equal(summary('example.com', 'Widget', []), 'Name:string(name) Age:date');
  assert.equal(
    summary('example.com', 'Widget', [
      { name: 'Replicas', type: 'integer', jsonPath: '.spec.replicas' },
      { name: 'Detail', type: 'string', jsonPath: '.spec.detail', priority: 1, format: 'byte' },
    ]),
    'Name:string(name) Replicas:integer Detail:string*(byte)',
  );
});

// --- Rows of the other built-in kinds ---------------------------------------------------------

const meta = (name: string, extra: Record<string, unknown> = {}): KObject['metadata'] => ({
  name,
  namespace: 'default',
  creationTimestamp: ago(2 * D + 3 * H),
  ...extra,
});

test('rows of built-in kinds', () => {
  const template = { spec: { containers: [{ name: 'app', image: 'nginx:1.25' }, { name: 'proxy', image: 'envoy:1.30' }] } };
  const cases: [string, string, KObject, unknown[]][] = [
    [
      '',
      'Service',
      { metadata: meta('web'), spec: { type: 'ClusterIP', clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10'], ports: [{ port: 80, protocol: 'TCP' }, { port: 53, protocol: 'UDP' }], selector: { app: 'web' } } },
      ['web', 'ClusterIP', '10.96.0.10', '<none>', '80/TCP,53/UDP', '2d3h', 'app=web'],
    ],
    [
      '',
      'Service',
      { metadata: meta('np'), spec: { type: 'NodePort', clusterIPs: ['10.96.0.11'], ports: [{ port: 80, nodePort: 30080, protocol: 'TCP' }] } },
      ['np', 'NodePort', '10.96.0.11', '<none>', '80:30080/TCP', '2d3h', '<none>'],
    ],
    [
      '',
      'Service',
      { metadata: meta('lb'), spec: { type: 'LoadBalancer', clusterIPs: ['10.96.0.12'], ports: [{ port: 443, nodePort: 31443, protocol: 'TCP' }] } },
      ['lb', 'LoadBalancer', '10.96.0.12', '<pending>', '443:31443/TCP', '2d3h', '<none>'],
    ],
    [
      '',
      'Service',
      {
        metadata: meta('lb2'),
        spec: { type: 'LoadBalancer', clusterIPs: ['10.96.0.13'], ports: [] },
        status: { loadBalancer: { ingress: [{ ip: '203.0.113.9' }, { hostname: 'lb.example.com' }] } },
      },
      ['lb2', 'LoadBalancer', '10.96.0.13', '203.0.113.9,lb.example.com', '<none>', '2d3h', '<none>'],
    ],
    [
      '',
      'Service',
      { metadata: meta('ext'), spec: { type: 'ExternalName', externalName: 'db.example.com' } },
      ['ext', 'ExternalName', '<none>', 'db.example.com', '<none>', '2d3h', '<none>'],
    ],
    [
      '',
      'Service',
      { metadata: meta('headless'), spec: { type: 'ClusterIP', clusterIP: 'None', clusterIPs: ['None'], ports: [{ port: 80, protocol: 'TCP' }] } },
      ['headless', 'ClusterIP', 'None', '<none>', '80/TCP', '2d3h', '<none>'],
    ],
    [
      'apps',
      'Deployment',
      {
        metadata: meta('web'),
        spec: { replicas: 3, selector: { matchLabels: { app: 'web' } }, template },
        status: { readyReplicas: 2, updatedReplicas: 3, availableReplicas: 2 },
      },
      ['web', '2/3', 3, 2, '2d3h', 'app,proxy', 'nginx:1.25,envoy:1.30', 'app=web'],
    ],
    [
      'apps',
      'Deployment',
      { metadata: meta('new'), spec: { replicas: 0, selector: { matchLabels: { app: 'new' } }, template } },
      ['new', '0/0', 0, 0, '2d3h', 'app,proxy', 'nginx:1.25,envoy:1.30', 'app=new'],
    ],
    [
      'apps',
      'ReplicaSet',
      {
        metadata: meta('web-5d8f'),
        spec: { replicas: 2, selector: { matchLabels: { app: 'web', 'pod-template-hash': '5d8f' } }, template },
        status: { replicas: 2, readyReplicas: 1 },
      },
      ['web-5d8f', 2, 2, 1, '2d3h', 'app,proxy', 'nginx:1.25,envoy:1.30', 'app=web,pod-template-hash=5d8f'],
    ],
    [
      'apps',
      'DaemonSet',
      {
        metadata: meta('agent'),
        spec: { selector: { matchLabels: { app: 'agent' } }, template: { spec: { ...template.spec, nodeSelector: { 'kubernetes.io/os': 'linux' } } } },
        status: { desiredNumberScheduled: 3, currentNumberScheduled: 3, numberReady: 2, updatedNumberScheduled: 3, numberAvailable: 2 },
      },
      ['agent', 3, 3, 2, 3, 2, 'kubernetes.io/os=linux', '2d3h', 'app,proxy', 'nginx:1.25,envoy:1.30', 'app=agent'],
    ],
    [
      'apps',
      'DaemonSet',
      { metadata: meta('bare'), spec: { selector: { matchLabels: { app: 'bare' } }, template: { spec: { containers: [] } } } },
      ['bare', 0, 0, 0, 0, 0, '<none>', '2d3h', '', '', 'app=bare'],
    ],
    [
      'apps',
      'StatefulSet',
      { metadata: meta('db'), spec: { replicas: 3, template }, status: { readyReplicas: 3 } },
      ['db', '3/3', '2d3h', 'app,proxy', 'nginx:1.25,envoy:1.30'],
    ],
    [
      '',
      'Node',
      {
        metadata: { name: 'cp-1', creationTimestamp: ago(45 * D), labels: { 'node-role.kubernetes.io/control-plane': '', 'node-role.kubernetes.io/etcd': '', 'kubernetes.io/role': 'master' } },
        spec: { unschedulable: true },
        status: {
          conditions: [{ type: 'MemoryPressure', status: 'False' }, { type: 'Ready', status: 'True' }],
          addresses: [{ type: 'Hostname', address: 'cp-1' }, { type: 'InternalIP', address: '192.168.1.10' }],
          nodeInfo: { kubeletVersion: 'v1.32.4', osImage: 'Debian GNU/Linux 12 (bookworm)', kernelVersion: '6.1.0', containerRuntimeVersion: 'containerd://1.7.0' },
        },
      },
      ['cp-1', 'Ready,SchedulingDisabled', 'control-plane,etcd,master', '45d', 'v1.32.4', '192.168.1.10', '<none>', 'Debian GNU/Linux 12 (bookworm)', '6.1.0', 'containerd://1.7.0'],
    ],
    [
      '',
      'Node',
      { metadata: { name: 'w-1', creationTimestamp: ago(5 * S) }, status: { conditions: [{ type: 'Ready', status: 'Unknown' }] } },
      ['w-1', 'NotReady', '<none>', '5s', '', '<none>', '<none>', '<unknown>', '<unknown>', '<unknown>'],
    ],
    ['', 'Node', { metadata: { name: 'w-2', creationTimestamp: ago(5 * S) } }, ['w-2', 'Unknown', '<none>', '5s', '', '<none>', '<none>', '<unknown>', '<unknown>', '<unknown>']],
    ['', 'Namespace', { metadata: { name: 'mesh', creationTimestamp: ago(3 * M + 2 * S) }, status: { phase: 'Active' } }, ['mesh', 'Active', '3m2s']],
    ['', 'Namespace', { metadata: { name: 'old', creationTimestamp: ago(D), deletionTimestamp: ago(S) }, status: { phase: 'Terminating' } }, ['old', 'Terminating', '24h']],
    ['', 'ConfigMap', { metadata: meta('cfg'), data: { a: '1', b: '2' }, binaryData: { c: 'AA==' } }, ['cfg', 3, '2d3h']],
    ['', 'ConfigMap', { metadata: meta('empty') }, ['empty', 0, '2d3h']],
    ['', 'Secret', { metadata: meta('tls'), type: 'kubernetes.io/tls', data: { 'tls.crt': 'x', 'tls.key': 'y' } }, ['tls', 'kubernetes.io/tls', 2, '2d3h']],
    ['', 'ServiceAccount', { metadata: meta('default') }, ['default', 0, '2d3h']],
    ['', 'ServiceAccount', { metadata: meta('builder'), secrets: [{ name: 'builder-token' }] }, ['builder', 1, '2d3h']],
    [
      '',
      'Endpoints',
      {
        metadata: meta('web'),
        subsets: [{ addresses: [{ ip: '10.1.0.1' }, { ip: '10.1.0.2' }], ports: [{ port: 8080 }, { port: 9090 }] }],
      },
      ['web', '10.1.0.1:8080,10.1.0.2:8080,10.1.0.1:9090 + 1 more...', '2d3h'],
    ],
    ['', 'Endpoints', { metadata: meta('none') }, ['none', '<none>', '2d3h']],
    [
      'discovery.k8s.io',
      'EndpointSlice',
      {
        metadata: meta('web-abcde'),
        addressType: 'IPv4',
        ports: [{ port: 80 }, { name: 'grpc' }, {}],
        endpoints: [{ addresses: ['10.1.0.1'] }, { addresses: ['10.1.0.2'] }],
      },
      ['web-abcde', 'IPv4', '80,grpc,*', '10.1.0.1,10.1.0.2', '2d3h'],
    ],
    [
      'discovery.k8s.io',
      'EndpointSlice',
      { metadata: meta('empty-xyz'), addressType: 'IPv6', ports: null, endpoints: [] },
      ['empty-xyz', 'IPv6', '<unset>', '<unset>', '2d3h'],
    ],
    [
      'discovery.k8s.io',
      'EndpointSlice',
      { metadata: meta('many'), addressType: 'IPv4', ports: [{ port: 1 }], endpoints: [1, 2, 3, 4, 5].map((i) => ({ addresses: [`10.0.0.${i}`] })) },
      ['many', 'IPv4', '1', '10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...', '2d3h'],
    ],
    [
      'rbac.authorization.k8s.io',
      'Role',
      { metadata: { name: 'reader', namespace: 'default', creationTimestamp: '2024-05-30T09:08:07Z' } },
      ['reader', '2024-05-30T09:08:07Z'],
    ],
    ['rbac.authorization.k8s.io', 'ClusterRole', { metadata: { name: 'admin', creationTimestamp: '2024-05-30T09:08:07.123456Z' } }, ['admin', '2024-05-30T09:08:07Z']],
    ['apiextensions.k8s.io', 'CustomResourceDefinition', { metadata: { name: 'widgets.example.com' } }, ['widgets.example.com', '0001-01-01T00:00:00Z']],
    [
      'rbac.authorization.k8s.io',
      'RoleBinding',
      {
        metadata: meta('readers'),
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'view' },
        subjects: [
          { kind: 'User', name: 'alice' },
          { kind: 'User', name: 'bob' },
          { kind: 'Group', name: 'devs' },
          { kind: 'ServiceAccount', name: 'ci', namespace: 'build' },
        ],
      },
      ['readers', 'ClusterRole/view', '2d3h', 'alice, bob', 'devs', 'build/ci'],
    ],
    [
      'rbac.authorization.k8s.io',
      'ClusterRoleBinding',
      { metadata: { name: 'admins', creationTimestamp: ago(S) }, roleRef: { kind: 'ClusterRole', name: 'cluster-admin' } },
      ['admins', 'ClusterRole/cluster-admin', '1s', '', '', ''],
    ],
    ['coordination.k8s.io', 'Lease', { metadata: meta('kube-scheduler'), spec: { holderIdentity: 'cp-1_abc' } }, ['kube-scheduler', 'cp-1_abc', '2d3h']],
    ['coordination.k8s.io', 'Lease', { metadata: meta('free'), spec: {} }, ['free', '', '2d3h']],
    ['example.com', 'Gadget', { metadata: { name: 'g', creationTimestamp: '2024-05-30T09:08:07Z' } }, ['g', '2024-05-30T09:08:07Z']],
  ];
  for (const [group, kind, obj, want] of cases) {
    assert.deepEqual(tableRow(group, kind, obj, NOW), want, `${kind} ${obj.metadata.name}`);
    assert.equal(tableColumns(group, kind).length, want.length, `${kind} column count`);
  }
});

test('event rows, core and events.k8s.io', () => {
  const core: KObject = {
    metadata: meta('web-0.17a'),
    involvedObject: { kind: 'Pod', name: 'web-0', namespace: 'default', fieldPath: 'spec.containers{app}' },
    reason: 'BackOff',
    message: 'Back-off restarting failed container\n',
    type: 'Warning',
    source: { component: 'kubelet', host: 'node-1' },
    firstTimestamp: ago(20 * M),
    lastTimestamp: ago(2 * M),
    count: 7,
  };
  assert.deepEqual(tableRow('', 'Event', core, NOW), [
    '2m',
    'Warning',
    'BackOff',
    'pod/web-0',
    'spec.containers{app}',
    'kubelet, node-1',
    'Back-off restarting failed container',
    '20m',
    7,
    'web-0.17a',
  ]);

  // A new-API event seen through core/v1: eventTime only, no count, reporting fields for the source.
  const singleton: KObject = {
    metadata: meta('ns-event'),
    involvedObject: { kind: 'Namespace' },
    reason: 'Created',
    message: 'ok',
    type: 'Normal',
    eventTime: ago(30 * S).replace('Z', '.123456Z'),
    reportingComponent: 'ambit-control',
    reportingInstance: 'control-0',
    source: {},
  };
  // 29.877s ago: HumanDuration truncates to whole seconds
  assert.deepEqual(tableRow('', 'Event', singleton, NOW), ['29s', 'Normal', 'Created', 'namespace', '', 'ambit-control, control-0', 'ok', '29s', 1, 'ns-event']);

  const v1: KObject = {
    metadata: meta('v1-event'),
    regarding: { kind: 'Deployment', name: 'web' },
    reason: 'ScalingReplicaSet',
    note: 'Scaled up',
    type: 'Normal',
    eventTime: ago(10 * M),
    reportingController: 'deployment-controller',
    series: { count: 4, lastObservedTime: ago(45 * S) },
  };
  assert.deepEqual(tableRow('events.k8s.io', 'Event', v1, NOW), [
    '45s',
    'Normal',
    'ScalingReplicaSet',
    'deployment/web',
    '',
    'deployment-controller',
    'Scaled up',
    '10m',
    4,
    'v1-event',
  ]);
});

// --- Custom resources -------------------------------------------------------------------------

test('custom resource rows follow the CRD printer columns', () => {
  const widget: KObject = {
    apiVersion: 'example.com/v1',
    kind: 'Widget',
    metadata: { name: 'w1', namespace: 'default', creationTimestamp: ago(5 * H + 3 * M) },
    spec: { replicas: 3, ratio: 1.5, enabled: true, mode: 'fast', ports: [80, 443], tags: { b: 'x', a: '<y>' } },
    status: { conditions: [{ type: 'Ready', status: 'True' }], lastSeen: ago(90 * S), count: 2.9 },
  };
  const columns: CrdPrinterColumn[] = [
    { name: 'Replicas', type: 'integer', jsonPath: '.spec.replicas' },
    { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
    { name: 'Mode', type: 'string', jsonPath: '.spec.mode', priority: 1 },
    { name: 'Ratio', type: 'number', jsonPath: '.spec.ratio' },
    { name: 'Enabled', type: 'boolean', jsonPath: '.spec.enabled' },
    { name: 'Seen', type: 'date', jsonPath: '.status.lastSeen' },
    { name: 'Count', type: 'integer', jsonPath: '.status.count' },
    { name: 'Ports', type: 'string', jsonPath: '.spec.ports' },
    { name: 'Tags', type: 'string', jsonPath: '.spec.tags' },
    { name: 'ReplicasText', type: 'string', jsonPath: '.spec.replicas' },
    { name: 'Missing', type: 'string', jsonPath: '.spec.nothing' },
    { name: 'WrongType', type: 'integer', jsonPath: '.spec.mode' },
    { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
  ];
  assert.deepEqual(tableRow('example.com', 'Widget', widget, NOW, columns), [
    'w1',
    3,
    'True',
    'fast',
    1.5,
    true,
    '90s',
    2,
    '[80,443]',
    '{"a":"\\u003cy\\u003e","b":"x"}',
    '3',
    null,
    null,
    '5h3m',
  ]);
  assert.deepEqual(tableRow('example.com', 'Widget', widget, NOW, []), ['w1', '5h3m']);
  const described = tableColumns('example.com', 'Widget', [{ name: 'Mode', type: 'string', jsonPath: '.spec.mode' }]);
  assert.equal(described[1]!.description, 'Custom resource definition column (in JSONPath format): .spec.mode');

  const rt = { group: 'example.com', kind: 'Widget', custom: true, printerColumns: undefined };
  assert.deepEqual(tableRowFor(rt, widget, NOW), ['w1', '5h3m']);
  assert.deepEqual(
    tableColumnsFor({ group: '', kind: 'ConfigMap', custom: false }).map((c) => c.name),
    ['Name', 'Data', 'Age'],
  );
});

test('buildTable assembles a meta.k8s.io/v1 Table', () => {
  const done = pod({ phase: 'Succeeded', containerStatuses: [cs(terminated({ exitCode: 0, reason: 'Completed' }))] });
  const table = buildTable('', 'Pod', [done], NOW, { resourceVersion: '42' });
  assert.equal(table.kind, 'Table');
  assert.equal(table.apiVersion, 'meta.k8s.io/v1');
  assert.deepEqual(table.metadata, { resourceVersion: '42' });
  assert.equal((table.columnDefinitions as unknown[]).length, 9);
  const [row] = table.rows as Record<string, unknown>[];
  assert.deepEqual(row!.cells, ['web-0', '0/1', 'Completed', '0', '10m', '<none>', '<none>', '<none>', '<none>']);
  assert.deepEqual(row!.conditions, [{ type: 'Completed', status: 'True', reason: 'Succeeded', message: 'The pod has completed successfully.' }]);
  assert.deepEqual(row!.object, { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: done.metadata });

  const bare = buildTable('', 'ConfigMap', [{ metadata: meta('c') }], NOW, { noHeaders: true, includeObject: 'None' });
  assert.equal('columnDefinitions' in bare, false);
  assert.deepEqual(bare.rows, [{ cells: ['c', 0, '2d3h'] }]);
});
