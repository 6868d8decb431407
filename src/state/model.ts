/**
 * The mesh model: a pure function from the Kubernetes objects Ambit watches to what the mesh is made
 * of — workloads (pods with their identity and enrolment), services (VIPs, ports, endpoints pointing
 * at workloads), normalised policies and routes — plus the acceptance status of every policy and
 * route. An invalid policy or route is left out of the model and reported; it never disturbs
 * anything else. The snapshot code (src/control/snapshot.ts) cuts node-scoped views out of this.
 */
import type { Endpoint, EndpointStatus, Service, ServicePort, Workload } from '../api/types.js';
import type { EndpointSliceObject, KubeObject, PodObject, ServiceObject } from './objects.js';
import { SERVICE_NAME_LABEL, keyOf, sortedMap } from './objects.js';
import { parseAuthorizationPolicy, parsePeerAuthentication, type AuthorizationPolicy, type PeerAuthentication } from './policy.js';
import { isMeshRoute, parseRoute, type Route, type RouteKind } from './routes.js';

// The model's output types are the push protocol's wire types (one definition, in src/api).
export type { Endpoint, EndpointStatus, Service, ServicePort, Workload };

/** Namespace label that enrols every pod of the namespace. */
export const DATAPLANE_MODE_LABEL = 'ambit.dev/dataplane-mode';
export const DATAPLANE_AMBIENT = 'ambient';
/** Pod label value (same key) that opts one pod out. */
export const DATAPLANE_NONE = 'none';

export interface MeshConfig {
  /** SPIFFE trust domain, default "cluster.local" */
  trustDomain: string;
  /** policies here apply mesh-wide (Istio's root namespace) */
  rootNamespace: string;
  /** DNS suffix of service hostnames, default "cluster.local" */
  clusterDomain: string;
}

export const DEFAULT_MESH_CONFIG: MeshConfig = { trustDomain: 'cluster.local', rootNamespace: 'ambit-system', clusterDomain: 'cluster.local' };

/** Everything the model is computed from, as plain wire-format objects. */
export interface ClusterObjects {
  namespaces: readonly KubeObject[];
  pods: readonly PodObject[];
  services: readonly ServiceObject[];
  endpointSlices: readonly EndpointSliceObject[];
  serviceAccounts: readonly KubeObject[];
  nodes: readonly KubeObject[];
  authorizationPolicies: readonly KubeObject[];
  peerAuthentications: readonly KubeObject[];
  httpRoutes: readonly KubeObject[];
  grpcRoutes: readonly KubeObject[];
}

export type StatusKind = 'AuthorizationPolicy' | 'PeerAuthentication' | RouteKind;

export interface Condition {
  type: 'Accepted';
  status: 'True' | 'False';
  reason: 'Accepted' | 'Invalid';
  message: string;
  observedGeneration?: number;
}

/** The acceptance of one user object, to be written to its status. */
export interface ObjectStatus {
  kind: StatusKind;
  namespace: string;
  name: string;
  condition: Condition;
}

export interface MeshModel {
  config: MeshConfig;
  /** by pod uid */
  workloads: Map<string, Workload>;
  /** by "namespace/name" */
  services: Map<string, Service>;
  authorizationPolicies: Map<string, AuthorizationPolicy>;
  peerAuthentications: Map<string, PeerAuthentication>;
  /** by routeKey(kind, namespace, name) */
  routes: Map<string, Route>;
  /** node names, sorted */
  nodes: string[];
  /** one entry per AuthorizationPolicy, PeerAuthentication and mesh route, valid or not */
  statuses: ObjectStatus[];
}

