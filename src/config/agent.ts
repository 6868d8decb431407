/**
 * ambit-agent's configuration: a typed object parsed from environment variables and command-line
 * flags (a flag wins over its variable). Pure; every problem is reported at once. The DaemonSet
 * (daemonset/agent.yaml) sets NODE_NAME and POD_NAMESPACE from the downward API; everything else
 * has a default that matches a standard node layout. src/main/agent.ts is the only caller.
 *
 * | flag | variable | default |
 * |---|---|---|
 * | --node-name | NODE_NAME | (required) |
 * | --namespace | AMBIT_NAMESPACE (else POD_NAMESPACE) | ambit-system |
 * | --daemonset | AMBIT_DAEMONSET | ambit-agent (checked on SIGTERM: gone = uninstall) |
 * | --kubeconfig | AMBIT_KUBECONFIG | (in-cluster service account) |
 * | --metrics-address | AMBIT_METRICS_ADDRESS | 0.0.0.0:15020 |
 * | --readiness-address | AMBIT_READINESS_ADDRESS | 0.0.0.0:15021 |
 * | --cni-conf-dir | AMBIT_CNI_CONF_DIR | /etc/cni/net.d |
 * | --cni-bin-dir | AMBIT_CNI_BIN_DIR | /opt/cni/bin |
 * | --cni-plugin | AMBIT_CNI_PLUGIN | /opt/ambit/dist/native/ambit-cni (in the image) |
 * | --cni-socket | AMBIT_CNI_SOCKET | @ambit/cni (abstract: one per network namespace, so per node) |
 * | --cni-exclude-namespaces | AMBIT_CNI_EXCLUDE_NAMESPACES | kube-system |
 * | --netns-dir | AMBIT_NETNS_DIR | /var/run/netns (the runtime's pod netns mounts) |
 * | --redirect-backend | AMBIT_REDIRECT_BACKEND | auto (detected per node: iptables-legacy, iptables-nft or nft) |
 * | --dns-capture | AMBIT_DNS_CAPTURE | true |
 * | --dns-upstream | AMBIT_DNS_UPSTREAM | (the first nameserver of the agent's resolv.conf: the cluster DNS) |
 * | --resync | AMBIT_RESYNC | 5m |
 * | --control-address | AMBIT_CONTROL_ADDRESS | ambit-control.<namespace>.svc:15012 (the control plane's Service) |
 * | --control-server-name | AMBIT_CONTROL_SERVER_NAME | ambit-control.<namespace>.svc (a name in its serving certificate) |
 * | --control-roots | AMBIT_CONTROL_ROOTS | /etc/ambit/ca/root-cert.pem (the ConfigMap ambit-root-cert, mounted) |
 * | --token-file | AMBIT_TOKEN_FILE | /var/run/secrets/ambit/token (projected, pod-bound; re-read on every call) |
 * | --cert-ttl | AMBIT_CERT_TTL | 24h (asked of the CA, which never grants more than its own limit) |
 * | --cert-wait | AMBIT_CERT_WAIT | 5s (how long a connection waits for its pod's first certificate) |
 * | --drain | AMBIT_DRAIN | 8s (on SIGTERM, how long open connections may finish; below the pod's grace period) |
 * | --proxy-workers | AMBIT_PROXY_WORKERS | the CPUs available to the agent (worker threads of the proxy; 0 = none, the main thread proxies) |
 * | --debug-profiling | AMBIT_DEBUG_PROFILING | false (serve /debug/cpu-profile on the readiness port: CPU profiles of the agent's threads) |
 * | --log-level | AMBIT_LOG_LEVEL | info |
 */
import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import { SettingsReader, type HostPort, type LogLevel } from './settings.js';

export const REDIRECT_BACKENDS = ['auto', 'iptables-legacy', 'iptables-nft', 'nft'] as const;
export type RedirectBackendSetting = (typeof REDIRECT_BACKENDS)[number];

