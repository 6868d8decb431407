/**
 * ambit-control's configuration: a typed object parsed from environment variables and command-line
 * flags (a flag wins over its variable). Parsing is pure and reports every problem at once, each
 * naming the setting and what to put there. src/main/control.ts is the only caller.
 *
 * | flag | variable | default |
 * |---|---|---|
 * | --namespace | AMBIT_NAMESPACE (else POD_NAMESPACE) | ambit-system |
 * | --kubeconfig | AMBIT_KUBECONFIG | (in-cluster service account) |
 * | --grpc-address | AMBIT_GRPC_ADDRESS | 0.0.0.0:15012 |
 * | --metrics-address | AMBIT_METRICS_ADDRESS | 0.0.0.0:15014 |
 * | --trust-domain | AMBIT_TRUST_DOMAIN | cluster.local |
 * | --cluster-domain | AMBIT_CLUSTER_DOMAIN | cluster.local |
 * | --root-namespace | AMBIT_ROOT_NAMESPACE | the namespace |
 * | --agent-service-account | AMBIT_AGENT_SERVICE_ACCOUNT | <namespace>/ambit-agent |
 * | --workload-cert-ttl | AMBIT_WORKLOAD_CERT_TTL | 24h |
 * | --serving-cert-ttl | AMBIT_SERVING_CERT_TTL | 720h |
 * | --ca-secret | AMBIT_CA_SECRET | ambit-ca |
 * | --plugged-ca-secret | AMBIT_PLUGGED_CA_SECRET | cacerts ("" disables) |
 * | --root-cert-configmap | AMBIT_ROOT_CERT_CONFIGMAP | ambit-root-cert |
 * | --service-name | AMBIT_SERVICE_NAME | ambit-control |
 * | --pod-ip | POD_IP | (none) |
 * | --debounce | AMBIT_DEBOUNCE | 20ms |
 * | --resync | AMBIT_RESYNC | 5m |
 * | --log-level | AMBIT_LOG_LEVEL | info |
 */
import { isIP } from 'node:net';

export interface HostPort {
  host: string;
  port: number;
}

export interface ControlConfig {
  /** where the control plane runs, its Secret and ConfigMap live, and its Service is */
  namespace: string;
  /** a kubeconfig file; undefined = the pod's service account */
  kubeconfig?: string;
  grpcAddress: HostPort;
  metricsAddress: HostPort;
  trustDomain: string;
  clusterDomain: string;
  rootNamespace: string;
  agentServiceAccount: { namespace: string; name: string };
  workloadCertTtlMs: number;
  servingCertTtlMs: number;
  caSecret: string;
  /** a user-provided CA Secret (Istio's `cacerts` layout); '' = none */
  pluggedCaSecret: string;
  rootCertConfigMap: string;
  serviceName: string;
  podIp?: string;
  debounceMs: number;
  resyncMs: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

export type ParseResult = { ok: true; config: ControlConfig } | { ok: false; errors: string[] };

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** "24h", "90s", "500ms", "7d", "1h30m" → ms; undefined when it is not a duration. */
export function parseDuration(text: string): number | undefined {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 };
  if (!/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(text)) return undefined;
  let total = 0;
  for (const [, n, , u] of text.matchAll(/(\d+(\.\d+)?)(ms|s|m|h|d)/g)) total += Number(n) * units[u!]!;
  return total;
}

/** `--name value` and `--name=value` → { name: value }; anything else is reported. */
export function parseFlags(argv: readonly string[], errors: string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const m = /^--([a-z][a-z0-9-]*)(?:=(.*))?$/.exec(arg);
    if (!m) {
      errors.push(`unexpected argument "${arg}": settings are given as --name=value`);
      continue;
    }
    if (m[2] !== undefined) flags.set(m[1]!, m[2]);
    else if (i + 1 < argv.length && !argv[i + 1]!.startsWith('--')) flags.set(m[1]!, argv[++i]!);
    else errors.push(`--${m[1]} needs a value: --${m[1]}=<value>`);
  }
  return flags;
}

