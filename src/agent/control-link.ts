/**
 * The agent's link to ambit-control: one ControlClient made from the files the DaemonSet mounts
 * (the roots of the ConfigMap ambit-root-cert, the projected pod-bound token), feeding the node's
 * MeshConfig and signing the CertificateManager's CSRs.
 *
 * The agent must start — and enrol pods, fail closed — without the control plane, which may not
 * have published its roots yet (the ConfigMap volume is optional). So the link waits for the roots
 * file instead of failing: until it appears, `sign` fails with UNAVAILABLE saying so (the
 * CertificateManager retries with backoff) and MeshConfig reports "no config yet". The file is
 * re-read periodically; when the roots change (a CA rotation) the link makes a new client and the
 * subscription resumes from the version it holds. The token is re-read on every call because the
 * kubelet rotates it.
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { ControlClient, ControlError } from '../api/client.js';
import type { SignResponse } from '../api/wire.js';
import type { CertSigner } from './certs.js';
import type { MeshConfig } from './mesh-config.js';

export interface ControlLinkOptions {
  node: string;
  /** host:port of ambit-control */
  address: string;
  /** the name its serving certificate is checked against */
  serverName: string;
  rootsFile: string;
  tokenFile: string;
  log: Logger;
  /** subscribed once the roots are there */
  mesh: MeshConfig;
  /** how often the roots file is read again; default 30 s (every 2 s until the first roots) */
  rootsPollMs?: number;
  /**
   * The roots from the API (the ConfigMap itself) while the mounted file is still missing: the
   * kubelet fills an optional ConfigMap volume only at its next sync (up to a minute or more), and
   * a fresh install should not route plaintext that long.
   */
  fetchRoots?: () => Promise<string | undefined>;
  backoff?: { initialMs?: number; maxMs?: number };
}

export class ControlLink implements CertSigner {
  #client: ControlClient | undefined;
  #roots = '';
  #rootsProblem: string;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(private readonly opts: ControlLinkOptions) {
    this.#rootsProblem = `${opts.rootsFile} has not been read yet`;
  }

  /** Starts reading the roots (now, then every `rootsPollMs`); connects as soon as they are there. */
  static start(opts: ControlLinkOptions): ControlLink {
    const link = new ControlLink(opts);
    const poll = (): void => {
      link.#timer = setTimeout(() => void link.refresh().finally(() => !link.#closed && poll()), link.#client ? (opts.rootsPollMs ?? 30_000) : Math.min(2000, opts.rootsPollMs ?? 2000));
      link.#timer.unref();
    };
    void link.refresh().finally(poll);
    return link;
  }

  get connected(): boolean {
    return this.#client !== undefined;
  }

  async sign(req: { podUid: string; csrPem: string; ttlSeconds?: number }, opts?: { timeoutMs?: number }): Promise<SignResponse> {
    if (!this.#client) throw new ControlError(grpc.status.UNAVAILABLE, this.#rootsProblem);
    return this.#client.sign(req, opts);
  }

  /** Reads the roots file; (re)connects when it holds new roots. Exposed for tests. */
  async refresh(): Promise<void> {
    const { rootsFile, log } = this.opts;
    let text: string;
    try {
      text = (await readFile(rootsFile, 'utf8')).trim();
    } catch (err) {
      text = '';
      this.#rootsProblem = `no roots for ambit-control at ${rootsFile} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); ambit-control publishes them in the ConfigMap ambit-root-cert on its first start — is it running?`;
    }
    if (text === '' && this.opts.fetchRoots && !this.#client) {
      text = ((await this.opts.fetchRoots().catch((err: Error) => {
        log.debug({ err }, 'cannot read the ConfigMap ambit-root-cert from the API');
        return undefined;
      })) ?? '').trim();
    }
    if (this.#closed || text === '' || text === this.#roots) {
      if (text === '' && !this.#client) this.opts.mesh.onConnection({ state: 'disconnected', error: new ControlError(grpc.status.UNAVAILABLE, this.#rootsProblem), retryInMs: this.opts.rootsPollMs ?? 30_000 });
      return;
    }
    const problem = rootsProblem(text, rootsFile);
    if (problem) {
      this.#rootsProblem = problem;
      log.error(problem);
      return;
    }
    const previous = this.#client;
    this.#roots = text;
    this.#client = new ControlClient({ address: this.opts.address, serverName: this.opts.serverName, rootCertsPem: text, token: () => readToken(this.opts.tokenFile) });
    this.opts.mesh.subscribe(this.#client, this.opts.node, this.opts.backoff);
    previous?.close();
    log.info({ address: this.opts.address, serverName: this.opts.serverName, roots: text.split('-----END CERTIFICATE-----').length - 1 }, previous ? 'trust roots of ambit-control changed: reconnected with the new roots' : 'connecting to ambit-control');
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.opts.mesh.close();
    this.#client?.close();
  }
}

async function readToken(path: string): Promise<string> {
  try {
    const token = (await readFile(path, 'utf8')).trim();
    if (token) return token;
  } catch (err) {
    throw new Error(`cannot read the service-account token at ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); the DaemonSet projects it there (volume ambit-token)`);
  }
  throw new Error(`the service-account token at ${path} is empty`);
}

function rootsProblem(text: string, path: string): string | undefined {
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) return `${path} holds no PEM certificate; it should be the ConfigMap ambit-root-cert's root-cert.pem`;
  for (const b of blocks) {
    try {
      new X509Certificate(b);
    } catch (err) {
      return `${path} holds a certificate that does not parse (${(err as Error).message}); check the ConfigMap ambit-root-cert`;
    }
  }
  return undefined;
}
