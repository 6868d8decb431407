import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { ControlError, type ConfigUpdate } from '../api/client.js';
import { applyDelta, diffSnapshots } from '../api/delta.js';
import { fixtureService, fixtureSnapshot, fixtureWorkload } from '../api/fixtures.js';
import type { AuthorizationPolicy, Endpoint, NodeSnapshot, PeerAuthentication, PeerWorkload, Service } from '../api/types.js';
import { acceptUpdate, buildIndex, MeshConfig, normalizeIp } from './mesh-config.js';

const web1 = fixtureWorkload('w1', 'n1', { name: 'web-1', ips: ['10.244.1.5', 'fd00:244:1::5'], services: ['shop/api'] });
const db1 = fixtureWorkload('w2', 'n1', { name: 'db-1', namespace: 'data', serviceAccount: 'db', ips: ['10.244.1.6'], enrolled: false });
const peer: PeerWorkload = { uid: 'p1', ips: ['10.244.2.7'], node: 'n2', identity: 'spiffe://cluster.local/ns/shop/sa/api', enrolled: true, workload: 'api' };
const oddPeer: PeerWorkload = { uid: 'p2', ips: ['10.244.2.8'], node: 'n2', identity: 'spiffe://cluster.local/custom/path', enrolled: true };

function service(name: string, vip: string, endpoints: Endpoint[], over: Partial<Service> = {}): Service {
  return { ...fixtureService('shop', name, vip), endpoints, ...over };
}

const api = service('api', '10.96.0.20', [
  { ip: '10.244.1.5', workload: 'w1', status: 'ready' },
  { ip: '10.244.2.7', workload: 'p1', status: 'ready' },
  { ip: '10.244.2.9', status: 'notReady' },
]);
const named = service('named', '10.96.0.21', [{ ip: '10.244.2.7', workload: 'p1', status: 'ready', ports: { grpc: 9090 } }, { ip: '10.244.2.8', status: 'ready' }], {
  ports: [
    { name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 },
    { name: 'grpc', protocol: 'TCP', port: 90 },
  ],
});

function snap(over: Parameters<typeof fixtureSnapshot>[1] = {}): NodeSnapshot {
  return fixtureSnapshot('n1', { workloads: [web1, db1], peers: [peer, oddPeer], services: [api, named], ...over });
}

const pol = (name: string, over: Partial<AuthorizationPolicy> = {}): AuthorizationPolicy => ({ key: `shop/${name}`, namespace: 'shop', name, action: 'ALLOW', rules: [{}], ...over });
const pa = (name: string, over: Partial<PeerAuthentication> = {}): PeerAuthentication => ({ key: `shop/${name}`, namespace: 'shop', name, createdAt: '2024-01-01T00:00:00Z', mode: 'PERMISSIVE', ...over });

test('index: workloads by IP (this node and peers), by uid; IPv4-mapped and upper-case addresses', () => {
  const ix = buildIndex(snap());
  const rows: [string, { uid: string; namespace?: string; name?: string; serviceAccount?: string; node: string; local: boolean } | undefined][] = [
    ['10.244.1.5', { uid: 'w1', namespace: 'shop', name: 'web-1', serviceAccount: 'web', node: 'n1', local: true }],
    ['::ffff:10.244.1.5', { uid: 'w1', namespace: 'shop', name: 'web-1', serviceAccount: 'web', node: 'n1', local: true }],
    ['FD00:244:1::5', { uid: 'w1', namespace: 'shop', name: 'web-1', serviceAccount: 'web', node: 'n1', local: true }],
    ['10.244.1.6', { uid: 'w2', namespace: 'data', name: 'db-1', serviceAccount: 'db', node: 'n1', local: true }],
    ['10.244.2.7', { uid: 'p1', namespace: 'shop', serviceAccount: 'api', node: 'n2', local: false }],
    ['10.244.2.8', { uid: 'p2', node: 'n2', local: false }],
    ['10.244.9.9', undefined],
  ];
  for (const [ip, want] of rows) {
    const w = ix.workloadByIp(ip);
    const got = w && { uid: w.uid, ...(w.namespace ? { namespace: w.namespace } : {}), ...(w.name ? { name: w.name } : {}), ...(w.serviceAccount ? { serviceAccount: w.serviceAccount } : {}), node: w.node, local: w.local !== undefined };
    assert.deepEqual(got, want, ip);
  }
  assert.equal(ix.workloadByIp('10.244.1.6')?.enrolled, false);
  assert.equal(ix.workloadByUid('p1')?.identity, 'spiffe://cluster.local/ns/shop/sa/api');
  assert.deepEqual(ix.localWorkloads.map((w) => w.uid), ['w1', 'w2']);
  assert.deepEqual(ix.workloadByIp('10.244.1.5')?.labels, { app: 'web' }, 'labels of local pods, for policy selectors');
  assert.deepEqual(ix.workloadByIp('10.244.1.5')?.services, ['shop/api'], 'Services of local pods, for policies that target a Service');
  assert.equal(ix.workloadByIp('10.244.2.7')?.workload, 'api', "a peer's workload name, for telemetry");
  assert.equal(ix.workloadByIp('10.244.2.8')?.workload, undefined, 'absent from an older control plane');
});