export function spiffeIdentity(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

const byString = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** The addresses of a pod: status.podIPs, else status.podIP. */
export function podIps(pod: PodObject): string[] {
  const ips = pod.status?.podIPs?.map((p) => p.ip).filter((ip) => typeof ip === 'string' && ip !== '') ?? [];
  if (ips.length > 0) return ips;
  return pod.status?.podIP ? [pod.status.podIP] : [];
}

/** Whether a pod is in the mesh: its namespace is ambient, it did not opt out, and it has its own network namespace. */
export function isEnrolled(pod: PodObject, namespaceLabels: Record<string, string> | undefined): boolean {
  if (namespaceLabels?.[DATAPLANE_MODE_LABEL] !== DATAPLANE_AMBIENT) return false;
  if (pod.metadata.labels?.[DATAPLANE_MODE_LABEL] === DATAPLANE_NONE) return false;
  return pod.spec?.hostNetwork !== true;
}

/** A pod is a workload once it is scheduled and until it has finished (a finished pod's IP may be reused). */
function isLiveScheduledPod(pod: PodObject): boolean {
  const phase = pod.status?.phase;
  return !!pod.spec?.nodeName && !!pod.metadata.uid && phase !== 'Succeeded' && phase !== 'Failed';
}

export function workloadOf(pod: PodObject, namespaceLabels: Record<string, string> | undefined, config: MeshConfig): Workload {
  const namespace = pod.metadata.namespace ?? '';
  const serviceAccount = pod.spec?.serviceAccountName ?? pod.spec?.serviceAccount ?? 'default';
  return {
    uid: pod.metadata.uid ?? '',
    name: pod.metadata.name ?? '',
    namespace,
    node: pod.spec?.nodeName ?? '',
    ips: podIps(pod),
    serviceAccount,
    identity: spiffeIdentity(config.trustDomain, namespace, serviceAccount),
    enrolled: isEnrolled(pod, namespaceLabels),
    labels: sortedMap(pod.metadata.labels),
    services: [],
  };
}

function servicePortsOf(svc: ServiceObject): ServicePort[] {
  return (svc.spec?.ports ?? []).map((p) => {
    const out: ServicePort = { name: p.name ?? '', protocol: p.protocol ?? 'TCP', port: p.port };
    // targetPort defaults to port; a string is a container port name resolved per endpoint
    const target = p.targetPort ?? p.port;
    if (typeof target === 'number') out.targetPort = target;
    else if (/^\d+$/.test(target)) out.targetPort = Number(target);
    if (p.appProtocol) out.appProtocol = p.appProtocol;
    return out;
  });
}

function endpointStatus(c: { ready?: boolean; serving?: boolean; terminating?: boolean } | undefined): EndpointStatus {
  // a missing `ready` means ready (EndpointSlice API: "nil should be interpreted as true")
  if (c?.ready ?? true) return 'ready';
  if ((c?.serving ?? false) && (c?.terminating ?? false)) return 'terminating';
  return 'notReady';
}

/** The endpoints of one Service from all its slices, one per address, sorted by address. */
export function endpointsOf(ports: readonly ServicePort[], slices: readonly EndpointSliceObject[], workloadByIp: ReadonlyMap<string, string>): Endpoint[] {
  const byIp = new Map<string, Endpoint>();
  for (const slice of slices) {
    if (slice.addressType === 'FQDN') continue;
    const slicePorts = new Map((slice.ports ?? []).map((p) => [p.name ?? '', p.port]));
    for (const ep of slice.endpoints ?? []) {
      for (const ip of ep.addresses ?? []) {
        if (byIp.has(ip)) continue;
        const out: Endpoint = { ip, status: endpointStatus(ep.conditions) };
        const uid = ep.targetRef?.kind === 'Pod' && ep.targetRef.uid ? ep.targetRef.uid : workloadByIp.get(ip);
        if (uid) out.workload = uid;
        const diff: Record<string, number> = {};
        for (const sp of ports) {
          const actual = slicePorts.get(sp.name);
          if (actual !== undefined && actual !== sp.targetPort) diff[sp.name] = actual;
        }
        if (Object.keys(diff).length > 0) out.ports = diff;
        byIp.set(ip, out);
      }
    }
  }
  return [...byIp.values()].sort((a, b) => byString(a.ip, b.ip));
}

function vipsOf(svc: ServiceObject): string[] {
  const ips = svc.spec?.clusterIPs?.length ? svc.spec.clusterIPs : svc.spec?.clusterIP ? [svc.spec.clusterIP] : [];
  return ips.filter((ip) => ip && ip !== 'None');
}

function accepted(kind: StatusKind, obj: KubeObject): ObjectStatus {
  const condition: Condition = { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'Accepted by ambit-control' };
  if (obj.metadata.generation !== undefined) condition.observedGeneration = obj.metadata.generation;
  return { kind, namespace: obj.metadata.namespace ?? '', name: obj.metadata.name ?? '', condition };
}

function rejected(kind: StatusKind, obj: KubeObject, message: string): ObjectStatus {
  const s = accepted(kind, obj);
  s.condition = { ...s.condition, status: 'False', reason: 'Invalid', message: `${kind} ${keyOf(obj)} is not applied; fix: ${message}` };
  return s;
}

/** Reads user objects of one kind: the valid ones into `into`, a status for each. */
function readAll<T extends { key: string }>(kind: StatusKind, objects: readonly KubeObject[], parse: (o: KubeObject) => { ok: true; value: T } | { ok: false; problems: { message(): string } }, into: Map<string, T>, statuses: ObjectStatus[]): void {
  for (const obj of objects) {
    const r = parse(obj);
    if (r.ok) {
      into.set(r.value.key, r.value);
      statuses.push(accepted(kind, obj));
    } else statuses.push(rejected(kind, obj, r.problems.message()));
  }
}

/** Computes the mesh model from the cluster's objects. Pure and deterministic. */
export function computeModel(objects: ClusterObjects, config: MeshConfig = DEFAULT_MESH_CONFIG): MeshModel {
  const nsLabels = new Map(objects.namespaces.map((n) => [n.metadata.name ?? '', n.metadata.labels ?? {}]));
  const workloads = new Map<string, Workload>();
  const workloadByIp = new Map<string, string>();
  for (const pod of [...objects.pods].sort((a, b) => byString(a.metadata.uid ?? '', b.metadata.uid ?? ''))) {
    if (!isLiveScheduledPod(pod)) continue;
    const w = workloadOf(pod, nsLabels.get(pod.metadata.namespace ?? ''), config);
    workloads.set(w.uid, w);
    // host-network pods share the node's address: an IP does not identify them
    if (pod.spec?.hostNetwork !== true) for (const ip of w.ips) workloadByIp.set(ip, w.uid);
  }

  const slicesByService = new Map<string, EndpointSliceObject[]>();
  for (const s of objects.endpointSlices) {
    const svc = s.metadata.labels?.[SERVICE_NAME_LABEL];
    if (!svc) continue;
    const key = `${s.metadata.namespace ?? ''}/${svc}`;
    const list = slicesByService.get(key) ?? [];
    list.push(s);
    slicesByService.set(key, list);
  }

  const services = new Map<string, Service>();
  for (const svc of [...objects.services].sort((a, b) => byString(keyOf(a), keyOf(b)))) {
    if (svc.spec?.type === 'ExternalName') continue;
    const key = keyOf(svc);
    const ports = servicePortsOf(svc);
    const endpoints = endpointsOf(ports, slicesByService.get(key) ?? [], workloadByIp);
    const namespace = svc.metadata.namespace ?? '';
    const name = svc.metadata.name ?? '';
    services.set(key, { key, namespace, name, hostname: `${name}.${namespace}.svc.${config.clusterDomain}`, vips: vipsOf(svc), ports, endpoints });
    for (const ep of endpoints) {
      const w = ep.workload ? workloads.get(ep.workload) : undefined;
      if (w && !w.services.includes(key)) w.services.push(key);
    }
  }
  for (const w of workloads.values()) w.services.sort(byString);

  const statuses: ObjectStatus[] = [];
  const authorizationPolicies = new Map<string, AuthorizationPolicy>();
  readAll('AuthorizationPolicy', objects.authorizationPolicies, parseAuthorizationPolicy, authorizationPolicies, statuses);
  const peerAuthentications = new Map<string, PeerAuthentication>();
  readAll('PeerAuthentication', objects.peerAuthentications, parsePeerAuthentication, peerAuthentications, statuses);
  const routes = new Map<string, Route>();
  for (const [kind, list] of [['HTTPRoute', objects.httpRoutes], ['GRPCRoute', objects.grpcRoutes]] as const) {
    // a route whose parents are all Gateways belongs to a gateway implementation, not to the mesh
    readAll(kind, list.filter(isMeshRoute), (o) => parseRoute(kind, o), routes, statuses);
  }
  statuses.sort((a, b) => byString(`${a.kind}/${a.namespace}/${a.name}`, `${b.kind}/${b.namespace}/${b.name}`));

  const nodes = objects.nodes.map((n) => n.metadata.name ?? '').sort(byString);
  return { config, workloads, services, authorizationPolicies, peerAuthentications, routes, nodes, statuses };
}
