/**
 * Gateway API HTTPRoute and GRPCRoute (gateway.networking.k8s.io/v1) in their mesh (GAMMA) use: a
 * route whose parentRefs name a Service changes how traffic to that Service is routed. This file
 * reads a route into a normalised form, collecting every problem; parent refs that name a Gateway
 * are not Ambit's and are ignored (a route with no Service parent is not a mesh route at all).
 *
 * Defaults follow the Gateway API: group "" + kind Service for backends, weight 1, HTTP path match
 * PathPrefix "/", header and gRPC method match type Exact, a rule list of one catch-all rule.
 */
import type { GrpcRouteMatch, HeaderMatch, HttpRouteMatch, Route, RouteBackend, RouteFilter, RouteKind, RouteParent, RouteRule } from '../api/types.js';
import { Problems, objectField, objectList, stringList } from './problems.js';
import type { KubeObject } from './objects.js';
import { canonical } from './objects.js';
import type { Parsed } from './policy.js';

// The normalised routes are the push protocol's wire types (one definition, in src/api).
export type { GrpcRouteMatch, HeaderMatch, HttpRouteMatch, Route, RouteBackend, RouteFilter, RouteKind, RouteParent, RouteRule };

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'];
const HTTP_FILTERS: Record<string, string> = { RequestHeaderModifier: 'requestHeaderModifier', ResponseHeaderModifier: 'responseHeaderModifier', RequestMirror: 'requestMirror', RequestRedirect: 'requestRedirect', URLRewrite: 'urlRewrite' };
const GRPC_FILTERS: Record<string, string> = { RequestHeaderModifier: 'requestHeaderModifier', ResponseHeaderModifier: 'responseHeaderModifier', RequestMirror: 'requestMirror' };
/** Gateway API's Duration: up to four number+unit groups, e.g. "1h30m", "500ms". */
const DURATION = /^([0-9]{1,5}(h|m|s|ms)){1,4}$/;
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;
const GRPC_SERVICE = /^\.?[A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)*$/;
const GRPC_METHOD = /^[A-Za-z_][A-Za-z_0-9]*$/;
const HOSTNAME = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export const routeKey = (kind: RouteKind, namespace: string, name: string): string => `${kind}/${namespace}/${name}`;

function portOf(v: unknown, field: string, problems: Problems): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) {
    problems.add(field, `${JSON.stringify(v)} is not a port; use a number from 1 to 65535`);
    return undefined;
  }
  return v;
}

function compiles(re: string): boolean {
  try {
    new RegExp(re);
    return true;
  } catch {
    return false;
  }
}

/** Parent refs that name a Service (GAMMA); Gateway parents are someone else's and skipped. */
function readParents(spec: Record<string, unknown>, namespace: string, problems: Problems): RouteParent[] {
  const out: RouteParent[] = [];
  objectList(spec['parentRefs'], 'spec.parentRefs', problems)?.forEach((ref, i) => {
    const field = `spec.parentRefs[${i}]`;
    const group = ref['group'] ?? 'gateway.networking.k8s.io';
    const kind = ref['kind'] ?? 'Gateway';
    if (kind !== 'Service') return; // a Gateway (or another implementation's parent): not ours
    if (group !== '' && group !== 'core') return problems.add(`${field}.group`, `a Service parent must have group "" (found "${String(group)}")`);
    const name = ref['name'];
    if (typeof name !== 'string' || name === '') return problems.add(`${field}.name`, 'is required');
    const ns = typeof ref['namespace'] === 'string' && ref['namespace'] ? (ref['namespace'] as string) : namespace;
    const parent: RouteParent = { service: `${ns}/${name}` };
    const port = portOf(ref['port'], `${field}.port`, problems);
    if (port !== undefined) parent.port = port;
    if (typeof ref['sectionName'] === 'string') parent.sectionName = ref['sectionName'] as string;
    out.push(parent);
  });
  return out;
}

function readHeaderMatches(v: unknown, field: string, problems: Problems, what: string): HeaderMatch[] | undefined {
  const list = objectList(v, field, problems);
  if (!list) return undefined;
  return list.flatMap((h, i) => {
    const type = (h['type'] ?? 'Exact') as string;
    const name = h['name'];
    const value = h['value'];
    const f = `${field}[${i}]`;
    if (type !== 'Exact' && type !== 'RegularExpression') problems.add(`${f}.type`, `"${type}" is not a match type; use Exact or RegularExpression`);
    if (typeof name !== 'string' || !name) return problems.add(`${f}.name`, `is required: the ${what} to match`), [];
    if (what === 'header' && !HEADER_NAME.test(name)) problems.add(`${f}.name`, `"${name}" is not a valid HTTP header name`);
    if (typeof value !== 'string') return problems.add(`${f}.value`, 'is required'), [];
    if (type === 'RegularExpression' && !compiles(value)) problems.add(`${f}.value`, `"${value}" is not a valid regular expression`);
    return [{ type: type as HeaderMatch['type'], name, value }];
  });
}

