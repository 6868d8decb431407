// The WebSocket remote-command protocol kubectl 1.30+ speaks for `kubectl exec`
// (k8s.io/apimachinery/pkg/util/remotecommand, client-go tools/remotecommand/websocket.go):
// subprotocol v5.channel.k8s.io (or v4.channel.k8s.io); every binary message starts with a channel
// byte — 0 stdin, 1 stdout, 2 stderr, 3 error (a meta/v1 Status JSON ending the session), 4 resize;
// v5 adds 255 followed by a channel id: "the sender closed that stream". The session ends with the
// Status on channel 3 and a normal close, which the client reads as EOF on every stream.
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';

export const PROTOCOL_V5 = 'v5.channel.k8s.io';
export const PROTOCOL_V4 = 'v4.channel.k8s.io';
/** What this kubelet accepts, best first. */
export const PROTOCOLS = [PROTOCOL_V5, PROTOCOL_V4];

export const CHANNEL = { stdin: 0, stdout: 1, stderr: 2, error: 3, resize: 4, close: 255 } as const;

/** The largest payload per message; the client reads with 32 KiB buffers. */
const MAX_PAYLOAD = 32 * 1024;

export function frame(channel: number, data: Buffer | string): Buffer {
  const body = typeof data === 'string' ? Buffer.from(data) : data;
  return Buffer.concat([Buffer.from([channel]), body]);
}

/** A message split into frames of at most MAX_PAYLOAD bytes of data each. */
export function frames(channel: number, data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += MAX_PAYLOAD) out.push(frame(channel, data.subarray(i, i + MAX_PAYLOAD)));
  return out;
}

export function parseFrame(msg: Buffer): { channel: number; data: Buffer } | undefined {
  if (msg.length === 0) return undefined;
  return { channel: msg[0]!, data: msg.subarray(1) };
}

/** The first protocol the client offered that we speak (the client lists its preferences). */
export function negotiate(offered: Iterable<string>): string | undefined {
  const set = new Set(offered);
  return PROTOCOLS.find((p) => set.has(p));
}

export interface ExecQuery {
  command: string[];
  container?: string;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

/** The exec query (`command` repeated once per argument, as kubectl sends it). */
export function parseExecQuery(q: URLSearchParams): ExecQuery {
  const bool = (k: string) => q.get(k) === 'true' || q.get(k) === '1';
  const out: ExecQuery = { command: q.getAll('command'), stdin: bool('stdin'), stdout: bool('stdout'), stderr: bool('stderr'), tty: bool('tty') };
  const c = q.get('container');
  if (c) out.container = c;
  return out;
}

export function successStatus(): object {
  return { metadata: {}, status: 'Success' };
}

/** What the kubelet reports for a command that exited non-zero; kubectl exits with the same code. */
export function exitCodeStatus(code: number, command: string[]): object {
  return {
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: error executing command [${command.join(' ')}], exit code ${code}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(code) }] },
  };
}

export function failureStatus(message: string, reason = 'InternalError', code = 500): object {
  return { metadata: {}, status: 'Failure', message, reason, code };
}

export interface ExecResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
}

/** What a session needs from the kubelet: run the command, or say why not. */
export interface ExecBackend {
  /** Validates the request (container exists and runs, ...); a returned string is the error. */
  check(q: ExecQuery): string | undefined;
  run(q: ExecQuery): Promise<ExecResult>;
}

const wss = new WebSocketServer({ noServer: true, handleProtocols: (offered) => negotiate(offered) ?? false, perMessageDeflate: false });

function sendStatus(ws: WebSocket, status: object): void {
  ws.send(frame(CHANNEL.error, JSON.stringify(status)), () => ws.close(1000));
}

/** Writes a plain HTTP error (a meta/v1 Status) on a socket that asked for some other upgrade. */
export function rejectUpgrade(socket: Socket, code: number, reason: string, message: string): void {
  const body = JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code });
  socket.end(`HTTP/1.1 ${code} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

/**
 * Serves one exec session on an upgrade request. SPDY (kubectl's fallback) is refused with a
 * Status saying so; errors found before running are reported on channel 3 after the upgrade,
 * where kubectl prints them as they are.
 */
export function serveExec(req: IncomingMessage, socket: Socket, head: Buffer, query: URLSearchParams, backend: ExecBackend): void {
  if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
    rejectUpgrade(socket, 400, 'BadRequest', 'this kubelet serves exec over WebSocket (v5.channel.k8s.io) only; SPDY is not supported (use kubectl 1.30 or later)');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.on('error', () => ws.terminate());
    const q = parseExecQuery(query);
    const problem = q.command.length === 0 ? 'you must specify at least 1 command' : backend.check(q);
    if (problem) return sendStatus(ws, failureStatus(problem, 'BadRequest', 400));
    if (q.stdin || q.tty) {
      return sendStatus(
        ws,
        failureStatus('interactive exec (-i/-t) is not supported by the local cluster kubelet: it runs commands with CRI ExecSync, which has no stdin; run the command without -i/-t', 'BadRequest', 400),
      );
    }
    backend.run(q).then(
      (r) => {
        if (ws.readyState !== ws.OPEN) return;
        if (q.stdout) for (const f of frames(CHANNEL.stdout, r.stdout)) ws.send(f);
        if (q.stderr) for (const f of frames(CHANNEL.stderr, r.stderr)) ws.send(f);
        sendStatus(ws, r.exitCode === 0 ? successStatus() : exitCodeStatus(r.exitCode, q.command));
      },
      (err: Error) => {
        if (ws.readyState === ws.OPEN) sendStatus(ws, failureStatus(err.message));
      },
    );
  });
}
