import assert from 'node:assert/strict';
import { test } from 'node:test';
import YAML from 'yaml';

import { builtinResources } from './builtins.js';
import { decodeOpenapiV2, encodeOpenapiV2, negotiateOpenapiV2, OPENAPI_V2_PROTOBUF, openapiV2Document, openapiV2Protobuf, schemaV2 } from './openapiv2.js';
import { patchMeta } from './patchmeta.js';
import type { ResourceType } from './types.js';

type Json = Record<string, any>;

const widgets: ResourceType = {
  group: 'stable.example.com',
  version: 'v1',
  kind: 'Widget',
  listKind: 'WidgetList',
  plural: 'widgets',
  singular: 'widget',
  namespaced: true,
  shortNames: [],
  categories: [],
  verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'],
  subresources: { status: true },
  schema: {
    kind: 'openapi',
    schema: {
      type: 'object',
      properties: {
        spec: {
          type: 'object',
          required: ['size', 'note'],
          properties: {
            size: { type: 'integer', minimum: 1, default: 3 },
            note: { type: 'string', nullable: true, enum: ['a', 'b'] },
            blob: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true, properties: { a: { type: 'string' } } },
          },
        },
      },
    },
  },
  custom: true,
};

const builtins = builtinResources();
const decoded: Json = decodeOpenapiV2(openapiV2Protobuf([...builtins, widgets], { patchMeta }));

function ext(o: Json, name: string): unknown {
  const e = (o.vendor_extension ?? []).find((x: Json) => x.name === name);
  return e ? YAML.parse(e.value.yaml) : undefined;
}

function definition(name: string): Json | undefined {
  return decoded.definitions.additional_properties.find((d: Json) => d.name === name)?.value;
}

function property(schema: Json, name: string): Json | undefined {
  return schema.properties?.additional_properties.find((p: Json) => p.name === name)?.value;
}

/** What cli-runtime's v2 query param verifier does: the PATCH operation tagged with the kind. */
function patchOpFor(gvk: { group: string; version: string; kind: string }): Json | undefined {
  for (const p of decoded.paths.path) {
    const g = p.value.patch && (ext(p.value.patch, 'x-kubernetes-group-version-kind') as Json | undefined);
    if (g && g.group === gvk.group && g.version === gvk.version && g.kind === gvk.kind) return p.value.patch;
  }
  return undefined;
}

function queryParamNames(op: Json): string[] {
  return (op.parameters ?? []).map((p: Json) => p.parameter?.non_body_parameter?.query_parameter_sub_schema?.name).filter(Boolean);
}

test('the document decodes as swagger 2.0 with the Kubernetes title and bearer token security', () => {
  assert.equal(decoded.swagger, '2.0');
  assert.equal(decoded.info.title, 'Kubernetes');
  assert.deepEqual(decoded.security, [{ additional_properties: [{ name: 'BearerToken', value: {} }] }]);
  const bearer = decoded.security_definitions.additional_properties[0];
  assert.equal(bearer.name, 'BearerToken');
  assert.deepEqual({ ...bearer.value.api_key_security, description: undefined }, { type: 'apiKey', name: 'authorization', in: 'header', description: undefined });
});

test('a PATCH operation names its kind as a map and takes fieldValidation and dryRun', () => {
  const op = patchOpFor({ group: 'apps', version: 'v1', kind: 'Deployment' });
  assert.ok(op, 'no PATCH operation for apps/v1 Deployment');
  assert.ok(queryParamNames(op).includes('fieldValidation'));
  assert.ok(queryParamNames(op).includes('dryRun'));
  assert.ok(op.consumes.includes('application/strategic-merge-patch+json'));
  assert.equal(ext(op, 'x-kubernetes-action'), 'patch');
  const body = op.parameters.find((p: Json) => p.parameter?.body_parameter)?.parameter.body_parameter;
  assert.equal(body.in, 'body');
  assert.equal(body.schema._ref, '#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch');
});

test('custom resources take no strategic merge patch', () => {
  const op = patchOpFor({ group: 'stable.example.com', version: 'v1', kind: 'Widget' });
  assert.ok(op);
  assert.ok(!op.consumes.includes('application/strategic-merge-patch+json'));
  assert.ok(op.consumes.includes('application/merge-patch+json'));
});

test('create-only kinds have no PATCH operation but a definition tagged with their kind', () => {
  assert.equal(patchOpFor({ group: 'authentication.k8s.io', version: 'v1', kind: 'TokenReview' }), undefined);
  const def = definition('io.k8s.api.authorization.v1.SubjectAccessReview');
  assert.ok(def);
  assert.deepEqual(ext(def, 'x-kubernetes-group-version-kind'), [{ group: 'authorization.k8s.io', kind: 'SubjectAccessReview', version: 'v1' }]);
  assert.equal(property(def, 'spec')?._ref, '#/definitions/io.k8s.api.authorization.v1.SubjectAccessReviewSpec');
});

