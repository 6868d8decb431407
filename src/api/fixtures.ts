/**
 * Small builders of well-formed wire objects (workloads, services, snapshots), for tests and
 * benchmarks of the push path that need snapshots without running the model computation.
 */
import { snapshotVersion, sortedRecord } from './delta.js';
import { RESOURCE_TYPES, resourceKey, type NodeSnapshot, type ResourceType, type Service, type SnapshotResources, type TrustSettings, type Workload } from './types.js';

export const FIXTURE_TRUST: TrustSettings = { trustDomain: 'cluster.local', rootNamespace: 'ambit-system', roots: [] };

export function fixtureWorkload(uid: string, node: string, over: Partial<Workload> = {}): Workload {
  const namespace = over.namespace ?? 'shop';
  const serviceAccount = over.serviceAccount ?? 'web';
  return {
    uid,
    name: `pod-${uid}`,
    namespace,
    node,
    ips: [`10.0.${uid.length}.${uid.charCodeAt(uid.length - 1) % 250}`],
    serviceAccount,
    identity: `spiffe://cluster.local/ns/${namespace}/sa/${serviceAccount}`,
    enrolled: true,
    labels: { app: 'web' },
    services: [],
    ...over,
  };
}

export function fixtureService(namespace: string, name: string, vip: string, endpoints: Workload[] = []): Service {
  return {
    key: `${namespace}/${name}`,
    namespace,
    name,
    hostname: `${name}.${namespace}.svc.cluster.local`,
    vips: [vip],
    ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }],
    endpoints: endpoints.map((w) => ({ ip: w.ips[0]!, workload: w.uid, status: 'ready' as const })).sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0)),
  };
}

/** A snapshot for `node` from resource lists: records keyed and sorted, version computed. */
export function fixtureSnapshot(node: string, parts: { [K in ResourceType]?: SnapshotResources[K][string][] } & { trust?: TrustSettings } = {}): NodeSnapshot {
  const s = { node, trust: parts.trust ?? FIXTURE_TRUST } as NodeSnapshot;
  for (const t of RESOURCE_TYPES) {
    const list = (parts[t] ?? []) as SnapshotResources[ResourceType][string][];
    (s as unknown as Record<string, unknown>)[t] = sortedRecord(list.map((r) => [resourceKey(t, r), r]));
  }
  s.version = snapshotVersion(s);
  return s;
}
