/**
 * The agent's metrics, registered on the registry the agent's main passes in (never prom-client's
 * global one, so tests can run several agents in one process). Served at :15020/metrics by
 * src/telemetry's admin server.
 *
 * Names (all prefixed ambit_agent_):
 *   enrolled_pods                          gauge      pods of this node with redirection in place and listeners open
 *   rule_programming_seconds{operation}    histogram  applying (operation="apply") or removing ("remove") a pod's rules
 *   cni_requests_total{command, outcome}   counter    CNI plugin requests: command add|del|check; outcome enrolled|
 *                                                     not-enrolled|ok|bad-request|try-again|failed
 *   cni_request_seconds{command}           histogram  time to answer a CNI request (ADD holds the pod's start)
 *   enrolment_failures_total{reason}       counter    failed enrolment steps: netns-not-found, netns-ambiguous, proxy,
 *                                                     apply, remove, inspect, probe-snat
 *   captured_connections_total{direction}  counter    connections accepted by the in-pod listeners (outbound|inbound)
 *   captured_bytes_total{direction}        counter    bytes relayed for captured connections (outbound|inbound)
 *   dns_queries_total                      counter    DNS queries captured on 15053
 *   reconcile_seconds                      histogram  one reconcile pass over the node's pods
 *
 * The proxy only sees `CaptureMetrics` (three recording functions), not the whole set.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { CniRequestRecord } from './cni-server.js';

export type CaptureDirection = 'outbound' | 'inbound';
export type RuleOperation = 'apply' | 'remove';

/** What the in-pod listeners report; the narrow view handed to src/proxy. */
export interface CaptureMetrics {
  capturedConnection(direction: CaptureDirection): void;
  capturedBytes(direction: CaptureDirection, bytes: number): void;
  dnsQuery(): void;
}

/** What the enroller reports (enroller.ts); tests pass a fake or nothing. */
export interface EnrolmentMetrics {
  setEnrolledPods(n: number): void;
  observeRuleProgramming(operation: RuleOperation, seconds: number): void;
  enrolmentFailure(reason: string): void;
  observeReconcile(seconds: number): void;
}

const FAST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class AgentMetrics implements CaptureMetrics, EnrolmentMetrics {
  readonly enrolledPods: Gauge;
  readonly ruleProgramming: Histogram<'operation'>;
  readonly cniRequests: Counter<'command' | 'outcome'>;
  readonly cniRequestSeconds: Histogram<'command'>;
  readonly enrolmentFailures: Counter<'reason'>;
  readonly capturedConnections: Counter<'direction'>;
  readonly capturedBytesTotal: Counter<'direction'>;
  readonly dnsQueries: Counter;
  readonly reconcileSeconds: Histogram;

  constructor(readonly registry: Registry) {
    const registers = [registry];
    this.enrolledPods = new Gauge({ name: 'ambit_agent_enrolled_pods', help: 'Pods of this node with redirection in place and the proxy listening', registers });
    this.ruleProgramming = new Histogram({
      name: 'ambit_agent_rule_programming_seconds',
      help: "Time to apply or remove a pod's redirection rules",
      labelNames: ['operation'],
      buckets: FAST_BUCKETS,
      registers,
    });
    this.cniRequests = new Counter({ name: 'ambit_agent_cni_requests_total', help: 'CNI plugin requests, by command and outcome', labelNames: ['command', 'outcome'], registers });
    this.cniRequestSeconds = new Histogram({
      name: 'ambit_agent_cni_request_seconds',
      help: 'Time to answer a CNI plugin request (an ADD holds the pod start)',
      labelNames: ['command'],
      buckets: FAST_BUCKETS,
      registers,
    });
    this.enrolmentFailures = new Counter({ name: 'ambit_agent_enrolment_failures_total', help: 'Failed enrolment steps, by reason', labelNames: ['reason'], registers });
    this.capturedConnections = new Counter({ name: 'ambit_agent_captured_connections_total', help: 'Connections accepted by the in-pod listeners', labelNames: ['direction'], registers });
    this.capturedBytesTotal = new Counter({ name: 'ambit_agent_captured_bytes_total', help: 'Bytes relayed for captured connections', labelNames: ['direction'], registers });
    this.dnsQueries = new Counter({ name: 'ambit_agent_dns_queries_total', help: 'DNS queries captured on the in-pod DNS listener', registers });
    this.reconcileSeconds = new Histogram({
      name: 'ambit_agent_reconcile_seconds',
      help: "Time of one reconcile pass over the node's pods",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    // Known label values start at zero, so dashboards see the series before the first event.
    for (const d of ['outbound', 'inbound'] as const) {
      this.capturedConnections.inc({ direction: d }, 0);
      this.capturedBytesTotal.inc({ direction: d }, 0);
    }
  }

  /** Feed for CniServer's `onRequest`. */
  recordCniRequest(r: CniRequestRecord): void {
    this.cniRequests.inc({ command: r.op, outcome: r.outcome });
    this.cniRequestSeconds.observe({ command: r.op }, r.durationMs / 1000);
  }

  capturedConnection(direction: CaptureDirection): void {
    this.capturedConnections.inc({ direction });
  }

  capturedBytes(direction: CaptureDirection, bytes: number): void {
    if (bytes > 0) this.capturedBytesTotal.inc({ direction }, bytes);
  }

  dnsQuery(): void {
    this.dnsQueries.inc();
  }

  setEnrolledPods(n: number): void {
    this.enrolledPods.set(n);
  }

  observeRuleProgramming(operation: RuleOperation, seconds: number): void {
    this.ruleProgramming.observe({ operation }, seconds);
  }

  enrolmentFailure(reason: string): void {
    this.enrolmentFailures.inc({ reason });
  }

  observeReconcile(seconds: number): void {
    this.reconcileSeconds.observe(seconds);
  }
}
