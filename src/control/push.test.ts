/**
 * The push server and the client library together, in process, over real gRPC + TLS on loopback:
 * many subscribers, fan-out only to interested nodes, ACK/NACK, resume (also on another replica),
 * slow consumers, malformed input, and certificate signing.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { fixtureSnapshot, fixtureWorkload } from '../api/fixtures.js';
import { ControlClient, ControlError, type ConfigUpdate } from '../api/client.js';
import { encodeAgentMessage } from '../api/wire.js';
import type { NodeSnapshot as Snapshot, ResourceError } from '../api/types.js';
import { CertificateAuthority, createKeyAndCsr, generateRootCa } from '../identity/ca.js';
import { DEFAULT_AGENT_SERVICE_ACCOUNT, EXTRA_POD_NAME, EXTRA_POD_UID, type AuthzLookups, type PodFacts, type TokenReviewStatus } from './authz-csr.js';
import { PushHub } from './push-hub.js';
import { PushServer } from './push.js';

const TD = 'cluster.local';
const NODES = Array.from({ length: 10 }, (_, i) => `node-${i}`);

// -- a fake cluster: agent pods on every node, workload pods, tokens ---------------------------------

const pods = new Map<string, PodFacts>(); // ns/name
const podsByUid = new Map<string, PodFacts>();
function addPod(ns: string, name: string, uid: string, node: string, sa: string): void {
  const p: PodFacts = { metadata: { namespace: ns, name, uid }, spec: { nodeName: node, serviceAccountName: sa }, status: { phase: 'Running' } };
  pods.set(`${ns}/${name}`, p);
  podsByUid.set(uid, p);
}
for (const node of NODES) {
  addPod('ambit-system', `agent-${node}`, `uid-agent-${node}`, node, 'ambit-agent');
  addPod('shop', `web-${node}`, `uid-web-${node}`, node, 'web');
}

function review(token: string): TokenReviewStatus {
  const agent = /^agent-(node-\d+)$/.exec(token);
  if (agent) {
    return {
      authenticated: true,
      user: {
        username: 'system:serviceaccount:ambit-system:ambit-agent',
        extra: { [EXTRA_POD_NAME]: [`agent-${agent[1]}`], [EXTRA_POD_UID]: [`uid-agent-${agent[1]}`] },
      },
    };
  }
  if (token === 'web-token') {
    return { authenticated: true, user: { username: 'system:serviceaccount:shop:web', extra: { [EXTRA_POD_NAME]: ['web-node-0'], [EXTRA_POD_UID]: ['uid-web-node-0'] } } };
  }
  return { authenticated: false, error: 'invalid bearer token' };
}

const lookups: AuthzLookups = {
  tokenReview: async (t) => review(t),
  getPod: async (ns, name) => pods.get(`${ns}/${name}`),
  getPodByUid: async (uid) => podsByUid.get(uid),
};

const nacks: { agent: string; version: string; errors: ResourceError[] }[] = [];
let ca: CertificateAuthority;
let hub: PushHub;
let server: PushServer;
let roots: string[];
const clients: ControlClient[] = [];

function client(token: string): ControlClient {
  const c = new ControlClient({ address: `127.0.0.1:${server.port}`, rootCertsPem: roots, token: () => token });
  clients.push(c);
  return c;
}

/** A new config for `node`: its web pod plus `extra` workloads. */
function config(node: string, ...extra: string[]): Snapshot {
  return fixtureSnapshot(node, {
    workloads: [fixtureWorkload(`uid-web-${node}`, node), ...extra.map((u) => fixtureWorkload(u, node))],
    trust: { trustDomain: TD, rootNamespace: 'ambit-system', roots: ca.trustBundle().roots },
  });
}

before(async () => {
  ca = await CertificateAuthority.load(await generateRootCa({ trustDomain: TD }), { trustDomain: TD });
  roots = ca.trustBundle().roots;
  hub = new PushHub({ stallTimeoutMs: 400, observer: { nacked: (info, version, errors) => nacks.push({ agent: info.agent, version, errors }) } });
  const tls = await ca.issueServing({ dnsNames: ['ambit-control.ambit-system.svc', 'localhost'], ips: ['127.0.0.1'], ttlMs: 3600_000 });
  server = await PushServer.start({ hub, sign: { ca, lookups, authz: { agentServiceAccount: DEFAULT_AGENT_SERVICE_ACCOUNT, trustDomain: TD } }, tls, subscribeTimeoutMs: 300, sweepIntervalMs: 50 }, '127.0.0.1:0');
  for (const node of NODES) hub.publish(config(node));
});

