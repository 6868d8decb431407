// The conflist installer: pure edits (append, idempotence, exact removal, refusals) as table
// tests, then a real install into temp dirs whose plugin binary runs as the runtime would run it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, readFile, readdir, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addAmbitPlugin, BUNDLED_PLUGIN_BINARY, CniInstallError, detectIndent, installCni, primaryConfFile, removeAmbitPlugin, uninstallCni } from './install.js';

/** Runs an executable as a runtime does: environment set, stdin written and closed. */
function run(file: string, env: Record<string, string>, stdin = ''): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(file, [], { env, stdio: ['pipe', 'pipe', 'ignore'] });
    let stdout = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout }));
    p.stdin.end(stdin);
  });
}

const BRIDGE_CONFLIST = `${JSON.stringify(
  {
    cniVersion: '1.0.0',
    name: 'pods',
    plugins: [
      { type: 'bridge', bridge: 'cni0', isGateway: true, ipam: { type: 'host-local', ranges: [[{ subnet: '10.244.1.0/24' }]] } },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  },
  null,
  2,
)}\n`;
const ENTRY = { agentSocket: '/var/run/ambit/cni.sock' };
/** An abstract name nobody serves, so the installed plugin runs without an agent. */
const NOBODY = `@ambit-test-nobody-${process.pid}`;

test('primaryConfFile: the first loadable file by name, as libcni lists them', () => {
  const cases: Array<[string[], string | undefined]> = [
    [['10-a.conflist', '05-b.conflist'], '05-b.conflist'],
    [['99-x.json', '10-a.conflist'], '10-a.conflist'],
    [['10-a.conf', '10-a.conflist'], '10-a.conf'],
    [['README', '.10-a.conflist.123.tmp', '10-a.conflist'], '10-a.conflist'],
    [['README', 'x.yaml'], undefined],
    [[], undefined],
  ];
  for (const [names, want] of cases) assert.equal(primaryConfFile(names), want, names.join(','));
});

test('addAmbitPlugin appends once; removeAmbitPlugin restores the file byte for byte', () => {
  const added = addAmbitPlugin(BRIDGE_CONFLIST, ENTRY);
  assert.equal(added.changed, true);
  const conf = JSON.parse(added.text);
  assert.deepEqual(conf.plugins.map((p: { type: string }) => p.type), ['bridge', 'portmap', 'ambit-cni']);
  assert.deepEqual(conf.plugins[2], { type: 'ambit-cni', agentSocket: '/var/run/ambit/cni.sock' });
  assert.deepEqual({ ...conf, plugins: conf.plugins.slice(0, 2) }, JSON.parse(BRIDGE_CONFLIST));
  // idempotent
  assert.deepEqual(addAmbitPlugin(added.text, ENTRY), { text: added.text, changed: false });
  // a changed entry is updated in place, not appended again
  const moved = addAmbitPlugin(added.text, { agentSocket: '/run/other.sock', excludeNamespaces: ['kube-system'] });
  assert.equal(moved.changed, true);
  assert.deepEqual(JSON.parse(moved.text).plugins[2], { type: 'ambit-cni', agentSocket: '/run/other.sock', excludeNamespaces: ['kube-system'] });
  assert.equal(JSON.parse(moved.text).plugins.length, 3);
  // exact removal
  assert.deepEqual(removeAmbitPlugin(added.text), { text: BRIDGE_CONFLIST, changed: true });
  assert.deepEqual(removeAmbitPlugin(BRIDGE_CONFLIST), { text: BRIDGE_CONFLIST, changed: false });
});

test('edits keep the file\'s own formatting', () => {
  const compact = JSON.stringify(JSON.parse(BRIDGE_CONFLIST));
  const tabbed = JSON.stringify(JSON.parse(BRIDGE_CONFLIST), null, '\t');
  assert.deepEqual([detectIndent(compact), detectIndent(tabbed), detectIndent(BRIDGE_CONFLIST)], [0, '\t', '  ']);
  for (const original of [compact, tabbed, `${tabbed}\n`]) {
    const added = addAmbitPlugin(original, ENTRY).text;
    assert.equal(removeAmbitPlugin(added).text, original);
    assert.equal(added.endsWith('\n'), original.endsWith('\n'));
  }
  // an already-present entry written with other spacing is left alone
  const foreign = JSON.stringify({ ...JSON.parse(BRIDGE_CONFLIST), plugins: [...JSON.parse(BRIDGE_CONFLIST).plugins, { type: 'ambit-cni', ...ENTRY }] }, null, 4);
  assert.deepEqual(addAmbitPlugin(foreign, ENTRY), { text: foreign, changed: false });
});