export interface AgentConfig {
  nodeName: string;
  namespace: string;
  /** the agent's own DaemonSet: when it is gone at SIGTERM, the agent uninstalls the CNI plugin */
  daemonSet: string;
  kubeconfig?: string;
  metricsAddress: HostPort;
  readinessAddress: HostPort;
  cniConfDir: string;
  cniBinDir: string;
  /** the plugin binary the agent copies into cniBinDir */
  cniPlugin: string;
  /** where the agent answers the plugin: a path, or `@name` for an abstract socket */
  cniSocket: string;
  cniExcludeNamespaces: string[];
  netnsDir: string;
  redirectBackend: RedirectBackendSetting;
  dnsCapture: boolean;
  /** undefined: read the agent's /etc/resolv.conf at start */
  dnsUpstream?: HostPort;
  resyncMs: number;
  /** host:port of ambit-control (a DNS name or an IP) */
  controlAddress: string;
  /** the name checked against ambit-control's serving certificate */
  controlServerName: string;
  /** PEM roots that sign ambit-control's serving certificate */
  controlRoots: string;
  /** the agent's service-account token presented to ambit-control */
  tokenFile: string;
  certTtlMs: number;
  certWaitMs: number;
  /** on SIGTERM: listeners close at once, open connections get this long to finish */
  drainMs: number;
  /** serve /debug/cpu-profile?seconds=N on the readiness port (off by default: it costs CPU and shows code) */
  debugProfiling: boolean;
  /** worker threads the proxy spreads over (SO_REUSEPORT in every pod); 0: no workers, the main thread proxies */
  proxyWorkers: number;
  logLevel: LogLevel;
}

export type AgentParseResult = { ok: true; config: AgentConfig } | { ok: false; errors: string[] };

/** What the machine offers, for defaults that depend on it. */
export interface HostFacts {
  /** CPUs this process may run on (os.availableParallelism()) */
  cpus: number;
}

/** Most proxy workers accepted: beyond the CPUs they only add memory and context switches. */
export const MAX_PROXY_WORKERS = 256;

/**
 * Parses the configuration from `env` and `argv` (without node and the script). Pure given `host`
 * (by default read from this machine).
 */
export function parseAgentConfig(env: Readonly<Record<string, string | undefined>>, argv: readonly string[], host: HostFacts = { cpus: availableParallelism() }): AgentParseResult {
  const r = new SettingsReader(env, argv, 'src/config/agent.ts');
  const nodeName = r.setting('node-name', 'NODE_NAME', '');
  if (!nodeName.value) r.errors.push('the node name is not set: set NODE_NAME from the downward API (fieldRef spec.nodeName) or pass --node-name');
  else if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(nodeName.value)) r.errors.push(`${nodeName.from}="${nodeName.value}" is not a node name`);
  const namespace = r.name('namespace', ['AMBIT_NAMESPACE', 'POD_NAMESPACE'], 'ambit-system');
  const daemonSet = r.name('daemonset', 'AMBIT_DAEMONSET', 'ambit-agent');
  const kubeconfig = r.setting('kubeconfig', 'AMBIT_KUBECONFIG', '').value;
  const metricsAddress = r.address('metrics-address', 'AMBIT_METRICS_ADDRESS', '0.0.0.0:15020');
  const readinessAddress = r.address('readiness-address', 'AMBIT_READINESS_ADDRESS', '0.0.0.0:15021');
  const cniConfDir = r.path('cni-conf-dir', 'AMBIT_CNI_CONF_DIR', '/etc/cni/net.d');
  const cniBinDir = r.path('cni-bin-dir', 'AMBIT_CNI_BIN_DIR', '/opt/cni/bin');
  const cniPlugin = r.path('cni-plugin', 'AMBIT_CNI_PLUGIN', '/opt/ambit/dist/native/ambit-cni');
  const cniSocket = r.setting('cni-socket', 'AMBIT_CNI_SOCKET', '@ambit/cni');
  if (!cniSocket.value.startsWith('/') && !/^@[\w./-]{1,100}$/.test(cniSocket.value)) {
    r.errors.push(`${cniSocket.from}="${cniSocket.value}" is neither an absolute socket path nor @name (an abstract socket)`);
  }
  const excluded = r.setting('cni-exclude-namespaces', 'AMBIT_CNI_EXCLUDE_NAMESPACES', 'kube-system').value;
  const cniExcludeNamespaces = excluded.split(',').map((s) => s.trim()).filter(Boolean);
  const netnsDir = r.path('netns-dir', 'AMBIT_NETNS_DIR', '/var/run/netns');
  const redirectBackend = r.choice('redirect-backend', 'AMBIT_REDIRECT_BACKEND', 'auto', REDIRECT_BACKENDS);
  const dnsCapture = r.boolean('dns-capture', 'AMBIT_DNS_CAPTURE', true);
  const upstream = r.setting('dns-upstream', 'AMBIT_DNS_UPSTREAM', '');
  const dnsUpstream = upstream.value ? parseUpstream(upstream.value, upstream.from, r.errors) : undefined;
  const resyncMs = r.duration('resync', 'AMBIT_RESYNC', '5m', 0);
  const controlAddress = r.setting('control-address', 'AMBIT_CONTROL_ADDRESS', `ambit-control.${namespace}.svc:15012`);
  if (!isHostPort(controlAddress.value)) r.errors.push(`${controlAddress.from}="${controlAddress.value}" is not <host>:<port>; use e.g. ambit-control.ambit-system.svc:15012 or 10.96.0.20:15012`);
  const controlServerName = r.setting('control-server-name', 'AMBIT_CONTROL_SERVER_NAME', `ambit-control.${namespace}.svc`);
  if (!DNS_NAME.test(controlServerName.value)) r.errors.push(`${controlServerName.from}="${controlServerName.value}" is not a DNS name; use a name in ambit-control's serving certificate, e.g. ambit-control.ambit-system.svc`);
  const controlRoots = r.path('control-roots', 'AMBIT_CONTROL_ROOTS', '/etc/ambit/ca/root-cert.pem');
  const tokenFile = r.path('token-file', 'AMBIT_TOKEN_FILE', '/var/run/secrets/ambit/token');
  const certTtlMs = r.duration('cert-ttl', 'AMBIT_CERT_TTL', '24h', 10_000);
  const certWaitMs = r.duration('cert-wait', 'AMBIT_CERT_WAIT', '5s', 0);
  const drainMs = r.duration('drain', 'AMBIT_DRAIN', '8s', 0);
  const debugProfiling = r.boolean('debug-profiling', 'AMBIT_DEBUG_PROFILING', false);
  const workers = r.setting('proxy-workers', 'AMBIT_PROXY_WORKERS', 'auto');
  const proxyWorkers = workers.value === 'auto' ? Math.max(1, Math.min(MAX_PROXY_WORKERS, host.cpus)) : Number(workers.value);
  if (!Number.isInteger(proxyWorkers) || proxyWorkers < 0 || proxyWorkers > MAX_PROXY_WORKERS || !/^(auto|\d+)$/.test(workers.value)) {
    r.errors.push(`${workers.from}="${workers.value}" is not a number of proxy workers; use 1 to ${MAX_PROXY_WORKERS}, 0 (the main thread proxies), or auto (the CPUs available: ${host.cpus})`);
  }
  const logLevel = r.logLevel();
  r.reportUnknownFlags();
  if (r.errors.length > 0) return { ok: false, errors: r.errors };
  return {
    ok: true,
    config: {
      nodeName: nodeName.value,
      namespace,
      daemonSet,
      ...(kubeconfig ? { kubeconfig } : {}),
      metricsAddress,
      readinessAddress,
      cniConfDir,
      cniBinDir,
      cniPlugin,
      cniSocket: cniSocket.value,
      cniExcludeNamespaces,
      netnsDir,
      redirectBackend,
      dnsCapture,
      ...(dnsUpstream ? { dnsUpstream } : {}),
      resyncMs,
      controlAddress: controlAddress.value,
      controlServerName: controlServerName.value,
      controlRoots,
      tokenFile,
      certTtlMs,
      certWaitMs,
      drainMs,
      debugProfiling,
      proxyWorkers,
      logLevel,
    },
  };
}

