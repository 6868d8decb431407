/**
 * Table tests of the PATCH semantics: RFC 7386 merge patch, RFC 6902 JSON patch, strategic merge
 * patch on built-in kinds (including what kubectl's client-side apply sends), the error shapes of
 * the real server, and the patch-strategy table.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiError } from './errors.js';
import { fieldType, model } from './models.js';
import {
  APPLY_PATCH,
  JSON_PATCH,
  MERGE_PATCH,
  STRATEGIC_MERGE_PATCH,
  applyPatch,
  goFormat,
  goJsonSyntaxError,
  jsonMergePatch,
} from './patch.js';
import { allPatchMeta, patchMeta } from './patchmeta.js';
import type { KObject } from './types.js';

type Json = Record<string, unknown>;

function deployment(): KObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: 'web',
      namespace: 'default',
      uid: 'u-1',
      resourceVersion: '7',
      labels: { app: 'web', tier: 'frontend' },
      finalizers: ['a.example.com/one', 'b.example.com/two'],
      ownerReferences: [
        { apiVersion: 'v1', kind: 'ConfigMap', name: 'owner-a', uid: 'ua' },
        { apiVersion: 'v1', kind: 'ConfigMap', name: 'owner-b', uid: 'ub' },
      ],
    },
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: 'web' } },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' } },
      template: {
        metadata: { labels: { app: 'web' } },
        spec: {
          containers: [
            {
              name: 'web',
              image: 'nginx:1.25',
              env: [{ name: 'A', value: '1' }],
              ports: [{ containerPort: 80, protocol: 'TCP' }],
            },
            { name: 'sidecar', image: 'envoy:1.30' },
          ],
          tolerations: [{ key: 'k1', operator: 'Exists' }],
          volumes: [
            { name: 'data', emptyDir: { medium: 'Memory' } },
            { name: 'cache', emptyDir: {} },
          ],
        },
      },
    },
    status: { replicas: 2 },
  };
}

/** Reads a path of keys and list indexes out of a result. */
function at(obj: unknown, ...path: (string | number)[]): unknown {
  return path.reduce<unknown>((v, k) => (v as Record<string | number, unknown>)[k], obj);
}

function containers(obj: KObject): Json[] {
  return at(obj, 'spec', 'template', 'spec', 'containers') as Json[];
}

function smp(obj: KObject, patch: unknown, modelName = 'V1Deployment'): KObject {
  return applyPatch(STRATEGIC_MERGE_PATCH, obj, JSON.stringify(patch), modelName);
}

function podSpecPatch(spec: Json): Json {
  return { spec: { template: { spec } } };
}

/** Asserts that `fn` throws an ApiError with these code, reason and message (and details if given). */
function rejects(fn: () => unknown, want: { code: number; reason: string; message: string | RegExp; details?: unknown }): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ApiError, `expected ApiError, got ${String(err)}`);
    assert.equal(err.code, want.code);
    assert.equal(err.reason, want.reason);
    if (typeof want.message === 'string') assert.equal(err.message, want.message);
    else assert.match(err.message, want.message);
    if (want.details !== undefined) assert.deepEqual(err.details, want.details);
    return true;
  });
}

const REJECTED = 'the server rejected our request due to an error in our request';

// ------------------------------------------------------------------------------------------------
// RFC 7386
// ------------------------------------------------------------------------------------------------

