/**
 * AuthorizationPolicy and PeerAuthentication (security.ambit.dev/v1, the schema of Istio's
 * security.istio.io/v1): reading a user's object into a normalised policy, with every problem
 * collected, and the pure rules of which workloads a policy applies to.
 *
 * Semantics kept from Istio (so a policy migrates by changing its apiVersion):
 * - a policy in the root namespace applies mesh-wide (its selector then matches in every namespace);
 *   elsewhere it applies to its own namespace, narrowed by `selector` or `targetRefs`;
 * - `rules` absent = matches nothing (an ALLOW policy then denies everything), `rules: [{}]` matches
 *   everything; inside a rule, absent `from`/`to`/`when` match anything;
 * - ports are strings in the API and numbers here;
 * - PeerAuthentication: workload (selector) > namespace > mesh (root namespace), UNSET inherits,
 *   the oldest policy wins a tie, port-level modes only on a workload policy, default PERMISSIVE.
 */
import { isIP } from 'node:net';
import type { AuthorizationPolicy, AuthzAction, AuthzCondition, AuthzOperation, AuthzRule, AuthzSource, MtlsMode, PeerAuthentication } from '../api/types.js';
import { Problems, objectField, objectList, stringList, stringMap } from './problems.js';
import type { KubeObject } from './objects.js';
import { keyOf, sortedMap } from './objects.js';

// The normalised policies are the push protocol's wire types (one definition, in src/api).
export type { AuthorizationPolicy, AuthzAction, AuthzCondition, AuthzOperation, AuthzRule, AuthzSource, MtlsMode, PeerAuthentication };

export const AUTHZ_ACTIONS: readonly AuthzAction[] = ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'];

export const MTLS_MODES: readonly MtlsMode[] = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'];

/** The result of reading a user's object: the normalised value, or every problem found. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; problems: Problems };

const SOURCE_FIELDS = ['principals', 'notPrincipals', 'requestPrincipals', 'notRequestPrincipals', 'namespaces', 'notNamespaces', 'serviceAccounts', 'notServiceAccounts', 'ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks'] as const;
const IP_FIELDS = new Set(['ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks']);
const OPERATION_STRING_FIELDS = ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'] as const;

/** The condition keys Istio documents (https://istio.io/docs/reference/config/security/conditions/). */
const CONDITION_KEYS = new Set(['source.ip', 'remote.ip', 'source.namespace', 'source.principal', 'source.serviceAccount', 'request.auth.principal', 'request.auth.audiences', 'request.auth.presenter', 'destination.ip', 'destination.port', 'connection.sni']);
const CONDITION_KEY_PATTERNS = [/^request\.headers\[[^\]]+\]$/, /^request\.auth\.claims\[[^\]]+\](\[[^\]]+\])*$/, /^experimental\.envoy\.filters\./];

