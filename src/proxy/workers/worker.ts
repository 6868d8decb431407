/**
 * One proxy worker thread (started by pool.ts, never imported). It is a small copy of the agent's
 * data path: its own MeshProxy (HBONE client pool, per-pod HBONE servers, policy, Istio metrics in
 * its own prom-client Registry) and, per enrolled pod, its own InPodProxy with SO_REUSEPORT on
 * every listener, so the kernel spreads the pod's new connections over all workers.
 *
 * Why threads: `inNetns` (setns) moves only the calling OS thread, and each worker is one, so a
 * worker makes its own sockets inside the pod netns (src/sys resolves "home" through
 * /proc/thread-self). koffi loads per thread.
 *
 * What it knows comes from messages (protocol.ts): the node's config, which it turns into a
 * MeshView with the builder the agent named (`init.view`, e.g. mesh-config.js's buildIndex — the
 * proxy never imports the agent), and each pod's credentials (PushedCredentials). It logs with
 * pino to its own file descriptor (stdout by default) with `worker: <index>` on every line.
 *
 * An uncaught error ends the thread; the pool logs it and starts a new worker, which re-opens the
 * pods. Connections the dead worker carried are gone; the other workers' listeners keep serving.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Registry } from 'prom-client';
import type { PodMeshHandlers } from '../mesh/node.js';
import { MeshProxy } from '../mesh/node.js';
import type { MeshView } from '../mesh/view.js';
import { addStats, emptyStats, InPodProxy, type InPodStats } from '../inpod.js';
import { bufferedDestination, createLogger } from '../../telemetry/log.js';
import { captureCpuProfile } from '../../telemetry/profile.js';
import { PushedCredentials } from './credentials.js';
import { fromWire, podKey, retireStats, type FromWorker, type Request, type ToWorker, type WorkerInit } from './protocol.js';

const init = workerData as WorkerInit;
const port = parentPort!;
const post = (m: FromWorker): void => port.postMessage(m);

const log = createLogger({
  name: init.log.name,
  level: init.log.level as Parameters<typeof createLogger>[0]['level'],
  destination: bufferedDestination(init.log.fd),
}).child({ worker: init.index });

/** The newest view built from a pushed config; before the first, the mesh knows nothing (mTLS fails closed). */
let current: MeshView | undefined;
let buildView: (state: unknown) => MeshView;
try {
  const mod = (await import(init.view.module)) as Record<string, unknown>;
  const fn = mod[init.view.export];
  if (typeof fn !== 'function') throw new Error(`${init.view.module} has no function ${init.view.export}`);
  buildView = fn as (state: unknown) => MeshView;
} catch (err) {
  post({ type: 'fatal', error: `proxy worker ${init.index} cannot load its view builder: ${(err as Error).message}` });
  process.exit(1);
}

const EMPTY_DNS = new Map() as ReturnType<MeshView['dnsIndex']>;
/** on-demand lookups waiting for the main thread */
const resolving = new Map<number, (found: boolean) => void>();
let nextResolve = 1;
const view: MeshView = {
  workloadByIp: (ip) => current?.workloadByIp(ip),
  serviceByVip: (ip, p) => current?.serviceByVip(ip, p),
  serviceByEndpoint: (ip, p) => current?.serviceByEndpoint(ip, p),
  authorizationPolicies: () => current?.authorizationPolicies() ?? [],
  peerAuthentications: () => current?.peerAuthentications() ?? [],
  rootNamespace: () => current?.rootNamespace() ?? 'ambit-system',
  trustRoots: () => current?.trustRoots() ?? [],
  dnsIndex: () => current?.dnsIndex() ?? EMPTY_DNS,
  resolve: (address) =>
    new Promise<boolean>((resolve) => {
      const rid = nextResolve++;
      resolving.set(rid, resolve);
      post({ type: 'resolve', rid, address });
    }),
};

const credentials = new PushedCredentials();
const registry = new Registry();
const mesh = new MeshProxy({ view, credentials, log: log.child({ component: 'proxy' }), registry, ...init.mesh });

interface Pod {
  proxy: InPodProxy;
  handlers: PodMeshHandlers;
}
const pods = new Map<string, Pod>();
/** opens in progress, so a second open of the same pod waits for the first */
const opening = new Map<string, Promise<void>>();
/** stats of pods closed in this worker, so its counters never go down */
let retired: InPodStats = emptyStats();

