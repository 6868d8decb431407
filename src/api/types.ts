/**
 * Wire types of the control → agent push protocol: what a node-scoped snapshot and a delta contain.
 *
 * This is the contract between the control plane and the agents, and the one module both import.
 * The control plane's model (src/state) and snapshot computation (src/control/snapshot.ts) produce
 * objects of exactly these shapes — `snapshotFor()`'s NodeSnapshot and `diff()`'s SnapshotDelta are
 * assignable to the types here (push-compat.test.ts checks it, and the composition root's
 * `hub.publish(snapshotFor(...))` type-checks it). On the wire each resource is the UTF-8 JSON of
 * its type below (see ambit.proto), so adding an optional field needs no proto change.
 *
 * Rules every producer keeps:
 * - Plain data only (JSON-safe); optional fields are absent rather than `undefined`.
 * - Resource records are keyed by the resource's key (workload/peer: pod uid; service, policies:
 *   "<namespace>/<name>"; route: "<Kind>/<namespace>/<name>") and built in key order.
 * - `version` is deterministic: equal snapshot contents give equal versions on every control-plane
 *   replica (a content hash), so an agent that moves to another replica can resume from it.
 */

/** A SPIFFE ID: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`. */
export type SpiffeId = string;

/** A pod on the agent's own node. Key: `uid`. */
export interface Workload {
  uid: string;
  name: string;
  namespace: string;
  node: string;
  /** status.podIPs, in order */
  ips: string[];
  serviceAccount: string;
  identity: SpiffeId;
  /** namespace labelled ambit.dev/dataplane-mode=ambient and pod not labelled ambit.dev/dataplane-mode=none */
  enrolled: boolean;
  labels: Record<string, string>;
  /** keys of the Services that list this workload as an endpoint, sorted */
  services: string[];
}

/** A pod on another node, with what a client needs to reach it and check who it is. Key: `uid`. */
export interface PeerWorkload {
  uid: string;
  ips: string[];
  node: string;
  identity: SpiffeId;
  enrolled: boolean;
  /** Istio's workload name (src/state/workload-name.ts), for telemetry; absent from older control planes */
  workload?: string;
}

export interface ServicePort {
  name: string;
  protocol: string;
  port: number;
  /** the numeric target port; absent when the Service names a container port (see Endpoint.ports) */
  targetPort?: number;
  appProtocol?: string;
}

/** ready: takes new connections; terminating: still serving while shutting down; notReady: neither. */
export type EndpointStatus = 'ready' | 'terminating' | 'notReady';

export interface Endpoint {
  ip: string;
  /** uid of the pod behind the address (a Workload or a PeerWorkload of the snapshot), when it is a pod */
  workload?: string;
  status: EndpointStatus;
  /** service port name → port on this endpoint, only where it differs from ServicePort.targetPort */
  ports?: Record<string, number>;
}

/** A Service. Key: "<namespace>/<name>". */
export interface Service {
  key: string;
  namespace: string;
  name: string;
  /** <name>.<namespace>.svc.<clusterDomain> */
  hostname: string;
  /** cluster IPs; empty for a headless Service */
  vips: string[];
  ports: ServicePort[];
  /** sorted by address */
  endpoints: Endpoint[];
}

/** Istio's AuthorizationPolicy actions (security.istio.io/v1). */
export type AuthzAction = 'ALLOW' | 'DENY' | 'AUDIT' | 'CUSTOM';

export interface AuthzSource {
  principals?: string[];
  notPrincipals?: string[];
  requestPrincipals?: string[];
  notRequestPrincipals?: string[];
  namespaces?: string[];
  notNamespaces?: string[];
  /** "<namespace>/<name>" */
  serviceAccounts?: string[];
  notServiceAccounts?: string[];
  ipBlocks?: string[];
  notIpBlocks?: string[];
  remoteIpBlocks?: string[];
  notRemoteIpBlocks?: string[];
}

export interface AuthzOperation {
  hosts?: string[];
  notHosts?: string[];
  ports?: number[];
  notPorts?: number[];
  methods?: string[];
  notMethods?: string[];
  paths?: string[];
  notPaths?: string[];
}

export interface AuthzCondition {
  key: string;
  values?: string[];
  notValues?: string[];
}

/** One rule: absent lists match anything; present lists need one entry to match (all conditions). */
export interface AuthzRule {
  from?: AuthzSource[];
  to?: AuthzOperation[];
  when?: AuthzCondition[];
}

