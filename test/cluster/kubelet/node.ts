// The Node object a kubelet registers and keeps current (kubelet_node_status.go), and its Lease in
// kube-node-lease (the heartbeat the node lifecycle controller watches). Pure builders.
import type { KObject } from '../apiserver/types.js';
import { rfc3339 } from '../apiserver/controllers/meta.js';

export interface NodeFacts {
  name: string;
  ip: string;
  podCidr: string;
  cpus: number;
  memoryBytes: number;
  maxPods: number;
  kernelVersion: string;
  osImage: string;
  /** containerd://1.6.20 */
  containerRuntimeVersion: string;
  kubeletVersion: string;
  machineId: string;
  bootId: string;
  architecture: string;
}

export function nodeLabels(f: Pick<NodeFacts, 'name' | 'architecture'>): Record<string, string> {
  return {
    'beta.kubernetes.io/arch': f.architecture,
    'beta.kubernetes.io/os': 'linux',
    'kubernetes.io/arch': f.architecture,
    'kubernetes.io/hostname': f.name,
    'kubernetes.io/os': 'linux',
  };
}

export function nodeObject(f: NodeFacts): KObject {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: f.name,
      labels: nodeLabels(f),
      annotations: { 'node.alpha.kubernetes.io/ttl': '0', 'volumes.kubernetes.io/controller-managed-attach-detach': 'true' },
    },
    spec: { podCIDR: f.podCidr, podCIDRs: [f.podCidr] },
  };
}

type Cond = { type: string; status: string; reason: string; message: string; lastHeartbeatTime: string; lastTransitionTime: string };

/** The node status; `previous` keeps transition times of conditions whose status did not change. */
export function nodeStatus(f: NodeFacts, ready: boolean, nowMs: number, previous?: Record<string, any>): Record<string, unknown> {
  const now = rfc3339(nowMs);
  const prevConds: Cond[] = previous?.conditions ?? [];
  const cond = (type: string, status: string, reason: string, message: string): Cond => {
    const p = prevConds.find((c) => c.type === type);
    return { type, status, reason, message, lastHeartbeatTime: now, lastTransitionTime: p && p.status === status ? p.lastTransitionTime : now };
  };
  const resources = {
    cpu: String(f.cpus),
    memory: `${Math.floor(f.memoryBytes / 1024)}Ki`,
    pods: String(f.maxPods),
    'ephemeral-storage': '10Gi',
    'hugepages-2Mi': '0',
  };
  return {
    capacity: resources,
    allocatable: resources,
    conditions: [
      cond('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'kubelet has sufficient memory available'),
      cond('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure'),
      cond('PIDPressure', 'False', 'KubeletHasSufficientPID', 'kubelet has sufficient PID available'),
      ready
        ? cond('Ready', 'True', 'KubeletReady', 'kubelet is posting ready status')
        : cond('Ready', 'False', 'KubeletNotReady', 'container runtime network not ready: NetworkReady=false'),
    ],
    addresses: [
      { type: 'InternalIP', address: f.ip },
      { type: 'Hostname', address: f.name },
    ],
    daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
    nodeInfo: {
      machineID: f.machineId,
      systemUUID: f.machineId,
      bootID: f.bootId,
      kernelVersion: f.kernelVersion,
      osImage: f.osImage,
      containerRuntimeVersion: f.containerRuntimeVersion,
      kubeletVersion: f.kubeletVersion,
      kubeProxyVersion: '',
      operatingSystem: 'linux',
      architecture: f.architecture,
    },
  };
}

/** metav1.MicroTime on the wire: RFC 3339 with microseconds. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export const LEASE_DURATION_SECONDS = 40;

export function leaseObject(node: KObject, nowMs: number): KObject {
  return {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: {
      name: node.metadata.name,
      namespace: 'kube-node-lease',
      ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: node.metadata.name!, uid: node.metadata.uid! }],
    },
    spec: { holderIdentity: node.metadata.name, leaseDurationSeconds: LEASE_DURATION_SECONDS, renewTime: microTime(nowMs) },
  };
}
