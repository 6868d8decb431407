// ambit-cni as the runtime runs it: a child process (node dist/src/main/cni.js) with crafted
// CNI_* environment and stdin, talking to the real agent-side server on a unix socket in a temp
// dir. Covers VERSION/ADD/DEL/CHECK, prevResult passthrough and conversion, that ADD returns only
// once enrolment settles, and every error path with its exit status and error JSON.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CniPodRequest, EnrolDecision } from '../../src/api/cni.js';
import { CniServer, CniTryAgain } from '../../src/agent/cni-server.js';

const PLUGIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'main', 'cni.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  /** when the process exited (Date.now()) */
  exitedAt: number;
}

function runPlugin(env: Record<string, string | undefined>, stdin: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const clean = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined)) as Record<string, string>;
    const p = spawn(process.execPath, [PLUGIN], { env: { PATH: '/usr/bin:/bin', ...clean }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr, exitedAt: Date.now() }));
    p.stdin.end(stdin);
  });
}

let dir: string;
let socketPath: string;
let server: CniServer | undefined;
const calls: Array<{ op: string; req: CniPodRequest }> = [];
/** Per pod name: how the stub agent answers ADD. */
const behaviour = new Map<string, () => Promise<EnrolDecision>>();

async function startServer(): Promise<void> {
  server = await CniServer.start({
    socketPath,
    handlers: {
      enrol: async (req) => {
        calls.push({ op: 'add', req });
        return (behaviour.get(req.pod.name) ?? (async () => (req.pod.namespace === 'mesh' ? 'enrolled' : 'not-enrolled')))();
      },
      release: async (req) => void calls.push({ op: 'del', req }),
      check: async (req) => {
        calls.push({ op: 'check', req });
        return req.pod.name === 'drifted' ? { ok: false, problem: 'the redirection rules are gone' } : { ok: true };
      },
    },
  });
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ambit-cni-proc-'));
  socketPath = join(dir, 'cni.sock');
  await startServer();
});

