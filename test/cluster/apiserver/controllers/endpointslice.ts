/**
 * EndpointSlice controller: for each Service with a selector, EndpointSlices listing the pods it
 * selects (ports resolved per pod from targetPort, conditions ready / serving / terminating, at
 * most 100 endpoints per slice). Existing slices are kept stable: an endpoint stays in the slice
 * it is in, new endpoints fill free room before new slices are made, and a Service with no
 * endpoints keeps one empty placeholder slice, as the real reconciler does.
 */
import type { KObject } from '../types.js';
import { type Action, R, create, del, update } from './actions.js';
import { canonical, clone, controllerRef, field, generatePrefix, semanticEqual } from './meta.js';
import { isPodReady, isPodTerminal } from './pods.js';
import { mapSelectorMatches } from './selectors.js';

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
export const MANAGED_BY_LABEL = 'endpointslice.kubernetes.io/managed-by';
export const CONTROLLER_NAME = 'endpointslice-controller.k8s.io';
export const HEADLESS_LABEL = 'service.kubernetes.io/headless';
export const MAX_ENDPOINTS_PER_SLICE = 100;

export interface ServicePort {
  name?: string;
  protocol?: string;
  port: number;
  targetPort?: number | string;
  appProtocol?: string;
}

export interface EndpointPort {
  name: string;
  port: number;
  protocol: string;
  appProtocol?: string;
}

export interface Endpoint {
  addresses: string[];
  conditions: { ready: boolean; serving: boolean; terminating: boolean };
  hostname?: string;
  nodeName?: string;
  zone?: string;
  targetRef: { kind: 'Pod'; namespace: string; name: string; uid: string };
}

export interface EndpointSliceInput {
  service: KObject;
  /** pods of the Service's namespace */
  pods: KObject[];
  /** EndpointSlices of the namespace labelled with this Service's name */
  slices: KObject[];
  /** nodes, for the endpoints' zone (optional) */
  nodes?: KObject[];
  maxEndpointsPerSlice?: number;
}

type Obj = Record<string, unknown>;

export const servicePorts = (svc: KObject): ServicePort[] => field<ServicePort[]>(svc, 'spec', 'ports') ?? [];
export const serviceSelector = (svc: KObject): Record<string, string> | undefined => field(svc, 'spec', 'selector');

/**
 * podutil.FindPort: a numeric targetPort as is; a named one from the pod's containers (and
 * restartable init containers) with that port name and the Service port's protocol.
 */
export function findPort(pod: KObject, sp: ServicePort): number | undefined {
  const target = sp.targetPort ?? sp.port;
  if (typeof target === 'number') return target;
  if (/^\d+$/.test(target)) return Number(target);
  const protocol = sp.protocol ?? 'TCP';
  type C = { ports?: { name?: string; containerPort: number; protocol?: string }[]; restartPolicy?: string };
  const containers = [
    ...(field<C[]>(pod, 'spec', 'containers') ?? []),
    ...(field<C[]>(pod, 'spec', 'initContainers') ?? []).filter((c) => c.restartPolicy === 'Always'),
  ];
  for (const c of containers) {
    for (const p of c.ports ?? []) if (p.name === target && (p.protocol ?? 'TCP') === protocol) return p.containerPort;
  }
  return undefined;
}

/** The ports of one pod's endpoint; ports that do not resolve for the pod are left out. */
export function endpointPorts(svc: KObject, pod: KObject): EndpointPort[] {
  const out: EndpointPort[] = [];
  for (const sp of servicePorts(svc)) {
    const port = findPort(pod, sp);
    if (port === undefined) continue;
    const ep: EndpointPort = { name: sp.name ?? '', port, protocol: sp.protocol ?? 'TCP' };
    if (sp.appProtocol) ep.appProtocol = sp.appProtocol;
    out.push(ep);
  }
  return out;
}

/** ShouldPodBeInEndpoints: not terminal, has an IP, and (unless included) not terminating. */
export function podHasEndpoint(pod: KObject, includeTerminating: boolean): boolean {
  if (isPodTerminal(pod)) return false;
  if (!field(pod, 'status', 'podIP') && !(field<unknown[]>(pod, 'status', 'podIPs') ?? []).length) return false;
  return includeTerminating || !pod.metadata.deletionTimestamp;
}

export function podIPs(pod: KObject): string[] {
  const ips = (field<{ ip: string }[]>(pod, 'status', 'podIPs') ?? []).map((p) => p.ip);
  const primary = field<string>(pod, 'status', 'podIP');
  if (primary && !ips.includes(primary)) ips.unshift(primary);
  return ips;
}