after(async () => {
  for (const c of clients) c.close();
  await server.close(100);
});

/** A subscribed agent that records its updates. */
function agent(node: string, opts: { token?: string; reject?: (u: ConfigUpdate) => ResourceError[] | void; resume?: Snapshot; hold?: () => Promise<void> } = {}) {
  const updates: ConfigUpdate[] = [];
  const events: string[] = [];
  const sub = client(opts.token ?? `agent-${node}`).subscribe({
    node,
    ...(opts.resume ? { resumeVersion: opts.resume.version, resumeSnapshot: opts.resume } : {}),
    onUpdate: async (u) => {
      await opts.hold?.();
      updates.push(u);
      return opts.reject?.(u);
    },
    onConnection: (e) => events.push(e.state === 'connected' ? 'connected' : `${e.error.codeName}: ${e.error.details}`),
    backoff: { initialMs: 50, maxMs: 200 },
  });
  return { updates, events, sub };
}

async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** Opens a raw stream and resolves with the status it ends with. */
async function rawStream(token: string, send: (s: grpc.ClientDuplexStream<Buffer, Buffer>) => void): Promise<{ error: ControlError; received: number }> {
  const s = await client(token).openStream();
  let received = 0;
  s.on('data', () => received++);
  const done = new Promise<{ error: ControlError; received: number }>((resolve) => s.on('error', (e: grpc.ServiceError) => resolve({ error: new ControlError(e.code, e.details), received })));
  send(s);
  return done;
}

// ------------------------------------------------------------------------------------------------

test('many subscribers: each gets its own node snapshot; a change reaches only that node\'s agents', async () => {
  const agents = NODES.flatMap((node) => [agent(node), agent(node), agent(node)]);
  await until(() => agents.every((a) => a.updates.length === 1), 'every agent to get its snapshot');
  for (const a of agents) {
    const u = a.updates[0]!;
    assert.equal(u.delta, undefined, 'first update is a full snapshot');
    assert.deepEqual(u.snapshot, hub.current(u.snapshot.node));
    assert.equal(a.sub.version, u.snapshot.version);
  }
  hub.publish(config('node-3', 'new-pod'));
  const n3 = agents.filter((_, i) => Math.floor(i / 3) === 3);
  await until(() => n3.every((a) => a.updates.length === 2), 'node-3 agents to get the delta');
  await sleep(50);
  assert.deepEqual(
    agents.map((a) => a.updates.length),
    NODES.flatMap((n) => (n === 'node-3' ? [2, 2, 2] : [1, 1, 1])),
  );
  const d = n3[0]!.updates[1]!.delta!;
  assert.deepEqual(Object.keys(d.workloads.added), ['new-pod']);
  assert.equal(hub.subscriberCount(), 30);
  agents.forEach((a) => a.sub.close());
  await until(() => hub.subscriberCount() === 0, 'streams to close');
});

test('NACK: the agent\'s rejected resources reach the observer; the stream goes on', async () => {
  const a = agent('node-1', { reject: (u) => (u.delta ? [{ type: 'workloads', key: 'bad-pod', message: 'ip is not an IP address' }] : []) });
  await until(() => a.updates.length === 1, 'snapshot');
  hub.publish(config('node-1', 'bad-pod'));
  await until(() => nacks.length === 1, 'the NACK');
  assert.equal(nacks[0]!.agent, 'ambit-system/agent-node-1');
  assert.equal(nacks[0]!.version, hub.current('node-1')!.version);
  assert.deepEqual(nacks[0]!.errors, [{ type: 'workloads', key: 'bad-pod', message: 'ip is not an IP address' }]);
  hub.publish(config('node-1', 'good-pod'));
  await until(() => a.updates.length === 3, 'the next delta after a NACK');
  a.sub.close();
});

