// Table tests of the kube-proxy rule builder and of the Service/EndpointSlice model it reads
// (pure; cluster.test.ts checks the rules on real traffic).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KObject } from './apiserver/types.js';
import { chainName, renderBootstrapRules, renderRules } from './kubeproxy.js';
import { backendsFor, buildServiceModel, type ServiceInfo } from './services.js';

const svc = (name: string, spec: Record<string, unknown>, labels: Record<string, string> = {}): KObject =>
  ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'ns', labels }, spec }) as KObject;

const slice = (svcName: string, endpoints: Array<Record<string, unknown>>, ports: Array<Record<string, unknown>>, name = `${svcName}-abc`): KObject =>
  ({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: 'ns', labels: { 'kubernetes.io/service-name': svcName } },
    addressType: 'IPv4',
    endpoints,
    ports,
  }) as KObject;

const web = svc('web', { type: 'ClusterIP', clusterIP: '10.96.0.20', ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }] });
const webSlice = slice(
  'web',
  [
    { addresses: ['10.244.2.7'], conditions: { ready: true }, nodeName: 'node-2' },
    { addresses: ['10.244.1.5'], conditions: { ready: true }, nodeName: 'node-1' },
    { addresses: ['10.244.1.9'], conditions: { ready: false, serving: false } },
  ],
  [{ name: 'http', port: 8080, protocol: 'TCP' }],
);

const lines = (text: string) => text.split('\n');
const model = (services: KObject[], slices: KObject[]) => buildServiceModel(services, slices);

test('the model joins Services with their slices; backends are the ready endpoints, sorted', () => {
  const [info] = model([web], [webSlice]);
  assert.equal(info!.clusterIP, '10.96.0.20');
  assert.deepEqual(backendsFor(info!, info!.ports[0]!), [
    { ip: '10.244.1.5', port: 8080 },
    { ip: '10.244.2.7', port: 8080 },
  ]);
});

test('backend selection follows EndpointSlice conditions and port names', () => {
  const base = { namespace: 'ns', name: 's', type: 'ClusterIP', clusterIP: '10.96.0.9', headless: false, proxied: true, publishNotReadyAddresses: false, ports: [{ name: 'a', port: 1, protocol: 'TCP' as const }] };
  const ep = (ip: string, c: Partial<{ ready: boolean; serving: boolean; terminating: boolean }>, port = 'a') => ({ ip, ready: c.ready ?? true, serving: c.serving ?? c.ready ?? true, terminating: c.terminating ?? false, ports: [{ name: port, port: 9, protocol: 'TCP' as const }] });
  const cases: Array<[string, ServiceInfo['endpoints'], string[]]> = [
    ['ready only', [ep('10.0.0.2', {}), ep('10.0.0.1', { ready: false, serving: false })], ['10.0.0.2']],
    ['none ready: serving+terminating ones drain', [ep('10.0.0.1', { ready: false, serving: true, terminating: true }), ep('10.0.0.3', { ready: false, serving: false, terminating: true })], ['10.0.0.1']],
    ['ready beats terminating', [ep('10.0.0.1', { ready: false, serving: true, terminating: true }), ep('10.0.0.2', {})], ['10.0.0.2']],
    ['port name must match', [ep('10.0.0.1', {}, 'b')], []],
    ['numeric order, not text order', [ep('10.0.0.10', {}), ep('10.0.0.9', {})], ['10.0.0.9', '10.0.0.10']],
  ];
  for (const [what, endpoints, want] of cases) assert.deepEqual(backendsFor({ ...base, endpoints }, base.ports[0]!).map((b) => b.ip), want, what);
});

