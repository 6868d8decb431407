#!/usr/bin/env node
// echo-server: an HTTP server that tells the caller who answered and what it saw — pod name,
// namespace, version label, node (downward API env: POD_NAME, POD_NAMESPACE, POD_IP, NODE_NAME,
// VERSION), the peer address, method, path and request headers — so tests can tell which pod
// served a request and whether a proxy sat in between.
//
//   GET  /anything      → 200 JSON (below)
//   GET  /healthz       → 200 "ok" (503 after POST /healthz/fail, until POST /healthz/ok)
//   ANY  /status/<code> → that status, same JSON
//   ANY  /delay/<ms>    → the JSON after <ms> (at most 60 s)
//   ANY  /bytes/<n>     → n bytes of application/octet-stream (at most 64 MiB): a bulk response
//                         for throughput benchmarks, served from one reused buffer
//
// Port from $PORT (default 8080). SIGTERM stops accepting, lets in-flight requests finish, exits 0.
// One access-log line per request on stdout unless QUIET=1.
import { createServer } from 'node:http';
import { isMain, onShutdown, plainAddress, podIdentity, portFromEnv } from './lib.js';

export const MAX_DELAY_MS = 60_000;
export const MAX_BYTES = 64 * 1024 * 1024;

/** What a request path asks for: a plain echo, a status code, a delay, or a health action. */
export function route(method, path) {
  const pathname = path.split('?')[0];
  if (pathname === '/healthz') return { kind: 'health' };
  if (pathname === '/healthz/fail' || pathname === '/healthz/ok') {
    return method === 'POST' ? { kind: 'set-health', healthy: pathname.endsWith('/ok') } : { kind: 'status', status: 405 };
  }
  let m = /^\/status\/(\d{3})$/.exec(pathname);
  if (m) {
    const status = Number(m[1]);
    return status >= 200 && status <= 599 ? { kind: 'echo', status, delayMs: 0 } : { kind: 'status', status: 400 };
  }
  m = /^\/delay\/(\d+)$/.exec(pathname);
  if (m) return { kind: 'echo', status: 200, delayMs: Math.min(Number(m[1]), MAX_DELAY_MS) };
  m = /^\/bytes\/(\d+)$/.exec(pathname);
  if (m) {
    const size = Number(m[1]);
    return size <= MAX_BYTES ? { kind: 'bytes', size } : { kind: 'status', status: 413 };
  }
  return { kind: 'echo', status: 200, delayMs: 0 };
}

/** The JSON body of an echo answer. */
export function echoBody(identity, req, bodyBytes) {
  return {
    ...identity,
    peer: plainAddress(req.socket.remoteAddress),
    peerPort: req.socket.remotePort,
    local: plainAddress(req.socket.localAddress),
    localPort: req.socket.localPort,
    method: req.method,
    path: req.url,
    httpVersion: req.httpVersion,
    headers: req.headers,
    bodyBytes,
  };
}

/**
 * A body of `size` bytes. The largest buffer asked for so far is kept and sliced, so a benchmark
 * asking for the same size again and again allocates (and fills) nothing per request.
 */
let bulk = Buffer.alloc(0);
export function bulkBody(size) {
  if (bulk.length < size) bulk = Buffer.alloc(size, 'ambit-bulk-');
  return bulk.subarray(0, size);
}

export function startEchoServer({ port = portFromEnv(8080), env = process.env, log = console.log, quiet = env.QUIET === '1' } = {}) {
  const identity = podIdentity(env);
  let healthy = true;
  let draining = false;
  const server = createServer((req, res) => {
    let bodyBytes = 0;
    req.on('data', (chunk) => (bodyBytes += chunk.length));
    req.on('end', () => {
      const r = route(req.method ?? 'GET', req.url ?? '/');
      const send = (status, type, text) => {
        // While draining, tell keep-alive clients to reconnect (to another endpoint).
        if (draining) res.setHeader('connection', 'close');
        res.writeHead(status, { 'content-type': type, 'x-pod': identity.pod });
        res.end(req.method === 'HEAD' ? undefined : text);
        if (!quiet) log(`${req.method} ${req.url} from ${plainAddress(req.socket.remoteAddress)} -> ${status}`);
      };
      if (r.kind === 'health') return send(healthy ? 200 : 503, 'text/plain', healthy ? 'ok\n' : 'failing\n');
      if (r.kind === 'set-health') {
        healthy = r.healthy;
        return send(200, 'text/plain', `healthz now ${healthy ? 'ok' : 'failing'}\n`);
      }
      if (r.kind === 'bytes') {
        if (draining) res.setHeader('connection', 'close');
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': r.size, 'x-pod': identity.pod });
        res.end(req.method === 'HEAD' ? undefined : bulkBody(r.size));
        if (!quiet) log(`${req.method} ${req.url} from ${plainAddress(req.socket.remoteAddress)} -> 200`);
        return;
      }
      const json = () => `${JSON.stringify(echoBody(identity, req, bodyBytes))}\n`;
      if (r.kind === 'status') return send(r.status, 'application/json', json());
      if (r.delayMs > 0) setTimeout(() => send(r.status, 'application/json', json()), r.delayMs);
      else send(r.status, 'application/json', json());
    });
  });
  server.listen(port, () => log(`echo-server ${identity.pod} listening on :${server.address().port}`));
  const drain = () =>
    new Promise((resolve) => {
      draining = true;
      server.close(() => resolve());
      server.closeIdleConnections();
    });
  return { server, drain };
}

if (isMain(import.meta.url)) {
  const { drain } = startEchoServer();
  onShutdown(drain, { graceMs: Number(process.env.DRAIN_MS ?? 10_000) });
}