test('jsonMergePatch follows the examples of RFC 7386 appendix A', () => {
  const cases: [unknown, unknown, unknown][] = [
    [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
    [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
    [{ a: 'b' }, { a: null }, {}],
    [{ a: 'b', b: 'c' }, { a: null }, { b: 'c' }],
    [{ a: ['b'] }, { a: 'c' }, { a: 'c' }],
    [{ a: 'c' }, { a: ['b'] }, { a: ['b'] }],
    [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
    [{ a: [{ b: 'c' }] }, { a: [1] }, { a: [1] }],
    [['a', 'b'], ['c', 'd'], ['c', 'd']],
    [{ a: 'b' }, ['c'], ['c']],
    [{ a: 'foo' }, null, null],
    [{ a: 'foo' }, 'bar', 'bar'],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: 'b', c: null }, { a: 'b' }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ];
  for (const [target, patch, want] of cases) {
    assert.deepEqual(jsonMergePatch(structuredClone(target), patch), want, `${JSON.stringify(target)} + ${JSON.stringify(patch)}`);
  }
});

test('merge patch on a Deployment: nulls delete, maps merge, lists are replaced whole', () => {
  const out = applyPatch(
    MERGE_PATCH,
    deployment(),
    JSON.stringify({
      metadata: { labels: { tier: null, track: 'stable' } },
      spec: { replicas: 5, template: { spec: { containers: [{ name: 'web', image: 'nginx:1.27' }] } } },
    }),
  );
  assert.deepEqual(out.metadata.labels, { app: 'web', track: 'stable' });
  assert.equal(at(out, 'spec', 'replicas'), 5);
  assert.deepEqual(containers(out), [{ name: 'web', image: 'nginx:1.27' }]);
  assert.equal(at(out, 'spec', 'selector', 'matchLabels', 'app'), 'web');
});

test('merge patch body errors are the real server ones', () => {
  const cases: { body: string; validation?: string; message: string }[] = [
    { body: '{"a":', message: 'error decoding patch: unexpected end of JSON input' },
    { body: '[1]', message: 'error decoding patch: json: cannot unmarshal array into Go value of type map[string]interface {}' },
    { body: 'null', message: 'Invalid JSON Patch' },
    { body: '{x}', validation: 'Ignore', message: 'Invalid JSON Patch' },
  ];
  for (const c of cases) {
    rejects(() => applyPatch(MERGE_PATCH, deployment(), c.body, 'V1Deployment', { fieldValidation: c.validation }), {
      code: 400,
      reason: 'BadRequest',
      message: c.message,
    });
  }
});

// ------------------------------------------------------------------------------------------------
// RFC 6902
// ------------------------------------------------------------------------------------------------

test('JSON patch operations apply in order', () => {
  const cases: { name: string; ops: unknown[]; check: (o: KObject) => void }[] = [
    {
      name: 'add a label',
      ops: [{ op: 'add', path: '/metadata/labels/track', value: 'canary' }],
      check: (o) => assert.equal(o.metadata.labels?.['track'], 'canary'),
    },
    {
      name: 'remove a label',
      ops: [{ op: 'remove', path: '/metadata/labels/tier' }],
      check: (o) => assert.deepEqual(o.metadata.labels, { app: 'web' }),
    },
    {
      name: 'test then replace',
      ops: [
        { op: 'test', path: '/spec/replicas', value: 2 },
        { op: 'replace', path: '/spec/replicas', value: 4 },
      ],
      check: (o) => assert.equal(at(o, 'spec', 'replicas'), 4),
    },
    {
      name: 'append a container',
      ops: [{ op: 'add', path: '/spec/template/spec/containers/-', value: { name: 'log', image: 'busybox' } }],
      check: (o) => assert.deepEqual(containers(o).map((c) => c['name']), ['web', 'sidecar', 'log']),
    },
    {
      name: 'a label key with a slash is escaped as ~1',
      ops: [{ op: 'add', path: '/metadata/labels/app.kubernetes.io~1name', value: 'web' }],
      check: (o) => assert.equal(o.metadata.labels?.['app.kubernetes.io/name'], 'web'),
    },
    { name: 'a null patch changes nothing', ops: null as unknown as unknown[], check: (o) => assert.deepEqual(o, deployment()) },
  ];
  for (const c of cases) {
    const out = applyPatch(JSON_PATCH, deployment(), JSON.stringify(c.ops), 'V1Deployment');
    c.check(out);
  }
});

test('a JSON patch that does not apply is a bare 422', () => {
  const cases: { name: string; ops: unknown[] }[] = [
    { name: 'failed test', ops: [{ op: 'test', path: '/spec/replicas', value: 3 }] },
    { name: 'remove a missing path', ops: [{ op: 'remove', path: '/metadata/labels/nope' }] },
    { name: 'replace a missing path', ops: [{ op: 'replace', path: '/spec/paused', value: true }] },
    { name: 'add under a missing parent', ops: [{ op: 'add', path: '/metadata/annotations/x', value: 'y' }] },
    { name: 'unknown op', ops: [{ op: 'frobnicate', path: '/spec' }] },
    { name: 'operation without op', ops: [{ path: '/spec' }] },
  ];
  for (const c of cases) {
    rejects(() => applyPatch(JSON_PATCH, deployment(), JSON.stringify(c.ops), 'V1Deployment'), {
      code: 422,
      reason: 'Invalid',
      message: REJECTED,
      details: {},
    });
  }
});

test('an undecodable JSON patch is a 400 with the decoder message', () => {
  const cases: { body: string; validation?: string; message: string }[] = [
    { body: '[{"op":', message: 'error decoding patch: unexpected end of JSON input' },
    { body: '[x]', message: "error decoding patch: invalid character 'x' looking for beginning of value" },
    {
      body: '{"op":"add"}',
      message: 'error decoding patch: json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp',
    },
    { body: '["add"]', message: 'error decoding patch: json: cannot unmarshal string into Go value of type handlers.jsonPatchOp' },
    {
      body: '[{"op":1,"path":"/spec"}]',
      message: 'error decoding patch: json: cannot unmarshal number into Go struct field jsonPatchOp.op of type string',
    },
    { body: '{"op":"add"}', validation: 'Ignore', message: 'json: cannot unmarshal object into Go value of type jsonpatch.Patch' },
    { body: '[x]', validation: 'Ignore', message: "invalid character 'x' looking for beginning of value" },
  ];
  for (const c of cases) {
    rejects(() => applyPatch(JSON_PATCH, deployment(), c.body, 'V1Deployment', { fieldValidation: c.validation }), {
      code: 400,
      reason: 'BadRequest',
      message: c.message,
    });
  }
});

test('a JSON patch that leaves no object is a 422 about the patch', () => {
  rejects(() => applyPatch(JSON_PATCH, deployment(), '[{"op":"replace","path":"","value":[1]}]', 'V1Deployment'), {
    code: 422,
    reason: 'Invalid',
    message: /^ "" is invalid: patch: Invalid value: "\[1\]": couldn't get version\/kind; json parse error: json: cannot unmarshal array/,
  });
});

test('Go syntax error messages', () => {
  const cases: [string, string | undefined][] = [
    ['{"a":[1,2,{"b":null}],"c":-1.5e3,"d":true,"e":"\\u00e9\\n"}', undefined],
    ['', 'unexpected end of JSON input'],
    ['{"a":1', 'unexpected end of JSON input'],
    ['{a:1}', "invalid character 'a' looking for beginning of object key string"],
    ['{"a" 1}', "invalid character '1' after object key"],
    ['{"a":1 "b":2}', `invalid character '"' after object key:value pair`],
    ['[1 2]', "invalid character '2' after array element"],
    ['{"a":tru}', "invalid character '}' in literal true (expecting 'e')"],
    ['nul', 'unexpected end of JSON input'],
    ['{"a":1}x', "invalid character 'x' after top-level value"],
    ['-x', "invalid character 'x' in numeric literal"],
    ['1.e5', "invalid character 'e' after decimal point in numeric literal"],
    ['1e+', 'unexpected end of JSON input'],
    ['"a\\qb"', "invalid character 'q' in string escape code"],
    ['"a\nb"', "invalid character '\\n' in string literal"],
    ["'a'", "invalid character '\\'' looking for beginning of value"],
    ['{"a":é}', "invalid character 'Ã' looking for beginning of value"],
  ];
  for (const [text, want] of cases) assert.equal(goJsonSyntaxError(text), want, text);
});

// ------------------------------------------------------------------------------------------------
// Strategic merge patch
// ------------------------------------------------------------------------------------------------

test('strategic merge patch on a Deployment', () => {
  const cases: { name: string; patch: unknown; check: (o: KObject) => void }[] = [
    {
      name: "changing one container's image keeps the other container and its own fields",
      patch: podSpecPatch({ containers: [{ name: 'web', image: 'nginx:1.27' }] }),
      check: (o) =>
        assert.deepEqual(containers(o), [
          { name: 'web', image: 'nginx:1.27', env: [{ name: 'A', value: '1' }], ports: [{ containerPort: 80, protocol: 'TCP' }] },
          { name: 'sidecar', image: 'envoy:1.30' },
        ]),
    },
    {
      name: 'an env var new to the list goes first (the real server order)',
      patch: podSpecPatch({ containers: [{ name: 'web', env: [{ name: 'B', value: '2' }] }] }),
      check: (o) =>
        assert.deepEqual(at(containers(o), 0, 'env'), [
          { name: 'B', value: '2' },
          { name: 'A', value: '1' },
        ]),
    },
    {
      name: '$setElementOrder puts a new env var where the client wants it',
      patch: podSpecPatch({
        containers: [{ name: 'web', '$setElementOrder/env': [{ name: 'A' }, { name: 'B' }], env: [{ name: 'B', value: '2' }] }],
      }),
      check: (o) => assert.deepEqual((at(containers(o), 0, 'env') as Json[]).map((e) => e['name']), ['A', 'B']),
    },
    {
      name: 'changing an env var value merges by name',
      patch: podSpecPatch({ containers: [{ name: 'web', env: [{ name: 'A', value: '9' }] }] }),
      check: (o) => assert.deepEqual(at(containers(o), 0, 'env'), [{ name: 'A', value: '9' }]),
    },
    {
      name: 'a container new to the list goes first',
      patch: podSpecPatch({ containers: [{ name: 'log', image: 'busybox' }] }),
      check: (o) => assert.deepEqual(containers(o).map((c) => c['name']), ['log', 'web', 'sidecar']),
    },
    {
      name: '$patch: delete removes a container by name',
      patch: podSpecPatch({ containers: [{ name: 'sidecar', $patch: 'delete' }] }),
      check: (o) => assert.deepEqual(containers(o).map((c) => c['name']), ['web']),
    },
    {
      name: '$setElementOrder reorders the containers',
      patch: podSpecPatch({ '$setElementOrder/containers': [{ name: 'sidecar' }, { name: 'web' }] }),
      check: (o) => assert.deepEqual(containers(o).map((c) => c['name']), ['sidecar', 'web']),
    },
    {
      name: '$patch: replace in a list makes the rest of the patch list the whole list',
      patch: podSpecPatch({ containers: [{ name: 'only', image: 'x' }, { $patch: 'replace' }] }),
      check: (o) => assert.deepEqual(containers(o), [{ name: 'only', image: 'x' }]),
    },
    {
      name: 'ports merge by containerPort',
      patch: podSpecPatch({ containers: [{ name: 'web', ports: [{ containerPort: 80, name: 'http' }, { containerPort: 443 }] }] }),
      check: (o) =>
        assert.deepEqual(at(containers(o), 0, 'ports'), [
          { containerPort: 80, protocol: 'TCP', name: 'http' },
          { containerPort: 443 },
        ]),
    },
    {
      name: 'tolerations have no patch strategy and are replaced',
      patch: podSpecPatch({ tolerations: [{ key: 'k2', operator: 'Exists' }] }),
      check: (o) => assert.deepEqual(at(o, 'spec', 'template', 'spec', 'tolerations'), [{ key: 'k2', operator: 'Exists' }]),
    },
    {
      name: 'null deletes a label, other labels merge',
      patch: { metadata: { labels: { tier: null, track: 'stable' } } },
      check: (o) => assert.deepEqual(o.metadata.labels, { app: 'web', track: 'stable' }),
    },
    {
      name: 'null for a missing key is ignored',
      patch: { metadata: { annotations: null, labels: { nope: null } } },
      check: (o) => {
        assert.equal(o.metadata.annotations, undefined);
        assert.deepEqual(o.metadata.labels, { app: 'web', tier: 'frontend' });
      },
    },
    {
      name: '$patch: replace on a map replaces it',
      patch: { spec: { template: { metadata: { labels: { $patch: 'replace', role: 'x' } } } } },
      check: (o) => assert.deepEqual(at(o, 'spec', 'template', 'metadata', 'labels'), { role: 'x' }),
    },
    {
      name: '$patch: delete on a map empties it',
      patch: { spec: { selector: { matchLabels: { $patch: 'delete' } } } },
      check: (o) => assert.deepEqual(at(o, 'spec', 'selector', 'matchLabels'), {}),
    },
    {
      name: '$deleteFromPrimitiveList removes a finalizer',
      patch: { metadata: { '$deleteFromPrimitiveList/finalizers': ['a.example.com/one'] } },
      check: (o) => assert.deepEqual(o.metadata.finalizers, ['b.example.com/two']),
    },
    {
      // Patch items keep the patch order; a live-only item goes before a patch item only if it
      // was before it in the live list, so the new finalizer lands in front.
      name: 'finalizers merge as an ordered set, the new one first',
      patch: { metadata: { finalizers: ['c.example.com/three', 'b.example.com/two'] } },
      check: (o) => assert.deepEqual(o.metadata.finalizers, ['c.example.com/three', 'a.example.com/one', 'b.example.com/two']),
    },
    {
      name: 'ownerReferences merge by uid',
      patch: { metadata: { ownerReferences: [{ uid: 'ub', controller: true }] } },
      check: (o) =>
        assert.deepEqual(o.metadata.ownerReferences, [
          { apiVersion: 'v1', kind: 'ConfigMap', name: 'owner-a', uid: 'ua' },
          { apiVersion: 'v1', kind: 'ConfigMap', name: 'owner-b', uid: 'ub', controller: true },
        ]),
    },
    {
      name: '$retainKeys clears the strategy fields the patch does not keep',
      patch: { spec: { strategy: { $retainKeys: ['type'], type: 'Recreate' } } },
      check: (o) => assert.deepEqual(at(o, 'spec', 'strategy'), { type: 'Recreate' }),
    },
    {
      name: '$retainKeys in a volume swaps its source (what apply sends for volumes)',
      patch: podSpecPatch({
        volumes: [{ $retainKeys: ['configMap', 'name'], name: 'data', configMap: { name: 'cfg' } }],
      }),
      check: (o) => {
        assert.deepEqual(at(o, 'spec', 'template', 'spec', 'volumes'), [
          { name: 'data', configMap: { name: 'cfg' } },
          { name: 'cache', emptyDir: {} },
        ]);
      },
    },
    {
      name: 'a new subtree loses its nulls and $patch maps',
      patch: { spec: { paused: true, minReadySeconds: null, revisionHistoryLimit: 3 }, metadata: { annotations: { a: 'x', b: null } } },
      check: (o) => {
        assert.equal(at(o, 'spec', 'paused'), true);
        assert.equal(at(o, 'spec', 'revisionHistoryLimit'), 3);
        assert.deepEqual(o.metadata.annotations, { a: 'x' });
      },
    },
    {
      name: 'a scalar replaces a scalar, status is untouched by a spec patch',
      patch: { spec: { replicas: 4 } },
      check: (o) => {
        assert.equal(at(o, 'spec', 'replicas'), 4);
        assert.deepEqual(o['status'], { replicas: 2 });
      },
    },
  ];
  for (const c of cases) {
    const original = deployment();
    const out = smp(original, c.patch);
    assert.deepEqual(original, deployment(), `${c.name}: the original must not change`);
    try {
      c.check(out);
    } catch (err) {
      assert.fail(`${c.name}: ${(err as Error).message}`);
    }
  }
});

test('strategic merge patch merges Service ports by port and Pod conditions by type', () => {
  const service: KObject = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 's' },
    spec: {
      ports: [
        { name: 'http', port: 80, targetPort: 8080 },
        { name: 'https', port: 443, targetPort: 8443 },
      ],
    },
  };
  const svc = smp(service, { spec: { ports: [{ port: 443, targetPort: 9443 }] } }, 'V1Service');
  assert.deepEqual(at(svc, 'spec', 'ports'), [
    { name: 'http', port: 80, targetPort: 8080 },
    { name: 'https', port: 443, targetPort: 9443 },
  ]);

  const pod: KObject = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'p' },
    status: {
      conditions: [
        { type: 'PodScheduled', status: 'True' },
        { type: 'Ready', status: 'False' },
      ],
    },
  };
  const ready = smp(pod, { status: { conditions: [{ type: 'Ready', status: 'True' }] } }, 'V1Pod');
  assert.deepEqual(at(ready, 'status', 'conditions'), [
    { type: 'PodScheduled', status: 'True' },
    { type: 'Ready', status: 'True' },
  ]);
});

