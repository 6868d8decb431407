/**
 * The push hub: the transport-free heart of config push. It holds each node's current snapshot and
 * a few recent versions, and for every subscribed agent decides what to send and when:
 *
 * - fan-out only to the node whose snapshot changed (a publish with an unchanged version sends
 *   nothing to anyone);
 * - first message: a delta from the agent's resume version when that version is still known here,
 *   else the full snapshot;
 * - flow control: at most `maxUnacked` messages (default 1) await an agent's ACK/NACK, and a
 *   transport that reports back-pressure (`send` returning false) gets nothing until `drained()`.
 *   Changes meanwhile coalesce for free: the next message is one delta from the version last sent
 *   to whatever is current then. So the per-stream buffer is bounded, and one slow agent costs the
 *   others nothing;
 * - a subscriber that stays stalled longer than `stallTimeoutMs` is closed (RESOURCE_EXHAUSTED), so
 *   it reconnects and resumes instead of holding a stream open forever.
 *
 * Messages are shared: every subscriber moving between the same two versions of a node gets the
 * same `Outgoing` object, encoded once.
 */
import { diffSnapshots } from '../api/delta.js';
import { encodeControlMessage, type ControlMessage } from '../api/wire.js';
import type { NodeSnapshot, ResourceError, SnapshotDelta } from '../api/types.js';

export interface Outgoing {
  kind: 'snapshot' | 'delta';
  message: ControlMessage;
  /** version the agent holds after applying it */
  version: string;
  /** when that version was published here (ms), for push-latency figures */
  publishedAt: number;
  /** the protobuf bytes, encoded on first use and shared by every subscriber */
  encoded(): Buffer;
}

/** The transport side of one subscription (one gRPC stream). */
export interface PushSink {
  /** Hands a message over. Return false when the transport wants nothing more until `drained()`. */
  send(message: Outgoing): boolean;
  /** Ends the stream with a gRPC status name and a message (the hub has already dropped it). */
  close(code: 'RESOURCE_EXHAUSTED', message: string): void;
}

/** Who is at the other end, for logs and NACK reports. */
export interface SubscriberInfo {
  node: string;
  /** e.g. the agent pod's namespace/name */
  agent: string;
}

/** Hooks for logs and metrics; all optional. */
export interface PushObserver {
  subscribed?(info: SubscriberInfo, start: 'resumed' | 'full'): void;
  unsubscribed?(info: SubscriberInfo): void;
  sent?(info: SubscriberInfo, message: Outgoing): void;
  /** `latencyMs`: from the publish of `version` to its ACK */
  acked?(info: SubscriberInfo, version: string, latencyMs: number): void;
  nacked?(info: SubscriberInfo, version: string, errors: ResourceError[]): void;
  stalled?(info: SubscriberInfo, stalledMs: number): void;
}

export interface HubOptions {
  diff?: (prev: NodeSnapshot, next: NodeSnapshot) => SnapshotDelta;
  /** versions kept per node for resume; default 16 */
  historyDepth?: number;
  /** messages that may await ACK per stream; default 1 */
  maxUnacked?: number;
  /** close a subscriber that cannot take a pending change for this long; default 60 s */
  stallTimeoutMs?: number;
  observer?: PushObserver;
  now?: () => number;
}

/** The hub's view of one subscription; the transport calls these. */
export interface Subscription {
  readonly info: SubscriberInfo;
  /** the agent acknowledged `version`; errors non-empty for a NACK. Returns an error text on a protocol violation. */
  acknowledge(version: string, errors: ResourceError[]): string | undefined;
  /** the transport can take more */
  drained(): void;
  /** the stream ended */
  close(): void;
}

interface NodeState {
  current?: NodeSnapshot;
  publishedAt: number;
  /** version → snapshot, oldest first */
  history: Map<string, NodeSnapshot>;
  subscribers: Set<Subscriber>;
  /** `${from}>${to}` or `>${to}` (full) → message; only for the current `to` */
  messages: Map<string, Outgoing>;
}

export class PushHub {
  readonly #nodes = new Map<string, NodeState>();
  readonly #diff: (prev: NodeSnapshot, next: NodeSnapshot) => SnapshotDelta;
  readonly #historyDepth: number;
  readonly #maxUnacked: number;
  readonly #stallTimeoutMs: number;
  readonly #observer: PushObserver;
  readonly #now: () => number;

  constructor(opts: HubOptions = {}) {
    this.#diff = opts.diff ?? diffSnapshots;
    this.#historyDepth = Math.max(1, opts.historyDepth ?? 16);
    this.#maxUnacked = Math.max(1, opts.maxUnacked ?? 1);
    this.#stallTimeoutMs = opts.stallTimeoutMs ?? 60_000;
    this.#observer = opts.observer ?? {};
    this.#now = opts.now ?? Date.now;
  }