function stats(): InPodStats {
  let total = retired;
  for (const p of pods.values()) total = addStats(total, p.proxy.stats());
  return total;
}

async function open(m: Extract<ToWorker, { type: 'open' }>): Promise<null> {
  const key = podKey(m.pod);
  const inProgress = opening.get(key);
  if (inProgress) await inProgress;
  if (pods.has(key)) return null; // a restarted worker re-opening a pod the pool also just opened
  const handlers = mesh.forPod(m.pod);
  const upstream = m.upstream;
  const opened = InPodProxy.open(m.netns, m.pod, {
    config: init.config,
    log: log.child({ component: 'proxy', pod: `${m.pod.namespace}/${m.pod.name}` }),
    dnsUpstream: () => upstream,
    handlers: handlers.handlers,
    dnsAnswer: handlers.dnsAnswer,
    reusePort: true,
    ...(init.timeouts ? { timeouts: init.timeouts } : {}),
  }).then(
    (proxy) => void pods.set(key, { proxy, handlers }),
    (err: Error) => {
      void handlers.close(0);
      throw err;
    },
  );
  opening.set(key, opened);
  try {
    await opened;
  } finally {
    opening.delete(key);
  }
  return null;
}

async function close(key: string): Promise<null> {
  await opening.get(key)?.catch(() => undefined);
  const pod = pods.get(key);
  if (!pod) return null;
  pods.delete(key);
  pod.proxy.close();
  // Open tunnels run on (un-enrolment must not cut connections); the pod's HBONE server takes no new ones.
  void pod.handlers.close(3600_000);
  // Established connections keep running after close(); their bytes count once they end.
  void pod.proxy.idle().then(() => (retired = addStats(retired, pod.proxy.stats())));
  return null;
}

/** Stop accepting everywhere, let connections finish for `drainMs`, then cut the rest. */
async function drain(drainMs: number): Promise<{ open: number; left: number }> {
  const proxies = [...pods.values()].map((p) => p.proxy);
  for (const p of proxies) p.close();
  const openNow = (): number => proxies.reduce((n, p) => n + p.activeConnections, 0);
  const before = openNow();
  // The HBONE client at once, in parallel: its idle pooled sessions close now (they hold other
  // pods' :15008 connections open, here and on other nodes), tunnels in use get the drain time.
  const client = mesh.close(drainMs);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all(proxies.map((p) => p.idle())), new Promise<void>((resolve) => (timer = setTimeout(resolve, drainMs)))]);
  clearTimeout(timer);
  const left = openNow();
  await client;
  for (const p of proxies) p.destroy();
  retired = retireStats(stats());
  pods.clear();
  credentials.close();
  log.flush(); // the access-log lines of the drained connections, before the pool ends this thread
  return { open: before, left };
}

async function answer(m: Request): Promise<unknown> {
  switch (m.type) {
    case 'open':
      return open(m);
    case 'close':
      return close(m.key);
    case 'stats':
      return stats();
    case 'metrics':
      return registry.getMetricsAsJSON();
    case 'drain':
      return drain(m.drainMs);
    case 'profile':
      return captureCpuProfile(m.ms);
  }
}

port.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'resolved': {
      const done = resolving.get(m.rid);
      resolving.delete(m.rid);
      done?.(m.found);
      break;
    }
    case 'config':
      try {
        current = buildView(m.state);
      } catch (err) {
        // Keep serving with the last view: a config the builder rejects must not take the data path down.
        log.error({ err }, 'cannot build the mesh view from the config the agent pushed; keeping the previous one (a bug: please report it)');
      }
      return;
    case 'credentials':
      credentials.set(m.uid, fromWire(m.credentials));
      return;
    case 'released':
      credentials.release(m.uid);
      return;
    case 'credentials-failed':
      credentials.failed(m.uid, m.why);
      return;
    default:
      answer(m).then(
        (value) => post({ type: 'reply', id: m.id, ok: true, value: value ?? null }),
        (err: Error) => post({ type: 'reply', id: m.id, ok: false, error: err?.message ?? String(err) }),
      );
  }
});
log.debug('proxy worker started');
