// The local cluster's network: an underlay (a bridge inside a namespace the cluster creates) and one
// network namespace per node, wired to it with a veth pair, routed to each other's pod CIDRs.
//
//   netns ambit-<c>-underlay      bridge ul-br: 10.250.0.1/24 and the API server's 10.250.0.2/24
//     ├─ ul-node-1 ⇄ eth0 in netns ambit-<c>-node-1: 10.250.0.11/24, pods 10.244.1.0/24 on cni0
//     └─ ul-node-2 ⇄ eth0 in netns ambit-<c>-node-2: 10.250.0.12/24, pods 10.244.2.0/24 on cni0
//
// Every link is created inside a cluster namespace (`ip -n <ns> link add … peer … netns <other>`),
// so no interface ever appears in the host's namespace, even for an instant; deleting the
// namespaces removes every link, address, route, rule and sysctl the cluster set. The addressing
// plan is pure (planNetwork) and the commands that realise it are rendered purely too
// (nodeSetupCommands), so both are table-tested without root.
import { existsSync, readdirSync } from 'node:fs';
import { run } from './runtime/proc.js';

export const UNDERLAY_GATEWAY = '10.250.0.1';
export const API_SERVER_IP = '10.250.0.2';
export const API_SERVER_PORT = 6443;
export const UNDERLAY_PREFIX = 24;
export const CLUSTER_CIDR = '10.244.0.0/16';
export const SERVICE_CIDR = '10.96.0.0/16';
export const CLUSTER_DNS_IP = '10.96.0.10';
export const CLUSTER_DOMAIN = 'cluster.local';
/** Bridge the node's CNI conflist puts pods on (one per node netns, so the name can repeat). */
export const POD_BRIDGE = 'cni0';
const UNDERLAY_BRIDGE = 'ul-br';
const NODE_UPLINK = 'eth0';
/** Node i's underlay address is 10.250.0.(NODE_IP_OFFSET + i); the room below is for the gateway and the API server. */
const NODE_IP_OFFSET = 10;
export const MAX_NODES = 200;
export const NETNS_DIR = '/run/netns';

export interface NodeAddressing {
  /** node-1, node-2, ... */
  name: string;
  /** 1-based index */
  index: number;
  /** name of the node's network namespace (a file in /run/netns) */
  netns: string;
  /** the node's address on the underlay */
  ip: string;
  /** the node's pod CIDR, e.g. 10.244.1.0/24 */
  podCidr: string;
  /** the pod bridge's address in the node (the pods' default gateway) */
  podGateway: string;
  /** the underlay-side end of the node's veth pair (in the underlay netns) */
  underlayLink: string;
}

export interface NetworkPlan {
  cluster: string;
  underlayNetns: string;
  nodes: NodeAddressing[];
}

/** Cluster names end up in namespace, file and interface-free names; keep them short and plain. */
export function validateClusterName(name: string): void {
  if (!/^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$/.test(name)) {
    throw new Error(`cluster name '${name}' must be 1-20 lower-case letters, digits or '-', starting and ending with a letter or digit`);
  }
}

export const underlayNetnsName = (cluster: string): string => `ambit-${cluster}-underlay`;
export const nodeNetnsName = (cluster: string, node: string): string => `ambit-${cluster}-${node}`;
export const nodeName = (index: number): string => `node-${index}`;

/** The addresses of a cluster of `count` nodes (see the header). */
export function planNetwork(cluster: string, count: number): NetworkPlan {
  validateClusterName(cluster);
  if (!Number.isInteger(count) || count < 1 || count > MAX_NODES) throw new Error(`node count must be 1..${MAX_NODES}, got ${count}`);
  const nodes = Array.from({ length: count }, (_, k): NodeAddressing => {
    const index = k + 1;
    const name = nodeName(index);
    return {
      name,
      index,
      netns: nodeNetnsName(cluster, name),
      ip: `10.250.0.${NODE_IP_OFFSET + index}`,
      podCidr: `10.244.${index}.0/24`,
      podGateway: `10.244.${index}.1`,
      underlayLink: `ul-${name}`,
    };
  });
  return { cluster, underlayNetns: underlayNetnsName(cluster), nodes };
}

/**
 * Whether `netns` is one of the namespaces a cluster named `cluster` creates. Exact, so that
 * cleaning up cluster "a" never takes the namespaces of a cluster "a-b" ("ambit-a-b-underlay").
 */
export function isClusterNetns(cluster: string, netns: string): boolean {
  const prefix = `ambit-${cluster}-`;
  if (!netns.startsWith(prefix)) return false;
  return /^(underlay|node-[1-9]\d*)$/.test(netns.slice(prefix.length));
}

type Argv = string[];