const isV6 = (ip: string): boolean => ip.includes(':');

export function addressTypes(svc: KObject): string[] {
  const fams = field<string[]>(svc, 'spec', 'ipFamilies') ?? [];
  return fams.length ? fams : ['IPv4'];
}

/** endpointutil.ShouldSetHostname. */
export function podHostname(pod: KObject, svc: KObject): string | undefined {
  const hostname = field<string>(pod, 'spec', 'hostname');
  if (!hostname) return undefined;
  if (field(pod, 'spec', 'subdomain') !== svc.metadata.name || pod.metadata.namespace !== svc.metadata.namespace) return undefined;
  return hostname;
}

/** podToEndpoint. */
export function podToEndpoint(pod: KObject, svc: KObject, addressType: string, zones: Map<string, string>): Endpoint | undefined {
  const ip = podIPs(pod).find((a) => (addressType === 'IPv6') === isV6(a));
  if (!ip) return undefined;
  const serving = isPodReady(pod);
  const terminating = !!pod.metadata.deletionTimestamp;
  const publishNotReady = field<boolean>(svc, 'spec', 'publishNotReadyAddresses') === true;
  // "ready" is never true for a terminating pod unless the Service publishes not-ready addresses.
  const ready = publishNotReady || (serving && !terminating);
  const ep: Endpoint = {
    addresses: [ip],
    conditions: { ready, serving, terminating },
    targetRef: { kind: 'Pod', namespace: pod.metadata.namespace ?? '', name: pod.metadata.name ?? '', uid: pod.metadata.uid ?? '' },
  };
  const hostname = podHostname(pod, svc);
  if (hostname) ep.hostname = hostname;
  const node = field<string>(pod, 'spec', 'nodeName');
  if (node) {
    ep.nodeName = node;
    const zone = zones.get(node);
    if (zone) ep.zone = zone;
  }
  return ep;
}

/** Labels of a managed slice: the Service's labels plus the controller's own. */
export function sliceLabels(svc: KObject): Record<string, string> {
  const labels: Record<string, string> = { ...(svc.metadata.labels ?? {}) };
  delete labels[HEADLESS_LABEL];
  labels[SERVICE_NAME_LABEL] = svc.metadata.name ?? '';
  labels[MANAGED_BY_LABEL] = CONTROLLER_NAME;
  if (field(svc, 'spec', 'clusterIP') === 'None') labels[HEADLESS_LABEL] = '';
  return labels;
}

interface Group {
  ports: EndpointPort[];
  /** by pod uid (or name), in pod-name order */
  endpoints: Map<string, Endpoint>;
}

const epKey = (ep: Endpoint): string => ep.targetRef.uid || ep.targetRef.name;
const portsKey = (ports: EndpointPort[] | undefined): string => canonical([...(ports ?? [])].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.port - b.port)));

function desiredGroups(input: EndpointSliceInput, addressType: string): Map<string, Group> {
  const { service: svc } = input;
  const zones = new Map<string, string>();
  for (const n of input.nodes ?? []) {
    const z = n.metadata.labels?.['topology.kubernetes.io/zone'];
    if (z) zones.set(n.metadata.name ?? '', z);
  }
  const groups = new Map<string, Group>();
  const sel = serviceSelector(svc);
  const pods = input.pods
    .filter((p) => p.metadata.namespace === svc.metadata.namespace || !p.metadata.namespace)
    .filter((p) => mapSelectorMatches(sel, p.metadata.labels) && podHasEndpoint(p, true))
    .sort((a, b) => ((a.metadata.name ?? '') < (b.metadata.name ?? '') ? -1 : 1));
  for (const pod of pods) {
    const ep = podToEndpoint(pod, svc, addressType, zones);
    if (!ep) continue;
    const ports = endpointPorts(svc, pod);
    const key = portsKey(ports);
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { ports, endpoints: new Map() }));
    g.endpoints.set(epKey(ep), ep);
  }
  return groups;
}

function newSlice(svc: KObject, addressType: string, ports: EndpointPort[], endpoints: Endpoint[]): KObject {
  const slice: KObject = {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      generateName: generatePrefix(svc.metadata.name ?? ''),
      namespace: svc.metadata.namespace,
      labels: sliceLabels(svc),
      ownerReferences: [controllerRef(svc, 'v1', 'Service')],
    },
    addressType,
    endpoints,
  };
  if (ports.length) slice['ports'] = ports;
  return slice;
}

