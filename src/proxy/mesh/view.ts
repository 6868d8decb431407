/**
 * What the mesh handlers need to know about the cluster and about identities, as two narrow
 * interfaces the agent implements (its pushed config and its certificate manager). Keeping them
 * narrow keeps the proxy free of the agent: the proxy never imports src/agent, and its tests use
 * plain objects.
 */
import type { AuthorizationPolicy, PeerAuthentication, Service, ServicePort } from '../../api/types.js';
import type { WorkloadCredentials } from '../hbone/index.js';
import type { DnsIndex } from '../dns/resolve.js';

/** A pod as the proxy sees it: on this node (with labels) or on another one. */
export interface WorkloadInfo {
  uid: string;
  /** the pod's name; absent for pods of other nodes (the snapshot carries no more) */
  name?: string;
  namespace?: string;
  serviceAccount?: string;
  identity: string;
  enrolled: boolean;
  node: string;
  labels?: Record<string, string>;
  /** Istio's workload name, as the control plane computed it (pods of other nodes, which come without name and labels) */
  workload?: string;
  /** keys of the Services that select it (own node only): policies may target a Service */
  services?: readonly string[];
}

/** The pushed config, indexed for per-connection lookups. */
export interface MeshView {
  /** the pod behind an IP, on any node */
  workloadByIp(ip: string): WorkloadInfo | undefined;
  /** the Service whose cluster IP and port these are */
  serviceByVip(ip: string, port: number): { service: Service; port: ServicePort } | undefined;
  /** the Service an endpoint address belongs to, for metrics' destination_service */
  serviceByEndpoint(ip: string, port: number): Service | undefined;
  authorizationPolicies(): readonly AuthorizationPolicy[];
  peerAuthentications(): readonly PeerAuthentication[];
  rootNamespace(): string;
  trustRoots(): readonly string[];
  dnsIndex(): DnsIndex;
  /**
   * On-demand scope: asks the control plane about an address this view does not know and waits
   * (briefly) for the answer; true when it is now known (a Service VIP or a pod). Optional: a view
   * without a control plane behind it knows what it knows.
   */
  resolve?(address: string): Promise<boolean>;
}

/** Workload certificates held by the agent (memory only). */
export interface CredentialSource {
  /** the pod's credentials now, if it has any */
  current(podUid: string): WorkloadCredentials | undefined;
  /** waits up to `waitMs` for the pod's credentials; rejects with an Error that says why not */
  get(podUid: string, waitMs: number): Promise<WorkloadCredentials>;
}
