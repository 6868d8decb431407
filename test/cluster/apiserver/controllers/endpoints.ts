/**
 * The legacy Endpoints controller: a v1 Endpoints object named after each Service with a selector,
 * whose subsets group the selected pods' addresses by port set (ready ones in `addresses`, others
 * in `notReadyAddresses`). `kubectl describe svc` and older clients still read it.
 */
import type { KObject } from '../types.js';
import { type Action, R, create, del, update } from './actions.js';
import { canonical, clone, field, rfc3339, semanticEqual } from './meta.js';
import { isPodReady } from './pods.js';
import { mapSelectorMatches } from './selectors.js';
import { HEADLESS_LABEL, findPort, podHasEndpoint, podHostname, podIPs, serviceSelector, servicePorts } from './endpointslice.js';

export const ENDPOINTS_MANAGED_BY_LABEL = 'endpoints.kubernetes.io/managed-by';
export const ENDPOINTS_CONTROLLER_NAME = 'endpoint-controller';
export const TRIGGER_TIME_ANNOTATION = 'endpoints.kubernetes.io/last-change-trigger-time';

export interface EndpointsInput {
  /** undefined once the Service is gone: its Endpoints are then deleted */
  service: KObject | undefined;
  /** pods of the Service's namespace */
  pods: KObject[];
  /** the Endpoints object of the same name, if any */
  endpoints: KObject | undefined;
}

interface Address {
  ip: string;
  hostname?: string;
  nodeName?: string;
  targetRef: { kind: 'Pod'; namespace: string; name: string; uid: string };
}

interface Port {
  name?: string;
  port: number;
  protocol: string;
  appProtocol?: string;
}

interface Subset {
  addresses?: Address[];
  notReadyAddresses?: Address[];
  ports?: Port[];
}

function address(pod: KObject, svc: KObject): Address | undefined {
  // The legacy object carries the primary family only.
  const fam = (field<string[]>(svc, 'spec', 'ipFamilies') ?? ['IPv4'])[0];
  const ip = podIPs(pod).find((a) => (fam === 'IPv6') === a.includes(':'));
  if (!ip) return undefined;
  const a: Address = { ip, targetRef: { kind: 'Pod', namespace: pod.metadata.namespace ?? '', name: pod.metadata.name ?? '', uid: pod.metadata.uid ?? '' } };
  const hostname = podHostname(pod, svc);
  if (hostname) a.hostname = hostname;
  const node = field<string>(pod, 'spec', 'nodeName');
  if (node) a.nodeName = node;
  return a;
}

/** The subsets, repacked: one subset per distinct port set, addresses sorted by IP. */
export function endpointSubsets(svc: KObject, pods: KObject[]): Subset[] {
  const publishNotReady = field<boolean>(svc, 'spec', 'publishNotReadyAddresses') === true;
  const sel = serviceSelector(svc);
  const headless = field(svc, 'spec', 'clusterIP') === 'None';
  const byAddress = new Map<string, { addr: Address; ready: boolean; ports: Port[] }>();
  for (const pod of pods) {
    if (!mapSelectorMatches(sel, pod.metadata.labels) || !podHasEndpoint(pod, publishNotReady)) continue;
    const addr = address(pod, svc);
    if (!addr) continue;
    const ports: Port[] = [];
    for (const sp of servicePorts(svc)) {
      const port = findPort(pod, sp);
      if (port === undefined) continue;
      const p: Port = { port, protocol: sp.protocol ?? 'TCP' };
      if (sp.name) p.name = sp.name;
      if (sp.appProtocol) p.appProtocol = sp.appProtocol;
      ports.push(p);
    }
    // A pod with no resolvable port is listed only for a headless Service without ports.
    if (ports.length === 0 && !(headless && servicePorts(svc).length === 0)) continue;
    byAddress.set(`${addr.ip}/${addr.targetRef.uid}`, { addr, ready: publishNotReady || isPodReady(pod), ports });
  }
  const groups = new Map<string, Subset>();
  for (const { addr, ready, ports } of byAddress.values()) {
    const sorted = [...ports].sort((a, b) => ((a.name ?? '') < (b.name ?? '') ? -1 : (a.name ?? '') > (b.name ?? '') ? 1 : a.port - b.port));
    const key = canonical(sorted);
    let s = groups.get(key);
    if (!s) groups.set(key, (s = sorted.length ? { ports: sorted } : {}));
    const list = ready ? (s.addresses ??= []) : (s.notReadyAddresses ??= []);
    list.push(addr);
  }
  const byIP = (a: Address, b: Address) => compareIP(a.ip, b.ip) || (a.targetRef.uid < b.targetRef.uid ? -1 : 1);
  const subsets = [...groups.values()];
  for (const s of subsets) {
    s.addresses?.sort(byIP);
    s.notReadyAddresses?.sort(byIP);
  }
  const first = (s: Subset) => (s.addresses ?? s.notReadyAddresses ?? [])[0]?.ip ?? '';
  return subsets.sort((a, b) => compareIP(first(a), first(b)));
}

function compareIP(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  if (pa.length === 4 && pb.length === 4 && pa.every(Number.isFinite) && pb.every(Number.isFinite)) {
    for (let i = 0; i < 4; i++) if (pa[i] !== pb[i]) return pa[i]! - pb[i]!;
    return 0;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

function endpointsLabels(svc: KObject): Record<string, string> {
  const labels: Record<string, string> = { ...(svc.metadata.labels ?? {}) };
  if (field(svc, 'spec', 'clusterIP') === 'None') labels[HEADLESS_LABEL] = '';
  else delete labels[HEADLESS_LABEL];
  labels[ENDPOINTS_MANAGED_BY_LABEL] = ENDPOINTS_CONTROLLER_NAME;
  return labels;
}

export function reconcileEndpoints(input: EndpointsInput, now: number): Action[] {
  const { service: svc, endpoints: cur } = input;
  if (!svc) {
    // Only the controller's own object goes with the Service; a hand-made one stays.
    if (cur && cur.metadata.labels?.[ENDPOINTS_MANAGED_BY_LABEL] === ENDPOINTS_CONTROLLER_NAME) return [del(R.endpoints, cur)];
    return [];
  }
  if (!serviceSelector(svc) || field(svc, 'spec', 'type') === 'ExternalName') return [];
  const subsets = endpointSubsets(svc, input.pods);
  const labels = endpointsLabels(svc);
  if (cur && semanticEqual(cur['subsets'], subsets) && semanticEqual(cur.metadata.labels, labels)) return [];
  const annotations = { ...(cur?.metadata.annotations ?? {}), [TRIGGER_TIME_ANNOTATION]: rfc3339(now) };
  if (!cur) {
    return [
      create(R.endpoints, {
        apiVersion: 'v1',
        kind: 'Endpoints',
        metadata: { name: svc.metadata.name, namespace: svc.metadata.namespace, labels, annotations },
        subsets,
      }),
    ];
  }
  const next = clone(cur);
  next.metadata.labels = labels;
  next.metadata.annotations = annotations;
  next['subsets'] = subsets;
  return [update(R.endpoints, next)];
}
