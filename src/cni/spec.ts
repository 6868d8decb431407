/**
 * The CNI protocol as ambit-cni speaks it (spec 1.0.0, also 0.3.0, 0.3.1 and 0.4.0), as pure
 * functions: the CNI_* environment, CNI_ARGS, the network configuration on stdin, the result
 * shapes of each version (prevResult is passed through, converted to the requested version), and
 * the error structure with the spec's well-known codes. Nothing here does I/O.
 */
import { DEFAULT_CNI_SOCKET, type CniPodRef } from '../api/cni.js';

/** The spec versions this plugin implements, oldest first (what VERSION reports). */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST_VERSION: CniVersion = '1.0.0';

/** The spec's well-known error codes (0-99), then ambit-cni's own (100+). */
export const CniCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironment: 4,
  IoFailure: 5,
  DecodingFailure: 6,
  InvalidConfig: 7,
  TryAgainLater: 11,
  /** the agent tried to enrol the pod and failed (e.g. programming its rules) */
  EnrolmentFailed: 100,
  /** the agent's answer was not understood (plugin and agent of different versions?) */
  AgentProtocol: 101,
  /** CHECK: the agent reports the pod is no longer as ADD left it */
  CheckFailed: 102,
} as const;
export type CniCodeValue = (typeof CniCode)[keyof typeof CniCode];

/** A failure to report to the runtime as the spec's error structure. */
export class CniError extends Error {
  constructor(
    readonly code: CniCodeValue,
    /** short, and says what to do */
    readonly msg: string,
    readonly details = '',
  ) {
    super(details ? `${msg}: ${details}` : msg);
    this.name = 'CniError';
  }
}

/** The spec's error structure (printed on stdout, with a non-zero exit). */
export function errorResult(err: CniError, cniVersion: string): Record<string, unknown> {
  return { cniVersion, code: err.code, msg: err.msg, ...(err.details ? { details: err.details } : {}) };
}

// ---------- versions ----------

function versionParts(v: string): number[] | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(v);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

/** a ≥ b for dotted versions; false when either is not x.y.z. */
export function versionAtLeast(a: string, b: string): boolean {
  const pa = versionParts(a);
  const pb = versionParts(b);
  if (!pa || !pb) return false;
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pa[i]! > pb[i]!;
  return true;
}

export function isSupportedVersion(v: unknown): v is CniVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/**
 * The VERSION answer. Since 1.0.0 the runtime sends `{"cniVersion": ...}` on stdin and expects it
 * echoed; older runtimes send nothing, and get our latest.
 */
