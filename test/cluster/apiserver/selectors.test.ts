import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiError } from './errors.js';
import {
  everythingSelector,
  fieldRequiresExactMatch,
  fieldSelectorMatcher,
  fieldSelectorString,
  formatLabelSelector,
  formatLabels,
  labelSelectorFromObject,
  labelSelectorString,
  matchesLabels,
  nothingSelector,
  parseFieldSelector,
  parseLabelSelector,
} from './selectors.js';
import type { KObject } from './types.js';

const NAME_PART_MSG =
  "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const VALUE_MSG =
  "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

function badRequestMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ApiError, `expected ApiError, got ${String(e)}`);
    assert.equal(e.code, 400);
    assert.equal(e.reason, 'BadRequest');
    return e.message;
  }
  assert.fail('expected an error');
}

test('label selector parsing: canonical string form', () => {
  const cases: [string, string][] = [
    ['', ''],
    ['a=b', 'a=b'],
    ['a==b', 'a==b'],
    ['a!=b', 'a!=b'],
    ['a', 'a'],
    ['!a', '!a'],
    ['a in (y,x)', 'a in (x,y)'],
    ['a notin (x)', 'a notin (x)'],
    ['a in (x,x,y)', 'a in (x,y)'],
    ['a>1', 'a>1'],
    ['a<3', 'a<3'],
    ['  b = 1 ,  a  ', 'a,b=1'],
    ['x in (foo,,baz),y,z notin ()', 'x in (,baz,foo),y,z notin ()'],
    ['a=', 'a='],
    ['in in (in,notin)', 'in in (in,notin)'],
    ['example.com/app=web', 'example.com/app=web'],
    ['a in (x, y)', 'a in (x,y)'],
  ];
  for (const [input, want] of cases) {
    assert.equal(labelSelectorString(parseLabelSelector(input)), want, input);
  }
});

test('label selector parsing: errors carry the apimachinery messages', () => {
  const cases: [string, string][] = [
    ['app:monolith', `unable to parse requirement: <nil>: Invalid value: "app:monolith": ${NAME_PART_MSG}`],
    ['-ltier=postgres', `unable to parse requirement: <nil>: Invalid value: "-ltier": ${NAME_PART_MSG}`],
    [
      'app.kubernetes_io/name=x',
      'unable to parse requirement: <nil>: Invalid value: "app.kubernetes_io/name": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \'-\' or \'.\', and must start and end with an alphanumeric character (e.g. \'example.com\', regex used for validation is \'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\')',
    ],
    [
      'a/b/c ?=? def',
      "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
    ],
    ['x=a b', "found 'b', expected: ',' or 'end of string'"],
    ['x=a!', "found '!', expected: ',' or 'end of string'"],
    ['=a', "found '=', expected: !, identifier, or 'end of string'"],
    ['a,', "found '', expected: identifier after ','"],
    ['a,,b', "found ',', expected: identifier after ','"],
    ['x in a', "unable to parse requirement: found 'a' expected: '('"],
    ['x notin', "unable to parse requirement: found '' expected: '('"],
    ['x=(a)', "unable to parse requirement: found '(', expected: identifier"],
    ['x in (a', "unable to parse requirement: found '', expected: ',' or ')'"],
    ['!', "unable to parse requirement: found '', expected: identifier"],
    // "-3" parses as an integer but is not a valid label value, so the real parser refuses it too
    ['a<-3', `unable to parse requirement: values[0][a]: Invalid value: "-3": ${VALUE_MSG}`],
    ['x>a', 'unable to parse requirement: values[0]: Invalid value: "a": for \'Gt\', \'Lt\' operators, the value must be an integer'],
    ['x=a$', `unable to parse requirement: values[0][x]: Invalid value: "a$": ${VALUE_MSG}`],
    [
      `x=${'v'.repeat(64)}`,
      `unable to parse requirement: values[0][x]: Invalid value: "${'v'.repeat(64)}": must be no more than 63 characters`,
    ],
    [
      'x>a$',
      `unable to parse requirement: [values[0]: Invalid value: "a$": for 'Gt', 'Lt' operators, the value must be an integer, values[0][x]: Invalid value: "a$": ${VALUE_MSG}]`,
    ],
  ];
  for (const [input, want] of cases) {
    assert.equal(badRequestMessage(() => parseLabelSelector(input)), want, input);
  }
});