/** Commands that create the underlay namespace with its bridge (gateway + API server addresses). */
export function underlaySetupCommands(plan: NetworkPlan): Argv[] {
  const ns = plan.underlayNetns;
  return [
    ['ip', 'netns', 'add', ns],
    ['ip', '-n', ns, 'link', 'set', 'lo', 'up'],
    ['ip', '-n', ns, 'link', 'add', UNDERLAY_BRIDGE, 'type', 'bridge'],
    ['ip', '-n', ns, 'addr', 'add', `${UNDERLAY_GATEWAY}/${UNDERLAY_PREFIX}`, 'dev', UNDERLAY_BRIDGE],
    ['ip', '-n', ns, 'addr', 'add', `${API_SERVER_IP}/${UNDERLAY_PREFIX}`, 'dev', UNDERLAY_BRIDGE],
    ['ip', '-n', ns, 'link', 'set', UNDERLAY_BRIDGE, 'up'],
    // Replies of the API server to pods (pod → kubernetes Service → 10.250.0.2 keeps the pod's
    // source address) go back through the pod's node.
    ...plan.nodes.map((n) => ['ip', '-n', ns, 'route', 'add', n.podCidr, 'via', n.ip]),
  ];
}

/**
 * Commands that create node `node`'s namespace and plug it into the underlay. Sysctls are set with
 * `ip netns exec`, whose /proc/sys/net is the node's: they never reach the host.
 */
export function nodeSetupCommands(plan: NetworkPlan, node: NodeAddressing): Argv[] {
  const ns = node.netns;
  const sysctl = (kv: string): Argv => ['ip', 'netns', 'exec', ns, 'sysctl', '-q', '-w', kv];
  return [
    ['ip', 'netns', 'add', ns],
    ['ip', '-n', ns, 'link', 'set', 'lo', 'up'],
    // Created in the underlay netns with its peer straight in the node netns: never in the host's.
    ['ip', '-n', plan.underlayNetns, 'link', 'add', node.underlayLink, 'type', 'veth', 'peer', 'name', NODE_UPLINK, 'netns', ns],
    ['ip', '-n', plan.underlayNetns, 'link', 'set', node.underlayLink, 'master', UNDERLAY_BRIDGE],
    ['ip', '-n', plan.underlayNetns, 'link', 'set', node.underlayLink, 'up'],
    ['ip', '-n', ns, 'addr', 'add', `${node.ip}/${UNDERLAY_PREFIX}`, 'dev', NODE_UPLINK],
    ['ip', '-n', ns, 'link', 'set', NODE_UPLINK, 'up'],
    // A default route gives the node's own traffic to ClusterIPs a first route lookup (the nat
    // OUTPUT DNAT re-routes it afterwards); anything else dies in the underlay, which has no uplink.
    ['ip', '-n', ns, 'route', 'add', 'default', 'via', UNDERLAY_GATEWAY],
    ...plan.nodes.filter((n) => n !== node).map((n) => ['ip', '-n', ns, 'route', 'add', n.podCidr, 'via', n.ip]),
    // The cluster DNS address on every node (the DNS server binds it in each node netns).
    ['ip', '-n', ns, 'addr', 'add', `${CLUSTER_DNS_IP}/32`, 'dev', 'lo'],
    sysctl('net.ipv4.ip_forward=1'),
    // Per network namespace on this kernel (new namespaces start with 1, but say it): bridged
    // pod-to-pod frames pass the node's iptables, so replies of a same-node Service backend are
    // un-DNATed by conntrack instead of reaching the client from an address it did not call.
    sysctl('net.bridge.bridge-nf-call-iptables=1'),
  ];
}

export async function runAll(commands: readonly Argv[], timeoutMs = 10_000): Promise<void> {
  for (const argv of commands) await run(argv, { timeoutMs });
}

/** Creates the underlay and every node namespace of `plan`. */
export async function createNetwork(plan: NetworkPlan): Promise<void> {
  await runAll(underlaySetupCommands(plan));
  for (const node of plan.nodes) await runAll(nodeSetupCommands(plan, node));
}

/** Names of the namespaces of cluster `cluster` that exist now. */
export function existingClusterNetns(cluster: string): string[] {
  if (!existsSync(NETNS_DIR)) return [];
  return readdirSync(NETNS_DIR).filter((n) => isClusterNetns(cluster, n));
}

/**
 * Deletes the cluster's namespaces: their links, addresses, routes, iptables rules and sysctls go
 * with them. Nodes first, so the underlay bridge loses its ports before it goes.
 */
export async function deleteNetwork(cluster: string): Promise<void> {
  const names = existingClusterNetns(cluster).sort((a, b) => Number(a.endsWith('-underlay')) - Number(b.endsWith('-underlay')));
  for (const ns of names) await run(['ip', 'netns', 'del', ns], { timeoutMs: 10_000 }).catch(() => undefined);
}
