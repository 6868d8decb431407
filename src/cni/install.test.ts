// The conflist installer: pure edits (append, idempotence, exact removal, refusals) as table
// tests, then a real install into temp dirs whose wrapper runs as the runtime would run it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  addAmbitPlugin,
  CniInstallError,
  detectIndent,
  installCni,
  pluginModuleClosure,
  primaryConfFile,
  removeAmbitPlugin,
  renderWrapper,
  staticImports,
  uninstallCni,
} from './install.js';

/** Runs an executable as a runtime does: environment set, stdin written and closed. */
function run(file: string, env: Record<string, string>, stdin = ''): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(file, [], { env, stdio: ['pipe', 'pipe', 'inherit'] });
    let stdout = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout }));
    p.stdin.end(stdin);
  });
}
/** The compiled tree this test runs from (dist/src/cni/install.test.js → dist). */
const DIST_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

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
});

test('renderWrapper quotes paths for the shell; staticImports finds what a module loads', () => {
  assert.equal(renderWrapper('/usr/bin/node', "/opt/it's/cni.js").split('\n')[2], `exec '/usr/bin/node' '/opt/it'\\''s/cni.js' "$@"`);
  const src = [
    "import { a } from './a.js';",
    'import {',
    '  b,',
    '  c,',
    "} from '../b.js';",
    "import './side.js';",
    "export { d } from './d.js';",
    "export * from \"./e.js\";",
    "import { request } from 'node:http';",
    "const x = 'import y from \"./not.js\"';",
  ].join('\n');
  assert.deepEqual(staticImports(src), ['./a.js', '../b.js', './side.js', './d.js', './e.js', 'node:http']);
});

test('the plugin\'s module closure is small and imports no packages', async () => {
  const files = await pluginModuleClosure(DIST_ROOT);
  assert.deepEqual(files, ['src/api/cni.js', 'src/cni/agent-client.js', 'src/cni/plugin.js', 'src/cni/spec.js', 'src/main/cni.js']);
  // a package import anywhere in the closure is refused
  const fake = await mkdtemp(join(tmpdir(), 'ambit-cni-closure-'));
  try {
    await mkdir(join(fake, 'src/main'), { recursive: true });
    await writeFile(join(fake, 'src/main/cni.js'), "import pino from 'pino';\n");
    await assert.rejects(pluginModuleClosure(fake), /imports the package "pino"/);
  } finally {
    await rm(fake, { recursive: true, force: true });
  }
});

test('installCni / uninstallCni on real dirs: a self-contained plugin the runtime can run, removed without a trace', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-cni-install-'));
  const confDir = join(dir, 'net.d');
  const binDir = join(dir, 'bin');
  try {
    await mkdir(confDir);
    await mkdir(binDir);
    await writeFile(join(binDir, 'bridge'), 'not ours');
    await writeFile(join(confDir, '10-pods.conflist'), BRIDGE_CONFLIST);
    await writeFile(join(confDir, '20-other.conflist'), '{"cniVersion":"1.0.0","name":"o","plugins":[]}');
    await assert.rejects(installCni({ confDir: join(dir, 'none'), binDir, distRoot: DIST_ROOT, nodePath: process.execPath, entry: ENTRY }), /no CNI network config in .*none yet/);

    const report = await installCni({ confDir, binDir, distRoot: DIST_ROOT, nodePath: process.execPath, entry: ENTRY });
    assert.deepEqual(report, { conflist: join(confDir, '10-pods.conflist'), conflistChanged: true, wrapper: join(binDir, 'ambit-cni') });
    assert.equal(JSON.parse(await readFile(join(confDir, '10-pods.conflist'), 'utf8')).plugins[2].type, 'ambit-cni');
    assert.equal(await readFile(join(confDir, '20-other.conflist'), 'utf8'), '{"cniVersion":"1.0.0","name":"o","plugins":[]}');
    assert.equal((await stat(report.wrapper)).mode & 0o777, 0o755);
    assert.deepEqual((await readdir(confDir)).sort(), ['10-pods.conflist', '20-other.conflist'], 'no temp files left');
    // idempotent
    assert.equal((await installCni({ confDir, binDir, distRoot: DIST_ROOT, nodePath: process.execPath, entry: ENTRY })).conflistChanged, false);

    // The installed copy runs on its own (no node_modules, no dist): VERSION and a config error.
    const version = await run(report.wrapper, { CNI_COMMAND: 'VERSION', PATH: '/usr/bin:/bin' }, '{"cniVersion":"0.4.0"}');
    assert.deepEqual(JSON.parse(version.stdout), { cniVersion: '0.4.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0'] });
    const bad = await run(report.wrapper, { CNI_COMMAND: 'ADD', PATH: '/usr/bin:/bin' }, '{');
    assert.equal(bad.code, 1);
    assert.equal(JSON.parse(bad.stdout).code, 4);

    await uninstallCni({ confDir, binDir });
    assert.equal(await readFile(join(confDir, '10-pods.conflist'), 'utf8'), BRIDGE_CONFLIST);
    assert.deepEqual((await readdir(binDir)).sort(), ['bridge']);
    assert.deepEqual(await uninstallCni({ confDir, binDir }), { conflistChanged: false });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
