import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { MeshTelemetry, tcpLabels } from './telemetry.js';

/** Sum of a counter's series, optionally only those whose label text contains `having`. */
async function sum(registry: Registry, name: string, having = ''): Promise<number> {
  const text = await registry.getSingleMetricAsString(name);
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) && l.includes(having))
    .reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
}

test('a refused connection is opened and closed at once, with one access-log line', async () => {
  const registry = new Registry();
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  const t = new MeshTelemetry(registry, log);
  const labels = tcpLabels({ reporter: 'destination', sourcePrincipal: 'spiffe://cluster.local/ns/shop/sa/client', mtls: true, flags: 'RBAC' });
  t.refused({ labels, source: '10.0.0.1:1234', destination: '10.0.0.2:8080', durationMs: 0, requestBytes: 0, responseBytes: 0, error: 'denied by DENY policy shop/x rules[0]' });
  assert.equal(await sum(registry, 'istio_tcp_connections_opened_total'), 1);
  assert.equal(await sum(registry, 'istio_tcp_connections_closed_total'), 1);
  assert.equal(await sum(registry, 'istio_tcp_received_bytes_total'), 0);
  assert.equal(lines.length, 1);
  assert.equal(lines[0]!.error, 'denied by DENY policy shop/x rules[0]');
  assert.equal(lines[0]!.src_workload, 'shop/unknown');
});

test('HBONE input rejections are counted by scope and status', async () => {
  const registry = new Registry();
  const t = new MeshTelemetry(registry, pino({ level: 'silent' }));
  t.rejected({ scope: 'connection', reason: 'not TLS' });
  t.rejected({ scope: 'stream', reason: 'GET on the HBONE port', status: 405 });
  t.rejected({ scope: 'stream', reason: 'GET on the HBONE port', status: 405 });
  assert.equal(await sum(registry, 'ambit_hbone_rejected_total', 'scope="connection",status="none"'), 1);
  assert.equal(await sum(registry, 'ambit_hbone_rejected_total', 'scope="stream",status="405"'), 2);
});
