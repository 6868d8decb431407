/**
 * Test and measurement fixtures for the proxy worker pool (not used by the product): two enrolled
 * pods as network namespaces on a node bridge, with the real in-pod redirection, a real Ambit CA,
 * and the node config as the agent holds it (a NodeSnapshot, indexed in each worker by the agent's
 * own buildIndex — the same path as in production).
 *
 *   node netns <prefix>-node: bridge br0 <net>.1/24
 *     ├─ veth-a ── pod A <net>.10  shop/client-0, sa client (redirection: nft)
 *     └─ veth-b ── pod B <net>.11  shop/server-0, sa server (redirection: iptables-legacy), app on 8080
 *
 * Root only. `teardown()` removes everything it made, also after a failure half way.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import 'reflect-metadata';
import type { NodeSnapshot, Workload } from '../../api/types.js';
import { applyRedirection, DEFAULT_REDIRECT_CONFIG, removeRedirection, type Backend } from '../../agent/redirect/index.js';
import { connectSocket, createListenSocket, inNetns, openNetns, type NetnsHandle } from '../../sys/index.js';
import type { PodRef } from '../connection.js';
import { createTestPki, type TestPki } from '../hbone/testing.js';
import type { ModuleExport } from './protocol.js';

export const TD = 'cluster.local';
export const APP_PORT = 8080;
export const CONFIG = DEFAULT_REDIRECT_CONFIG;

/** The agent's view builder, as the agent names it to the pool. */
export const AGENT_VIEW: ModuleExport = { module: new URL('../../agent/mesh-config.js', import.meta.url).href, export: 'buildIndex' };

export interface TestPod {
  tag: 'a' | 'b';
  ip: string;
  ref: PodRef;
  backend: Backend;
  serviceAccount: string;
  path: string;
  ns: NetnsHandle;
}