export function isManagedSlice(slice: KObject, svc: KObject): boolean {
  const l = slice.metadata.labels ?? {};
  return l[MANAGED_BY_LABEL] === CONTROLLER_NAME && l[SERVICE_NAME_LABEL] === svc.metadata.name;
}

export function reconcileEndpointSlices(input: EndpointSliceInput): Action[] {
  const svc = input.service;
  // Services without a selector get their slices from someone else; ExternalName has none.
  if (!serviceSelector(svc) || field(svc, 'spec', 'type') === 'ExternalName') return [];
  const max = input.maxEndpointsPerSlice ?? MAX_ENDPOINTS_PER_SLICE;
  const managed = input.slices.filter((s) => isManagedSlice(s, svc) && !s.metadata.deletionTimestamp);
  const types = addressTypes(svc);
  const actions: Action[] = [];
  for (const s of managed) if (!types.includes(s['addressType'] as string)) actions.push(del(R.endpointSlices, s));
  for (const t of types) {
    actions.push(...reconcileAddressType(svc, t, desiredGroups(input, t), managed.filter((s) => s['addressType'] === t), max));
  }
  return actions;
}

interface Slot {
  original: KObject;
  endpoints: Endpoint[];
}

function reconcileAddressType(svc: KObject, addressType: string, groups: Map<string, Group>, existing: KObject[], max: number): Action[] {
  const actions: Action[] = [];
  const placed = new Set<string>();
  const slotsByKey = new Map<string, Slot[]>();
  const emptied: KObject[] = [];
  // 1. Keep every still-wanted endpoint in the slice it is already in, with fresh content.
  for (const slice of [...existing].sort((a, b) => ((a.metadata.name ?? '') < (b.metadata.name ?? '') ? -1 : 1))) {
    const key = portsKey(slice['ports'] as EndpointPort[] | undefined);
    const g = groups.get(key);
    const kept: Endpoint[] = [];
    if (g) {
      for (const old of (slice['endpoints'] as Endpoint[] | undefined) ?? []) {
        const k = old.targetRef ? epKey(old) : '';
        const want = g.endpoints.get(k);
        if (!want || placed.has(k) || kept.length >= max) continue;
        placed.add(k);
        kept.push(want);
      }
    }
    if (kept.length === 0) emptied.push(slice);
    else slotsByKey.set(key, [...(slotsByKey.get(key) ?? []), { original: slice, endpoints: kept }]);
  }
  // 2. New endpoints fill the fullest slices with room first, then new slices.
  const creates: KObject[] = [];
  for (const [key, g] of groups) {
    const pending = [...g.endpoints.entries()].filter(([k]) => !placed.has(k)).map(([, ep]) => ep);
    const slots = (slotsByKey.get(key) ?? []).sort((a, b) => b.endpoints.length - a.endpoints.length);
    for (const slot of slots) while (pending.length && slot.endpoints.length < max) slot.endpoints.push(pending.shift()!);
    while (pending.length) creates.push(newSlice(svc, addressType, g.ports, pending.splice(0, max)));
  }
  const labels = sliceLabels(svc);
  for (const slots of slotsByKey.values()) {
    for (const slot of slots) {
      const next = { ...clone(slot.original), endpoints: slot.endpoints };
      next.metadata.labels = labels;
      if (!sliceEqual(next, slot.original)) actions.push(update(R.endpointSlices, next));
    }
  }
  // 3. With nothing to publish, exactly one empty placeholder slice remains.
  const kept = [...slotsByKey.values()].reduce((n, s) => n + s.length, 0);
  if (kept === 0 && creates.length === 0) {
    const placeholder = newSlice(svc, addressType, [], []);
    const reusable = emptied.find((s) => !(s['ports'] as unknown[] | undefined)?.length);
    if (reusable) {
      emptied.splice(emptied.indexOf(reusable), 1);
      const next = { ...clone(reusable), endpoints: [] };
      next.metadata.labels = labels;
      if (!sliceEqual(next, reusable)) actions.push(update(R.endpointSlices, next));
    } else creates.push(placeholder);
  }
  for (const s of creates) actions.push(create(R.endpointSlices, s));
  for (const s of emptied) actions.push(del(R.endpointSlices, s));
  return actions;
}

function sliceEqual(a: KObject, b: KObject): boolean {
  const norm = (s: KObject): Obj => ({
    labels: s.metadata.labels,
    ports: s['ports'],
    endpoints: [...((s['endpoints'] as Endpoint[] | undefined) ?? [])].sort((x, y) => (epKey(x) < epKey(y) ? -1 : 1)),
  });
  return semanticEqual(norm(a), norm(b));
}