test('path parameters are path sub-schemas, responses reference definitions', () => {
  const item = decoded.paths.path.find((p: Json) => p.name === '/apis/apps/v1/namespaces/{namespace}/deployments/{name}').value;
  const pathParams = item.parameters.map((p: Json) => p.parameter.non_body_parameter.path_parameter_sub_schema).filter(Boolean);
  assert.deepEqual(pathParams.map((p: Json) => [p.name, p.in, p.required, p.type]), [['name', 'path', true, 'string'], ['namespace', 'path', true, 'string']]);
  const ok = item.get.responses.response_code.find((r: Json) => r.name === '200').value.response;
  assert.equal(ok.schema.schema._ref, '#/definitions/io.k8s.api.apps.v1.Deployment');
});

test('list properties carry the patch extensions as YAML scalars', () => {
  const podSpec = definition('io.k8s.api.core.v1.PodSpec');
  assert.ok(podSpec);
  const containers = property(podSpec, 'containers')!;
  assert.equal(ext(containers, 'x-kubernetes-patch-merge-key'), 'name');
  assert.equal(ext(containers, 'x-kubernetes-patch-strategy'), 'merge');
  assert.deepEqual(containers.type.value, ['array']);
  assert.equal(containers.items.schema[0]._ref, '#/definitions/io.k8s.api.core.v1.Container');
});

test('every reference resolves and no reference carries a type or properties (kubectl rejects the whole document otherwise)', () => {
  const names = new Set(decoded.definitions.additional_properties.map((d: Json) => d.name));
  const problems: string[] = [];
  const visit = (v: unknown, at: string): void => {
    if (Array.isArray(v)) return v.forEach((x, i) => visit(x, `${at}[${i}]`));
    if (typeof v !== 'object' || v === null) return;
    const o = v as Json;
    if (typeof o._ref === 'string') {
      if (!names.has(o._ref.replace('#/definitions/', ''))) problems.push(`${at}: dangling ${o._ref}`);
      if (o.type || o.properties) problems.push(`${at}: reference with a type or properties`);
    }
    if (o.type?.value?.[0] === 'array' && o.items?.schema?.length !== 1) problems.push(`${at}: array without exactly one item schema`);
    for (const [k, x] of Object.entries(o)) visit(x, `${at}.${k}`);
  };
  visit(decoded, '');
  assert.deepEqual(problems, []);
});

test('CRD schemas follow the real server v2 rules', () => {
  const widget = definition('com.example.stable.v1.Widget')!;
  assert.deepEqual(ext(widget, 'x-kubernetes-group-version-kind'), [{ group: 'stable.example.com', kind: 'Widget', version: 'v1' }]);
  assert.equal(property(widget, 'metadata')?._ref, '#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta');
  const spec = property(widget, 'spec')!;
  assert.deepEqual(spec.required, ['size']);
  const size = property(spec, 'size')!;
  assert.equal(size.default.yaml, '3\n');
  assert.equal(size.minimum, 1);
  const note = property(spec, 'note')!;
  assert.equal(note.type, undefined);
  assert.deepEqual(note.enum.map((e: Json) => e.yaml), ['a\n', 'b\n']);
  const blob = property(spec, 'blob')!;
  assert.equal(blob.type, undefined);
  assert.equal(blob.properties, undefined);
  assert.equal(ext(blob, 'x-kubernetes-preserve-unknown-fields'), true);
});

test('schemaV2: v3 schemas to v2', () => {
  const cases: [string, Json, Json][] = [
    ['allOf wrapper becomes a plain reference', { allOf: [{ $ref: '#/components/schemas/a.B' }], description: 'd' }, { $ref: '#/definitions/a.B', description: 'd' }],
    ['reference keeps its patch extensions', { allOf: [{ $ref: '#/components/schemas/a.B' }], 'x-kubernetes-patch-strategy': 'retainKeys' }, { $ref: '#/definitions/a.B', 'x-kubernetes-patch-strategy': 'retainKeys' }],
    ['v3-only keywords are dropped', { type: 'string', oneOf: [{ type: 'string' }], anyOf: [], not: {}, writeOnly: true }, { type: 'string' }],
    ['nullable loses its type and children', { type: 'object', nullable: true, properties: { a: { type: 'string' } } }, {}],
    ['preserve-unknown-fields object becomes untyped', { type: 'object', 'x-kubernetes-preserve-unknown-fields': true, properties: { a: {} } }, { 'x-kubernetes-preserve-unknown-fields': true }],
    ['array without items becomes untyped', { type: 'array' }, {}],
    ['nullable properties are not required', { type: 'object', required: ['a', 'b'], properties: { a: { type: 'string', nullable: true }, b: { type: 'string' } } }, { type: 'object', required: ['b'], properties: { a: {}, b: { type: 'string' } } }],
    ['int-or-string keeps no type', { 'x-kubernetes-int-or-string': true, anyOf: [{ type: 'integer' }, { type: 'string' }] }, { 'x-kubernetes-int-or-string': true }],
    ['maps keep their value schema', { type: 'object', additionalProperties: { allOf: [{ $ref: '#/components/schemas/a.B' }] } }, { type: 'object', additionalProperties: { $ref: '#/definitions/a.B' } }],
  ];
  for (const [name, input, want] of cases) assert.deepEqual(schemaV2(input), want, name);
});

