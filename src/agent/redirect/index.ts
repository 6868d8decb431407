/**
 * In-pod traffic redirection: pure rule builders (iptables, nftables, policy routing), backend
 * detection, and the thin executor that programs a pod's network namespace.
 */
export { DEFAULT_REDIRECT_CONFIG, redirectConfig, validateRedirectConfig, type RedirectConfig, type RedirectPorts } from './config.js';
export {
  buildIptables,
  buildIptablesRemoval,
  canonicalIptables,
  parseIptablesSave,
  type IptablesState,
} from './iptables.js';
export { buildNftables, buildNftablesRemoval } from './nftables.js';
export { buildRoutingApply, buildRoutingRemoval, type RoutingState } from './routes.js';
export {
  decideBackend,
  decideIptablesMode,
  iptablesEvidence,
  probeNode,
  type Backend,
  type BackendPreference,
  type Decision,
  type IptablesEvidence,
  type IptablesMode,
  type NodeEvidence,
} from './detect.js';
export {
  applyRedirection,
  hostRunner,
  freshApplyCommands,
  inspectRedirection,
  netnsRunner,
  removeRedirection,
  RedirectionError,
  type CommandResult,
  type CommandRunner,
  type ExecOptions,
  type RunnerSource,
  type RedirectionPlan,
  type RedirectionPresence,
} from './exec.js';
export { netlinkRouting, RoutingError, type RoutingTool } from './routing-netlink.js';
export {
  buildHostProbeIptables,
  buildHostProbeIptablesRemoval,
  buildHostProbeNftables,
  buildHostProbeNftablesRemoval,
  HOST_PROBE_CHAIN,
  HOST_PROBE_NFT_TABLE,
  HostProbeError,
  hostProbeSyncCommands,
  inspectHostProbeSnat,
  probeTargets,
  removeHostProbeSnat,
  syncHostProbeSnat,
  type HostProbeCleanupOptions,
  type HostProbeOptions,
  type HostProbeSyncOptions,
  type HostProbePresence,
} from './host-probe.js';
export { WarmPool } from './warm.js';
