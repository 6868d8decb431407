/**
 * The Kubernetes resources Ambit's control plane watches, and how their REST paths are formed.
 * Plain data: adding a watched kind is one entry here.
 */

export interface ResourceKind {
  /** "" for the core group */
  group: string;
  version: string;
  /** the REST resource name, e.g. "endpointslices" */
  plural: string;
  kind: string;
  namespaced: boolean;
}

export const RESOURCES = {
  namespaces: { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false },
  pods: { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true },
  services: { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true },
  endpointSlices: { group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices', kind: 'EndpointSlice', namespaced: true },
  serviceAccounts: { group: '', version: 'v1', plural: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true },
  nodes: { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false },
  authorizationPolicies: { group: 'security.ambit.dev', version: 'v1', plural: 'authorizationpolicies', kind: 'AuthorizationPolicy', namespaced: true },
  peerAuthentications: { group: 'security.ambit.dev', version: 'v1', plural: 'peerauthentications', kind: 'PeerAuthentication', namespaced: true },
  httpRoutes: { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'httproutes', kind: 'HTTPRoute', namespaced: true },
  grpcRoutes: { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'grpcroutes', kind: 'GRPCRoute', namespaced: true },
} as const satisfies Record<string, ResourceKind>;

export type WatchedResource = keyof typeof RESOURCES;

export function apiVersionOf(r: ResourceKind): string {
  return r.group ? `${r.group}/${r.version}` : r.version;
}

/** The collection path: /api/v1/pods, /apis/discovery.k8s.io/v1/namespaces/x/endpointslices, … */
export function collectionPath(r: ResourceKind, namespace?: string): string {
  const base = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
  return r.namespaced && namespace ? `${base}/namespaces/${encodeURIComponent(namespace)}/${r.plural}` : `${base}/${r.plural}`;
}

/** The path of one object (optionally a subresource such as "status"). */
export function objectPath(r: ResourceKind, namespace: string | undefined, name: string, subresource?: string): string {
  const base = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
  const ns = r.namespaced ? `/namespaces/${encodeURIComponent(namespace ?? '')}` : '';
  return `${base}${ns}/${r.plural}/${encodeURIComponent(name)}${subresource ? `/${subresource}` : ''}`;
}
