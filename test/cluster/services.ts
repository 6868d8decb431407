// What the kube-proxy equivalent and the cluster DNS both read from the API: Services joined with
// their EndpointSlices into plain data. Pure, so both consumers are tested from objects alone.
import type { KObject } from './apiserver/types.js';

/** Label that hands a Service to another proxy; the default kube-proxy leaves such Services alone. */
export const SERVICE_PROXY_NAME_LABEL = 'service.kubernetes.io/service-proxy-name';
const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export type Protocol = 'TCP' | 'UDP' | 'SCTP';

export interface ServicePortInfo {
  /** '' for the single unnamed port */
  name: string;
  port: number;
  protocol: Protocol;
  nodePort?: number;
}

export interface EndpointPortInfo {
  name: string;
  port: number;
  protocol: Protocol;
}

export interface EndpointInfo {
  ip: string;
  hostname?: string;
  nodeName?: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  /** the ports of the slice the endpoint came from */
  ports: EndpointPortInfo[];
}

export interface ServiceInfo {
  namespace: string;
  name: string;
  type: string;
  /** undefined for headless ("None") and ExternalName Services */
  clusterIP?: string;
  headless: boolean;
  externalName?: string;
  /** false when another proxy owns the Service (service-proxy-name label) */
  proxied: boolean;
  publishNotReadyAddresses: boolean;
  ports: ServicePortInfo[];
  endpoints: EndpointInfo[];
}

type Obj = Record<string, any>;

const protocolOf = (p: unknown): Protocol => (p === 'UDP' || p === 'SCTP' ? p : 'TCP');
const key = (ns: string | undefined, name: string | undefined): string => `${ns ?? ''}/${name ?? ''}`;

/** Endpoints of one EndpointSlice (IPv4 only: the local cluster is single-stack). */
export function sliceEndpoints(slice: KObject): EndpointInfo[] {
  const s = slice as Obj;
  if (s.addressType !== 'IPv4') return [];
  const ports: EndpointPortInfo[] = ((s.ports ?? []) as Obj[])
    .filter((p) => typeof p.port === 'number')
    .map((p) => ({ name: p.name ?? '', port: p.port, protocol: protocolOf(p.protocol) }));
  const out: EndpointInfo[] = [];
  for (const e of (s.endpoints ?? []) as Obj[]) {
    const c = (e.conditions ?? {}) as Obj;
    // EndpointConditions: a nil ready means ready; a nil serving means the same as ready.
    const ready = c.ready !== false;
    const serving = c.serving === undefined || c.serving === null ? ready : c.serving === true;
    for (const ip of (e.addresses ?? []) as string[]) {
      const ep: EndpointInfo = { ip, ready, serving, terminating: c.terminating === true, ports };
      if (e.hostname) ep.hostname = e.hostname;
      if (e.nodeName) ep.nodeName = e.nodeName;
      out.push(ep);
    }
  }
  return out;
}

/** Services with their endpoints, sorted by namespace/name so output built from it is stable. */
export function buildServiceModel(services: readonly KObject[], slices: readonly KObject[]): ServiceInfo[] {
  const bySvc = new Map<string, EndpointInfo[]>();
  for (const slice of slices) {
    const svcName = slice.metadata.labels?.[SERVICE_NAME_LABEL];
    if (!svcName) continue;
    const k = key(slice.metadata.namespace, svcName);
    bySvc.set(k, [...(bySvc.get(k) ?? []), ...sliceEndpoints(slice)]);
  }
  const out = services.map((svc): ServiceInfo => {
    const spec = ((svc as Obj).spec ?? {}) as Obj;
    const type = (spec.type as string) ?? 'ClusterIP';
    const ip = spec.clusterIP as string | undefined;
    const headless = ip === 'None';
    const info: ServiceInfo = {
      namespace: svc.metadata.namespace ?? '',
      name: svc.metadata.name ?? '',
      type,
      headless,
      proxied: !svc.metadata.labels?.[SERVICE_PROXY_NAME_LABEL],
      publishNotReadyAddresses: spec.publishNotReadyAddresses === true,
      ports: ((spec.ports ?? []) as Obj[]).map((p) => {
        const sp: ServicePortInfo = { name: p.name ?? '', port: p.port, protocol: protocolOf(p.protocol) };
        if (typeof p.nodePort === 'number' && p.nodePort > 0) sp.nodePort = p.nodePort;
        return sp;
      }),
      endpoints: dedupe(bySvc.get(key(svc.metadata.namespace, svc.metadata.name)) ?? []),
    };
    if (ip && !headless && type !== 'ExternalName') info.clusterIP = ip;
    if (type === 'ExternalName' && spec.externalName) info.externalName = spec.externalName;
    return info;
  });
  return out.sort((a, b) => key(a.namespace, a.name).localeCompare(key(b.namespace, b.name)));
}

/** An address may sit in two slices for a moment while the controller moves it; keep the first. */
function dedupe(eps: EndpointInfo[]): EndpointInfo[] {
  const seen = new Set<string>();
  return eps.filter((e) => {
    const k = `${e.ip}|${e.ports.map((p) => `${p.name}/${p.protocol}/${p.port}`).join(',')}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

export interface Backend {
  ip: string;
  port: number;
}

/**
 * Where traffic for one Service port goes, as kube-proxy picks it: the ready endpoints; when none
 * is ready, the serving-and-terminating ones (so connections drain during a rollout). Sorted by
 * address so rules built from them are stable.
 */
export function backendsFor(svc: ServiceInfo, sp: ServicePortInfo): Backend[] {
  const withPort = (eps: EndpointInfo[]) =>
    eps.flatMap((e) => {
      const p = e.ports.find((x) => x.name === sp.name && x.protocol === sp.protocol);
      return p ? [{ ip: e.ip, port: p.port }] : [];
    });
  let chosen = withPort(svc.endpoints.filter((e) => e.ready));
  if (chosen.length === 0) chosen = withPort(svc.endpoints.filter((e) => e.serving && e.terminating));
  return chosen.sort((a, b) => compareIp(a.ip, b.ip) || a.port - b.port);
}

export function compareIp(a: string, b: string): number {
  const n = (ip: string) => ip.split('.').reduce((acc, x) => acc * 256 + Number(x), 0);
  return n(a) - n(b);
}
