import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ApiError } from './errors.js';
import { decodeAgainstModel, decodeBuiltin, goQualifiedName, goStructName, quantityProblem, rfc3339Problem, type FieldValidation } from './schema.js';

const DEPLOY = { kind: 'Deployment', version: 'v1' };
const PREFIX = 'Deployment in version "v1" cannot be handled as a Deployment: ';

function deployment(spec: Record<string, unknown>, metadata: Record<string, unknown> = { name: 'web' }): Record<string, unknown> {
  return { apiVersion: 'apps/v1', kind: 'Deployment', metadata, spec };
}

function podSpec(spec: Record<string, unknown>): Record<string, unknown> {
  return deployment({ selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec } });
}

function decodeError(obj: unknown, fv: FieldValidation = 'Strict'): ApiError {
  try {
    decodeBuiltin('V1Deployment', DEPLOY, obj, fv);
  } catch (e) {
    assert.ok(e instanceof ApiError);
    return e;
  }
  assert.fail('expected the decode to fail');
}

test('wrong JSON types fail with the Go decoder message, at every depth', () => {
  const cases: { name: string; obj: unknown; message: string }[] = [
    {
      name: 'string into int32',
      obj: deployment({ replicas: '3' }),
      message: 'json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32',
    },
    {
      name: 'fraction into int32',
      obj: deployment({ replicas: 1.5 }),
      message: 'json: cannot unmarshal number 1.5 into Go struct field DeploymentSpec.spec.replicas of type int32',
    },
    {
      name: 'int32 overflow',
      obj: deployment({ replicas: 3000000000 }),
      message: 'json: cannot unmarshal number 3000000000 into Go struct field DeploymentSpec.spec.replicas of type int32',
    },
    {
      name: 'string where a struct belongs',
      obj: deployment('x' as unknown as Record<string, unknown>),
      message: 'json: cannot unmarshal string into Go struct field Deployment.spec of type v1.DeploymentSpec',
    },
    {
      name: 'label value that is not a string',
      obj: deployment({}, { name: 'web', labels: { a: 1 } }),
      message: 'json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string',
    },
    {
      name: 'object where a slice belongs',
      obj: podSpec({ containers: { name: 'a' } }),
      message: 'json: cannot unmarshal object into Go struct field PodSpec.spec.template.spec.containers of type []v1.Container',
    },
    {
      name: 'inside a list element: the path has no index',
      obj: podSpec({ containers: [{ name: 'a', image: 'x', ports: [{ containerPort: '80' }] }] }),
      message: 'json: cannot unmarshal string into Go struct field ContainerPort.spec.template.spec.containers.ports.containerPort of type int32',
    },
    {
      name: 'number into string',
      obj: podSpec({ containers: [{ name: 'a', image: 5 }] }),
      message: 'json: cannot unmarshal number into Go struct field Container.spec.template.spec.containers.image of type string',
    },
    {
      name: 'string into bool',
      obj: deployment({ paused: 'yes' }),
      message: 'json: cannot unmarshal string into Go struct field DeploymentSpec.spec.paused of type bool',
    },
    {
      name: 'int-or-string given a bool',
      obj: deployment({ strategy: { rollingUpdate: { maxSurge: true } } }),
      message: 'json: cannot unmarshal bool into Go struct field RollingUpdateDeployment.spec.strategy.rollingUpdate.maxSurge of type int32',
    },
    {
      name: 'malformed quantity (no field context, like Quantity.UnmarshalJSON)',
      obj: podSpec({ containers: [{ name: 'a', resources: { limits: { cpu: 'lots' } } }] }),
      message: "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
    },
    {
      name: 'time that is not RFC 3339',
      obj: deployment({}, { name: 'web', creationTimestamp: 'yesterday' }),
      message: 'parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"',
    },
    {
      name: 'time that is a number',
      obj: deployment({}, { name: 'web', creationTimestamp: 5 }),
      message: 'json: cannot unmarshal number into Go struct field ObjectMeta.metadata.creationTimestamp of type string',
    },
    {
      name: 'the first ordinary error wins',
      obj: deployment({ replicas: 'a', paused: 'b' }),
      message: 'json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32',
    },
    {
      name: 'an UnmarshalJSON error beats an earlier ordinary one',
      obj: deployment({ replicas: 'a', strategy: { rollingUpdate: { maxSurge: {} } } }),
      message: 'json: cannot unmarshal object into Go struct field RollingUpdateDeployment.spec.strategy.rollingUpdate.maxSurge of type int32',
    },
  ];
  for (const c of cases) {
    const e = decodeError(c.obj);
    assert.equal(e.code, 400, c.name);
    assert.equal(e.reason, 'BadRequest', c.name);
    assert.equal(e.message, PREFIX + c.message, c.name);
  }
});

test('a type error is reported even when unknown fields are present, in every mode', () => {
  for (const fv of ['Strict', 'Warn', 'Ignore'] as const) {
    const e = decodeError(deployment({ replicas: '1', foo: 1 }), fv);
    assert.match(e.message, /cannot unmarshal string/);
  }
});