test('index: a pod IP listed both here and on a peer resolves to this node\'s workload', () => {
  const ix = buildIndex(snap({ peers: [{ ...peer, ips: ['10.244.1.5'] }] }));
  assert.equal(ix.workloadByIp('10.244.1.5')?.uid, 'w1');
});

test('index: Services by VIP:port, by endpoint IP:port, by hostname', () => {
  const ix = buildIndex(snap());
  const vipRows: [string, number, string | undefined][] = [
    ['10.96.0.20', 80, 'shop/api:http'],
    ['::ffff:10.96.0.20', 80, 'shop/api:http'],
    ['10.96.0.20', 81, undefined],
    ['10.96.0.21', 90, 'shop/named:grpc'],
    ['10.244.1.5', 80, undefined],
  ];
  for (const [ip, port, want] of vipRows) {
    const t = ix.serviceByVip(ip, port);
    assert.equal(t && `${t.service.key}:${t.port.name}`, want, `${ip}:${port}`);
  }
  const epRows: [string, number, string | undefined][] = [
    ['10.244.1.5', 8080, 'shop/api:http'],
    ['10.244.2.7', 8080, 'shop/api:http'], // listed by both; api comes first in key order
    ['10.244.2.7', 9090, 'shop/named:grpc'], // named target port, mapped on the endpoint
    ['10.244.2.8', 9090, undefined], // no mapping for the named port
    ['10.244.1.5', 9999, undefined],
  ];
  for (const [ip, port, want] of epRows) {
    const s = ix.serviceOfEndpoint(ip, port);
    assert.equal(s && `${s.service.key}:${s.port.name}`, want, `${ip}:${port}`);
  }
  assert.equal(ix.serviceByEndpoint('10.244.2.7', 9090)?.key, 'shop/named');
  assert.equal(ix.serviceByHostname('API.shop.svc.cluster.local.')?.key, 'shop/api');
  assert.deepEqual(ix.dnsIndex().get('api.shop.svc.cluster.local'), { v4: ['10.96.0.20'], v6: [] });
  assert.equal(ix.serviceByHostname('nope.shop.svc.cluster.local'), undefined);
});

