/** The agent's metric names and labels as Prometheus scrapes them. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { AgentMetrics } from './metrics.js';

test('every agent metric is exposed on the registry passed in, with its labels', async () => {
  const registry = new Registry();
  const m = new AgentMetrics(registry);
  m.setEnrolledPods(3);
  m.observeRuleProgramming('apply', 0.012);
  m.observeRuleProgramming('remove', 0.004);
  m.recordCniRequest({ op: 'add', outcome: 'enrolled', durationMs: 7 });
  m.recordCniRequest({ op: 'add', outcome: 'try-again', durationMs: 1 });
  m.enrolmentFailure('apply');
  m.capturedConnection('outbound');
  m.capturedConnection('inbound');
  m.capturedBytes('outbound', 1500);
  m.capturedBytes('inbound', 0);
  m.dnsQuery();
  m.observeReconcile(0.02);
  const text = await registry.metrics();
  const expected = [
    'ambit_agent_enrolled_pods 3',
    'ambit_agent_rule_programming_seconds_count{operation="apply"} 1',
    'ambit_agent_rule_programming_seconds_count{operation="remove"} 1',
    'ambit_agent_cni_requests_total{command="add",outcome="enrolled"} 1',
    'ambit_agent_cni_requests_total{command="add",outcome="try-again"} 1',
    'ambit_agent_cni_request_seconds_bucket{le="0.01",command="add"} 2',
    'ambit_agent_enrolment_failures_total{reason="apply"} 1',
    'ambit_agent_captured_connections_total{direction="outbound"} 1',
    'ambit_agent_captured_connections_total{direction="inbound"} 1',
    'ambit_agent_captured_bytes_total{direction="outbound"} 1500',
    'ambit_agent_captured_bytes_total{direction="inbound"} 0',
    'ambit_agent_dns_queries_total 1',
    'ambit_agent_reconcile_seconds_count 1',
  ];
  for (const line of expected) assert.ok(text.includes(line), `missing: ${line}\n${text}`);
});

test('two agents in one process do not collide (no global registry)', () => {
  assert.doesNotThrow(() => {
    new AgentMetrics(new Registry());
    new AgentMetrics(new Registry());
  });
});
