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

test('control plane settings: defaults follow the namespace; addresses and durations are checked', () => {
  const d = parseAgentConfig({ NODE_NAME: 'n1' }, []);
  assert.ok(d.ok);
  assert.equal(d.config.controlAddress, 'ambit-control.ambit-system.svc:15012');
  assert.equal(d.config.controlServerName, 'ambit-control.ambit-system.svc');
  assert.equal(d.config.controlRoots, '/etc/ambit/ca/root-cert.pem');
  assert.equal(d.config.tokenFile, '/var/run/secrets/ambit/token');
  assert.equal(d.config.certTtlMs, 24 * 3600_000);
  assert.equal(d.config.certWaitMs, 5000);

  const moved = parseAgentConfig({ NODE_NAME: 'n1', POD_NAMESPACE: 'mesh' }, []);
  assert.ok(moved.ok);
  assert.equal(moved.config.controlAddress, 'ambit-control.mesh.svc:15012');
  assert.equal(moved.config.controlServerName, 'ambit-control.mesh.svc');

  const table: [string, boolean][] = [
    ['10.96.0.20:15012', true],
    ['[fd00::20]:15012', true],
    ['control.example:443', true],
    ['10.96.0.20', false],
    ['fd00::20:15012', false],
    ['control:0', false],
    ['Bad_Name:15012', false],
  ];
  for (const [address, ok] of table) assert.equal(parseAgentConfig({ NODE_NAME: 'n1', AMBIT_CONTROL_ADDRESS: address }, []).ok, ok, address);

  const bad = parseAgentConfig({ NODE_NAME: 'n1' }, ['--control-server-name=-x', '--control-roots=roots.pem', '--token-file=token', '--cert-ttl=5s', '--cert-wait=soon']);
  assert.equal(bad.ok, false);
  if (bad.ok) return;
  const text = bad.errors.join('\n');
  for (const needle of ['--control-server-name="-x"', '--control-roots="roots.pem"', '--token-file="token"', '--cert-ttl="5s"', '--cert-wait="soon"']) assert.ok(text.includes(needle), `missing ${needle} in:\n${text}`);
  assert.equal(bad.errors.length, 5);
});

test('proxy workers: default the CPUs available (at least 1), a number (0: the main thread proxies) or auto, checked', () => {
  const cpus = (n: number) => ({ cpus: n });
  const table: [Record<string, string>, string[], number, number | string][] = [
    [{}, [], 4, 4],
    [{}, [], 0, 1],
    [{ AMBIT_PROXY_WORKERS: '2' }, [], 8, 2],
    [{ AMBIT_PROXY_WORKERS: '2' }, ['--proxy-workers=1'], 8, 1],
    [{}, ['--proxy-workers=auto'], 3, 3],
    [{ AMBIT_PROXY_WORKERS: '0' }, [], 2, 0],
    [{ AMBIT_PROXY_WORKERS: '-1' }, [], 2, 'AMBIT_PROXY_WORKERS="-1"'],
    [{}, ['--proxy-workers=1.5'], 2, '--proxy-workers="1.5"'],
    [{}, ['--proxy-workers=many'], 2, '--proxy-workers="many"'],
    [{}, ['--proxy-workers=1000'], 2, '--proxy-workers="1000"'],
  ];
  for (const [env, argv, n, want] of table) {
    const r = parseAgentConfig({ NODE_NAME: 'n1', ...env }, argv, cpus(n));
    if (typeof want === 'number') {
      assert.ok(r.ok, JSON.stringify({ env, argv, r }));
      assert.equal(r.config.proxyWorkers, want, JSON.stringify({ env, argv }));
    } else {
      assert.equal(r.ok, false, JSON.stringify({ env, argv }));
      if (!r.ok) assert.ok(r.errors.some((e) => e.includes(want) && e.includes('proxy workers')), r.errors.join('\n'));
    }
  }
  // Without host facts the machine's own count is used.
  const own = parseAgentConfig({ NODE_NAME: 'n1' }, []);
  assert.ok(own.ok && own.config.proxyWorkers >= 1);
});
