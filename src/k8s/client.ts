/**
 * The connection to the Kubernetes API server: the only place in src/ (with watch.ts) that touches
 * @kubernetes/client-node. client-node gives us the kubeconfig handling (in-cluster service
 * account, files, TLS and token options) and its Watch stream; plain requests (list pages,
 * status patches, TokenReview) go through node:https with the options client-node derives, so
 * objects stay plain wire JSON instead of client-node's model classes (Dates, renamed fields).
 */
import https from 'node:https';
import * as k8s from '@kubernetes/client-node';
import type { KubeObject } from '../state/objects.js';
import type { ResourceKind } from './resources.js';
import { apiVersionOf, collectionPath, objectPath } from './resources.js';

/** A failed API request, with the server's Status when it sent one. */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  /** abort after this long (default 30 s) */
  timeoutMs?: number;
}

export class KubeConnection {
  private constructor(readonly config: k8s.KubeConfig) {}

  /** From a kubeconfig document (tests, ambitctl). */
  static fromKubeconfig(text: string): KubeConnection {
    const kc = new k8s.KubeConfig();
    kc.loadFromString(text);
    return new KubeConnection(kc);
  }

  /** From the pod's service account (KUBERNETES_SERVICE_HOST + the projected token). */
  static inCluster(): KubeConnection {
    const kc = new k8s.KubeConfig();
    kc.loadFromCluster();
    return new KubeConnection(kc);
  }

  get server(): string {
    const c = this.config.getCurrentCluster();
    if (!c) throw new Error('the kubeconfig has no current cluster; set current-context');
    return c.server;
  }

  /** One JSON request. Errors become ApiError carrying the server's reason and message. */
  async request<T = unknown>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const options: https.RequestOptions = { method, headers: { Accept: 'application/json' } };
    await this.config.applyToHTTPSOptions(options);
    const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    if (body !== undefined) (options.headers as Record<string, string>)['Content-Type'] = opts.contentType ?? 'application/json';
    return new Promise<T>((resolve, reject) => {
      const req = https.request(url, options, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            parsed = undefined;
          }
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) return resolve(parsed as T);
          const s = (parsed ?? {}) as { reason?: string; message?: string };
          reject(new ApiError(status, s.reason ?? 'Unknown', `${method} ${path}: ${status} ${s.message ?? (text.slice(0, 200) || res.statusMessage)}`));
        });
      });
      req.setTimeout(opts.timeoutMs ?? 30_000, () => req.destroy(new Error(`${method} ${path}: no answer from ${this.server} within ${opts.timeoutMs ?? 30_000} ms`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  /** Lists a collection completely (pages of `pageSize`), items with apiVersion and kind filled in. */
  async list(r: ResourceKind, opts: { namespace?: string; labelSelector?: string; fieldSelector?: string; pageSize?: number } = {}): Promise<{ items: KubeObject[]; resourceVersion: string }> {
    const items: KubeObject[] = [];
    let cont: string | undefined;
    let resourceVersion = '';
    do {
      const page = await this.request<{ items?: KubeObject[]; metadata?: { resourceVersion?: string; continue?: string } }>('GET', collectionPath(r, opts.namespace), {
        query: { limit: opts.pageSize ?? 500, continue: cont, labelSelector: opts.labelSelector, fieldSelector: opts.fieldSelector },
      });
      // list items come without apiVersion/kind on the wire; watch events carry them
      for (const o of page.items ?? []) items.push({ ...o, apiVersion: apiVersionOf(r), kind: r.kind });
      resourceVersion = page.metadata?.resourceVersion ?? '';
      cont = page.metadata?.continue || undefined;
    } while (cont);
    return { items, resourceVersion };
  }

  /** Starts a watch with client-node's Watch; `onDone` is called once when it ends for any reason. */
  async watch(path: string, query: Record<string, string | number | boolean | undefined>, onEvent: (type: string, obj: unknown) => void, onDone: (err: unknown) => void): Promise<{ abort(): void }> {
    const w = new k8s.Watch(this.config);
    const clean = Object.fromEntries(Object.entries(query).filter(([, v]) => v !== undefined));
    const controller = await w.watch(path, clean, (type: string, obj: unknown) => onEvent(type, obj), (err: unknown) => onDone(err ?? null));
    return { abort: () => controller.abort() };
  }

  async get(r: ResourceKind, namespace: string | undefined, name: string): Promise<KubeObject> {
    return this.request<KubeObject>('GET', objectPath(r, namespace, name));
  }

  /** Replaces an object's status through the status subresource (merge patch: the rest is untouched). */
  async patchStatus(r: ResourceKind, namespace: string | undefined, name: string, status: unknown): Promise<KubeObject> {
    return this.request<KubeObject>('PATCH', objectPath(r, namespace, name, 'status'), { body: { status }, contentType: 'application/merge-patch+json' });
  }

  /** TokenReview: who a bearer token belongs to (authentication.k8s.io/v1). */
  async tokenReview(token: string, audiences?: string[]): Promise<{ authenticated?: boolean; user?: { username?: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> }; audiences?: string[]; error?: string }> {
    const review = await this.request<{ status?: Record<string, unknown> }>('POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, ...(audiences ? { audiences } : {}) } },
    });
    return (review.status ?? {}) as Awaited<ReturnType<KubeConnection['tokenReview']>>;
  }
}
