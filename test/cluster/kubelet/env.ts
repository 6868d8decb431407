// A container's environment as the kubelet builds it (kubelet_pods.go makeEnvironmentVariables):
// envFrom ConfigMaps/Secrets, then the explicit env with $(VAR) expansion and the downward API,
// then the Docker-link style variables of the namespace's Services (and always the `kubernetes`
// Service of the default namespace). Pure: the objects it needs come in through `EnvInput`.
import type { KObject } from '../apiserver/types.js';
import type { KeyValue } from '../runtime/cri.js';
import type { Container, KeySelector, Obj } from './spec.js';
import { podSpec } from './spec.js';

/** A reason the container cannot be configured; becomes waiting reason CreateContainerConfigError. */
export class ContainerConfigError extends Error {
  override name = 'ContainerConfigError';
}

export interface EnvInput {
  pod: KObject;
  container: Container;
  hostIp: string;
  podIps: string[];
  /** namespace-local lookups (undefined: not found) */
  configMap(name: string): KObject | undefined;
  secret(name: string): KObject | undefined;
  /** Services of the pod's namespace plus `kubernetes` of `default` */
  services: KObject[];
}

/** The environment, in order; later duplicates have been folded into the first occurrence. */
export function buildEnv(input: EnvInput): KeyValue[] {
  const { pod, container } = input;
  const env = new Map<string, string>();
  const serviceEnv = serviceEnvFor(pod, input.services);

  for (const from of container.envFrom ?? []) {
    const prefix = from.prefix ?? '';
    if (from.configMapRef) {
      const name = from.configMapRef.name ?? '';
      const cm = input.configMap(name);
      if (!cm) {
        if (from.configMapRef.optional) continue;
        throw new ContainerConfigError(`configmap "${name}" not found`);
      }
      for (const [k, v] of Object.entries(configMapData(cm))) if (isEnvVarName(prefix + k)) env.set(prefix + k, v);
    }
    if (from.secretRef) {
      const name = from.secretRef.name ?? '';
      const s = input.secret(name);
      if (!s) {
        if (from.secretRef.optional) continue;
        throw new ContainerConfigError(`secret "${name}" not found`);
      }
      for (const [k, v] of Object.entries(secretData(s))) if (isEnvVarName(prefix + k)) env.set(prefix + k, v);
    }
  }

  const lookup = (name: string) => env.get(name) ?? serviceEnv.get(name);
  for (const v of container.env ?? []) {
    if (v.value !== undefined || !v.valueFrom) {
      env.set(v.name, expandVars(v.value ?? '', lookup));
      continue;
    }
    const value = valueFrom(input, v.valueFrom);
    if (value !== undefined) env.set(v.name, value);
  }

  for (const [k, v] of serviceEnv) if (!env.has(k)) env.set(k, v);
  return [...env].map(([key, value]) => ({ key, value }));
}

function valueFrom(input: EnvInput, from: NonNullable<NonNullable<Container['env']>[number]['valueFrom']>): string | undefined {
  const ns = input.pod.metadata.namespace;
  if (from.fieldRef) return fieldRefValue(input.pod, from.fieldRef.fieldPath, input.hostIp, input.podIps);
  if (from.configMapKeyRef) return keyRef(from.configMapKeyRef, 'configmap', 'ConfigMap', ns, input.configMap, configMapData);
  if (from.secretKeyRef) return keyRef(from.secretKeyRef, 'secret', 'Secret', ns, input.secret, secretData);
  if (from.resourceFieldRef) return resourceFieldValue(input.container, from.resourceFieldRef.resource);
  return undefined;
}

function keyRef(
  ref: KeySelector,
  lower: string,
  kind: string,
  ns: string | undefined,
  get: (name: string) => KObject | undefined,
  data: (o: KObject) => Record<string, string>,
): string | undefined {
  const name = ref.name ?? '';
  const obj = get(name);
  if (!obj) {
    if (ref.optional) return undefined;
    throw new ContainerConfigError(`${lower} "${name}" not found`);
  }
  const value = data(obj)[ref.key];
  if (value === undefined) {
    if (ref.optional) return undefined;
    throw new ContainerConfigError(`couldn't find key ${ref.key} in ${kind} ${ns}/${name}`);
  }
  return value;
}

/** ConfigMap data plus binaryData (decoded), as strings. */
export function configMapData(cm: KObject): Record<string, string> {
  const out: Record<string, string> = { ...((cm.data as Record<string, string>) ?? {}) };
  for (const [k, v] of Object.entries((cm.binaryData as Record<string, string>) ?? {})) out[k] = Buffer.from(v, 'base64').toString('utf8');
  return out;
}

/** Secret data (base64 on the wire) decoded, plus stringData should a client have left it. */
export function secretData(s: KObject): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries((s.data as Record<string, string>) ?? {})) out[k] = Buffer.from(v, 'base64').toString('utf8');
  for (const [k, v] of Object.entries((s.stringData as Record<string, string>) ?? {})) out[k] = v;
  return out;
}

/** C_IDENTIFIER-ish names the kubelet accepts from envFrom (it skips others with an event). */
export function isEnvVarName(name: string): boolean {
  return /^[-._a-zA-Z][-._a-zA-Z0-9]*$/.test(name);
}

/**
 * The downward API for env and downwardAPI volumes (podFieldSelectorRuntimeValue + the
 * apiserver-side conversion): metadata.*, spec.nodeName, spec.serviceAccountName, status.*IP(s).
 */
