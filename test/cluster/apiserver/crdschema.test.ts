import assert from 'node:assert/strict';
import { test } from 'node:test';

import { checkStructural, goFloat, structuralErrors, validateCustom, type JSONSchema } from './crdschema.js';
import { ApiError } from './errors.js';
import type { FieldError } from './types.js';

function crd(spec: JSONSchema, extra: JSONSchema = {}): JSONSchema {
  return { type: 'object', properties: { spec: { type: 'object', properties: spec, ...extra } } };
}

function cr(spec: Record<string, unknown>): Record<string, unknown> {
  return { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' }, spec };
}

function errorsOf(schema: JSONSchema, obj: unknown): FieldError[] {
  return validateCustom(schema, obj, 'Ignore').errors;
}

function lines(errs: FieldError[]): string[] {
  return errs.map((e) => `${e.field}: ${e.message}`);
}

test('each keyword reports the real message', () => {
  const cases: { name: string; schema: JSONSchema; spec: Record<string, unknown>; want: string[]; reasons?: string[] }[] = [
    {
      name: 'type',
      schema: crd({ replicas: { type: 'integer' } }),
      spec: { replicas: 'string' },
      want: ['spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"'],
      reasons: ['FieldValueTypeInvalid'],
    },
    {
      name: 'type of an object',
      schema: crd({ replicas: { type: 'integer' } }),
      spec: { replicas: { a: 1 } },
      want: ['spec.replicas: Invalid value: "object": spec.replicas in body must be of type integer: "object"'],
    },
    {
      name: 'fraction for an integer with format int32 names the format',
      schema: crd({ replicas: { type: 'integer', format: 'int32' } }),
      spec: { replicas: 1.5 },
      want: ['spec.replicas: Invalid value: "float64": spec.replicas in body must be of type int32: "float64"'],
    },
    {
      name: 'string for int64 is a plain type error',
      schema: crd({ size: { type: 'integer', format: 'int64' } }),
      spec: { size: 'x' },
      want: ['spec.size: Invalid value: "string": spec.size in body must be of type integer: "string"'],
    },
    {
      name: 'enum',
      schema: crd({ mode: { type: 'string', enum: ['A', 'B'] } }),
      spec: { mode: 'x' },
      want: ['spec.mode: Unsupported value: "x": supported values: "A", "B"'],
      reasons: ['FieldValueNotSupported'],
    },
    {
      name: 'required',
      schema: crd({ name: { type: 'string' } }, { required: ['name'] }),
      spec: {},
      want: ['spec.name: Required value'],
      reasons: ['FieldValueRequired'],
    },
    {
      name: 'minimum',
      schema: crd({ replicas: { type: 'integer', minimum: 1 } }),
      spec: { replicas: 0 },
      want: ['spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1'],
    },
    {
      name: 'exclusive maximum',
      schema: crd({ ratio: { type: 'number', maximum: 1, exclusiveMaximum: true } }),
      spec: { ratio: 1 },
      want: ['spec.ratio: Invalid value: 1: spec.ratio in body should be less than 1'],
    },
    {
      name: 'maximum with float data prints bounds like Go %v',
      schema: crd({ ratio: { type: 'number', maximum: 1000000 } }),
      spec: { ratio: 1000000.5 },
      want: ['spec.ratio: Invalid value: 1.0000005e+06: spec.ratio in body should be less than or equal to 1e+06'],
    },
    {
      name: 'maxLength',
      schema: crd({ name: { type: 'string', maxLength: 3 } }),
      spec: { name: 'abcd' },
      want: ['spec.name: Too long: may not be more than 3 bytes'],
      reasons: ['FieldValueTooLong'],
    },
    {
      name: 'minLength',
      schema: crd({ name: { type: 'string', minLength: 3 } }),
      spec: { name: 'ab' },
      want: ['spec.name: Invalid value: "ab": spec.name in body should be at least 3 chars long'],
    },
    {
      name: 'pattern',
      schema: crd({ name: { type: 'string', pattern: '^[a-z]+$' } }),
      spec: { name: 'A1' },
      want: ["spec.name: Invalid value: \"A1\": spec.name in body should match '^[a-z]+$'"],
    },
    {
      name: 'minItems and maxItems, after item errors',
      schema: crd({ a: { type: 'array', items: { type: 'string' }, minItems: 2 }, b: { type: 'array', items: { type: 'integer' }, maxItems: 1 } }),
      spec: { a: ['x'], b: ['1', 2] },
      want: [
        'spec.a: Invalid value: 1: spec.a in body should have at least 2 items',
        'spec.b[0]: Invalid value: "string": spec.b[0] in body must be of type integer: "string"',
        'spec.b: Too many: 2: must have at most 1 items',
      ],
    },
    {
      name: 'format date-time',
      schema: crd({ at: { type: 'string', format: 'date-time' } }),
      spec: { at: 'noon' },
      want: ['spec.at: Invalid value: "noon": spec.at in body must be of type date-time: "noon"'],
    },
    {
      name: 'null in a non-nullable field',
      schema: crd({ name: { type: 'string' } }),
      spec: { name: null },
      want: ['spec.name: Invalid value: "null": spec.name in body must be of type string: "null"'],
    },
    {
      name: 'null in a nullable field',
      schema: crd({ name: { type: 'string', nullable: true } }),
      spec: { name: null },
      want: [],
    },
    {
      name: 'int-or-string',
      schema: crd({ port: { 'x-kubernetes-int-or-string': true } }),
      spec: { port: true },
      want: ['spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean"'],
    },
    {
      name: 'int-or-string accepts both',
      schema: crd({ a: { 'x-kubernetes-int-or-string': true }, b: { 'x-kubernetes-int-or-string': true } }),
      spec: { a: 80, b: 'http' },
      want: [],
    },
    {
      name: 'additionalProperties values are validated',
      schema: crd({ env: { type: 'object', additionalProperties: { type: 'string' } } }),
      spec: { env: { A: 'x', B: 2 } },
      want: ['spec.env.B: Invalid value: "integer": spec.env.B in body must be of type string: "integer"'],
    },
    {
      name: 'embedded resource needs apiVersion and kind',
      schema: crd({ template: { type: 'object', 'x-kubernetes-embedded-resource': true, 'x-kubernetes-preserve-unknown-fields': true } }),
      spec: { template: { metadata: { name: 'x' } } },
      want: ['spec.template.apiVersion: Required value: must not be empty', 'spec.template.kind: Required value: must not be empty'],
    },
  ];
  for (const c of cases) {
    const errs = errorsOf(c.schema, cr(c.spec));
    assert.deepEqual(lines(errs), c.want, c.name);
    if (c.reasons) assert.deepEqual(errs.map((e) => e.reason), c.reasons, c.name);
  }
});

test('defaults fill absent fields, nested and in list items', () => {
  const schema = crd({
    replicas: { type: 'integer', default: 1 },
    mode: { type: 'string', default: 'A' },
    ports: { type: 'array', items: { type: 'object', properties: { protocol: { type: 'string', default: 'TCP' }, port: { type: 'integer' } } } },
    nested: { type: 'object', default: {}, properties: { level: { type: 'integer', default: 3 } } },
  });
  const { obj, errors } = validateCustom(schema, cr({ mode: 'B', ports: [{ port: 80 }], replicas: null }), 'Strict');
  assert.deepEqual(errors, []);
  assert.deepEqual(obj.spec, { mode: 'B', ports: [{ port: 80, protocol: 'TCP' }], replicas: 1, nested: { level: 3 } });
});

test('pruning and unknown fields by fieldValidation', () => {
  const schema = crd({ keep: { type: 'string' }, items: { type: 'array', items: { type: 'object', properties: { a: { type: 'string' } } } } });
  const obj = { ...cr({ keep: 'x', drop: 1, items: [{ a: 'y', b: 2 }] }), status: { x: 1 } };
  const unknown = ['spec.drop', 'spec.items[0].b', 'status'];

  const warn = validateCustom(schema, obj, 'Warn');
  assert.deepEqual(warn.warnings, unknown.map((u) => `unknown field "${u}"`));
  assert.deepEqual(warn.obj, { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' }, spec: { keep: 'x', items: [{ a: 'y' }] } });

  const ignore = validateCustom(schema, obj, 'Ignore');
  assert.deepEqual(ignore.warnings, []);
  assert.deepEqual(ignore.obj, warn.obj);

  assert.throws(
    () => validateCustom(schema, obj, 'Strict'),
    (e: unknown) =>
      e instanceof ApiError &&
      e.code === 400 &&
      e.message === `Widget in version "v1" cannot be handled as a Widget: strict decoding error: ${unknown.map((u) => `unknown field "${u}"`).join(', ')}`,
  );
});

test('preserve-unknown-fields keeps what the schema does not specify, but still prunes what it does', () => {
  const schema = crd({ known: { type: 'object', properties: { a: { type: 'string' } } } }, { 'x-kubernetes-preserve-unknown-fields': true });
  const { obj, warnings } = validateCustom(schema, cr({ free: { any: [1, 2] }, known: { a: 'x', b: 'y' } }), 'Warn');
  assert.deepEqual(obj.spec, { free: { any: [1, 2] }, known: { a: 'x' } });
  assert.deepEqual(warnings, ['unknown field "spec.known.b"']);
});

test('an object without properties loses all its fields unless it preserves them', () => {
  const { obj } = validateCustom(crd({ bag: { type: 'object' } }), cr({ bag: { a: 1 } }), 'Ignore');
  assert.deepEqual(obj.spec, { bag: {} });
});

test('apiVersion, kind and metadata are never pruned, also in embedded resources', () => {
  const schema = crd({ template: { type: 'object', 'x-kubernetes-embedded-resource': true, properties: { spec: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } } });
  const template = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', labels: { a: 'b' } }, spec: { containers: [] } };
  const { obj, warnings, errors } = validateCustom(schema, { ...cr({ template }), metadata: { name: 'w', annotations: { x: 'y' } } }, 'Warn');
  assert.deepEqual(warnings, []);
  assert.deepEqual(errors, []);
  assert.deepEqual(obj.metadata, { name: 'w', annotations: { x: 'y' } });
  assert.deepEqual((obj.spec as Record<string, unknown>).template, template);
});

test('checkStructural lists why a schema is unusable', () => {
  const cases: { name: string; schema: unknown; want: string[] }[] = [
    { name: 'fine', schema: crd({ a: { type: 'string' }, b: { type: 'array', items: { type: 'integer' } } }), want: [] },
    {
      name: 'missing type of a property',
      schema: crd({ a: { description: 'x' } }),
      want: ['openAPIV3Schema.properties[spec].properties[a].type: Required value: must not be empty for specified object fields'],
    },
    {
      name: 'missing type of array items',
      schema: crd({ a: { type: 'array', items: {} } }),
      want: ['openAPIV3Schema.properties[spec].properties[a].items.type: Required value: must not be empty for specified array items'],
    },
    {
      name: 'unknown type',
      schema: crd({ a: { type: 'text' } }),
      want: ['openAPIV3Schema.properties[spec].properties[a].type: Unsupported value: "text": supported values: "array", "boolean", "integer", "number", "object", "string"'],
    },
    { name: 'root must be an object', schema: { type: 'string' }, want: ['openAPIV3Schema.type: Invalid value: "string": must be object at the root'] },
    { name: 'root needs a type', schema: {}, want: ['openAPIV3Schema.type: Required value: must not be empty at the root'] },
    { name: 'array without items', schema: crd({ a: { type: 'array' } }), want: ['openAPIV3Schema.properties[spec].properties[a].items: Required value: must be specified'] },
    { name: 'int-or-string and preserve need no type', schema: crd({ a: { 'x-kubernetes-int-or-string': true }, b: { 'x-kubernetes-preserve-unknown-fields': true } }), want: [] },
  ];
  for (const c of cases) assert.deepEqual(checkStructural(c.schema), c.want, c.name);
  const errs = structuralErrors(crd({ a: {} }), 'spec.versions[0].schema.openAPIV3Schema');
  assert.equal(errs[0]?.field, 'spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[a].type');
  assert.equal(errs[0]?.reason, 'FieldValueRequired');
});

test('goFloat prints like Go %v', () => {
  const cases: [number, string][] = [
    [1.5, '1.5'],
    [0.0001, '0.0001'],
    [0.00001, '1e-05'],
    [123456.5, '123456.5'],
    [1000000, '1e+06'],
    [1234567.5, '1.2345675e+06'],
  ];
  for (const [n, want] of cases) assert.equal(goFloat(n), want);
});
