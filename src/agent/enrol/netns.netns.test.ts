/**
 * ROOT tests of the netns finder against the real kernel. The namespaces are made with
 * `unshare --net=<file>` in a temp directory of this test (`ambit-enrol-<pid>-*`), the layout of
 * containerd's `<state>/netns/cni-<uuid>`, so the host's /var/run/netns is neither read nor touched.
 * Each holds an eth0 (one end of a veth pair inside it) with a v4 and a v6 address; everything is unmounted and removed in
 * after(), also when tests fail.
 *
 * As root these always run (CI runs as root); not as root they are skipped with a loud reason.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { currentNetnsId } from '../../sys/index.js';
import { identifyingAddresses, NetnsAmbiguous, NetnsFinder, netnsAddresses, translateCniNetnsPath } from './netns.js';

const IS_ROOT = process.getuid?.() === 0;
const NOT_ROOT_REASON = 'NOT RUN: netns finder tests need root (network namespaces); CI runs them as root';
if (!IS_ROOT) console.warn(`\n*** src/agent/enrol/netns.netns.test: ${NOT_ROOT_REASON} ***\n`);

const TIMEOUT = 10_000;

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: TIMEOUT });
}

describe('netns finder (root)', { skip: IS_ROOT ? false : NOT_ROOT_REASON }, () => {
  let dir = '';
  let netnsDir = '';
  const mounts: string[] = [];
  const children: ChildProcess[] = [];

  /** A persistent netns bound to `<netnsDir>/<name>` with eth0 holding `ips` (v4 /24, v6 /64). */
  function makeNetns(name: string, ips: string[]): string {
    const path = join(netnsDir, name);
    writeFileSync(path, '');
    run('unshare', [`--net=${path}`, 'true']);
    mounts.push(path);
    const ns = (...args: string[]) => run('nsenter', [`--net=${path}`, '--', 'ip', ...args]);
    ns('link', 'set', 'lo', 'up');
    // a veth pair inside the namespace: eth0 is up and running once its peer is up, like a pod's eth0
    ns('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0');
    ns('link', 'set', 'peer0', 'up');
    for (const ip of ips) {
      if (ip.includes(':')) ns('-6', 'addr', 'add', `${ip}/64`, 'dev', 'eth0', 'nodad');
      else ns('addr', 'add', `${ip}/24`, 'dev', 'eth0');
    }
    ns('link', 'set', 'eth0', 'up');
    return path;
  }

  function removeNetns(path: string): void {
    spawnSync('umount', [path], { stdio: 'ignore' });
    rmSync(path, { force: true });
    const i = mounts.indexOf(path);
    if (i >= 0) mounts.splice(i, 1);
  }

  let a = '';
  let b = '';
  let c = '';

  before(() => {
    dir = mkdtempSync(join(tmpdir(), `ambit-enrol-${process.pid}-`));
    netnsDir = join(dir, 'netns');
    mkdirSync(netnsDir);
    a = makeNetns('cni-aaaa', ['10.77.0.1', 'fd00:77::1']);
    b = makeNetns('cni-bbbb', ['10.77.0.2', 'fd00:77::2']);
    c = makeNetns('cni-cccc', ['10.77.0.3']);
  });

  after(() => {
    for (const child of children) child.kill('SIGKILL');
    for (const path of [...mounts]) removeNetns(path);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('os.networkInterfaces() inside inNetns reads the target namespace, and the thread comes back', () => {
    const home = currentNetnsId();
    const hostAddrs = identifyingAddresses(networkInterfaces());
    assert.deepEqual(netnsAddresses(a), ['10.77.0.1', 'fd00:77::1']);
    assert.deepEqual(netnsAddresses(c), ['10.77.0.3']);
    for (const ip of hostAddrs) assert.ok(!netnsAddresses(b).includes(ip), `host address ${ip} not seen inside`);
    assert.equal(currentNetnsId(), home);
    assert.deepEqual(identifyingAddresses(networkInterfaces()), hostAddrs, 'the host view is unchanged afterwards');
  });

  test('finds the namespace holding a pod IP among three (v4 and v6), with a cache', async () => {
    const finder = new NetnsFinder({ netnsDir });
    assert.equal(await finder.find({ ips: ['10.77.0.2'] }), b);
    assert.equal(await finder.find({ ips: ['fd00:77::1'] }), a);
    assert.equal(await finder.find({ ips: ['10.77.0.1', 'fd00:77::1'] }), a);
    assert.equal(await finder.find({ ips: ['10.77.0.3'] }), c);
    assert.deepEqual(finder.cached, { dir: 3, proc: 0 });
  });

  test('a missing pod is undefined, not an error; a missing directory too', async () => {
    const finder = new NetnsFinder({ netnsDir });
    assert.equal(await finder.find({ ips: ['10.77.0.99'] }), undefined);
    assert.equal(await finder.find({ ips: [] }), undefined);
    assert.equal(await new NetnsFinder({ netnsDir: join(dir, 'nope') }).find({ ips: ['10.77.0.1'] }), undefined);
  });

  test('a CNI netns path is translated by base name and verified', async () => {
    const finder = new NetnsFinder({ netnsDir });
    // as containerd passes it on the host, in either layout
    assert.equal(await finder.find({ ips: ['10.77.0.2'] }, '/var/run/netns/cni-bbbb'), b);
    assert.equal(await finder.fromCniPath('/var/lib/containerd/state/netns/cni-cccc'), c);
    assert.equal(await finder.fromCniPath('/var/run/netns/cni-cccc', ['10.77.0.3']), c);
    // exists but does not hold the pod's IP: not trusted
    assert.equal(await finder.fromCniPath('/var/run/netns/cni-cccc', ['10.77.0.1']), undefined);
    // gone, or not a namespace at all
    assert.equal(await finder.fromCniPath('/var/run/netns/cni-gone'), undefined);
    writeFileSync(join(netnsDir, 'cni-stale'), '');
    assert.equal(await finder.fromCniPath('/var/run/netns/cni-stale'), undefined);
    // a hint that does not resolve falls back to the IP scan
    assert.equal(await finder.find({ ips: ['10.77.0.1'] }, '/var/run/netns/cni-gone'), a);
    rmSync(join(netnsDir, 'cni-stale'));
  });

  test('rescans follow the kernel: removed namespaces leave the cache, moved addresses are found', async () => {
    const finder = new NetnsFinder({ netnsDir });
    assert.equal(await finder.find({ ips: ['10.77.0.3'] }), c);
    const d = makeNetns('cni-dddd', ['10.77.0.4']);
    assert.equal(await finder.find({ ips: ['10.77.0.4'] }), d);
    assert.equal(finder.cached.dir, 4);

    // the pod's address moves (a sandbox recreated with the same IP): the cache must not hide it
    run('nsenter', [`--net=${d}`, '--', 'ip', 'addr', 'del', '10.77.0.4/24', 'dev', 'eth0']);
    run('nsenter', [`--net=${c}`, '--', 'ip', 'addr', 'add', '10.77.0.4/24', 'dev', 'eth0']);
    assert.equal(await finder.find({ ips: ['10.77.0.4'] }), c);
    run('nsenter', [`--net=${c}`, '--', 'ip', 'addr', 'del', '10.77.0.4/24', 'dev', 'eth0']);

    removeNetns(d);
    assert.equal(await finder.find({ ips: ['10.77.0.4'] }), undefined);
    assert.equal(finder.cached.dir, 3);
  });

  test('two namespaces holding the same IP is an error that names both', async () => {
    const e = makeNetns('cni-eeee', ['10.77.0.2']);
    try {
      const finder = new NetnsFinder({ netnsDir });
      await assert.rejects(finder.find({ ips: ['10.77.0.2'] }), (err: unknown) => err instanceof NetnsAmbiguous && err.paths.includes(b) && err.paths.includes(e));
      // the pod's second address settles it
      assert.equal(await finder.find({ ips: ['10.77.0.2', 'fd00:77::2'] }), b);
    } finally {
      removeNetns(e);
    }
  });

  test('without a netns directory, /proc/<pid>/ns/net of a process in the pod netns is found', async () => {
    const empty = join(dir, 'empty');
    mkdirSync(empty, { recursive: true });
    const child = spawn('nsenter', [`--net=${c}`, '--', 'sleep', '30'], { stdio: 'ignore' });
    children.push(child);
    const finder = new NetnsFinder({ netnsDir: empty, procRoot: '/proc' });
    const deadline = Date.now() + TIMEOUT;
    let found: string | undefined;
    while (!found && Date.now() < deadline) {
      found = await finder.find({ ips: ['10.77.0.3'] });
      if (!found) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(found, 'found through /proc');
    assert.match(found, /^\/proc\/\d+\/ns\/net$/);
    assert.equal(statSync(found).ino, statSync(c).ino, 'the same namespace as the bound file');
    assert.equal(await new NetnsFinder({ netnsDir: empty }).find({ ips: ['10.77.0.3'] }), undefined, 'no proc scan unless configured');
    child.kill('SIGKILL');
  });
});

test('translateCniNetnsPath', () => {
  const table: [string, string | undefined][] = [
    ['/var/run/netns/cni-1234', '/host/netns/cni-1234'],
    ['/run/netns/cni-1234', '/host/netns/cni-1234'],
    ['/var/lib/ambit/node-1/state/netns/cni-1234', '/host/netns/cni-1234'],
    ['/proc/4242/ns/net', '/host/proc/4242/ns/net'],
    ['', undefined],
  ];
  for (const [input, want] of table) assert.equal(translateCniNetnsPath(input, '/host/netns', '/host/proc'), want, input);
});

test('identifyingAddresses drops loopback and link-local', () => {
  const info = (address: string, family: 'IPv4' | 'IPv6', internal = false) => ({ address, family, internal, netmask: '', mac: '', cidr: null }) as never;
  assert.deepEqual(
    identifyingAddresses({
      lo: [info('127.0.0.1', 'IPv4', true), info('::1', 'IPv6', true)],
      eth0: [info('10.244.1.5', 'IPv4'), info('fe80::1', 'IPv6'), info('fd00::5', 'IPv6'), info('169.254.7.127', 'IPv4')],
    }),
    ['10.244.1.5', 'fd00::5'],
  );
});
