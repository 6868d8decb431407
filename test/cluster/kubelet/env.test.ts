// Table tests of the container environment: envFrom, explicit env with $(VAR) expansion, the
// downward API, ConfigMap/Secret key references and their errors, and Service link variables.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KObject } from '../apiserver/types.js';
import { buildEnv, ContainerConfigError, expandVars, fieldRefValue, formatMap, serviceEnvVars, type EnvInput } from './env.js';
import type { Container } from './spec.js';

const pod: KObject = {
  metadata: { name: 'web', namespace: 'shop', uid: 'u-1', labels: { app: 'web', version: 'v2' }, annotations: { note: 'a "quoted" value' } },
  spec: { nodeName: 'node-1', serviceAccountName: 'web-sa', containers: [] },
};
const cm: KObject = { metadata: { name: 'cfg' }, data: { MODE: 'fast', 'bad key': 'x', greeting: 'hi' } };
const secret: KObject = { metadata: { name: 'creds' }, data: { password: Buffer.from('s3cret').toString('base64') } };
const svc = (ns: string, name: string, ip: string, ports: object[]): KObject => ({ metadata: { name, namespace: ns }, spec: { clusterIP: ip, ports } });
const kubernetes = svc('default', 'kubernetes', '10.96.0.1', [{ name: 'https', port: 443, protocol: 'TCP' }]);

function input(container: Partial<Container>, extra: Partial<EnvInput> = {}): EnvInput {
  return {
    pod,
    container: { name: 'c', ...container },
    hostIp: '192.168.0.11',
    podIps: ['10.244.1.7'],
    configMap: (n) => (n === 'cfg' ? cm : undefined),
    secret: (n) => (n === 'creds' ? secret : undefined),
    services: [kubernetes],
    ...extra,
  };
}

const asMap = (kv: { key: string; value: string }[]) => Object.fromEntries(kv.map((e) => [e.key, e.value]));

test('$(VAR) expansion: defined, undefined, escaped and unterminated references', () => {
  const vars: Record<string, string> = { A: 'x', B: 'y' };
  const cases: [string, string][] = [
    ['$(A)-$(B)', 'x-y'],
    ['$(MISSING)', '$(MISSING)'],
    ['$$(A)', '$(A)'],
    ['$A', '$A'],
    ['cost: $$5', 'cost: $5'],
    ['$(A', '$(A'],
    ['tail$', 'tail$'],
  ];
  for (const [inp, want] of cases) assert.equal(expandVars(inp, (n) => vars[n]), want, inp);
});

test('the downward API resolves the fields the kubelet supports', () => {
  const cases: [string, string][] = [
    ['metadata.name', 'web'],
    ['metadata.namespace', 'shop'],
    ['metadata.uid', 'u-1'],
    ["metadata.labels['version']", 'v2'],
    ["metadata.annotations['note']", 'a "quoted" value'],
    ['metadata.labels', 'app="web"\nversion="v2"'],
    ['spec.nodeName', 'node-1'],
    ['spec.serviceAccountName', 'web-sa'],
    ['status.podIP', '10.244.1.7'],
    ['status.podIPs', '10.244.1.7'],
    ['status.hostIP', '192.168.0.11'],
  ];
  for (const [path, want] of cases) assert.equal(fieldRefValue(pod, path, '192.168.0.11', ['10.244.1.7']), want, path);
  assert.throws(() => fieldRefValue(pod, 'spec.bogus', '', []), ContainerConfigError);
  assert.equal(formatMap({ b: '2', a: 'x\ny' }), 'a="x\\ny"\nb="2"');
});

