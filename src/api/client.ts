/**
 * The agent's client of the control plane (service ambit.v1.AmbitControl): a config subscription
 * that applies snapshots and deltas, acknowledges each version, and reconnects with backoff,
 * resuming from the version it holds; and `sign`, which asks for a pod's certificate.
 *
 * The agent supplies `onUpdate` (apply the config; return the resources it rejected, if any) and
 * a token source (the projected service-account token, re-read on every call since it rotates).
 */
import * as grpc from '@grpc/grpc-js';
import { applyDelta } from './delta.js';
import type { NodeSnapshot, ResourceError, SnapshotDelta } from './types.js';
import {
  decodeControlMessage,
  decodeSignResponse,
  encodeAgentMessage,
  encodeSignRequest,
  SIGN_PATH,
  SUBSCRIBE_PATH,
  type AgentMessage,
  type DecodedControl,
  type SignResponse,
} from './wire.js';

export interface ControlClientOptions {
  /** host:port of the control plane (its Service; any replica will do) */
  address: string;
  /** roots that sign the control plane's serving certificate (PEM) */
  rootCertsPem: string | string[];
  /** the agent's bearer token, fetched for every call */
  token: () => string | Promise<string>;
  /** the name to verify the server certificate against, when it differs from the address host */
  serverName?: string;
  /** extra gRPC channel options */
  channelOptions?: grpc.ChannelOptions;
}

/** A gRPC failure as the agent sees it: the status code (name and number) and the server's message. */
export class ControlError extends Error {
  constructor(
    readonly code: grpc.status,
    readonly details: string,
  ) {
    super(`${grpc.status[code] ?? code}: ${details}`);
    this.name = 'ControlError';
  }
  get codeName(): string {
    return grpc.status[this.code] ?? String(this.code);
  }
}

/** One config change as the agent applies it. */
export interface ConfigUpdate {
  /** the node's whole config at `snapshot.version`, after the change */
  snapshot: NodeSnapshot;
  /** the change itself; undefined when a full snapshot replaced everything */
  delta?: SnapshotDelta;
  /** resources that could not even be decoded (left out of `snapshot`; NACKed automatically) */
  decodeErrors: ResourceError[];
}

export type ConnectionEvent =
  | { state: 'connected' }
  | { state: 'disconnected'; error: ControlError; retryInMs: number };

export interface SubscribeOptions {
  node: string;
  /** version to resume from on the first connection (later connections resume from what is held) */
  resumeVersion?: string;
  /** the config from which `resumeVersion` is a version; needed to apply the resume delta */
  resumeSnapshot?: NodeSnapshot;
  /** apply the update; return the resources rejected (sent as a NACK) or nothing (ACK) */
  onUpdate(update: ConfigUpdate): ResourceError[] | void | Promise<ResourceError[] | void>;
  onConnection?(event: ConnectionEvent): void;
  backoff?: { initialMs?: number; maxMs?: number };
}

export interface ConfigSubscription {
  /** the version held (applied and acknowledged), if any */
  readonly version: string | undefined;
  readonly snapshot: NodeSnapshot | undefined;
  /** asks for addresses outside the node's scope (sent now and again after every reconnect) */
  demand(addresses: readonly string[]): void;
  close(): void;
}

const identity = (b: Buffer): Buffer => b;

export class ControlClient {
  readonly #client: grpc.Client;
  readonly #token: () => string | Promise<string>;

  constructor(opts: ControlClientOptions) {
    const roots = Buffer.from(Array.isArray(opts.rootCertsPem) ? opts.rootCertsPem.join('') : opts.rootCertsPem);
    this.#token = opts.token;
    this.#client = new grpc.Client(opts.address, grpc.credentials.createSsl(roots), {
      // A full snapshot can be large; the default 4 MiB limit is for requests, not config.
      'grpc.max_receive_message_length': 256 * 1024 * 1024,
      // Pings find a dead replica within seconds even when no FIN arrives.
      'grpc.keepalive_time_ms': 15_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      ...(opts.serverName ? { 'grpc.ssl_target_name_override': opts.serverName, 'grpc.default_authority': opts.serverName } : {}),
      ...opts.channelOptions,
    });
  }

  /** Asks for the certificate of pod `podUid` (on this agent's node) for the key of `csrPem`. */
  async sign(req: { podUid: string; csrPem: string; ttlSeconds?: number }, opts: { timeoutMs?: number } = {}): Promise<SignResponse> {
    const metadata = await this.#metadata();
    const bytes = await new Promise<Buffer>((resolve, reject) =>
      this.#client.makeUnaryRequest(
        SIGN_PATH,
        identity,
        identity,
        encodeSignRequest({ podUid: req.podUid, csrPem: req.csrPem, ttlSeconds: req.ttlSeconds ?? 0 }),
        metadata,
        { deadline: Date.now() + (opts.timeoutMs ?? 10_000) },
        (err, value) => (err ? reject(toControlError(err)) : resolve(value!)),
      ),
    );
    return decodeSignResponse(bytes);
  }

  /** Subscribes to the node's config; keeps reconnecting until closed. */
  subscribe(opts: SubscribeOptions): ConfigSubscription {
    return new Subscription(this, opts);
  }

  /** Opens one raw Subscribe stream (used by Subscription; exposed for protocol tests). */
  async openStream(): Promise<grpc.ClientDuplexStream<Buffer, Buffer>> {
    return this.#client.makeBidiStreamRequest(SUBSCRIBE_PATH, identity, identity, await this.#metadata());
  }

  close(): void {
    this.#client.close();
  }

  async #metadata(): Promise<grpc.Metadata> {
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${await this.#token()}`);
    return md;
  }
}

