/**
 * TCP metrics with Istio's names and labels (so existing dashboards and Kiali read them as they
 * are) and one access-log line per connection.
 *
 * Istio's byte direction: `istio_tcp_received_bytes_total` counts what the destination received
 * (the request direction, source → destination), `istio_tcp_sent_bytes_total` what it sent back —
 * for both reporters. `reporter` is "source" on the client's node (outbound) and "destination" on
 * the server's (inbound). Unknown values are "unknown", as Istio writes them.
 */
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { RejectEvent } from '../hbone/index.js';
import { canonicalWorkloadName } from '../../state/workload-name.js';
import type { WorkloadInfo } from './view.js';

export const TCP_LABELS = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'source_principal',
  'destination_workload',
  'destination_workload_namespace',
  'destination_service',
  'destination_principal',
  'connection_security_policy',
  'response_flags',
] as const;

export type TcpLabels = Record<(typeof TCP_LABELS)[number], string>;

/** One proxied connection as the access log and the close counters see it. */
export interface ConnectionReport {
  labels: TcpLabels;
  source: string;
  destination: string;
  durationMs: number;
  /** source → destination */
  requestBytes: number;
  /** destination → source */
  responseBytes: number;
  /** why it failed, when it did */
  error?: string;
}

export class MeshTelemetry {
  readonly opened: Counter<(typeof TCP_LABELS)[number]>;
  readonly closed: Counter<(typeof TCP_LABELS)[number]>;
  readonly sent: Counter<(typeof TCP_LABELS)[number]>;
  readonly received: Counter<(typeof TCP_LABELS)[number]>;
  /** input the HBONE port refused before any tunnel: garbage, plain HTTP, no client certificate… */
  readonly hboneRejected: Counter<'scope' | 'status'>;

  constructor(
    registry: Registry,
    private readonly accessLog: Logger,
  ) {
    const registers = [registry];
    const labelNames = TCP_LABELS;
    this.opened = new Counter({ name: 'istio_tcp_connections_opened_total', help: 'TCP connections opened', labelNames, registers });
    this.closed = new Counter({ name: 'istio_tcp_connections_closed_total', help: 'TCP connections closed', labelNames, registers });
    this.sent = new Counter({ name: 'istio_tcp_sent_bytes_total', help: 'Bytes the destination sent back during the connection', labelNames, registers });
    this.received = new Counter({ name: 'istio_tcp_received_bytes_total', help: 'Bytes the destination received during the connection', labelNames, registers });
    this.hboneRejected = new Counter({
      name: 'ambit_hbone_rejected_total',
      help: 'Connections (scope=connection: failed TLS, not HTTP/2, no workload certificate) and requests (scope=stream: not CONNECT, bad authority, headers too large) refused on the HBONE port; the reason is in the proxy log',
      labelNames: ['scope', 'status'],
      registers,
    });
  }

  open(labels: TcpLabels): void {
    this.opened.inc(labels);
  }

  /** A connection refused at once (policy, no endpoint, no certificate): opened and closed, one log line. */
  refused(r: ConnectionReport): void {
    this.opened.inc(r.labels);
    this.close(r);
  }

  /** Input refused on the HBONE port before it became a tunnel (the HBONE server logs the reason). */
  rejected(ev: RejectEvent): void {
    this.hboneRejected.inc({ scope: ev.scope, status: ev.status === undefined ? 'none' : String(ev.status) });
  }

  /** Counts the close and the bytes, and writes the access-log line. */
  close(r: ConnectionReport): void {
    this.closed.inc(r.labels);
    if (r.requestBytes > 0) this.received.inc(r.labels, r.requestBytes);
    if (r.responseBytes > 0) this.sent.inc(r.labels, r.responseBytes);
    const l = r.labels;
    this.accessLog.info(
      {
        reporter: l.reporter,
        src: r.source,
        dst: r.destination,
        src_workload: `${l.source_workload_namespace}/${l.source_workload}`,
        dst_workload: `${l.destination_workload_namespace}/${l.destination_workload}`,
        dst_service: l.destination_service,
        src_principal: l.source_principal,
        dst_principal: l.destination_principal,
        security: l.connection_security_policy,
        flags: l.response_flags,
        duration_ms: r.durationMs,
        bytes_sent: r.responseBytes,
        bytes_received: r.requestBytes,
        ...(r.error ? { error: r.error } : {}),
      },
      'connection complete',
    );
  }
}

/** A workload's name as Istio reports it (src/state/workload-name.ts); a peer's comes with its record. */
export function workloadName(w: WorkloadInfo | undefined): string {
  return w?.workload ?? canonicalWorkloadName(w);
}

/** The labels for a connection between `source` and `destination` (either may be unknown). */
export function tcpLabels(opts: {
  reporter: 'source' | 'destination';
  source?: WorkloadInfo;
  sourcePrincipal?: string;
  destination?: WorkloadInfo;
  destinationPrincipal?: string;
  destinationService?: string;
  mtls: boolean;
  flags?: string;
}): TcpLabels {
  return {
    reporter: opts.reporter,
    source_workload: workloadName(opts.source),
    source_workload_namespace: opts.source?.namespace ?? namespaceOf(opts.sourcePrincipal) ?? 'unknown',
    source_principal: opts.sourcePrincipal ?? 'unknown',
    destination_workload: workloadName(opts.destination),
    destination_workload_namespace: opts.destination?.namespace ?? namespaceOf(opts.destinationPrincipal) ?? 'unknown',
    destination_service: opts.destinationService ?? 'unknown',
    destination_principal: opts.destinationPrincipal ?? 'unknown',
    connection_security_policy: opts.mtls ? 'mutual_tls' : 'none',
    response_flags: opts.flags ?? '-',
  };
}

/** "spiffe://td/ns/shop/sa/web" → "shop". */
function namespaceOf(principal: string | undefined): string | undefined {
  return principal ? /\/ns\/([^/]+)\/sa\//.exec(principal)?.[1] : undefined;
}