test('pickEndpoint: ready first, round robin, terminating only when none is ready, never notReady', () => {
  const ep = (ip: string, status: Endpoint['status'], ports?: Record<string, number>): Endpoint => ({ ip, status, ...(ports ? { ports } : {}) });
  const rows: { name: string; endpoints: Endpoint[]; port?: string; start?: number; want: (string | undefined)[] }[] = [
    { name: 'all ready: round robin', endpoints: [ep('10.0.0.1', 'ready'), ep('10.0.0.2', 'ready'), ep('10.0.0.3', 'ready')], want: ['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080', '10.0.0.1:8080'] },
    { name: 'random start offset', endpoints: [ep('10.0.0.1', 'ready'), ep('10.0.0.2', 'ready'), ep('10.0.0.3', 'ready')], start: 0.5, want: ['10.0.0.2:8080', '10.0.0.3:8080', '10.0.0.1:8080'] },
    { name: 'notReady and terminating skipped while one is ready', endpoints: [ep('10.0.0.1', 'notReady'), ep('10.0.0.2', 'terminating'), ep('10.0.0.3', 'ready')], want: ['10.0.0.3:8080', '10.0.0.3:8080'] },
    { name: 'none ready: terminating', endpoints: [ep('10.0.0.1', 'notReady'), ep('10.0.0.2', 'terminating'), ep('10.0.0.3', 'terminating')], want: ['10.0.0.2:8080', '10.0.0.3:8080'] },
    { name: 'only notReady: nothing', endpoints: [ep('10.0.0.1', 'notReady')], want: [undefined] },
    { name: 'no endpoints', endpoints: [], want: [undefined] },
    { name: 'named port: endpoints without the mapping are skipped', port: 'grpc', endpoints: [ep('10.0.0.1', 'ready'), ep('10.0.0.2', 'ready', { grpc: 9090 })], want: ['10.0.0.2:9090', '10.0.0.2:9090'] },
  ];
  for (const row of rows) {
    const s = service('x', '10.96.0.30', row.endpoints, { ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 8080 }, { name: 'grpc', protocol: 'TCP', port: 90 }] });
    const ix = buildIndex(snap({ services: [s] }), { random: () => row.start ?? 0 });
    const target = ix.serviceByVip('10.96.0.30', row.port === 'grpc' ? 90 : 80)!;
    const got = row.want.map(() => {
      const c = ix.pickEndpoint(target);
      return c && `${c.ip}:${c.port}`;
    });
    assert.deepEqual(got, row.want, row.name);
  }
});

test('pickEndpoint: the chosen endpoint carries its workload (by uid, else by IP)', () => {
  const ix = buildIndex(snap(), { random: () => 0 });
  const t = ix.serviceByVip('10.96.0.20', 80)!;
  const picks = [ix.pickEndpoint(t)!, ix.pickEndpoint(t)!];
  assert.deepEqual(picks.map((p) => [p.ip, p.workload?.uid, p.workload?.identity]), [
    ['10.244.1.5', 'w1', 'spiffe://cluster.local/ns/shop/sa/web'],
    ['10.244.2.7', 'p1', 'spiffe://cluster.local/ns/shop/sa/api'],
  ]);
  const n = ix.serviceByVip('10.96.0.21', 80)!;
  assert.equal(ix.pickEndpoint(n)!.workload?.uid, 'p1');
  assert.equal(ix.pickEndpoint(n)!.workload?.uid, 'p2'); // no uid on the endpoint: found by IP
});