function readHttpMatch(m: Record<string, unknown>, field: string, problems: Problems): HttpRouteMatch {
  const out: HttpRouteMatch = {};
  const path = objectField(m['path'], `${field}.path`, problems);
  if (path) {
    const type = (path['type'] ?? 'PathPrefix') as string;
    const value = (path['value'] ?? '/') as unknown;
    if (!['Exact', 'PathPrefix', 'RegularExpression'].includes(type)) problems.add(`${field}.path.type`, `"${type}" is not a path match type; use Exact, PathPrefix or RegularExpression`);
    if (typeof value !== 'string') problems.add(`${field}.path.value`, 'must be a string');
    else if (type === 'RegularExpression') {
      if (!compiles(value)) problems.add(`${field}.path.value`, `"${value}" is not a valid regular expression`);
    } else if (!value.startsWith('/')) problems.add(`${field}.path.value`, `"${value}" must be an absolute path starting with "/"`);
    else if (value.includes('//')) problems.add(`${field}.path.value`, `"${value}" must not contain "//"`);
    if (typeof value === 'string') out.path = { type: type as NonNullable<HttpRouteMatch['path']>['type'], value };
  }
  const headers = readHeaderMatches(m['headers'], `${field}.headers`, problems, 'header');
  if (headers) out.headers = headers;
  const query = readHeaderMatches(m['queryParams'], `${field}.queryParams`, problems, 'query parameter');
  if (query) out.queryParams = query;
  if (m['method'] !== undefined) {
    if (typeof m['method'] !== 'string' || !HTTP_METHODS.includes(m['method'])) problems.add(`${field}.method`, `"${String(m['method'])}" is not a method; use one of ${HTTP_METHODS.join(', ')}`);
    else out.method = m['method'];
  }
  return out;
}

function readGrpcMatch(m: Record<string, unknown>, field: string, problems: Problems): GrpcRouteMatch {
  const out: GrpcRouteMatch = {};
  const method = objectField(m['method'], `${field}.method`, problems);
  if (method) {
    const type = (method['type'] ?? 'Exact') as string;
    const svc = method['service'];
    const meth = method['method'];
    if (type !== 'Exact' && type !== 'RegularExpression') problems.add(`${field}.method.type`, `"${type}" is not a match type; use Exact or RegularExpression`);
    if (svc === undefined && meth === undefined) problems.add(`${field}.method`, 'set service, method or both');
    for (const [v, name, re] of [[svc, 'service', GRPC_SERVICE], [meth, 'method', GRPC_METHOD]] as const) {
      if (v === undefined) continue;
      if (typeof v !== 'string') problems.add(`${field}.method.${name}`, 'must be a string');
      else if (type === 'Exact' && !re.test(v)) problems.add(`${field}.method.${name}`, `"${v}" is not a valid gRPC ${name} name`);
      else if (type === 'RegularExpression' && !compiles(v)) problems.add(`${field}.method.${name}`, `"${v}" is not a valid regular expression`);
    }
    out.method = { type: type as 'Exact' | 'RegularExpression' };
    if (typeof svc === 'string') out.method.service = svc;
    if (typeof meth === 'string') out.method.method = meth;
  }
  const headers = readHeaderMatches(m['headers'], `${field}.headers`, problems, 'header');
  if (headers) out.headers = headers;
  return out;
}

function readFilters(v: unknown, field: string, problems: Problems, kind: RouteKind): RouteFilter[] {
  const supported = kind === 'HTTPRoute' ? HTTP_FILTERS : GRPC_FILTERS;
  const seen = new Set<string>();
  const out: RouteFilter[] = [];
  objectList(v, field, problems)?.forEach((f, i) => {
    const type = f['type'];
    const configField = typeof type === 'string' ? supported[type] : undefined;
    if (!configField) return problems.add(`${field}[${i}].type`, `${JSON.stringify(type)} is not a filter Ambit supports on a ${kind}; use one of ${Object.keys(supported).join(', ')}`);
    const config = objectField(f[configField], `${field}[${i}].${configField}`, problems);
    if (!config) return problems.add(`${field}[${i}].${configField}`, `is required when type is ${type}`);
    if (type !== 'RequestMirror' && seen.has(type as string)) problems.add(`${field}[${i}]`, `${type} may appear only once in a rule; merge the two`);
    seen.add(type as string);
    out.push({ type: type as string, config: canonical(config) });
  });
  if (seen.has('RequestRedirect') && seen.has('URLRewrite')) problems.add(field, 'a rule may have RequestRedirect or URLRewrite, not both');
  return out;
}

