// Table tests of probe thresholds and port resolution, and the probe runner against a local
// HTTP/TCP server (reached from this test's own network namespace).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { openNetns } from '../../../src/sys/index.js';
import { nextProbeState, resolvePort, runProbe, type ProbeState, type ProbeTarget } from './probes.js';

test('thresholds: successThreshold successes flip to success, failureThreshold failures to failure', () => {
  const probe = { successThreshold: 2, failureThreshold: 3 };
  let s: ProbeState = { successes: 0, failures: 0, result: false };
  const results: boolean[] = [];
  for (const ok of [true, false, true, true, false, false, true, false, false, false]) {
    s = nextProbeState(s, ok, probe);
    results.push(s.result);
  }
  assert.deepEqual(results, [false, false, false, true, true, true, true, true, true, false]);
  assert.equal(nextProbeState({ successes: 0, failures: 0, result: false }, true, {}).result, true, 'default successThreshold 1');
});

test('named and numeric ports', () => {
  const ports = [{ name: 'http', containerPort: 8080 }];
  assert.equal(resolvePort('http', ports), 8080);
  assert.equal(resolvePort(9090, ports), 9090);
  assert.equal(resolvePort('9091', ports), 9091);
  assert.throws(() => resolvePort('grpc', ports), /couldn't find port "grpc"/);
});

test('httpGet and tcpSocket probes report as the kubelet does', async () => {
  const srv = http.createServer((req, res) => {
    res.statusCode = req.url === '/ok' ? 200 : req.url === '/redirect' ? 302 : 503;
    res.end(req.headers['user-agent']);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  const netns = openNetns('/proc/self/ns/net');
  const target: ProbeTarget = { podIp: '127.0.0.1', containerId: 'x', container: { name: 'c' }, netns, cri: undefined as never, kubeletVersion: '1.33' };
  try {
    const cases: [object, boolean, RegExp][] = [
      [{ httpGet: { path: '/ok', port } }, true, /^$/],
      [{ httpGet: { path: '/redirect', port } }, true, /^$/],
      [{ httpGet: { path: '/bad', port } }, false, /^HTTP probe failed with statuscode: 503$/],
      [{ tcpSocket: { port } }, true, /^$/],
      [{ tcpSocket: { port: 1 } }, false, /^dial tcp 127\.0\.0\.1:1: connect: connection refused$/],
      [{ httpGet: { path: '/', port: 1 } }, false, /^Get "http:\/\/127\.0\.0\.1:1\/": dial tcp 127\.0\.0\.1:1: connect: connection refused$/],
    ];
    for (const [probe, ok, re] of cases) {
      const o = await runProbe(probe, target);
      assert.equal(o.ok, ok, JSON.stringify(probe));
      assert.match(o.message, re, JSON.stringify(probe));
    }
  } finally {
    netns.close();
    srv.close();
  }
});
