/**
 * A connecting peer's identity as L4 policy sees it, and the connection record the inbound
 * listeners hand to policy.
 *
 * The peer's certificate carries a SPIFFE ID (`spiffe://<td>/ns/<ns>/sa/<sa>`, parsed and validated
 * by src/identity/spiffe.ts). Istio policies name peers by *principal*, which is the same ID without
 * the `spiffe://` scheme (`cluster.local/ns/default/sa/sleep`), and by namespace and service
 * account, which come from the ID's path. A plaintext peer (port 15006) has none of these.
 */
import { parseSpiffeId } from '../../identity/spiffe.js';

/** One inbound connection, as the listener knows it when it must decide. */
export interface L4Connection {
  /** the peer certificate's SPIFFE ID (`spiffe://td/ns/x/sa/y`); absent for plaintext */
  sourcePrincipal?: string;
  /** from the SPIFFE ID's `/ns/<ns>/sa/<sa>` path; derived from sourcePrincipal when absent */
  sourceNamespace?: string;
  sourceServiceAccount?: string;
  sourceIp: string;
  destinationIp: string;
  destinationPort: number;
}

export interface PeerIdentity {
  /** Istio's principal form: the SPIFFE ID without `spiffe://` */
  principal: string;
  trustDomain: string;
  namespace?: string;
  serviceAccount?: string;
}

/** The principal, trust domain, namespace and service account of a SPIFFE ID; undefined if it is not a valid one. */
export function peerIdentity(spiffeId: string): PeerIdentity | undefined {
  const parsed = parseSpiffeId(spiffeId);
  if (!parsed.ok) return undefined;
  const out: PeerIdentity = { principal: spiffeId.slice('spiffe://'.length), trustDomain: parsed.id.trustDomain };
  if (parsed.id.namespace !== undefined) out.namespace = parsed.id.namespace;
  if (parsed.id.serviceAccount !== undefined) out.serviceAccount = parsed.id.serviceAccount;
  return out;
}

/**
 * A connection record with the namespace and service account filled in from the SPIFFE ID.
 * A certificate whose URI is not a valid SPIFFE ID yields no principal at all: policy then treats
 * the peer like a plaintext one (positive identity matches fail), which is the safe side.
 */
export function l4Connection(c: { sourcePrincipal?: string | undefined; sourceIp: string; destinationIp: string; destinationPort: number }): L4Connection {
  const out: L4Connection = { sourceIp: c.sourceIp, destinationIp: c.destinationIp, destinationPort: c.destinationPort };
  const id = c.sourcePrincipal === undefined ? undefined : peerIdentity(c.sourcePrincipal);
  if (id && c.sourcePrincipal !== undefined) {
    out.sourcePrincipal = c.sourcePrincipal;
    if (id.namespace !== undefined) out.sourceNamespace = id.namespace;
    if (id.serviceAccount !== undefined) out.sourceServiceAccount = id.serviceAccount;
  }
  return out;
}