test('label selector matching', () => {
  const labels = { app: 'web', tier: 'front', n: '5', empty: '' };
  const cases: [string, boolean][] = [
    ['', true],
    ['app=web', true],
    ['app==web', true],
    ['app=db', false],
    ['app!=db', true],
    ['missing!=x', true],
    ['app in (db,web)', true],
    ['app notin (db,web)', false],
    ['missing notin (a)', true],
    ['missing in (a)', false],
    ['app', true],
    ['!app', false],
    ['!missing', true],
    ['n>4', true],
    ['n>5', false],
    ['n<6', true],
    ['app>1', false],
    ['missing<1', false],
    ['empty=', true],
    ['empty in ()', true],
    ['app=web,tier=back', false],
    ['app=web,tier=front', true],
  ];
  for (const [input, want] of cases) {
    assert.equal(matchesLabels(parseLabelSelector(input), labels), want, input);
  }
  assert.equal(matchesLabels(everythingSelector, undefined), true);
  assert.equal(matchesLabels(nothingSelector, labels), false);
});

test('metav1.LabelSelector objects: null matches nothing, empty matches everything', () => {
  assert.equal(labelSelectorFromObject(null), nothingSelector);
  assert.equal(labelSelectorFromObject(undefined), nothingSelector);
  assert.equal(labelSelectorFromObject({}), everythingSelector);
  assert.equal(labelSelectorFromObject({ matchLabels: {}, matchExpressions: [] }), everythingSelector);

  const sel = labelSelectorFromObject({
    matchLabels: { b: '1', a: 'x' },
    matchExpressions: [
      { key: 'env', operator: 'In', values: ['prod', 'dev'] },
      { key: 'gone', operator: 'DoesNotExist' },
      { key: 'zone', operator: 'Exists' },
      { key: 'tier', operator: 'NotIn', values: ['db'] },
    ],
  });
  assert.equal(labelSelectorString(sel), 'a=x,b=1,env in (dev,prod),!gone,tier notin (db),zone');
  assert.equal(matchesLabels(sel, { a: 'x', b: '1', env: 'dev', zone: 'z' }), true);
  assert.equal(matchesLabels(sel, { a: 'x', b: '1', env: 'dev', zone: 'z', gone: '' }), false);
  assert.equal(matchesLabels(sel, { a: 'x', b: '1', env: 'qa', zone: 'z' }), false);
});

test('metav1.LabelSelector objects: invalid content', () => {
  const cases: [Parameters<typeof labelSelectorFromObject>[0], string][] = [
    [{ matchExpressions: [{ key: 'a', operator: 'Foo' }] }, '"Foo" is not a valid label selector operator'],
    [
      { matchExpressions: [{ key: 'a', operator: 'In', values: [] }] },
      "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty",
    ],
    [
      { matchExpressions: [{ key: 'a', operator: 'Exists', values: ['x'] }] },
      'values: Invalid value: []string{"x"}: values set must be empty for exists and does not exist',
    ],
    [{ matchLabels: { 'bad key': 'x' } }, `key: Invalid value: "bad key": ${NAME_PART_MSG}`],
  ];
  for (const [input, want] of cases) {
    assert.equal(badRequestMessage(() => labelSelectorFromObject(input)), want, JSON.stringify(input));
  }
});

test('printer formatting of selectors and label maps', () => {
  assert.equal(formatLabelSelector(null), '<none>');
  assert.equal(formatLabelSelector({}), '<none>');
  assert.equal(formatLabelSelector({ matchLabels: { app: 'web' } }), 'app=web');
  assert.equal(formatLabelSelector({ matchExpressions: [{ key: 'a', operator: 'Nope' }] }), '<error>');
  assert.equal(formatLabels({}), '<none>');
  assert.equal(formatLabels(undefined), '<none>');
  assert.equal(formatLabels({ z: '1', a: '2' }), 'a=2,z=1');
});