/** "10.0.0.1" or "10.0.0.0/8" (v4 or v6). */
export function isIpOrCidr(s: string): boolean {
  const [addr, bits, extra] = s.split('/');
  if (extra !== undefined || !addr) return false;
  const family = isIP(addr);
  if (family === 0) return false;
  if (bits === undefined) return true;
  if (!/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}

function selectorOf(v: unknown, field: string, problems: Problems): Record<string, string> | undefined {
  const sel = objectField(v, field, problems);
  if (!sel) return undefined;
  const labels = stringMap(sel['matchLabels'], `${field}.matchLabels`, problems) ?? {};
  for (const [k, val] of Object.entries(labels)) {
    if (k === '') problems.add(`${field}.matchLabels`, 'a label key must not be empty');
    if (k.includes('*') || val.includes('*')) problems.add(`${field}.matchLabels.${k}`, `wildcards are not supported in selectors ("${k}=${val}"); list exact label values`);
  }
  return sortedMap(labels);
}

function portList(v: unknown, field: string, problems: Problems): number[] | undefined {
  const raw = stringList(v, field, problems);
  if (!raw) return undefined;
  const out: number[] = [];
  raw.forEach((p, i) => {
    if (!/^\d{1,5}$/.test(p) || Number(p) > 65535) problems.add(`${field}[${i}]`, `"${p}" is not a port; use a number from 0 to 65535, as a string`);
    else out.push(Number(p));
  });
  return out;
}

function readSource(src: Record<string, unknown>, field: string, problems: Problems): AuthzSource {
  const out: AuthzSource = {};
  for (const f of SOURCE_FIELDS) {
    const list = stringList(src[f], `${field}.${f}`, problems);
    if (list === undefined) continue;
    if (IP_FIELDS.has(f)) list.forEach((ip, i) => isIpOrCidr(ip) || problems.add(`${field}.${f}[${i}]`, `"${ip}" is not an IP address or CIDR block (e.g. 10.0.0.1 or 10.0.0.0/8)`));
    if (f === 'serviceAccounts' || f === 'notServiceAccounts') list.forEach((sa, i) => /^[^/]+\/[^/]+$/.test(sa) || problems.add(`${field}.${f}[${i}]`, `"${sa}" must name a service account as "<namespace>/<name>"`));
    out[f] = list;
  }
  if (Object.keys(out).length === 0) problems.add(field, 'must not be empty; name at least one of principals, namespaces, serviceAccounts, ipBlocks (or their not… forms), or drop the source');
  const identityFields = (out.principals?.length ?? 0) + (out.notPrincipals?.length ?? 0) + (out.namespaces?.length ?? 0) + (out.notNamespaces?.length ?? 0);
  if (identityFields > 0 && (out.serviceAccounts?.length ?? 0) + (out.notServiceAccounts?.length ?? 0) > 0) problems.add(field, 'cannot set serviceAccounts together with namespaces or principals; use one form');
  return out;
}

function readOperation(op: Record<string, unknown>, field: string, problems: Problems): AuthzOperation {
  const out: AuthzOperation = {};
  for (const f of OPERATION_STRING_FIELDS) {
    const list = stringList(op[f], `${field}.${f}`, problems);
    if (list !== undefined) out[f] = list;
  }
  const ports = portList(op['ports'], `${field}.ports`, problems);
  if (ports !== undefined) out.ports = ports;
  const notPorts = portList(op['notPorts'], `${field}.notPorts`, problems);
  if (notPorts !== undefined) out.notPorts = notPorts;
  if (Object.keys(out).length === 0) problems.add(field, 'must not be empty; name at least one of hosts, ports, methods, paths (or their not… forms), or drop the operation');
  return out;
}

function validConditionKey(key: string): boolean {
  return CONDITION_KEYS.has(key) || CONDITION_KEY_PATTERNS.some((re) => re.test(key));
}

function readCondition(c: Record<string, unknown>, field: string, problems: Problems): AuthzCondition | undefined {
  const key = c['key'];
  if (typeof key !== 'string' || key === '') {
    problems.add(`${field}.key`, 'is required; name an attribute such as source.ip or request.headers[x-user]');
    return undefined;
  }
  if (!validConditionKey(key)) problems.add(`${field}.key`, `"${key}" is not a supported attribute; see the list of condition keys (source.ip, source.namespace, source.principal, destination.port, request.headers[<name>], …)`);
  const values = stringList(c['values'], `${field}.values`, problems);
  const notValues = stringList(c['notValues'], `${field}.notValues`, problems);
  if (!values?.length && !notValues?.length) problems.add(field, `set at least one of values or notValues for key ${key}`);
  const checkEach = (list: string[] | undefined, name: string, ok: (v: string) => boolean, what: string): void =>
    list?.forEach((v, i) => ok(v) || problems.add(`${field}.${name}[${i}]`, `"${v}" ${what}`));
  for (const [list, name] of [[values, 'values'], [notValues, 'notValues']] as const) {
    if (key === 'source.ip' || key === 'remote.ip' || key === 'destination.ip') checkEach(list, name, isIpOrCidr, 'is not an IP address or CIDR block');
    if (key === 'destination.port') checkEach(list, name, (v) => /^\d{1,5}$/.test(v) && Number(v) <= 65535, 'is not a port number (0-65535)');
  }
  const out: AuthzCondition = { key };
  if (values) out.values = values;
  if (notValues) out.notValues = notValues;
  return out;
}

function readRule(rule: Record<string, unknown>, field: string, problems: Problems, action: AuthzAction): AuthzRule {
  const out: AuthzRule = {};
  const from = objectList(rule['from'], `${field}.from`, problems);
  if (from) {
    if (from.length === 0) problems.add(`${field}.from`, 'must not be an empty list; remove it to match any source');
    out.from = [];
    from.forEach((f, i) => {
      const src = objectField(f['source'], `${field}.from[${i}].source`, problems);
      if (!src) return problems.add(`${field}.from[${i}].source`, 'is required');
      const s = readSource(src, `${field}.from[${i}].source`, problems);
      if (action === 'CUSTOM') {
        for (const k of ['principals', 'notPrincipals', 'requestPrincipals', 'notRequestPrincipals', 'namespaces', 'notNamespaces', 'serviceAccounts', 'notServiceAccounts'] as const)
          if (s[k]) problems.add(`${field}.from[${i}].source.${k}`, 'is not supported with the CUSTOM action; use ipBlocks or a DENY/ALLOW policy');
      }
      out.from!.push(s);
    });
  }
  const to = objectList(rule['to'], `${field}.to`, problems);
  if (to) {
    if (to.length === 0) problems.add(`${field}.to`, 'must not be an empty list; remove it to match any operation');
    out.to = [];
    to.forEach((t, i) => {
      const op = objectField(t['operation'], `${field}.to[${i}].operation`, problems);
      if (!op) return problems.add(`${field}.to[${i}].operation`, 'is required');
      out.to!.push(readOperation(op, `${field}.to[${i}].operation`, problems));
    });
  }
  const when = objectList(rule['when'], `${field}.when`, problems);
  if (when) {
    out.when = [];
    when.forEach((c, i) => {
      const cond = readCondition(c, `${field}.when[${i}]`, problems);
      if (cond) out.when!.push(cond);
    });
  }
  return out;
}

/** targetRef / targetRefs: Ambit applies policies to workloads, so a target must be a Service of the policy's namespace. */
function readTargets(spec: Record<string, unknown>, namespace: string, problems: Problems): string[] | undefined {
  const single = objectField(spec['targetRef'], 'spec.targetRef', problems);
  const many = objectList(spec['targetRefs'], 'spec.targetRefs', problems);
  const refs: [Record<string, unknown>, string][] = [];
  if (single) refs.push([single, 'spec.targetRef']);
  many?.forEach((r, i) => refs.push([r, `spec.targetRefs[${i}]`]));
  if (refs.length === 0) return undefined;
  const out: string[] = [];
  for (const [r, field] of refs) {
    const group = r['group'] ?? '';
    const kind = r['kind'];
    const name = r['name'];
    if (group !== '' || kind !== 'Service') problems.add(field, `targets ${String(group) || 'core'}/${String(kind)}, which Ambit cannot enforce; target a Service (group "", kind Service) or use spec.selector`);
    if (typeof name !== 'string' || name === '') problems.add(`${field}.name`, 'is required');
    const ns = r['namespace'];
    if (ns !== undefined && ns !== namespace) problems.add(`${field}.namespace`, `must be the policy's own namespace "${namespace}" (or left out)`);
    if (typeof name === 'string' && name) out.push(name);
  }
  return out;
}

/** Reads an AuthorizationPolicy; every problem is reported, never just the first. */
export function parseAuthorizationPolicy(obj: KubeObject): Parsed<AuthorizationPolicy> {
  const problems = new Problems();
  const namespace = obj.metadata.namespace ?? '';
  const spec = objectField(obj.spec ?? {}, 'spec', problems) ?? {};
  const actionRaw = spec['action'] ?? 'ALLOW';
  const action = AUTHZ_ACTIONS.includes(actionRaw as AuthzAction) ? (actionRaw as AuthzAction) : undefined;
  if (!action) problems.add('spec.action', `"${String(actionRaw)}" is not an action; use one of ${AUTHZ_ACTIONS.join(', ')}`);
  const selector = selectorOf(spec['selector'], 'spec.selector', problems);
  const targetServices = readTargets(spec, namespace, problems);
  if (selector && targetServices) problems.add('spec', 'set only one of selector or targetRefs');
  const providerObj = objectField(spec['provider'], 'spec.provider', problems);
  const provider = typeof providerObj?.['name'] === 'string' ? (providerObj['name'] as string) : undefined;
  const rulesRaw = objectList(spec['rules'], 'spec.rules', problems);
  if (action === 'CUSTOM') {
    if (!rulesRaw) problems.add('spec.rules', 'a CUSTOM policy without rules never triggers; add an empty rule {} to apply it to every request');
    else if (!provider) problems.add('spec.provider.name', 'is required with the CUSTOM action');
  }
  if (providerObj && action !== 'CUSTOM') problems.add('spec.provider', `is only allowed with the CUSTOM action (found ${String(actionRaw)})`);
  if (action === 'DENY' && !rulesRaw) problems.add('spec.rules', 'a DENY policy without rules never triggers; add an empty rule {} to deny every request');
  const rules = (rulesRaw ?? []).map((r, i) => readRule(r, `spec.rules[${i}]`, problems, action ?? 'ALLOW'));
  if (!problems.ok || !action) return { ok: false, problems };
  const value: AuthorizationPolicy = { key: keyOf(obj), namespace, name: obj.metadata.name ?? '', action, rules };
  if (selector) value.selector = selector;
  if (targetServices) value.targetServices = targetServices;
  if (provider) value.provider = provider;
  return { ok: true, value };
}

function modeOf(v: unknown, field: string, problems: Problems): MtlsMode {
  if (v === undefined || v === null) return 'UNSET';
  if (MTLS_MODES.includes(v as MtlsMode)) return v as MtlsMode;
  problems.add(field, `"${String(v)}" is not a mode; use one of ${MTLS_MODES.join(', ')}`);
  return 'UNSET';
}

/** Reads a PeerAuthentication; every problem is reported. */
export function parsePeerAuthentication(obj: KubeObject): Parsed<PeerAuthentication> {
  const problems = new Problems();
  const spec = objectField(obj.spec ?? {}, 'spec', problems) ?? {};
  const selector = selectorOf(spec['selector'], 'spec.selector', problems);
  const mtls = objectField(spec['mtls'], 'spec.mtls', problems);
  const mode = modeOf(mtls?.['mode'], 'spec.mtls.mode', problems);
  const portRaw = objectField(spec['portLevelMtls'], 'spec.portLevelMtls', problems);
  let portModes: Record<string, MtlsMode> | undefined;
  if (portRaw) {
    if (!selector || Object.keys(selector).length === 0) problems.add('spec.portLevelMtls', 'a mesh- or namespace-wide PeerAuthentication cannot have port-level mTLS; add spec.selector to name the workloads');
    if (Object.keys(portRaw).length === 0) problems.add('spec.portLevelMtls', 'must have at least one port when present; remove it otherwise');
    portModes = {};
    for (const [port, v] of Object.entries(portRaw)) {
      if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) problems.add(`spec.portLevelMtls.${port}`, 'the port must be a number from 1 to 65535');
      const m = objectField(v, `spec.portLevelMtls.${port}`, problems);
      portModes[String(Number(port))] = modeOf(m?.['mode'], `spec.portLevelMtls.${port}.mode`, problems);
    }
  }
  if (!problems.ok) return { ok: false, problems };
  const value: PeerAuthentication = { key: keyOf(obj), namespace: obj.metadata.namespace ?? '', name: obj.metadata.name ?? '', createdAt: obj.metadata.creationTimestamp ?? '', mode };
  if (selector && Object.keys(selector).length > 0) value.selector = selector;
  if (portModes) value.portModes = Object.fromEntries(Object.entries(portModes).sort(([a], [b]) => Number(a) - Number(b)));
  return { ok: true, value };
}

