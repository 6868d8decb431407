/**
 * What a reconciler decides: a list of writes for the manager to perform in order. Reconcilers are
 * pure (objects in, actions out), so every controller decision is table-testable without a store.
 */
import type { KObject } from '../types.js';

export type Action =
  | { verb: 'create'; resource: string; object: KObject }
  | { verb: 'update'; resource: string; object: KObject }
  | { verb: 'updateStatus'; resource: string; object: KObject }
  | {
      verb: 'delete';
      resource: string;
      namespace?: string;
      name: string;
      /** precondition: only delete this incarnation of the object */
      uid?: string;
      propagationPolicy?: 'Orphan' | 'Background' | 'Foreground';
    };

/** Resource names as the ApiClient spells them. */
export const R = {
  pods: 'v1/pods',
  services: 'v1/services',
  endpoints: 'v1/endpoints',
  endpointSlices: 'discovery.k8s.io/v1/endpointslices',
  nodes: 'v1/nodes',
  namespaces: 'v1/namespaces',
  serviceAccounts: 'v1/serviceaccounts',
  configMaps: 'v1/configmaps',
  replicaSets: 'apps/v1/replicasets',
  deployments: 'apps/v1/deployments',
  daemonSets: 'apps/v1/daemonsets',
  controllerRevisions: 'apps/v1/controllerrevisions',
} as const;

export const create = (resource: string, object: KObject): Action => ({ verb: 'create', resource, object });
export const update = (resource: string, object: KObject): Action => ({ verb: 'update', resource, object });
export const updateStatus = (resource: string, object: KObject): Action => ({ verb: 'updateStatus', resource, object });

export function del(
  resource: string,
  obj: KObject,
  propagationPolicy?: 'Orphan' | 'Background' | 'Foreground',
): Action {
  const a: Action = { verb: 'delete', resource, name: obj.metadata.name ?? '' };
  if (obj.metadata.namespace) a.namespace = obj.metadata.namespace;
  if (obj.metadata.uid) a.uid = obj.metadata.uid;
  if (propagationPolicy) a.propagationPolicy = propagationPolicy;
  return a;
}

/** One line per action ("create v1/pods ns/web-"), for logs and compact test expectations. */
export function describe(a: Action): string {
  if (a.verb === 'delete') return `delete ${a.resource} ${a.namespace ? `${a.namespace}/` : ''}${a.name}`;
  const m = a.object.metadata;
  const name = m.name ?? m.generateName ?? '';
  return `${a.verb} ${a.resource} ${m.namespace ? `${m.namespace}/` : ''}${name}`;
}
