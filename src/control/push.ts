/**
 * The control plane's gRPC server (service ambit.v1.AmbitControl, see src/api/ambit.proto):
 * Subscribe streams fed by the PushHub, and Sign backed by the CA. TLS with a serving certificate
 * from Ambit's CA; every call authenticated by TokenReview of the agent's bearer token.
 *
 * Robustness rules: the (de)serialisers never throw — a message that does not decode becomes an
 * INVALID_ARGUMENT for its own call only; handlers catch everything; a stream's end, cancellation or
 * error always unsubscribes it from the hub. Messages go out pre-encoded (the hub encodes each
 * distinct delta once), so the response serialiser is the identity on bytes.
 */
import { isIP } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type { Sensitive } from '../identity/sensitive.js';
import { decodeAgentMessage, decodeSignRequest, encodeSignResponse, SIGN_PATH, SUBSCRIBE_PATH, type AgentMessage, type SignRequest } from '../api/wire.js';
import { authenticateAgent, type Agent, type DenialCode } from './authz-csr.js';
import { handleSign, type SignDeps } from './ca-service.js';
import type { PushHub, PushSink, Subscription } from './push-hub.js';

/** A pino-compatible subset, so the server logs through whatever logger the program made. */
export interface PushLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface PushServerOptions {
  hub: PushHub;
  /** CA, authorisation config and lookups (TokenReview, pods) — shared by Subscribe and Sign */
  sign: SignDeps;
  tls: { certChainPem: string[]; keyPem: Sensitive<string> };
  /** the first message (subscribe) must arrive within this; default 10 s */
  subscribeTimeoutMs?: number;
  /** how often stalled subscribers are looked for; default 5 s */
  sweepIntervalMs?: number;
  log?: PushLog;
  /** an authenticated agent of `node` asked for addresses outside its scope (on-demand) */
  onDemand?: (node: string, addresses: string[]) => void;
}

/** Bounds on one demand message: an agent asks for a few addresses at a time. */
const MAX_DEMAND_ADDRESSES = 256;

type Decoded<T> = { ok: true; value: T } | { ok: false; error: string };

const SILENT: PushLog = { info() {}, warn() {}, error() {}, debug() {} };

/** Runs `decode`, turning any failure into a value the handler can answer with INVALID_ARGUMENT. */
function safeDecoder<T>(decode: (b: Buffer) => T): (b: Buffer) => Decoded<T> {
  return (bytes) => {
    try {
      return { ok: true, value: decode(bytes) };
    } catch (err) {
      return { ok: false, error: (err as Error).message };
    }
  };
}

const identity = (b: Buffer): Buffer => b;

/** The service definition with Ambit's codec (no code generation; the paths come from the proto). */
const SERVICE: grpc.ServiceDefinition = {
  Subscribe: {
    path: SUBSCRIBE_PATH,
    requestStream: true,
    responseStream: true,
    requestSerialize: identity,
    requestDeserialize: safeDecoder(decodeAgentMessage),
    responseSerialize: identity,
    responseDeserialize: identity,
  },
  Sign: {
    path: SIGN_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: safeDecoder(decodeSignRequest),
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};

/** The bearer token of a call, or undefined. */
export function bearerToken(metadata: grpc.Metadata): string | undefined {
  const value = metadata.get('authorization')[0];
  if (typeof value !== 'string') return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(value);
  return m?.[1];
}

function statusError(code: DenialCode | 'INVALID_ARGUMENT' | 'DEADLINE_EXCEEDED' | 'RESOURCE_EXHAUSTED' | 'INTERNAL', details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code: grpc.status[code], details, metadata: new grpc.Metadata() });
}

export class PushServer {
  readonly #server: grpc.Server;
  readonly #opts: PushServerOptions;
  readonly #log: PushLog;
  readonly #sweep: NodeJS.Timeout;
  #port = 0;