/** Whether every label of `selector` is on `labels` (an empty selector matches everything). */
export function selectorMatches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) return false;
  return true;
}

/** What the applicability rules need to know about a workload. */
export interface PolicySubject {
  namespace: string;
  labels: Record<string, string>;
  /** keys ("ns/name") of the Services whose selector picks this workload */
  services: readonly string[];
}

/** Whether an AuthorizationPolicy applies to a workload. */
export function authorizationPolicyApplies(p: AuthorizationPolicy, w: PolicySubject, rootNamespace: string): boolean {
  const meshWide = p.namespace === rootNamespace;
  if (!meshWide && p.namespace !== w.namespace) return false;
  if (p.targetServices) return p.namespace === w.namespace && p.targetServices.some((s) => w.services.includes(`${p.namespace}/${s}`));
  return p.selector === undefined || selectorMatches(p.selector, w.labels);
}

/** Whether a PeerAuthentication takes part in a workload's mTLS resolution (at any level). */
export function peerAuthenticationApplies(p: PeerAuthentication, w: PolicySubject, rootNamespace: string): boolean {
  if (p.selector) return p.namespace === w.namespace && selectorMatches(p.selector, w.labels);
  return p.namespace === w.namespace || p.namespace === rootNamespace;
}

export interface EffectiveMtls {
  mode: Exclude<MtlsMode, 'UNSET'>;
  /** ports whose mode differs from `mode` */
  ports: Record<string, Exclude<MtlsMode, 'UNSET'>>;
}

const oldestFirst = (a: PeerAuthentication, b: PeerAuthentication): number => (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/** The mTLS mode a workload's inbound side enforces, by Istio's precedence rules. */
export function effectiveMtls(w: PolicySubject, pas: readonly PeerAuthentication[], rootNamespace: string): EffectiveMtls {
  const sorted = [...pas].sort(oldestFirst);
  const workload = sorted.find((p) => p.selector && p.namespace === w.namespace && selectorMatches(p.selector, w.labels));
  const namespace = sorted.find((p) => !p.selector && p.namespace === w.namespace);
  const mesh = sorted.find((p) => !p.selector && p.namespace === rootNamespace);
  const chain = [workload?.mode, namespace?.mode, mesh?.mode];
  const mode = (chain.find((m) => m !== undefined && m !== 'UNSET') ?? 'PERMISSIVE') as EffectiveMtls['mode'];
  const ports: EffectiveMtls['ports'] = {};
  for (const [port, m] of Object.entries(workload?.portModes ?? {})) if (m !== 'UNSET' && m !== mode) ports[port] = m;
  return { mode, ports };
}
