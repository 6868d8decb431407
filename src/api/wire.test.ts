import { test } from 'node:test';
import assert from 'node:assert/strict';
import protobuf from 'protobufjs';
import { diffSnapshots } from './delta.js';
import { fixtureService, fixtureSnapshot, fixtureWorkload, FIXTURE_TRUST } from './fixtures.js';
import { AMBIT_PROTO } from './proto.js';
import {
  decodeAgentMessage,
  decodeControlMessage,
  decodeSignRequest,
  decodeSignResponse,
  encodeAgentMessage,
  encodeControlMessage,
  encodeSignRequest,
  encodeSignResponse,
  WireError,
  type AgentMessage,
} from './wire.js';

const w1 = fixtureWorkload('u1', 'n1');
const snap = fixtureSnapshot('n1', {
  workloads: [w1, fixtureWorkload('u2', 'n1', { enrolled: false })],
  peers: [{ uid: 'p1', ips: ['10.1.0.7'], node: 'n2', identity: 'spiffe://cluster.local/ns/shop/sa/db', enrolled: true }],
  services: [fixtureService('shop', 'web', '10.96.0.10', [w1])],
  authorizationPolicies: [{ key: 'shop/allow', namespace: 'shop', name: 'allow', action: 'ALLOW', selector: { app: 'web' }, rules: [{ from: [{ principals: ['cluster.local/ns/a/sa/b'] }], to: [{ ports: [8080] }] }] }],
  peerAuthentications: [{ key: 'shop/strict', namespace: 'shop', name: 'strict', createdAt: '2025-01-01T00:00:00Z', mode: 'STRICT', portModes: { '9090': 'PERMISSIVE' } }],
  routes: [{ key: 'HTTPRoute/shop/r', kind: 'HTTPRoute', namespace: 'shop', name: 'r', parents: [{ service: 'shop/web' }], hostnames: [], rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/' } }], filters: [], backends: [{ service: 'shop/web', port: 80, weight: 1 }] }] }],
  trust: { ...FIXTURE_TRUST, roots: ['-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n'] },
});

test('agent messages round-trip', () => {
  const msgs: AgentMessage[] = [
    { subscribe: { node: 'n1', resumeVersion: '' } },
    { subscribe: { node: 'n1', resumeVersion: 'v1' } },
    { ack: { version: 'v1' } },
    { nack: { version: 'v1', errors: [{ type: 'authorizationPolicies', key: 'shop/allow', message: 'unknown field' }] } },
    { demand: { addresses: ['10.96.0.20', '10.244.2.7'] } },
  ];
  for (const m of msgs) assert.deepEqual(decodeAgentMessage(encodeAgentMessage(m)), m);
});

test('snapshots and deltas round-trip, every resource type included', () => {
  const decoded = decodeControlMessage(encodeControlMessage({ snapshot: snap }));
  assert.deepEqual(decoded, { message: { snapshot: snap }, errors: [] });
  const next = fixtureSnapshot('n1', { workloads: [fixtureWorkload('u3', 'n1')], trust: snap.trust });
  const delta = diffSnapshots(snap, next);
  assert.equal(delta.trust, undefined);
  assert.deepEqual(decodeControlMessage(encodeControlMessage({ delta })), { message: { delta }, errors: [] });
  const withTrust = diffSnapshots(snap, fixtureSnapshot('n1'));
  assert.deepEqual(decodeControlMessage(encodeControlMessage({ delta: withTrust })).message, { delta: withTrust });
});

test('sign messages round-trip', () => {
  const req = { podUid: 'u1', csrPem: 'PEM', ttlSeconds: 3600 };
  assert.deepEqual(decodeSignRequest(encodeSignRequest(req)), req);
  const res = { identity: 'spiffe://cluster.local/ns/a/sa/b', certChainPem: ['A', 'B'], notAfterMs: 1_900_000_000_123, trustBundlePem: ['R'] };
  assert.deepEqual(decodeSignResponse(encodeSignResponse(res)), res);
});

test('malformed input: clear WireErrors, never a crash', () => {
  const table: { name: string; bytes: Uint8Array; decode: (b: Uint8Array) => unknown; error: RegExp }[] = [
    { name: 'garbage', bytes: Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]), decode: decodeAgentMessage, error: /AgentMessage does not decode as protobuf/ },
    { name: 'truncated', bytes: encodeAgentMessage({ subscribe: { node: 'node-1', resumeVersion: 'v' } }).subarray(0, 5), decode: decodeAgentMessage, error: /does not decode/ },
    { name: 'empty agent message', bytes: new Uint8Array(0), decode: decodeAgentMessage, error: /none of subscribe, ack, nack, demand/ },
    { name: 'empty control message', bytes: new Uint8Array(0), decode: decodeControlMessage, error: /neither snapshot nor delta/ },
    { name: 'garbage sign request', bytes: Buffer.from('hello world, not protobuf'), decode: decodeSignRequest, error: /SignRequest does not decode/ },
  ];
  for (const row of table) {
    assert.throws(() => row.decode(row.bytes), (err: unknown) => err instanceof WireError && row.error.test(err.message), row.name);
  }
});

test('a bad resource body is left out and reported, the rest decodes', () => {
  const Control = protobuf.parse(AMBIT_PROTO).root.lookupType('ambit.v1.ControlMessage');
  const good = Buffer.from(JSON.stringify(w1));
  const bytes = Control.encode({
    snapshot: {
      version: 'v9',
      node: 'n1',
      trust: Buffer.from(JSON.stringify(snap.trust)),
      workloads: [
        { key: 'u1', json: good },
        { key: 'u2', json: Buffer.from('{not json') },
        { key: 'u3', json: good },
        { key: 'u4', json: Buffer.from('[1]') },
      ],
    },
  } as unknown as protobuf.Message).finish();
  const { message, errors } = decodeControlMessage(bytes);
  assert.ok('snapshot' in message);
  assert.deepEqual(message.snapshot.workloads, { u1: w1 });
  assert.deepEqual(errors.map((e) => `${e.type}/${e.key}`), ['workloads/u2', 'workloads/u3', 'workloads/u4']);
  assert.match(errors[1]!.message, /body has key "u1", not "u3"/);
  // A snapshot without its trust settings is unusable as a whole.
  const noTrust = Control.encode({ snapshot: { version: 'v', node: 'n1' } } as unknown as protobuf.Message).finish();
  assert.throws(() => decodeControlMessage(noTrust), /trust is missing/);
});