class Subscription implements ConfigSubscription {
  #snapshot: NodeSnapshot | undefined;
  #stream: grpc.ClientDuplexStream<Buffer, Buffer> | undefined;
  #closed = false;
  #failures = 0;
  #retry: NodeJS.Timeout | undefined;
  /** messages are applied strictly one after another */
  #queue: Promise<void> = Promise.resolve();
  /** every address demanded so far: a new stream (maybe to the other replica) asks again */
  readonly #demanded = new Set<string>();

  constructor(
    private readonly client: ControlClient,
    private readonly opts: SubscribeOptions,
  ) {
    if (opts.resumeVersion && opts.resumeSnapshot?.version === opts.resumeVersion) this.#snapshot = opts.resumeSnapshot;
    void this.#connect();
  }

  get version(): string | undefined {
    return this.#snapshot?.version;
  }

  get snapshot(): NodeSnapshot | undefined {
    return this.#snapshot;
  }

  demand(addresses: readonly string[]): void {
    const fresh = addresses.filter((a) => !this.#demanded.has(a));
    if (fresh.length === 0) return;
    for (const a of fresh) this.#demanded.add(a);
    this.#stream?.write(encodeAgentMessage({ demand: { addresses: fresh } }));
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#retry);
    this.#stream?.cancel();
  }

  async #connect(): Promise<void> {
    if (this.#closed) return;
    let stream: grpc.ClientDuplexStream<Buffer, Buffer>;
    try {
      stream = await this.client.openStream();
    } catch (err) {
      return this.#reconnect(new ControlError(grpc.status.UNAUTHENTICATED, `cannot get a token: ${(err as Error).message}`));
    }
    if (this.#closed) return void stream.cancel();
    this.#stream = stream;
    let ended = false;
    const fail = (error: ControlError): void => {
      if (ended) return;
      ended = true;
      stream.cancel();
      this.#reconnect(error);
    };
    let announced = false;
    stream.on('data', (bytes: Buffer) => {
      // The server sends nothing before the caller is authenticated: a first message means connected.
      if (!announced) {
        announced = true;
        this.#failures = 0;
        this.opts.onConnection?.({ state: 'connected' });
      }
      this.#queue = this.#queue.then(() => (ended ? undefined : this.#handle(stream, bytes, fail)));
    });
    stream.on('error', (err: grpc.ServiceError) => fail(toControlError(err)));
    stream.on('end', () => fail(new ControlError(grpc.status.UNAVAILABLE, 'the control plane closed the stream')));
    stream.write(encodeAgentMessage({ subscribe: { node: this.opts.node, resumeVersion: this.#snapshot?.version ?? '' } }));
    if (this.#demanded.size > 0) stream.write(encodeAgentMessage({ demand: { addresses: [...this.#demanded] } }));
  }

  async #handle(stream: grpc.ClientDuplexStream<Buffer, Buffer>, bytes: Buffer, fail: (e: ControlError) => void): Promise<void> {
    let decoded: DecodedControl;
    try {
      decoded = decodeControlMessage(bytes);
    } catch (err) {
      // Cannot tell what version this was: start over with a full snapshot.
      this.#snapshot = undefined;
      return fail(new ControlError(grpc.status.INTERNAL, `undecodable config message: ${(err as Error).message}`));
    }
    const { message, errors: decodeErrors } = decoded;
    let next: NodeSnapshot;
    let delta: SnapshotDelta | undefined;
    if ('snapshot' in message) {
      next = message.snapshot;
    } else {
      delta = message.delta;
      if (!this.#snapshot || this.#snapshot.version !== delta.from) {
        // Rule 6: a delta for a version we do not hold. Resubscribe for a full snapshot.
        const held = this.#snapshot?.version ?? 'nothing';
        this.#snapshot = undefined;
        return fail(new ControlError(grpc.status.FAILED_PRECONDITION, `delta from ${delta.from} but this agent holds ${held}`));
      }
      next = applyDelta(this.#snapshot, delta);
    }
    let rejected: ResourceError[] = [];
    try {
      rejected = (await this.opts.onUpdate({ snapshot: next, ...(delta ? { delta } : {}), decodeErrors })) ?? [];
    } catch (err) {
      rejected = [{ type: 'snapshot', key: next.version, message: `the agent could not apply this version: ${(err as Error).message}` }];
    }
    this.#snapshot = next;
    const errors = [...decodeErrors, ...rejected];
    const reply: AgentMessage = errors.length > 0 ? { nack: { version: next.version, errors } } : { ack: { version: next.version } };
    stream.write(encodeAgentMessage(reply));
  }

  #reconnect(error: ControlError): void {
    this.#stream = undefined;
    if (this.#closed) return;
    const initial = this.opts.backoff?.initialMs ?? 200;
    const max = this.opts.backoff?.maxMs ?? 30_000;
    // Exponential with full jitter, so a fleet of agents does not reconnect in lockstep.
    const ceiling = Math.min(max, initial * 2 ** this.#failures);
    const retryInMs = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    this.#failures++;
    this.opts.onConnection?.({ state: 'disconnected', error, retryInMs });
    this.#retry = setTimeout(() => void this.#connect(), retryInMs);
  }
}

function toControlError(err: grpc.ServiceError | Error): ControlError {
  const e = err as grpc.ServiceError;
  return new ControlError(typeof e.code === 'number' ? e.code : grpc.status.UNKNOWN, e.details ?? e.message);
}
