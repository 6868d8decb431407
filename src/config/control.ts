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
import { DNS_LABEL, LOG_LEVELS as LEVELS, SettingsReader, type HostPort, type LogLevel } from './settings.js';

export { parseDuration, parseFlags, type HostPort } from './settings.js';

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
  logLevel: LogLevel;
}

export type ParseResult = { ok: true; config: ControlConfig } | { ok: false; errors: string[] };


/** Parses the configuration from `env` and `argv` (without node and the script). Pure. */
export function parseControlConfig(env: Readonly<Record<string, string | undefined>>, argv: readonly string[]): ParseResult {
  const r = new SettingsReader(env, argv, 'src/config/control.ts');
  const { errors } = r;
  const setting = r.setting.bind(r);
  const name = r.name.bind(r);
  const address = r.address.bind(r);
  const duration = r.duration.bind(r);

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
  r.reportUnknownFlags();

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