export function versionResult(stdin: string): Record<string, unknown> {
  let requested: unknown;
  try {
    requested = (JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion;
  } catch {
    requested = undefined;
  }
  return { cniVersion: isSupportedVersion(requested) ? requested : LATEST_VERSION, supportedVersions: [...SUPPORTED_VERSIONS] };
}

// ---------- environment ----------

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION';
const COMMANDS: readonly CniCommand[] = ['ADD', 'DEL', 'CHECK', 'VERSION'];

export interface CniEnvironment {
  command: Exclude<CniCommand, 'VERSION'>;
  containerId: string;
  /** "" only on DEL (the netns may be gone) */
  netns: string;
  ifname: string;
  args: Record<string, string>;
}

export type Env = Readonly<Record<string, string | undefined>>;

const CONTAINER_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** Why an interface name is not one Linux accepts; undefined when it is fine. */
export function ifnameProblem(name: string): string | undefined {
  if (!name) return 'must not be empty';
  if (name === '.' || name === '..') return 'must not be "." or ".."';
  if (Buffer.byteLength(name) > 15) return 'must be shorter than 16 characters';
  if (/[/:\s]/.test(name)) return 'must not contain "/", ":" or whitespace';
  return undefined;
}

/** CNI_COMMAND alone: VERSION needs nothing else. */
export function parseCommand(env: Env): CniCommand {
  const cmd = env.CNI_COMMAND;
  if (!cmd) throw new CniError(CniCode.InvalidEnvironment, 'CNI_COMMAND is not set', 'ambit-cni is a CNI plugin: the container runtime runs it with CNI_COMMAND=ADD|DEL|CHECK|VERSION');
  if (!(COMMANDS as readonly string[]).includes(cmd)) {
    throw new CniError(CniCode.InvalidEnvironment, `CNI_COMMAND=${cmd} is not supported`, `ambit-cni implements ${COMMANDS.join(', ')} of CNI ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  return cmd as CniCommand;
}

/**
 * The CNI_* variables of ADD, DEL and CHECK. Every invalid variable is named in one error (the
 * spec asks for the names), not just the first.
 */
export function parseEnvironment(env: Env): CniEnvironment {
  const command = parseCommand(env);
  if (command === 'VERSION') throw new Error('parseEnvironment is not for VERSION');
  const problems: string[] = [];
  const containerId = env.CNI_CONTAINERID ?? '';
  if (!containerId) problems.push('CNI_CONTAINERID is not set');
  else if (!CONTAINER_ID.test(containerId)) problems.push(`CNI_CONTAINERID=${JSON.stringify(containerId)} must start with a letter or digit, followed by letters, digits, "_", "." or "-"`);
  const netns = env.CNI_NETNS ?? '';
  if (!netns && command !== 'DEL') problems.push('CNI_NETNS is not set');
  const ifname = env.CNI_IFNAME ?? '';
  const bad = ifnameProblem(ifname);
  if (env.CNI_IFNAME === undefined) problems.push('CNI_IFNAME is not set');
  else if (bad) problems.push(`CNI_IFNAME=${JSON.stringify(ifname)} ${bad}`);
  let args: Record<string, string> = {};
  try {
    args = parseCniArgs(env.CNI_ARGS ?? '');
  } catch (err) {
    problems.push((err as Error).message);
  }
  if (problems.length > 0) {
    const names = [...new Set(problems.map((p) => /^CNI_[A-Z]+/.exec(p)![0]))];
    throw new CniError(CniCode.InvalidEnvironment, `invalid CNI environment variables: ${names.join(', ')}`, problems.join('; '));
  }
  return { command, containerId, netns, ifname, args };
}

/**
 * CNI_ARGS: "K=V;K=V". As libcni parses it: an empty string is no arguments, and every pair has
 * exactly one "=" (a value may be empty). Unknown keys are kept; containerd adds IgnoreUnknown=1.
 */
export function parseCniArgs(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (s === '') return out;
  for (const pair of s.split(';')) {
    const kv = pair.split('=');
    if (kv.length !== 2 || kv[0] === '') throw new Error(`CNI_ARGS: invalid pair ${JSON.stringify(pair)} (expected KEY=VALUE pairs separated by ";")`);
    out[kv[0]!] = kv[1]!;
  }
  return out;
}

/** The Kubernetes pod the runtime names in CNI_ARGS; undefined for a container that is not a pod. */
export function podFromArgs(args: Record<string, string>): CniPodRef | undefined {
  const namespace = args.K8S_POD_NAMESPACE;
  const name = args.K8S_POD_NAME;
  if (!namespace || !name) return undefined;
  return { namespace, name, uid: args.K8S_POD_UID ?? '' };
}

// ---------- network configuration ----------

/** The plugin's own part of the conflist entry (what the agent's installer writes). */
export interface AmbitPluginSettings {
  /** the agent's unix socket: "@name" (abstract, in the node's netns) or a path; default @ambit/cni */
  agentSocket: string;
  /** how long the plugin waits for the agent's answer, e.g. for ADD to enrol a pod (default 30 s) */
  timeoutMs: number;
  /** pods of these namespaces are passed through without asking the agent (e.g. kube-system) */
  excludeNamespaces: string[];
}

export interface NetworkConfig extends AmbitPluginSettings {
  cniVersion: CniVersion;
  name: string;
  type: string;
  /** the result of the plugins before us, as received */
  prevResult: Record<string, unknown> | undefined;
}

export const DEFAULT_TIMEOUT_MS = 30_000;

/** sun_path holds 108 bytes: a path and its NUL, or an abstract name after its leading NUL. */
const MAX_SOCKET_NAME_BYTES = 107;

/** Why `agentSocket` is not a socket the plugin can connect to; undefined when it is fine. */
export function agentSocketProblem(v: unknown): string | undefined {
  if (typeof v !== 'string' || !(v.startsWith('/') || v.startsWith('@'))) return 'must be an absolute path or "@name" (an abstract socket)';
  if (v === '@') return 'an abstract socket needs a name after "@"';
  if (v.includes('\0')) return 'must not contain NUL';
  if (Buffer.byteLength(v) - (v.startsWith('@') ? 1 : 0) > MAX_SOCKET_NAME_BYTES) return `must be at most ${MAX_SOCKET_NAME_BYTES} bytes (the limit of a unix socket address)`;
  return undefined;
}
const MAX_TIMEOUT_MS = 10 * 60_000;

/** The `cniVersion` of a config for error results: what it says when it says anything, else ours. */
export function configVersionForErrors(stdin: string): string {
  try {
    const v = (JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion;
    return typeof v === 'string' && v !== '' ? v : LATEST_VERSION;
  } catch {
    return LATEST_VERSION;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function decode(stdin: string): Record<string, unknown> {
  if (stdin.trim() === '') throw new CniError(CniCode.DecodingFailure, 'no network configuration on stdin', 'the runtime must stream the plugin configuration as JSON on stdin');
  let conf: unknown;
  try {
    conf = JSON.parse(stdin);
  } catch (err) {
    throw new CniError(CniCode.DecodingFailure, 'the network configuration on stdin is not valid JSON', (err as Error).message);
  }
  if (!isObject(conf)) throw new CniError(CniCode.DecodingFailure, 'the network configuration on stdin is not a JSON object', `got ${Array.isArray(conf) ? 'an array' : typeof conf}`);
  return conf;
}

/**
 * The configuration a runtime streams for ADD, DEL or CHECK. Errors come in the spec's order of
 * concern: decoding (6), version (1), unsupported fields (2), then every invalid field at once (7).
 */
export function parseNetworkConfig(stdin: string, command: CniEnvironment['command']): NetworkConfig {
  const conf = decode(stdin);
  const version = conf.cniVersion;
  if (version !== undefined && typeof version !== 'string') throw new CniError(CniCode.DecodingFailure, 'cniVersion must be a string', `got ${JSON.stringify(version)}`);
  if (!isSupportedVersion(version)) {
    // A config without cniVersion means 0.1.0 to libcni; we start at 0.3.0 (results with interfaces).
    const said = version === undefined || version === '' ? 'no cniVersion (which means 0.1.0)' : `cniVersion ${version}`;
    throw new CniError(CniCode.IncompatibleVersion, `ambit-cni does not support ${said}`, `supported versions: ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  if (command === 'CHECK' && !versionAtLeast(version, '0.4.0')) {
    throw new CniError(CniCode.IncompatibleVersion, `CHECK needs cniVersion 0.4.0 or later, the configuration says ${version}`);
  }
  if (conf.ipam !== undefined) {
    throw new CniError(CniCode.UnsupportedField, `unsupported field ipam=${JSON.stringify(conf.ipam)}`, 'ambit-cni is a chained plugin and allocates no addresses; put ipam on the interface plugin');
  }

  const problems: string[] = [];
  const str = (key: string): string => {
    const v = conf[key];
    if (typeof v !== 'string' || v === '') problems.push(`${key}: must be a non-empty string`);
    return typeof v === 'string' ? v : '';
  };
  const name = str('name');
  const type = str('type');

  let agentSocket = DEFAULT_CNI_SOCKET;
  if (conf.agentSocket !== undefined) {
    const bad = agentSocketProblem(conf.agentSocket);
    if (bad) problems.push(`agentSocket: ${bad}, got ${JSON.stringify(conf.agentSocket)}`);
    else agentSocket = conf.agentSocket as string;
  }
  let timeoutMs = DEFAULT_TIMEOUT_MS;
  if (conf.timeoutMs !== undefined) {
    const t = conf.timeoutMs;
    if (typeof t !== 'number' || !Number.isInteger(t) || t <= 0 || t > MAX_TIMEOUT_MS) problems.push(`timeoutMs: must be an integer from 1 to ${MAX_TIMEOUT_MS}, got ${JSON.stringify(t)}`);
    else timeoutMs = t;
  }
  let excludeNamespaces: string[] = [];
  if (conf.excludeNamespaces !== undefined) {
    const e = conf.excludeNamespaces;
    if (!Array.isArray(e) || !e.every((x) => typeof x === 'string')) problems.push('excludeNamespaces: must be a list of namespace names');
    else excludeNamespaces = e as string[];
  }

  let prevResult: Record<string, unknown> | undefined;
  if (conf.prevResult !== undefined && conf.prevResult !== null) {
    if (!isObject(conf.prevResult)) throw new CniError(CniCode.DecodingFailure, 'prevResult is not a JSON object');
    prevResult = conf.prevResult;
    problems.push(...resultProblems(prevResult).map((p) => `prevResult.${p}`));
  } else if (command !== 'DEL') {
    // We only adjust a pod's network; someone must have made it (bridge, ptp, a primary CNI...).
    problems.push(`prevResult: missing; ambit-cni must be chained after the plugin that creates the pod's interface (the runtime passes its result on ${command})`);
  }

  if (problems.length > 0) throw new CniError(CniCode.InvalidConfig, 'invalid network configuration for ambit-cni', problems.join('; '));
  return { cniVersion: version, name, type, agentSocket, timeoutMs, excludeNamespaces, prevResult };
}

// ---------- results ----------

/** What is wrong with a Success result's shape (the parts we read or convert), as field paths. */
export function resultProblems(result: Record<string, unknown>): string[] {
  const problems: string[] = [];
  if (result.cniVersion !== undefined && typeof result.cniVersion !== 'string') problems.push('cniVersion: must be a string');
  const interfaces = result.interfaces;
  if (interfaces !== undefined) {
    if (!Array.isArray(interfaces)) problems.push('interfaces: must be a list');
    else interfaces.forEach((i, n) => {
      if (!isObject(i) || typeof i.name !== 'string') problems.push(`interfaces[${n}].name: must be a string`);
    });
  }
  const ips = result.ips;
  if (ips !== undefined) {
    if (!Array.isArray(ips)) problems.push('ips: must be a list');
    else ips.forEach((ip, n) => {
      if (!isObject(ip) || typeof ip.address !== 'string' || !parseCidr(ip.address)) problems.push(`ips[${n}].address: must be an address in CIDR notation`);
      else if (ip.interface !== undefined && (typeof ip.interface !== 'number' || !Number.isInteger(ip.interface) || ip.interface < 0)) problems.push(`ips[${n}].interface: must be an index into interfaces`);
    });
  }
  return problems;
}

/** "10.1.0.5/16" → {address: "10.1.0.5", family: 4}; undefined when not a CIDR. */
export function parseCidr(cidr: string): { address: string; family: 4 | 6 } | undefined {
  const slash = cidr.lastIndexOf('/');
  if (slash < 0) return undefined;
  const address = cidr.slice(0, slash);
  const prefix = cidr.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefix)) return undefined;
  const bits = Number(prefix);
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(address) && address.split('.').every((o) => Number(o) <= 255) && bits <= 32) return { address, family: 4 };
  if (address.includes(':') && /^[0-9a-fA-F:.]+$/.test(address) && bits <= 128) return { address, family: 6 };
  return undefined;
}

