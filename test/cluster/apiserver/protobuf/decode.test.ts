// Tests for decodeProtobufBody: real kubectl request bodies (fixtures.ts, from capture.ts) must decode
// to exactly kubectl's own JSON for the same object; hand-built messages cover the special types,
// inline structs, Go's omitempty/pointer rules, and the error statuses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import protobuf from 'protobufjs';
import { ApiError } from '../errors.js';
import { decodeProtobufBody, protobufKinds } from './decode.js';
import { KIND_MESSAGES, PROTO_SOURCES } from './schema.js';
import { CAPTURED } from './fixtures.js';

const MAGIC = Buffer.from('k8s\0', 'latin1');

const root = new protobuf.Root();
for (const source of PROTO_SOURCES) protobuf.parse(source, root, { keepCase: true });
root.resolveAll();
const Unknown = root.lookupType('k8s.io.apimachinery.pkg.runtime.Unknown');

function encode(typeName: string, obj: Record<string, unknown>): Uint8Array {
  const type = root.lookupType(typeName);
  return type.encode(type.fromObject(obj)).finish();
}

function wrap(typeMeta: { apiVersion?: string; kind?: string }, raw: Uint8Array, extra: Record<string, unknown> = {}): Buffer {
  return Buffer.concat([MAGIC, Unknown.encode(Unknown.fromObject({ typeMeta, raw, ...extra })).finish()]);
}

/** A body for `apiVersion/kind` holding `obj`, encoded with the schema's message for that kind. */
function body(apiVersion: string, kind: string, obj: Record<string, unknown>): Buffer {
  return wrap({ apiVersion, kind }, encode(KIND_MESSAGES[`${apiVersion}/${kind}`] ?? KIND_MESSAGES[`*/${kind}`]!, obj));
}

function rejects(fn: () => unknown, code: number, message: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof ApiError && e.code === code && message.test(e.message));
}

// ------------------------------------------------------------------ real kubectl bodies

test('real kubectl create bodies decode to exactly the JSON kubectl renders for the same object', () => {
  const withJson = CAPTURED.filter((f) => f.json !== undefined && f.json !== null);
  assert.ok(withJson.length >= 15);
  for (const f of withJson) {
    if (['job', 'pdb', 'quota'].includes(f.name)) continue;
    assert.deepStrictEqual(decodeProtobufBody(Buffer.from(f.body, 'base64')), f.json, `kubectl ${f.args.join(' ')}`);
  }
});

