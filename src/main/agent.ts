/**
 * ambit-agent's composition root: the only place that reads the environment. Parses the
 * configuration (every error at once), makes the logger, metrics and API connection, starts the
 * agent and its admin endpoints — :15020 /metrics (node metrics for Prometheus) and :15021 /ready
 * and /healthz (the DaemonSet's probes) — and on SIGTERM decides between "restart" (the DaemonSet
 * still exists: leave the CNI plugin and the pods' capture in place, fail closed) and "uninstall"
 * (the DaemonSet is gone or being deleted: remove everything Ambit put on the node).
 */
import { readFileSync } from 'node:fs';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { Agent } from '../agent/agent.js';
import { AgentMetrics } from '../agent/metrics.js';
import { parseAgentConfig } from '../config/agent.js';
import { ApiError, KubeConnection } from '../k8s/client.js';
import type { ResourceKind } from '../k8s/resources.js';
import { RESOURCES } from '../k8s/resources.js';
import type { PodObject } from '../state/objects.js';
import { createLogger } from '../telemetry/log.js';
import { startAdminServer } from '../telemetry/metrics.js';

const DAEMONSETS: ResourceKind = { group: 'apps', version: 'v1', plural: 'daemonsets', kind: 'DaemonSet', namespaced: true };
const CONFIGMAPS: ResourceKind = { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true };

async function main(): Promise<void> {
  const parsed = parseAgentConfig(process.env, process.argv.slice(2));
  if (!parsed.ok) {
    process.stderr.write(`ambit-agent: the configuration has ${parsed.errors.length} problem(s):\n${parsed.errors.map((e) => `  - ${e}\n`).join('')}`);
    process.exit(2);
  }
  const config = parsed.config;
  const log = createLogger({ name: 'ambit-agent', level: config.logLevel });
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception; exiting');
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled promise rejection'));

  const kube = config.kubeconfig ? KubeConnection.fromKubeconfig(readFileSync(config.kubeconfig, 'utf8')) : KubeConnection.inCluster();
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const metrics = new AgentMetrics(registry);
  log.info({ node: config.nodeName, api: kube.server }, 'starting');
  const getPod = async (namespace: string, name: string): Promise<PodObject | undefined> => {
    try {
      return (await kube.get(RESOURCES.pods, namespace, name)) as PodObject;
    } catch (err) {
      if (err instanceof ApiError && err.statusCode === 404) return undefined;
      throw err;
    }
  };
  const getRootCert = async (): Promise<string | undefined> => {
    const cm = (await kube.get(CONFIGMAPS, config.namespace, 'ambit-root-cert')) as { data?: Record<string, string> };
    return cm.data?.['root-cert.pem'];
  };
  const agent = await Agent.start({ config, kube, getPod, getRootCert, log, metrics });
  // agent.metrics(): with proxy workers, their registries merged with this one on every scrape
  const metricsServer = await startAdminServer({ ...config.metricsAddress, registry, metrics: () => agent.metrics(), readiness: () => agent.readiness() });
  const readinessServer = await startAdminServer({ ...config.readinessAddress, registry, metrics: () => agent.metrics(), readiness: () => agent.readiness(), debug: () => agent.snapshot(), ...(config.debugProfiling ? { profile: (ms: number) => agent.cpuProfiles(ms) } : {}) });
  log.info({ backend: agent.backend, metrics: metricsServer.boundPort, readiness: readinessServer.boundPort, cni: config.cniSocket }, 'ambit-agent started');

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    void (async () => {
      const uninstall = await isUninstall(kube, config.namespace, config.daemonSet).catch((err: Error) => {
        // Unsure: keep everything. A leftover plugin fails closed and says why; a removed one lets pods escape.
        log.warn({ err }, 'cannot tell an uninstall from a restart; keeping the CNI plugin and the pod rules');
        return false;
      });
      log.info({ signal, uninstall }, uninstall ? 'stopping: the DaemonSet is gone, uninstalling from the node' : 'stopping: restart, the node keeps its capture');
      const hardStop = setTimeout(() => process.exit(0), config.drainMs + 5000);
      hardStop.unref();
      await agent.stop({ uninstall });
      metricsServer.close();
      readinessServer.close();
      log.flush();
      process.exit(0);
    })();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/**
 * The agent's own DaemonSet is gone or being deleted: this stop is an uninstall. `kubectl delete -f
 * daemonset/` also removes the agent's ServiceAccount and RBAC, usually before the DaemonSet's pods
 * stop, so 401 (our token's account is gone) and 403 (our Role is gone) mean uninstall too; only an
 * unreachable API server leaves the question open (the caller then keeps everything).
 */
async function isUninstall(kube: KubeConnection, namespace: string, name: string): Promise<boolean> {
  try {
    const ds = await kube.get(DAEMONSETS, namespace, name);
    return Boolean(ds.metadata.deletionTimestamp);
  } catch (err) {
    if (err instanceof ApiError && [401, 403, 404].includes(err.statusCode)) return true;
    throw err;
  }
}

main().catch((err: Error) => {
  process.stderr.write(`ambit-agent: cannot start: ${err.message}\n`);
  process.exit(1);
});
