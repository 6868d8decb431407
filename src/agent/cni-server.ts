/**
 * The agent's side of the cni → agent protocol (src/api/cni.ts): an HTTP server on a unix socket
 * (abstract `@ambit/cni` by default) that runs each CNI invocation the ambit-cni binary relays
 * through the CNI logic (src/cni/plugin.ts) in process, with the agent's handlers, and answers what
 * the plugin prints. The server knows nothing of enrolment; `enrol` resolves "enrolled" only once
 * the pod's redirection is in place, and the answer waits for it, which is what holds the pod's start.
 *
 * Handlers throw `CniTryAgain` when they cannot decide yet (agent still syncing): the runtime sees
 * "try again later" and retries the sandbox.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import {
  CNI_ENV_HEADERS,
  CNI_EXIT_CODE_HEADER,
  CNI_LOG_HEADER,
  CNI_RUN_PATH,
  DEFAULT_CNI_SOCKET,
  MAX_CNI_BODY_BYTES,
  decodeHeaderValue,
  encodeHeaderValue,
  socketAddress,
  type CniOperation,
} from '../api/cni.js';
import { runPlugin, type CniHandlers, type CniOutcome, type PluginOutput } from '../cni/plugin.js';
import { inNetns, openNetns } from '../sys/index.js';

export { CniTryAgain, type CniHandlers } from '../cni/plugin.js';

/** One answered invocation, for metrics (requests, failures, latency). */
export interface CniRequestRecord {
  /** from Cni-Command; "version" when someone asks by hand, "unknown" when absent or not a CNI command */
  op: CniOperation | 'version' | 'unknown';
  outcome: CniOutcome;
  /** the CNI error code when the run failed */
  code?: number;
  durationMs: number;
  /** "namespace/name" when the sandbox is a pod */
  pod?: string;
}

export interface CniServerOptions {
  /** "@name" (abstract socket) or a filesystem path; default DEFAULT_CNI_SOCKET ("@ambit/cni") */
  socketPath?: string;
  handlers: CniHandlers;
  log?: Logger;
  onRequest?: (r: CniRequestRecord) => void;
  /**
   * A network namespace (path) to listen in instead of the agent's own. An abstract socket is
   * reachable only from its netns: tests whose runtime lives in another netns than the test
   * process use this; the agent (hostNetwork, like the runtime) does not.
   */
  netns?: string;
  /**
   * Decides whether a connecting process may talk to the agent; returns why not, or undefined.
   * Meant for a SO_PEERCRED uid-0 check (see native/README.md); default: everyone who can connect.
   */
  verifyPeer?: (socket: Socket) => string | undefined;
}

/** Stderr of one run sent back to the plugin is cut here (it is for a human reading the runtime's log). */
const MAX_LOG_HEADER_CHARS = 8 * 1024;
const OPS: Record<string, CniRequestRecord['op']> = { ADD: 'add', DEL: 'del', CHECK: 'check', VERSION: 'version' };

class HttpRefusal extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class CniServer {
  private constructor(
    /** as configured: "@name" or a path */
    readonly socketPath: string,
    private readonly server: Server,
  ) {}

  /**
   * Listens on `socketPath`. A filesystem socket gets its directory created, a stale socket of a
   * dead agent replaced and mode 0600; a live one is an error, so two agents never split a node's
   * pods between them. An abstract name in use is the same error.
   */
  static async start(opts: CniServerOptions): Promise<CniServer> {
    const socketPath = opts.socketPath ?? DEFAULT_CNI_SOCKET;
    const abstract = socketPath.startsWith('@');
    if (!abstract) {
      await mkdir(dirname(socketPath), { recursive: true, mode: 0o755 });
      await removeStaleSocket(socketPath);
    }
    const server = createServer({ maxHeaderSize: 256 * 1024 }, (req, res) => void serve(opts, req, res));
    // Enrolment of one pod may take a while (rules, listeners); the plugin has its own deadline.
    server.requestTimeout = 0;
    server.headersTimeout = 10_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(err.code === 'EADDRINUSE' ? new Error(`another process already serves ${socketPath} (is a second ambit-agent running on this node?)`) : err),
      );
      const listen = () => server.listen(socketAddress(socketPath), () => resolve());
      if (opts.netns === undefined) listen();
      else {
        // listen() binds synchronously, so the socket is made inside the namespace.
        const ns = openNetns(opts.netns);
        try {
          inNetns(ns, listen);
        } finally {
          ns.close();
        }
      }
    });
    server.removeAllListeners('error');
    server.on('error', (err) => opts.log?.error({ err }, 'CNI server error'));
    if (!abstract) await chmod(socketPath, 0o600);
    opts.log?.info({ socket: socketPath, ...(opts.netns ? { netns: opts.netns } : {}) }, 'CNI server listening');
    return new CniServer(socketPath, server);
  }

  /** Stops accepting, ends idle connections, waits for answers in flight, removes a filesystem socket. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
    if (!this.socketPath.startsWith('@')) await unlink(this.socketPath).catch(() => undefined);
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

/** The CNI_* environment the plugin relayed: one header per variable it had. */
export function envFromHeaders(headers: IncomingMessage['headers']): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, header] of Object.entries(CNI_ENV_HEADERS)) {
    const v = headers[header];
    if (typeof v === 'string') env[name] = decodeHeaderValue(v);
  }
  return env;
}