test('field selector parsing', () => {
  const cases: [string, string][] = [
    ['', ''],
    ['metadata.name=a', 'metadata.name=a'],
    ['metadata.name==a', 'metadata.name=a'],
    ['status.phase!=Running', 'status.phase!=Running'],
    ['b=1,a=2', 'a=2,b=1'],
    ['a=x\\,y', 'a=x\\,y'],
    ['a=x\\=y\\\\', 'a=x\\=y\\\\'],
    ['a=', 'a='],
    [',a=1,', 'a=1'],
  ];
  for (const [input, want] of cases) {
    assert.equal(fieldSelectorString(parseFieldSelector(input)), want, input);
  }
  assert.deepEqual(parseFieldSelector('a=x\\,y').requirements, [{ field: 'a', operator: '=', value: 'x,y' }]);
  assert.deepEqual(parseFieldSelector('a = b').requirements, [{ field: 'a ', operator: '=', value: ' b' }]);
  assert.equal(fieldRequiresExactMatch(parseFieldSelector('metadata.name=web,x!=y'), 'metadata.name'), 'web');
  assert.equal(fieldRequiresExactMatch(parseFieldSelector('metadata.name!=web'), 'metadata.name'), undefined);
});

test('field selector parse errors', () => {
  const cases: [string, string][] = [
    ['foo', "invalid selector: 'foo'; can't understand 'foo'"],
    ['a=1,foo', "invalid selector: 'a=1,foo'; can't understand 'foo'"],
    ['a=b=c', 'invalid field selector: unescaped character in value: 61'],
    ['a=b\\x', 'invalid field selector: invalid escape sequence: \\x'],
    ['a=b\\', 'invalid field selector: invalid escape sequence: \\'],
  ];
  for (const [input, want] of cases) {
    assert.equal(badRequestMessage(() => parseFieldSelector(input)), want, input);
  }
});

const pod = (name: string, extra: Partial<KObject> = {}): KObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'default' },
  ...extra,
});

test('field selector matching per resource', () => {
  const running = pod('web-0', {
    spec: { nodeName: 'node-1', restartPolicy: 'Always', serviceAccountName: 'web', schedulerName: 'default-scheduler' },
    status: { phase: 'Running', podIP: '10.0.0.9', podIPs: [{ ip: '10.0.0.5' }] },
  });
  const pending = pod('web-1', { spec: { hostNetwork: true }, status: { phase: 'Pending' } });
  const pods = { group: '', plural: 'pods' };
  const cases: [string, boolean, boolean][] = [
    // selector, matches running, matches pending
    ['status.phase=Running', true, false],
    ['status.phase!=Running', false, true],
    ['spec.nodeName=node-1', true, false],
    ['spec.nodeName=', false, true],
    ['spec.host=node-1', true, false],
    ['spec.hostNetwork=true', false, true],
    ['spec.hostNetwork=false', true, false],
    ['status.podIP=10.0.0.5', true, false],
    ['status.podIP=10.0.0.9', false, false],
    ['metadata.name=web-0', true, false],
    ['metadata.namespace=default,status.phase=Pending', false, true],
    ['spec.serviceAccountName=web,spec.restartPolicy=Always', true, false],
  ];
  for (const [sel, a, b] of cases) {
    const m = fieldSelectorMatcher(pods, sel);
    assert.deepEqual([m(running), m(pending)], [a, b], sel);
  }

  const event: KObject = {
    metadata: { name: 'e1', namespace: 'default' },
    involvedObject: { kind: 'Pod', name: 'web-0', namespace: 'default' },
    reason: 'Started',
    type: 'Normal',
    reportingComponent: 'kubelet',
    source: {},
  };
  const events = { group: '', plural: 'events' };
  assert.equal(fieldSelectorMatcher(events, 'involvedObject.kind=Pod,involvedObject.name=web-0,reason=Started')(event), true);
  assert.equal(fieldSelectorMatcher(events, 'source=kubelet')(event), true);
  const v1event: KObject = { metadata: { name: 'e1', namespace: 'default' }, regarding: { kind: 'Pod', name: 'web-0' }, reportingController: 'kubelet' };
  assert.equal(fieldSelectorMatcher({ group: 'events.k8s.io', plural: 'events' }, 'involvedObject.name=web-0,reportingComponent=kubelet')(v1event), true);

  const secret: KObject = { metadata: { name: 's', namespace: 'ns' }, type: 'kubernetes.io/tls' };
  assert.equal(fieldSelectorMatcher({ group: '', plural: 'secrets' }, 'type=kubernetes.io/tls')(secret), true);
  const ns: KObject = { metadata: { name: 'ns' }, status: { phase: 'Active' } };
  assert.equal(fieldSelectorMatcher({ group: '', plural: 'namespaces', namespaced: false }, 'status.phase=Active')(ns), true);
  const node: KObject = { metadata: { name: 'n1' }, spec: { unschedulable: true } };
  assert.equal(fieldSelectorMatcher({ group: '', plural: 'nodes', namespaced: false }, 'spec.unschedulable=true')(node), true);
  const rs: KObject = { metadata: { name: 'r', namespace: 'ns' }, status: { replicas: 3 } };
  assert.equal(fieldSelectorMatcher({ group: 'apps', plural: 'replicasets' }, 'status.replicas=3')(rs), true);
  assert.equal(fieldSelectorMatcher({ group: 'apps', plural: 'replicasets' }, 'status.replicas!=0')(rs), true);
  const cm: KObject = { metadata: { name: 'c', namespace: 'ns' } };
  assert.equal(fieldSelectorMatcher({ group: '', plural: 'configmaps' }, 'metadata.namespace=ns')(cm), true);
  const role: KObject = { metadata: { name: 'admin' } };
  assert.equal(fieldSelectorMatcher({ group: 'rbac.authorization.k8s.io', plural: 'clusterroles', namespaced: false }, 'metadata.namespace=')(role), true);
});

