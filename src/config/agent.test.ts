import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAgentConfig, resolverFromResolvConf } from './agent.js';

test('defaults: only the node name is required', () => {
  const r = parseAgentConfig({ NODE_NAME: 'node-1' }, []);
  assert.ok(r.ok);
  assert.equal(r.config.nodeName, 'node-1');
  assert.equal(r.config.namespace, 'ambit-system');
  assert.deepEqual(r.config.metricsAddress, { host: '0.0.0.0', port: 15020 });
  assert.deepEqual(r.config.readinessAddress, { host: '0.0.0.0', port: 15021 });
  assert.equal(r.config.cniConfDir, '/etc/cni/net.d');
  assert.equal(r.config.cniBinDir, '/opt/cni/bin');
  assert.equal(r.config.cniSocket, '@ambit/cni');
  assert.deepEqual(r.config.cniExcludeNamespaces, ['kube-system']);
  assert.equal(r.config.netnsDir, '/var/run/netns');
  assert.equal(r.config.redirectBackend, 'auto');
  assert.equal(r.config.dnsCapture, true);
  assert.equal(r.config.dnsUpstream, undefined);
});

test('flags win over variables', () => {
  const r = parseAgentConfig(
    { NODE_NAME: 'a', POD_NAMESPACE: 'mesh', AMBIT_REDIRECT_BACKEND: 'nft', AMBIT_DNS_UPSTREAM: '10.96.0.10' },
    ['--node-name=b', '--redirect-backend', 'iptables-legacy', '--cni-exclude-namespaces=kube-system, infra', '--dns-capture=false', '--cni-socket=/run/ambit/cni.sock'],
  );
  assert.ok(r.ok);
  assert.equal(r.config.nodeName, 'b');
  assert.equal(r.config.namespace, 'mesh');
  assert.equal(r.config.redirectBackend, 'iptables-legacy');
  assert.deepEqual(r.config.cniExcludeNamespaces, ['kube-system', 'infra']);
  assert.equal(r.config.dnsCapture, false);
  assert.deepEqual(r.config.dnsUpstream, { host: '10.96.0.10', port: 53 });
  assert.equal(r.config.cniSocket, '/run/ambit/cni.sock');
});

test('every problem at once, each naming its setting', () => {
  const r = parseAgentConfig({ AMBIT_REDIRECT_BACKEND: 'ebpf', AMBIT_DNS_UPSTREAM: 'dns.local' }, ['--cni-conf-dir=etc/cni', '--dns-capture=yes', '--cni-socket=cni.sock', '--bogus=1']);
  assert.equal(r.ok, false);
  if (r.ok) return;
  const text = r.errors.join('\n');
  for (const needle of ['NODE_NAME', 'AMBIT_REDIRECT_BACKEND="ebpf"', 'AMBIT_DNS_UPSTREAM="dns.local"', '--cni-conf-dir="etc/cni"', '--dns-capture="yes"', '--cni-socket="cni.sock"', 'unknown flag --bogus']) {
    assert.ok(text.includes(needle), `missing ${needle} in:\n${text}`);
  }
  assert.equal(r.errors.length, 7);
});

test('the cluster resolver comes from the first nameserver line', () => {
  const table: [string, string | undefined][] = [
    ['search a.svc.cluster.local\nnameserver 10.96.0.10\nnameserver 8.8.8.8\noptions ndots:5\n', '10.96.0.10'],
    ['# comment\n  nameserver   fd00::a  \n', 'fd00::a'],
    ['nameserver localhost\n', undefined],
    ['', undefined],
  ];
  for (const [text, host] of table) assert.equal(resolverFromResolvConf(text)?.host, host, JSON.stringify(text));
});