after(async () => {
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

const PREV = {
  cniVersion: '1.0.0',
  interfaces: [{ name: 'ambr0', mac: '0a:58:0a:f4:01:01' }, { name: 'veth3e1f', mac: '6e:1c:2b:00:00:01' }, { name: 'eth0', mac: '0a:58:0a:f4:01:07', sandbox: '/var/run/netns/cni-7' }],
  ips: [{ address: '10.244.1.7/24', gateway: '10.244.1.1', interface: 2 }],
  routes: [{ dst: '0.0.0.0/0' }],
  dns: {},
};

const env = (o: Record<string, string | undefined> = {}) => ({
  CNI_COMMAND: 'ADD',
  CNI_CONTAINERID: '5c2d1e0f9a8b7c6d',
  CNI_NETNS: '/var/run/netns/cni-7',
  CNI_IFNAME: 'eth0',
  CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=mesh;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=5c2d1e0f9a8b7c6d;K8S_POD_UID=8e4f',
  CNI_PATH: '/opt/cni/bin',
  ...o,
});
const conf = (o: Record<string, unknown> = {}) => JSON.stringify({ cniVersion: '1.0.0', name: 'pods', type: 'ambit-cni', agentSocket: socketPath, prevResult: PREV, ...o });
const podEnv = (name: string, namespace = 'mesh') => env({ CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${namespace};K8S_POD_NAME=${name};K8S_POD_UID=uid-${name}` });

test('VERSION', async () => {
  for (const [stdin, version] of [['{"cniVersion":"1.0.0"}', '1.0.0'], ['{"cniVersion":"0.3.1"}', '0.3.1'], ['', '1.0.0']] as const) {
    const r = await runPlugin({ CNI_COMMAND: 'VERSION' }, stdin);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { cniVersion: version, supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0'] });
  }
});

test('ADD of an enrolled pod: the agent gets the pod, netns and IPs; prevResult comes back unchanged', async () => {
  calls.length = 0;
  const r = await runPlugin(env(), conf());
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), PREV);
  assert.deepEqual(calls, [
    { op: 'add', req: { pod: { namespace: 'mesh', name: 'web-0', uid: '8e4f' }, containerId: '5c2d1e0f9a8b7c6d', netns: '/var/run/netns/cni-7', ifname: 'eth0', ips: ['10.244.1.7'], network: 'pods' } },
  ]);
  assert.match(r.stderr, /ADD mesh\/web-0 \(sandbox 5c2d1e0f9a8b\): enrolled/);
});

test('ADD in each supported version prints prevResult in that version\'s shape', async () => {
  const v04 = { ...PREV, cniVersion: '0.4.0', ips: [{ version: '4', address: '10.244.1.7/24', gateway: '10.244.1.1', interface: 2 }] };
  const cases: Array<[string, object, object]> = [
    ['0.4.0', v04, v04], // same version: unchanged
    ['0.3.1', { ...v04, cniVersion: '0.3.1' }, { ...v04, cniVersion: '0.3.1' }],
    ['0.3.0', PREV, { ...v04, cniVersion: '0.3.0' }], // a 1.0.0 prevResult converted down
    ['1.0.0', v04, PREV], // and up
  ];
  for (const [version, prev, want] of cases) {
    const r = await runPlugin(podEnv('web-1', 'plain'), conf({ cniVersion: version, prevResult: prev }));
    assert.equal(r.code, 0, r.stdout);
    assert.deepEqual(JSON.parse(r.stdout), want, version);
  }
});

test('ADD returns only after the agent finishes enrolling the pod', async () => {
  let release!: (d: EnrolDecision) => void;
  let releasedAt = 0;
  behaviour.set('slow', () => new Promise((r) => (release = r)));
  const running = runPlugin(podEnv('slow'), conf());
  // the plugin waits as long as enrolment takes
  const raced = await Promise.race([running.then(() => 'exited'), new Promise((r) => setTimeout(() => r('waiting'), 1500))]);
  assert.equal(raced, 'waiting');
  releasedAt = Date.now();
  release('enrolled');
  const r = await running;
  assert.equal(r.code, 0);
  assert.ok(r.exitedAt >= releasedAt);
  assert.deepEqual(JSON.parse(r.stdout), PREV);
  behaviour.delete('slow');
});

test('ADD failures of the agent reach the runtime as CNI errors with exit 1', async () => {
  behaviour.set('later', () => Promise.reject(new CniTryAgain('the agent has not synced namespace mesh yet')));
  behaviour.set('broken', () => Promise.reject(new Error('iptables-restore: line 3 failed')));
  behaviour.set('stuck', () => new Promise(() => undefined));
  const cases: Array<[string, Record<string, unknown>, number, RegExp]> = [
    ['later', {}, 11, /ambit-agent cannot set up the pod yet: the agent has not synced namespace mesh yet/],
    ['broken', {}, 100, /ambit-agent failed to set up the pod: iptables-restore: line 3 failed/],
    ['stuck', { timeoutMs: 300 }, 11, /did not answer add within 300 ms/],
  ];
  for (const [name, extra, code, msg] of cases) {
    const r = await runPlugin(podEnv(name), conf(extra));
    assert.equal(r.code, 1, name);
    const e = JSON.parse(r.stdout);
    assert.equal(e.cniVersion, '1.0.0');
    assert.equal(e.code, code, r.stdout);
    assert.match(e.msg, msg);
  }
});

test('ADD with no agent fails closed with code 11 and says what to do', async () => {
  const stale = join(dir, 'not-a-socket');
  await writeFile(stale, '');
  for (const agentSocket of [join(dir, 'missing.sock'), stale]) {
    const r = await runPlugin(env(), conf({ agentSocket }));
    assert.equal(r.code, 1);
    const e = JSON.parse(r.stdout);
    assert.equal(e.code, 11);
    assert.match(e.msg, new RegExp(`^ambit-agent is not running on this node \\(nothing answers on ${agentSocket}\\)`));
    assert.match(e.details, /connect: (ENOENT|ECONNREFUSED)/);
  }
});

test('pods that are not the mesh\'s business pass through without the agent, even when it is down', async () => {
  calls.length = 0;
  const down = join(dir, 'missing.sock');
  const notPod = await runPlugin(env({ CNI_ARGS: undefined }), conf({ agentSocket: down }));
  const excluded = await runPlugin(podEnv('coredns-0', 'kube-system'), conf({ agentSocket: down, excludeNamespaces: ['kube-system'] }));
  for (const r of [notPod, excluded]) {
    assert.equal(r.code, 0, r.stdout);
    assert.deepEqual(JSON.parse(r.stdout), PREV);
  }
  assert.equal(calls.length, 0);
});

test('DEL tells the agent and succeeds, also without prevResult, netns or agent', async () => {
  calls.length = 0;
  let r = await runPlugin(env({ CNI_COMMAND: 'DEL' }), conf());
  assert.deepEqual([r.code, r.stdout], [0, '']);
  r = await runPlugin(env({ CNI_COMMAND: 'DEL', CNI_NETNS: undefined }), conf({ prevResult: undefined }));
  assert.deepEqual([r.code, r.stdout], [0, '']);
  assert.deepEqual(calls.map((c) => [c.op, c.req.netns, c.req.ips]), [['del', '/var/run/netns/cni-7', ['10.244.1.7']], ['del', '', []]]);
  r = await runPlugin(env({ CNI_COMMAND: 'DEL' }), conf({ agentSocket: join(dir, 'missing.sock') }));
  assert.deepEqual([r.code, r.stdout], [0, '']);
  assert.match(r.stderr, /the agent was not told/);
});

test('CHECK: silent success, or the agent\'s problem as code 102', async () => {
  let r = await runPlugin(env({ CNI_COMMAND: 'CHECK' }), conf());
  assert.deepEqual([r.code, r.stdout], [0, '']);
  r = await runPlugin({ ...podEnv('drifted'), CNI_COMMAND: 'CHECK' }, conf({ cniVersion: '0.4.0' }));
  assert.equal(r.code, 1);
  assert.deepEqual(JSON.parse(r.stdout), { cniVersion: '0.4.0', code: 102, msg: 'ambit-agent reports mesh/drifted is not as ADD left it', details: 'the redirection rules are gone' });
});

test('bad input: the spec\'s error JSON, exit 1, and the agent is never asked', async () => {
  calls.length = 0;
  const full = conf();
  const cases: Array<{ what: string; env: Record<string, string | undefined>; stdin: string; code: number; version?: string }> = [
    { what: 'empty stdin', env: env(), stdin: '', code: 6 },
    { what: 'truncated stdin', env: env(), stdin: full.slice(0, 40), code: 6 },
    { what: 'binary garbage', env: env(), stdin: '\u0000\u0001\u0002', code: 6 },
    { what: 'unknown version', env: env(), stdin: conf({ cniVersion: '2.0.0' }), code: 1, version: '2.0.0' },
    { what: 'old version', env: env(), stdin: conf({ cniVersion: '0.2.0' }), code: 1, version: '0.2.0' },
    { what: 'CHECK on 0.3.1', env: env({ CNI_COMMAND: 'CHECK' }), stdin: conf({ cniVersion: '0.3.1' }), code: 1, version: '0.3.1' },
    { what: 'ipam on a chained plugin', env: env(), stdin: conf({ ipam: { type: 'host-local' } }), code: 2 },
    { what: 'no prevResult on ADD', env: env(), stdin: conf({ prevResult: undefined }), code: 7 },
    { what: 'relative agentSocket', env: env(), stdin: conf({ agentSocket: 'cni.sock' }), code: 7 },
    { what: 'no CNI_COMMAND', env: env({ CNI_COMMAND: undefined }), stdin: full, code: 4 },
    { what: 'unknown CNI_COMMAND', env: env({ CNI_COMMAND: 'GC' }), stdin: full, code: 4 },
    { what: 'no CNI_CONTAINERID', env: env({ CNI_CONTAINERID: undefined }), stdin: full, code: 4 },
    { what: 'no CNI_NETNS on ADD', env: env({ CNI_NETNS: undefined }), stdin: full, code: 4 },
    { what: 'no CNI_IFNAME', env: env({ CNI_IFNAME: undefined }), stdin: full, code: 4 },
    { what: 'malformed CNI_ARGS', env: env({ CNI_ARGS: 'K8S_POD_NAME=a;oops' }), stdin: full, code: 4 },
  ];
  for (const c of cases) {
    const r = await runPlugin(c.env, c.stdin);
    assert.equal(r.code, 1, c.what);
    const e = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(e).slice(0, 3), ['cniVersion', 'code', 'msg'], c.what);
    assert.equal(e.code, c.code, `${c.what}: ${r.stdout}`);
    assert.equal(e.cniVersion, c.version ?? '1.0.0', c.what);
    assert.match(r.stderr, /ambit-cni: .* failed \(code \d+\)/, c.what);
  }
  assert.equal(calls.length, 0, 'no request reached the agent');
});

test('the plugin works again once the agent is back', async () => {
  await server!.close();
  server = undefined;
  const down = await runPlugin(env(), conf());
  assert.equal(JSON.parse(down.stdout).code, 11);
  await startServer();
  const up = await runPlugin(env(), conf());
  assert.equal(up.code, 0, up.stdout);
});