async function serve(opts: CniServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const started = Date.now();
  try {
    const refused = opts.verifyPeer?.(req.socket);
    if (refused) throw new HttpRefusal(403, `refused: ${refused}`);
    // 404, so a plugin of another protocol version fails loudly rather than being misread.
    if (req.url !== CNI_RUN_PATH) throw new HttpRefusal(404, `unknown path ${req.url}; this agent serves POST ${CNI_RUN_PATH}`);
    if (req.method !== 'POST') throw new HttpRefusal(405, `${req.method} ${req.url}: only POST is served`);
    const env = envFromHeaders(req.headers);
    const stdin = await readBody(req);
    let answered = false;
    res.once('close', () => {
      // The plugin gave up (its timeoutMs) before the answer: the runtime will run ADD again.
      if (!answered) opts.log?.warn({ command: env.CNI_COMMAND, containerId: env.CNI_CONTAINERID }, 'ambit-cni stopped waiting before the agent answered; the runtime retries');
    });
    const out = await runPlugin({ env, stdin }, opts.handlers);
    answered = true;
    reply(res, out);
    record(opts, env, out, Date.now() - started);
  } catch (err) {
    const status = err instanceof HttpRefusal ? err.status : 500;
    const message = err instanceof Error ? err.message : String(err);
    opts.log?.warn({ status, url: req.url }, `CNI request refused: ${message}`);
    if (!res.headersSent) {
      res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(message) });
      res.end(message);
    } else res.destroy();
  }
}

function record(opts: CniServerOptions, env: Record<string, string>, out: PluginOutput, durationMs: number): void {
  const op = OPS[env.CNI_COMMAND ?? ''] ?? 'unknown';
  const rec: CniRequestRecord = { op, outcome: out.outcome, durationMs, ...(out.code !== undefined ? { code: out.code } : {}), ...(out.pod ? { pod: out.pod } : {}) };
  opts.onRequest?.(rec);
  const fields = { op, pod: out.pod, outcome: out.outcome, code: out.code, ms: durationMs, containerId: env.CNI_CONTAINERID?.slice(0, 12) };
  const text = out.stderr.trimEnd();
  if (out.exitCode === 0) opts.log?.info(fields, text || `CNI ${op}`);
  else opts.log?.warn(fields, text || `CNI ${op} failed`);
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_CNI_BODY_BYTES) {
      reject(new HttpRefusal(413, `request body larger than ${MAX_CNI_BODY_BYTES} bytes`));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_CNI_BODY_BYTES) {
        reject(new HttpRefusal(413, `request body larger than ${MAX_CNI_BODY_BYTES} bytes`));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function reply(res: ServerResponse, out: PluginOutput): void {
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(out.stdout),
    [CNI_EXIT_CODE_HEADER]: String(out.exitCode),
  };
  const log = out.stderr.length > MAX_LOG_HEADER_CHARS ? `${out.stderr.slice(0, MAX_LOG_HEADER_CHARS)}…\n` : out.stderr;
  if (log) headers[CNI_LOG_HEADER] = encodeHeaderValue(log);
  res.writeHead(200, headers);
  res.end(out.stdout);
}