test('env: envFrom (prefix, invalid keys skipped), explicit values win, expansion sees earlier vars', () => {
  const env = buildEnv(
    input({
      envFrom: [{ configMapRef: { name: 'cfg' }, prefix: 'CFG_' }],
      env: [
        { name: 'POD', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
        { name: 'CFG_MODE', value: 'slow' },
        { name: 'URL', value: 'http://$(POD):$(KUBERNETES_SERVICE_PORT)/$(NOPE)' },
        { name: 'GREETING', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'greeting' } } },
        { name: 'PASSWORD', valueFrom: { secretKeyRef: { name: 'creds', key: 'password' } } },
        { name: 'OPTIONAL', valueFrom: { configMapKeyRef: { name: 'absent', key: 'k', optional: true } } },
      ],
    }),
  );
  const m = asMap(env);
  assert.equal(m.CFG_MODE, 'slow');
  assert.equal(m.CFG_greeting, 'hi');
  assert.equal(m['CFG_bad key'], undefined);
  assert.equal(m.URL, 'http://web:443/$(NOPE)');
  assert.equal(m.GREETING, 'hi');
  assert.equal(m.PASSWORD, 's3cret');
  assert.equal('OPTIONAL' in m, false);
  assert.equal(m.KUBERNETES_SERVICE_HOST, '10.96.0.1');
  // Order: envFrom and env first, service variables after.
  assert.deepEqual(env.slice(0, 3).map((e) => e.key), ['CFG_MODE', 'CFG_greeting', 'POD']);
});

test('env: missing ConfigMaps, Secrets and keys are CreateContainerConfigError with the kubelet message', () => {
  const cases: [Partial<Container>, string][] = [
    [{ env: [{ name: 'X', valueFrom: { configMapKeyRef: { name: 'absent', key: 'k' } } }] }, 'configmap "absent" not found'],
    [{ env: [{ name: 'X', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'nope' } } }] }, "couldn't find key nope in ConfigMap shop/cfg"],
    [{ env: [{ name: 'X', valueFrom: { secretKeyRef: { name: 'absent', key: 'k' } } }] }, 'secret "absent" not found'],
    [{ env: [{ name: 'X', valueFrom: { secretKeyRef: { name: 'creds', key: 'nope' } } }] }, "couldn't find key nope in Secret shop/creds"],
    [{ envFrom: [{ secretRef: { name: 'absent' } }] }, 'secret "absent" not found'],
  ];
  for (const [c, msg] of cases) assert.throws(() => buildEnv(input(c)), (e: Error) => e instanceof ContainerConfigError && e.message === msg, msg);
  assert.doesNotThrow(() => buildEnv(input({ envFrom: [{ configMapRef: { name: 'absent', optional: true } }] })));
});

test('service links: every port of the namespace Services; enableServiceLinks=false keeps only kubernetes', () => {
  const services = [kubernetes, svc('shop', 'cart-api', '10.96.3.4', [{ name: 'http', port: 80, protocol: 'TCP' }, { name: 'dns', port: 53, protocol: 'UDP' }]), svc('shop', 'headless', 'None', [{ port: 80 }]), svc('other', 'x', '10.96.9.9', [{ port: 1 }])];
  const m = asMap(buildEnv(input({}, { services })));
  assert.equal(m.CART_API_SERVICE_HOST, '10.96.3.4');
  assert.equal(m.CART_API_SERVICE_PORT, '80');
  assert.equal(m.CART_API_SERVICE_PORT_HTTP, '80');
  assert.equal(m.CART_API_SERVICE_PORT_DNS, '53');
  assert.equal(m.CART_API_PORT, 'tcp://10.96.3.4:80');
  assert.equal(m.CART_API_PORT_53_UDP, 'udp://10.96.3.4:53');
  assert.equal(m.CART_API_PORT_53_UDP_PROTO, 'udp');
  assert.equal(m.CART_API_PORT_53_UDP_ADDR, '10.96.3.4');
  assert.equal(m.KUBERNETES_PORT_443_TCP, 'tcp://10.96.0.1:443');
  assert.equal('HEADLESS_SERVICE_HOST' in m, false);
  assert.equal('X_SERVICE_HOST' in m, false);
  const noLinks = asMap(buildEnv(input({}, { services, pod: { ...pod, spec: { ...(pod.spec as object), enableServiceLinks: false } } })));
  assert.equal('CART_API_SERVICE_HOST' in noLinks, false);
  assert.equal(noLinks.KUBERNETES_SERVICE_HOST, '10.96.0.1');
  assert.equal(serviceEnvVars([]).size, 0);
});
