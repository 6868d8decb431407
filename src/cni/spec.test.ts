// Table tests of the CNI protocol core: environment, CNI_ARGS, network configuration (malformed,
// truncated, unknown versions, bad fields), result conversion between versions, pod addresses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CniCode,
  CniError,
  convertResult,
  errorResult,
  ifnameProblem,
  parseCidr,
  parseCniArgs,
  parseEnvironment,
  parseNetworkConfig,
  podAddresses,
  podFromArgs,
  versionAtLeast,
  versionResult,
  configVersionForErrors,
  type Env,
} from './spec.js';

/** Runs fn and returns the CniError it throws (fails the test if it throws anything else or nothing). */
function cniErrorOf(fn: () => unknown): CniError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof CniError, `expected a CniError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a CniError, nothing was thrown');
}

const BASE_ENV: Env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c0ffee12', CNI_NETNS: '/var/run/netns/cni-1', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' };

test('parseEnvironment accepts what runtimes send and names every invalid variable', () => {
  const ok = parseEnvironment({ ...BASE_ENV, CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_UID=u-1' });
  assert.deepEqual(ok, {
    command: 'ADD',
    containerId: 'c0ffee12',
    netns: '/var/run/netns/cni-1',
    ifname: 'eth0',
    args: { IgnoreUnknown: '1', K8S_POD_NAMESPACE: 'shop', K8S_POD_NAME: 'web-0', K8S_POD_UID: 'u-1' },
  });
  // DEL may come without a netns (it is already gone).
  assert.equal(parseEnvironment({ ...BASE_ENV, CNI_COMMAND: 'DEL', CNI_NETNS: undefined }).netns, '');

  const cases: Array<{ env: Env; code: number; names: string[] }> = [
    { env: { ...BASE_ENV, CNI_COMMAND: undefined }, code: CniCode.InvalidEnvironment, names: ['CNI_COMMAND'] },
    { env: { ...BASE_ENV, CNI_COMMAND: 'GC' }, code: CniCode.InvalidEnvironment, names: ['CNI_COMMAND=GC'] },
    { env: { ...BASE_ENV, CNI_COMMAND: 'add' }, code: CniCode.InvalidEnvironment, names: ['CNI_COMMAND=add'] },
    { env: { ...BASE_ENV, CNI_CONTAINERID: undefined }, code: CniCode.InvalidEnvironment, names: ['CNI_CONTAINERID'] },
    { env: { ...BASE_ENV, CNI_CONTAINERID: '-bad' }, code: CniCode.InvalidEnvironment, names: ['CNI_CONTAINERID'] },
    { env: { ...BASE_ENV, CNI_NETNS: '' }, code: CniCode.InvalidEnvironment, names: ['CNI_NETNS'] },
    { env: { ...BASE_ENV, CNI_COMMAND: 'CHECK', CNI_NETNS: undefined }, code: CniCode.InvalidEnvironment, names: ['CNI_NETNS'] },
    { env: { ...BASE_ENV, CNI_IFNAME: undefined }, code: CniCode.InvalidEnvironment, names: ['CNI_IFNAME'] },
    { env: { ...BASE_ENV, CNI_IFNAME: 'averyveryverylongname' }, code: CniCode.InvalidEnvironment, names: ['CNI_IFNAME'] },
    { env: { ...BASE_ENV, CNI_ARGS: 'K8S_POD_NAME' }, code: CniCode.InvalidEnvironment, names: ['CNI_ARGS'] },
    // several at once: all named
    { env: { CNI_COMMAND: 'ADD', CNI_IFNAME: 'eth0' }, code: CniCode.InvalidEnvironment, names: ['CNI_CONTAINERID', 'CNI_NETNS'] },
  ];
  for (const c of cases) {
    const e = cniErrorOf(() => parseEnvironment(c.env));
    assert.equal(e.code, c.code, JSON.stringify(c.env));
    for (const n of c.names) assert.ok(e.message.includes(n), `${e.message} should name ${n}`);
  }
});

test('ifnameProblem follows the Linux rules the spec quotes', () => {
  const cases: Array<[string, boolean]> = [
    ['eth0', true],
    ['net1', true],
    ['a23456789012345', true], // 15 bytes
    ['a234567890123456', false], // 16
    ['', false],
    ['.', false],
    ['..', false],
    ['eth/0', false],
    ['eth:0', false],
    ['eth 0', false],
    ['eth\t0', false],
  ];
  for (const [name, valid] of cases) assert.equal(ifnameProblem(name) === undefined, valid, name);
});

test('parseCniArgs: K=V pairs separated by ";" exactly as libcni reads them', () => {
  const ok: Array<[string, Record<string, string>]> = [
    ['', {}],
    ['FOO=BAR', { FOO: 'BAR' }],
    ['FOO=BAR;ABC=123', { FOO: 'BAR', ABC: '123' }],
    ['K8S_POD_UID=', { K8S_POD_UID: '' }],
    ['A=1;A=2', { A: '2' }],
  ];
  for (const [s, want] of ok) assert.deepEqual(parseCniArgs(s), want, s);
  for (const bad of ['FOO', 'FOO=BAR;', ';FOO=BAR', '=x', 'A=B=C', 'A=1;;B=2']) {
    assert.throws(() => parseCniArgs(bad), /CNI_ARGS: invalid pair/, bad);
  }
});

test('podFromArgs reads the K8S_POD_* arguments; other containers are not pods', () => {
  assert.deepEqual(podFromArgs({ K8S_POD_NAMESPACE: 'a', K8S_POD_NAME: 'b', K8S_POD_UID: 'u' }), { namespace: 'a', name: 'b', uid: 'u' });
  assert.deepEqual(podFromArgs({ K8S_POD_NAMESPACE: 'a', K8S_POD_NAME: 'b' }), { namespace: 'a', name: 'b', uid: '' });
  assert.equal(podFromArgs({ K8S_POD_NAME: 'b' }), undefined);
  assert.equal(podFromArgs({}), undefined);
});

const PREV_1_0 = {
  cniVersion: '1.0.0',
  interfaces: [{ name: 'cni0', mac: '00:11:22:33:44:55' }, { name: 'veth1', mac: '55:44:33:22:11:11' }, { name: 'eth0', mac: '99:88:77:66:55:44', sandbox: '/var/run/netns/cni-1' }],
  ips: [
    { address: '10.244.1.5/24', gateway: '10.244.1.1', interface: 2 },
    { address: 'fd00:10:244:1::5/64', gateway: 'fd00:10:244:1::1', interface: 2 },
  ],
  routes: [{ dst: '0.0.0.0/0' }],
  dns: {},
};

const conf = (o: Record<string, unknown>): string => JSON.stringify({ cniVersion: '1.0.0', name: 'pods', type: 'ambit-cni', prevResult: PREV_1_0, ...o });

test('parseNetworkConfig: defaults and the fields ambit-cni reads', () => {
  const c = parseNetworkConfig(conf({}), 'ADD');
  assert.equal(c.cniVersion, '1.0.0');
  assert.equal(c.name, 'pods');
  assert.equal(c.agentSocket, '@ambit/cni');
  assert.equal(c.timeoutMs, 30_000);
  assert.deepEqual(c.excludeNamespaces, []);
  assert.deepEqual(c.prevResult, PREV_1_0);
  const d = parseNetworkConfig(conf({ agentSocket: '/run/a.sock', timeoutMs: 500, excludeNamespaces: ['kube-system'], runtimeConfig: {}, args: {} }), 'ADD');
  assert.deepEqual([d.agentSocket, d.timeoutMs, d.excludeNamespaces], ['/run/a.sock', 500, ['kube-system']]);
  assert.equal(parseNetworkConfig(conf({ agentSocket: '@other/name' }), 'ADD').agentSocket, '@other/name');
  // DEL needs no prevResult; every supported version parses
  assert.equal(parseNetworkConfig(conf({ prevResult: undefined }), 'DEL').prevResult, undefined);
  for (const v of ['0.3.0', '0.3.1', '0.4.0', '1.0.0']) assert.equal(parseNetworkConfig(conf({ cniVersion: v }), 'DEL').cniVersion, v);
});

test('parseNetworkConfig: malformed, truncated and unknown input get the spec\'s codes', () => {
  const full = conf({});
  const cases: Array<{ what: string; stdin: string; cmd?: 'ADD' | 'DEL' | 'CHECK'; code: number; match: RegExp }> = [
    { what: 'empty stdin', stdin: '', code: CniCode.DecodingFailure, match: /no network configuration/ },
    { what: 'whitespace only', stdin: ' \n', code: CniCode.DecodingFailure, match: /no network configuration/ },
    { what: 'truncated JSON', stdin: full.slice(0, full.length / 2), code: CniCode.DecodingFailure, match: /not valid JSON/ },
    { what: 'one byte short', stdin: full.slice(0, -1), code: CniCode.DecodingFailure, match: /not valid JSON/ },
    { what: 'an array', stdin: '[]', code: CniCode.DecodingFailure, match: /not a JSON object.*array/ },
    { what: 'a string', stdin: '"x"', code: CniCode.DecodingFailure, match: /not a JSON object/ },
    { what: 'cniVersion a number', stdin: conf({ cniVersion: 1 }), code: CniCode.DecodingFailure, match: /cniVersion must be a string/ },
    { what: 'no cniVersion', stdin: conf({ cniVersion: undefined }), code: CniCode.IncompatibleVersion, match: /no cniVersion \(which means 0\.1\.0\)/ },
    { what: 'cniVersion 0.2.0', stdin: conf({ cniVersion: '0.2.0' }), code: CniCode.IncompatibleVersion, match: /cniVersion 0\.2\.0.*supported versions: 0\.3\.0, 0\.3\.1, 0\.4\.0, 1\.0\.0/ },
    { what: 'cniVersion 1.1.0', stdin: conf({ cniVersion: '1.1.0' }), code: CniCode.IncompatibleVersion, match: /cniVersion 1\.1\.0/ },
    { what: 'cniVersion garbage', stdin: conf({ cniVersion: 'latest' }), code: CniCode.IncompatibleVersion, match: /latest/ },
    { what: 'CHECK on 0.3.1', stdin: conf({ cniVersion: '0.3.1' }), cmd: 'CHECK', code: CniCode.IncompatibleVersion, match: /CHECK needs cniVersion 0\.4\.0/ },
    { what: 'ipam', stdin: conf({ ipam: { type: 'host-local' } }), code: CniCode.UnsupportedField, match: /unsupported field ipam=\{"type":"host-local"\}/ },
    { what: 'no name', stdin: conf({ name: undefined }), code: CniCode.InvalidConfig, match: /name: must be a non-empty string/ },
    { what: 'relative socket', stdin: conf({ agentSocket: 'cni.sock' }), code: CniCode.InvalidConfig, match: /agentSocket: must be an absolute path or "@name"/ },
    { what: 'abstract socket without a name', stdin: conf({ agentSocket: '@' }), code: CniCode.InvalidConfig, match: /agentSocket: an abstract socket needs a name/ },
    { what: 'socket path too long', stdin: conf({ agentSocket: `/${'x'.repeat(107)}` }), code: CniCode.InvalidConfig, match: /agentSocket: must be at most 107 bytes/ },
    { what: 'timeout 0', stdin: conf({ timeoutMs: 0 }), code: CniCode.InvalidConfig, match: /timeoutMs/ },
    { what: 'timeout string', stdin: conf({ timeoutMs: '5s' }), code: CniCode.InvalidConfig, match: /timeoutMs/ },
    { what: 'excludeNamespaces string', stdin: conf({ excludeNamespaces: 'kube-system' }), code: CniCode.InvalidConfig, match: /excludeNamespaces/ },
    { what: 'ADD without prevResult', stdin: conf({ prevResult: undefined }), code: CniCode.InvalidConfig, match: /chained after the plugin that creates the pod's interface/ },
    { what: 'CHECK without prevResult', stdin: conf({ prevResult: undefined }), cmd: 'CHECK', code: CniCode.InvalidConfig, match: /prevResult: missing/ },
    { what: 'prevResult an array', stdin: conf({ prevResult: [] }), code: CniCode.DecodingFailure, match: /prevResult is not a JSON object/ },
    { what: 'prevResult bad address', stdin: conf({ prevResult: { ips: [{ address: '10.0.0.1' }] } }), code: CniCode.InvalidConfig, match: /prevResult\.ips\[0\]\.address/ },
    { what: 'prevResult bad interface index', stdin: conf({ prevResult: { ips: [{ address: '10.0.0.1/8', interface: -1 }] } }), code: CniCode.InvalidConfig, match: /prevResult\.ips\[0\]\.interface/ },
  ];
  for (const c of cases) {
    const e = cniErrorOf(() => parseNetworkConfig(c.stdin, c.cmd ?? 'ADD'));
    assert.equal(e.code, c.code, `${c.what}: ${e.message}`);
    assert.match(e.message, c.match, c.what);
  }
});

test('parseNetworkConfig reports every invalid field at once', () => {
  const e = cniErrorOf(() => parseNetworkConfig(conf({ name: '', agentSocket: 'x', timeoutMs: -1 }), 'ADD'));
  assert.equal(e.code, CniCode.InvalidConfig);
  for (const f of ['name:', 'agentSocket:', 'timeoutMs:']) assert.ok(e.details.includes(f), `${e.details} names ${f}`);
});

test('versionResult echoes a supported requested version, else reports the latest', () => {
  const supportedVersions = ['0.3.0', '0.3.1', '0.4.0', '1.0.0'];
  assert.deepEqual(versionResult('{"cniVersion":"0.4.0"}'), { cniVersion: '0.4.0', supportedVersions });
  assert.deepEqual(versionResult(''), { cniVersion: '1.0.0', supportedVersions });
  assert.deepEqual(versionResult('{"cniVersion":"9.9.9"}'), { cniVersion: '1.0.0', supportedVersions });
  assert.deepEqual(versionResult('{trunc'), { cniVersion: '1.0.0', supportedVersions });
});

test('errorResult has the spec\'s fields; the version is the configuration\'s when it has one', () => {
  assert.deepEqual(errorResult(new CniError(CniCode.TryAgainLater, 'agent down', 'ECONNREFUSED'), '0.4.0'), { cniVersion: '0.4.0', code: 11, msg: 'agent down', details: 'ECONNREFUSED' });
  assert.deepEqual(errorResult(new CniError(CniCode.InvalidConfig, 'bad'), '1.0.0'), { cniVersion: '1.0.0', code: 7, msg: 'bad' });
  assert.equal(configVersionForErrors('{"cniVersion":"0.3.1"}'), '0.3.1');
  assert.equal(configVersionForErrors('{"cniVersion":"7.0.0"}'), '7.0.0');
  assert.equal(configVersionForErrors('{"cniV'), '1.0.0');
  assert.equal(configVersionForErrors('{}'), '1.0.0');
});

test('convertResult: the same result in every version\'s shape, unknown fields untouched', () => {
  const v04 = convertResult(PREV_1_0, '0.4.0');
  assert.deepEqual(v04, {
    ...PREV_1_0,
    cniVersion: '0.4.0',
    ips: [
      { version: '4', address: '10.244.1.5/24', gateway: '10.244.1.1', interface: 2 },
      { version: '6', address: 'fd00:10:244:1::5/64', gateway: 'fd00:10:244:1::1', interface: 2 },
    ],
  });
  // 0.3.0 and 0.3.1 share 0.4.0's shape
  assert.deepEqual(convertResult(PREV_1_0, '0.3.0'), { ...v04, cniVersion: '0.3.0' });
  // back to 1.0.0: "version" goes away, the rest is identical
  assert.deepEqual(convertResult(v04, '1.0.0'), PREV_1_0);
  // same version: passed through unchanged (even fields this plugin never heard of)
  const odd = { ...PREV_1_0, routes: [{ dst: '0.0.0.0/0', mtu: 1400, table: 7 }], vendorThing: { a: 1 } };
  assert.deepEqual(convertResult(odd, '1.0.0'), odd);
  // a result without cniVersion is taken to be in the requested version
  const { cniVersion: _c, ...noVersion } = PREV_1_0;
  assert.deepEqual(convertResult(noVersion, '1.0.0'), PREV_1_0);
  // an abbreviated (IPAM-like) result converts too
  assert.deepEqual(convertResult({ cniVersion: '1.0.0', ips: [{ address: '10.0.0.2/8' }] }, '0.3.1'), { cniVersion: '0.3.1', ips: [{ version: '4', address: '10.0.0.2/8' }] });
  // old result shapes (0.2.0: ip4/ip6) are not ours to convert
  assert.equal(cniErrorOf(() => convertResult({ cniVersion: '0.2.0', ip4: { ip: '10.0.0.2/8' } }, '1.0.0')).code, CniCode.IncompatibleVersion);
  // the key order of the output puts cniVersion first, as runtimes print it
  assert.equal(Object.keys(convertResult(PREV_1_0, '0.4.0'))[0], 'cniVersion');
});

test('podAddresses: the pod interface\'s addresses only', () => {
  assert.deepEqual(podAddresses(PREV_1_0, 'eth0'), ['10.244.1.5', 'fd00:10:244:1::5']);
  assert.deepEqual(podAddresses(PREV_1_0, 'net1'), []);
  const mixed = {
    interfaces: [{ name: 'eth0' }, { name: 'eth0', sandbox: '/run/netns/x' }],
    ips: [{ address: '192.168.0.1/24', interface: 0 }, { address: '10.1.0.7/16', interface: 1 }, { address: '10.9.9.9/32', interface: 9 }],
  };
  assert.deepEqual(podAddresses(mixed, 'eth0'), ['10.1.0.7']); // host-side eth0 and a dangling index are not the pod's
  assert.deepEqual(podAddresses({ ips: [{ address: '10.0.0.2/8' }] }, 'eth0'), ['10.0.0.2']); // no interface info: all
  assert.deepEqual(podAddresses(undefined, 'eth0'), []);
});

test('parseCidr and versionAtLeast', () => {
  const cidrs: Array<[string, ReturnType<typeof parseCidr>]> = [
    ['10.1.2.3/24', { address: '10.1.2.3', family: 4 }],
    ['fd00::1/64', { address: 'fd00::1', family: 6 }],
    ['::ffff:10.0.0.1/128', { address: '::ffff:10.0.0.1', family: 6 }],
    ['10.1.2.3', undefined],
    ['10.1.2.3/33', undefined],
    ['300.1.2.3/8', undefined],
    ['fd00::1/129', undefined],
    ['host/8', undefined],
    ['10.0.0.1/', undefined],
  ];
  for (const [s, want] of cidrs) assert.deepEqual(parseCidr(s), want, s);
  const versions: Array<[string, string, boolean]> = [
    ['1.0.0', '0.4.0', true],
    ['0.4.0', '0.4.0', true],
    ['0.3.1', '0.4.0', false],
    ['0.10.0', '0.4.0', true],
    ['x', '0.4.0', false],
  ];
  for (const [a, b, want] of versions) assert.equal(versionAtLeast(a, b), want, `${a} >= ${b}`);
});
