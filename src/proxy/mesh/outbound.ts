/**
 * Where an outbound connection goes (pure): the original destination a pod dialled → a Service's
 * endpoint when it is a cluster IP → HBONE to that endpoint's :15008 when the endpoint's pod is in
 * the mesh, else plain TCP passthrough. Addresses outside the cluster pass through unchanged.
 *
 * Endpoint choice: ready endpoints first; terminating ones only when none is ready (they still
 * serve while draining, as kube-proxy does); never notReady ones. The caller passes `pick` (an
 * index or a random number source) so the choice is testable.
 */
import type { Endpoint, Service, ServicePort } from '../../api/types.js';
import type { MeshView, WorkloadInfo } from './view.js';

export type OutboundPlan =
  | {
      kind: 'hbone';
      /** the endpoint pod's IP (the tunnel goes to its :15008) */
      address: string;
      /** the application port behind the tunnel (the CONNECT authority is address:port) */
      port: number;
      peer: WorkloadInfo;
      service?: Service;
    }
  | { kind: 'passthrough'; address: string; port: number; peer?: WorkloadInfo; service?: Service; why: string }
  | { kind: 'refuse'; reason: string; service?: Service };

/** `pick(n)` returns an index in [0, n). */
export type Picker = (n: number) => number;

export const randomPicker: Picker = (n) => Math.floor(Math.random() * n);

export function planOutbound(dst: { address: string; port: number }, view: MeshView, pick: Picker = randomPicker): OutboundPlan {
  const vip = view.serviceByVip(dst.address, dst.port);
  if (vip) {
    const endpoint = chooseEndpoint(vip.service.endpoints, pick);
    if (!endpoint) {
      return { kind: 'refuse', service: vip.service, reason: `Service ${vip.service.key} has no ready endpoint for port ${vip.port.port}` };
    }
    return toEndpoint(endpoint.ip, endpointPort(endpoint, vip.port), view, vip.service);
  }
  return toEndpoint(dst.address, dst.port, view, view.serviceByEndpoint(dst.address, dst.port));
}

function toEndpoint(address: string, port: number, view: MeshView, service: Service | undefined): OutboundPlan {
  const peer = view.workloadByIp(address);
  const svc = service ? { service } : {};
  if (!peer) return { kind: 'passthrough', address, port, ...svc, why: 'not a pod of the mesh' };
  if (!peer.enrolled) return { kind: 'passthrough', address, port, peer, ...svc, why: 'the destination pod is not enrolled' };
  return { kind: 'hbone', address, port, peer, ...svc };
}

/** The port an endpoint serves a Service port on. */
export function endpointPort(endpoint: Endpoint, sp: ServicePort): number {
  return endpoint.ports?.[sp.name] ?? sp.targetPort ?? sp.port;
}

export function chooseEndpoint(endpoints: readonly Endpoint[], pick: Picker): Endpoint | undefined {
  const ready = endpoints.filter((e) => e.status === 'ready');
  const pool = ready.length > 0 ? ready : endpoints.filter((e) => e.status === 'terminating');
  if (pool.length === 0) return undefined;
  return pool[Math.min(pool.length - 1, Math.max(0, pick(pool.length)))];
}