export interface TwoPods {
  node: { path: string; ns: NetnsHandle };
  a: TestPod;
  b: TestPod;
  pki: TestPki;
  snapshot: NodeSnapshot;
  /** the app in B: writes `peer=<address>\n`, echoes, and answers a FIN with "|bye" (absent with `app: null`) */
  app?: net.Server;
  teardown(): Promise<void>;
}

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Builds the topology; `net` is the first three octets of a /24 no other test uses, e.g. "10.216.0". */
export async function twoPods(prefix: string, subnet: string, opts: { /** B's app on 8080; null: none (the caller runs one) */ app?: ((s: net.Socket) => void) | null } = {}): Promise<TwoPods> {
  const created: string[] = [];
  const handles: NetnsHandle[] = [];
  const redirected: string[] = [];
  const lockDir = mkdtempSync(join(tmpdir(), `${prefix}-lock-`));
  let app: net.Server | undefined;
  const teardown = async (): Promise<void> => {
    app?.close();
    for (const path of redirected) await removeRedirection(path, CONFIG, { lockDir }).catch(() => {});
    for (const h of handles) h.close();
    for (const name of created) spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    rmSync(lockDir, { recursive: true, force: true });
  };
  try {
    const addNs = (name: string): { path: string; ns: NetnsHandle } => {
      spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' }); // a leftover of an earlier run with this pid
      run('ip', ['netns', 'add', name]);
      created.push(name);
      run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
      const path = `/var/run/netns/${name}`;
      const ns = openNetns(path);
      handles.push(ns);
      return { path, ns };
    };
    const nodeName = `${prefix}-node`;
    const node = addNs(nodeName);
    run('ip', ['-n', nodeName, 'link', 'add', 'br0', 'type', 'bridge']);
    run('ip', ['-n', nodeName, 'addr', 'add', `${subnet}.1/24`, 'dev', 'br0']);
    run('ip', ['-n', nodeName, 'link', 'set', 'br0', 'up']);
    const pod = (tag: 'a' | 'b', host: number, name: string, serviceAccount: string, backend: Backend): TestPod => {
      const nsName = `${prefix}-${tag}`;
      const { path, ns } = addNs(nsName);
      const ip = `${subnet}.${host}`;
      run('ip', ['-n', nodeName, 'link', 'add', `veth-${tag}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', nsName]);
      run('ip', ['-n', nodeName, 'link', 'set', `veth-${tag}`, 'master', 'br0', 'up']);
      run('ip', ['-n', nsName, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
      run('ip', ['-n', nsName, 'link', 'set', 'eth0', 'up']);
      run('ip', ['-n', nsName, 'route', 'add', 'default', 'via', `${subnet}.1`]);
      return { tag, ip, ref: { namespace: 'shop', name, uid: `uid-${tag}`, ips: [ip] }, backend, serviceAccount, path, ns };
    };
    const a = pod('a', 10, 'client-0', 'client', 'nft');
    const b = pod('b', 11, 'server-0', 'server', 'iptables-legacy');
    for (const p of [a, b]) {
      await applyRedirection(p.path, { backend: p.backend, config: CONFIG }, { lockDir });
      redirected.push(p.path);
    }
    if (opts.app !== null) {
      app = net.createServer({ allowHalfOpen: true }, opts.app ?? echoApp);
      app.listen({ fd: inNetns(b.ns, () => createListenSocket({ family: 4, host: '0.0.0.0', port: APP_PORT })) });
      await once(app, 'listening');
    }
    const pki = await createTestPki(TD);
    return { node, a, b, pki, snapshot: snapshotOf([a, b], pki.roots), ...(app ? { app } : {}), teardown };
  } catch (err) {
    await teardown();
    throw err;
  }
}

/** B's app: says whom it sees, echoes, and after the client's FIN still sends "|bye". */
export function echoApp(s: net.Socket): void {
  s.on('error', () => {});
  s.write(`peer=${s.remoteAddress}\n`);
  s.on('data', (d: Buffer) => s.write(d));
  s.on('end', () => s.end('|bye'));
}

/** The node config the agent would hold for these pods (version "v1"). */
export function snapshotOf(pods: TestPod[], roots: string[]): NodeSnapshot {
  const workloads: Record<string, Workload> = {};
  for (const p of pods) {
    workloads[p.ref.uid] = {
      uid: p.ref.uid,
      name: p.ref.name,
      namespace: p.ref.namespace,
      node: 'node-1',
      ips: [p.ip],
      serviceAccount: p.serviceAccount,
      identity: `spiffe://${TD}/ns/${p.ref.namespace}/sa/${p.serviceAccount}`,
      enrolled: true,
      labels: { app: p.serviceAccount },
      services: [],
    };
  }
  return {
    node: 'node-1',
    version: 'v1',
    trust: { trustDomain: TD, rootNamespace: 'ambit-system', roots },
    workloads,
    peers: {},
    services: {},
    authorizationPolicies: {},
    peerAuthentications: {},
    routes: {},
  };
}

/** An app's connection from inside `ns`, without the proxy mark: the pod's rules capture it. */
export function appConnect(ns: NetnsHandle, host: string, port: number): net.Socket {
  return inNetns(ns, () => connectSocket({ family: 4, host, port, allowHalfOpen: true }));
}

export interface Outcome {
  text: string;
  /** the error code that ended it, if not a FIN */
  error?: string;
}

/** Connects from `ns` as an app, sends `payload`, half-closes, reads to the end (bounded). */
export function exchange(ns: NetnsHandle, host: string, port: number, payload: string, timeoutMs = 10_000): Promise<Outcome> {
  const sock = appConnect(ns, host, port);
  const chunks: Buffer[] = [];
  sock.on('data', (d: Buffer) => chunks.push(d));
  sock.once('connect', () => sock.end(payload));
  return new Promise((resolve) => {
    const done = (error?: string): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ text: Buffer.concat(chunks).toString('latin1'), ...(error ? { error } : {}) });
    };
    const timer = setTimeout(() => done('test timeout'), timeoutMs);
    sock.once('end', () => done());
    sock.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
  });
}
