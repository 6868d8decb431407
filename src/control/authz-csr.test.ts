import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  authenticateAgent,
  authorizeCsr,
  cachedTokenReview,
  decideCaller,
  decideCsr,
  DEFAULT_AGENT_SERVICE_ACCOUNT,
  EXTRA_POD_NAME,
  EXTRA_POD_UID,
  serviceAccountOf,
  type Agent,
  type AuthzConfig,
  type AuthzLookups,
  type PodFacts,
  type TokenReviewStatus,
} from './authz-csr.js';

const cfg: AuthzConfig = { agentServiceAccount: DEFAULT_AGENT_SERVICE_ACCOUNT, trustDomain: 'cluster.local' };

const agentReview = (over: Partial<NonNullable<TokenReviewStatus['user']>> = {}): TokenReviewStatus => ({
  authenticated: true,
  user: {
    username: 'system:serviceaccount:ambit-system:ambit-agent',
    groups: ['system:serviceaccounts'],
    extra: { [EXTRA_POD_NAME]: ['agent-a'], [EXTRA_POD_UID]: ['uid-agent-a'] },
    ...over,
  },
});

const pod = (ns: string, name: string, uid: string, node: string | undefined, sa?: string, phase?: string): PodFacts => ({
  metadata: { namespace: ns, name, uid },
  spec: { ...(node ? { nodeName: node } : {}), ...(sa ? { serviceAccountName: sa } : {}) },
  status: phase ? { phase } : {},
});

const agentPod = pod('ambit-system', 'agent-a', 'uid-agent-a', 'node-a', 'ambit-agent');

test('decideCaller: table', () => {
  const rows: { name: string; review: TokenReviewStatus; callerPod?: PodFacts; want: string }[] = [
    { name: 'agent on node-a', review: agentReview(), callerPod: agentPod, want: 'ok:node-a' },
    { name: 'token rejected', review: { authenticated: false, error: 'token has expired' }, want: 'UNAUTHENTICATED:token-rejected' },
    { name: 'a user, not an SA', review: { authenticated: true, user: { username: 'alice' } }, want: 'PERMISSION_DENIED:not-a-service-account' },
    { name: 'other SA', review: agentReview({ username: 'system:serviceaccount:shop:web' }), callerPod: agentPod, want: 'PERMISSION_DENIED:not-the-agent' },
    { name: 'agent name in other namespace', review: agentReview({ username: 'system:serviceaccount:shop:ambit-agent' }), want: 'PERMISSION_DENIED:not-the-agent' },
    { name: 'legacy secret token', review: agentReview({ extra: {} }), callerPod: agentPod, want: 'PERMISSION_DENIED:token-not-pod-bound' },
    { name: 'caller pod deleted', review: agentReview(), callerPod: undefined, want: 'PERMISSION_DENIED:caller-pod-gone' },
    { name: 'pod recreated with same name', review: agentReview(), callerPod: pod('ambit-system', 'agent-a', 'uid-new', 'node-b', 'ambit-agent'), want: 'PERMISSION_DENIED:caller-pod-replaced' },
    { name: 'caller pod runs as another SA', review: agentReview(), callerPod: pod('ambit-system', 'agent-a', 'uid-agent-a', 'node-a', 'other'), want: 'PERMISSION_DENIED:caller-pod-mismatch' },
    { name: 'caller pod unscheduled', review: agentReview(), callerPod: pod('ambit-system', 'agent-a', 'uid-agent-a', undefined, 'ambit-agent'), want: 'PERMISSION_DENIED:caller-unscheduled' },
    // The token's node-name extra is not what decides the node: the pod object does.
    {
      name: 'node from pod, not from token extra',
      review: agentReview({ extra: { [EXTRA_POD_NAME]: ['agent-a'], [EXTRA_POD_UID]: ['uid-agent-a'], 'authentication.kubernetes.io/node-name': ['node-z'] } }),
      callerPod: agentPod,
      want: 'ok:node-a',
    },
  ];
  for (const row of rows) {
    const d = decideCaller(row.review, row.callerPod, cfg);
    const got = d.ok ? `ok:${d.agent.node}` : `${d.code}:${d.reason}`;
    assert.equal(got, row.want, row.name);
    if (!d.ok) assert.ok(d.message.length > 20, `${row.name}: message says what to do`);
  }
});

test('decideCaller with a configured agent service account', () => {
  const custom = { ...cfg, agentServiceAccount: { namespace: 'mesh', name: 'node-agent' } };
  const review = agentReview({ username: 'system:serviceaccount:mesh:node-agent' });
  const d = decideCaller(review, pod('mesh', 'agent-a', 'uid-agent-a', 'n1', 'node-agent'), custom);
  assert.ok(d.ok);
  const refused = decideCaller(agentReview(), agentPod, custom);
  assert.ok(!refused.ok && /only mesh\/node-agent/.test(refused.message));
});