test('addAmbitPlugin refuses what it cannot chain onto, saying why', () => {
  const cases: Array<[string, RegExp]> = [
    ['{"cniVersion": "1.0.0", "name": "x", "type": "bridge"}', /no "plugins" list.*single-plugin \.conf/],
    ['{"cniVersion": "1.0.0", "plugins": [', /not valid JSON/],
    [JSON.stringify({ ...JSON.parse(BRIDGE_CONFLIST), cniVersion: '1.1.0' }), /cniVersion "1\.1\.0".*not added/],
    [JSON.stringify({ ...JSON.parse(BRIDGE_CONFLIST), cniVersion: '0.2.0' }), /cniVersion "0\.2\.0"/],
  ];
  for (const [text, re] of cases) assert.throws(() => addAmbitPlugin(text, ENTRY, 'f.conflist'), (e: unknown) => e instanceof CniInstallError && re.test(e.message), text);
  // an entry the plugin could not use is refused too
  for (const agentSocket of ['cni.sock', '@', `/${'x'.repeat(120)}`]) {
    assert.throws(() => addAmbitPlugin(BRIDGE_CONFLIST, { agentSocket }), (e: unknown) => e instanceof CniInstallError && /agentSocket/.test(e.message), agentSocket);
  }
  // no agentSocket: the plugin's default (the abstract @ambit/cni)
  assert.deepEqual(JSON.parse(addAmbitPlugin(BRIDGE_CONFLIST, {}).text).plugins[2], { type: 'ambit-cni' });
});

test('installCni / uninstallCni on real dirs: the static plugin binary, replaced atomically, removed without a trace', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-cni-install-'));
  const confDir = join(dir, 'net.d');
  const binDir = join(dir, 'bin');
  const entry = { agentSocket: NOBODY, timeoutMs: 2000, excludeNamespaces: ['kube-system'] };
  try {
    await mkdir(confDir);
    await mkdir(binDir);
    await writeFile(join(binDir, 'bridge'), 'not ours');
    await writeFile(join(confDir, '10-pods.conflist'), BRIDGE_CONFLIST);
    await writeFile(join(confDir, '20-other.conflist'), '{"cniVersion":"1.0.0","name":"o","plugins":[]}');
    await assert.rejects(installCni({ confDir: join(dir, 'none'), binDir, entry }), /no CNI network config in .*none yet/);
    await assert.rejects(installCni({ confDir, binDir, entry, binary: join(dir, 'missing') }), (e: unknown) => e instanceof CniInstallError && /scripts\/build\.sh/.test(e.message));
    assert.equal(await readFile(join(confDir, '10-pods.conflist'), 'utf8'), BRIDGE_CONFLIST, 'a failed install leaves the config alone');

    const report = await installCni({ confDir, binDir, entry });
    const plugin = join(binDir, 'ambit-cni');
    assert.deepEqual(report, { conflist: join(confDir, '10-pods.conflist'), conflistChanged: true, plugin, pluginChanged: true });
    assert.deepEqual(JSON.parse(await readFile(join(confDir, '10-pods.conflist'), 'utf8')).plugins[2], { type: 'ambit-cni', ...entry });
    assert.equal(await readFile(join(confDir, '20-other.conflist'), 'utf8'), '{"cniVersion":"1.0.0","name":"o","plugins":[]}');
    assert.equal((await stat(plugin)).mode & 0o777, 0o755);
    assert.deepEqual(await readFile(plugin), await readFile(BUNDLED_PLUGIN_BINARY));
    assert.deepEqual((await readdir(confDir)).sort(), ['10-pods.conflist', '20-other.conflist'], 'no temp files left');
    // idempotent: nothing rewritten
    const inode = (await stat(plugin)).ino;
    assert.deepEqual(await installCni({ confDir, binDir, entry }), { ...report, conflistChanged: false, pluginChanged: false });
    assert.equal((await stat(plugin)).ino, inode);
    // a different binary (an upgrade) replaces the file by rename: a new inode, never a partial file
    const other = join(dir, 'other-build');
    await writeFile(other, Buffer.concat([await readFile(BUNDLED_PLUGIN_BINARY), Buffer.from('\0upgrade')]));
    await chmod(other, 0o700);
    assert.equal((await installCni({ confDir, binDir, entry, binary: other })).pluginChanged, true);
    assert.notEqual((await stat(plugin)).ino, inode);
    assert.equal((await stat(plugin)).mode & 0o777, 0o755);
    assert.deepEqual((await readdir(binDir)).sort(), ['ambit-cni', 'bridge'], 'no temp files left');
    await installCni({ confDir, binDir, entry });

    // The installed copy runs on its own (static, no Node): VERSION, and ADD without an agent.
    const version = await run(plugin, { CNI_COMMAND: 'VERSION' }, '{"cniVersion":"0.4.0"}');
    assert.deepEqual(JSON.parse(version.stdout), { cniVersion: '0.4.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0'] });
    const conf = JSON.stringify({ cniVersion: '1.0.0', name: 'pods', type: 'ambit-cni', ...entry, prevResult: { cniVersion: '1.0.0' } });
    const add = await run(plugin, { CNI_COMMAND: 'ADD', CNI_ARGS: 'K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web' }, conf);
    assert.equal(add.code, 1);
    assert.equal(JSON.parse(add.stdout).code, 11);

    await uninstallCni({ confDir, binDir });
    assert.equal(await readFile(join(confDir, '10-pods.conflist'), 'utf8'), BRIDGE_CONFLIST);
    assert.deepEqual((await readdir(binDir)).sort(), ['bridge']);
    assert.deepEqual(await uninstallCni({ confDir, binDir }), { conflistChanged: false });
    // what an installer before the native plugin left (a modules dir) goes too
    await mkdir(join(binDir, 'ambit-cni.d', 'src'), { recursive: true });
    await uninstallCni({ confDir, binDir });
    assert.deepEqual((await readdir(binDir)).sort(), ['bridge']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
