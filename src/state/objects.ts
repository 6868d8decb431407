/**
 * The Kubernetes objects the mesh model reads, as plain wire-format JSON (what a watch delivers).
 * Only the fields Ambit uses are typed; everything else passes through untouched. Nothing here does
 * I/O: the watch layer (src/k8s) fills these, the model (model.ts) reads them.
 */

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** Any Kubernetes object on the wire. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  spec?: unknown;
  status?: unknown;
  [k: string]: unknown;
}

export interface PodObject extends KubeObject {
  spec?: { nodeName?: string; serviceAccountName?: string; serviceAccount?: string; hostNetwork?: boolean };
  status?: { phase?: string; podIP?: string; podIPs?: { ip: string }[] };
}

export interface ServicePortSpec {
  name?: string;
  protocol?: string;
  port: number;
  targetPort?: number | string;
  appProtocol?: string;
}

export interface ServiceObject extends KubeObject {
  spec?: { type?: string; clusterIP?: string; clusterIPs?: string[]; ports?: ServicePortSpec[]; selector?: Record<string, string> };
}

export interface EndpointSliceObject extends KubeObject {
  addressType?: string;
  endpoints?: {
    addresses: string[];
    conditions?: { ready?: boolean; serving?: boolean; terminating?: boolean };
    nodeName?: string;
    targetRef?: { kind?: string; namespace?: string; name?: string; uid?: string };
  }[];
  ports?: { name?: string; port?: number; protocol?: string }[] | null;
}

/** The label an EndpointSlice carries to name its Service. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/** "namespace/name" (or "name" for cluster-scoped objects): the key every map in the model uses. */
export function keyOf(o: KubeObject): string {
  const ns = o.metadata.namespace;
  return ns ? `${ns}/${o.metadata.name ?? ''}` : (o.metadata.name ?? '');
}


/** A copy of a string map with its keys sorted, so serialising the model is deterministic. */
export function sortedMap(m: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (m) for (const k of Object.keys(m).sort()) out[k] = m[k]!;
  return out;
}

/** A deep copy with object keys sorted at every level (for user-supplied free-form objects). */
export function canonical<T>(v: T): T {
  if (Array.isArray(v)) return v.map(canonical) as T;
  if (v === null || typeof v !== 'object') return v;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v as Record<string, unknown>).sort()) out[k] = canonical((v as Record<string, unknown>)[k]);
  return out as T;
}
