/**
 * TLS material for both ends of HBONE: secure contexts built from a workload's credentials and the
 * trust bundle (cached, since building one parses PEM and costs ~0.3 ms per new session otherwise),
 * and the peer-identity check that replaces hostname matching (the peer is an IP; what matters is
 * the SPIFFE ID in its certificate).
 */
import tls from 'node:tls';
import type { WorkloadCredentials } from './types.js';
import { spiffeIdFromSubjectAltName } from './wire.js';

/**
 * TLS 1.3 only. AES-128-GCM first: on CPUs with AES-NI it is the cheapest AEAD, and both ends are
 * ours; the others stay for peers that prefer them.
 */
export const TLS_OPTIONS = {
  minVersion: 'TLSv1.3',
  maxVersion: 'TLSv1.3',
  ciphers: 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256',
  ecdhCurve: 'X25519:P-256',
} as const satisfies tls.SecureContextOptions;

export function secureContextOptions(creds: WorkloadCredentials, trustBundle: readonly string[]): tls.SecureContextOptions {
  return {
    ...TLS_OPTIONS,
    cert: creds.certChainPem.join(''),
    key: creds.keyPem.reveal(),
    ca: [...trustBundle],
  };
}

function sameBundle(a: readonly string[], b: readonly string[]): boolean {
  return a === b || (a.length === b.length && a.every((pem, i) => pem === b[i]));
}

/**
 * Secure contexts by leaf certificate, rebuilt when the trust bundle changes. Bounded: the oldest
 * entry goes when full (a node has a few hundred workload identities at most).
 */
export class SecureContextCache {
  readonly #entries = new Map<string, { bundle: readonly string[]; context: tls.SecureContext }>();
  constructor(readonly maxEntries = 1024) {}

  get(creds: WorkloadCredentials, trustBundle: readonly string[]): tls.SecureContext {
    const leaf = creds.certChainPem[0] ?? '';
    const hit = this.#entries.get(leaf);
    if (hit && sameBundle(hit.bundle, trustBundle)) return hit.context;
    const context = tls.createSecureContext(secureContextOptions(creds, trustBundle));
    this.#entries.delete(leaf);
    this.#entries.set(leaf, { bundle: trustBundle, context });
    if (this.#entries.size > this.maxEntries) this.#entries.delete(this.#entries.keys().next().value!);
    return context;
  }
}

/**
 * `checkServerIdentity` for HBONE: the server's certificate (already verified against the trust
 * bundle by OpenSSL) must carry exactly `expected` as its SPIFFE ID. Returns an Error that names
 * both identities, so a misrouted or impersonating endpoint is obvious in the log.
 */
export function checkPeerIdentity(expected: string, peerAddress: string, cert: tls.PeerCertificate): Error | undefined {
  const got = spiffeIdFromSubjectAltName(cert.subjectaltname);
  if (!got.ok) {
    return Object.assign(new Error(`server at ${peerAddress} presented a certificate without a usable SPIFFE ID (${got.error}); expected ${expected}`), { code: 'ERR_HBONE_PEER_IDENTITY' });
  }
  if (got.value !== expected) {
    return Object.assign(
      new Error(`server at ${peerAddress} is ${got.value}, expected ${expected} — the endpoint may have been reassigned to another workload (stale endpoint data) or is impersonating it`),
      { code: 'ERR_HBONE_PEER_IDENTITY', expected, got: got.value },
    );
  }
  return undefined;
}
