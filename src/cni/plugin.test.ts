// runPlugin with in-memory handlers: what each command prints, when the handlers are called, what
// they are told, how each handler failure reaches the runtime, and the outcome reported for metrics.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { CniCheckReply, CniPodRequest, EnrolDecision } from '../api/cni.js';
import { CniTryAgain, outcomeOfCode, runPlugin, type CniHandlers } from './plugin.js';
import { CniCode, type Env } from './spec.js';

interface FakeAgent {
  calls: Array<{ op: string; req: CniPodRequest }>;
  handlers: CniHandlers;
}

function fakeAgent(behaviour: { add?: () => Promise<EnrolDecision>; del?: () => Promise<void>; check?: () => Promise<CniCheckReply> } = {}): FakeAgent {
  const calls: FakeAgent['calls'] = [];
  return {
    calls,
    handlers: {
      enrol: async (req) => {
        calls.push({ op: 'add', req });
        return (behaviour.add ?? (async () => 'enrolled' as const))();
      },
      release: async (req) => {
        calls.push({ op: 'del', req });
        await behaviour.del?.();
      },
      check: async (req) => {
        calls.push({ op: 'check', req });
        return (behaviour.check ?? (async () => ({ ok: true })))();
      },
    },
  };
}

const PREV = {
  cniVersion: '1.0.0',
  interfaces: [{ name: 'ambr0', mac: '0a:00:00:00:00:01' }, { name: 'veth9', mac: '0a:00:00:00:00:02' }, { name: 'eth0', mac: '0a:00:00:00:00:03', sandbox: '/var/run/netns/cni-7' }],
  ips: [{ address: '10.244.1.7/24', gateway: '10.244.1.1', interface: 2 }],
  routes: [{ dst: '0.0.0.0/0' }],
  dns: {},
};

const ENV: Env = {
  CNI_COMMAND: 'ADD',
  CNI_CONTAINERID: '3f2a9c0d5e6b7a8f',
  CNI_NETNS: '/var/run/netns/cni-7',
  CNI_IFNAME: 'eth0',
  CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=3f2a9c0d5e6b7a8f;K8S_POD_UID=9d1c',
  CNI_PATH: '/opt/cni/bin',
};

const stdin = (o: Record<string, unknown> = {}): string =>
  JSON.stringify({ cniVersion: '1.0.0', name: 'pods', type: 'ambit-cni', agentSocket: '/run/test/cni.sock', timeoutMs: 1234, prevResult: PREV, ...o });

test('ADD asks the agent about the pod and prints prevResult unchanged', async () => {
  const agent = fakeAgent();
  const out = await runPlugin({ env: ENV, stdin: stdin() }, agent.handlers);
  assert.equal(out.exitCode, 0);
  assert.deepEqual(JSON.parse(out.stdout), PREV);
  assert.equal(agent.calls.length, 1);
  assert.deepEqual(out.outcome, 'enrolled');
  assert.equal(out.pod, 'shop/web-0');
  assert.deepEqual(agent.calls[0], {
    op: 'add',
    req: { pod: { namespace: 'shop', name: 'web-0', uid: '9d1c' }, containerId: '3f2a9c0d5e6b7a8f', netns: '/var/run/netns/cni-7', ifname: 'eth0', ips: ['10.244.1.7'], network: 'pods' },
  });
  assert.match(out.stderr, /ADD shop\/web-0 \(sandbox 3f2a9c0d5e6b\): enrolled in \d+ ms/);
});

test('ADD prints prevResult in the configuration\'s version', async () => {
  const out = await runPlugin({ env: ENV, stdin: stdin({ cniVersion: '0.4.0' }) }, fakeAgent().handlers);
  assert.equal(out.exitCode, 0);
  const r = JSON.parse(out.stdout);
  assert.equal(r.cniVersion, '0.4.0');
  assert.deepEqual(r.ips, [{ version: '4', address: '10.244.1.7/24', gateway: '10.244.1.1', interface: 2 }]);
  assert.deepEqual(r.interfaces, PREV.interfaces);
});

