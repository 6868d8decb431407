/**
 * Object builders for the controller tests (test-only): compact pods, nodes and owners with
 * just the fields the controllers read.
 */
import type { KObject, OwnerReference } from '../types.js';
import { rfc3339 } from './meta.js';

export const T0 = Date.parse('2024-05-01T10:00:00Z');
export const at = (secs: number): string => rfc3339(T0 + secs * 1000);

export function ref(kind: string, name: string, uid: string, apiVersion = 'apps/v1'): OwnerReference {
  return { apiVersion, kind, name, uid, controller: true, blockOwnerDeletion: true };
}

export interface PodOpts {
  ns?: string;
  labels?: Record<string, string>;
  owner?: OwnerReference;
  node?: string;
  ip?: string;
  phase?: string;
  ready?: boolean;
  /** seconds after T0 the pod became ready */
  readySince?: number;
  /** seconds after T0 the pod was created */
  created?: number;
  deleting?: boolean;
  ports?: { name?: string; containerPort: number; protocol?: string }[];
  restarts?: number;
}

export function pod(name: string, o: PodOpts = {}): KObject {
  const conditions = o.ready === undefined ? [] : [{ type: 'Ready', status: o.ready ? 'True' : 'False', lastTransitionTime: at(o.readySince ?? 0) }];
  const p: KObject = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: o.ns ?? 'default', uid: `uid-${name}`, creationTimestamp: at(o.created ?? 0), labels: o.labels ?? {} },
    spec: { containers: [{ name: 'c', image: 'img', ...(o.ports ? { ports: o.ports } : {}) }], ...(o.node ? { nodeName: o.node } : {}) },
    status: {
      phase: o.phase ?? 'Running',
      conditions,
      ...(o.ip ? { podIP: o.ip, podIPs: [{ ip: o.ip }] } : {}),
      ...(o.restarts ? { containerStatuses: [{ name: 'c', restartCount: o.restarts }] } : {}),
    },
  };
  if (o.owner) p.metadata.ownerReferences = [o.owner];
  if (o.deleting) p.metadata.deletionTimestamp = at(100);
  return p;
}

export function node(name: string, o: { labels?: Record<string, string>; taints?: { key: string; value?: string; effect: string }[] } = {}): KObject {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, uid: `uid-node-${name}`, labels: { 'kubernetes.io/hostname': name, ...(o.labels ?? {}) } },
    spec: o.taints ? { taints: o.taints } : {},
  };
}