test('resume: reconnecting from a held version gets a delta, on this replica and on another one', async () => {
  const first = agent('node-2');
  await until(() => first.updates.length === 1, 'snapshot');
  const held = first.sub.snapshot!;
  first.sub.close();
  hub.publish(config('node-2', 'while-away'));
  const again = agent('node-2', { resume: held });
  await until(() => again.updates.length === 1, 'resume');
  assert.ok(again.updates[0]!.delta, 'a delta, not a full snapshot');
  assert.deepEqual(Object.keys(again.updates[0]!.delta!.workloads.added), ['while-away']);
  assert.deepEqual(again.sub.snapshot, hub.current('node-2'));
  again.sub.close();

  // Another replica computing the same config has the same version: resuming there is an empty delta.
  const hubB = new PushHub();
  hubB.publish(hub.current('node-2')!);
  const tls = await ca.issueServing({ dnsNames: ['localhost'], ips: ['127.0.0.1'], ttlMs: 3600_000 });
  const replicaB = await PushServer.start({ hub: hubB, sign: { ca, lookups, authz: { agentServiceAccount: DEFAULT_AGENT_SERVICE_ACCOUNT, trustDomain: TD } }, tls }, '127.0.0.1:0');
  const cB = new ControlClient({ address: `127.0.0.1:${replicaB.port}`, rootCertsPem: roots, token: () => 'agent-node-2' });
  const updates: ConfigUpdate[] = [];
  const sub = cB.subscribe({ node: 'node-2', resumeVersion: again.sub.version!, resumeSnapshot: again.sub.snapshot!, onUpdate: (u) => void updates.push(u) });
  await until(() => updates.length === 1, 'resume on replica B');
  const d = updates[0]!.delta!;
  assert.ok(d && d.from === d.to && Object.keys(d.workloads.added).length === 0, 'empty delta: nothing to change');
  sub.close();
  cB.close();
  await replicaB.close(50);
});

test('a replica dying: the agent reconnects and resumes (here: to the restarted replica on the same port)', async () => {
  const hubC = new PushHub();
  hubC.publish(hub.current('node-4')!);
  const tls = await ca.issueServing({ dnsNames: ['localhost'], ips: ['127.0.0.1'], ttlMs: 3600_000 });
  const opts = { hub: hubC, sign: { ca, lookups, authz: { agentServiceAccount: DEFAULT_AGENT_SERVICE_ACCOUNT, trustDomain: TD } }, tls };
  const c = await PushServer.start(opts, '127.0.0.1:0');
  const port = c.port;
  const cl = new ControlClient({ address: `127.0.0.1:${port}`, rootCertsPem: roots, token: () => 'agent-node-4' });
  const updates: ConfigUpdate[] = [];
  const events: string[] = [];
  const sub = cl.subscribe({ node: 'node-4', onUpdate: (u) => void updates.push(u), onConnection: (e) => events.push(e.state), backoff: { initialMs: 20, maxMs: 100 } });
  await until(() => updates.length === 1, 'snapshot');
  c.kill();
  await until(() => events.includes('disconnected'), 'disconnect noticed');
  const hubD = new PushHub();
  hubD.publish(config('node-4', 'after-failover'));
  const d = await PushServer.start({ ...opts, hub: hubD }, `127.0.0.1:${port}`);
  await until(() => updates.length === 2, 'resync after failover', 5000);
  // Replica D never saw the version the agent held: a full snapshot, not a delta.
  assert.equal(updates[1]!.delta, undefined);
  assert.deepEqual(sub.snapshot, hubD.current('node-4'));
  sub.close();
  cl.close();
  await d.close(50);
});

test('slow consumer: an agent stuck applying config delays nobody, then gets one coalesced delta', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let holding = false;
  const slow = agent('node-5', { hold: () => (holding ? gate : Promise.resolve()) });
  const fast = agent('node-5');
  await until(() => slow.updates.length === 1 && fast.updates.length === 1, 'snapshots');
  holding = true;
  for (let i = 0; i < 20; i++) {
    hub.publish(config('node-5', `p${i}`));
    await until(() => fast.updates.length === i + 2, `fast agent gets change ${i}`);
  }
  assert.equal(slow.updates.length, 1, 'slow agent is still applying');
  release();
  await until(() => slow.sub.version === hub.current('node-5')!.version, 'slow agent to converge');
  assert.ok(slow.updates.length <= 3, `coalesced: ${slow.updates.length} updates for 20 changes`);
  assert.deepEqual(slow.sub.snapshot, hub.current('node-5'));
  slow.sub.close();
  fast.sub.close();
});