test('unknown fields follow fieldValidation', () => {
  const obj = podSpec({ bar: true, containers: [{ name: 'a', image: 'x', imagee: 'y' }] });
  (obj.spec as Record<string, unknown>).foo = { deep: 1 };
  const unknown = ['spec.template.spec.bar', 'spec.template.spec.containers[0].imagee', 'spec.foo'];

  const strict = decodeError(obj, 'Strict');
  assert.equal(strict.code, 400);
  assert.equal(strict.message, `${PREFIX}strict decoding error: ${unknown.map((u) => `unknown field "${u}"`).join(', ')}`);

  const warn = decodeBuiltin('V1Deployment', DEPLOY, obj, 'Warn');
  assert.deepEqual(warn.warnings, unknown.map((u) => `unknown field "${u}"`));
  assert.equal((warn.obj.spec as Record<string, unknown>).foo, undefined);
  const container = ((warn.obj.spec as any).template.spec.containers as Record<string, unknown>[])[0]!;
  assert.deepEqual(container, { name: 'a', image: 'x' });

  const ignore = decodeBuiltin('V1Deployment', DEPLOY, obj, 'Ignore');
  assert.deepEqual(ignore.warnings, []);
  assert.deepEqual(ignore.obj, warn.obj);
});

test('unknown fields: case matters and map keys are never unknown', () => {
  const r = decodeAgainstModel('V1Deployment', deployment({ Replicas: 1 }, { name: 'a', labels: { anything: 'x' }, annotations: { 'x/y': 'z' } }));
  assert.deepEqual(r.unknownFields, ['spec.Replicas']);
  assert.equal(r.error, undefined);
});

test('values that decode', () => {
  const cases: { name: string; obj: Record<string, unknown>; pick: (o: any) => unknown; want: unknown }[] = [
    { name: 'int-or-string as int', obj: deployment({ strategy: { rollingUpdate: { maxSurge: 1 } } }), pick: (o) => o.spec.strategy.rollingUpdate.maxSurge, want: 1 },
    { name: 'int-or-string as string', obj: deployment({ strategy: { rollingUpdate: { maxSurge: '25%' } } }), pick: (o) => o.spec.strategy.rollingUpdate.maxSurge, want: '25%' },
    { name: 'quantity as string', obj: podSpec({ containers: [{ name: 'a', resources: { limits: { memory: '128Mi' } } }] }), pick: (o) => o.spec.template.spec.containers[0].resources.limits.memory, want: '128Mi' },
    { name: 'quantity as number', obj: podSpec({ containers: [{ name: 'a', resources: { requests: { cpu: 0.5 } } }] }), pick: (o) => o.spec.template.spec.containers[0].resources.requests.cpu, want: '0.5' },
    { name: 'time is re-encoded in UTC seconds', obj: deployment({}, { name: 'a', creationTimestamp: '2024-01-02T03:04:05.9+01:00' }), pick: (o) => o.metadata.creationTimestamp, want: '2024-01-02T02:04:05Z' },
    { name: 'null fields are dropped', obj: deployment({ replicas: null }, { name: 'a', creationTimestamp: null }), pick: (o) => [o.spec, o.metadata], want: [{}, { name: 'a' }] },
    { name: 'any takes anything', obj: deployment({}, { name: 'a', managedFields: [{ manager: 'm', fieldsV1: { 'f:spec': {} } }] }), pick: (o) => o.metadata.managedFields[0].fieldsV1, want: { 'f:spec': {} } },
  ];
  for (const c of cases) {
    const { obj, warnings } = decodeBuiltin('V1Deployment', DEPLOY, c.obj, 'Strict');
    assert.deepEqual(c.pick(obj), c.want, c.name);
    assert.deepEqual(warnings, [], c.name);
  }
});

test('quantity parsing', () => {
  const cases: [string, string | undefined][] = [
    ['1', undefined],
    ['500m', undefined],
    ['1.5Gi', undefined],
    ['1e3', undefined],
    ['-2', undefined],
    ['', "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"],
    ['abc', "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"],
    ['1ik', "unable to parse quantity's suffix"],
  ];
  for (const [s, want] of cases) assert.equal(quantityProblem(s), want, s);
});

test('RFC 3339 parsing errors read like Go time.ParseError', () => {
  const cases: [string, string | undefined][] = [
    ['2024-01-02T03:04:05Z', undefined],
    ['2024-01-02T03:04:05.123-07:00', undefined],
    ['2024-01-02', 'parsing time "2024-01-02" as "2006-01-02T15:04:05Z07:00": cannot parse "" as "T"'],
    ['2024-13-02T03:04:05Z', 'parsing time "2024-13-02T03:04:05Z": month out of range'],
    ['2024-02-30T03:04:05Z', 'parsing time "2024-02-30T03:04:05Z": day out of range'],
    ['2024-01-02 03:04:05Z', 'parsing time "2024-01-02 03:04:05Z" as "2006-01-02T15:04:05Z07:00": cannot parse " 03:04:05Z" as "T"'],
    ['2024-01-02T03:04:05', 'parsing time "2024-01-02T03:04:05" as "2006-01-02T15:04:05Z07:00": cannot parse "" as "Z07:00"'],
  ];
  for (const [s, want] of cases) assert.equal(rfc3339Problem(s), want, s);
});

test('Go names of client-node models', () => {
  const cases: [string, string, string][] = [
    ['V1DeploymentSpec', 'DeploymentSpec', 'v1.DeploymentSpec'],
    ['RbacV1Subject', 'Subject', 'v1.Subject'],
    ['V1beta1CronJobSpec', 'CronJobSpec', 'v1beta1.CronJobSpec'],
    ['CoreV1EventSeries', 'EventSeries', 'v1.EventSeries'],
    ['V2HorizontalPodAutoscaler', 'HorizontalPodAutoscaler', 'v2.HorizontalPodAutoscaler'],
  ];
  for (const [model, struct, qualified] of cases) {
    assert.equal(goStructName(model), struct);
    assert.equal(goQualifiedName(model), qualified);
  }
});