function readBackends(v: unknown, field: string, problems: Problems, namespace: string): RouteBackend[] {
  const out: RouteBackend[] = [];
  objectList(v, field, problems)?.forEach((b, i) => {
    const f = `${field}[${i}]`;
    const group = b['group'] ?? '';
    const kind = b['kind'] ?? 'Service';
    if (group !== '' || kind !== 'Service') return problems.add(f, `backend ${String(group) || 'core'}/${String(kind)} is not supported; send traffic to a Service (group "", kind Service)`);
    const name = b['name'];
    if (typeof name !== 'string' || !name) return problems.add(`${f}.name`, 'is required');
    const ns = (b['namespace'] as string | undefined) ?? namespace;
    if (ns !== namespace) problems.add(`${f}.namespace`, `a backend in another namespace ("${ns}") needs a ReferenceGrant, which Ambit does not support yet; route to a Service in "${namespace}"`);
    const port = portOf(b['port'], `${f}.port`, problems);
    if (port === undefined && b['port'] === undefined) problems.add(`${f}.port`, 'is required for a Service backend');
    const weight = b['weight'] ?? 1;
    if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 0 || weight > 1_000_000) problems.add(`${f}.weight`, `${JSON.stringify(weight)} is not a weight; use an integer from 0 to 1000000`);
    if (b['filters'] !== undefined) problems.add(`${f}.filters`, 'per-backend filters are not supported; move them to the rule');
    if (port !== undefined && typeof weight === 'number') out.push({ service: `${ns}/${name}`, port, weight });
  });
  return out;
}

function readRule(r: Record<string, unknown>, field: string, problems: Problems, kind: RouteKind, namespace: string): RouteRule {
  const matchesRaw = objectList(r['matches'], `${field}.matches`, problems);
  const matches = (matchesRaw ?? [{}]).map((m, i) => (kind === 'HTTPRoute' ? readHttpMatch(m, `${field}.matches[${i}]`, problems) : readGrpcMatch(m, `${field}.matches[${i}]`, problems)));
  const rule: RouteRule = {
    matches: kind === 'HTTPRoute' && !matchesRaw ? [{ path: { type: 'PathPrefix', value: '/' } }] : matches,
    filters: readFilters(r['filters'], `${field}.filters`, problems, kind),
    backends: readBackends(r['backendRefs'], `${field}.backendRefs`, problems, namespace),
  };
  if (typeof r['name'] === 'string') rule.name = r['name'];
  const timeouts = objectField(r['timeouts'], `${field}.timeouts`, problems);
  if (timeouts && kind === 'HTTPRoute') {
    rule.timeouts = {};
    for (const k of ['request', 'backendRequest'] as const) {
      const t = timeouts[k];
      if (t === undefined) continue;
      if (typeof t !== 'string' || !DURATION.test(t)) problems.add(`${field}.timeouts.${k}`, `${JSON.stringify(t)} is not a duration; write it like "10s", "1m30s" or "500ms"`);
      else rule.timeouts[k] = t;
    }
  }
  return rule;
}

/** Reads an HTTPRoute or GRPCRoute; every problem is reported. `parents` is empty for a route that is not a mesh route. */
export function parseRoute(kind: RouteKind, obj: KubeObject): Parsed<Route> {
  const problems = new Problems();
  const namespace = obj.metadata.namespace ?? '';
  const spec = objectField(obj.spec ?? {}, 'spec', problems) ?? {};
  const parents = readParents(spec, namespace, problems);
  const hostnames = stringList(spec['hostnames'], 'spec.hostnames', problems) ?? [];
  hostnames.forEach((h, i) => HOSTNAME.test(h) || problems.add(`spec.hostnames[${i}]`, `"${h}" is not a hostname (lower-case DNS name, optionally starting with "*.")`));
  const rulesRaw = objectList(spec['rules'], 'spec.rules', problems) ?? [{}];
  if (rulesRaw.length > 16) problems.add('spec.rules', `has ${rulesRaw.length} rules; at most 16 are allowed`);
  const rules = rulesRaw.map((r, i) => readRule(r, `spec.rules[${i}]`, problems, kind, namespace));
  if (!problems.ok) return { ok: false, problems };
  const name = obj.metadata.name ?? '';
  return { ok: true, value: { key: routeKey(kind, namespace, name), kind, namespace, name, parents, hostnames, rules } };
}

/** Whether a route object names at least one Service parent (so Ambit owns its mesh status). */
export function isMeshRoute(obj: KubeObject): boolean {
  const refs = (obj.spec as { parentRefs?: unknown } | undefined)?.parentRefs;
  return Array.isArray(refs) && refs.some((r) => typeof r === 'object' && r !== null && (r as { kind?: unknown }).kind === 'Service');
}
