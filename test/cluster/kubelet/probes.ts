// Container probes as the kubelet runs them (pkg/kubelet/prober): httpGet and tcpSocket connect
// from the node's network namespace to the pod IP (sockets created inside the node netns, so the
// traffic takes the node's routes and the pod sees the bridge address as its peer), exec runs over
// the CRI's ExecSync. A ProbeWorker applies period, initial delay and the success/failure
// thresholds and reports each result; the pod worker decides what it means (ready, restart).
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { connectSocket, inNetns, type NetnsHandle } from '../../../src/sys/index.js';
import type { CriClient } from '../runtime/cri.js';
import type { Container, ContainerPort, Probe } from './spec.js';

export type ProbeKind = 'Liveness' | 'Readiness' | 'Startup';

export interface ProbeOutcome {
  ok: boolean;
  /** the failure output, as the kubelet puts it into the Unhealthy event */
  message: string;
}

export interface ProbeTarget {
  podIp: string;
  containerId: string;
  container: Container;
  /** the node's network namespace, where probe connections are made */
  netns: NetnsHandle;
  cri: CriClient;
  kubeletVersion: string;
}

/** A named port of the container ("http") or a number, as probes and Services allow. */
export function resolvePort(port: number | string, ports: ContainerPort[] | undefined): number {
  if (typeof port === 'number') return port;
  if (/^\d+$/.test(port)) return Number(port);
  const found = (ports ?? []).find((p) => p.name === port);
  if (!found) throw new Error(`couldn't find port "${port}" in container ports`);
  return found.containerPort;
}

export async function runProbe(probe: Probe, t: ProbeTarget): Promise<ProbeOutcome> {
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
  try {
    if (probe.exec) return await execProbe(probe.exec.command ?? [], t, probe.timeoutSeconds ?? 1);
    if (probe.httpGet) return await httpProbe(probe.httpGet, t, timeoutMs);
    if (probe.tcpSocket) return await tcpProbe(probe.tcpSocket.host || t.podIp, resolvePort(probe.tcpSocket.port, t.container.ports), t, timeoutMs);
    if (probe.grpc) return await tcpProbe(t.podIp, probe.grpc.port, t, timeoutMs).then((o) => (o.ok ? { ok: false, message: 'gRPC probes are not supported by the local cluster kubelet' } : o));
    return { ok: false, message: 'probe has no handler' };
  } catch (err) {
    return { ok: false, message: (err as Error).message };
  }
}

async function execProbe(cmd: string[], t: ProbeTarget, timeoutSeconds: number): Promise<ProbeOutcome> {
  const res = await t.cri.execSync(t.containerId, cmd, timeoutSeconds).catch((err: Error) => {
    if (/DeadlineExceeded|timeout/i.test(err.message)) return { exitCode: -1, stdout: Buffer.from(''), stderr: Buffer.from(`command ${JSON.stringify(cmd.join(' '))} timed out`) };
    throw err;
  });
  const output = Buffer.concat([res.stdout, res.stderr]).toString('utf8');
  return { ok: res.exitCode === 0, message: output };
}

/** A TCP connection to host:port made inside the node netns. */
function dial(host: string, port: number, t: ProbeTarget): net.Socket {
  if (net.isIP(host) === 0) throw new Error(`dial tcp: lookup ${host}: probes of this kubelet take IP addresses only`);
  return inNetns(t.netns, () => connectSocket({ family: net.isIP(host) as 4 | 6, host, port }));
}

function dialError(host: string, port: number, err: NodeJS.ErrnoException): string {
  const hp = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  if (err.code === 'ECONNREFUSED') return `dial tcp ${hp}: connect: connection refused`;
  if (err.code === 'EHOSTUNREACH') return `dial tcp ${hp}: connect: no route to host`;
  if (err.code === 'ENETUNREACH') return `dial tcp ${hp}: connect: network is unreachable`;
  return `dial tcp ${hp}: ${err.message}`;
}

function tcpProbe(host: string, port: number, t: ProbeTarget, timeoutMs: number): Promise<ProbeOutcome> {
  return new Promise((resolve) => {
    const sock = dial(host, port, t);
    const timer = setTimeout(() => {
      sock.destroy();
      resolve({ ok: false, message: `dial tcp ${host}:${port}: i/o timeout` });
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ ok: true, message: '' });
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ ok: false, message: dialError(host, port, err) });
    });
  });
}

