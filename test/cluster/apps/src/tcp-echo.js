#!/usr/bin/env node
// tcp-echo: a TCP server that sends back every byte it receives. With GREETING set it first
// writes "<GREETING>\n" before reading anything — a server-first protocol, the kind a proxy that
// waits for the client's first bytes (to sniff the protocol) would stall.
// Port from $PORT (default 9000). SIGTERM stops accepting, gives open connections DRAIN_MS
// (default 2 s) to finish, then closes them and exits 0.
import { createServer } from 'node:net';
import { isMain, onShutdown, plainAddress, podIdentity, portFromEnv } from './lib.js';

export function startTcpEcho({ port = portFromEnv(9000), env = process.env, log = console.log } = {}) {
  const identity = podIdentity(env);
  const greeting = env.GREETING;
  const sockets = new Set();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    if (env.QUIET !== '1') log(`connection from ${plainAddress(socket.remoteAddress)}:${socket.remotePort}`);
    if (greeting) socket.write(`${greeting}\n`);
    socket.pipe(socket);
  });
  server.listen(port, () => log(`tcp-echo ${identity.pod} listening on :${server.address().port}${greeting ? ' (server first)' : ''}`));
  const drainMs = Number(env.DRAIN_MS ?? 2000);
  const drain = () =>
    new Promise((resolve) => {
      server.close(() => resolve());
      // Echo connections never end by themselves; give clients a moment, then end them.
      setTimeout(() => {
        for (const s of sockets) s.end();
        setTimeout(() => sockets.forEach((s) => s.destroy()), 500).unref();
      }, drainMs).unref();
    });
  return { server, drain };
}

if (isMain(import.meta.url)) {
  const { drain } = startTcpEcho();
  onShutdown(drain, { graceMs: Number(process.env.DRAIN_MS ?? 2000) + 3000 });
}
