import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Service } from '../../api/types.js';
import { chooseEndpoint, planOutbound } from './outbound.js';
import { tcpLabels, workloadName } from './telemetry.js';
import type { MeshView, WorkloadInfo } from './view.js';

const web: WorkloadInfo = { uid: 'u-web', name: 'web-6d4cf56db6-x2x9p', namespace: 'shop', identity: 'spiffe://cluster.local/ns/shop/sa/web', enrolled: true, node: 'node-2', labels: { app: 'web' } };
const legacy: WorkloadInfo = { uid: 'u-legacy', namespace: 'old', identity: 'spiffe://cluster.local/ns/old/sa/default', enrolled: false, node: 'node-2' };
const svc = (endpoints: Service['endpoints']): Service => ({
  key: 'shop/web',
  namespace: 'shop',
  name: 'web',
  hostname: 'web.shop.svc.cluster.local',
  vips: ['10.96.0.20'],
  ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }],
  endpoints,
});

function view(service: Service): MeshView {
  const byIp: Record<string, WorkloadInfo> = { '10.244.2.5': web, '10.244.2.9': legacy };
  return {
    workloadByIp: (ip) => byIp[ip],
    serviceByVip: (ip, port) => (ip === '10.96.0.20' && port === 80 ? { service, port: service.ports[0]! } : undefined),
    serviceByEndpoint: (ip) => (service.endpoints.some((e) => e.ip === ip) ? service : undefined),
    authorizationPolicies: () => [],
    peerAuthentications: () => [],
    rootNamespace: () => 'ambit-system',
    trustRoots: () => [],
    dnsIndex: () => new Map(),
  };
}

test('outbound plans', () => {
  const ready = svc([{ ip: '10.244.2.5', workload: 'u-web', status: 'ready' }]);
  const table: Array<[string, Service, { address: string; port: number }, unknown]> = [
    ['a VIP goes to an enrolled endpoint over HBONE, on the target port', ready, { address: '10.96.0.20', port: 80 }, { kind: 'hbone', address: '10.244.2.5', port: 8080, peer: web, service: ready }],
    ['a pod IP of an enrolled pod: HBONE, service found by endpoint', ready, { address: '10.244.2.5', port: 8080 }, { kind: 'hbone', address: '10.244.2.5', port: 8080, peer: web, service: ready }],
    ['a pod that is not enrolled: passthrough', ready, { address: '10.244.2.9', port: 5432 }, { kind: 'passthrough', address: '10.244.2.9', port: 5432, peer: legacy, why: 'the destination pod is not enrolled' }],
    ['outside the cluster: passthrough unchanged', ready, { address: '93.184.216.34', port: 443 }, { kind: 'passthrough', address: '93.184.216.34', port: 443, why: 'not a pod of the mesh' }],
    ['a VIP port the Service lacks: passthrough (kube-proxy decides)', ready, { address: '10.96.0.20', port: 81 }, { kind: 'passthrough', address: '10.96.0.20', port: 81, why: 'not a pod of the mesh' }],
    ['a named port on the endpoint wins', svc([{ ip: '10.244.2.5', workload: 'u-web', status: 'ready', ports: { http: 9090 } }]), { address: '10.96.0.20', port: 80 }, { kind: 'hbone', port: 9090 }],
  ];
  for (const [name, service, dst, want] of table) {
    const got = planOutbound(dst, view(service), () => 0) as unknown as Record<string, unknown>;
    for (const [k, v] of Object.entries(want as Record<string, unknown>)) assert.deepEqual(got[k], v, `${name}: ${k}`);
  }
  const none = svc([{ ip: '10.244.2.5', status: 'notReady' }]);
  const refused = planOutbound({ address: '10.96.0.20', port: 80 }, view(none), () => 0);
  assert.equal(refused.kind, 'refuse');
  assert.match((refused as { reason: string }).reason, /shop\/web has no ready endpoint for port 80/);
});

test('endpoint choice: ready first, terminating only when none is ready, never notReady', () => {
  const eps = [
    { ip: 'a', status: 'terminating' as const },
    { ip: 'b', status: 'ready' as const },
    { ip: 'c', status: 'notReady' as const },
    { ip: 'd', status: 'ready' as const },
  ];
  assert.equal(chooseEndpoint(eps, () => 0)?.ip, 'b');
  assert.equal(chooseEndpoint(eps, () => 1)?.ip, 'd');
  assert.equal(chooseEndpoint(eps, () => 99)?.ip, 'd');
  assert.equal(chooseEndpoint([eps[0]!, eps[2]!], () => 0)?.ip, 'a');
  assert.equal(chooseEndpoint([eps[2]!], () => 0), undefined);
});

test('Istio labels: workload names, principals, unknowns', () => {
  assert.equal(workloadName(web), 'web');
  assert.equal(workloadName({ ...web, labels: {} }), 'web');
  assert.equal(workloadName({ ...web, labels: {}, name: 'client' }), 'client');
  assert.equal(workloadName(legacy), 'unknown');
  assert.equal(workloadName(undefined), 'unknown');
  assert.equal(workloadName({ uid: 'p', identity: 'spiffe://cluster.local/ns/shop/sa/api', enrolled: true, node: 'n2', workload: 'api' }), 'api', "a peer: the control plane's name");
  assert.equal(workloadName({ ...web, workload: 'shop-web' }), 'shop-web', 'the pushed name wins');
  assert.deepEqual(tcpLabels({ reporter: 'destination', sourcePrincipal: 'spiffe://cluster.local/ns/shop/sa/client', destination: web, destinationPrincipal: web.identity, mtls: true }), {
    reporter: 'destination',
    source_workload: 'unknown',
    source_workload_namespace: 'shop',
    source_principal: 'spiffe://cluster.local/ns/shop/sa/client',
    destination_workload: 'web',
    destination_workload_namespace: 'shop',
    destination_service: 'unknown',
    destination_principal: 'spiffe://cluster.local/ns/shop/sa/web',
    connection_security_policy: 'mutual_tls',
    response_flags: '-',
  });
});
