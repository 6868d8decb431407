/**
 * Core types of the Kubernetes API test server. Every module of the server speaks these; none of
 * them imports the HTTP layer. Object shapes follow the Kubernetes wire format (JSON).
 */

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  finalizers?: string[];
  managedFields?: unknown[];
  [k: string]: unknown;
}

/** Any Kubernetes object as it travels on the wire. */
export interface KObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  [k: string]: unknown;
}

/** A Kubernetes field error, as the real server reports them in Status.details.causes. */
export interface FieldError {
  /** "FieldValueInvalid", "FieldValueRequired", "FieldValueNotSupported", "FieldValueDuplicate",
   *  "FieldValueForbidden", "FieldValueTypeInvalid", "FieldValueTooLong", "FieldValueNotFound" */
  reason: string;
  /** the dotted path, e.g. "spec.replicas" or "spec.template.spec.containers[0].image" */
  field: string;
  /** the human part, e.g. 'Invalid value: -1: must be greater than or equal to 0' */
  message: string;
}

/** Column of a meta.k8s.io/v1 Table. */
export interface TableColumn {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  format: string;
  description: string;
  priority: number;
}

/** Printer column of a CRD version (apiextensions.k8s.io/v1 additionalPrinterColumns). */
export interface CrdPrinterColumn {
  name: string;
  type: string;
  format?: string;
  description?: string;
  priority?: number;
  jsonPath: string;
}

export interface ScaleSubresource {
  specReplicasPath: string;
  statusReplicasPath: string;
  labelSelectorPath?: string;
}

/**
 * Where the schema of a resource comes from:
 * - `model`: a built-in type described by a @kubernetes/client-node model class name
 *   (e.g. "V1Deployment"), whose static attributeTypeMap gives every field and its type;
 * - `openapi`: a CRD version's openAPIV3Schema (structural schema).
 */
export type SchemaRef =
  | { kind: 'model'; model: string }
  | { kind: 'openapi'; schema: Record<string, unknown> };

/** One served resource (one group/version/plural). */
export interface ResourceType {
  group: string; // "" for the core group
  version: string;
  kind: string;
  listKind: string;
  plural: string;
  singular: string;
  namespaced: boolean;
  shortNames: string[];
  categories: string[];
  verbs: string[];
  /** subresources this resource serves besides itself */
  subresources: {
    status?: boolean;
    scale?: ScaleSubresource;
  };
  schema: SchemaRef;
  /** for CRDs: the printer columns of this version */
  printerColumns?: CrdPrinterColumn[];
  /** true for resources served from a CustomResourceDefinition */
  custom: boolean;
}

/** apiVersion string of a resource type: "v1" or "apps/v1". */
export function apiVersionOf(rt: Pick<ResourceType, 'group' | 'version'>): string {
  return rt.group ? `${rt.group}/${rt.version}` : rt.version;
}

/** "deployments.apps" or "pods" - the form the real server uses in messages. */
export function qualifiedResource(rt: Pick<ResourceType, 'group' | 'plural'>): string {
  return rt.group ? `${rt.plural}.${rt.group}` : rt.plural;
}
