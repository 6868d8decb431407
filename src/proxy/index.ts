/**
 * The shared proxy. For now: its listeners inside enrolled pods' network namespaces (inpod.ts),
 * the handler seam they hand connections to (connection.ts), plaintext forwarding (forward.ts,
 * splice.ts) and the DNS relay (dns-relay.ts). The L4 proxy (issue 6) plugs its handlers in here.
 */
export {
  addStats,
  defaultHandlers,
  emptyStats,
  InPodProxy,
  listenerPlan,
  type InPodNetConfig,
  type InPodProxyOptions,
  type InPodStats,
  type InPodTimeouts,
  type ListenerSpec,
  type TcpListenerStats,
} from './inpod.js';
export {
  formatAddress,
  refuseHandler,
  unmapIPv4,
  type ConnectionContext,
  type ConnectionEnd,
  type ConnectionHandler,
  type ConnectionRecord,
  type Dialer,
  type ListenerKind,
  type PodRef,
  type Target,
} from './connection.js';
export { DEFAULT_FORWARD_TIMEOUTS, describeConnectError, forwardHandler, originalDestination, selfTargetReason, type ForwardOptions } from './forward.js';
export { splice, type SpliceEnd, type SpliceOptions, type SpliceResult } from './splice.js';
export {
  answers,
  DEFAULT_DNS_RELAY,
  dnsId,
  DnsUdpRelay,
  dnsTcpHandler,
  isDnsResponse,
  rejectQueryReason,
  type DnsAnswerer,
  type DnsUdpRelayOptions,
  type DnsUdpStats,
  type DnsUpstream,
} from './dns-relay.js';
export { Throttle } from './throttle.js';