export function fieldRefValue(pod: KObject, fieldPath: string, hostIp: string, podIps: string[]): string {
  const spec = podSpec(pod);
  const m = pod.metadata;
  const sub = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
  if (sub) return ((m[sub[1]!] as Record<string, string> | undefined) ?? {})[sub[2]!] ?? '';
  switch (fieldPath) {
    case 'metadata.name':
      return m.name ?? '';
    case 'metadata.namespace':
      return m.namespace ?? '';
    case 'metadata.uid':
      return m.uid ?? '';
    case 'metadata.labels':
      return formatMap(m.labels);
    case 'metadata.annotations':
      return formatMap(m.annotations);
    case 'spec.nodeName':
      return spec.nodeName ?? '';
    case 'spec.serviceAccountName':
      return spec.serviceAccountName ?? '';
    case 'status.hostIP':
      return hostIp;
    case 'status.hostIPs':
      return hostIp;
    case 'status.podIP':
      return podIps[0] ?? '';
    case 'status.podIPs':
      return podIps.join(',');
    default:
      throw new ContainerConfigError(`unsupported fieldPath: ${fieldPath}`);
  }
}

/** fieldpath.FormatMap: sorted `key="value"` lines (value quoted with Go's %q). */
export function formatMap(m: Record<string, string> | undefined): string {
  return Object.keys(m ?? {})
    .sort()
    .map((k) => `${k}=${JSON.stringify(m![k])}`)
    .join('\n');
}

/** limits.cpu/memory and requests.* of the container, in the API's quantity text (divisor ignored). */
function resourceFieldValue(container: Container, resource: string): string | undefined {
  const [kind, name] = resource.split('.') as ['limits' | 'requests', string];
  return container.resources?.[kind]?.[name ?? ''];
}

/**
 * expansion.Expand: `$(VAR)` becomes the variable's value when `lookup` knows it and stays as
 * written otherwise; `$$` is an escaped `$`.
 */
export function expandVars(input: string, lookup: (name: string) => string | undefined): string {
  let out = '';
  for (let i = 0; i < input.length; i++) {
    const c = input[i]!;
    if (c !== '$' || i + 1 >= input.length) {
      out += c;
      continue;
    }
    const n = input[i + 1]!;
    if (n === '$') {
      out += '$';
      i++;
    } else if (n === '(') {
      const end = input.indexOf(')', i + 2);
      if (end < 0) {
        out += input.slice(i);
        break;
      }
      const name = input.slice(i + 2, end);
      const value = lookup(name);
      out += value ?? `$(${name})`;
      i = end;
    } else {
      out += c;
    }
  }
  return out;
}

/** Command and args with $(VAR) references to the container's environment expanded. */
export function expandCommand(argv: string[] | undefined, env: KeyValue[]): string[] {
  const map = new Map(env.map((e) => [e.key, e.value]));
  return (argv ?? []).map((a) => expandVars(a, (n) => map.get(n)));
}

/** Which Services feed a pod's environment (getServiceEnvVarMap). */
function serviceEnvFor(pod: KObject, services: KObject[]): Map<string, string> {
  const ns = pod.metadata.namespace;
  const links = podSpec(pod).enableServiceLinks ?? true;
  const chosen = new Map<string, KObject>();
  for (const s of services) {
    const name = s.metadata.name ?? '';
    if (!isServiceIpSet(s)) continue;
    if (s.metadata.namespace === 'default' && name === 'kubernetes') {
      if (!chosen.has(name)) chosen.set(name, s);
    } else if (s.metadata.namespace === ns && links) {
      chosen.set(name, s);
    }
  }
  return serviceEnvVars([...chosen.values()]);
}

function isServiceIpSet(s: KObject): boolean {
  const ip = (s.spec as Obj | undefined)?.clusterIP;
  return typeof ip === 'string' && ip !== '' && ip !== 'None';
}

/** envvars.FromServices: `<NAME>_SERVICE_HOST/PORT[_<PORT NAME>]` and the Docker link variables. */
export function serviceEnvVars(services: KObject[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const s of services) {
    const spec = s.spec as Obj;
    const ports = (spec.ports as Obj[] | undefined) ?? [];
    if (!isServiceIpSet(s) || ports.length === 0) continue;
    const name = envName(s.metadata.name ?? '');
    const ip: string = spec.clusterIP;
    out.set(`${name}_SERVICE_HOST`, ip);
    out.set(`${name}_SERVICE_PORT`, String(ports[0]!.port));
    for (const p of ports) if (p.name) out.set(`${name}_SERVICE_PORT_${envName(p.name)}`, String(p.port));
    const url = (p: Obj) => `${String(p.protocol ?? 'TCP').toLowerCase()}://${ip.includes(':') ? `[${ip}]` : ip}:${p.port}`;
    out.set(`${name}_PORT`, url(ports[0]!));
    for (const p of ports) {
      const proto = String(p.protocol ?? 'TCP');
      const prefix = `${name}_PORT_${p.port}_${proto.toUpperCase()}`;
      out.set(prefix, url(p));
      out.set(`${prefix}_PROTO`, proto.toLowerCase());
      out.set(`${prefix}_PORT`, String(p.port));
      out.set(`${prefix}_ADDR`, ip);
    }
  }
  return out;
}

function envName(name: string): string {
  return name.toUpperCase().replace(/-/g, '_');
}