  /**
   * Makes `snapshot` the current config of its node and pushes it to that node's subscribers.
   * Returns false (and sends nothing) when the node already has this version.
   */
  publish(snapshot: NodeSnapshot): boolean {
    const state = this.#state(snapshot.node);
    if (state.current?.version === snapshot.version) return false;
    state.current = snapshot;
    state.publishedAt = this.#now();
    state.history.delete(snapshot.version); // re-insert as newest
    state.history.set(snapshot.version, snapshot);
    while (state.history.size > this.#historyDepth) state.history.delete(state.history.keys().next().value!);
    state.messages.clear();
    for (const sub of state.subscribers) sub.flush();
    return true;
  }

  /** Forgets a node that no longer exists (kept while agents are still subscribed to it). */
  forget(node: string): void {
    const state = this.#nodes.get(node);
    if (state && state.subscribers.size === 0) this.#nodes.delete(node);
  }

  current(node: string): NodeSnapshot | undefined {
    return this.#nodes.get(node)?.current;
  }

  /** Nodes with a published snapshot. */
  nodes(): string[] {
    return [...this.#nodes.entries()].filter(([, s]) => s.current).map(([n]) => n);
  }

  subscriberCount(node?: string): number {
    if (node !== undefined) return this.#nodes.get(node)?.subscribers.size ?? 0;
    let n = 0;
    for (const s of this.#nodes.values()) n += s.subscribers.size;
    return n;
  }

  /** Registers an agent; it gets its first message now if the node has config, else on the first publish. */
  subscribe(info: SubscriberInfo, resumeVersion: string, sink: PushSink): Subscription {
    const state = this.#state(info.node);
    const resumeFrom = resumeVersion ? state.history.get(resumeVersion) : undefined;
    const sub = new Subscriber(this, state, info, sink, resumeFrom);
    state.subscribers.add(sub);
    this.#observer.subscribed?.(info, resumeFrom ? 'resumed' : 'full');
    sub.flush();
    return sub;
  }

  /** Closes subscribers stalled longer than the stall timeout; call periodically. */
  sweep(): void {
    const now = this.#now();
    for (const state of this.#nodes.values()) {
      for (const sub of [...state.subscribers]) {
        const since = sub.stalledSince();
        if (since !== undefined && now - since > this.#stallTimeoutMs) {
          this.#observer.stalled?.(sub.info, now - since);
          sub.close();
          sub.sink.close('RESOURCE_EXHAUSTED', `config for node ${sub.info.node} has waited ${Math.round((now - since) / 1000)}s for this agent to read and acknowledge; reconnect and resume`);
        }
      }
    }
  }

  // -- used by Subscriber ----------------------------------------------------------------------

  /** @internal the message that moves an agent from `from` (or nothing) to the node's current version */
  messageFor(state: NodeState, from: NodeSnapshot | undefined): Outgoing {
    const to = state.current!;
    const key = `${from?.version ?? ''}>${to.version}`;
    let out = state.messages.get(key);
    if (!out) {
      const message: ControlMessage = from ? { delta: this.#diff(from, to) } : { snapshot: to };
      out = outgoing(from ? 'delta' : 'snapshot', message, to.version, state.publishedAt);
      state.messages.set(key, out);
    }
    return out;
  }

  /** @internal */
  get observer(): PushObserver {
    return this.#observer;
  }
  /** @internal */
  get maxUnacked(): number {
    return this.#maxUnacked;
  }
  /** @internal */
  now(): number {
    return this.#now();
  }

  #state(node: string): NodeState {
    let state = this.#nodes.get(node);
    if (!state) {
      state = { publishedAt: 0, history: new Map(), subscribers: new Set(), messages: new Map() };
      this.#nodes.set(node, state);
    }
    return state;
  }
}

class Subscriber implements Subscription {
  /** what the agent will hold once it has applied everything sent; undefined before the first message */
  #sent: NodeSnapshot | undefined;
  #started = false;
  #resumeFrom: NodeSnapshot | undefined;
  /** sent, not yet acknowledged, oldest first */
  readonly #unacked: { version: string; publishedAt: number }[] = [];
  #blocked = false;
  #closed = false;
  /** since when a newer version has been waiting for this subscriber */
  #waitingSince: number | undefined;

  constructor(
    private readonly hub: PushHub,
    private readonly state: NodeState,
    readonly info: SubscriberInfo,
    readonly sink: PushSink,
    resumeFrom: NodeSnapshot | undefined,
  ) {
    this.#resumeFrom = resumeFrom;
  }

  flush(): void {
    const current = this.state.current;
    if (this.#closed || !current) return;
    const pending = !this.#started || this.#sent!.version !== current.version;
    if (!pending) {
      this.#waitingSince = undefined;
      return;
    }
    if (this.#blocked || this.#unacked.length >= this.hub.maxUnacked) {
      this.#waitingSince ??= this.hub.now();
      return;
    }
    // First message: a (possibly empty) delta from the resume version, else the full snapshot.
    const from = this.#started ? this.#sent : this.#resumeFrom;
    const out = this.hub.messageFor(this.state, from);
    this.#started = true;
    this.#resumeFrom = undefined;
    this.#sent = current;
    this.#waitingSince = undefined;
    this.#unacked.push({ version: out.version, publishedAt: out.publishedAt });
    this.hub.observer.sent?.(this.info, out);
    if (!this.sink.send(out)) this.#blocked = true;
  }

  acknowledge(version: string, errors: ResourceError[]): string | undefined {
    if (this.#closed) return undefined;
    const expected = this.#unacked[0];
    if (!expected) return `acknowledgement for version ${version}, but no version is awaiting one`;
    if (expected.version !== version) return `acknowledgement for version ${version}, but the next version to acknowledge is ${expected.version}`;
    this.#unacked.shift();
    if (errors.length > 0) this.hub.observer.nacked?.(this.info, version, errors);
    else this.hub.observer.acked?.(this.info, version, this.hub.now() - expected.publishedAt);
    this.flush();
    return undefined;
  }

  drained(): void {
    this.#blocked = false;
    this.flush();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.state.subscribers.delete(this);
    this.hub.observer.unsubscribed?.(this.info);
  }

  /** When this subscriber started holding back a pending change, or undefined. */
  stalledSince(): number | undefined {
    return this.#waitingSince;
  }
}

function outgoing(kind: 'snapshot' | 'delta', message: ControlMessage, version: string, publishedAt: number): Outgoing {
  let bytes: Buffer | undefined;
  return { kind, message, version, publishedAt, encoded: () => (bytes ??= encodeControlMessage(message)) };
}
