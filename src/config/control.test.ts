import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseControlConfig, parseDuration, serviceDnsNames } from './control.js';

test('defaults: everything has a working value with no settings at all', () => {
  const r = parseControlConfig({}, []);
  assert.ok(r.ok);
  assert.equal(r.config.namespace, 'ambit-system');
  assert.deepEqual(r.config.grpcAddress, { host: '0.0.0.0', port: 15012 });
  assert.deepEqual(r.config.metricsAddress, { host: '0.0.0.0', port: 15014 });
  assert.deepEqual(r.config.agentServiceAccount, { namespace: 'ambit-system', name: 'ambit-agent' });
  assert.equal(r.config.workloadCertTtlMs, 24 * 3600_000);
  assert.equal(r.config.rootNamespace, 'ambit-system');
  assert.equal(r.config.kubeconfig, undefined);
});

test('flags win over variables; POD_NAMESPACE is the fallback namespace', () => {
  const r = parseControlConfig({ POD_NAMESPACE: 'mesh', AMBIT_TRUST_DOMAIN: 'a.example', AMBIT_LOG_LEVEL: 'debug' }, ['--trust-domain', 'b.example', '--grpc-address=127.0.0.1:9000']);
  assert.ok(r.ok);
  assert.equal(r.config.namespace, 'mesh');
  assert.equal(r.config.trustDomain, 'b.example');
  assert.equal(r.config.logLevel, 'debug');
  assert.deepEqual(r.config.grpcAddress, { host: '127.0.0.1', port: 9000 });
  assert.deepEqual(r.config.agentServiceAccount, { namespace: 'mesh', name: 'ambit-agent' });
});

test('every error is reported at once, each naming its setting', () => {
  const r = parseControlConfig({ AMBIT_WORKLOAD_CERT_TTL: 'soon', AMBIT_GRPC_ADDRESS: 'nowhere' }, ['--log-level=loud', '--frobnicate=1', 'stray', '--namespace=Bad_Name', '--agent-service-account=x']);
  assert.equal(r.ok, false);
  if (r.ok) return;
  const text = r.errors.join('\n');
  for (const needle of ['AMBIT_WORKLOAD_CERT_TTL="soon"', 'AMBIT_GRPC_ADDRESS="nowhere"', '--log-level="loud"', 'unknown flag --frobnicate', 'unexpected argument "stray"', '--namespace="Bad_Name"', '--agent-service-account="x"']) {
    assert.ok(text.includes(needle), `missing ${needle} in:\n${text}`);
  }
  // the 8th: the root namespace defaults to the (invalid) namespace and says so too
  assert.equal(r.errors.length, 8);
});

test('durations', () => {
  const table: [string, number | undefined][] = [['24h', 86_400_000], ['90s', 90_000], ['500ms', 500], ['1h30m', 5_400_000], ['7d', 604_800_000], ['1.5s', 1500], ['', undefined], ['10', undefined], ['1x', undefined]];
  for (const [text, ms] of table) assert.equal(parseDuration(text), ms, text);
});

test('service DNS names for the serving certificate', () => {
  assert.deepEqual(serviceDnsNames({ serviceName: 'ambit-control', namespace: 'ambit-system', clusterDomain: 'cluster.local' }), [
    'ambit-control',
    'ambit-control.ambit-system',
    'ambit-control.ambit-system.svc',
    'ambit-control.ambit-system.svc.cluster.local',
  ]);
});