test('acceptUpdate: a full snapshot keeps the good resources and NACKs each bad one with a reason', () => {
  const bad = {
    badAction: pol('bad-action', { action: 'MAYBE' as AuthorizationPolicy['action'] }),
    unknownField: pol('unknown-field', { rules: [{ from: [{ principals: ['x'], sourceLabels: ['y'] } as never] }] }),
    badIp: pol('bad-ip', { action: 'DENY', rules: [{ from: [{ ipBlocks: ['10.0.0.0/99'] }] }] }),
    audit: pol('audit', { action: 'AUDIT', rules: 'x' as never }),
    garbledScope: { key: 'shop/garbled', namespace: 7, name: 'garbled', action: 'ALLOW', rules: 3 } as unknown as AuthorizationPolicy,
  };
  const s = snap({
    authorizationPolicies: [pol('good'), ...Object.values(bad)],
    peerAuthentications: [pa('good'), pa('bad-mode', { mode: 'SOMETIMES' as PeerAuthentication['mode'], selector: { app: 'web' } }), pa('bad-port', { portModes: { http: 'STRICT' } })],
    services: [api, service('bad-svc', '10.96.0.99', [{ ip: 'not-an-ip', status: 'ready' }])],
    workloads: [web1, { ...db1, identity: 'http://nope' }],
  });
  const { accepted, errors } = acceptUpdate(undefined, { snapshot: s, decodeErrors: [] });
  const byKey = new Map(errors.map((e) => [`${e.type}/${e.key}`, e.message]));
  assert.deepEqual([...byKey.keys()].sort(), [
    'authorizationPolicies/shop/audit',
    'authorizationPolicies/shop/bad-action',
    'authorizationPolicies/shop/bad-ip',
    'authorizationPolicies/shop/garbled',
    'authorizationPolicies/shop/unknown-field',
    'peerAuthentications/shop/bad-mode',
    'peerAuthentications/shop/bad-port',
    'services/shop/bad-svc',
    'workloads/w2',
  ]);
  assert.match(byKey.get('authorizationPolicies/shop/bad-action')!, /action "MAYBE" is not one of.*denies every connection to the workloads it selects/);
  assert.match(byKey.get('authorizationPolicies/shop/unknown-field')!, /sourceLabels is not a field this agent understands; upgrade the agent/);
  assert.match(byKey.get('authorizationPolicies/shop/bad-ip')!, /"10.0.0.0\/99" is not an IP address or CIDR/);
  assert.match(byKey.get('authorizationPolicies/shop/garbled')!, /leaves it out/);
  assert.match(byKey.get('peerAuthentications/shop/bad-port')!, /portModes: "http" is not a port number.*STRICT/);
  assert.match(byKey.get('services/shop/bad-svc')!, /endpoints\[0\]\.ip "not-an-ip" is not an IP address; this agent leaves it out/);
  assert.match(byKey.get('workloads/w2')!, /identity: "http:\/\/nope" is not a SPIFFE ID/);

  // Fail closed: a rejected ALLOW/DENY becomes deny-all for its scope; AUDIT and unreadable scopes are left out.
  const ap = accepted.authorizationPolicies;
  assert.deepEqual(ap['shop/good'], pol('good'));
  assert.deepEqual(ap['shop/bad-action'], { key: 'shop/bad-action', namespace: 'shop', name: 'bad-action', action: 'DENY', rules: [{}] });
  assert.equal(ap['shop/bad-ip']?.action, 'DENY');
  assert.deepEqual(ap['shop/bad-ip']?.rules, [{}]);
  assert.equal(ap['shop/audit'], undefined);
  assert.equal(ap['shop/garbled'], undefined);
  assert.deepEqual(accepted.peerAuthentications['shop/bad-mode'], { key: 'shop/bad-mode', namespace: 'shop', name: 'bad-mode', selector: { app: 'web' }, createdAt: '2024-01-01T00:00:00Z', mode: 'STRICT' });
  assert.equal(accepted.services['shop/bad-svc'], undefined);
  assert.deepEqual(Object.keys(accepted.workloads), ['w1']);
  assert.equal(accepted.version, s.version);
});

