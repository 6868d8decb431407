/**
 * A synthetic cluster for measuring snapshots (the `control` benchmark's input and the size test):
 * namespaces of teams, each with Deployments behind Services, pods spread over nodes the way a
 * default scheduler spreads replicas (so a namespace has pods on many nodes), AuthorizationPolicies
 * per service, a mesh-wide and some namespace PeerAuthentications, and a few HTTPRoutes.
 * Deterministic for a given seed. Plain objects only: the same shape a watch delivers.
 */
import type { ClusterObjects } from '../state/model.js';
import type { EndpointSliceObject, KubeObject, PodObject, ServiceObject } from '../state/objects.js';

export interface ClusterSpec {
  nodes: number;
  pods: number;
  services: number;
  /** AuthorizationPolicies */
  policies: number;
  namespaces: number;
  /** share of namespaces labelled ambient (0..1) */
  ambientShare: number;
  httpRoutes: number;
  seed: number;
  rootNamespace: string;
}

/** The benchmark's figures: 100 nodes, 10k pods, 2k services, 500 policies. */
export const BENCH_SPEC: ClusterSpec = { nodes: 100, pods: 10_000, services: 2_000, policies: 500, namespaces: 100, ambientShare: 0.9, httpRoutes: 100, seed: 42, rootNamespace: 'ambit-system' };

