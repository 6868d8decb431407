/**
 * L4 policy for the proxy's inbound side (15008 HBONE, 15006 plaintext): pure decisions over the
 * pushed snapshot — peer authentication (mTLS mode per workload port) and AuthorizationPolicy
 * (CUSTOM/DENY/ALLOW at L4). The listeners call `inboundDecision` once per connection and log its
 * reason; nothing here does I/O.
 */
export { authorize, describeConnection, l4Limitations, type AuthzCode, type AuthzDecision, type AuthzSubject } from './authorize.js';
export { inboundDecision, type InboundCode, type InboundDecision, type InboundPolicyInput, type InboundTransport } from './inbound.js';
export { admitPlaintext, inboundMtlsMode, resolveInboundMtls, type InboundMtlsMode, type ResolvedMtls } from './mtls.js';
export { l4Connection, peerIdentity, type L4Connection, type PeerIdentity } from './identity.js';
export { L4_CONDITION_KEYS, stringMatches } from './match.js';