test('negotiateOpenapiV2: what each Accept header gets', () => {
  const cases: [string | undefined, string | undefined][] = [
    ['application/com.github.proto-openapi.spec.v2@v1.0+protobuf', OPENAPI_V2_PROTOBUF],
    ['application/com.github.proto-openapi.spec.v2.v1.0+protobuf', OPENAPI_V2_PROTOBUF],
    ['application/json', 'application/json'],
    [undefined, 'application/json'],
    ['*/*', 'application/json'],
    ['application/json;q=0.5, application/com.github.proto-openapi.spec.v2@v1.0+protobuf', OPENAPI_V2_PROTOBUF],
    ['text/html', undefined],
  ];
  for (const [accept, want] of cases) assert.equal(negotiateOpenapiV2(accept)?.contentType, want, String(accept));
  assert.equal(OPENAPI_V2_PROTOBUF, 'application/com.github.proto-openapi.spec.v2.v1.0+protobuf');
});

test('the document is deterministic', () => {
  const a = openapiV2Protobuf(builtins);
  const b = openapiV2Protobuf([...builtins].reverse());
  assert.ok(a.equals(b));
});

// --- wire format, checked without the .proto we ship -------------------------------------------

/** The length-delimited fields of one message, by field number (other wire types skipped). */
function wireFields(buf: Uint8Array): Map<number, Buffer[]> {
  const out = new Map<number, Buffer[]>();
  let i = 0;
  const varint = (): number => {
    let v = 0;
    for (let shift = 0; ; shift += 7) {
      const b = buf[i++]!;
      v += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return v;
    }
  };
  while (i < buf.length) {
    const key = varint();
    const [field, wire] = [Math.floor(key / 8), key % 8];
    if (wire === 0) varint();
    else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else if (wire === 2) {
      const len = varint();
      out.set(field, [...(out.get(field) ?? []), Buffer.from(buf.subarray(i, i + len))]);
      i += len;
    } else throw new Error(`wire type ${wire}`);
  }
  return out;
}

test('field numbers match gnostic (Document.paths=8 → Paths.path=2 → PathItem.patch=8 → Operation.vendor_extension=13 → NamedAny.value=2 → Any.yaml=2)', () => {
  const doc = openapiV2Document([builtins.find((r) => r.kind === 'Deployment')!]);
  const bytes = encodeOpenapiV2(doc);
  const top = wireFields(bytes);
  assert.equal(top.get(1)![0]!.toString(), '2.0');
  const gvks: unknown[] = [];
  for (const namedPath of wireFields(top.get(8)![0]!).get(2)!) {
    const item = wireFields(wireFields(namedPath).get(2)![0]!);
    for (const patch of item.get(8) ?? []) {
      for (const namedAny of wireFields(patch).get(13) ?? []) {
        const f = wireFields(namedAny);
        if (f.get(1)![0]!.toString() !== 'x-kubernetes-group-version-kind') continue;
        gvks.push(YAML.parse(wireFields(f.get(2)![0]!).get(2)![0]!.toString()));
      }
    }
  }
  assert.deepEqual(gvks, [
    { group: 'apps', kind: 'Deployment', version: 'v1' },
    { group: 'autoscaling', kind: 'Scale', version: 'v1' },
    { group: 'apps', kind: 'Deployment', version: 'v1' },
  ]);
  // Definitions=9 → NamedSchema(additional_properties=1){name=1, value=2} → Schema.vendor_extension=31
  const defs = wireFields(wireFields(bytes).get(9)![0]!).get(1)!.map(wireFields);
  const deployment = defs.find((d) => d.get(1)![0]!.toString() === 'io.k8s.api.apps.v1.Deployment')!;
  const schemaExt = wireFields(wireFields(deployment.get(2)![0]!).get(31)![0]!);
  assert.equal(schemaExt.get(1)![0]!.toString(), 'x-kubernetes-group-version-kind');
});
