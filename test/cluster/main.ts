/**
 * `npm run cluster -- <command>`: the local cluster as a background service.
 *
 *   up [--nodes N] [--name C]   start a detached daemon running the cluster, wait until every node
 *                               is Ready, print KUBECONFIG=<path>
 *   down [--name C]             stop the daemon by its pid and remove every trace (also after a crash)
 *   status [--name C]           the daemon, the nodes and the pods
 *   daemon ...                  (internal) the process that runs the cluster
 *
 * The daemon reports progress and the outcome of `up` over an IPC channel, then keeps logging to
 * /var/lib/ambit-cluster/<name>.log (removed by `down`).
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { appendFile, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_CLUSTER_NAME, LocalCluster, STATE_ROOT, defaultStateDir } from './cluster.js';
import { isRunning, run, sleep } from './runtime/proc.js';
import { ensureAmbitImage, ensureAppImages } from './apps/images.js';

const USAGE = 'usage: npm run cluster -- up [--nodes N] [--name C] | down [--name C] | status [--name C]';
const UP_TIMEOUT_MS = 20 * 60_000; // a cold machine builds the images first
const DOWN_TIMEOUT_MS = 90_000;

type DaemonMessage = { type: 'log'; line: string } | { type: 'ready'; kubeconfig: string; ms: number } | { type: 'failed'; error: string };

const logFile = (name: string): string => join(STATE_ROOT, `${name}.log`);

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { nodes: { type: 'string', default: '2' }, name: { type: 'string', default: DEFAULT_CLUSTER_NAME }, help: { type: 'boolean', short: 'h' } },
  });
  const name = values.name!;
  switch (values.help ? 'help' : positionals[0]) {
    case 'up':
      return up(name, Number(values.nodes));
    case 'down':
      return down(name);
    case 'status':
      return status(name);
    case 'daemon':
      return daemon(name, Number(values.nodes));
    default:
      console.error(USAGE);
      return values.help ? 0 : 2;
  }
}

async function liveDaemon(name: string): Promise<number | undefined> {
  const state = await LocalCluster.readState(defaultStateDir(name));
  return state && isRunning(state.pid) && (await isNodeProcess(state.pid)) ? state.pid : undefined;
}

async function isNodeProcess(pid: number): Promise<boolean> {
  const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
  return argv.some((a) => a.endsWith('main.js')) && argv.includes('daemon');
}

async function up(name: string, nodes: number): Promise<number> {
  if (!Number.isInteger(nodes) || nodes < 1) {
    console.error(`--nodes must be a positive integer\n${USAGE}`);
    return 2;
  }
  const running = await liveDaemon(name);
  if (running) {
    console.error(`cluster ${name} is already running (pid ${running}); run \`npm run cluster -- down --name ${name}\` first`);
    return 1;
  }
  await run(['mkdir', '-p', STATE_ROOT]);
  const out = openSync(logFile(name), 'w');
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), 'daemon', '--name', name, '--nodes', String(nodes)], {
    detached: true, // its own session: the cluster outlives this command and the terminal's Ctrl-C
    stdio: ['ignore', out, out, 'ipc'],
  });
  closeSync(out);
  const result = await new Promise<DaemonMessage | undefined>((resolve) => {
    const timer = setTimeout(() => resolve({ type: 'failed', error: `not up after ${UP_TIMEOUT_MS / 1000} s` }), UP_TIMEOUT_MS);
    child.on('message', (m: DaemonMessage) => {
      if (m.type === 'log') return console.error(m.line);
      clearTimeout(timer);
      resolve(m);
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ type: 'failed', error: `the cluster process exited (code ${code}); see ${logFile(name)}` });
    });
  });
  if (result?.type !== 'ready') {
    console.error(`cluster ${name} failed to come up: ${result?.type === 'failed' ? result.error : 'unknown'}`);
    await down(name, true);
    return 1;
  }
  child.disconnect();
  child.unref();
  console.error(`cluster ${name}: ${nodes} node(s) Ready in ${(result.ms / 1000).toFixed(1)} s (pid ${child.pid}; log ${logFile(name)})`);
  console.log(`KUBECONFIG=${result.kubeconfig}`);
  return 0;
}

async function down(name: string, quiet = false): Promise<number> {
  const pid = await liveDaemon(name);
  if (pid) {
    process.kill(pid, 'SIGTERM');
    const deadline = Date.now() + DOWN_TIMEOUT_MS;
    while (isRunning(pid) && Date.now() < deadline) await sleep(100);
    if (isRunning(pid)) {
      console.error(`cluster ${name}: pid ${pid} did not stop in ${DOWN_TIMEOUT_MS / 1000} s; killing it`);
      process.kill(pid, 'SIGKILL');
    }
  }
  // Whatever the daemon did not get to (or a crashed one left), gone now.
  await LocalCluster.cleanup(name);
  await rm(logFile(name), { force: true });
  await run(['rmdir', STATE_ROOT]).catch(() => undefined);
  if (!quiet) console.error(pid ? `cluster ${name} stopped and removed` : `cluster ${name} was not running; removed any leftovers`);
  return 0;
}

async function status(name: string): Promise<number> {
  const state = await LocalCluster.readState(defaultStateDir(name));
  if (!state) {
    console.log(`cluster ${name}: not running`);
    return 1;
  }
  const alive = isRunning(state.pid);
  console.log(`cluster ${name}: ${alive ? 'running' : 'NOT running (crashed? run down)'} pid ${state.pid}, since ${state.startedAt}`);
  console.log(`KUBECONFIG=${state.kubeconfig}`);
  console.log(`nodes: ${state.nodes.map((n) => `${n.name} ${n.ip} pods ${n.podCidr}`).join('; ')}`);
  if (!alive) return 1;
  for (const what of [['get', 'nodes', '-o', 'wide'], ['get', 'pods', '-A', '-o', 'wide']]) {
    console.log(await run(['kubectl', '--kubeconfig', state.kubeconfig, ...what], { timeoutMs: 30_000 }).catch((e: Error) => e.message));
  }
  return 0;
}

/** The cluster process: up, report, serve until SIGTERM/SIGINT, down. */
async function daemon(name: string, nodes: number): Promise<number> {
  const send = (m: DaemonMessage) => {
    if (process.connected) process.send?.(m);
  };
  const log = (line: string) => {
    console.log(`${new Date().toISOString()} ${line}`);
    send({ type: 'log', line });
  };
  let cluster: LocalCluster;
  try {
    const toFile = (s: string) => console.log(`${new Date().toISOString()} ${s}`);
    // the demo apps and Ambit's own image (built from the repository's Dockerfile), so that
    // `kubectl apply -f daemonset/` works on this cluster as on a real one
    const images = async () => [...(await ensureAppImages()), await ensureAmbitImage()];
    cluster = await LocalCluster.up({ name, nodes, images, log: (s) => (process.connected ? log(s) : toFile(s)), serverLog: toFile });
  } catch (err) {
    send({ type: 'failed', error: (err as Error).message });
    console.error(err);
    return 1;
  }
  send({ type: 'ready', kubeconfig: cluster.kubeconfigPath, ms: cluster.timings.total });
  if (process.connected) process.disconnect();
  await new Promise<void>((resolve) => {
    for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.once(sig, () => resolve());
  });
  console.log(`${new Date().toISOString()} stopping`);
  await cluster.down();
  await appendFile(logFile(name), `${new Date().toISOString()} stopped\n`).catch(() => undefined);
  return 0;
}

process.exitCode = await main(process.argv.slice(2)).catch((err: Error) => {
  console.error(err.stack ?? err.message);
  return 1;
});
// Nothing left over (a kubectl child, a timer) may keep a finished command alive; the daemon
// returns from main only after its cluster is down.
process.exit(process.exitCode);
