/**
 * Strategic-merge-patch metadata of the built-in types: which lists merge by which key, which are
 * replaced, which carry retainKeys. These are the `patchStrategy` / `patchMergeKey` tags of the
 * Kubernetes Go types (the same facts the real server publishes as x-kubernetes-patch-strategy and
 * x-kubernetes-patch-merge-key in its OpenAPI documents).
 *
 * The table is keyed by @kubernetes/client-node model name and json field name. A field that is not
 * listed has no patch strategy: its maps merge key by key and its lists are replaced whole. That is
 * the case for every field of rbac/v1, discovery/v1 (EndpointSlice), networking/v1, coordination/v1,
 * and for PodSpec.tolerations, Container.envFrom, ServiceAccount.imagePullSecrets, among others.
 *
 * Source: the struct tags of k8s.io/api (core/v1, apps/v1, batch/v1, autoscaling/v2, policy/v1,
 * admissionregistration/v1, storage/v1, flowcontrol/v1, resource/v1*) and k8s.io/apimachinery
 * meta/v1, cross-checked against the tags compiled into kubectl v1.32.
 */

export interface PatchMeta {
  /** 'merge', 'replace', 'retainKeys' or 'merge,retainKeys' */
  strategy?: string;
  /** the key that identifies list elements when strategy includes merge */
  mergeKey?: string;
}

const byName = (mergeKey: string): PatchMeta => ({ strategy: 'merge', mergeKey });
const mergeSet: PatchMeta = { strategy: 'merge' }; // a list of primitives merged as an ordered set
const conditions: Record<string, PatchMeta> = { conditions: byName('type') };

/** model name → json field → metadata */
const TABLE: Readonly<Record<string, Readonly<Record<string, PatchMeta>>>> = {
  // meta/v1
  V1ObjectMeta: { finalizers: mergeSet, ownerReferences: byName('uid') },

  // core/v1: pods and containers
  V1PodSpec: {
    volumes: { strategy: 'merge,retainKeys', mergeKey: 'name' },
    initContainers: byName('name'),
    containers: byName('name'),
    ephemeralContainers: byName('name'),
    imagePullSecrets: byName('name'),
    hostAliases: byName('ip'),
    topologySpreadConstraints: byName('topologyKey'),
    schedulingGates: byName('name'),
    resourceClaims: { strategy: 'merge,retainKeys', mergeKey: 'name' },
  },
  V1Container: {
    ports: byName('containerPort'),
    env: byName('name'),
    volumeMounts: byName('mountPath'),
    volumeDevices: byName('devicePath'),
  },
  // EphemeralContainerCommon carries the same tags as Container.
  V1EphemeralContainer: {
    ports: byName('containerPort'),
    env: byName('name'),
    volumeMounts: byName('mountPath'),
    volumeDevices: byName('devicePath'),
  },
  V1PodStatus: {
    conditions: byName('type'),
    podIPs: byName('ip'),
    hostIPs: byName('ip'),
    resourceClaimStatuses: { strategy: 'merge,retainKeys', mergeKey: 'name' },
  },
  V1ContainerStatus: { volumeMounts: byName('mountPath'), allocatedResourcesStatus: byName('name') },

  // core/v1: the rest
  V1ServiceSpec: { ports: byName('port') },
  V1ServiceStatus: conditions,
  V1ServiceAccount: { secrets: byName('name') },
  V1NodeSpec: { podCIDRs: mergeSet },
  V1NodeStatus: { conditions: byName('type'), addresses: byName('type') },
  V1NamespaceStatus: conditions,
  V1PersistentVolumeClaimStatus: conditions,
  V1ReplicationControllerStatus: conditions,
  V1ComponentStatus: conditions,

  // apps/v1
  V1DeploymentSpec: { strategy: { strategy: 'retainKeys' } },
  V1DeploymentStatus: conditions,
  V1ReplicaSetStatus: conditions,
  V1DaemonSetStatus: conditions,
  V1StatefulSetStatus: conditions,

  // batch/v1, autoscaling/v2, policy/v1
  V1JobStatus: conditions,
  V2HorizontalPodAutoscalerStatus: conditions,
  V1PodDisruptionBudgetSpec: { selector: { strategy: 'replace' } },
  V1PodDisruptionBudgetStatus: conditions,

  // admissionregistration/v1
  V1MutatingWebhookConfiguration: { webhooks: byName('name') },
  V1ValidatingWebhookConfiguration: { webhooks: byName('name') },
  V1MutatingWebhook: { matchConditions: byName('name') },
  V1ValidatingWebhook: { matchConditions: byName('name') },
  V1ValidatingAdmissionPolicySpec: { matchConditions: byName('name'), variables: byName('name') },

  // storage/v1, flowcontrol/v1, resource.k8s.io
  V1CSINodeSpec: { drivers: byName('name') },
  V1FlowSchemaStatus: conditions,
  V1PriorityLevelConfigurationStatus: conditions,
  V1ResourceClaimStatus: { reservedFor: byName('uid') },
  V1beta1ResourceClaimStatus: { reservedFor: byName('uid') },
  V1beta2ResourceClaimStatus: { reservedFor: byName('uid') },
};

// The metadata objects are shared with callers; freeze them so no caller can change the table.
for (const fields of Object.values(TABLE)) for (const meta of Object.values(fields)) Object.freeze(meta);

/** Patch metadata of `field` (json name) of model `model` (client-node model name), if any. */
export function patchMeta(model: string, field: string): PatchMeta | undefined {
  const fields = TABLE[model];
  return fields && Object.hasOwn(fields, field) ? fields[field] : undefined;
}

/** Every (model, field, metadata) triple, for publishing x-kubernetes-patch-* in OpenAPI documents. */
export function* allPatchMeta(): Iterable<[model: string, field: string, meta: PatchMeta]> {
  for (const [model, fields] of Object.entries(TABLE)) {
    for (const [field, meta] of Object.entries(fields)) yield [model, field, meta];
  }
}