test('ADD passes through without asking for non-pods and excluded namespaces', async () => {
  for (const [env, conf, why] of [
    [{ ...ENV, CNI_ARGS: '' }, {}, /not a Kubernetes pod/],
    [ENV, { excludeNamespaces: ['kube-system', 'shop'] }, /namespace shop is excluded/],
  ] as const) {
    const agent = fakeAgent();
    const out = await runPlugin({ env, stdin: stdin(conf) }, agent.handlers);
    assert.equal(out.exitCode, 0);
    assert.deepEqual(JSON.parse(out.stdout), PREV);
    assert.equal(agent.calls.length, 0);
    assert.match(out.stderr, why);
    assert.equal(out.outcome, 'passed-through');
  }
});

test('ADD: each handler failure becomes the spec\'s error JSON with its code', async () => {
  const cases: Array<[() => Promise<EnrolDecision>, number, string, string]> = [
    [() => Promise.reject(new CniTryAgain('namespace shop not synced yet')), 11, 'ambit-agent cannot set up the pod yet: namespace shop not synced yet', 'try-again'],
    [() => Promise.reject(new Error('iptables-restore exited 1')), 100, 'ambit-agent failed to set up the pod: iptables-restore exited 1', 'failed'],
    [async () => 'maybe' as never, 100, 'ambit-agent failed to set up the pod: enrol returned "maybe"', 'failed'],
  ];
  for (const [add, code, msg, outcome] of cases) {
    const out = await runPlugin({ env: ENV, stdin: stdin({ cniVersion: '0.4.0' }) }, fakeAgent({ add }).handlers);
    assert.equal(out.exitCode, 1);
    assert.deepEqual(JSON.parse(out.stdout), { cniVersion: '0.4.0', code, msg });
    assert.deepEqual([out.outcome, out.code, out.pod], [outcome, code, 'shop/web-0']);
    assert.match(out.stderr, new RegExp(`ADD failed \\(code ${code}\\)`));
  }
});

test('invalid input fails before the agent is asked', async () => {
  const cases: Array<{ env?: Env; stdin: string; code: number }> = [
    { stdin: '{"cniVersion": "1.0.0", "name"', code: 6 },
    { stdin: '', code: 6 },
    { stdin: stdin({ cniVersion: '0.2.0' }), code: 1 },
    { stdin: stdin({ ipam: {} }), code: 2 },
    { stdin: stdin({ prevResult: undefined }), code: 7 },
    { env: { ...ENV, CNI_NETNS: undefined }, stdin: stdin(), code: 4 },
    { env: { ...ENV, CNI_COMMAND: 'STATUS' }, stdin: stdin(), code: 4 },
    { env: { ...ENV, CNI_ARGS: 'K8S_POD_NAME' }, stdin: stdin(), code: 4 },
  ];
  for (const c of cases) {
    const agent = fakeAgent();
    const out = await runPlugin({ env: c.env ?? ENV, stdin: c.stdin }, agent.handlers);
    assert.equal(out.exitCode, 1, c.stdin);
    const err = JSON.parse(out.stdout);
    assert.equal(err.code, c.code, out.stdout);
    assert.equal(typeof err.msg, 'string');
    assert.equal(agent.calls.length, 0);
    assert.equal(out.outcome, 'bad-request');
  }
});

test('VERSION needs nothing but CNI_COMMAND', async () => {
  const out = await runPlugin({ env: { CNI_COMMAND: 'VERSION' }, stdin: '{"cniVersion":"1.0.0"}' }, fakeAgent().handlers);
  assert.equal(out.exitCode, 0);
  assert.deepEqual(JSON.parse(out.stdout), { cniVersion: '1.0.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0'] });
});