test('real kubectl bodies without a dry-run rendering decode to the Go JSON form', () => {
  const meta = { creationTimestamp: null };
  const expected: Record<string, unknown> = {
    token: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', metadata: meta, spec: { audiences: ['api', 'vault'], expirationSeconds: 900 }, status: { token: '', expirationTimestamp: null } },
    'token-bound': { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', metadata: meta, spec: { audiences: null, boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: 'lonely', uid: '1234' } }, status: { token: '', expirationTimestamp: null } },
    'can-i': { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview', metadata: meta, spec: { resourceAttributes: { namespace: 'default', verb: 'list', resource: 'pods' } }, status: { allowed: false } },
    'can-i-subresource': { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview', metadata: meta, spec: { resourceAttributes: { verb: 'get', resource: 'pods', subresource: 'log' } }, status: { allowed: false } },
    'can-i-nonresource': { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview', metadata: meta, spec: { nonResourceAttributes: { path: '/healthz', verb: 'get' } }, status: { allowed: false } },
    'can-i-list': { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectRulesReview', metadata: meta, spec: { namespace: 'default' }, status: { resourceRules: null, nonResourceRules: null, incomplete: false } },
    whoami: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview', metadata: meta, status: { userInfo: {} } },
    'drain-delete': { apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 7 },
  };
  for (const [name, want] of Object.entries(expected)) {
    const f = CAPTURED.find((c) => c.name === name);
    assert.ok(f, `fixture ${name}`);
    assert.deepStrictEqual(decodeProtobufBody(Buffer.from(f.body, 'base64')), want, name);
  }
});

test('the schema covers every field kubectl sent (re-encoding what was decoded loses no bytes)', () => {
  for (const f of CAPTURED) {
    const bytes = Buffer.from(f.body, 'base64');
    const env = Unknown.decode(bytes.subarray(4)) as unknown as { typeMeta: { apiVersion: string; kind: string }; raw: Uint8Array };
    const name = KIND_MESSAGES[`${env.typeMeta.apiVersion}/${env.typeMeta.kind}`] ?? KIND_MESSAGES[`*/${env.typeMeta.kind}`];
    if (!name) continue; // kinds with no schema: asserted to be 415 below
    const type = root.lookupType(name);
    assert.equal(type.encode(type.decode(env.raw)).finish().length, env.raw.length, `${f.name}: fields outside the schema`);
  }
});

test('kinds kubectl sends as protobuf that have no schema here are 415 (Job, PodDisruptionBudget, ResourceQuota)', () => {
  for (const name of ['job', 'pdb', 'quota']) {
    const f = CAPTURED.find((c) => c.name === name)!;
    rejects(() => decodeProtobufBody(Buffer.from(f.body, 'base64')), 415, /cannot decode protobuf for .*Kind=(Job|PodDisruptionBudget|ResourceQuota)/);
  }
});

// ------------------------------------------------------------------ hand-built messages

test('a Deployment: Time, IntOrString, Quantity, inline structs, pointer zeros and omitempty zeros', () => {
  const got = decodeProtobufBody(
    body('apps/v1', 'Deployment', {
      metadata: {
        name: 'web',
        namespace: '',
        generation: 0,
        labels: { app: 'web' },
        creationTimestamp: { seconds: 1700000000, nanos: 999 },
        ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: 'u-1', controller: false }],
        managedFields: [{ manager: 'kubectl', operation: 'Update', apiVersion: 'apps/v1', time: { seconds: 1700000001 }, fieldsType: 'FieldsV1', fieldsV1: { raw: Buffer.from('{"f:spec":{}}') } }],
      },
      spec: {
        replicas: 0,
        selector: { matchLabels: { app: 'web' } },
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: { type: 1, strVal: '25%' }, maxUnavailable: { type: 0, intVal: 0 } } },
        template: {
          metadata: { labels: { app: 'web' }, creationTimestamp: {} },
          spec: {
            terminationGracePeriodSeconds: 0,
            hostNetwork: false,
            volumes: [
              { name: 'data', volumeSource: { emptyDir: {} } },
              { name: 'cfg', volumeSource: { configMap: { localObjectReference: { name: 'cfg' }, defaultMode: 420 } } },
            ],
            containers: [
              {
                name: 'web',
                image: 'nginx',
                ports: [{ containerPort: 80, hostPort: 0, protocol: 'TCP' }],
                env: [
                  { name: 'A', value: 'x' },
                  { name: 'EMPTY', value: '' },
                  { name: 'POD', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
                  { name: 'PW', valueFrom: { secretKeyRef: { localObjectReference: { name: 'creds' }, key: 'pw', optional: false } } },
                ],
                envFrom: [{ configMapRef: { localObjectReference: { name: 'cfg' } } }],
                resources: { limits: { cpu: { string: '500m' } }, requests: { memory: { string: '64Mi' } } },
                volumeMounts: [{ name: 'data', mountPath: '/data', readOnly: true }],
                readinessProbe: { handler: { httpGet: { path: '/healthz', port: { type: 0, intVal: 8080 } } }, periodSeconds: 5 },
                livenessProbe: { handler: { tcpSocket: { port: { type: 1, strVal: 'http' } } } },
                imagePullPolicy: 'IfNotPresent',
              },
            ],
          },
        },
      },
      status: {},
    }),
  );
  assert.deepStrictEqual(got, {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: 'web',
      labels: { app: 'web' },
      creationTimestamp: '2023-11-14T22:13:20Z',
      ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: 'u-1', controller: false }],
      managedFields: [{ manager: 'kubectl', operation: 'Update', apiVersion: 'apps/v1', time: '2023-11-14T22:13:21Z', fieldsType: 'FieldsV1', fieldsV1: { 'f:spec': {} } }],
    },
    spec: {
      replicas: 0,
      selector: { matchLabels: { app: 'web' } },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: 0 } },
      template: {
        metadata: { labels: { app: 'web' }, creationTimestamp: null },
        spec: {
          terminationGracePeriodSeconds: 0,
          volumes: [
            { name: 'data', emptyDir: {} },
            { name: 'cfg', configMap: { name: 'cfg', defaultMode: 420 } },
          ],
          containers: [
            {
              name: 'web',
              image: 'nginx',
              ports: [{ containerPort: 80, protocol: 'TCP' }],
              env: [
                { name: 'A', value: 'x' },
                { name: 'EMPTY' },
                { name: 'POD', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
                { name: 'PW', valueFrom: { secretKeyRef: { name: 'creds', key: 'pw', optional: false } } },
              ],
              envFrom: [{ configMapRef: { name: 'cfg' } }],
              resources: { limits: { cpu: '500m' }, requests: { memory: '64Mi' } },
              volumeMounts: [{ name: 'data', mountPath: '/data', readOnly: true }],
              readinessProbe: { httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 5 },
              livenessProbe: { tcpSocket: { port: 'http' } },
              imagePullPolicy: 'IfNotPresent',
            },
          ],
        },
      },
    },
    status: {},
  });
});

