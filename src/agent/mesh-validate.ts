/**
 * Shape checks of pushed config, as the agent receives it: what the proxy will rely on per
 * connection (an endpoint IP is an IP, a port is a port, a policy's action is one it knows). The
 * control plane validates the Kubernetes objects (src/state) before it pushes them, so a resource
 * failing here means version skew (a newer control plane sending a field this agent does not
 * understand) or a bug; the agent NACKs it, which becomes a Programmed=False condition on the object.
 *
 * Policy rules are checked strictly, unknown fields included: an ALLOW rule with a condition this
 * agent would ignore would match more than intended, so a policy the agent cannot fully read is
 * rejected rather than half-applied. Other resources may carry extra fields (ignored).
 *
 * Pure: each function returns the problems found (empty: fine), never throws.
 */
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { parseSpiffeId, trustDomainError } from '../identity/spiffe.js';
import type { ResourceType, SnapshotResources, TrustSettings } from '../api/types.js';
import { isIpOrCidr } from '../state/policy.js';

const AUTHZ_ACTIONS = new Set(['ALLOW', 'DENY', 'AUDIT', 'CUSTOM']);
const MTLS_MODES = new Set(['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT']);
const ENDPOINT_STATUSES = new Set(['ready', 'terminating', 'notReady']);
const ROUTE_KINDS = new Set(['HTTPRoute', 'GRPCRoute']);

const SOURCE_STRINGS = ['principals', 'notPrincipals', 'requestPrincipals', 'notRequestPrincipals', 'namespaces', 'notNamespaces', 'serviceAccounts', 'notServiceAccounts'];
const SOURCE_IPS = ['ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks'];
const OPERATION_STRINGS = ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'];
const OPERATION_PORTS = ['ports', 'notPorts'];

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);
const isStr = (v: unknown): v is string => typeof v === 'string';
const isPort = (v: unknown): boolean => Number.isInteger(v) && (v as number) > 0 && (v as number) < 65536;
const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every(isStr);
const isStringMap = (v: unknown): v is Record<string, string> => isObj(v) && Object.values(v).every(isStr);

/** The check of each resource type (a Record, so a new type cannot be left unchecked). */
const CHECKS: Record<ResourceType, (o: Obj, problems: string[]) => void> = {
  workloads: (w, problems) => workloadProblems(w, true, problems),
  peers: (w, problems) => workloadProblems(w, false, problems),
  services: serviceProblems,
  authorizationPolicies: authorizationPolicyProblems,
  peerAuthentications: peerAuthenticationProblems,
  routes: routeProblems,
};

/** The problems of one resource of `type` (an empty list: usable). */
export function resourceProblems(type: ResourceType, value: SnapshotResources[ResourceType][string] | unknown): string[] {
  if (!isObj(value)) return ['is not an object'];
  const problems: string[] = [];
  CHECKS[type](value, problems);
  return problems;
}

/** The problems of the trust settings; the roots must be parseable certificates. */
export function trustProblems(trust: TrustSettings | unknown): string[] {
  if (!isObj(trust)) return ['trust is not an object'];
  const problems: string[] = [];
  const td = isStr(trust['trustDomain']) ? trustDomainError(trust['trustDomain']) : 'trustDomain is not a string';
  if (td) problems.push(td);
  if (!isStr(trust['rootNamespace'])) problems.push('rootNamespace is not a string');
  if (!isStringArray(trust['roots'])) problems.push('roots is not a list of PEM strings');
  else {
    trust['roots'].forEach((pem, i) => {
      try {
        new X509Certificate(pem);
      } catch (err) {
        problems.push(`roots[${i}] is not a PEM certificate: ${(err as Error).message}`);
      }
    });
  }
  return problems;
}