test('field selectors on custom resources', () => {
  const widget: KObject = { metadata: { name: 'w1', namespace: 'ns' }, spec: { color: 'red', size: 3 } };
  const crd = { group: 'example.com', plural: 'widgets', custom: true, namespaced: true, selectableFields: ['.spec.color', '.spec.size'] };
  assert.equal(fieldSelectorMatcher(crd, 'metadata.name=w1')(widget), true);
  assert.equal(fieldSelectorMatcher(crd, 'spec.color=red')(widget), true);
  assert.equal(fieldSelectorMatcher(crd, 'spec.size=3')(widget), true);
  assert.equal(fieldSelectorMatcher(crd, 'spec.color!=red')(widget), false);
  assert.equal(
    badRequestMessage(() => fieldSelectorMatcher({ ...crd, selectableFields: [] }, 'spec.color=red')),
    'field label not supported: spec.color',
  );
  assert.equal(
    badRequestMessage(() => fieldSelectorMatcher({ group: 'example.com', plural: 'clusterwidgets', custom: true, namespaced: false }, 'metadata.namespace=x')),
    'field label not supported: metadata.namespace',
  );
});

test('unsupported field labels give each conversion function its own error', () => {
  const cases: [{ group: string; plural: string; namespaced?: boolean }, string, string][] = [
    [{ group: '', plural: 'pods' }, 'spec.foo=x', 'field label not supported: spec.foo'],
    [{ group: '', plural: 'pods' }, 'status.phase=Running,spec.foo=x', 'field label not supported: spec.foo'],
    [{ group: '', plural: 'nodes', namespaced: false }, 'metadata.namespace=x', 'field label not supported: metadata.namespace'],
    [{ group: '', plural: 'namespaces', namespaced: false }, 'status.foo=x', 'field label not supported: status.foo'],
    [{ group: '', plural: 'events' }, 'message=x', 'field label not supported: message'],
    [{ group: 'apps', plural: 'deployments' }, 'spec.replicas=1', '"spec.replicas" is not a known field selector: only "metadata.name", "metadata.namespace"'],
    [{ group: 'networking.k8s.io', plural: 'ingresses' }, 'foo.bar=baz', '"foo.bar" is not a known field selector: only "metadata.name", "metadata.namespace"'],
    [{ group: '', plural: 'pods' }, 'metadata.name = x', 'field label not supported: metadata.name '],
  ];
  for (const [resource, sel, want] of cases) {
    assert.equal(badRequestMessage(() => fieldSelectorMatcher(resource, sel)), want, `${resource.plural} ${sel}`);
  }
});