  private constructor(opts: PushServerOptions) {
    this.#opts = opts;
    this.#log = opts.log ?? SILENT;
    this.#server = new grpc.Server({
      // Server pings find dead agents; agents may ping us every 10 s to find a dead replica fast.
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.http2.min_ping_interval_without_data_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 1,
    });
    this.#server.addService(SERVICE, {
      Subscribe: (call: grpc.ServerDuplexStream<Decoded<AgentMessage>, Buffer>) => this.#subscribe(call),
      Sign: (call: grpc.ServerUnaryCall<Decoded<SignRequest>, Buffer>, cb: grpc.sendUnaryData<Buffer>) => void this.#sign(call, cb),
    });
    this.#sweep = setInterval(() => opts.hub.sweep(), opts.sweepIntervalMs ?? 5000).unref();
  }

  /** Binds `address` (host:port; port 0 picks one) and starts serving. Fails loudly if it cannot bind. */
  static async start(opts: PushServerOptions, address: string): Promise<PushServer> {
    const server = new PushServer(opts);
    const creds = grpc.ServerCredentials.createSsl(
      null,
      [{ cert_chain: Buffer.from(opts.tls.certChainPem.join('')), private_key: Buffer.from(opts.tls.keyPem.reveal()) }],
      false,
    );
    server.#port = await new Promise<number>((resolve, reject) =>
      server.#server.bindAsync(address, creds, (err, port) => (err ? reject(new Error(`cannot listen on ${address}: ${err.message}`)) : resolve(port))),
    );
    return server;
  }

  get port(): number {
    return this.#port;
  }

  /** Stops accepting calls; open streams end after `graceMs` (agents then reconnect to another replica). */
  async close(graceMs = 1000): Promise<void> {
    clearInterval(this.#sweep);
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        this.#server.forceShutdown();
        resolve();
      }, graceMs);
      this.#server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
  }

  /** Drops every connection at once (tests: a replica dying). */
  kill(): void {
    clearInterval(this.#sweep);
    this.#server.forceShutdown();
  }

  // ----------------------------------------------------------------------------------------------

  #subscribe(call: grpc.ServerDuplexStream<Decoded<AgentMessage>, Buffer>): void {
    const { hub, sign } = this.#opts;
    const log = this.#log;
    const token = bearerToken(call.metadata);
    const peer = call.getPeer();
    let phase: 'waiting' | 'authenticating' | 'subscribed' | 'ended' = 'waiting';
    let sub: Subscription | undefined;
    let agent: Agent | undefined;
    const early: AgentMessage[] = [];

    const end = (code: Parameters<typeof statusError>[0] | 'OK', details: string): void => {
      if (phase === 'ended') return;
      phase = 'ended';
      clearTimeout(timer);
      sub?.close();
      if (code === 'OK') {
        call.end();
      } else {
        log.info({ peer, agent, code, details }, 'subscribe stream ended with an error');
        call.emit('error', statusError(code, details));
      }
    };
    const timer = setTimeout(
      () => end('DEADLINE_EXCEEDED', `no subscribe message within ${this.#opts.subscribeTimeoutMs ?? 10_000} ms; send subscribe first`),
      this.#opts.subscribeTimeoutMs ?? 10_000,
    );

    const onAgentMessage = (msg: AgentMessage): void => {
      if ('subscribe' in msg) return end('INVALID_ARGUMENT', 'subscribe may be sent only once, as the first message of a stream');
      if ('demand' in msg) {
        const addresses = msg.demand.addresses.filter((a) => isIP(a) !== 0);
        if (addresses.length !== msg.demand.addresses.length || addresses.length > MAX_DEMAND_ADDRESSES) {
          return end('INVALID_ARGUMENT', `demand.addresses must be IP addresses, at most ${MAX_DEMAND_ADDRESSES} per message`);
        }
        this.#opts.onDemand?.(agent!.node, addresses);
        return;
      }
      const [version, errors] = 'ack' in msg ? [msg.ack.version, []] : [msg.nack.version, msg.nack.errors];
      if ('nack' in msg && errors.length === 0) return end('INVALID_ARGUMENT', `nack for version ${version} lists no errors; send ack if the version applied`);
      const violation = sub!.acknowledge(version, errors);
      if (violation) end('INVALID_ARGUMENT', violation);
    };

    const start = async (node: string, resumeVersion: string): Promise<void> => {
      if (!node) return end('INVALID_ARGUMENT', 'subscribe.node is empty; send the name of the node the agent runs on');
      const caller = await authenticateAgent(sign.lookups, sign.authz, token);
      if (phase === 'ended') return;
      if (!caller.ok) return end(caller.code, caller.message);
      agent = caller.agent;
      if (agent.node !== node) {
        return end('PERMISSION_DENIED', `subscribe.node is ${node}, but the caller's pod ${agent.namespace}/${agent.podName} runs on node ${agent.node}`);
      }
      clearTimeout(timer);
      const sink: PushSink = {
        send: (out) => call.write(out.encoded()),
        close: (code, details) => end(code, details),
      };
      phase = 'subscribed';
      sub = hub.subscribe({ node, agent: `${agent.namespace}/${agent.podName}` }, resumeVersion, sink);
      log.debug({ peer, node, agent: agent.podName, resumeVersion }, 'agent subscribed');
      for (const m of early.splice(0)) if (phase === 'subscribed') onAgentMessage(m);
    };

    call.on('data', (decoded: Decoded<AgentMessage>) => {
      if (phase === 'ended') return;
      if (!decoded.ok) return end('INVALID_ARGUMENT', decoded.error);
      const msg = decoded.value;
      if (phase === 'waiting') {
        if (!('subscribe' in msg)) return end('INVALID_ARGUMENT', 'the first message of a stream must be subscribe');
        phase = 'authenticating';
        start(msg.subscribe.node, msg.subscribe.resumeVersion).catch((err: Error) => {
          log.error({ peer, err: err.message }, 'subscribe failed');
          end('INTERNAL', 'subscribe failed inside the control plane; retry (details in its logs)');
        });
        return;
      }
      if (phase === 'authenticating') {
        if ('subscribe' in msg) return end('INVALID_ARGUMENT', 'subscribe may be sent only once, as the first message of a stream');
        early.push(msg);
        return;
      }
      onAgentMessage(msg);
    });
    call.on('drain', () => sub?.drained());
    call.on('end', () => end('OK', 'agent closed the stream'));
    call.on('cancelled', () => {
      phase = 'ended';
      clearTimeout(timer);
      sub?.close();
    });
    call.on('error', () => {
      // Our own status (emitted by `end`) or a transport failure: either way the stream is over.
      clearTimeout(timer);
      sub?.close();
    });
  }

  async #sign(call: grpc.ServerUnaryCall<Decoded<SignRequest>, Buffer>, cb: grpc.sendUnaryData<Buffer>): Promise<void> {
    const decoded = call.request;
    if (!decoded.ok) return cb(statusError('INVALID_ARGUMENT', decoded.error));
    try {
      const result = await handleSign(this.#opts.sign, bearerToken(call.metadata), decoded.value);
      if (!result.ok) {
        this.#log.info({ peer: call.getPeer(), podUid: decoded.value.podUid, agent: result.agent, reason: result.reason }, 'certificate request denied');
        return cb(statusError(result.code, result.message));
      }
      cb(null, encodeSignResponse(result.response));
    } catch (err) {
      this.#log.error({ peer: call.getPeer(), podUid: decoded.value.podUid, err: (err as Error).message }, 'certificate signing failed');
      cb(statusError('INTERNAL', 'signing failed inside the control plane; retry (details in its logs)'));
    }
  }
}