test("what kubectl's client-side apply sends: a three-way patch with the last-applied annotation", () => {
  const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';
  const manifest = (image: string, env: Json[], labels: Json, replicas: number) => ({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { labels, name: 'web', namespace: 'default' },
    spec: {
      replicas,
      selector: { matchLabels: { app: 'web' } },
      template: {
        metadata: { labels: { app: 'web' } },
        spec: { containers: [{ env, image, name: 'web' }, { image: 'envoy:1.30', name: 'sidecar' }] },
      },
    },
  });
  const before = manifest('nginx:1.25', [{ name: 'A', value: '1' }, { name: 'OLD', value: 'x' }], { app: 'web', old: 'x' }, 2);
  const after = manifest('nginx:1.27', [{ name: 'A', value: '1' }], { app: 'web' }, 3);

  // The live object: what an earlier apply created, plus fields the server and controllers own.
  const live = deployment();
  live.metadata.annotations = { [LAST_APPLIED]: JSON.stringify(before) + '\n', 'deployment.kubernetes.io/revision': '1' };
  live.metadata.labels = { app: 'web', old: 'x' };
  containers(live)[0]!['env'] = [
    { name: 'A', value: '1' },
    { name: 'OLD', value: 'x' },
  ];

  // CreateThreeWayMergePatch(last-applied, new manifest, live): changes from live to the new
  // manifest, deletions from last-applied to the new manifest, with $setElementOrder for lists.
  const patch = {
    metadata: { annotations: { [LAST_APPLIED]: JSON.stringify(after) + '\n' }, labels: { old: null } },
    spec: {
      replicas: 3,
      template: {
        spec: {
          '$setElementOrder/containers': [{ name: 'web' }, { name: 'sidecar' }],
          containers: [
            {
              '$setElementOrder/env': [{ name: 'A' }],
              env: [{ $patch: 'delete', name: 'OLD' }],
              image: 'nginx:1.27',
              name: 'web',
            },
          ],
        },
      },
    },
  };
  const out = smp(live, patch);
  assert.deepEqual(out.metadata.annotations, {
    [LAST_APPLIED]: JSON.stringify(after) + '\n',
    'deployment.kubernetes.io/revision': '1',
  });
  assert.deepEqual(out.metadata.labels, { app: 'web' });
  assert.equal(at(out, 'spec', 'replicas'), 3);
  assert.deepEqual(containers(out), [
    { name: 'web', image: 'nginx:1.27', env: [{ name: 'A', value: '1' }], ports: [{ containerPort: 80, protocol: 'TCP' }] },
    { name: 'sidecar', image: 'envoy:1.30' },
  ]);
  // Fields only the server has are kept.
  assert.deepEqual(at(out, 'spec', 'strategy', 'type'), 'RollingUpdate');
  assert.deepEqual(out['status'], { replicas: 2 });
});

