/**
 * The agent's side of the cni → agent protocol (src/api/cni.ts): an HTTP server on a unix socket
 * that hands each pod the plugin reports to injected handlers. The server knows nothing of
 * enrolment; `enrol` answers "enrolled" only once the pod's redirection is in place, and the
 * server replies only when `enrol` settles, which is what holds the pod's start.
 *
 * Handlers throw `CniTryAgain` when they cannot decide yet (agent still syncing): the plugin
 * reports "try again later" and the runtime retries the sandbox.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import {
  CNI_PATHS,
  FAILURE_STATUS,
  parseCniPodRequest,
  type CniCheckReply,
  type CniErrorReply,
  type CniFailureKind,
  type CniOperation,
  type CniPodRequest,
  type EnrolDecision,
} from '../api/cni.js';

export interface CniHandlers {
  /** Resolves once the pod is enrolled (rules in place, proxy listening) or known not to be. */
  enrol(req: CniPodRequest): Promise<EnrolDecision>;
  /** The sandbox is going away; must tolerate repeats and unknown pods. Default: nothing to do. */
  release?(req: CniPodRequest): Promise<void>;
  /** Whether the pod is still as ADD left it. Default: ok. */
  check?(req: CniPodRequest): Promise<CniCheckReply>;
}

/** Thrown by a handler that cannot decide yet; the runtime will retry. */
export class CniTryAgain extends Error {
  override readonly name = 'CniTryAgain';
}

/** One answered request, for metrics (requests, failures, latency). */
export interface CniRequestRecord {
  op: CniOperation;
  /** "enrolled" / "not-enrolled" for add, "ok" for del/check, else the failure kind */
  outcome: EnrolDecision | 'ok' | CniFailureKind;
  durationMs: number;
  pod?: string;
}

export interface CniServerOptions {
  socketPath: string;
  handlers: CniHandlers;
  log?: Logger;
  onRequest?: (r: CniRequestRecord) => void;
}

const MAX_BODY_BYTES = 64 * 1024;
const OP_BY_PATH = new Map<string, CniOperation>(Object.entries(CNI_PATHS).map(([op, path]) => [path, op as CniOperation]));

class HttpFailure extends Error {
  constructor(
    readonly kind: CniFailureKind,
    message: string,
    /** default: the kind's status (FAILURE_STATUS) */
    readonly status = FAILURE_STATUS[kind],
  ) {
    super(message);
  }
}

export class CniServer {
  private constructor(
    readonly socketPath: string,
    private readonly server: Server,
  ) {}

  /**
   * Listens on `socketPath` (its directory is created; a stale socket of a dead agent is replaced;
   * a live one is an error, so two agents never split a node's pods between them). Root only (0600).
   */
  static async start(opts: CniServerOptions): Promise<CniServer> {
    await mkdir(dirname(opts.socketPath), { recursive: true, mode: 0o755 });
    await removeStaleSocket(opts.socketPath);
    const server = createServer((req, res) => void serve(opts, req, res));
    // Enrolment of one pod may take a while (rules, listeners); the plugin has its own deadline.
    server.requestTimeout = 0;
    server.headersTimeout = 10_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    await chmod(opts.socketPath, 0o600);
    opts.log?.info({ socket: opts.socketPath }, 'CNI server listening');
    return new CniServer(opts.socketPath, server);
  }

  /** Stops accepting, ends idle connections, waits for answers in flight, removes the socket. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
    await unlink(this.socketPath).catch(() => undefined);
  }
}

async function removeStaleSocket(path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return;
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket; refusing to replace it (remove it if it is left over)`);
  const live = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (live) throw new Error(`another process already serves ${path} (is a second ambit-agent running on this node?)`);
  await unlink(path);
}

async function serve(opts: CniServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const started = Date.now();
  const op = OP_BY_PATH.get(req.url ?? '');
  let pod: string | undefined;
  try {
    // 404, so a plugin of another protocol version fails loudly rather than being misread.
    if (!op) throw new HttpFailure('bad-request', `unknown path ${req.url}; this agent serves ${[...OP_BY_PATH.keys()].join(', ')}`, 404);
    if (req.method !== 'POST') throw new HttpFailure('bad-request', `${req.method} ${req.url}: only POST is served`);
    const parsed = parseCniPodRequest(await readJson(req));
    if (!parsed.ok) throw new HttpFailure('bad-request', parsed.error);
    const podReq = parsed.value;
    pod = `${podReq.pod.namespace}/${podReq.pod.name}`;
    const { body, outcome } = await dispatch(opts.handlers, op, podReq);
    reply(res, 200, body);
    opts.onRequest?.({ op, outcome, durationMs: Date.now() - started, pod });
    opts.log?.debug({ op, pod, outcome, ms: Date.now() - started }, 'CNI request');
  } catch (err) {
    const failure = toFailure(err);
    const body: CniErrorReply = { error: { kind: failure.kind, message: failure.message } };
    reply(res, failure.status, body);
    opts.onRequest?.({ op: op ?? 'add', outcome: failure.kind, durationMs: Date.now() - started, ...(pod ? { pod } : {}) });
    opts.log?.warn({ op, pod, kind: failure.kind, err: failure.kind === 'failed' ? err : undefined }, `CNI request failed: ${failure.message}`);
  }
}

async function dispatch(h: CniHandlers, op: CniOperation, req: CniPodRequest): Promise<{ body: object; outcome: CniRequestRecord['outcome'] }> {
  switch (op) {
    case 'add': {
      const decision = await h.enrol(req);
      if (decision !== 'enrolled' && decision !== 'not-enrolled') throw new Error(`enrol returned ${JSON.stringify(decision)}`);
      return { body: { decision }, outcome: decision };
    }
    case 'del':
      await h.release?.(req);
      return { body: { released: true }, outcome: 'ok' };
    case 'check': {
      const r = (await h.check?.(req)) ?? { ok: true };
      return { body: r, outcome: r.ok ? 'ok' : 'failed' };
    }
  }
}

function toFailure(err: unknown): HttpFailure {
  if (err instanceof HttpFailure) return err;
  if (err instanceof CniTryAgain) return new HttpFailure('try-again', err.message);
  return new HttpFailure('failed', err instanceof Error ? err.message : String(err));
}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reject(new HttpFailure('bad-request', `request body larger than ${MAX_BODY_BYTES} bytes`));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch (e) {
        reject(new HttpFailure('bad-request', `request body is not JSON: ${(e as Error).message}`));
      }
    });
    req.on('error', reject);
  });
}

function reply(res: ServerResponse, status: number, body: object): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