/** mulberry32: a small seeded PRNG, so the same spec always yields the same cluster. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pad = (n: number, w: number): string => String(n).padStart(w, '0');
const ipOf = (base: number, n: number): string => `${base}.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;

/** Generates the cluster. Pods of one Service land on distinct random nodes (spread), as replicas do. */
export function generateCluster(spec: ClusterSpec = BENCH_SPEC): ClusterObjects {
  const rand = prng(spec.seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)]!;
  const nodes: KubeObject[] = Array.from({ length: spec.nodes }, (_, i) => ({ apiVersion: 'v1', kind: 'Node', metadata: { name: `node-${pad(i, 3)}`, uid: `node-uid-${i}` } }));
  const nsNames = Array.from({ length: spec.namespaces }, (_, i) => `team-${pad(i, 3)}`);
  const ambientCount = Math.round(spec.namespaces * spec.ambientShare);
  const namespaces: KubeObject[] = [spec.rootNamespace, ...nsNames].map((name, i) => ({
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name, uid: `ns-uid-${i}`, labels: { 'kubernetes.io/metadata.name': name, ...(i > 0 && i <= ambientCount ? { 'ambit.dev/dataplane-mode': 'ambient' } : {}) } },
  }));
  const serviceAccounts: KubeObject[] = [];
  const pods: PodObject[] = [];
  const services: ServiceObject[] = [];
  const endpointSlices: EndpointSliceObject[] = [];
  const podsPerService = Math.floor(spec.pods / spec.services);
  let extra = spec.pods - podsPerService * spec.services;
  let podN = 0;
  for (let s = 0; s < spec.services; s++) {
    const namespace = nsNames[s % spec.namespaces]!;
    const app = `app-${pad(s, 4)}`;
    const sa = `sa-${app}`;
    serviceAccounts.push({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: sa, namespace, uid: `sa-uid-${s}` } });
    const replicas = podsPerService + (extra-- > 0 ? 1 : 0);
    const sliceEndpoints: NonNullable<EndpointSliceObject['endpoints']> = [];
    const start = Math.floor(rand() * spec.nodes);
    const stride = 1 + Math.floor(rand() * (spec.nodes - 1));
    for (let r = 0; r < replicas; r++) {
      const uid = `pod-uid-${podN}`;
      const ip = ipOf(10, 0x10000 + podN);
      const node = nodes[(start + r * stride) % spec.nodes]!.metadata.name!;
      const name = `${app}-${pad(r, 2)}`;
      const labels: Record<string, string> = { app, 'pod-template-hash': 'abc123' };
      if (rand() < 0.02) labels['ambit.dev/dataplane-mode'] = 'none';
      pods.push({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, namespace, uid, labels, resourceVersion: '1' },
        spec: { nodeName: node, serviceAccountName: sa },
        status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
      });
      sliceEndpoints.push({ addresses: [ip], conditions: { ready: true, serving: true, terminating: false }, nodeName: node, targetRef: { kind: 'Pod', namespace, name, uid } });
      podN++;
    }
    const named = rand() < 0.3;
    services.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: app, namespace, uid: `svc-uid-${s}` },
      spec: { type: 'ClusterIP', clusterIP: ipOf(10, 0x600000 + s), clusterIPs: [ipOf(10, 0x600000 + s)], selector: { app }, ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: named ? 'web' : 8080 }, { name: 'grpc', protocol: 'TCP', port: 9090, targetPort: 9090, appProtocol: 'grpc' }] },
    });
    endpointSlices.push({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: `${app}-abcde`, namespace, uid: `slice-uid-${s}`, labels: { 'kubernetes.io/service-name': app } },
      addressType: 'IPv4',
      endpoints: sliceEndpoints,
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'grpc', port: 9090, protocol: 'TCP' }],
    });
  }
  const authorizationPolicies: KubeObject[] = [];
  for (let p = 0; p < spec.policies; p++) {
    const target = services[Math.floor((p * spec.services) / spec.policies)]!;
    const ns = target.metadata.namespace!;
    const peerNs = pick(nsNames);
    authorizationPolicies.push({
      apiVersion: 'security.ambit.dev/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: `allow-${target.metadata.name}`, namespace: ns, uid: `ap-uid-${p}`, generation: 1 },
      spec: {
        selector: { matchLabels: { app: target.metadata.name! } },
        action: 'ALLOW',
        rules: [{ from: [{ source: { namespaces: [ns, peerNs] } }, { source: { principals: [`cluster.local/ns/${peerNs}/sa/sa-app-${pad(Math.floor(rand() * spec.services), 4)}`] } }], to: [{ operation: { ports: ['8080', '9090'] } }] }],
      },
    });
  }
  const peerAuthentications: KubeObject[] = [
    { apiVersion: 'security.ambit.dev/v1', kind: 'PeerAuthentication', metadata: { name: 'default', namespace: spec.rootNamespace, uid: 'pa-mesh', creationTimestamp: '2026-01-01T00:00:00Z' }, spec: { mtls: { mode: 'STRICT' } } },
    ...nsNames.slice(0, 10).map((ns, i) => ({ apiVersion: 'security.ambit.dev/v1', kind: 'PeerAuthentication', metadata: { name: 'permissive', namespace: ns, uid: `pa-${i}`, creationTimestamp: '2026-01-01T00:00:00Z' }, spec: { mtls: { mode: 'PERMISSIVE' } } })),
  ];
  const httpRoutes: KubeObject[] = [];
  for (let r = 0; r < spec.httpRoutes; r++) {
    const parent = services[(r * 7) % spec.services]!;
    const ns = parent.metadata.namespace!;
    const canary = services.find((s, i) => i > (r * 7) % spec.services && s.metadata.namespace === ns);
    httpRoutes.push({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: `route-${parent.metadata.name}`, namespace: ns, uid: `route-uid-${r}`, generation: 1 },
      spec: {
        parentRefs: [{ group: '', kind: 'Service', name: parent.metadata.name!, port: 80 }],
        rules: [
          { matches: [{ path: { type: 'PathPrefix', value: '/v2' } }], backendRefs: [{ name: (canary ?? parent).metadata.name!, port: 80 }] },
          { backendRefs: [{ name: parent.metadata.name!, port: 80, weight: 90 }, { name: (canary ?? parent).metadata.name!, port: 80, weight: 10 }] },
        ],
      },
    });
  }
  return { namespaces, pods, services, endpointSlices, serviceAccounts, nodes, authorizationPolicies, peerAuthentications, httpRoutes, grpcRoutes: [] };
}