test('strategic merge patch errors match the real server', () => {
  const withImagePullSecrets = (secrets: unknown[]) => {
    const d = deployment();
    (at(d, 'spec', 'template', 'spec') as Json)['imagePullSecrets'] = secrets;
    return d;
  };
  const cases: { name: string; original?: KObject; patch: string; code: number; reason: string; message: string | RegExp }[] = [
    {
      name: 'not an object',
      patch: '[1]',
      code: 400,
      reason: 'BadRequest',
      message: 'json: cannot unmarshal array into Go value of type map[string]interface {}',
    },
    { name: 'not JSON', patch: '{spec}', code: 400, reason: 'BadRequest', message: "invalid character 's' looking for beginning of object key string" },
    {
      name: '$retainKeys not naming a patched key',
      patch: JSON.stringify({ spec: { strategy: { $retainKeys: ['type'], rollingUpdate: { maxSurge: 1 } } } }),
      code: 400,
      reason: 'BadRequest',
      message: 'invalid patch format of retainKeys',
    },
    {
      name: 'malformed $setElementOrder',
      patch: JSON.stringify(podSpecPatch({ $setElementOrder: [{ name: 'web' }] })),
      code: 400,
      reason: 'BadRequest',
      message: 'invalid patch format of setElementOrder list',
    },
    {
      name: 'malformed $deleteFromPrimitiveList',
      patch: JSON.stringify({ metadata: { '$deleteFromPrimitiveListfinalizers': ['x'] } }),
      code: 400,
      reason: 'BadRequest',
      message: 'invalid patch format of primitive list',
    },
    {
      name: 'a list of lists',
      original: withImagePullSecrets([]),
      patch: JSON.stringify(podSpecPatch({ imagePullSecrets: [[{ name: 'x' }]] })),
      code: 422,
      reason: 'Invalid',
      message: REJECTED,
    },
    {
      name: 'a list mixing objects and lists',
      patch: JSON.stringify(podSpecPatch({ containers: [[{ name: 'x' }]] })),
      code: 500,
      reason: '',
      message: /^list element types are not identical: \[\[map\[/,
    },
    {
      name: 'a list item without its merge key',
      patch: JSON.stringify(podSpecPatch({ containers: [{ image: 'x' }] })),
      code: 500,
      reason: '',
      message: 'map: map[image:x] does not contain declared merge key: name',
    },
    {
      name: '$patch: merge in a list',
      patch: JSON.stringify(podSpecPatch({ containers: [{ name: 'web', $patch: 'merge' }] })),
      code: 500,
      reason: '',
      message: 'merging lists cannot yet be specified in the patch',
    },
    {
      name: 'an unknown $patch in a map',
      patch: JSON.stringify({ spec: { selector: { $patch: 'frob', matchLabels: { a: 'b' } } } }),
      code: 500,
      reason: '',
      message: 'unknown patch type: frob in map: map[$patch:frob matchLabels:map[a:b]]',
    },
    {
      name: '$setElementOrder out of step with the patch list',
      patch: JSON.stringify(
        podSpecPatch({ '$setElementOrder/containers': [{ name: 'web' }], containers: [{ name: 'sidecar', image: 'y' }] }),
      ),
      code: 500,
      reason: '',
      message: /^the order in patch list:\n\[map\[image:y name:sidecar\]\]\n doesn't match \$setElementOrder list:\n\[map\[name:web\]\]$/,
    },
  ];
  for (const c of cases) {
    rejects(() => applyPatch(STRATEGIC_MERGE_PATCH, c.original ?? deployment(), c.patch, 'V1Deployment'), c);
  }
});

test('content types: custom resources refuse strategic merge patch, unknown types are 415', () => {
  const widget: KObject = { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' }, spec: { size: 1 } };
  rejects(() => applyPatch(STRATEGIC_MERGE_PATCH, widget, '{"spec":{"size":2}}'), {
    code: 415,
    reason: 'UnsupportedMediaType',
    message:
      'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml',
  });
  assert.deepEqual(applyPatch(MERGE_PATCH, widget, '{"spec":{"size":2}}').spec, { size: 2 });
  rejects(() => applyPatch('application/json', deployment(), '{}', 'V1Deployment'), {
    code: 415,
    reason: 'UnsupportedMediaType',
    message:
      'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml',
  });
  rejects(() => applyPatch(APPLY_PATCH, deployment(), 'spec: {}', 'V1Deployment'), {
    code: 500,
    reason: '',
    message: 'application/apply-patch+yaml: unimplemented patch type',
  });
  // Parameters after ';' are cut off, as the server does; a Buffer body is read as UTF-8.
  const out = applyPatch(`${STRATEGIC_MERGE_PATCH}; charset=utf-8`, deployment(), Buffer.from('{"spec":{"replicas":1}}'), 'V1Deployment');
  assert.equal(at(out, 'spec', 'replicas'), 1);
});

test('a "__proto__" member is plain data to every patch type', () => {
  const body = '{"metadata":{"__proto__":{"polluted":"yes"},"labels":{"__proto__":{"x":"y"}}}}';
  for (const type of [MERGE_PATCH, STRATEGIC_MERGE_PATCH]) {
    const out = applyPatch(type, deployment(), body, 'V1Deployment');
    assert.equal(({} as Json)['polluted'], undefined, `${type}: Object.prototype untouched`);
    assert.equal(Object.getPrototypeOf(out.metadata), Object.prototype, `${type}: metadata keeps its prototype`);
    assert.deepEqual(Object.getOwnPropertyDescriptor(out.metadata, '__proto__')?.value, { polluted: 'yes' });
  }
  const ops = '[{"op":"add","path":"/metadata/__proto__","value":{"polluted":"yes"}}]';
  assert.throws(() => applyPatch(JSON_PATCH, deployment(), ops, 'V1Deployment'));
  assert.equal(({} as Json)['polluted'], undefined);
});

test('goFormat prints decoded JSON as fmt %v does', () => {
  const cases: [unknown, string][] = [
    [{ b: [1, 'x'], a: null }, 'map[a:<nil> b:[1 x]]'],
    [1.5, '1.5'],
    [1234567.5, '1.2345675e+06'],
    [true, 'true'],
  ];
  for (const [v, want] of cases) assert.equal(goFormat(v), want);
});

// ------------------------------------------------------------------------------------------------
// Patch metadata table
// ------------------------------------------------------------------------------------------------

test('patchMeta answers from the Go struct tags', () => {
  const cases: [string, string, unknown][] = [
    ['V1PodSpec', 'containers', { strategy: 'merge', mergeKey: 'name' }],
    ['V1PodSpec', 'volumes', { strategy: 'merge,retainKeys', mergeKey: 'name' }],
    ['V1PodSpec', 'tolerations', undefined],
    ['V1ObjectMeta', 'finalizers', { strategy: 'merge' }],
    ['V1ObjectMeta', 'ownerReferences', { strategy: 'merge', mergeKey: 'uid' }],
    ['V1Container', 'env', { strategy: 'merge', mergeKey: 'name' }],
    ['V1Container', 'volumeMounts', { strategy: 'merge', mergeKey: 'mountPath' }],
    ['V1Container', 'envFrom', undefined],
    ['V1ServiceSpec', 'ports', { strategy: 'merge', mergeKey: 'port' }],
    ['V1DeploymentSpec', 'strategy', { strategy: 'retainKeys' }],
    ['V1DeploymentStatus', 'conditions', { strategy: 'merge', mergeKey: 'type' }],
    ['V1Role', 'rules', undefined],
    ['V1EndpointSlice', 'endpoints', undefined],
    ['V1PodSpec', 'toString', undefined],
  ];
  for (const [m, f, want] of cases) assert.deepEqual(patchMeta(m, f), want, `${m}.${f}`);
});

test('every patch metadata entry names a real client-node field of the right shape', () => {
  let count = 0;
  for (const [m, field, meta] of allPatchMeta()) {
    count++;
    assert.ok(model(m), `model ${m} exists`);
    const t = fieldType(m, field);
    assert.ok(t, `${m}.${field} exists`);
    if (meta.strategy?.includes('merge')) {
      assert.equal(t.t, 'array', `${m}.${field} is a list`);
      if (meta.mergeKey) {
        assert.ok(t.t === 'array' && t.items.t === 'model', `${m}.${field} is a list of objects`);
        if (t.t === 'array' && t.items.t === 'model') assert.ok(fieldType(t.items.name, meta.mergeKey), `${t.items.name}.${meta.mergeKey} exists`);
      } else {
        assert.ok(t.t === 'array' && t.items.t === 'string', `${m}.${field} is a list of strings`);
      }
    } else {
      assert.equal(t.t, 'model', `${m}.${field} is an object`);
    }
  }
  assert.ok(count > 40);
});