test('acceptUpdate: a delta checks only what it touches; a rejected update keeps the last good version', () => {
  const v1 = snap({ authorizationPolicies: [pol('a'), pol('b', { action: 'DENY' })], peerAuthentications: [pa('strict', { mode: 'STRICT' })] });
  const first = acceptUpdate(undefined, { snapshot: v1, decodeErrors: [] });
  assert.deepEqual(first.errors, []);

  const v2 = snap({ authorizationPolicies: [pol('a'), pol('b', { action: 'NOPE' as AuthorizationPolicy['action'] }), pol('c')], peerAuthentications: [pa('strict', { mode: 'OFF' as PeerAuthentication['mode'] })] });
  const delta = diffSnapshots(v1, v2);
  const second = acceptUpdate(first.accepted, { snapshot: applyDelta(v1, delta), delta, decodeErrors: [] });
  assert.deepEqual(second.errors.map((e) => `${e.type}/${e.key}`), ['authorizationPolicies/shop/b', 'peerAuthentications/shop/strict']);
  assert.match(second.errors[0]!.message, /keeps the previous version/);
  assert.equal(second.accepted.authorizationPolicies['shop/b']?.action, 'DENY');
  assert.equal(second.accepted.peerAuthentications['shop/strict']?.mode, 'STRICT');
  assert.ok(second.accepted.authorizationPolicies['shop/c']);

  // A later delta that does not touch the rejected resource does not NACK it again.
  const v3 = snap({ authorizationPolicies: [pol('a'), pol('b', { action: 'NOPE' as AuthorizationPolicy['action'] }), pol('c')], peerAuthentications: [pa('strict', { mode: 'OFF' as PeerAuthentication['mode'] })], services: [api] });
  const d3 = diffSnapshots(v2, v3);
  const third = acceptUpdate(second.accepted, { snapshot: applyDelta(v2, d3), delta: d3, decodeErrors: [] });
  assert.deepEqual(third.errors, []);
  assert.equal(third.accepted.authorizationPolicies['shop/b']?.action, 'DENY');
  assert.deepEqual(Object.keys(third.accepted.services), ['shop/api']);

  // Removing it removes it.
  const v4 = snap({ authorizationPolicies: [pol('a')], services: [api] });
  const d4 = diffSnapshots(v3, v4);
  const fourth = acceptUpdate(third.accepted, { snapshot: applyDelta(v3, d4), delta: d4, decodeErrors: [] });
  assert.deepEqual(Object.keys(fourth.accepted.authorizationPolicies), ['shop/a']);
  assert.deepEqual(Object.keys(fourth.accepted.peerAuthentications), []);
});

test('acceptUpdate: bad trust keeps the previous roots, or trusts nothing at first', () => {
  const bad = snap({ trust: { trustDomain: 'Cluster Local', rootNamespace: 'ambit-system', roots: ['not a cert'] } });
  const first = acceptUpdate(undefined, { snapshot: bad, decodeErrors: [] });
  assert.deepEqual(first.errors.map((e) => e.type), ['trust']);
  assert.match(first.errors[0]!.message, /roots\[0\] is not a PEM certificate.*trusts no roots/);
  assert.deepEqual(first.accepted.trust.roots, []);

  const good = snap();
  const ok = acceptUpdate(undefined, { snapshot: good, decodeErrors: [] });
  const d = diffSnapshots(good, bad);
  const again = acceptUpdate(ok.accepted, { snapshot: applyDelta(good, d), delta: d, decodeErrors: [] });
  assert.match(again.errors[0]!.message, /keeps the previous trust settings/);
  assert.deepEqual(again.accepted.trust, good.trust);
});

function memoryLog() {
  const lines: { level: number; msg: string }[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as { level: number; msg: string }) });
  return { log, lines };
}

test('MeshConfig: the live view knows nothing before the first config', () => {
  const live = new MeshConfig({ log: pino({ level: 'silent' }) }).liveView();
  assert.equal(live.workloadByIp('10.244.1.5'), undefined);
  assert.equal(live.serviceByVip('10.96.0.20', 80), undefined);
  assert.deepEqual(live.authorizationPolicies(), []);
  assert.deepEqual(live.trustRoots(), []);
  assert.equal(live.dnsIndex().size, 0);
});

