/**
 * The one call an inbound listener makes per connection: may this peer reach this workload port?
 *
 * Two questions in order, as in Istio: first peer authentication (does the workload's mTLS mode
 * admit a connection over this transport?), then L4 authorization (`authorize`). Plaintext peers
 * that PERMISSIVE lets in are still authorized — with no principal or namespace, so identity rules
 * can only exclude them. Everything here is pure; the listener owns sockets, logs and metrics.
 */
import type { AuthorizationPolicy, PeerAuthentication } from '../../state/policy.js';
import { authorize, describeConnection, type AuthzCode, type AuthzSubject } from './authorize.js';
import { displayIp } from './ip.js';
import type { L4Connection } from './identity.js';
import { admitPlaintext, resolveInboundMtls, type ResolvedMtls } from './mtls.js';

/** How the connection arrived: 15008 HBONE (mutual TLS, verified client certificate) or 15006 plaintext. */
export type InboundTransport = 'mtls' | 'plaintext';

/** The policy inputs of one workload, from the agent's snapshot. */
export interface InboundPolicyInput {
  workload: AuthzSubject;
  /** every policy the agent holds, or just those that apply; either works */
  authorizationPolicies: readonly AuthorizationPolicy[];
  peerAuthentications: readonly PeerAuthentication[];
  rootNamespace: string;
}

export type InboundCode = AuthzCode | 'deny_plaintext_strict' | 'deny_no_identity';

export interface InboundDecision {
  allowed: boolean;
  code: InboundCode;
  /** for the access log and deny log */
  reason: string;
  /** "<namespace>/<name>" of the deciding AuthorizationPolicy or PeerAuthentication */
  policy?: string;
  /** the deciding AuthorizationPolicy rule (index into spec.rules) */
  rule?: number;
  mtls: ResolvedMtls;
  /** Istio's `connection_security_policy` metric label */
  connectionSecurityPolicy: 'mutual_tls' | 'none';
}

function levelText(m: ResolvedMtls, port: number): string {
  switch (m.level) {
    case 'port': return `portLevelMtls for port ${port}`;
    case 'workload': return 'workload selector';
    case 'namespace': return 'namespace-wide';
    case 'mesh': return 'mesh-wide';
    default: return 'default';
  }
}

/** Decides one inbound connection; see the file header for the order. */
export function inboundDecision(conn: L4Connection, transport: InboundTransport, input: InboundPolicyInput): InboundDecision {
  const { workload, rootNamespace } = input;
  const mtls = resolveInboundMtls(workload, input.peerAuthentications, conn.destinationPort, rootNamespace);
  const connectionSecurityPolicy = transport === 'mtls' ? 'mutual_tls' : 'none';
  if (transport === 'plaintext' && !admitPlaintext(mtls.mode)) {
    const target = workload.name ? `${workload.namespace}/${workload.name}` : `a workload in ${workload.namespace}`;
    const out: InboundDecision = {
      allowed: false, code: 'deny_plaintext_strict', mtls, connectionSecurityPolicy,
      reason: `STRICT mTLS: plaintext from ${displayIp(conn.sourceIp)} to ${target} port ${conn.destinationPort} refused by PeerAuthentication ${mtls.policy} (${levelText(mtls, conn.destinationPort)}); the client must be in the mesh (enrol its namespace), or make this port PERMISSIVE`,
    };
    if (mtls.policy) out.policy = mtls.policy;
    return out;
  }
  if (transport === 'mtls' && conn.sourcePrincipal === undefined) {
    // The HBONE listener verifies the chain before asking; a peer without a SPIFFE ID never passes.
    return {
      allowed: false, code: 'deny_no_identity', mtls, connectionSecurityPolicy,
      reason: `denied: mTLS peer presented no valid SPIFFE ID: ${describeConnection(conn, workload)}; its certificate must carry a spiffe://<trust-domain>/ns/<ns>/sa/<sa> URI SAN`,
    };
  }
  const plaintextConn = transport === 'plaintext' ? withoutIdentity(conn) : conn;
  const d = authorize(plaintextConn, input.authorizationPolicies, workload, rootNamespace);
  const out: InboundDecision = { allowed: d.allowed, code: d.code, reason: d.reason, mtls, connectionSecurityPolicy };
  if (d.policy !== undefined) out.policy = d.policy;
  if (d.rule !== undefined) out.rule = d.rule;
  return out;
}

/** A plaintext peer has no identity, whatever the caller filled in. */
function withoutIdentity(conn: L4Connection): L4Connection {
  if (conn.sourcePrincipal === undefined && conn.sourceNamespace === undefined && conn.sourceServiceAccount === undefined) return conn;
  return { sourceIp: conn.sourceIp, destinationIp: conn.destinationIp, destinationPort: conn.destinationPort };
}
