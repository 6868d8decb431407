/**
 * The HTTP(S) face of the Kubernetes API test server: authentication (admin bearer tokens and
 * service-account JWTs), impersonation, RBAC authorisation, routing of the REST paths, content
 * negotiation (JSON, YAML in, Table and PartialObjectMetadata out), watch streaming with bookmarks,
 * discovery and OpenAPI v3, the review APIs, and the subresources (status, scale, binding, token,
 * finalize, log/exec through a node connection). Every failure is a meta/v1 Status.
 */
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { generateKeyPairSync, randomBytes, createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import YAML from 'yaml';
import { Registry, type ListQuery, type UserInfo, type WriteContext, type DeleteOptions, type FieldValidation, bucketOf, versionPriority } from './registry.js';
import type { KObject, ResourceType } from './types.js';
import { apiVersionOf, qualifiedResource } from './types.js';
import * as E from './errors.js';
import { createPki, type Pki } from './pki.js';
import { EXTRA_SUBRESOURCES, GROUP_ORDER, VIRTUAL_KINDS } from './builtins.js';
import { TokenIssuer, authenticateToken, tokenReviewStatus, serviceAccountUser, splitServiceAccountUsername, type ServiceAccountTokenLookups } from './auth/tokens.js';
import { authorize, forbiddenError, attributesFromAccessReviewSpec, userFromAccessReviewSpec, subjectAccessReviewStatus, resourceRulesFor, type AuthorizationAttributes, type RbacStore, type ClusterRole, type Role, type RoleBinding } from './auth/rbac.js';
import { bootstrapRbacObjects } from './auth/bootstrap.js';
import { tableColumnsFor, tableRowFor } from './tables.js';
import { labelSelectorFromObject, labelSelectorString } from './selectors.js';
import { openapiRoot, openapiForGroupVersion, apiPathOf } from './openapi.js';
import { patchMeta } from './patchmeta.js';
import { decodeProtobufBody, PROTOBUF_MEDIA_TYPE } from './protobuf/decode.js';
import { negotiateOpenapiV2, openapiV2Protobuf, openapiV2Document } from './openapiv2.js';
import { ControllerManager } from './controllers/manager.js';
import { applyPatch } from './patch.js';

export const SERVER_VERSION = { major: '1', minor: '33', gitVersion: 'v1.33.0-ambit', gitCommit: '0000000000000000000000000000000000000000', gitTreeState: 'clean', buildDate: '2026-01-01T00:00:00Z', goVersion: 'go1.24.0', compiler: 'gc', platform: 'linux/amd64' };

const MAX_BODY = 3 * 1024 * 1024;
const ADMIN_USER: UserInfo = { username: 'kubernetes-admin', groups: ['system:masters', 'system:authenticated'] };

/** The connection to a node's kubelet, for pods/log and pods/exec (set by the local cluster). */
export interface NodeConnection {
  /** streams a container's log into `res` (already authorised) */
  logs(pod: KObject, query: URLSearchParams, req: IncomingMessage, res: ServerResponse): void;
  /** handles an exec/attach upgrade request (WebSocket remote-command protocol) */
  exec(pod: KObject, query: URLSearchParams, req: IncomingMessage, socket: Socket, head: Buffer): void;
}

export interface ApiServerOptions {
  host?: string;
  port?: number;
  serviceCidr?: string;
  /** address other hosts (pods, nodes) reach the server at; goes into the `kubernetes` Service */
  advertiseAddress?: string;
  /** port at the advertise address (default: the listening port) */
  advertisePort?: number;
  extraSans?: { dns?: string[]; ips?: string[] };
  bookmarkIntervalMs?: number;
  historySize?: number;
  /** run the built-in controllers (default true) */
  controllers?: boolean;
  log?: (line: string) => void;
}

interface Route {
  rt: ResourceType;
  namespace: string | undefined;
  name: string | undefined;
  subresource: string | undefined;
}

export class ApiServer {
  readonly registry: Registry;
  readonly adminToken: string;
  readonly tokens: TokenIssuer;
  /** counters for tests and benchmarks */
  readonly stats = { watchesOpened: 0, watchesExpired: 0 };
  nodeConnection: NodeConnection | undefined;
  private server!: https.Server;
  private readonly extraServers: https.Server[] = [];
  private pki!: Pki;
  private controllers: ControllerManager | undefined;
  private readonly watches = new Set<() => void>();
  private readonly staticTokens = new Map<string, UserInfo>();
  private openapiCache = new Map<string, { gen: number; body: string; hash: string }>();
  private openapiV2Cache = new Map<string, { gen: number; body: Buffer | string }>();
  private readonly log: (line: string) => void;
  private port = 0;

  private constructor(private readonly opts: ApiServerOptions) {
    this.registry = new Registry({ serviceCidr: opts.serviceCidr ?? '10.96.0.0/16', historySize: opts.historySize ?? 5000 });
    this.adminToken = randomBytes(24).toString('hex');
    this.staticTokens.set(this.adminToken, ADMIN_USER);
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    this.tokens = new TokenIssuer({ privateKey, publicKey });
    this.log = opts.log ?? (() => {});
  }

  static async start(opts: ApiServerOptions = {}): Promise<ApiServer> {
    const s = new ApiServer(opts);
    await s.listen();
    return s;
  }

  get url(): string {
    return `https://${this.opts.host ?? '127.0.0.1'}:${this.port}`;
  }

  get caPem(): string {
    return this.pki.caPem;
  }

  get pkiMaterial(): Pki {
    return this.pki;
  }

  /**
   * Serves the API on one more listening socket (e.g. one created inside the cluster's underlay
   * network namespace, so nodes and pods reach the server there while kubectl uses loopback).
   */
  async addListener(fd: number): Promise<https.Server> {
    const extra = https.createServer({ cert: this.pki.certPem, key: this.pki.keyPem });
    extra.keepAliveTimeout = 120_000;
    extra.requestTimeout = 0;
    extra.on('request', (req, res) => this.handle(req, res));
    extra.on('upgrade', (req, socket, head) => this.handleUpgrade(req, socket as Socket, head));
    extra.on('clientError', (_err, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      extra.once('error', reject);
      extra.listen({ fd }, () => resolve());
    });
    this.extraServers.push(extra);
    return extra;
  }

  /** A service-account token, as the TokenRequest API issues it (the kubelet's projected volumes use this). */
  issueServiceAccountToken(namespace: string, serviceAccount: string, spec: { audiences?: string[]; expirationSeconds?: number; boundObjectRef?: { kind: string; name: string; uid?: string } }): { token: string; expirationTimestamp: string } {
    const r = this.tokenRequest(namespace, serviceAccount, { spec }) as { status: { token: string; expirationTimestamp: string } };
    return r.status;
  }

  /** A static bearer token for `user` (e.g. a node's kubelet identity). */
  addStaticToken(user: UserInfo): string {
    const t = randomBytes(24).toString('hex');
    this.staticTokens.set(t, user);
    return t;
  }

  /** A kubeconfig for the admin (or any static token). */
  kubeconfig(token = this.adminToken, user = 'admin'): string {
    return YAML.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'ambit-local', cluster: { server: this.url, 'certificate-authority-data': Buffer.from(this.pki.caPem).toString('base64') } }],
      users: [{ name: user, user: { token } }],
      contexts: [{ name: 'ambit-local', context: { cluster: 'ambit-local', user, namespace: 'default' } }],
      'current-context': 'ambit-local',
    });
  }

  writeKubeconfig(path: string, token?: string, user?: string): void {
    writeFileSync(path, this.kubeconfig(token, user), { mode: 0o600 });
  }

  /** Forgets the watch history (like an etcd compaction) and ends every watch: clients must relist. */
  compactAndDropWatches(): void {
    this.registry.store.compact();
    for (const end of [...this.watches]) end();
  }

  async close(): Promise<void> {
    this.controllers?.stop();
    for (const end of [...this.watches]) end();
    await Promise.all(
      [this.server, ...this.extraServers].map(
        (srv) =>
          new Promise<void>((resolve) => {
            srv.close(() => resolve());
            srv.closeAllConnections();
          }),
      ),
    );
  }

  private async listen(): Promise<void> {
    const host = this.opts.host ?? '127.0.0.1';
    const svcIp = this.registry.serviceIps.nth(1);
    const ips = [...new Set(['127.0.0.1', host, svcIp, ...(this.opts.advertiseAddress ? [this.opts.advertiseAddress] : []), ...(this.opts.extraSans?.ips ?? [])])].filter((h) => /^\d+\.\d+\.\d+\.\d+$/.test(h));
    const dns = ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local', ...(this.opts.extraSans?.dns ?? [])];
    this.pki = await createPki({ dnsNames: dns, ips });
    this.bootstrap();
    this.server = https.createServer({ cert: this.pki.certPem, key: this.pki.keyPem, ca: this.pki.caPem, requestCert: false });
    this.server.keepAliveTimeout = 120_000;
    this.server.headersTimeout = 60_000;
    this.server.requestTimeout = 0; // watches and log streams are long
    this.server.on('request', (req, res) => this.handle(req, res));
    this.server.on('upgrade', (req, socket, head) => this.handleUpgrade(req, socket as Socket, head));
    this.server.on('clientError', (_err, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port ?? 0, host, () => resolve());
    });
    this.port = (this.server.address() as { port: number }).port;
    this.seedKubernetesService();
    if (this.opts.controllers !== false) {
      this.controllers = new ControllerManager(this.registry.clientFor(), {
        caPem: this.pki.caPem,
        namespacedResources: () => this.registry.namespacedResources(),
        resourceFor: (apiVersion, kind) => {
          const rt = this.registry.lookupKind(apiVersion.includes('/') ? apiVersion.split('/')[0]! : '', kind);
          if (!rt) return undefined;
          return rt.group ? `${rt.group}/${rt.version}/${rt.plural}` : `${rt.version}/${rt.plural}`;
        },
      });
      this.controllers.start();
    }
  }

  /** What a fresh cluster has: system namespaces and the default RBAC policy. */
  private bootstrap(): void {
    const reg = this.registry;
    const ctx: WriteContext = { fieldValidation: 'Ignore' };
    for (const ns of ['default', 'kube-system', 'kube-public', 'kube-node-lease']) {
      reg.create(reg.lookupPath('v1/namespaces'), undefined, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }, ctx);
    }
    const rbac = bootstrapRbacObjects();
    for (const r of rbac.clusterRoles) reg.create(reg.lookupPath('rbac.authorization.k8s.io/v1/clusterroles'), undefined, r as KObject, ctx);
    for (const b of rbac.clusterRoleBindings) reg.create(reg.lookupPath('rbac.authorization.k8s.io/v1/clusterrolebindings'), undefined, b as KObject, ctx);
  }

  /** The `kubernetes` Service in `default`, whose endpoint is this server (what pods use to reach it). */
  private seedKubernetesService(): void {
    const reg = this.registry;
    const ctx: WriteContext = { fieldValidation: 'Ignore' };
    const ip = this.opts.advertiseAddress ?? this.opts.host ?? '127.0.0.1';
    const port = this.opts.advertisePort ?? this.port;
    reg.create(reg.lookupPath('v1/services'), 'default', {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'kubernetes', namespace: 'default', labels: { component: 'apiserver', provider: 'kubernetes' } },
      spec: { type: 'ClusterIP', clusterIP: reg.serviceIps.nth(1), ports: [{ name: 'https', port: 443, protocol: 'TCP', targetPort: port }] },
    }, ctx);
    reg.create(reg.lookupPath('v1/endpoints'), 'default', {
      apiVersion: 'v1',
      kind: 'Endpoints',
      metadata: { name: 'kubernetes', namespace: 'default', labels: { 'endpointslice.kubernetes.io/skip-mirror': 'true' } },
      subsets: [{ addresses: [{ ip }], ports: [{ name: 'https', port, protocol: 'TCP' }] }],
    } as KObject, ctx);
    reg.create(reg.lookupPath('discovery.k8s.io/v1/endpointslices'), 'default', {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'kubernetes', namespace: 'default', labels: { 'kubernetes.io/service-name': 'kubernetes', 'endpointslice.kubernetes.io/managed-by': 'endpointslicemirroring-controller.k8s.io' } },
      addressType: 'IPv4',
      endpoints: [{ addresses: [ip], conditions: { ready: true } }],
      ports: [{ name: 'https', port, protocol: 'TCP' }],
    } as KObject, ctx);
  }

  // ------------------------------------------------------------------ authentication

  private tokenLookups(): ServiceAccountTokenLookups {
    const get = (bucket: string, key: string) => {
      const s = this.registry.store.get(bucket, key);
      if (!s) return undefined;
      const live: { uid: string; deletionTimestamp?: string; nodeName?: string } = { uid: s.obj.metadata.uid ?? '' };
      if (s.obj.metadata.deletionTimestamp) live.deletionTimestamp = s.obj.metadata.deletionTimestamp;
      const nodeName = (s.obj.spec as Record<string, unknown> | undefined)?.nodeName;
      if (typeof nodeName === 'string') live.nodeName = nodeName;
      return live;
    };
    return {
      serviceAccount: (ns, name) => get('/serviceaccounts', `${ns}/${name}`),
      pod: (ns, name) => get('/pods', `${ns}/${name}`),
      secret: (ns, name) => get('/secrets', `${ns}/${name}`),
      node: (name) => get('/nodes', `/${name}`),
    };
  }

  private authenticate(req: IncomingMessage): UserInfo | undefined {
    const h = req.headers.authorization;
    if (!h) return { username: 'system:anonymous', groups: ['system:unauthenticated'] };
    const m = /^Bearer\s+(\S+)$/i.exec(h);
    if (!m) return undefined;
    const token = m[1]!;
    const st = this.staticTokens.get(token);
    if (st) return st;
    const r = authenticateToken(this.tokens, token, this.tokenLookups(), new Date());
    if ('error' in r) {
      this.log(`authentication failed: ${r.error}`);
      return undefined;
    }
    return r.user;
  }

  /** Impersonation headers, authorised like the real server: `impersonate` on users/groups/serviceaccounts. */
  private impersonate(req: IncomingMessage, user: UserInfo): UserInfo {
    const asUser = req.headers['impersonate-user'];
    const rawGroups = req.headers['impersonate-group'];
    const groups = rawGroups === undefined ? [] : Array.isArray(rawGroups) ? rawGroups : [rawGroups];
    if (!asUser && groups.length === 0) return user;
    if (!asUser) throw E.badRequest('requested [' + groups.map((g) => `{Group  ${g}}`).join(' ') + '] without impersonating a user');
    const username = Array.isArray(asUser) ? asUser[0]! : asUser;
    const sa = splitServiceAccountUsername(username);
    const check = (attrs: Omit<AuthorizationAttributes, 'user' | 'verb' | 'isResourceRequest'>) => {
      const a: AuthorizationAttributes = { user, verb: 'impersonate', isResourceRequest: true, ...attrs };
      const d = authorize(a, this.rbacStore());
      if (!d.allowed) throw forbiddenError(a, d.reason);
    };
    if (sa) check({ apiGroup: '', resource: 'serviceaccounts', namespace: sa.namespace, name: sa.name });
    else check({ apiGroup: '', resource: 'users', name: username });
    for (const g of groups) check({ apiGroup: '', resource: 'groups', name: g });
    let out: UserInfo;
    if (sa) {
      out = serviceAccountUser(sa.namespace, sa.name);
      if (groups.length) out.groups = [...groups, 'system:authenticated'];
    } else {
      out = { username, groups: [...groups] };
      if (username !== 'system:anonymous' && !out.groups.includes('system:authenticated')) out.groups.push('system:authenticated');
    }
    const uid = req.headers['impersonate-uid'];
    if (typeof uid === 'string') out.uid = uid;
    const extra: Record<string, string[]> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (k.startsWith('impersonate-extra-') && v !== undefined) extra[decodeURIComponent(k.slice('impersonate-extra-'.length))] = Array.isArray(v) ? v : [v];
    }
    if (Object.keys(extra).length) out.extra = extra;
    return out;
  }

  rbacStore(): RbacStore {
    const reg = this.registry;
    const all = <T>(bucket: string, prefix = '') => reg.store.list(bucket, prefix).map((s) => s.obj as unknown as T);
    return {
      roles: (ns) => all<Role>('rbac.authorization.k8s.io/roles', `${ns}/`),
      clusterRoles: () => all<ClusterRole>('rbac.authorization.k8s.io/clusterroles'),
      roleBindings: (ns) => all<RoleBinding>('rbac.authorization.k8s.io/rolebindings', `${ns}/`),
      clusterRoleBindings: () => all<RoleBinding>('rbac.authorization.k8s.io/clusterrolebindings'),
    };
  }

  private authorizeOrThrow(attrs: AuthorizationAttributes): void {
    const d = authorize(attrs, this.rbacStore());
    if (!d.allowed) throw forbiddenError(attrs, d.reason);
  }

  // ------------------------------------------------------------------ request handling

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'https://x');
    const started = Date.now();
    res.on('finish', () => this.log(`${req.method} ${url.pathname}${url.search} ${res.statusCode} ${Date.now() - started}ms`));
    void this.dispatch(req, res, url).catch((err: unknown) => this.fail(res, err));
  }

  private fail(res: ServerResponse, err: unknown): void {
    const e = err instanceof E.ApiError ? err : E.internal(err instanceof Error ? err.message : String(err));
    if (!(err instanceof E.ApiError)) this.log(`internal error: ${err instanceof Error ? err.stack : String(err)}`);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    this.sendJson(res, e.code, e.toStatus());
  }

  private sendJson(res: ServerResponse, code: number, body: unknown, warnings?: string[]): void {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    const headers: Record<string, string | string[]> = { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Content-Length': String(Buffer.byteLength(text)) };
    if (warnings?.length) headers['Warning'] = warnings.map((w) => `299 - ${JSON.stringify(w)}`);
    res.writeHead(code, headers);
    res.end(text);
  }

  private async readBody(req: IncomingMessage): Promise<Buffer> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req) {
      size += (c as Buffer).length;
      if (size > MAX_BODY) throw new E.ApiError(413, 'RequestEntityTooLarge', `Request entity too large: limit is ${MAX_BODY}`);
      chunks.push(c as Buffer);
    }
    return Buffer.concat(chunks);
  }

  private async readText(req: IncomingMessage): Promise<string> {
    return (await this.readBody(req)).toString('utf8');
  }

  /** A request body in any of the encodings the real server accepts: JSON, YAML, or Kubernetes protobuf. */
  private parseBody(raw: Buffer | string, contentType: string): unknown {
    const ct = (contentType || 'application/json').split(';')[0]!.trim();
    // kubectl 1.32+ sends typed objects (create namespace/configmap/..., auth can-i) as protobuf
    if (ct === PROTOBUF_MEDIA_TYPE) return decodeProtobufBody(Buffer.isBuffer(raw) ? raw : Buffer.from(raw));
    const text = typeof raw === 'string' ? raw : raw.toString('utf8');
    if (ct === 'application/yaml') {
      try {
        return YAML.parse(text);
      } catch (e) {
        throw E.badRequest(`error converting YAML to JSON: ${(e as Error).message}`);
      }
    }
    if (ct !== 'application/json' && ct !== '*/*') throw E.unsupportedMediaType(ct);
    try {
      return JSON.parse(text);
    } catch (e) {
      throw E.badRequest(`couldn't get version/kind; json parse error: ${jsonErrorText(text, e as Error)}`);
    }
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const authed = this.authenticate(req);
    if (!authed) throw E.unauthorized();
    const user = this.impersonate(req, authed);
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const method = req.method ?? 'GET';
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);

    const isResource = (parts[0] === 'api' && parts.length >= 3) || (parts[0] === 'apis' && parts.length >= 4);
    if (!isResource) {
      const verb = method.toLowerCase() === 'head' ? 'get' : method.toLowerCase();
      this.authorizeOrThrow({ user, verb, isResourceRequest: false, path });
      return this.nonResource(req, res, path, parts, url);
    }
    const gv = parts[0] === 'api' ? { group: '', version: parts[1]!, rest: parts.slice(2) } : { group: parts[1]!, version: parts[2]!, rest: parts.slice(3) };
    const route = this.route(gv.group, gv.version, gv.rest);
    const q = url.searchParams;
    const watch = method === 'GET' && (q.get('watch') === 'true' || q.get('watch') === '1');
    const verb = verbOf(method, route, watch);
    const attrs: AuthorizationAttributes = {
      user,
      verb,
      isResourceRequest: true,
      apiGroup: route.rt.group,
      apiVersion: route.rt.version,
      resource: route.rt.plural,
      subresource: route.subresource ?? '',
      namespace: route.namespace ?? '',
      name: route.name ?? '',
    };
    this.authorizeOrThrow(attrs);
    await this.resource(req, res, url, route, verb, user);
  }

  /** Splits the path after /api/v1 or /apis/g/v into a resource, namespace, name and subresource. */
  private route(group: string, version: string, rest: string[]): Route {
    const reg = this.registry;
    let namespace: string | undefined;
    let r = rest;
    if (r[0] === 'namespaces' && r.length >= 3) {
      const nsRt = reg.lookup(group, version, r[2]!);
      if (nsRt?.namespaced) {
        namespace = r[1];
        r = r.slice(2);
      }
    }
    const rt = reg.lookup(group, version, r[0]!);
    if (!rt || r.length > 3) throw E.noSuchResource();
    if (rt.namespaced && namespace === undefined && r.length > 1) throw E.noSuchResource();
    return { rt, namespace, name: r[1], subresource: r[2] };
  }

  private async nonResource(req: IncomingMessage, res: ServerResponse, path: string, parts: string[], url: URL): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') throw E.methodNotAllowed();
    if (path === '/version') return this.sendJson(res, 200, SERVER_VERSION);
    if (path === '/healthz' || path === '/livez' || path === '/readyz') {
      res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
      return void res.end('ok');
    }
    if (path === '/api') return this.sendJson(res, 200, { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: `${this.opts.host ?? '127.0.0.1'}:${this.port}` }] });
    if (path === '/apis') return this.sendJson(res, 200, { kind: 'APIGroupList', apiVersion: 'v1', groups: this.apiGroups() });
    if (parts[0] === 'api' && parts.length === 2) return this.sendJson(res, 200, this.resourceList('', parts[1]!));
    if (parts[0] === 'apis' && parts.length === 2) {
      const g = this.apiGroups().find((x) => x.name === parts[1]);
      if (!g) throw E.noSuchResource();
      return this.sendJson(res, 200, { kind: 'APIGroup', apiVersion: 'v1', ...g });
    }
    if (parts[0] === 'apis' && parts.length === 3) return this.sendJson(res, 200, this.resourceList(parts[1]!, parts[2]!));
    if (path === '/openapi/v2') {
      // kubectl falls back to v2 (protobuf) for client-side validation of kinds without PATCH
      const n = negotiateOpenapiV2(req.headers.accept);
      if (!n) throw E.notAcceptable('only application/json and application/com.github.proto-openapi.spec.v2@v1.0+protobuf are supported');
      const gen = this.registry.typesGeneration();
      let hit = this.openapiV2Cache.get(n.format);
      if (!hit || hit.gen !== gen) {
        const rts = this.registry.resourceTypes();
        hit = { gen, body: n.format === 'protobuf' ? openapiV2Protobuf(rts, { patchMeta }) : JSON.stringify(openapiV2Document(rts, { patchMeta })) };
        this.openapiV2Cache.set(n.format, hit);
      }
      res.writeHead(200, { 'Content-Type': n.contentType, Vary: 'Accept' });
      return void res.end(hit.body);
    }
    if (path === '/openapi/v3') return this.sendJson(res, 200, this.openapiRootDoc());
    if (parts[0] === 'openapi' && parts[1] === 'v3' && parts.length > 2) {
      const gvPath = parts.slice(2).join('/');
      const doc = this.openapiDoc(gvPath);
      if (!doc) throw E.noSuchResource();
      res.writeHead(200, { 'Content-Type': 'application/json', ETag: `"${doc.hash}"`, 'Cache-Control': url.searchParams.get('hash') ? 'public, immutable' : 'no-cache, private' });
      return void res.end(doc.body);
    }
    if (path === '/.well-known/openid-configuration') {
      return this.sendJson(res, 200, { issuer: this.tokens.issuer, jwks_uri: `${this.url}/openid/v1/jwks`, response_types_supported: ['id_token'], subject_types_supported: ['public'], id_token_signing_alg_values_supported: [this.tokens.alg] });
    }
    if (path === '/openid/v1/jwks') return this.sendJson(res, 200, { keys: this.tokens.publicJwks() });
    throw E.noSuchResource();
  }

  // ------------------------------------------------------------------ discovery

  private groupVersions(): Map<string, string[]> {
    const byGroup = new Map<string, Set<string>>();
    for (const rt of this.registry.resourceTypes()) {
      if (!byGroup.has(rt.group)) byGroup.set(rt.group, new Set());
      byGroup.get(rt.group)!.add(rt.version);
    }
    const out = new Map<string, string[]>();
    for (const [g, vs] of byGroup) out.set(g, [...vs].sort(versionPriority));
    return out;
  }

  private apiGroups(): { name: string; versions: { groupVersion: string; version: string }[]; preferredVersion: { groupVersion: string; version: string } }[] {
    const gvs = this.groupVersions();
    const groups = [...gvs.keys()].filter((g) => g !== '');
    const rank = (g: string) => {
      const i = GROUP_ORDER.indexOf(g);
      return i < 0 ? GROUP_ORDER.length : i;
    };
    groups.sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : 1));
    return groups.map((g) => {
      const versions = gvs.get(g)!.map((v) => ({ groupVersion: `${g}/${v}`, version: v }));
      return { name: g, versions, preferredVersion: versions[0]! };
    });
  }

  private resourceList(group: string, version: string): unknown {
    const rts = this.registry.resourceTypes().filter((t) => t.group === group && t.version === version);
    if (rts.length === 0) throw E.noSuchResource();
    const resources: unknown[] = [];
    for (const rt of rts.sort((a, b) => (a.plural < b.plural ? -1 : 1))) {
      const base: Record<string, unknown> = { name: rt.plural, singularName: rt.singular, namespaced: rt.namespaced, kind: rt.kind, verbs: rt.verbs };
      if (rt.shortNames.length) base.shortNames = rt.shortNames;
      if (rt.categories.length) base.categories = rt.categories;
      base.storageVersionHash = createHash('sha256').update(`${rt.group}/${rt.version}/${rt.kind}`).digest('base64').slice(0, 11);
      resources.push(base);
      if (rt.subresources.status) resources.push({ name: `${rt.plural}/status`, singularName: '', namespaced: rt.namespaced, kind: rt.kind, verbs: ['get', 'patch', 'update'] });
      if (rt.subresources.scale) resources.push({ name: `${rt.plural}/scale`, singularName: '', namespaced: rt.namespaced, group: 'autoscaling', version: 'v1', kind: 'Scale', verbs: ['get', 'patch', 'update'] });
      if (!rt.custom) {
        for (const sub of EXTRA_SUBRESOURCES[rt.plural] ?? []) {
          const r: Record<string, unknown> = { name: `${rt.plural}/${sub.name}`, singularName: '', namespaced: rt.namespaced, kind: sub.kind, verbs: sub.verbs };
          if (sub.group) r.group = sub.group;
          if (sub.version) r.version = sub.version;
          resources.push(r);
        }
      }
    }
    return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: group ? `${group}/${version}` : version, resources };
  }

  private openapiRootDoc(): unknown {
    const gvs: string[] = [];
    for (const [g, vs] of this.groupVersions()) for (const v of vs) gvs.push(g ? `${g}/${v}` : v);
    return openapiRoot(gvs, (gv: string) => this.openapiDoc(apiPathOf(gv))?.hash ?? '');
  }

  /** The OpenAPI v3 document of one group-version ("api/v1", "apis/apps/v1"), cached per type set. */
  private openapiDoc(gvPath: string): { body: string; hash: string } | undefined {
    const gen = this.registry.typesGeneration();
    const hit = this.openapiCache.get(gvPath);
    if (hit && hit.gen === gen) return hit;
    const parts = gvPath.split('/');
    const [group, version] = parts[0] === 'api' ? ['', parts[1]!] : [parts[1]!, parts[2]!];
    const rts = this.registry.resourceTypes().filter((t) => t.group === group && t.version === version);
    if (rts.length === 0) return undefined;
    const body = JSON.stringify(openapiForGroupVersion(rts, { patchMeta }));
    const entry = { gen, body, hash: createHash('sha512').update(body).digest('hex').slice(0, 64).toUpperCase() };
    this.openapiCache.set(gvPath, entry);
    return entry;
  }

  // ------------------------------------------------------------------ resources

  private writeContext(q: URLSearchParams): WriteContext {
    const ctx: WriteContext = { warnings: [] };
    const dr = q.getAll('dryRun');
    if (dr.length) {
      if (dr.some((d) => d !== 'All')) throw E.badRequest(`Invalid dry run value: ${dr.join(',')}`);
      ctx.dryRun = true;
    }
    const fv = q.get('fieldValidation');
    if (fv) {
      if (!['Strict', 'Warn', 'Ignore'].includes(fv)) throw E.badRequest(`fieldValidation parameter unsupported: ${fv}, valid values are Ignore, Warn, Strict`);
      ctx.fieldValidation = fv as FieldValidation;
    }
    return ctx;
  }

  private async resource(req: IncomingMessage, res: ServerResponse, url: URL, route: Route, verb: string, user: UserInfo): Promise<void> {
    const reg = this.registry;
    const { rt, namespace: ns, name, subresource: sub } = route;
    const q = url.searchParams;
    const accept = req.headers.accept ?? '';

    if (VIRTUAL_KINDS.has(rt.kind)) {
      if (verb !== 'create') throw E.methodNotAllowed();
      const body = this.parseBody(await this.readBody(req), req.headers['content-type'] ?? '');
      return this.sendJson(res, 201, this.review(rt, ns, body, user));
    }

    if (sub) return this.subresource(req, res, url, route, verb);

    switch (verb) {
      case 'get': {
        const s = reg.get(rt, ns, name!);
        return this.sendObject(res, accept, rt, q, s.obj, String(s.rv));
      }
      case 'list': {
        const r = reg.list(rt, ns, listQuery(q));
        return this.sendList(res, accept, rt, q, r.items, r.resourceVersion, r.continue, r.remainingItemCount);
      }
      case 'watch':
        // the legacy form GET .../pods/name?watch=true is a watch on that one name
        return this.watch(req, res, { ...route, name: undefined }, name ? withNameSelector(q, name) : q, accept);
      case 'create': {
        const ctx = this.writeContext(q);
        const body = this.parseBody(await this.readBody(req), req.headers['content-type'] ?? '');
        const obj = reg.decode(rt, body, ctx);
        const created = reg.create(rt, ns, obj, ctx);
        return this.sendJson(res, 201, created, ctx.warnings);
      }
      case 'update': {
        const ctx = this.writeContext(q);
        const body = this.parseBody(await this.readBody(req), req.headers['content-type'] ?? '');
        const obj = reg.decode(rt, body, ctx);
        return this.sendJson(res, 200, reg.update(rt, ns, name!, obj, ctx), ctx.warnings);
      }
      case 'patch': {
        const ctx = this.writeContext(q);
        const text = await this.readText(req);
        const ct = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
        if (ct === 'application/apply-patch+yaml') return this.sendJson(res, 200, this.serverSideApply(rt, ns, name!, text, ctx, q), ctx.warnings);
        return this.sendJson(res, 200, reg.patch(rt, ns, name!, ct, text, ctx), ctx.warnings);
      }
      case 'delete': {
        const ctx = this.writeContext(q);
        const opts = await this.deleteOptions(req, q);
        const r = reg.delete(rt, ns, name!, opts, ctx);
        if (r.removed && !rt.custom && rt.kind !== 'Pod') {
          return this.sendJson(res, 200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name, group: rt.group || undefined, kind: rt.plural, uid: r.obj.metadata.uid } });
        }
        return this.sendJson(res, 200, r.obj);
      }
      case 'deletecollection': {
        const ctx = this.writeContext(q);
        const opts = await this.deleteOptions(req, q);
        const items = reg.deleteCollection(rt, ns, listQuery(q), opts, ctx);
        return this.sendJson(res, 200, { kind: rt.listKind, apiVersion: apiVersionOf(rt), metadata: { resourceVersion: String(reg.store.currentRv()) }, items });
      }
      default:
        throw E.methodNotAllowed();
    }
  }

  /** Server-side apply, simplified: creates when absent, else merges the applied config (no field ownership). */
  private serverSideApply(rt: ResourceType, ns: string | undefined, name: string, text: string, ctx: WriteContext, q: URLSearchParams): KObject {
    if (!q.get('fieldManager')) throw E.badRequest('PATCH /apply requires fieldManager to be set');
    const applied = this.parseBody(text, 'application/yaml') as KObject;
    const reg = this.registry;
    const exists = reg.store.get(bucketOf(rt), rt.namespaced ? `${ns}/${name}` : `/${name}`);
    if (!exists) {
      const obj = reg.decode(rt, { ...applied, metadata: { ...applied.metadata, name } }, ctx);
      return reg.create(rt, ns, obj, ctx);
    }
    const ct = rt.schema.kind === 'model' ? 'application/strategic-merge-patch+json' : 'application/merge-patch+json';
    const { resourceVersion: _rv, ...meta } = applied.metadata ?? {};
    void _rv;
    return reg.patch(rt, ns, name, ct, JSON.stringify({ ...applied, metadata: meta }), ctx);
  }

  private async deleteOptions(req: IncomingMessage, q: URLSearchParams): Promise<DeleteOptions> {
    const text = await this.readBody(req);
    const opts: DeleteOptions = {};
    if (text.length && text.toString('utf8').trim()) {
      const b = this.parseBody(text, req.headers['content-type'] ?? '') as Record<string, any>;
      if (b.gracePeriodSeconds !== undefined && b.gracePeriodSeconds !== null) opts.gracePeriodSeconds = Number(b.gracePeriodSeconds);
      if (b.propagationPolicy) opts.propagationPolicy = b.propagationPolicy;
      if (b.orphanDependents !== undefined && b.orphanDependents !== null) opts.orphanDependents = !!b.orphanDependents;
      if (b.preconditions) opts.preconditions = b.preconditions;
    }
    if (q.get('gracePeriodSeconds') !== null) opts.gracePeriodSeconds = Number(q.get('gracePeriodSeconds'));
    const pp = q.get('propagationPolicy');
    if (pp) opts.propagationPolicy = pp as DeleteOptions['propagationPolicy'];
    if (opts.propagationPolicy && !['Orphan', 'Background', 'Foreground'].includes(opts.propagationPolicy)) {
      throw E.invalid('DeleteOptions', '', '', [{ reason: 'FieldValueNotSupported', field: 'propagationPolicy', message: `Unsupported value: "${opts.propagationPolicy}": supported values: "Foreground", "Background", "Orphan", "nil"` }]);
    }
    return opts;
  }

  /** One object (GET): as itself, as a one-row Table, or as PartialObjectMetadata, per Accept. */
  private sendObject(res: ServerResponse, accept: string, rt: ResourceType, q: URLSearchParams, obj: KObject, rv: string): void {
    if (wantsTable(accept)) return this.sendJson(res, 200, this.toTable(rt, [obj], q, rv));
    if (wantsPartial(accept)) return this.sendJson(res, 200, { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: obj.metadata });
    this.sendJson(res, 200, obj);
  }

  private sendList(res: ServerResponse, accept: string, rt: ResourceType, q: URLSearchParams, items: { obj: KObject; json: string }[], rv: string, cont?: string, remaining?: number): void {
    const meta: Record<string, unknown> = { resourceVersion: rv };
    if (cont) meta.continue = cont;
    if (remaining !== undefined) meta.remainingItemCount = remaining;
    if (wantsTable(accept)) {
      const t = this.toTable(rt, items.map((i) => i.obj), q, rv) as Record<string, unknown>;
      t.metadata = meta;
      return this.sendJson(res, 200, t);
    }
    if (wantsPartial(accept)) {
      return this.sendJson(res, 200, { kind: 'PartialObjectMetadataList', apiVersion: 'meta.k8s.io/v1', metadata: meta, items: items.map((i) => ({ kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: i.obj.metadata })) });
    }
    // built by concatenation: each object's JSON was serialized once, when it was written
    const head = `{"kind":${JSON.stringify(rt.listKind)},"apiVersion":${JSON.stringify(apiVersionOf(rt))},"metadata":${JSON.stringify(meta)},"items":[`;
    this.sendJson(res, 200, `${head}${items.map((i) => i.json).join(',')}]}`);
  }

  private toTable(rt: ResourceType, objs: KObject[], q: URLSearchParams, rv: string, withColumns = true): unknown {
    const include = q.get('includeObject') ?? 'Metadata';
    const now = Date.now();
    const rows = objs.map((o) => {
      const row: Record<string, unknown> = { cells: tableRowFor(rt, o, now) };
      if (include === 'Object') row.object = o;
      else if (include !== 'None') row.object = { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata };
      return row;
    });
    const t: Record<string, unknown> = { kind: 'Table', apiVersion: 'meta.k8s.io/v1', metadata: { resourceVersion: rv } };
    if (withColumns) t.columnDefinitions = tableColumnsFor(rt);
    t.rows = rows;
    return t;
  }

  // ------------------------------------------------------------------ watch

  private watch(req: IncomingMessage, res: ServerResponse, route: Route, q: URLSearchParams, accept: string): void {
    const { rt, namespace: ns } = route;
    const table = wantsTable(accept);
    const bookmarks = q.get('allowWatchBookmarks') === 'true';
    const timeoutSec = q.get('timeoutSeconds') ? Number(q.get('timeoutSeconds')) : 1800 + Math.floor(Math.random() * 1800);
    const sendInitialEvents = q.get('sendInitialEvents') === 'true';
    if (sendInitialEvents && q.get('resourceVersionMatch') !== 'NotOlderThan') {
      throw E.invalid('ListOptions', 'meta.k8s.io', '', [{ reason: 'FieldValueForbidden', field: 'sendInitialEvents', message: 'Forbidden: sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan' }]);
    }
    let first = true;
    const line = (type: string, obj: KObject, json: string) => {
      if (table) {
        const t = this.toTable(rt, [obj], q, obj.metadata.resourceVersion ?? '', first);
        first = false;
        return `{"type":"${type}","object":${JSON.stringify(t)}}\n`;
      }
      return `{"type":"${type}","object":${json}}\n`;
    };
    const chunks: string[] = [];
    let started = false;
    let closed = false;
    const write = (s: string) => {
      if (closed) return;
      if (!started) {
        chunks.push(s);
        return;
      }
      // a watcher that cannot keep up is dropped, as the real watch cache does; it will resume or relist
      if (res.writableLength > 16 * 1024 * 1024) return end();
      res.write(s);
    };
    const bookmark = (rv: number, initialEnd = false) => {
      const meta: Record<string, unknown> = { resourceVersion: String(rv) };
      if (initialEnd) meta.annotations = { 'k8s.io/initial-events-end': 'true' };
      write(`{"type":"BOOKMARK","object":${JSON.stringify({ kind: table ? 'Table' : rt.kind, apiVersion: table ? 'meta.k8s.io/v1' : apiVersionOf(rt), metadata: meta })}}\n`);
    };
    let cancel: () => void = () => {};
    let gone: E.ApiError | undefined;
    try {
      const wq: Parameters<Registry['watch']>[2] = { sendInitialEvents };
      const ls = q.get('labelSelector');
      const fs = q.get('fieldSelector');
      const rv = q.get('resourceVersion');
      if (ls) wq.labelSelector = ls;
      if (fs) wq.fieldSelector = fs;
      if (rv !== null) wq.resourceVersion = rv;
      cancel = this.registry.watch(rt, ns, wq, {
        event: (type, obj, json) => write(line(type, obj, json)),
        initialEventsEnd: (rv) => bookmark(rv, true),
      });
    } catch (e) {
      if (e instanceof E.ApiError && e.code === 410) gone = e;
      else throw e;
    }
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    started = true;
    if (gone) {
      this.stats.watchesExpired++;
      res.end(`{"type":"ERROR","object":${JSON.stringify(gone.toStatus())}}\n`);
      return;
    }
    this.stats.watchesOpened++;
    for (const c of chunks) res.write(c);
    const timers: NodeJS.Timeout[] = [];
    const end = () => {
      if (closed) return;
      closed = true;
      cancel();
      timers.forEach(clearTimeout);
      this.watches.delete(end);
      res.end();
    };
    this.watches.add(end);
    req.socket.setTimeout(0);
    res.on('close', end);
    timers.push(setTimeout(end, timeoutSec * 1000));
    if (bookmarks) {
      const every = this.opts.bookmarkIntervalMs ?? 60_000;
      const t = setInterval(() => bookmark(this.registry.store.currentRv()), every);
      timers.push(t as unknown as NodeJS.Timeout);
    }
  }

  // ------------------------------------------------------------------ subresources

  private async subresource(req: IncomingMessage, res: ServerResponse, url: URL, route: Route, verb: string): Promise<void> {
    const reg = this.registry;
    const { rt, namespace: ns, name, subresource: sub } = route;
    const q = url.searchParams;
    const core = rt.group === '';
    if (sub === 'status' && rt.subresources.status) {
      if (verb === 'get') return this.sendJson(res, 200, reg.get(rt, ns, name!).obj);
      const ctx = this.writeContext(q);
      if (verb === 'update') {
        const obj = reg.decode(rt, this.parseBody(await this.readBody(req), req.headers['content-type'] ?? ''), ctx);
        return this.sendJson(res, 200, reg.update(rt, ns, name!, obj, ctx, 'status'), ctx.warnings);
      }
      if (verb === 'patch') {
        const ct = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
        return this.sendJson(res, 200, reg.patch(rt, ns, name!, ct, await this.readText(req), ctx, 'status'), ctx.warnings);
      }
      throw E.methodNotAllowed();
    }
    if (sub === 'scale' && rt.subresources.scale) return this.scale(req, res, route, verb, q);
    if (core && rt.plural === 'namespaces' && sub === 'finalize' && verb === 'update') {
      const body = this.parseBody(await this.readBody(req), req.headers['content-type'] ?? '') as KObject;
      const cur = reg.get(rt, undefined, name!).obj;
      const next = structuredClone(cur);
      (next.spec as Record<string, unknown>).finalizers = (body.spec as Record<string, unknown> | undefined)?.finalizers ?? [];
      return this.sendJson(res, 200, reg.update(rt, undefined, name!, next, {}));
    }
    if (core && rt.plural === 'pods' && sub === 'binding' && verb === 'create') {
      const body = this.parseBody(await this.readBody(req), req.headers['content-type'] ?? '') as Record<string, any>;
      const target = body.target?.name;
      if (!target) throw E.invalid('Binding', '', name!, [{ reason: 'FieldValueRequired', field: 'target.name', message: 'Required value' }]);
      reg.bind(ns!, name!, target);
      return this.sendJson(res, 201, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', code: 201 });
    }
    if (core && rt.plural === 'pods' && sub === 'eviction' && verb === 'create') {
      // no PodDisruptionBudgets are served, so every eviction is allowed: it is a delete with the given options
      const body = this.parseBody(await this.readBody(req), req.headers['content-type'] ?? '') as Record<string, any>;
      const d = body.deleteOptions ?? {};
      const opts: DeleteOptions = {};
      if (typeof d.gracePeriodSeconds === 'number') opts.gracePeriodSeconds = d.gracePeriodSeconds;
      if (d.propagationPolicy) opts.propagationPolicy = d.propagationPolicy;
      if (d.preconditions) opts.preconditions = d.preconditions;
      reg.delete(rt, ns, name!, opts, this.writeContext(q));
      return this.sendJson(res, 201, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', code: 201 });
    }
    if (core && rt.plural === 'serviceaccounts' && sub === 'token' && verb === 'create') {
      const body = this.parseBody(await this.readBody(req), req.headers['content-type'] ?? '');
      return this.sendJson(res, 201, this.tokenRequest(ns!, name!, body as Record<string, any>));
    }
    if (core && rt.plural === 'pods' && sub === 'log' && verb === 'get') {
      const pod = reg.get(rt, ns, name!).obj;
      const node = (pod.spec as Record<string, any>)?.nodeName;
      if (!node) throw E.badRequest(`pod ${name} does not have a host assigned`);
      if (!this.nodeConnection) throw new E.ApiError(503, 'ServiceUnavailable', `no connection to the kubelet of node ${node}`);
      return this.nodeConnection.logs(pod, q, req, res);
    }
    throw E.noSuchResource();
  }

  private async scale(req: IncomingMessage, res: ServerResponse, route: Route, verb: string, q: URLSearchParams): Promise<void> {
    const reg = this.registry;
    const { rt, namespace: ns, name } = route;
    const sc = rt.subresources.scale!;
    const toScale = (o: KObject): KObject => {
      const status: Record<string, unknown> = { replicas: getPath(o, sc.statusReplicasPath) ?? 0 };
      const sel = sc.labelSelectorPath ? getPath(o, sc.labelSelectorPath) : undefined;
      if (!rt.custom) status.selector = labelSelectorText((o.spec as Record<string, any>)?.selector);
      else if (sel !== undefined) status.selector = sel;
      return {
        kind: 'Scale',
        apiVersion: 'autoscaling/v1',
        metadata: { name: o.metadata.name, namespace: o.metadata.namespace, uid: o.metadata.uid, resourceVersion: o.metadata.resourceVersion, creationTimestamp: o.metadata.creationTimestamp },
        spec: { replicas: getPath(o, sc.specReplicasPath) ?? 0 },
        status,
      };
    };
    const cur = reg.get(rt, ns, name!).obj;
    if (verb === 'get') return this.sendJson(res, 200, toScale(cur));
    const ctx = this.writeContext(q);
    let next: KObject;
    const text = await this.readText(req);
    if (verb === 'update') next = this.parseBody(text, req.headers['content-type'] ?? '') as KObject;
    else if (verb === 'patch') next = applyPatch((req.headers['content-type'] ?? '').split(';')[0]!.trim(), toScale(cur), text, 'V1Scale');
    else throw E.methodNotAllowed();
    const replicas = (next.spec as Record<string, unknown> | undefined)?.replicas;
    if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 0) {
      throw E.invalid('Scale', 'autoscaling', name!, [{ reason: 'FieldValueInvalid', field: 'spec.replicas', message: `Invalid value: ${replicas}: must be greater than or equal to 0` }]);
    }
    const rv = next.metadata?.resourceVersion;
    if (rv && rv !== cur.metadata.resourceVersion) throw E.conflict(qualifiedResource(rt), name!, rt.group);
    const updated = structuredClone(cur);
    setPath(updated, sc.specReplicasPath, replicas);
    const saved = reg.update(rt, ns, name!, updated, ctx);
    this.sendJson(res, 200, toScale(saved));
  }

  private tokenRequest(ns: string, saName: string, body: Record<string, any>): unknown {
    const sa = this.registry.store.get('/serviceaccounts', `${ns}/${saName}`);
    if (!sa) throw E.notFound('serviceaccounts', saName, 'serviceaccounts');
    const spec = body.spec ?? {};
    const exp = spec.expirationSeconds ?? 3600;
    if (exp < 600) throw E.invalid('TokenRequest', 'authentication.k8s.io', saName, [{ reason: 'FieldValueInvalid', field: 'spec.expirationSeconds', message: `Invalid value: ${exp}: may not specify a duration less than 10 minutes` }]);
    const input: Parameters<TokenIssuer['issue']>[0] = {
      namespace: ns,
      serviceAccountName: saName,
      serviceAccountUid: sa.obj.metadata.uid!,
      audiences: spec.audiences?.length ? spec.audiences : this.tokens.apiAudiences,
      expirationSeconds: exp,
    };
    const ref = spec.boundObjectRef;
    if (ref) {
      const bucket = ref.kind === 'Pod' ? '/pods' : ref.kind === 'Secret' ? '/secrets' : ref.kind === 'Node' ? '/nodes' : '';
      if (!bucket) throw E.badRequest(`cannot bind token to object of type ${ref.kind}`);
      const obj = this.registry.store.get(bucket, ref.kind === 'Node' ? `/${ref.name}` : `${ns}/${ref.name}`);
      if (!obj) throw E.notFound(`${ref.kind.toLowerCase()}s`, ref.name);
      if (ref.uid && ref.uid !== obj.obj.metadata.uid) throw E.conflict(`${ref.kind.toLowerCase()}s`, ref.name);
      input.boundObject = { kind: ref.kind, name: ref.name, uid: obj.obj.metadata.uid! };
      if (ref.kind === 'Pod') {
        const nodeName = (obj.obj.spec as Record<string, any>)?.nodeName;
        if (nodeName) {
          const node = this.registry.store.get('/nodes', `/${nodeName}`);
          input.node = node ? { name: nodeName, uid: node.obj.metadata.uid! } : { name: nodeName };
        }
      }
    }
    const issued = this.tokens.issue(input, new Date());
    return { kind: 'TokenRequest', apiVersion: 'authentication.k8s.io/v1', metadata: { name: saName, namespace: ns, creationTimestamp: null }, spec: { ...spec, audiences: input.audiences, expirationSeconds: exp, boundObjectRef: spec.boundObjectRef ?? null }, status: issued };
  }

  // ------------------------------------------------------------------ reviews

  private review(rt: ResourceType, ns: string | undefined, body: unknown, user: UserInfo): unknown {
    const obj = this.registry.decode(rt, body, { fieldValidation: 'Strict' }) as Record<string, any>;
    const spec = obj.spec ?? {};
    const out = { kind: rt.kind, apiVersion: apiVersionOf(rt), metadata: { creationTimestamp: null, ...(ns ? { namespace: ns } : {}) }, spec } as Record<string, any>;
    switch (rt.kind) {
      case 'TokenReview': {
        // static tokens (the admin's, the kubelets') authenticate here too, as with a token file
        const st = typeof spec.token === 'string' ? this.staticTokens.get(spec.token) : undefined;
        out.status = st ? { authenticated: true, user: st, audiences: spec.audiences?.length ? spec.audiences : this.tokens.apiAudiences } : tokenReviewStatus(this.tokens, spec, this.tokenLookups(), new Date());
        return out;
      }
      case 'SelfSubjectReview':
        return { kind: rt.kind, apiVersion: apiVersionOf(rt), metadata: { creationTimestamp: null }, status: { userInfo: user } };
      case 'SubjectAccessReview':
      case 'LocalSubjectAccessReview': {
        if (!spec.user && !(spec.groups?.length)) throw E.invalid(rt.kind, rt.group, '', [{ reason: 'FieldValueInvalid', field: 'spec.user', message: 'Invalid value: "": at least one of user or group must be specified' }]);
        if (rt.kind === 'LocalSubjectAccessReview' && spec.resourceAttributes && spec.resourceAttributes.namespace !== ns) {
          throw E.invalid(rt.kind, rt.group, '', [{ reason: 'FieldValueInvalid', field: 'spec.resourceAttributes.namespace', message: `Invalid value: "${spec.resourceAttributes.namespace ?? ''}": must match metadata.namespace` }]);
        }
        const subject = userFromAccessReviewSpec(spec);
        out.status = subjectAccessReviewStatus(authorize(attributesFromAccessReviewSpec(spec, subject), this.rbacStore()));
        return out;
      }
      case 'SelfSubjectAccessReview':
        out.status = subjectAccessReviewStatus(authorize(attributesFromAccessReviewSpec(spec, user), this.rbacStore()));
        return out;
      case 'SelfSubjectRulesReview':
        out.status = resourceRulesFor(user, spec.namespace ?? '', this.rbacStore());
        return out;
      default:
        throw E.methodNotAllowed();
    }
  }

  // ------------------------------------------------------------------ upgrades (exec, attach)

  private handleUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const fail = (e: unknown) => {
      const err = e instanceof E.ApiError ? e : E.internal(String(e));
      const body = JSON.stringify(err.toStatus());
      socket.end(`HTTP/1.1 ${err.code} ${err.reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    };
    try {
      const url = new URL(req.url ?? '/', 'https://x');
      const user = this.authenticate(req);
      if (!user) throw E.unauthorized();
      const who = this.impersonate(req, user);
      const parts = url.pathname.split('/').filter(Boolean);
      const m = parts.length === 7 && parts[0] === 'api' && parts[1] === 'v1' && parts[2] === 'namespaces' && parts[4] === 'pods' ? parts : undefined;
      if (!m || !['exec', 'attach'].includes(m[6]!)) throw E.noSuchResource();
      // exec over WebSocket is a GET, but needs `create` on pods/exec, as on the real server
      this.authorizeOrThrow({ user: who, verb: 'create', isResourceRequest: true, apiGroup: '', resource: 'pods', subresource: m[6]!, namespace: m[3]!, name: m[5]! });
      const pod = this.registry.get(this.registry.lookupPath('v1/pods'), m[3], m[5]!).obj;
      const node = (pod.spec as Record<string, any>)?.nodeName;
      if (!node) throw E.badRequest(`pod ${m[5]} does not have a host assigned`);
      if (!this.nodeConnection) throw new E.ApiError(503, 'ServiceUnavailable', `no connection to the kubelet of node ${node}`);
      this.nodeConnection.exec(pod, url.searchParams, req, socket, head);
    } catch (e) {
      fail(e);
    }
  }
}

// ------------------------------------------------------------------ helpers

function verbOf(method: string, route: Route, watch: boolean): string {
  switch (method) {
    case 'GET':
    case 'HEAD':
      if (watch) return 'watch';
      return route.name ? 'get' : 'list';
    case 'POST':
      return 'create';
    case 'PUT':
      return 'update';
    case 'PATCH':
      return 'patch';
    case 'DELETE':
      return route.name ? 'delete' : 'deletecollection';
    default:
      throw E.methodNotAllowed();
  }
}

function listQuery(q: URLSearchParams): ListQuery {
  const out: ListQuery = {};
  const set = (k: 'labelSelector' | 'fieldSelector' | 'continue' | 'resourceVersion' | 'resourceVersionMatch') => {
    const v = q.get(k);
    if (v !== null && v !== '') out[k] = v;
  };
  set('labelSelector');
  set('fieldSelector');
  set('continue');
  set('resourceVersion');
  set('resourceVersionMatch');
  const limit = q.get('limit');
  if (limit) out.limit = Number(limit);
  return out;
}

function withNameSelector(q: URLSearchParams, name: string): URLSearchParams {
  const c = new URLSearchParams(q);
  const fs = c.get('fieldSelector');
  c.set('fieldSelector', fs ? `${fs},metadata.name=${name}` : `metadata.name=${name}`);
  return c;
}

function wantsTable(accept: string): boolean {
  return /as=Table/.test(accept);
}

function wantsPartial(accept: string): boolean {
  return /as=PartialObjectMetadata/.test(accept);
}

function getPath(o: unknown, path: string): unknown {
  let cur: any = o;
  for (const p of path.replace(/^\./, '').split('.')) {
    if (cur === null || cur === undefined) return undefined;
    cur = cur[p];
  }
  return cur;
}

function setPath(o: any, path: string, v: unknown): void {
  const ps = path.replace(/^\./, '').split('.');
  let cur = o;
  for (const p of ps.slice(0, -1)) cur = cur[p] ??= {};
  cur[ps[ps.length - 1]!] = v;
}

/** A metav1.LabelSelector in the string form Scale.status.selector carries (labels.Selector.String()). */
function labelSelectorText(sel: Record<string, any> | undefined): string {
  return labelSelectorString(labelSelectorFromObject(sel));
}

/** Go's encoding/json wording for the common JSON syntax errors. */
function jsonErrorText(text: string, e: Error): string {
  const m = /position (\d+)/.exec(e.message);
  const pos = m ? Number(m[1]) : text.length;
  if (pos >= text.length) return 'unexpected end of JSON input';
  const ch = text[pos]!;
  return `invalid character '${ch}' looking for beginning of value`;
}