test('a Secret: bytes map values are base64, a false pointer bool stays, stringData is a plain map', () => {
  const got = decodeProtobufBody(
    body('v1', 'Secret', {
      metadata: { name: 'bin', namespace: 'default' },
      data: { 'key.bin': Buffer.from([0, 1, 0xfe, 0xff]), empty: Buffer.alloc(0) },
      stringData: { user: 'admin' },
      type: 'Opaque',
      immutable: false,
    }),
  );
  assert.deepStrictEqual(got, {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'bin', namespace: 'default' },
    data: { 'key.bin': 'AAH+/w==', empty: '' },
    stringData: { user: 'admin' },
    type: 'Opaque',
    immutable: false,
  });
});

test('a ClusterRoleBinding keeps the roleRef and subject fields Go always writes', () => {
  const got = decodeProtobufBody(
    body('rbac.authorization.k8s.io/v1', 'ClusterRoleBinding', {
      metadata: { name: 'admins' },
      subjects: [
        { kind: 'Group', apiGroup: 'rbac.authorization.k8s.io', name: 'admins', namespace: '' },
        { kind: 'ServiceAccount', apiGroup: '', name: 'robot', namespace: 'ops' },
      ],
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
    }),
  );
  assert.deepStrictEqual(got, {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: { name: 'admins' },
    subjects: [
      { kind: 'Group', apiGroup: 'rbac.authorization.k8s.io', name: 'admins' },
      { kind: 'ServiceAccount', name: 'robot', namespace: 'ops' },
    ],
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
  });
});

test('a SelfSubjectAccessReview with field and label selector attributes', () => {
  const got = decodeProtobufBody(
    body('authorization.k8s.io/v1', 'SelfSubjectAccessReview', {
      metadata: {},
      spec: {
        resourceAttributes: {
          namespace: 'default',
          verb: 'list',
          group: 'apps',
          resource: 'deployments',
          fieldSelector: { requirements: [{ key: 'metadata.name', operator: 'In', values: ['web'] }] },
          labelSelector: { rawSelector: 'app=web' },
        },
      },
      status: { allowed: false },
    }),
  );
  assert.deepStrictEqual(got, {
    apiVersion: 'authorization.k8s.io/v1',
    kind: 'SelfSubjectAccessReview',
    metadata: {},
    spec: {
      resourceAttributes: {
        namespace: 'default',
        verb: 'list',
        group: 'apps',
        resource: 'deployments',
        fieldSelector: { requirements: [{ key: 'metadata.name', operator: 'In', values: ['web'] }] },
        labelSelector: { rawSelector: 'app=web' },
      },
    },
    status: { allowed: false },
  });
});

test('a TokenRequest with a bound object, and an Eviction whose zero grace period is kept', () => {
  assert.deepStrictEqual(
    decodeProtobufBody(
      body('authentication.k8s.io/v1', 'TokenRequest', {
        spec: { audiences: ['https://kubernetes.default.svc'], expirationSeconds: 3600, boundObjectRef: { kind: 'Secret', apiVersion: 'v1', name: 's', uid: '' } },
        status: { expirationTimestamp: { seconds: 0 } },
      }),
    ),
    {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: { audiences: ['https://kubernetes.default.svc'], expirationSeconds: 3600, boundObjectRef: { kind: 'Secret', apiVersion: 'v1', name: 's' } },
      status: { expirationTimestamp: '1970-01-01T00:00:00Z' },
    },
  );
  assert.deepStrictEqual(
    decodeProtobufBody(body('policy/v1', 'Eviction', { metadata: { name: 'web-0', namespace: 'default' }, deleteOptions: { gracePeriodSeconds: 0, preconditions: { uid: 'abc' }, dryRun: ['All'] } })),
    { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name: 'web-0', namespace: 'default' }, deleteOptions: { gracePeriodSeconds: 0, preconditions: { uid: 'abc' }, dryRun: ['All'] } },
  );
});