function workloadProblems(w: Obj, local: boolean, problems: string[]): void {
  if (!isStr(w['uid']) || w['uid'] === '') problems.push('uid is missing');
  if (!isStringArray(w['ips'])) problems.push('ips is not a list of strings');
  else for (const ip of w['ips']) if (!isIP(ip)) problems.push(`ips: "${ip}" is not an IP address`);
  if (!isStr(w['node'])) problems.push('node is not a string');
  if (typeof w['enrolled'] !== 'boolean') problems.push('enrolled is not a boolean');
  if (!isStr(w['identity'])) problems.push('identity is not a string');
  else {
    const id = parseSpiffeId(w['identity']);
    if (!id.ok) problems.push(`identity: ${id.error}`);
  }
  if (!local) return;
  for (const f of ['name', 'namespace', 'serviceAccount']) if (!isStr(w[f])) problems.push(`${f} is not a string`);
  if (!isStringMap(w['labels'])) problems.push('labels is not a map of strings');
  if (!isStringArray(w['services'])) problems.push('services is not a list of strings');
}

function serviceProblems(s: Obj, problems: string[]): void {
  for (const f of ['key', 'namespace', 'name', 'hostname']) if (!isStr(s[f])) problems.push(`${f} is not a string`);
  if (!isStringArray(s['vips'])) problems.push('vips is not a list of strings');
  else for (const ip of s['vips']) if (!isIP(ip)) problems.push(`vips: "${ip}" is not an IP address`);
  if (!Array.isArray(s['ports'])) problems.push('ports is not a list');
  else {
    s['ports'].forEach((p: unknown, i) => {
      if (!isObj(p)) return void problems.push(`ports[${i}] is not an object`);
      if (!isStr(p['name'])) problems.push(`ports[${i}].name is not a string`);
      if (!isPort(p['port'])) problems.push(`ports[${i}].port ${JSON.stringify(p['port'])} is not a port number`);
      if (p['targetPort'] !== undefined && !isPort(p['targetPort'])) problems.push(`ports[${i}].targetPort ${JSON.stringify(p['targetPort'])} is not a port number`);
    });
  }
  if (!Array.isArray(s['endpoints'])) problems.push('endpoints is not a list');
  else {
    s['endpoints'].forEach((e: unknown, i) => {
      if (!isObj(e)) return void problems.push(`endpoints[${i}] is not an object`);
      if (!isStr(e['ip']) || !isIP(e['ip'])) problems.push(`endpoints[${i}].ip ${JSON.stringify(e['ip'])} is not an IP address`);
      if (!ENDPOINT_STATUSES.has(e['status'] as string)) problems.push(`endpoints[${i}].status ${JSON.stringify(e['status'])} is not ready, terminating or notReady`);
      if (e['workload'] !== undefined && !isStr(e['workload'])) problems.push(`endpoints[${i}].workload is not a string`);
      if (e['ports'] !== undefined && !(isObj(e['ports']) && Object.values(e['ports']).every(isPort))) problems.push(`endpoints[${i}].ports is not a map of port numbers`);
    });
  }
}

function scopeProblems(p: Obj, problems: string[]): void {
  for (const f of ['key', 'namespace', 'name']) if (!isStr(p[f])) problems.push(`${f} is not a string`);
  if (p['selector'] !== undefined && !isStringMap(p['selector'])) problems.push('selector is not a map of strings');
}