test('a stream that never acknowledges is ended with RESOURCE_EXHAUSTED once a change waits too long', async () => {
  const result = rawStream('agent-node-6', (s) => s.write(encodeAgentMessage({ subscribe: { node: 'node-6', resumeVersion: '' } })));
  await sleep(100);
  hub.publish(config('node-6', 'x'));
  const { error, received } = await result;
  assert.equal(error.codeName, 'RESOURCE_EXHAUSTED');
  assert.match(error.details, /has waited \d+s for this agent to read and acknowledge; reconnect and resume/);
  assert.equal(received, 1);
});

test('malformed messages and bad callers get clear errors; other agents keep their streams', async () => {
  const bystander = agent('node-7');
  await until(() => bystander.updates.length === 1, 'bystander snapshot');
  const sub = (node: string, resumeVersion = '') => encodeAgentMessage({ subscribe: { node, resumeVersion } });
  const cases: { name: string; token: string; send: (s: grpc.ClientDuplexStream<Buffer, Buffer>) => void; code: string; details: RegExp }[] = [
    { name: 'garbage bytes', token: 'agent-node-8', send: (s) => s.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f])), code: 'INVALID_ARGUMENT', details: /AgentMessage does not decode as protobuf/ },
    { name: 'empty message', token: 'agent-node-8', send: (s) => s.write(Buffer.alloc(0)), code: 'INVALID_ARGUMENT', details: /none of subscribe, ack, nack/ },
    { name: 'ack first', token: 'agent-node-8', send: (s) => s.write(encodeAgentMessage({ ack: { version: 'v' } })), code: 'INVALID_ARGUMENT', details: /first message of a stream must be subscribe/ },
    { name: 'subscribe twice', token: 'agent-node-8', send: (s) => (s.write(sub('node-8')), s.write(sub('node-8'))), code: 'INVALID_ARGUMENT', details: /subscribe may be sent only once/ },
    { name: 'empty node', token: 'agent-node-8', send: (s) => s.write(sub('')), code: 'INVALID_ARGUMENT', details: /subscribe.node is empty/ },
    { name: 'bad token', token: 'forged', send: (s) => s.write(sub('node-8')), code: 'UNAUTHENTICATED', details: /did not accept the bearer token: invalid bearer token/ },
    { name: 'not the agent', token: 'web-token', send: (s) => s.write(sub('node-0')), code: 'PERMISSION_DENIED', details: /service account shop\/web; only ambit-system\/ambit-agent/ },
    { name: 'claims another node', token: 'agent-node-8', send: (s) => s.write(sub('node-9')), code: 'PERMISSION_DENIED', details: /subscribe.node is node-9, but the caller's pod ambit-system\/agent-node-8 runs on node node-8/ },
    { name: 'silent', token: 'agent-node-8', send: () => {}, code: 'DEADLINE_EXCEEDED', details: /no subscribe message within 300 ms/ },
    {
      name: 'ack for a version never sent',
      token: 'agent-node-8',
      send: (s) => {
        s.write(sub('node-8'));
        s.once('data', () => s.write(encodeAgentMessage({ ack: { version: 'not-sent' } })));
      },
      code: 'INVALID_ARGUMENT',
      details: /acknowledgement for version not-sent, but the next version to acknowledge is/,
    },
    {
      name: 'nack without errors',
      token: 'agent-node-8',
      send: (s) => {
        s.write(sub('node-8'));
        s.once('data', () => s.write(encodeAgentMessage({ nack: { version: hub.current('node-8')!.version, errors: [] } })));
      },
      code: 'INVALID_ARGUMENT',
      details: /lists no errors; send ack/,
    },
  ];
  for (const c of cases) {
    const { error } = await rawStream(c.token, c.send);
    assert.equal(error.codeName, c.code, c.name);
    assert.match(error.details, c.details, c.name);
  }
  // A missing token.
  const noAuth = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createSsl(Buffer.from(roots.join(''))));
  const s = noAuth.makeBidiStreamRequest('/ambit.v1.AmbitControl/Subscribe', (b: Buffer) => b, (b: Buffer) => b);
  const noToken = new Promise<grpc.ServiceError>((r) => s.on('error', r));
  s.write(sub('node-8'));
  const err = await noToken;
  assert.equal(grpc.status[err.code], 'UNAUTHENTICATED');
  assert.match(err.details, /no bearer token/);
  noAuth.close();

  // The bystander still gets changes, on its first stream.
  hub.publish(config('node-7', 'still-here'));
  await until(() => bystander.updates.length === 2, 'bystander delta');
  assert.deepEqual(bystander.events, ['connected']);
  bystander.sub.close();
});