/** A validated AuthorizationPolicy (security.ambit.dev/v1). Key: "<namespace>/<name>". */
export interface AuthorizationPolicy {
  key: string;
  namespace: string;
  name: string;
  /** absent: all workloads of the scope (the namespace; the mesh in the root namespace) */
  selector?: Record<string, string>;
  /** Services (same namespace) whose selected workloads the policy applies to */
  targetServices?: string[];
  action: AuthzAction;
  provider?: string;
  /** empty: matches nothing */
  rules: AuthzRule[];
}

export type MtlsMode = 'UNSET' | 'DISABLE' | 'PERMISSIVE' | 'STRICT';

/** A validated PeerAuthentication (security.ambit.dev/v1). Key: "<namespace>/<name>". */
export interface PeerAuthentication {
  key: string;
  namespace: string;
  name: string;
  /** creationTimestamp: the oldest policy wins when several apply at one level */
  createdAt: string;
  selector?: Record<string, string>;
  mode: MtlsMode;
  /** port number (as a string key, JSON-friendly) → mode */
  portModes?: Record<string, MtlsMode>;
}

export type RouteKind = 'HTTPRoute' | 'GRPCRoute';

export interface RouteParent {
  /** "namespace/name" of the Service */
  service: string;
  port?: number;
  sectionName?: string;
}

export interface RouteBackend {
  /** "namespace/name" of the Service */
  service: string;
  port: number;
  weight: number;
}

export interface HeaderMatch {
  type: 'Exact' | 'RegularExpression';
  name: string;
  value: string;
}

export interface HttpRouteMatch {
  path?: { type: 'Exact' | 'PathPrefix' | 'RegularExpression'; value: string };
  headers?: HeaderMatch[];
  queryParams?: HeaderMatch[];
  method?: string;
}

export interface GrpcRouteMatch {
  method?: { type: 'Exact' | 'RegularExpression'; service?: string; method?: string };
  headers?: HeaderMatch[];
}

/** A filter keeps its Gateway API shape; the proxy interprets it. */
export interface RouteFilter {
  type: string;
  config?: Record<string, unknown>;
}

export interface RouteRule {
  name?: string;
  matches: (HttpRouteMatch | GrpcRouteMatch)[];
  filters: RouteFilter[];
  backends: RouteBackend[];
  timeouts?: { request?: string; backendRequest?: string };
}

/** An HTTPRoute or GRPCRoute attached to a Service (GAMMA). Key: "<Kind>/<namespace>/<name>". */
export interface Route {
  key: string;
  kind: RouteKind;
  namespace: string;
  name: string;
  parents: RouteParent[];
  hostnames: string[];
  rules: RouteRule[];
}

/** Mesh-wide trust settings every node gets. */
export interface TrustSettings {
  trustDomain: string;
  rootNamespace: string;
  /** PEM root certificates the agent trusts (old and new together during a CA rotation) */
  roots: string[];
}

/** The resource records of a snapshot, each keyed by resource key. */
export interface SnapshotResources {
  workloads: Record<string, Workload>;
  peers: Record<string, PeerWorkload>;
  services: Record<string, Service>;
  authorizationPolicies: Record<string, AuthorizationPolicy>;
  peerAuthentications: Record<string, PeerAuthentication>;
  routes: Record<string, Route>;
}

export type ResourceType = keyof SnapshotResources;

/** The resource types in a fixed order, for code that walks every type. */
export const RESOURCE_TYPES: readonly ResourceType[] = ['workloads', 'peers', 'services', 'authorizationPolicies', 'peerAuthentications', 'routes'];

/** Everything one node needs, at one version. */
export interface NodeSnapshot extends SnapshotResources {
  /** the node, or "" for the full-mesh snapshot */
  node: string;
  /** content hash; never '' */
  version: string;
  trust: TrustSettings;
}

/** Changes of one type between two versions: whole resources added or updated, keys removed. */
export interface ResourceDelta<T> {
  added: Record<string, T>;
  updated: Record<string, T>;
  removed: string[];
}

/** What turns the snapshot at `from` into the one at `to`. `trust` is present only when it changed. */
export type SnapshotDelta = {
  node: string;
  from: string;
  to: string;
  trust?: TrustSettings;
} & { [K in ResourceType]: ResourceDelta<SnapshotResources[K][string]> };

/** Why an agent rejected one resource of a version (carried by a NACK). */
export interface ResourceError {
  /** 'trust': the trust settings; 'snapshot': the whole version could not be applied */
  type: ResourceType | 'trust' | 'snapshot';
  key: string;
  message: string;
}

/** The key a resource of `type` is stored under: pod uid for workloads and peers, `key` otherwise. */
export function resourceKey(type: ResourceType, resource: SnapshotResources[ResourceType][string]): string {
  return type === 'workloads' || type === 'peers' ? (resource as PeerWorkload).uid : (resource as { key: string }).key;
}
