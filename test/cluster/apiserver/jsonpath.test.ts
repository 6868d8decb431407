import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JsonPathError, evalJsonPath } from './jsonpath.js';

const obj = {
  metadata: {
    name: 'w1',
    labels: { app: 'web', 'app.kubernetes.io/name': 'widget' },
    creationTimestamp: '2024-01-01T00:00:00Z',
  },
  spec: {
    replicas: 3,
    list: ['a', 'b', 'c'],
    ports: [
      { name: 'http', port: 80 },
      { name: 'https', port: 443 },
    ],
    nested: { deep: { value: true } },
  },
  status: {
    conditions: [
      { type: 'Available', status: 'False' },
      { type: 'Ready', status: 'True', reason: 'AllGood' },
    ],
  },
};

test('jsonpath evaluation', () => {
  const cases: [string, unknown[]][] = [
    ['.spec.replicas', [3]],
    ['{.spec.replicas}', [3]],
    ['$.spec.replicas', [3]],
    ['spec.replicas', [3]],
    ['.metadata.labels.app', ['web']],
    [".metadata.labels['app.kubernetes.io/name']", ['widget']],
    ['.metadata.labels["app.kubernetes.io/name"]', ['widget']],
    ['.metadata.labels.app\\.kubernetes\\.io/name', ['widget']],
    ['.spec.list[0]', ['a']],
    ['.spec.list[-1]', ['c']],
    ['.spec.list[5]', []],
    ['.spec.list[*]', ['a', 'b', 'c']],
    ['.spec.list[0:2]', ['a', 'b']],
    ['.spec.ports[*].port', [80, 443]],
    ['.spec.ports[1].name', ['https']],
    ['.status.conditions[?(@.type=="Ready")].status', ['True']],
    ['.status.conditions[?(@.type == "Ready")].reason', ['AllGood']],
    [".status.conditions[?(@.type=='Available')].status", ['False']],
    ['.status.conditions[?(@.type!="Ready")].type', ['Available']],
    ['.status.conditions[?(@.reason)].type', ['Ready']],
    ['.spec.ports[?(@.port==443)].name', ['https']],
    ['.spec.ports[?(@.port>100)].name', ['https']],
    ['.spec.nested.deep.value', [true]],
    ['.spec.nested.*', [{ value: true }]],
    ['.spec.nested[*]', [{ value: true }]],
    ['..port', [80, 443]],
    ['.spec.missing', []],
    ['.spec.replicas.deeper', []],
    ['.metadata.labels.app[0]', []],
  ];
  for (const [path, want] of cases) {
    assert.deepEqual(evalJsonPath(obj, path), want, path);
  }
});

test('jsonpath syntax errors', () => {
  for (const bad of ['.spec.list[', '.spec[?(x)]', ".metadata.labels['x", '.spec..', '.spec.list[a]']) {
    assert.throws(() => evalJsonPath(obj, bad), JsonPathError, bad);
  }
});