function authorizationPolicyProblems(p: Obj, problems: string[]): void {
  scopeProblems(p, problems);
  if (p['targetServices'] !== undefined && !isStringArray(p['targetServices'])) problems.push('targetServices is not a list of strings');
  if (!AUTHZ_ACTIONS.has(p['action'] as string)) problems.push(`action ${JSON.stringify(p['action'])} is not one of ALLOW, DENY, AUDIT, CUSTOM`);
  if (!Array.isArray(p['rules'])) return void problems.push('rules is not a list');
  p['rules'].forEach((rule: unknown, i) => {
    const at = `rules[${i}]`;
    if (!isObj(rule)) return void problems.push(`${at} is not an object`);
    unknownFields(rule, ['from', 'to', 'when'], at, problems);
    listOf(rule['from'], `${at}.from`, problems, (src, where) => {
      unknownFields(src, [...SOURCE_STRINGS, ...SOURCE_IPS], where, problems);
      for (const f of SOURCE_STRINGS) if (src[f] !== undefined && !isStringArray(src[f])) problems.push(`${where}.${f} is not a list of strings`);
      for (const f of SOURCE_IPS) {
        if (src[f] === undefined) continue;
        if (!isStringArray(src[f])) problems.push(`${where}.${f} is not a list of strings`);
        else for (const b of src[f]) if (!isIpOrCidr(b)) problems.push(`${where}.${f}: "${b}" is not an IP address or CIDR`);
      }
    });
    listOf(rule['to'], `${at}.to`, problems, (op, where) => {
      unknownFields(op, [...OPERATION_STRINGS, ...OPERATION_PORTS], where, problems);
      for (const f of OPERATION_STRINGS) if (op[f] !== undefined && !isStringArray(op[f])) problems.push(`${where}.${f} is not a list of strings`);
      for (const f of OPERATION_PORTS) if (op[f] !== undefined && !(Array.isArray(op[f]) && (op[f] as unknown[]).every(isPort))) problems.push(`${where}.${f} is not a list of port numbers`);
    });
    listOf(rule['when'], `${at}.when`, problems, (c, where) => {
      unknownFields(c, ['key', 'values', 'notValues'], where, problems);
      if (!isStr(c['key']) || c['key'] === '') problems.push(`${where}.key is missing`);
      for (const f of ['values', 'notValues']) if (c[f] !== undefined && !isStringArray(c[f])) problems.push(`${where}.${f} is not a list of strings`);
    });
  });
}

function peerAuthenticationProblems(p: Obj, problems: string[]): void {
  scopeProblems(p, problems);
  if (!isStr(p['createdAt'])) problems.push('createdAt is not a string');
  if (!MTLS_MODES.has(p['mode'] as string)) problems.push(`mode ${JSON.stringify(p['mode'])} is not one of UNSET, DISABLE, PERMISSIVE, STRICT`);
  if (p['portModes'] === undefined) return;
  if (!isObj(p['portModes'])) return void problems.push('portModes is not a map');
  for (const [port, mode] of Object.entries(p['portModes'])) {
    if (!/^\d+$/.test(port) || !isPort(Number(port))) problems.push(`portModes: "${port}" is not a port number`);
    if (!MTLS_MODES.has(mode as string)) problems.push(`portModes.${port}: ${JSON.stringify(mode)} is not one of UNSET, DISABLE, PERMISSIVE, STRICT`);
  }
}

function routeProblems(r: Obj, problems: string[]): void {
  for (const f of ['key', 'namespace', 'name']) if (!isStr(r[f])) problems.push(`${f} is not a string`);
  if (!ROUTE_KINDS.has(r['kind'] as string)) problems.push(`kind ${JSON.stringify(r['kind'])} is not HTTPRoute or GRPCRoute`);
  if (!Array.isArray(r['parents'])) problems.push('parents is not a list');
  if (!isStringArray(r['hostnames'])) problems.push('hostnames is not a list of strings');
  if (!Array.isArray(r['rules'])) problems.push('rules is not a list');
}

function unknownFields(o: Obj, known: readonly string[], at: string, problems: string[]): void {
  for (const k of Object.keys(o)) if (!known.includes(k)) problems.push(`${at}.${k} is not a field this agent understands; upgrade the agent to enforce this policy`);
}

function listOf(v: unknown, at: string, problems: string[], each: (o: Obj, where: string) => void): void {
  if (v === undefined) return;
  if (!Array.isArray(v)) return void problems.push(`${at} is not a list`);
  v.forEach((item: unknown, i) => (isObj(item) ? each(item, `${at}[${i}]`) : problems.push(`${at}[${i}] is not an object`)));
}
