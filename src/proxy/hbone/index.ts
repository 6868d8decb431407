/**
 * HBONE: TCP tunnelled over HTTP/2 CONNECT on TLS 1.3 mutual TLS with SPIFFE identities — the
 * transport between the node proxies. `HboneClient` dials tunnels (pooled sessions),
 * `HboneServer` is the :15008 listener of one pod netns.
 */
export { HboneClient, type HboneClientOptions, type HboneConnectRequest, type HboneClientStats, type SocketDialer } from './client.js';
export { HboneServer, type HboneServerOptions, type TunnelHandler, type TunnelRequest, type TunnelRefusal, type RejectEvent, type DrainOptions } from './server.js';
export { HboneError, type HboneErrorCode } from './errors.js';
export { relay, abortStream, type RelayResult } from './relay.js';
export { DEFAULT_TUNING, type H2Tuning } from './settings.js';
export type { WorkloadCredentials, TunnelRecord, TunnelEvent } from './types.js';
export { HBONE_PORT, parseAuthority, formatAuthority, spiffeIdFromSubjectAltName, type ResponseFlag } from './wire.js';
