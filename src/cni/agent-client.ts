/**
 * The plugin's side of the cni → agent protocol (src/api/cni.ts): one HTTP request over the
 * agent's unix socket, with every way it can fail turned into the CNI error the runtime should
 * see. Unreachable or undecided agent → "try again later" (11): the runtime retries the sandbox
 * and the pod never runs outside the mesh (fail closed).
 */
import { request } from 'node:http';
import {
  CNI_PATHS,
  parseCniErrorReply,
  parseCniReply,
  type CniAddReply,
  type CniCheckReply,
  type CniDelReply,
  type CniOperation,
  type CniPodRequest,
} from '../api/cni.js';
import { CniCode, CniError } from './spec.js';

/** What the plugin needs from the agent; tests substitute it. */
export interface AgentClient {
  add(req: CniPodRequest): Promise<CniAddReply>;
  del(req: CniPodRequest): Promise<CniDelReply>;
  check(req: CniPodRequest): Promise<CniCheckReply>;
}

export interface AgentEndpoint {
  socketPath: string;
  timeoutMs: number;
}

const MAX_REPLY_BYTES = 64 * 1024;

/** The actionable message for an agent that does not answer at all. */
export function agentDownMessage(socketPath: string): string {
  return `ambit-agent is not running on this node (nothing answers on ${socketPath}); pods of the mesh wait until it is back, and the runtime retries. Check the ambit-agent pod of this node (kubectl -n ambit-system get pods -o wide)`;
}

/**
 * Maps an HTTP reply of the agent to its value or a CniError. Pure, so every branch has a table test.
 */
export function interpretReply(op: CniOperation, status: number, bodyText: string, socketPath: string): CniAddReply | CniDelReply | CniCheckReply {
  let body: unknown;
  try {
    body = bodyText === '' ? undefined : JSON.parse(bodyText);
  } catch {
    body = undefined;
  }
  if (status === 200) {
    const parsed = op === 'add' ? parseCniReply('add', body) : op === 'del' ? parseCniReply('del', body) : parseCniReply('check', body);
    if (parsed.ok) return parsed.value;
    throw new CniError(CniCode.AgentProtocol, `ambit-agent's answer to ${op} was not understood (are ambit-cni and ambit-agent the same version?)`, parsed.error);
  }
  const failure = parseCniErrorReply(body);
  const said = failure?.message ?? `HTTP ${status} ${bodyText.slice(0, 200)}`.trim();
  if (status === 503 || failure?.kind === 'try-again') return fail(CniCode.TryAgainLater, `ambit-agent cannot ${opVerb(op)} yet: ${said}`);
  if (status === 500 || failure?.kind === 'failed') return fail(op === 'check' ? CniCode.CheckFailed : CniCode.EnrolmentFailed, `ambit-agent failed to ${opVerb(op)}: ${said}`);
  return fail(CniCode.AgentProtocol, `ambit-agent on ${socketPath} refused the request (are ambit-cni and ambit-agent the same version?)`, said);
}

function fail(code: (typeof CniCode)[keyof typeof CniCode], msg: string, details = ''): never {
  throw new CniError(code, msg, details);
}

function opVerb(op: CniOperation): string {
  return { add: 'set up the pod', del: 'release the pod', check: 'check the pod' }[op];
}

/** A client that opens one connection per call (the plugin makes one call per run). */
export function httpAgentClient(endpoint: AgentEndpoint): AgentClient {
  const call = (op: CniOperation, req: CniPodRequest) => post(endpoint, op, req);
  return {
    add: (req) => call('add', req) as Promise<CniAddReply>,
    del: (req) => call('del', req) as Promise<CniDelReply>,
    check: (req) => call('check', req) as Promise<CniCheckReply>,
  };
}

function post(endpoint: AgentEndpoint, op: CniOperation, payload: CniPodRequest): Promise<CniAddReply | CniDelReply | CniCheckReply> {
  const body = JSON.stringify(payload);
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
    };
    const req = request(
      {
        socketPath: endpoint.socketPath,
        method: 'POST',
        path: CNI_PATHS[op],
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_REPLY_BYTES) req.destroy(new Error(`reply larger than ${MAX_REPLY_BYTES} bytes`));
          else chunks.push(c);
        });
        res.on('end', () =>
          settle(() => {
            try {
              resolve(interpretReply(op, res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'), endpoint.socketPath));
            } catch (err) {
              reject(err);
            }
          }),
        );
        res.on('error', (err) => settle(() => reject(new CniError(CniCode.TryAgainLater, `the connection to ambit-agent broke during ${op}`, err.message))));
      },
    );
    // A whole-call deadline: the agent may legitimately take a while to program a pod, not forever.
    const timer = setTimeout(() => {
      settle(() => reject(new CniError(CniCode.TryAgainLater, `ambit-agent did not answer ${op} within ${endpoint.timeoutMs} ms; the runtime will retry`, `socket ${endpoint.socketPath}`)));
      req.destroy();
    }, endpoint.timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) =>
      settle(() => {
        const connectFailure = err.code === 'ENOENT' || err.code === 'ECONNREFUSED' || err.code === 'ENOTSOCK' || err.code === 'EACCES';
        reject(
          connectFailure
            ? new CniError(CniCode.TryAgainLater, agentDownMessage(endpoint.socketPath), `connect: ${err.code}`)
            : new CniError(CniCode.TryAgainLater, `the connection to ambit-agent on ${endpoint.socketPath} failed during ${op}`, err.message),
        );
      }),
    );
    req.end(body);
  });
}
