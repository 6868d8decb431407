/**
 * The one error type of the HBONE client, with stable codes (for metrics and tests) and messages
 * that tell the operator what to check.
 */

export type HboneErrorCode =
  | 'CONNECT_TIMEOUT' // TCP connect to :15008 got no answer
  | 'CONNECT_REFUSED' // TCP connect refused / unreachable
  | 'TLS_TIMEOUT' // TCP connected, TLS/h2 setup did not finish
  | 'TLS_FAILED' // handshake error (trust, protocol)
  | 'PEER_IDENTITY' // the server's certificate names another workload
  | 'TUNNEL_REFUSED' // CONNECT answered with a non-200 status
  | 'TUNNEL_TIMEOUT' // CONNECT sent, no response in time
  | 'SESSION_CLOSED'; // the tunnel's session went away before the CONNECT was answered

export class HboneError extends Error {
  constructor(
    readonly code: HboneErrorCode,
    message: string,
    /** HTTP status for TUNNEL_REFUSED */
    readonly status = 0,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'HboneError';
  }
}