function httpProbe(get: NonNullable<Probe['httpGet']>, t: ProbeTarget, timeoutMs: number): Promise<ProbeOutcome> {
  const host = get.host || t.podIp;
  const port = resolvePort(get.port, t.container.ports);
  const scheme = (get.scheme ?? 'HTTP').toLowerCase();
  const path = get.path ? (get.path.startsWith('/') ? get.path : `/${get.path}`) : '/';
  const url = `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}${path}`;
  const headers: Record<string, string> = { 'User-Agent': `kube-probe/${t.kubeletVersion}`, Accept: '*/*' };
  for (const h of get.httpHeaders ?? []) headers[h.name] = h.value;
  return new Promise((resolve) => {
    let done = false;
    const finish = (o: ProbeOutcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(o);
    };
    const raw = dial(host, port, t);
    // Connection errors surface on our socket, not on the request: answer them here.
    raw.on('error', (err: NodeJS.ErrnoException) => finish({ ok: false, message: `Get "${url}": ${dialError(host, port, err)}` }));
    const sock = scheme === 'https' ? tls.connect({ socket: raw, rejectUnauthorized: false }) : raw;
    // No agent: an Agent (even agent: false) would ignore createConnection and dial from the host netns.
    const req = http.request({ host, port, path, method: 'GET', headers, createConnection: () => sock }, (res) => {
      // Read at most 10 KiB of the body, as the kubelet does, then judge by the status code.
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (body.length < 10240) body += d;
      });
      res.on('end', () => {
        const code = res.statusCode ?? 0;
        raw.destroy();
        if (code >= 200 && code < 400) finish({ ok: true, message: '' });
        else finish({ ok: false, message: `HTTP probe failed with statuscode: ${code}` });
      });
      res.on('error', () => finish({ ok: false, message: `Get "${url}": unexpected EOF` }));
    });
    const timer = setTimeout(() => {
      req.destroy();
      raw.destroy();
      finish({ ok: false, message: `Get "${url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)` });
    }, timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => finish({ ok: false, message: `Get "${url}": ${err.syscall === 'connect' ? dialError(host, port, err) : err.message}` }));
    req.end();
  });
}

/**
 * Runs one probe of one container instance periodically and keeps its result with the
 * thresholds applied. Initial results as in the kubelet: Liveness success, Readiness failure,
 * Startup failure (not yet started).
 */
export class ProbeWorker {
  private state: ProbeState;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    readonly kind: ProbeKind,
    readonly probe: Probe,
    private readonly run: () => Promise<ProbeOutcome>,
    /** every run: the raw outcome, and whether the thresholded result changed */
    private readonly onResult: (outcome: ProbeOutcome, changed: boolean, result: boolean) => void,
  ) {
    this.state = { successes: 0, failures: 0, result: kind === 'Liveness' };
  }

  get result(): boolean {
    return this.state.result;
  }

  start(): void {
    this.schedule((this.probe.initialDelaySeconds ?? 0) * 1000);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), ms);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    const outcome = await this.run().catch((err: Error) => ({ ok: false, message: err.message }));
    if (this.stopped) return;
    const before = this.state.result;
    this.state = nextProbeState(this.state, outcome.ok, this.probe);
    this.onResult(outcome, this.state.result !== before, this.state.result);
    this.schedule((this.probe.periodSeconds ?? 10) * 1000);
  }
}

export interface ProbeState {
  successes: number;
  failures: number;
  result: boolean;
}

/** successThreshold consecutive successes flip to success, failureThreshold failures to failure. */
export function nextProbeState(state: ProbeState, ok: boolean, probe: Probe): ProbeState {
  const successThreshold = probe.successThreshold ?? 1;
  const failureThreshold = probe.failureThreshold ?? 3;
  if (ok) {
    const successes = state.successes + 1;
    return { successes, failures: 0, result: state.result || successes >= successThreshold };
  }
  const failures = state.failures + 1;
  return { successes: 0, failures, result: state.result && failures < failureThreshold };
}