test('Sign: an agent gets an X.509-SVID for a pod on its node, validating against the bundle', async () => {
  const c = client('agent-node-0');
  const { csrPem, keyPem } = await createKeyAndCsr('spiffe://cluster.local/ns/shop/sa/web');
  const res = await c.sign({ podUid: 'uid-web-node-0', csrPem });
  assert.equal(res.identity, 'spiffe://cluster.local/ns/shop/sa/web');
  const leaf = new X509Certificate(res.certChainPem[0]!);
  assert.equal(leaf.subjectAltName, 'URI:spiffe://cluster.local/ns/shop/sa/web');
  assert.ok(res.trustBundlePem.some((r) => leaf.verify(new X509Certificate(r).publicKey)));
  assert.ok(leaf.checkPrivateKey(await import('node:crypto').then((m) => m.createPrivateKey(keyPem.reveal()))));
  assert.ok(Math.abs(res.notAfterMs - Date.now() - 24 * 3600_000) < 60_000);
  const short = await c.sign({ podUid: 'uid-web-node-0', csrPem, ttlSeconds: 600 });
  assert.ok(Math.abs(short.notAfterMs - Date.now() - 600_000) < 60_000);
});

test('Sign: refusals say why', async () => {
  const good = (await createKeyAndCsr()).csrPem;
  const wrongId = (await createKeyAndCsr('spiffe://cluster.local/ns/kube-system/sa/admin')).csrPem;
  const cases: { name: string; token: string; podUid: string; csrPem: string; code: string; details: RegExp }[] = [
    { name: 'pod of another node', token: 'agent-node-0', podUid: 'uid-web-node-1', csrPem: good, code: 'PERMISSION_DENIED', details: /pod shop\/web-node-1 runs on node node-1, not on the caller's node node-0/ },
    { name: 'identity not the pod SA', token: 'agent-node-0', podUid: 'uid-web-node-0', csrPem: wrongId, code: 'PERMISSION_DENIED', details: /requests spiffe:\/\/cluster.local\/ns\/kube-system\/sa\/admin, but pod shop\/web-node-0 runs as service account web/ },
    { name: 'not the agent', token: 'web-token', podUid: 'uid-web-node-0', csrPem: good, code: 'PERMISSION_DENIED', details: /only ambit-system\/ambit-agent/ },
    { name: 'bad token', token: 'nope', podUid: 'uid-web-node-0', csrPem: good, code: 'UNAUTHENTICATED', details: /did not accept the bearer token/ },
    { name: 'unknown pod', token: 'agent-node-0', podUid: 'uid-missing', csrPem: good, code: 'NOT_FOUND', details: /no pod with uid uid-missing/ },
    { name: 'garbage CSR', token: 'agent-node-0', podUid: 'uid-web-node-0', csrPem: 'hello', code: 'INVALID_ARGUMENT', details: /not a PEM "CERTIFICATE REQUEST"/ },
  ];
  for (const c of cases) {
    await assert.rejects(client(c.token).sign({ podUid: c.podUid, csrPem: c.csrPem }), (err: unknown) => {
      assert.ok(err instanceof ControlError, c.name);
      assert.equal(err.codeName, c.code, c.name);
      assert.match(err.details, c.details, c.name);
      return true;
    });
  }
  // A request that does not decode.
  const raw = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createSsl(Buffer.from(roots.join(''))));
  const md = new grpc.Metadata();
  md.set('authorization', 'Bearer agent-node-0');
  const err = await new Promise<grpc.ServiceError>((resolve) =>
    raw.makeUnaryRequest('/ambit.v1.AmbitControl/Sign', (b: Buffer) => b, (b: Buffer) => b, Buffer.from([0x0a, 0xff, 0xff]), md, (e) => resolve(e!)),
  );
  assert.equal(grpc.status[err.code], 'INVALID_ARGUMENT');
  assert.match(err.details, /SignRequest does not decode/);
  raw.close();
});