test('decideCsr: table', () => {
  const agent: Agent = { namespace: 'ambit-system', podName: 'agent-a', podUid: 'uid-agent-a', node: 'node-a' };
  const web = pod('shop', 'web-0', 'uid-web', 'node-a', 'web');
  const webId = 'spiffe://cluster.local/ns/shop/sa/web';
  const rows: { name: string; podUid?: string; pod?: PodFacts; uris?: string[]; others?: string[]; want: string }[] = [
    { name: 'pod on my node, no SAN requested', pod: web, want: `ok:${webId}` },
    { name: 'requests exactly its identity', pod: web, uris: [webId], want: `ok:${webId}` },
    { name: 'default service account', pod: pod('shop', 'x', 'u', 'node-a'), want: 'ok:spiffe://cluster.local/ns/shop/sa/default' },
    { name: 'empty uid', podUid: '', want: 'INVALID_ARGUMENT:no-pod-uid' },
    { name: 'unknown pod', pod: undefined, want: 'NOT_FOUND:pod-not-found' },
    { name: 'pod on another node', pod: pod('shop', 'web-1', 'u1', 'node-b', 'web'), want: 'PERMISSION_DENIED:pod-on-other-node' },
    { name: 'pod not scheduled', pod: pod('shop', 'web-1', 'u1', undefined, 'web'), want: 'PERMISSION_DENIED:pod-on-other-node' },
    { name: 'terminated pod', pod: pod('shop', 'job', 'u1', 'node-a', 'web', 'Succeeded'), want: 'FAILED_PRECONDITION:pod-terminated' },
    { name: 'identity of another SA', pod: web, uris: ['spiffe://cluster.local/ns/shop/sa/admin'], want: 'PERMISSION_DENIED:csr-wrong-identity' },
    { name: 'identity of another trust domain', pod: web, uris: ['spiffe://evil.td/ns/shop/sa/web'], want: 'PERMISSION_DENIED:csr-wrong-identity' },
    { name: 'two URIs', pod: web, uris: [webId, webId], want: 'INVALID_ARGUMENT:csr-many-uris' },
    { name: 'DNS SAN', pod: web, others: ['dns:web.shop.svc'], want: 'INVALID_ARGUMENT:csr-extra-sans' },
  ];
  for (const row of rows) {
    const d = decideCsr(agent, { podUid: row.podUid ?? 'uid-x', requestedUris: row.uris ?? [], otherSans: row.others ?? [] }, row.pod, cfg);
    const got = d.ok ? `ok:${d.identity}` : `${d.code}:${d.reason}`;
    assert.equal(got, row.want, row.name);
  }
  const other = decideCsr(agent, { podUid: 'u1', requestedUris: [], otherSans: [] }, pod('shop', 'web-1', 'u1', 'node-b', 'web'), cfg);
  assert.ok(!other.ok);
  assert.equal(other.message, "pod shop/web-1 runs on node node-b, not on the caller's node node-a; an agent may only request identities of pods on its own node");
});

test('shells: lookups feed the decisions; lookup failures are retryable UNAVAILABLE', async () => {
  const pods = new Map<string, PodFacts>([['ambit-system/agent-a', agentPod]]);
  const byUid = new Map<string, PodFacts>([['uid-web', pod('shop', 'web-0', 'uid-web', 'node-a', 'web')]]);
  const lookups: AuthzLookups = {
    tokenReview: async (t) => (t === 'good' ? agentReview() : t === 'boom' ? Promise.reject(new Error('connect ECONNREFUSED')) : { authenticated: false }),
    getPod: async (ns, name) => pods.get(`${ns}/${name}`),
    getPodByUid: async (uid) => (uid === 'explode' ? Promise.reject(new Error('timeout')) : byUid.get(uid)),
  };
  assert.equal(((await authenticateAgent(lookups, cfg, undefined)) as { reason: string }).reason, 'no-token');
  assert.equal(((await authenticateAgent(lookups, cfg, 'bad')) as { reason: string }).reason, 'token-rejected');
  const boom = await authenticateAgent(lookups, cfg, 'boom');
  assert.ok(!boom.ok && boom.code === 'UNAVAILABLE' && /retry/.test(boom.message));
  const ok = await authenticateAgent(lookups, cfg, 'good');
  assert.ok(ok.ok);
  const grant = await authorizeCsr(lookups, cfg, ok.agent, { podUid: 'uid-web', requestedUris: [], otherSans: [] });
  assert.ok(grant.ok && grant.identity === 'spiffe://cluster.local/ns/shop/sa/web');
  const failed = await authorizeCsr(lookups, cfg, ok.agent, { podUid: 'explode', requestedUris: [], otherSans: [] });
  assert.ok(!failed.ok && failed.code === 'UNAVAILABLE');
});

test('serviceAccountOf', () => {
  assert.deepEqual(serviceAccountOf('system:serviceaccount:a:b'), { namespace: 'a', name: 'b' });
  for (const u of ['system:serviceaccount:a', 'system:serviceaccount:a:b:c', 'system:serviceaccounts:a', 'alice', undefined]) {
    assert.equal(serviceAccountOf(u), undefined, String(u));
  }
});

test('cachedTokenReview: one review per token within the TTL; call failures are not cached', async () => {
  let calls = 0;
  let t = 0;
  let fail = false;
  const cached = cachedTokenReview(async () => {
    calls++;
    if (fail) throw new Error('down');
    return { authenticated: true };
  }, { ttlMs: 100, now: () => t, maxEntries: 2 });
  await cached('a');
  await cached('a');
  assert.equal(calls, 1);
  t = 101;
  await cached('a');
  assert.equal(calls, 2);
  fail = true;
  await assert.rejects(cached('b'));
  fail = false;
  await cached('b');
  assert.equal(calls, 4, 'failure was not cached');
  await cached('c');
  await cached('d'); // evicts the oldest
  await cached('a');
  assert.equal(calls, 7);
});
