/**
 * The built-in resources this server serves, with the names, short names, categories, verbs and
 * subresources the real kube-apiserver publishes in discovery. Kinds that need a controller to mean
 * anything (StatefulSet, Job, ...) are absent on purpose: serving them without their controller
 * would accept objects that never do anything.
 */
import type { ResourceType } from './types.js';

const CRUD = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];
const CREATE_ONLY = ['create'];

interface Def {
  group: string;
  version: string;
  kind: string;
  plural: string;
  namespaced: boolean;
  model: string;
  shortNames?: string[];
  categories?: string[];
  verbs?: string[];
  status?: boolean;
  scale?: boolean;
}

const defs: Def[] = [
  { group: '', version: 'v1', kind: 'Namespace', plural: 'namespaces', namespaced: false, model: 'V1Namespace', shortNames: ['ns'], status: true, verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'] },
  { group: '', version: 'v1', kind: 'Pod', plural: 'pods', namespaced: true, model: 'V1Pod', shortNames: ['po'], categories: ['all'], status: true },
  { group: '', version: 'v1', kind: 'Service', plural: 'services', namespaced: true, model: 'V1Service', shortNames: ['svc'], categories: ['all'], status: true, verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'] },
  { group: '', version: 'v1', kind: 'Endpoints', plural: 'endpoints', namespaced: true, model: 'V1Endpoints', shortNames: ['ep'] },
  { group: '', version: 'v1', kind: 'ServiceAccount', plural: 'serviceaccounts', namespaced: true, model: 'V1ServiceAccount', shortNames: ['sa'] },
  { group: '', version: 'v1', kind: 'Secret', plural: 'secrets', namespaced: true, model: 'V1Secret' },
  { group: '', version: 'v1', kind: 'ConfigMap', plural: 'configmaps', namespaced: true, model: 'V1ConfigMap', shortNames: ['cm'] },
  { group: '', version: 'v1', kind: 'Node', plural: 'nodes', namespaced: false, model: 'V1Node', shortNames: ['no'], status: true },
  { group: '', version: 'v1', kind: 'Event', plural: 'events', namespaced: true, model: 'CoreV1Event', shortNames: ['ev'] },
  { group: 'apps', version: 'v1', kind: 'Deployment', plural: 'deployments', namespaced: true, model: 'V1Deployment', shortNames: ['deploy'], categories: ['all'], status: true, scale: true },
  { group: 'apps', version: 'v1', kind: 'ReplicaSet', plural: 'replicasets', namespaced: true, model: 'V1ReplicaSet', shortNames: ['rs'], categories: ['all'], status: true, scale: true },
  { group: 'apps', version: 'v1', kind: 'DaemonSet', plural: 'daemonsets', namespaced: true, model: 'V1DaemonSet', shortNames: ['ds'], categories: ['all'], status: true },
  { group: 'discovery.k8s.io', version: 'v1', kind: 'EndpointSlice', plural: 'endpointslices', namespaced: true, model: 'V1EndpointSlice' },
  { group: 'coordination.k8s.io', version: 'v1', kind: 'Lease', plural: 'leases', namespaced: true, model: 'V1Lease' },
  { group: 'networking.k8s.io', version: 'v1', kind: 'NetworkPolicy', plural: 'networkpolicies', namespaced: true, model: 'V1NetworkPolicy', shortNames: ['netpol'] },
  { group: 'rbac.authorization.k8s.io', version: 'v1', kind: 'Role', plural: 'roles', namespaced: true, model: 'V1Role' },
  { group: 'rbac.authorization.k8s.io', version: 'v1', kind: 'RoleBinding', plural: 'rolebindings', namespaced: true, model: 'V1RoleBinding' },
  { group: 'rbac.authorization.k8s.io', version: 'v1', kind: 'ClusterRole', plural: 'clusterroles', namespaced: false, model: 'V1ClusterRole' },
  { group: 'rbac.authorization.k8s.io', version: 'v1', kind: 'ClusterRoleBinding', plural: 'clusterrolebindings', namespaced: false, model: 'V1ClusterRoleBinding' },
  { group: 'authentication.k8s.io', version: 'v1', kind: 'TokenReview', plural: 'tokenreviews', namespaced: false, model: 'V1TokenReview', verbs: CREATE_ONLY },
  { group: 'authentication.k8s.io', version: 'v1', kind: 'SelfSubjectReview', plural: 'selfsubjectreviews', namespaced: false, model: 'V1SelfSubjectReview', verbs: CREATE_ONLY },
  { group: 'authorization.k8s.io', version: 'v1', kind: 'SubjectAccessReview', plural: 'subjectaccessreviews', namespaced: false, model: 'V1SubjectAccessReview', verbs: CREATE_ONLY },
  { group: 'authorization.k8s.io', version: 'v1', kind: 'SelfSubjectAccessReview', plural: 'selfsubjectaccessreviews', namespaced: false, model: 'V1SelfSubjectAccessReview', verbs: CREATE_ONLY },
  { group: 'authorization.k8s.io', version: 'v1', kind: 'LocalSubjectAccessReview', plural: 'localsubjectaccessreviews', namespaced: true, model: 'V1LocalSubjectAccessReview', verbs: CREATE_ONLY },
  { group: 'authorization.k8s.io', version: 'v1', kind: 'SelfSubjectRulesReview', plural: 'selfsubjectrulesreviews', namespaced: false, model: 'V1SelfSubjectRulesReview', verbs: CREATE_ONLY },
  { group: 'apiextensions.k8s.io', version: 'v1', kind: 'CustomResourceDefinition', plural: 'customresourcedefinitions', namespaced: false, model: 'V1CustomResourceDefinition', shortNames: ['crd', 'crds'], categories: ['api-extensions'], status: true },
];

/** Resources that are never stored: a POST computes an answer (reviews). */
export const VIRTUAL_KINDS = new Set(['TokenReview', 'SelfSubjectReview', 'SubjectAccessReview', 'SelfSubjectAccessReview', 'LocalSubjectAccessReview', 'SelfSubjectRulesReview']);

/** Kinds whose metadata.generation tracks spec changes. */
export const GENERATION_KINDS = new Set(['Deployment', 'ReplicaSet', 'DaemonSet', 'CustomResourceDefinition', 'NetworkPolicy', 'Pod']);

export function builtinResources(): ResourceType[] {
  return defs.map((d) => {
    const rt: ResourceType = {
      group: d.group,
      version: d.version,
      kind: d.kind,
      listKind: `${d.kind}List`,
      plural: d.plural,
      singular: d.kind.toLowerCase(),
      namespaced: d.namespaced,
      shortNames: d.shortNames ?? [],
      categories: d.categories ?? [],
      verbs: d.verbs ?? CRUD,
      subresources: {},
      schema: { kind: 'model', model: d.model },
      custom: false,
    };
    if (d.status) rt.subresources.status = true;
    if (d.scale) rt.subresources.scale = { specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas', labelSelectorPath: '.status.selector' };
    return rt;
  });
}

/** Preferred group order in discovery, as the real server lists its groups. */
export const GROUP_ORDER = ['', 'apiregistration.k8s.io', 'apps', 'events.k8s.io', 'authentication.k8s.io', 'authorization.k8s.io', 'autoscaling', 'batch', 'certificates.k8s.io', 'networking.k8s.io', 'policy', 'rbac.authorization.k8s.io', 'storage.k8s.io', 'admissionregistration.k8s.io', 'apiextensions.k8s.io', 'scheduling.k8s.io', 'coordination.k8s.io', 'node.k8s.io', 'discovery.k8s.io', 'flowcontrol.apiserver.k8s.io'];

/** Subresources served beyond status/scale, per resource (discovery lists them; the server routes them). */
export const EXTRA_SUBRESOURCES: Record<string, { name: string; kind: string; group?: string; version?: string; verbs: string[] }[]> = {
  pods: [
    { name: 'log', kind: 'Pod', verbs: ['get'] },
    { name: 'exec', kind: 'PodExecOptions', verbs: ['create', 'get'] },
    { name: 'attach', kind: 'PodAttachOptions', verbs: ['create', 'get'] },
    { name: 'portforward', kind: 'PodPortForwardOptions', verbs: ['create', 'get'] },
    { name: 'binding', kind: 'Binding', verbs: ['create'] },
    { name: 'eviction', kind: 'Eviction', group: 'policy', version: 'v1', verbs: ['create'] },
  ],
  serviceaccounts: [{ name: 'token', kind: 'TokenRequest', group: 'authentication.k8s.io', version: 'v1', verbs: ['create'] }],
  namespaces: [{ name: 'finalize', kind: 'Namespace', verbs: ['update'] }],
};