/** Parses the configuration from `env` and `argv` (without node and the script). Pure. */
export function parseControlConfig(env: Readonly<Record<string, string | undefined>>, argv: readonly string[]): ParseResult {
  const errors: string[] = [];
  const flags = parseFlags(argv, errors);
  const known = new Set<string>();
  const setting = (flag: string, variable: string | string[], fallback: string): { value: string; from: string } => {
    known.add(flag);
    if (flags.has(flag)) return { value: flags.get(flag)!, from: `--${flag}` };
    for (const v of Array.isArray(variable) ? variable : [variable]) if (env[v] !== undefined && env[v] !== '') return { value: env[v]!, from: v };
    return { value: fallback, from: `--${flag}` };
  };
  const name = (flag: string, variable: string | string[], fallback: string, allowEmpty = false): string => {
    const s = setting(flag, variable, fallback);
    if (!(allowEmpty && s.value === '') && !DNS_LABEL.test(s.value)) errors.push(`${s.from}="${s.value}" is not a valid Kubernetes name (lower-case letters, digits and '-', at most 63)`);
    return s.value;
  };
  const address = (flag: string, variable: string, fallback: string): HostPort => {
    const s = setting(flag, variable, fallback);
    const m = /^(.*):(\d+)$/.exec(s.value);
    const host = m?.[1]?.replace(/^\[(.*)\]$/, '$1') ?? '';
    const port = Number(m?.[2]);
    if (!m || !isIP(host) || !(port >= 0 && port < 65536)) {
      errors.push(`${s.from}="${s.value}" is not an address; use <ip>:<port> (port 0 picks a free one), e.g. ${fallback}`);
      return { host: '0.0.0.0', port: 0 };
    }
    return { host, port };
  };
  const duration = (flag: string, variable: string, fallback: string, min: number): number => {
    const s = setting(flag, variable, fallback);
    const ms = parseDuration(s.value);
    if (ms === undefined || ms < min) errors.push(`${s.from}="${s.value}" is not a duration of at least ${min} ms; use e.g. ${fallback} (units ms, s, m, h, d)`);
    return ms ?? 0;
  };

  const namespace = name('namespace', ['AMBIT_NAMESPACE', 'POD_NAMESPACE'], 'ambit-system');
  const kubeconfig = setting('kubeconfig', 'AMBIT_KUBECONFIG', '').value;
  const grpcAddress = address('grpc-address', 'AMBIT_GRPC_ADDRESS', '0.0.0.0:15012');
  const metricsAddress = address('metrics-address', 'AMBIT_METRICS_ADDRESS', '0.0.0.0:15014');
  const trustDomain = setting('trust-domain', 'AMBIT_TRUST_DOMAIN', 'cluster.local');
  if (!/^[a-z0-9._-]+$/.test(trustDomain.value)) errors.push(`${trustDomain.from}="${trustDomain.value}" is not a SPIFFE trust domain (lower-case letters, digits, '.', '-', '_')`);
  const clusterDomain = setting('cluster-domain', 'AMBIT_CLUSTER_DOMAIN', 'cluster.local');
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(clusterDomain.value)) errors.push(`${clusterDomain.from}="${clusterDomain.value}" is not a DNS domain`);
  const rootNamespace = name('root-namespace', 'AMBIT_ROOT_NAMESPACE', namespace);
  const agentSa = setting('agent-service-account', 'AMBIT_AGENT_SERVICE_ACCOUNT', `${namespace}/ambit-agent`);
  const [saNs, saName, ...rest] = agentSa.value.split('/');
  if (!saNs || !saName || rest.length > 0 || !DNS_LABEL.test(saNs) || !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(saName)) {
    errors.push(`${agentSa.from}="${agentSa.value}" is not <namespace>/<service-account>`);
  }
  const workloadCertTtlMs = duration('workload-cert-ttl', 'AMBIT_WORKLOAD_CERT_TTL', '24h', 60_000);
  const servingCertTtlMs = duration('serving-cert-ttl', 'AMBIT_SERVING_CERT_TTL', '720h', 60_000);
  const caSecret = name('ca-secret', 'AMBIT_CA_SECRET', 'ambit-ca');
  const pluggedCaSecret = name('plugged-ca-secret', 'AMBIT_PLUGGED_CA_SECRET', 'cacerts', true);
  const rootCertConfigMap = name('root-cert-configmap', 'AMBIT_ROOT_CERT_CONFIGMAP', 'ambit-root-cert');
  const serviceName = name('service-name', 'AMBIT_SERVICE_NAME', 'ambit-control');
  const podIp = setting('pod-ip', 'POD_IP', '');
  if (podIp.value && !isIP(podIp.value)) errors.push(`${podIp.from}="${podIp.value}" is not an IP address`);
  const debounceMs = duration('debounce', 'AMBIT_DEBOUNCE', '20ms', 0);
  const resyncMs = duration('resync', 'AMBIT_RESYNC', '5m', 0);
  const logLevel = setting('log-level', 'AMBIT_LOG_LEVEL', 'info');
  if (!(LEVELS as readonly string[]).includes(logLevel.value)) errors.push(`${logLevel.from}="${logLevel.value}" is not a log level; use one of ${LEVELS.join(', ')}`);
  for (const flag of flags.keys()) if (!known.has(flag)) errors.push(`unknown flag --${flag}; see src/config/control.ts for the settings`);

  if (errors.length > 0) return { ok: false, errors };
  return {
    ok: true,
    config: {
      namespace,
      ...(kubeconfig ? { kubeconfig } : {}),
      grpcAddress,
      metricsAddress,
      trustDomain: trustDomain.value,
      clusterDomain: clusterDomain.value,
      rootNamespace,
      agentServiceAccount: { namespace: saNs!, name: saName! },
      workloadCertTtlMs,
      servingCertTtlMs,
      caSecret,
      pluggedCaSecret,
      rootCertConfigMap,
      serviceName,
      ...(podIp.value ? { podIp: podIp.value } : {}),
      debounceMs,
      resyncMs,
      logLevel: logLevel.value as ControlConfig['logLevel'],
    },
  };
}

/** The DNS names of the control plane's Service, for its serving certificate. */
export function serviceDnsNames(cfg: Pick<ControlConfig, 'serviceName' | 'namespace' | 'clusterDomain'>): string[] {
  const { serviceName: s, namespace: ns, clusterDomain: d } = cfg;
  return [s, `${s}.${ns}`, `${s}.${ns}.svc`, `${s}.${ns}.svc.${d}`];
}