/**
 * prevResult in the shape of `to`. 0.3.0 through 0.4.0 share one shape in which every ip carries
 * "version" ("4"/"6"); 1.0.0 dropped that field. Fields we do not know (e.g. newer route
 * attributes) pass through untouched: a chained plugin that changes nothing must hand on what it got.
 */
export function convertResult(result: Record<string, unknown>, to: CniVersion): Record<string, unknown> {
  const from = typeof result.cniVersion === 'string' && result.cniVersion !== '' ? result.cniVersion : to;
  if (!isSupportedVersion(from)) {
    throw new CniError(CniCode.IncompatibleVersion, `cannot convert a prevResult of cniVersion ${from} to ${to}`, `supported versions: ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  const { cniVersion: _ignored, ...rest } = result;
  const out: Record<string, unknown> = { cniVersion: to, ...rest };
  if (Array.isArray(rest.ips)) {
    const withVersion = !versionAtLeast(to, '1.0.0');
    out.ips = (rest.ips as Record<string, unknown>[]).map((ip) => {
      const { version: _v, ...fields } = ip;
      if (!withVersion) return fields;
      const family = parseCidr(String(ip.address))?.family ?? 4;
      // "version" goes first, as 0.4.0 results print it.
      return { version: typeof ip.version === 'string' ? ip.version : String(family), ...fields };
    });
  }
  return out;
}

/**
 * The pod's own addresses from a result, without prefix: the ips whose interface is CNI_IFNAME
 * inside the sandbox; every ip when the result does not say which interface holds it.
 */
export function podAddresses(result: Record<string, unknown> | undefined, ifname: string): string[] {
  if (!result || !Array.isArray(result.ips)) return [];
  const interfaces = Array.isArray(result.interfaces) ? (result.interfaces as Record<string, unknown>[]) : [];
  const ips = result.ips as Record<string, unknown>[];
  const onPodInterface = (ip: Record<string, unknown>): boolean => {
    if (typeof ip.interface !== 'number') return true;
    const iface = interfaces[ip.interface];
    return iface !== undefined && iface.name === ifname && typeof iface.sandbox === 'string' && iface.sandbox !== '';
  };
  return ips.filter(onPodInterface).map((ip) => parseCidr(String(ip.address))?.address).filter((a): a is string => a !== undefined);
}
