#!/usr/bin/env node
// grpc-client <host:port> <message> [--stream N] [--interval MS] [--timeout MS]
// Calls the demo Echo service once (Say), or opens a server stream of N replies (Stream), and
// prints each reply as one JSON line. Exits 1 with the gRPC status on failure, 2 on bad usage.
import { grpc, loadEchoService } from './grpc-common.js';
import { isMain, parseFlags, UsageError } from './lib.js';

const USAGE = 'usage: grpc-client <host:port> <message> [--stream N] [--interval MS] [--timeout MS]';

export function parseClientArgs(argv) {
  const { flags, positional } = parseFlags(argv, { stream: 'number', interval: 'number', timeout: 'number', help: 'boolean' });
  if (flags.help || positional.length !== 2) throw new UsageError(USAGE);
  return { address: positional[0], message: positional[1], stream: flags.stream ?? 0, intervalMs: flags.interval ?? 0, timeoutMs: flags.timeout ?? 10_000 };
}

/** Runs one call; resolves the replies (each also passed to `onReply`), rejects with the gRPC error. */
export function callEcho({ address, message, stream, intervalMs, timeoutMs }, onReply = () => {}) {
  const Echo = loadEchoService();
  // No TXT lookup of _grpc_config.<host>: a pod without reachable DNS would stall on it, and the
  // demo never publishes a service config.
  const client = new Echo(address, grpc.credentials.createInsecure(), { 'grpc.service_config_disable_resolution': 1 });
  const deadline = new Date(Date.now() + timeoutMs);
  const replies = [];
  return new Promise((resolve, reject) => {
    const done = (err) => {
      client.close();
      if (err) reject(err);
      else resolve(replies);
    };
    if (!stream) {
      client.Say({ message }, { deadline }, (err, r) => {
        if (r) onReply(r), replies.push(r);
        done(err);
      });
      return;
    }
    const call = client.Stream({ message, count: stream, intervalMs }, { deadline });
    call.on('data', (r) => (onReply(r), replies.push(r)));
    call.on('error', done);
    call.on('end', () => done());
  });
}

if (isMain(import.meta.url)) {
  try {
    const args = parseClientArgs(process.argv.slice(2));
    await callEcho(args, (r) => console.log(JSON.stringify(r)));
    // Exit now rather than when stray resolver work (e.g. a DNS query to an unreachable server) ends.
    process.exit(0);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(err.message);
      process.exit(2);
    }
    console.error(`grpc-client: ${err.code !== undefined ? `${grpc.status[err.code] ?? err.code}: ` : ''}${err.details ?? err.message}`);
    process.exit(1);
  }
}