const DNS_NAME = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/;

/** "name.ns.svc:15012", "10.96.0.20:15012", "[fd00::20]:15012". */
function isHostPort(text: string): boolean {
  const m = /^(.*):(\d+)$/.exec(text);
  if (!m) return false;
  const port = Number(m[2]);
  if (!(port > 0 && port < 65536)) return false;
  const host = m[1]!;
  const bracketed = /^\[(.*)\]$/.exec(host);
  if (bracketed) return isIP(bracketed[1]!) === 6;
  return isIP(host) === 4 || DNS_NAME.test(host);
}

/** "10.96.0.10", "10.96.0.10:53", "[fd00::a]:53" → host and port (53 by default). */
function parseUpstream(text: string, from: string, errors: string[]): HostPort | undefined {
  if (isIP(text)) return { host: text, port: 53 };
  const m = /^(.*):(\d+)$/.exec(text);
  const host = m?.[1]?.replace(/^\[(.*)\]$/, '$1') ?? '';
  const port = Number(m?.[2]);
  if (!m || !isIP(host) || !(port > 0 && port < 65536)) {
    errors.push(`${from}="${text}" is not a resolver address; use <ip> or <ip>:<port>, e.g. 10.96.0.10:53`);
    return undefined;
  }
  return { host, port };
}

/** The first `nameserver` of a resolv.conf, as an upstream; undefined when there is none. Pure. */
export function resolverFromResolvConf(text: string): HostPort | undefined {
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m && isIP(m[1]!)) return { host: m[1]!, port: 53 };
  }
  return undefined;
}