test('a nil ready condition counts as ready; IPv6 slices are ignored', () => {
  const s = slice('web', [{ addresses: ['10.244.1.5'] }], [{ name: 'http', port: 8080, protocol: 'TCP' }]);
  const v6 = { ...slice('web', [{ addresses: ['fd00::1'], conditions: { ready: true } }], [{ name: 'http', port: 8080 }], 'web-v6'), addressType: 'IPv6' } as KObject;
  const [info] = model([web], [s, v6]);
  assert.deepEqual(backendsFor(info!, info!.ports[0]!), [{ ip: '10.244.1.5', port: 8080 }]);
});

test('a ClusterIP Service becomes KUBE-SERVICES → KUBE-SVC → one KUBE-SEP per endpoint with a uniform pick', () => {
  const { text, chains } = renderRules({ services: model([web], [webSlice]), clusterCidr: '10.244.0.0/16' });
  const svcChain = chainName('KUBE-SVC-', 'ns/web:http', 'TCP');
  const sep1 = chainName('KUBE-SEP-', 'ns/web:http', 'TCP', '10.244.1.5:8080');
  const sep2 = chainName('KUBE-SEP-', 'ns/web:http', 'TCP', '10.244.2.7:8080');
  assert.deepEqual(chains, [svcChain, sep1, sep2]);
  const l = lines(text);
  assert.ok(l.includes(`-A KUBE-SERVICES -d 10.96.0.20/32 -p tcp -m tcp --dport 80 -m comment --comment "ns/web:http cluster IP" -j ${svcChain}`));
  assert.ok(l.includes(`-A ${svcChain} ! -s 10.244.0.0/16 -d 10.96.0.20/32 -p tcp -m tcp --dport 80 -m comment --comment "ns/web:http cluster IP" -j KUBE-MARK-MASQ`));
  assert.ok(l.includes(`-A ${svcChain} -m comment --comment "ns/web:http -> 10.244.1.5:8080" -m statistic --mode random --probability 0.5000000000 -j ${sep1}`));
  assert.ok(l.includes(`-A ${svcChain} -m comment --comment "ns/web:http -> 10.244.2.7:8080" -j ${sep2}`), 'the last one takes the rest');
  assert.ok(l.includes(`-A ${sep1} -s 10.244.1.5/32 -m comment --comment "ns/web:http" -j KUBE-MARK-MASQ`), 'hairpin');
  assert.ok(l.includes(`-A ${sep1} -p tcp -m tcp -m comment --comment "ns/web:http" -j DNAT --to-destination 10.244.1.5:8080`));
  assert.ok(!text.includes('10.244.1.9'), 'not-ready endpoint left out');
  // Each table is one transaction; our chains are declared (flushed) before they are filled.
  assert.deepEqual(l.filter((x) => x.startsWith('*') || x === 'COMMIT'), ['*filter', 'COMMIT', '*nat', 'COMMIT']);
  assert.ok(l.indexOf(`:${sep2} - [0:0]`) < l.findIndex((x) => x.startsWith(`-A ${sep2}`)));
  assert.equal(l.at(-3), '-A KUBE-SERVICES -m addrtype --dst-type LOCAL -m comment --comment "kubernetes service nodeports" -j KUBE-NODEPORTS');
});

test('probabilities split n endpoints evenly: 1/n, 1/(n-1), …, then the rest', () => {
  const eps = ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4'].map((ip) => ({ addresses: [ip], conditions: { ready: true } }));
  const { text } = renderRules({ services: model([web], [slice('web', eps, [{ name: 'http', port: 8080, protocol: 'TCP' }])]), clusterCidr: '10.244.0.0/16' });
  const probs = [...text.matchAll(/--probability (\S+)/g)].map((m) => m[1]);
  assert.deepEqual(probs, ['0.2500000000', '0.3333333333', '0.5000000000']);
});

