/**
 * Shared shapes of the HBONE library: the credentials a side presents, and the record of one tunnel
 * that both sides hand to metrics and access logs.
 */
import type { Sensitive } from '../../identity/sensitive.js';
import type { ResponseFlag } from './wire.js';

/** A workload's X.509-SVID and key, as the agent holds them in memory. */
export interface WorkloadCredentials {
  /** the SPIFFE ID in the certificate */
  identity: string;
  /** leaf first, then intermediates up to (not including) the root; PEM */
  certChainPem: string[];
  keyPem: Sensitive<string>;
}

/** One tunnelled TCP connection, as metrics and the access log see it. */
export interface TunnelRecord {
  side: 'client' | 'server';
  /** per-process sequence number, to match an open with its close */
  id: number;
  /** our own SPIFFE ID (client: the source workload; server: the destination workload) */
  localIdentity: string;
  /** the other side's verified SPIFFE ID (server: the client's, from its certificate) */
  peerIdentity: string;
  /** the CONNECT target, ip:port */
  authority: string;
  /** client: the destination proxy's ip:port; server: the connecting proxy's ip:port */
  peerAddress: string;
  /** epoch ms when the CONNECT started */
  startTime: number;
  /** ms from start to close (0 on open) */
  durationMs: number;
  /** bytes from the source application towards the destination (Istio's received_bytes) */
  requestBytes: number;
  /** bytes from the destination application back to the source (Istio's sent_bytes) */
  responseBytes: number;
  /** HTTP status of the CONNECT; 0 when none was received/sent */
  status: number;
  responseFlags: ResponseFlag;
  /** why it failed, in words an operator can act on */
  error?: string;
}

export type TunnelEvent = { type: 'open'; tunnel: TunnelRecord } | { type: 'close'; tunnel: TunnelRecord };