test('DeleteOptions decodes under any group version; fields outside the schema are skipped', () => {
  assert.deepStrictEqual(decodeProtobufBody(body('apps/v1', 'DeleteOptions', { propagationPolicy: 'Foreground' })), { apiVersion: 'apps/v1', kind: 'DeleteOptions', propagationPolicy: 'Foreground' });
  // field 99, length-delimited "zz": a field this schema does not know
  const raw = Buffer.concat([encode('k8s.io.api.core.v1.Namespace', { metadata: { name: 'x' } }), Buffer.from([0x9a, 0x06, 0x02, 0x7a, 0x7a])]);
  assert.deepStrictEqual(decodeProtobufBody(wrap({ apiVersion: 'v1', kind: 'Namespace' }, raw)), { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'x' } });
});

test('an empty raw object is just its apiVersion and kind', () => {
  assert.deepStrictEqual(decodeProtobufBody(wrap({ apiVersion: 'v1', kind: 'Namespace' }, new Uint8Array())), { apiVersion: 'v1', kind: 'Namespace' });
});

test('protobufKinds lists the kinds with a schema', () => {
  const kinds = protobufKinds();
  for (const k of ['v1/Namespace', 'apps/v1/Deployment', 'policy/v1/Eviction', 'authorization.k8s.io/v1/SelfSubjectRulesReview', '*/DeleteOptions']) assert.ok(kinds.includes(k), k);
});

// ------------------------------------------------------------------ errors

test('malformed bodies are 400 BadRequest; kinds and content types it cannot decode are 415', () => {
  const cases: { name: string; body: Buffer; code: number; message: RegExp }[] = [
    { name: 'JSON sent with the protobuf content type', body: Buffer.from('{"kind":"Namespace"}'), code: 400, message: /does not appear to be a protobuf message, expected prefix \[107 56 115 0\]/ },
    { name: 'too short for the magic', body: Buffer.from('k8'), code: 400, message: /expected prefix/ },
    { name: 'truncated envelope', body: Buffer.concat([MAGIC, Buffer.from([0x0a, 0x7f, 0x01])]), code: 400, message: /protobuf envelope/ },
    { name: 'truncated object', body: wrap({ apiVersion: 'v1', kind: 'ConfigMap' }, Buffer.from([0x0a, 0x05, 0x0a])), code: 400, message: /unable to decode v1, Kind=ConfigMap from protobuf/ },
    { name: 'no kind', body: wrap({ apiVersion: 'v1' }, new Uint8Array()), code: 400, message: /Object 'Kind' is missing/ },
    { name: 'encoded content', body: wrap({ apiVersion: 'v1', kind: 'ConfigMap' }, new Uint8Array(), { contentEncoding: 'gzip' }), code: 400, message: /content encoding "gzip"/ },
    { name: 'JSON wrapped in the envelope', body: wrap({ apiVersion: 'v1', kind: 'ConfigMap' }, Buffer.from('{}'), { contentType: 'application/json' }), code: 415, message: /application\/json content/ },
    { name: 'a kind with no schema', body: wrap({ apiVersion: 'batch/v1', kind: 'CronJob' }, new Uint8Array()), code: 415, message: /batch\/v1, Kind=CronJob - send it as application\/json/ },
    { name: 'a known kind in another group version', body: wrap({ apiVersion: 'v2', kind: 'Namespace' }, new Uint8Array()), code: 415, message: /v2, Kind=Namespace/ },
  ];
  for (const c of cases) rejects(() => decodeProtobufBody(c.body), c.code, c.message);
});

test('the 415 carries the UnsupportedMediaType reason and a Status the client can show', () => {
  try {
    decodeProtobufBody(wrap({ apiVersion: 'batch/v1', kind: 'Job' }, new Uint8Array()));
    assert.fail('expected a throw');
  } catch (e) {
    assert.ok(e instanceof ApiError);
    assert.equal(e.toStatus().reason, 'UnsupportedMediaType');
    assert.equal(e.toStatus().code, 415);
  }
});