test('DEL tells the agent, prints nothing, and succeeds even when the agent is away', async () => {
  const agent = fakeAgent();
  const del = { ...ENV, CNI_COMMAND: 'DEL' };
  let out = await runPlugin({ env: del, stdin: stdin() }, agent.handlers);
  assert.deepEqual([out.exitCode, out.stdout], [0, '']);
  assert.equal(agent.calls[0]!.op, 'del');
  assert.deepEqual(agent.calls[0]!.req.ips, ['10.244.1.7']);
  // no prevResult, no netns (a repeated DEL after the sandbox is gone)
  out = await runPlugin({ env: { ...del, CNI_NETNS: undefined }, stdin: stdin({ prevResult: undefined }) }, agent.handlers);
  assert.deepEqual([out.exitCode, out.stdout], [0, '']);
  assert.deepEqual(agent.calls[1]!.req.ips, []);
  assert.equal(agent.calls[1]!.req.netns, '');
  const failing = fakeAgent({ del: () => Promise.reject(new Error('netns gone')) });
  out = await runPlugin({ env: del, stdin: stdin() }, failing.handlers);
  assert.deepEqual([out.exitCode, out.stdout, out.outcome], [0, '', 'ok']);
  assert.match(out.stderr, /could not release the pod \(netns gone\).*reconciles/);
  // handlers without release: nothing to do
  out = await runPlugin({ env: del, stdin: stdin() }, { enrol: async () => 'enrolled' });
  assert.deepEqual([out.exitCode, out.stdout], [0, '']);
  // invalid input still fails DEL
  out = await runPlugin({ env: del, stdin: '{' }, agent.handlers);
  assert.equal(out.exitCode, 1);
});

test('CHECK: nothing on success, code 102 with the agent\'s problem, 11 when the agent is away', async () => {
  const check = { ...ENV, CNI_COMMAND: 'CHECK' };
  let out = await runPlugin({ env: check, stdin: stdin() }, fakeAgent().handlers);
  assert.deepEqual([out.exitCode, out.stdout], [0, '']);
  out = await runPlugin({ env: check, stdin: stdin() }, fakeAgent({ check: async () => ({ ok: false, problem: 'redirection rules missing' }) }).handlers);
  assert.equal(out.exitCode, 1);
  assert.deepEqual(JSON.parse(out.stdout), { cniVersion: '1.0.0', code: 102, msg: 'ambit-agent reports shop/web-0 is not as ADD left it', details: 'redirection rules missing' });
  out = await runPlugin({ env: check, stdin: stdin() }, fakeAgent({ check: () => Promise.reject(new CniTryAgain('syncing')) }).handlers);
  assert.equal(JSON.parse(out.stdout).code, 11);
  out = await runPlugin({ env: check, stdin: stdin() }, fakeAgent({ check: () => Promise.reject(new Error('boom')) }).handlers);
  assert.deepEqual([JSON.parse(out.stdout).code, out.outcome], [102, 'failed']);
  // handlers without check: ok
  out = await runPlugin({ env: check, stdin: stdin() }, { enrol: async () => 'enrolled' });
  assert.deepEqual([out.exitCode, out.stdout], [0, '']);
});

test('outcomeOfCode: invalid input, retry, failure', () => {
  const cases: Array<[number, string]> = [
    [CniCode.IncompatibleVersion, 'bad-request'],
    [CniCode.UnsupportedField, 'bad-request'],
    [CniCode.InvalidEnvironment, 'bad-request'],
    [CniCode.DecodingFailure, 'bad-request'],
    [CniCode.InvalidConfig, 'bad-request'],
    [CniCode.TryAgainLater, 'try-again'],
    [CniCode.IoFailure, 'failed'],
    [CniCode.EnrolmentFailed, 'failed'],
    [CniCode.CheckFailed, 'failed'],
  ];
  for (const [code, want] of cases) assert.equal(outcomeOfCode(code as never), want, String(code));
});