test('MeshConfig: apply emits changed with the new index and returns the NACK; staleness is tracked and logged', async () => {
  const { log, lines } = memoryLog();
  let now = 1_000_000;
  const mesh = new MeshConfig({ log, now: () => now, staleLogEveryMs: 60_000 });
  const seen: string[] = [];
  mesh.on('changed', (ix, u) => seen.push(`${ix.version}:${u.full ? 'full' : 'delta'}:${u.errors.length}`));
  const v1 = snap();
  assert.deepEqual(mesh.apply({ snapshot: v1, decodeErrors: [] }), []);
  await mesh.ready;
  const v2 = snap({ services: [api, named, service('new', '10.96.0.40', [{ ip: '10.244.2.7', workload: 'p1', status: 'ready' }])], authorizationPolicies: [pol('bad', { action: 'X' as AuthorizationPolicy['action'] })] });
  const d: ConfigUpdate = { snapshot: v2, delta: diffSnapshots(v1, v2), decodeErrors: [] };
  assert.equal(mesh.apply(d).length, 1);
  assert.deepEqual(seen, [`${v1.version}:full:0`, `${v2.version}:delta:1`]);
  assert.equal(mesh.current?.serviceByVip('10.96.0.40', 80)?.service.key, 'shop/new');
  const live = mesh.liveView();
  assert.equal(live.serviceByVip('10.96.0.40', 80)?.service.key, 'shop/new');
  assert.deepEqual(live.authorizationPolicies().map((p) => [p.key, p.action]), [['shop/bad', 'DENY']], 'the rejected ALLOW became a deny-all');
  assert.ok(lines.some((l) => l.level === 40 && /1 resource\(s\) rejected/.test(l.msg)));

  mesh.onConnection({ state: 'connected' });
  assert.equal(mesh.staleSeconds(), 0);
  mesh.onConnection({ state: 'disconnected', error: new ControlError(14, 'connect ECONNREFUSED 10.96.0.20:15012'), retryInMs: 200 });
  now += 42_000;
  mesh.onConnection({ state: 'disconnected', error: new ControlError(14, 'connect ECONNREFUSED 10.96.0.20:15012'), retryInMs: 400 });
  assert.equal(mesh.staleSeconds(), 42);
  assert.equal(mesh.status().connected, false);
  assert.equal(mesh.current?.version, v2.version, 'the last config stays in use');
  const warns = lines.filter((l) => /unreachable/.test(l.msg));
  assert.equal(warns.length, 1, 'one warning per outage, then periodic');
  assert.match(warns[0]!.msg, /ECONNREFUSED.*serving config .* which is 0 s stale; running traffic is unaffected/);
  mesh.onConnection({ state: 'connected' });
  assert.ok(lines.some((l) => /reachable again/.test(l.msg)));
  assert.equal(mesh.staleSeconds(), 0);
  mesh.close();
});

test('normalizeIp', () => {
  const rows: [string, string][] = [
    ['::ffff:10.1.2.3', '10.1.2.3'],
    ['::FFFF:10.1.2.3', '10.1.2.3'],
    ['FD00::1', 'fd00::1'],
    ['10.1.2.3', '10.1.2.3'],
    ['::ffff:abcd', '::ffff:abcd'],
  ];
  for (const [input, want] of rows) assert.equal(normalizeIp(input), want, input);
});

test('MeshConfig.resolve: an unknown address is demanded once; known after the delta, or remembered as unknown', async () => {
  const demands: string[][] = [];
  let onUpdate: ((u: ConfigUpdate) => unknown) | undefined;
  const client = {
    subscribe: (opts: { onUpdate(u: ConfigUpdate): unknown }) => {
      onUpdate = (u) => opts.onUpdate(u);
      return { version: undefined, snapshot: undefined, demand: (a: readonly string[]) => void demands.push([...a]), close() {} };
    },
  };
  const mesh = new MeshConfig({ log: pino({ level: 'silent' }) });
  mesh.subscribe(client as never, 'n1');
  const v1 = snap();
  await onUpdate!({ snapshot: v1, decodeErrors: [] });
  assert.equal(await mesh.resolve('10.244.1.5'), true, 'a known pod needs no demand');
  assert.deepEqual(demands, []);

  // The control plane answers the demand with a delta that adds the Service behind the VIP.
  const pending = mesh.resolve('10.96.0.40', 2000);
  assert.deepEqual(demands, [['10.96.0.40']]);
  const v2 = snap({ services: [api, named, service('new', '10.96.0.40', [{ ip: '10.244.2.7', workload: 'p1', status: 'ready' }])] });
  await onUpdate!({ snapshot: v2, delta: diffSnapshots(v1, v2), decodeErrors: [] });
  assert.equal(await pending, true);
  assert.equal(mesh.liveView().serviceByVip('10.96.0.40', 80)?.service.key, 'shop/new');

  // An address outside the cluster: the wait runs out once, then it is not asked again for a while.
  assert.equal(await mesh.resolve('93.184.216.34', 30), false);
  assert.equal(await mesh.resolve('93.184.216.34', 30), false);
  assert.deepEqual(demands, [['10.96.0.40'], ['93.184.216.34']]);
  mesh.close();
});
