#!/usr/bin/env node
// grpc-server: the demo Echo service (echo.proto) over plaintext HTTP/2 — Say (unary) and
// Stream (server streaming); every reply carries the pod's identity and the peer it saw.
// Port from $PORT (default 50051). SIGTERM: tryShutdown (in-flight calls finish), then exit 0.
import { grpc, loadEchoService, peerAddress } from './grpc-common.js';
import { isMain, onShutdown, podIdentity, portFromEnv } from './lib.js';

export const MAX_STREAM_COUNT = 1000;
export const MAX_STREAM_INTERVAL_MS = 10_000;

function reply(identity, call, message, seq) {
  const { pod, namespace, version, node } = identity;
  return { message, seq, pod, namespace, version, node, peer: peerAddress(call.getPeer()) };
}

export function startGrpcServer({ port = portFromEnv(50051), env = process.env, log = console.log } = {}) {
  const identity = podIdentity(env);
  const quiet = env.QUIET === '1';
  const server = new grpc.Server();
  server.addService(loadEchoService().service, {
    Say(call, callback) {
      if (!quiet) log(`Say from ${peerAddress(call.getPeer())}`);
      callback(null, reply(identity, call, call.request.message, 0));
    },
    Stream(call) {
      const count = Math.min(Math.max(call.request.count || 1, 1), MAX_STREAM_COUNT);
      const interval = Math.min(Math.max(call.request.intervalMs || 0, 0), MAX_STREAM_INTERVAL_MS);
      if (!quiet) log(`Stream x${count} from ${peerAddress(call.getPeer())}`);
      let seq = 0;
      let timer;
      const next = () => {
        if (call.cancelled) return;
        call.write(reply(identity, call, call.request.message, seq++));
        if (seq >= count) call.end();
        else timer = setTimeout(next, interval);
      };
      call.on('cancelled', () => clearTimeout(timer));
      next();
    },
  });
  const ready = new Promise((resolve, reject) => {
    server.bindAsync(`[::]:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
      if (err) return reject(err);
      log(`grpc-server ${identity.pod} listening on :${bound}`);
      resolve(bound);
    });
  });
  const drain = () => new Promise((resolve) => server.tryShutdown(() => resolve()));
  return { server, ready, drain };
}

if (isMain(import.meta.url)) {
  const { ready, drain } = startGrpcServer();
  ready.catch((err) => {
    console.error(`grpc-server: ${err.message}`);
    process.exit(1);
  });
  onShutdown(drain, { graceMs: Number(process.env.DRAIN_MS ?? 10_000) });
}
