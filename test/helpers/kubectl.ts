/**
 * Drives the real `kubectl` installed on the machine against a test API server: a generated
 * kubeconfig, a private discovery cache, bounded run time, and helpers to wait for a condition.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiServer, type ApiServerOptions } from '../cluster/apiserver/server.js';

/** The kubectl to run: the machine's (a dispatcher that picks the binary matching the server's version), or $KUBECTL. */
export const KUBECTL = process.env.KUBECTL ?? 'kubectl';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class Kubectl {
  readonly dir: string;
  readonly kubeconfig: string;

  constructor(
    readonly server: ApiServer,
    token?: string,
    user?: string,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'ambit-kubectl-'));
    this.kubeconfig = join(this.dir, 'kubeconfig');
    server.writeKubeconfig(this.kubeconfig, token, user);
  }

  /** A kubectl for another identity (a bearer token) against the same server. */
  as(token: string, user = 'other'): Kubectl {
    return new Kubectl(this.server, token, user);
  }

  private args(args: string[]): string[] {
    return ['--kubeconfig', this.kubeconfig, '--cache-dir', join(this.dir, 'cache'), ...args];
  }

  /** Runs kubectl to completion (at most `timeoutMs`), feeding `stdin` if given. */
  run(args: string[], opts: { stdin?: string; timeoutMs?: number } = {}): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      const p = spawn(KUBECTL, this.args(args), { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d) => (stdout += d));
      p.stderr.on('data', (d) => (stderr += d));
      const timer = setTimeout(() => {
        p.kill('SIGKILL');
        reject(new Error(`kubectl ${args.join(' ')} timed out after ${opts.timeoutMs ?? 60000} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
      }, opts.timeoutMs ?? 60_000);
      p.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      p.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code: code ?? -1, stdout, stderr });
      });
      p.stdin.end(opts.stdin ?? '');
    });
  }

  /** Runs kubectl and fails with its output unless it exits 0. */
  async ok(args: string[], opts: { stdin?: string; timeoutMs?: number } = {}): Promise<string> {
    const r = await this.run(args, opts);
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    return r.stdout;
  }

  /** kubectl apply/create -f of a manifest given as text. */
  async applyText(manifest: string, verb: 'apply' | 'create' = 'apply', extra: string[] = []): Promise<RunResult> {
    const f = join(this.dir, `m-${Date.now()}-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(f, manifest);
    return this.run([verb, '-f', f, ...extra]);
  }

  /** Starts a long-running kubectl (e.g. `get -w`); the caller stops it with `stop()`. */
  start(args: string[]): { proc: ChildProcess; output: () => string; stop: () => void; waitFor: (re: RegExp, timeoutMs?: number) => Promise<string> } {
    const p = spawn(KUBECTL, this.args(args), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout!.on('data', (d) => (out += d));
    p.stderr!.on('data', (d) => (out += d));
    return {
      proc: p,
      output: () => out,
      stop: () => {
        if (p.exitCode === null) p.kill('SIGKILL');
      },
      waitFor: (re, timeoutMs = 20_000) => waitUntil(() => (re.test(out) ? out : undefined), timeoutMs, () => `no match for ${re} in:\n${out}`),
    };
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Polls `probe` every 50 ms until it returns a value, or fails after `timeoutMs`. */
export async function waitUntil<T>(probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 20_000, what: () => string = () => 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts a test API server with a kubectl for its admin. */
export async function startServer(opts: ApiServerOptions = {}): Promise<{ server: ApiServer; kubectl: Kubectl; stop: () => Promise<void> }> {
  const server = await ApiServer.start(opts);
  const kubectl = new Kubectl(server);
  return {
    server,
    kubectl,
    stop: async () => {
      kubectl.cleanup();
      await server.close();
    },
  };
}
