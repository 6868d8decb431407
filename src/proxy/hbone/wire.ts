/**
 * The pure core of HBONE: parsing what arrives on the wire (a CONNECT's `:authority`, the SPIFFE ID
 * in a peer certificate's subjectAltName), the pool key of a tunnel, and the words an operator sees
 * when a handshake fails. No sockets here, so all of it is table-tested (wire.test.ts).
 */
import net from 'node:net';
import { parseSpiffeId } from '../../identity/spiffe.js';

/** The HBONE port inside every enrolled pod's network namespace. */
export const HBONE_PORT = 15008;

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

export interface Authority {
  /** IP literal, without brackets */
  host: string;
  port: number;
  family: 4 | 6;
}

const PORT = /^[0-9]{1,5}$/;

/**
 * A CONNECT `:authority` as HBONE uses it: `ip:port` or `[ipv6]:port` (RFC 9113 §8.5: host and
 * port, nothing else). Hostnames are refused: the destination proxy must never resolve names, the
 * caller already chose the endpoint.
 */
export function parseAuthority(authority: string | undefined): Parsed<Authority> {
  const fail = (error: string): Parsed<Authority> => ({ ok: false, error });
  if (authority === undefined || authority === '') return fail('CONNECT without :authority; send the destination as ip:port');
  if (authority.length > 64) return fail(`:authority is ${authority.length} bytes; an ip:port is at most 47`);
  let host: string;
  let portText: string;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close < 0 || authority[close + 1] !== ':') return fail(`:authority "${authority}" is not [ipv6]:port`);
    host = authority.slice(1, close);
    portText = authority.slice(close + 2);
  } else {
    const colon = authority.lastIndexOf(':');
    if (colon < 0) return fail(`:authority "${authority}" has no port; send ip:port`);
    host = authority.slice(0, colon);
    portText = authority.slice(colon + 1);
  }
  const family = net.isIP(host);
  if (family === 0) return fail(`:authority "${authority}": "${host}" is not an IP address (HBONE carries ip:port, never a name)`);
  if (family === 6 && !authority.startsWith('[')) return fail(`:authority "${authority}": an IPv6 address must be in brackets`);
  if (!PORT.test(portText)) return fail(`:authority "${authority}": port "${portText}" is not a number`);
  const port = Number(portText);
  if (port < 1 || port > 65535) return fail(`:authority "${authority}": port ${port} is out of range 1-65535`);
  return { ok: true, value: { host, port, family: family as 4 | 6 } };
}