test('Services kube-proxy leaves alone, and ports without endpoints', () => {
  const cases: Array<[string, KObject, KObject[], (t: string) => boolean]> = [
    ['headless: no rules', svc('h', { clusterIP: 'None', ports: [{ name: 'http', port: 80 }] }), [slice('h', [{ addresses: ['10.244.1.2'] }], [{ name: 'http', port: 80, protocol: 'TCP' }])], (t) => !t.includes('ns/h')],
    ['ExternalName: no rules', svc('e', { type: 'ExternalName', externalName: 'example.com' }), [], (t) => !t.includes('ns/e')],
    ['another proxy owns it', svc('d', { clusterIP: '10.96.0.10', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] }, { 'service.kubernetes.io/service-proxy-name': 'x' }), [], (t) => !t.includes('10.96.0.10')],
    [
      'no endpoints: REJECT in filter, nothing in nat',
      svc('n', { clusterIP: '10.96.0.30', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] }),
      [],
      (t) => t.includes('-A KUBE-SERVICES -d 10.96.0.30/32 -p udp -m udp --dport 53 -m comment --comment "ns/n:dns has no endpoints" -j REJECT --reject-with icmp-port-unreachable') && !t.includes('KUBE-SVC-'),
    ],
  ];
  for (const [what, s, slices, ok] of cases) {
    const { text } = renderRules({ services: model([s], slices), clusterCidr: '10.244.0.0/16' });
    assert.ok(ok(text), `${what}:\n${text}`);
  }
});

test('a NodePort is masqueraded and sent to the Service chain', () => {
  const np = svc('np', { type: 'NodePort', clusterIP: '10.96.0.40', ports: [{ port: 80, nodePort: 30080, protocol: 'TCP' }] });
  const { text } = renderRules({ services: model([np], [slice('np', [{ addresses: ['10.244.1.5'] }], [{ name: '', port: 8080, protocol: 'TCP' }])]), clusterCidr: '10.244.0.0/16' });
  const svcChain = chainName('KUBE-SVC-', 'ns/np', 'TCP');
  assert.ok(lines(text).includes('-A KUBE-NODEPORTS -p tcp -m tcp --dport 30080 -m comment --comment "ns/np" -j KUBE-MARK-MASQ'));
  assert.ok(lines(text).includes(`-A KUBE-NODEPORTS -p tcp -m tcp --dport 30080 -m comment --comment "ns/np" -j ${svcChain}`));
});

test('chains of a previous sync that are no longer wanted are flushed and deleted', () => {
  const first = renderRules({ services: model([web], [webSlice]), clusterCidr: '10.244.0.0/16' });
  const oneLeft = slice('web', [{ addresses: ['10.244.2.7'], conditions: { ready: true } }], [{ name: 'http', port: 8080, protocol: 'TCP' }]);
  const second = renderRules({ services: model([web], [oneLeft]), clusterCidr: '10.244.0.0/16', previousChains: [...first.chains, 'KUBE-FOO'] });
  const gone = chainName('KUBE-SEP-', 'ns/web:http', 'TCP', '10.244.1.5:8080');
  const l = lines(second.text);
  assert.ok(l.includes(`:${gone} - [0:0]`) && l.includes(`-X ${gone}`));
  assert.ok(!l.includes('-X KUBE-FOO'), 'only chains we own are deleted');
  assert.equal(l.filter((x) => x.startsWith('-X')).length, 1);
  assert.ok(!second.chains.includes(gone));
});

test('chain names are stable, distinct and within the 28-character limit', () => {
  const a = chainName('KUBE-SVC-', 'ns/web:http', 'TCP');
  assert.equal(a, chainName('KUBE-SVC-', 'ns/web:http', 'TCP'));
  assert.notEqual(a, chainName('KUBE-SVC-', 'ns/web:http', 'UDP'));
  assert.ok(a.length <= 28 && /^KUBE-SVC-[0-9A-F]{16}$/.test(a));
});

test('bootstrap hooks the chains into PREROUTING, OUTPUT, POSTROUTING and the filter table', () => {
  const l = lines(renderBootstrapRules());
  assert.ok(l.includes('-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'));
  assert.ok(l.includes('-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'));
  assert.ok(l.includes('-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'));
  assert.ok(l.includes('-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'));
});
