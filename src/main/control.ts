/**
 * ambit-control's composition root: the only place that reads the environment. Parses the
 * configuration (every error at once), makes the logger, metrics and API connection, starts the
 * control plane and its admin endpoints (/metrics, /ready, /healthz), and stops cleanly on SIGTERM
 * so agents move to the other replica at once instead of waiting for keepalives.
 */
import { readFileSync } from 'node:fs';
import { parseControlConfig } from '../config/control.js';
import { ControlPlane } from '../control/server.js';
import { KubeConnection } from '../k8s/client.js';
import { createLogger } from '../telemetry/log.js';
import { ControlMetrics, startAdminServer } from '../telemetry/metrics.js';

async function main(): Promise<void> {
  const parsed = parseControlConfig(process.env, process.argv.slice(2));
  if (!parsed.ok) {
    process.stderr.write(`ambit-control: the configuration has ${parsed.errors.length} problem(s):\n${parsed.errors.map((e) => `  - ${e}\n`).join('')}`);
    process.exit(2);
  }
  const config = parsed.config;
  const log = createLogger({ name: 'ambit-control', level: config.logLevel });
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception; exiting');
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled promise rejection'));

  const kube = config.kubeconfig ? KubeConnection.fromKubeconfig(readFileSync(config.kubeconfig, 'utf8')) : KubeConnection.inCluster();
  const metrics = new ControlMetrics();
  log.info({ namespace: config.namespace, api: kube.server, trustDomain: config.trustDomain }, 'starting');
  const plane = await ControlPlane.start({ config, kube, log, metrics });
  const admin = await startAdminServer({ host: config.metricsAddress.host, port: config.metricsAddress.port, registry: metrics.registry, readiness: () => plane.readiness() });
  log.info({ push: plane.pushPort, metrics: admin.boundPort }, 'ambit-control started');

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    const hardStop = setTimeout(() => process.exit(0), 5000);
    hardStop.unref();
    void plane.stop(1000).finally(() => {
      admin.close();
      log.flush();
      process.exit(0);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: Error) => {
  process.stderr.write(`ambit-control: cannot start: ${err.message}\n`);
  process.exit(1);
});