/** `ip:port`, bracketing IPv6, the form `parseAuthority` accepts. */
export function formatAuthority(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * The SPIFFE ID of an X.509-SVID from Node's `subjectaltname` text ("URI:spiffe://…, DNS:…").
 * The SVID spec allows exactly one URI SAN, and it must be a valid SPIFFE ID. Node quotes values
 * holding ',' or '"'; no valid SPIFFE ID holds either, so a quoted value fails the parse as it should.
 */
export function spiffeIdFromSubjectAltName(san: string | undefined): Parsed<string> {
  if (!san) return { ok: false, error: 'certificate has no subjectAltName, so no SPIFFE ID' };
  const uris = san
    .split(', ')
    .filter((entry) => entry.startsWith('URI:'))
    .map((entry) => entry.slice(4));
  if (uris.length === 0) return { ok: false, error: 'certificate has no URI SAN, so no SPIFFE ID' };
  if (uris.length > 1) return { ok: false, error: `certificate has ${uris.length} URI SANs; an X.509-SVID has exactly one` };
  const parsed = parseSpiffeId(uris[0]!);
  if (!parsed.ok) return { ok: false, error: `certificate URI SAN is not a valid SPIFFE ID: ${parsed.error}` };
  return { ok: true, value: uris[0]! };
}

/**
 * One TLS+HTTP/2 session carries the tunnels of one (source identity, destination identity, source
 * address, destination address) tuple. The source address is part of it because in the in-pod model
 * the outer connection is made inside the source pod's network namespace: a session dialled from one
 * pod must never carry another pod's traffic, even when both run as the same service account.
 */
export function poolKey(k: { sourceIdentity: string; destinationIdentity: string; sourceAddress?: string; address: string; port: number }): string {
  return `${k.sourceIdentity}\n${k.destinationIdentity}\n${k.sourceAddress ?? ''}\n${formatAuthority(k.address, k.port)}`;
}

/**
 * Envoy-style response flags for access logs and the `response_flags` metric label.
 * '-' is a normal close.
 */
export type ResponseFlag =
  | '-'
  | 'UF' // upstream connection failure (the next hop could not be reached)
  | 'UT' // upstream timeout
  | 'UC' // upstream connection termination (reset/abort from the destination side)
  | 'DC' // downstream connection termination (reset/abort from the source side)
  | 'RBAC' // denied by authorization policy
  | 'NR' // bad request: nothing to route (bad method or authority)
  | 'DRAIN'; // refused because the proxy is draining

/** The flag of a refused CONNECT, from its HTTP status. */
export function flagForStatus(status: number): ResponseFlag {
  if (status === 200) return '-';
  if (status === 401 || status === 403) return 'RBAC';
  if (status === 400 || status === 404 || status === 405) return 'NR';
  if (status === 504) return 'UT';
  return 'UF';
}

/** What a refused CONNECT status means to the operator on the calling side. */
export function describeStatus(status: number): string {
  switch (status) {
    case 400:
      return 'the destination proxy found the request malformed (bad :authority)';
    case 401:
    case 403:
      return 'denied by an AuthorizationPolicy or PeerAuthentication at the destination';
    case 405:
      return 'the destination proxy accepts only CONNECT';
    case 502:
      return 'the destination application refused the connection (is it listening on that port?)';
    case 503:
      return 'the destination is not ready (draining, or the pod has no certificate yet)';
    case 504:
      return 'connecting to the destination application timed out';
    default:
      return `the destination proxy answered HTTP ${status}`;
  }
}

/** Why a TLS handshake failed, in an operator's words, from the OpenSSL/Node error code. */
export function describeTlsFailure(code: string | undefined, message: string): string {
  const c = code ?? '';
  if (c === 'ERR_SSL_WRONG_VERSION_NUMBER' || c === 'ERR_SSL_HTTP_REQUEST' || c === 'ERR_SSL_UNSUPPORTED_PROTOCOL' || c === 'ERR_SSL_UNKNOWN_PROTOCOL' || c === 'ERR_SSL_PACKET_LENGTH_TOO_LONG') {
    return 'not a TLS 1.3 client (plain HTTP or other non-TLS bytes on the HBONE port)';
  }
  if (c === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE' || c === 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED') {
    return 'no client certificate: HBONE needs mutual TLS with a workload certificate';
  }
  if (c === 'ERR_SSL_NO_APPLICATION_PROTOCOL' || c === 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL') {
    return 'ALPN mismatch: HBONE speaks only h2';
  }
  if (c === 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' || c === 'ERR_SSL_NO_PROTOCOLS_AVAILABLE' || c === 'ERR_SSL_UNSUPPORTED_PROTOCOL') {
    return 'TLS version mismatch: HBONE requires TLS 1.3';
  }
  if (c === 'UNABLE_TO_GET_ISSUER_CERT' || c === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY' || c === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' || c === 'SELF_SIGNED_CERT_IN_CHAIN' || c === 'DEPTH_ZERO_SELF_SIGNED_CERT' || c === 'CERT_SIGNATURE_FAILURE') {
    return `the peer certificate does not chain to the trust bundle (${c}: another CA, or a root not distributed yet)`;
  }
  if (c === 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA' || c === 'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE' || c === 'ERR_SSL_TLSV1_ALERT_DECRYPT_ERROR') {
    return 'the peer rejected our certificate (not trusted by its trust bundle: different CA, or a root rotation it has not seen yet)';
  }
  if (c === 'ERR_SSL_CERTIFICATE_VERIFY_FAILED') return 'the peer certificate does not chain to the trust bundle (another CA, or a root not distributed yet)';
  if (c === 'CERT_HAS_EXPIRED' || c === 'ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED') return 'a certificate has expired (is the node clock right? is renewal working?)';
  if (c === 'CERT_NOT_YET_VALID') return 'a certificate is not yet valid (check the node clocks)';
  if (c === 'ECONNRESET') return 'the peer closed the connection during the TLS handshake';
  return `TLS handshake failed: ${message}`;
}
