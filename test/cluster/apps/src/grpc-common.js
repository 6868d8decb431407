// Loads echo.proto (beside this file) into a @grpc/grpc-js service definition, shared by the
// demo gRPC server and client.
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROTO_PATH = join(dirname(fileURLToPath(import.meta.url)), 'echo.proto');

export function loadEchoService() {
  const definition = protoLoader.loadSync(PROTO_PATH, { keepCase: false, longs: Number, defaults: true });
  return grpc.loadPackageDefinition(definition).ambit.demo.Echo;
}

/** grpc-js reports peers as "1.2.3.4:5", "::ffff:1.2.3.4:5", "[::1]:5" (maybe "ipv4:"-prefixed); keep the address. */
export function peerAddress(peer) {
  const text = String(peer ?? '').replace(/^ipv[46]:/, '');
  const bracketed = /^\[([^\]]+)\]:\d+$/.exec(text);
  let address = text;
  if (bracketed) address = bracketed[1];
  else {
    const m = /^(.*):(\d+)$/.exec(text);
    // Without brackets a trailing :port is unambiguous only after an IPv4 address or a host name.
    if (m && (m[1].includes('.') || !m[1].includes(':'))) address = m[1];
  }
  return address.replace(/^::ffff:/, '');
}

export { grpc };
