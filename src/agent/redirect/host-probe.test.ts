/**
 * The node-side probe SNAT builders: golden files of the exact iptables-restore and nft input
 * (v4, v6, no pods, three pods, re-apply on a node whose jump kube-proxy pushed down, removal,
 * the read-free inputs of the own-backend sync: the whole set and the change),
 * table tests of the pure helpers, and the executor's command sequence with a fake runner.
 * `UPDATE_GOLDEN=1` rewrites the files under testdata/ (review the diff: it is what the node's
 * kernel will be given).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { redirectConfig } from './config.js';
import type { CommandResult, CommandRunner } from './exec.js';
import {
  buildHostProbeIptables,
  buildHostProbeIptablesDelta,
  buildHostProbeIptablesFast,
  buildHostProbeIptablesRemoval,
  buildHostProbeNftables,
  buildHostProbeNftablesDelta,
  buildHostProbeNftablesRemoval,
  HostProbeError,
  hostProbeSyncCommands,
  inspectHostProbeSnat,
  natEmptyWithoutOurs,
  natSection,
  probeTargets,
  removeHostProbeSnat,
  syncHostProbeSnat,
} from './host-probe.js';
import { parseIptablesSave } from './iptables.js';

function testdata(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    const candidate = join(dir, 'src', 'agent', 'redirect', 'testdata');
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error(`src/agent/redirect/testdata not found above ${fileURLToPath(import.meta.url)}`);
}

function golden(name: string, actual: string): void {
  const path = join(testdata(), name);
  if (process.env.UPDATE_GOLDEN === '1') writeFileSync(path, actual);
  assert.equal(actual, readFileSync(path, 'utf8'), `${name} differs; UPDATE_GOLDEN=1 rewrites it`);
}

/** Real `ip[6]tables-legacy-save` of a node: ours applied, then kube-proxy prepended its jump, plus a stray duplicate of ours. */
function nodeSave(family: 4 | 6) {
  return parseIptablesSave(readFileSync(join(testdata(), `host-probe-node-v${family}.save`), 'utf8'));
}

const v4 = redirectConfig({ families: [4] });
const v6 = redirectConfig({ families: [6] });
const dual = redirectConfig({ families: [4, 6] });
// Out of order, one duplicate, one IPv6 in non-canonical form: the output is the same as if sorted.
const PODS = ['10.244.1.12', '10.244.1.3', 'fd00:244:1:0::c', '10.244.1.100', '10.244.1.3', 'fd00:244:1::3', 'FD00:244:1::64'];

test('iptables apply on a fresh node (v4, v6; no pods, three pods)', () => {
  golden('host-probe-iptables-v4-empty.rules', buildHostProbeIptables(v4, 4, []));
  golden('host-probe-iptables-v4-3pods.rules', buildHostProbeIptables(v4, 4, PODS));
  golden('host-probe-iptables-v6-empty.rules', buildHostProbeIptables(v6, 6, []));
  golden('host-probe-iptables-v6-3pods.rules', buildHostProbeIptables(v6, 6, PODS));
});

test('iptables re-apply where kube-proxy prepended its jump: ours back to the top, duplicates gone', () => {
  golden('host-probe-iptables-v4-reapply.rules', buildHostProbeIptables(v4, 4, PODS, nodeSave(4)));
  golden('host-probe-iptables-v6-reapply.rules', buildHostProbeIptables(v6, 6, PODS, nodeSave(6)));
});

test('iptables read-free sync (own backend, CNI ADD): our chain refilled, our jump moved first, no read', () => {
  golden('host-probe-iptables-v4-fast.rules', buildHostProbeIptablesFast(v4, 4, PODS));
  golden('host-probe-iptables-v6-fast.rules', buildHostProbeIptablesFast(v6, 6, PODS));
  golden('host-probe-iptables-v4-fast-empty.rules', buildHostProbeIptablesFast(v4, 4, []));
  // The same chain rules as the full sync's; only the jump lines differ (-D + -I 1 instead of repairs from a read).
  const rules = (text: string) => text.split('\n').filter((l) => l.startsWith(`-A AMBIT-PROBE-SNAT `));
  for (const family of [4, 6] as const) {
    assert.deepEqual(rules(buildHostProbeIptablesFast(dual, family, PODS)), rules(buildHostProbeIptables(dual, family, PODS)));
    const fast = buildHostProbeIptablesFast(dual, family, PODS).split('\n');
    assert.deepEqual(fast.slice(0, 4), ['*nat', ':AMBIT-PROBE-SNAT - [0:0]', '-D POSTROUTING -j AMBIT-PROBE-SNAT', '-I POSTROUTING 1 -j AMBIT-PROBE-SNAT']);
  }
});

test('the change since our last write (own backend, CNI ADD): checks what stays, inserts in sorted place, deletes what goes', () => {
  // PODS without 10.244.1.12 and fd00:244:1::64, plus two new ones of each family (one sorts first, one between)
  const before = ['10.244.1.3', '10.244.1.100', '10.244.1.12', 'fd00:244:1::3', 'fd00:244:1::c', 'fd00:244:1::64'];
  const after = ['10.244.1.1', '10.244.1.3', '10.244.1.50', '10.244.1.100', 'fd00:244:1::1', 'fd00:244:1::3', 'fd00:244:1::a', 'fd00:244:1::c'];
  golden('host-probe-iptables-v4-delta.rules', buildHostProbeIptablesDelta(v4, 4, before, after));
  golden('host-probe-iptables-v6-delta.rules', buildHostProbeIptablesDelta(v6, 6, before, after));
  golden('host-probe-nft-dual-delta.nft', buildHostProbeNftablesDelta(dual, before, after));
  // nothing changed: only checks (iptables), nothing at all (nft)
  assert.equal(buildHostProbeIptablesDelta(v4, 4, PODS, PODS).split('\n').filter((l) => !l.startsWith('-C ')).join('\n'), '*nat\nCOMMIT\n');
  assert.equal(buildHostProbeNftablesDelta(dual, PODS, [...PODS].reverse()), '');
  // The -I positions: applying the change to `before`'s sorted chain gives the full sync's chain for `after`.
  for (const family of [4, 6] as const) {
    const chain = buildHostProbeIptables(dual, family, before).split('\n').filter((l) => l.startsWith('-A AMBIT-PROBE-SNAT ')).map((l) => l.slice(20));
    for (const line of buildHostProbeIptablesDelta(dual, family, before, after).split('\n')) {
      const insert = /^-I AMBIT-PROBE-SNAT (\d+) (.*)$/.exec(line);
      const del = /^-D AMBIT-PROBE-SNAT (.*)$/.exec(line);
      if (insert) chain.splice(Number(insert[1]) - 1, 0, insert[2]!);
      if (del) chain.splice(chain.indexOf(del[1]!), 1);
    }
    const full = buildHostProbeIptables(dual, family, after).split('\n').filter((l) => l.startsWith('-A AMBIT-PROBE-SNAT ')).map((l) => l.slice(20));
    assert.deepEqual(chain, full, `IPv${family}`);
  }
});

test('hostProbeSyncCommands: what the own-backend sync runs, per backend', () => {
  assert.deepEqual(hostProbeSyncCommands('iptables-nft', [4, 6]), [
    ['iptables-nft-restore', '--noflush', '--wait=10'],
    ['ip6tables-nft-restore', '--noflush', '--wait=10'],
  ]);
  assert.deepEqual(hostProbeSyncCommands('iptables-legacy', [6]), [['ip6tables-legacy-restore', '--noflush', '--wait=10']]);
  assert.deepEqual(hostProbeSyncCommands('nft', [4, 6]), [['nft', '-f', '-']]);
});

test('iptables removal deletes our jumps and chain only', () => {
  golden('host-probe-iptables-v4-remove.rules', buildHostProbeIptablesRemoval(nodeSave(4)));
  golden('host-probe-iptables-v6-remove.rules', buildHostProbeIptablesRemoval(nodeSave(6)));
  assert.equal(buildHostProbeIptablesRemoval(new Map()), '');
  assert.equal(buildHostProbeIptablesRemoval(parseIptablesSave('*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j MASQUERADE\nCOMMIT\n')), '');
});

test('nft apply (v4, v6, dual; no pods, three pods) and removal', () => {
  golden('host-probe-nft-v4-3pods.nft', buildHostProbeNftables(v4, PODS));
  golden('host-probe-nft-v6-3pods.nft', buildHostProbeNftables(v6, PODS));
  golden('host-probe-nft-dual-empty.nft', buildHostProbeNftables(dual, []));
  golden('host-probe-nft-dual-3pods.nft', buildHostProbeNftables(dual, PODS));
  golden('host-probe-nft-remove.nft', buildHostProbeNftablesRemoval());
});

test('the jump is kept only when it is the first rule of POSTROUTING, exactly', () => {
  const cases: { name: string; nat: string; repairs: string[] }[] = [
    { name: 'first and exact', nat: '-A POSTROUTING -j AMBIT-PROBE-SNAT\n-A POSTROUTING -j KUBE-POSTROUTING', repairs: [] },
    {
      name: 'second',
      nat: '-A POSTROUTING -j KUBE-POSTROUTING\n-A POSTROUTING -j AMBIT-PROBE-SNAT',
      repairs: ['-D POSTROUTING -j AMBIT-PROBE-SNAT', '-I POSTROUTING 1 -j AMBIT-PROBE-SNAT'],
    },
    {
      name: 'first with extra matches',
      nat: '-A POSTROUTING -p tcp -j AMBIT-PROBE-SNAT',
      repairs: ['-D POSTROUTING -p tcp -j AMBIT-PROBE-SNAT', '-I POSTROUTING 1 -j AMBIT-PROBE-SNAT'],
    },
    {
      name: 'first plus a duplicate and a goto from another chain',
      nat: '-A POSTROUTING -j AMBIT-PROBE-SNAT\n-A POSTROUTING -j AMBIT-PROBE-SNAT\n-A OUTPUT -g AMBIT-PROBE-SNAT',
      repairs: ['-D POSTROUTING -j AMBIT-PROBE-SNAT', '-D OUTPUT -g AMBIT-PROBE-SNAT'],
    },
    { name: 'absent', nat: '-A POSTROUTING -j MASQUERADE', repairs: ['-I POSTROUTING 1 -j AMBIT-PROBE-SNAT'] },
  ];
  for (const c of cases) {
    const save = `*nat\n:POSTROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:AMBIT-PROBE-SNAT - [0:0]\n${c.nat}\nCOMMIT\n`;
    const lines = buildHostProbeIptables(v4, 4, [], parseIptablesSave(save)).split('\n');
    assert.deepEqual(lines.filter((l) => /^-[DI] /.test(l)), c.repairs, c.name);
  }
});

test('probeTargets: per family, canonical, unique, sorted; bad input throws', () => {
  assert.deepEqual(probeTargets(4, PODS), ['10.244.1.3', '10.244.1.12', '10.244.1.100']);
  assert.deepEqual(probeTargets(6, PODS), ['fd00:244:1::3', 'fd00:244:1::64', 'fd00:244:1::c']);
  assert.deepEqual(probeTargets(4, []), []);
  for (const bad of ['', 'pod-a', '10.244.1', '010.244.1.3', '10.244.1.3/32', 'fe80::1%eth0', ' 10.244.1.3']) {
    assert.throws(() => probeTargets(4, [bad]), /is not a pod IP address/, JSON.stringify(bad));
  }
});

test('natSection keeps only the nat table of a save', () => {
  const save = '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j DROP\nCOMMIT\n*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j X\nCOMMIT\n*mangle\nCOMMIT\n';
  assert.equal(natSection(save), '*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j X\nCOMMIT\n');
  assert.equal(natSection('*filter\nCOMMIT\n'), '');
  assert.deepEqual([...parseIptablesSave(natSection(readFileSync(join(testdata(), 'host-probe-node-v4.save'), 'utf8'))).keys()], ['nat']);
});

test('natEmptyWithoutOurs: only a nat table with nothing but ours', () => {
  const nat = (body: string) => parseIptablesSave(`*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n${body}COMMIT\n`);
  assert.equal(natEmptyWithoutOurs(nat(':AMBIT-PROBE-SNAT - [0:0]\n-A POSTROUTING -j AMBIT-PROBE-SNAT\n-A AMBIT-PROBE-SNAT -d 1.2.3.4/32 -j SNAT --to-source 169.254.7.127\n')), true);
  assert.equal(natEmptyWithoutOurs(nat(':AMBIT-PROBE-SNAT - [0:0]\n-A POSTROUTING -j MASQUERADE\n')), false);
  assert.equal(natEmptyWithoutOurs(nat(':KUBE-X - [0:0]\n')), false);
  assert.equal(natEmptyWithoutOurs(new Map()), false);
});

/** A fake node: canned save outputs, and a record of every command. */
function fakeNode(saves: Partial<Record<string, string>>, nftTable = false) {
  const calls: { argv: string; stdin?: string; env?: Record<string, string> }[] = [];
  const run: CommandRunner = async (argv, stdin, env) => {
    const entry: (typeof calls)[number] = { argv: argv.join(' ') };
    if (stdin !== undefined) entry.stdin = stdin;
    if (env !== undefined) entry.env = env;
    calls.push(entry);
    const ok = (stdout = ''): CommandResult => ({ code: 0, stdout, stderr: '' });
    const tool = argv[0]!;
    if (tool.endsWith('-save')) {
      const out = saves[tool];
      return out === undefined ? { code: 1, stdout: '', stderr: 'not here' } : ok(out);
    }
    if (tool === 'nft' && argv[1] === 'list') return nftTable ? ok('table inet ambit-node {}') : { code: 1, stdout: '', stderr: 'No such file' };
    return ok();
  };
  const writes = () => calls.filter((c) => !c.argv.includes('-save') && !c.argv.startsWith('nft list') && c.argv !== 'nft --version');
  return { run, calls, writes };
}

const EMPTY_NAT = '*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n';

test('sync with iptables-legacy writes both families of the config with --wait and the lock file', async () => {
  const node = fakeNode({ 'iptables-legacy-save': EMPTY_NAT, 'ip6tables-legacy-save': EMPTY_NAT, 'iptables-nft-save': '', 'ip6tables-nft-save': '' });
  await syncHostProbeSnat(['10.244.1.3', 'fd00::3'], { backend: 'iptables-legacy', config: dual, run: node.run, lockFile: '/tmp/x.lock' });
  assert.deepEqual(
    node.writes().map((c) => [c.argv, c.env]),
    [
      ['iptables-legacy-restore --noflush --wait=10', { XTABLES_LOCKFILE: '/tmp/x.lock' }],
      ['ip6tables-legacy-restore --noflush --wait=10', { XTABLES_LOCKFILE: '/tmp/x.lock' }],
    ],
  );
  assert.match(node.writes()[0]!.stdin!, /-d 10\.244\.1\.3\/32 .* --to-source 169\.254\.7\.127/);
  assert.match(node.writes()[1]!.stdin!, /-d fd00::3\/128 .* --to-source fd16:9254:7127:1337:ffff:ffff:ffff:ffff/);
});

test('sync with nft removes the iptables leftovers and the empty iptables-nft nat table', async () => {
  const ours = '*nat\n:POSTROUTING ACCEPT [0:0]\n:AMBIT-PROBE-SNAT - [0:0]\n-A POSTROUTING -j AMBIT-PROBE-SNAT\nCOMMIT\n';
  const node = fakeNode({ 'iptables-legacy-save': '', 'ip6tables-legacy-save': '', 'iptables-nft-save': ours, 'ip6tables-nft-save': '' });
  await syncHostProbeSnat(['10.244.1.3'], { backend: 'nft', config: v4, run: node.run });
  assert.deepEqual(
    node.writes().map((c) => [c.argv, c.stdin]),
    [
      ['iptables-nft-restore --noflush --wait=10', '*nat\n-D POSTROUTING -j AMBIT-PROBE-SNAT\n-F AMBIT-PROBE-SNAT\n-X AMBIT-PROBE-SNAT\nCOMMIT\n'],
      ['nft -f -', 'delete table ip nat\n'],
      ['nft -f -', buildHostProbeNftables(v4, ['10.244.1.3'])],
    ],
  );
});

test('sync fails with what to do when the backend it must write cannot be read; bad IPs fail before any command', async () => {
  const node = fakeNode({ 'iptables-legacy-save': EMPTY_NAT, 'ip6tables-legacy-save': EMPTY_NAT });
  await assert.rejects(syncHostProbeSnat(['10.244.1.3'], { backend: 'iptables-nft', config: v4, run: node.run }), (err: Error) => {
    assert.ok(err instanceof HostProbeError);
    assert.match(err.message, /iptables-nft-save' exited with 1: not here/);
    return true;
  });
  assert.deepEqual(node.writes(), []);
  const clean = fakeNode({});
  await assert.rejects(syncHostProbeSnat(['10.244.1.3', 'nope'], { backend: 'nft', run: clean.run }), /'nope' is not a pod IP address/);
  assert.deepEqual(clean.calls, []);
});

test('remove and inspect find ours in every backend and leave foreign rules', async () => {
  const save4 = readFileSync(join(testdata(), 'host-probe-node-v4.save'), 'utf8');
  const node = fakeNode({ 'iptables-legacy-save': save4, 'ip6tables-legacy-save': '', 'iptables-nft-save': '', 'ip6tables-nft-save': '' }, true);
  assert.deepEqual(await inspectHostProbeSnat({ run: node.run }), { 'iptables-legacy': true, 'iptables-nft': false, nft: true });
  await removeHostProbeSnat({ run: node.run });
  assert.deepEqual(
    node.writes().map((c) => [c.argv, c.stdin]),
    [
      ['iptables-legacy-restore --noflush --wait=10', buildHostProbeIptablesRemoval(nodeSave(4))],
      ['nft -f -', buildHostProbeNftablesRemoval()],
    ],
  );
});

test('sync of the own backend only (the CNI ADD path): one restore per family, no read, nothing else', async () => {
  const legacyLeftover = EMPTY_NAT.replace('COMMIT', ':AMBIT-PROBE-SNAT - [0:0]\n-A POSTROUTING -j AMBIT-PROBE-SNAT\nCOMMIT');
  const node = fakeNode({ 'iptables-legacy-save': legacyLeftover, 'iptables-nft-save': EMPTY_NAT });
  await syncHostProbeSnat(['10.244.1.3'], { backend: 'iptables-nft', run: node.run, ownBackendOnly: true });
  assert.deepEqual(node.calls.map((c) => [c.argv, c.stdin]), [['iptables-nft-restore --noflush --wait=10', buildHostProbeIptablesFast(v4, 4, ['10.244.1.3'])]]);
  const legacy = fakeNode({});
  await syncHostProbeSnat(['10.244.1.3', 'fd00::3'], { backend: 'iptables-legacy', config: dual, run: legacy.run, lockFile: '/tmp/x.lock', ownBackendOnly: true });
  assert.deepEqual(
    legacy.calls.map((c) => [c.argv, c.env]),
    [
      ['iptables-legacy-restore --noflush --wait=10', { XTABLES_LOCKFILE: '/tmp/x.lock' }],
      ['ip6tables-legacy-restore --noflush --wait=10', { XTABLES_LOCKFILE: '/tmp/x.lock' }],
    ],
  );
  const nft = fakeNode({});
  await syncHostProbeSnat(['10.244.1.3'], { backend: 'nft', run: nft.run, ownBackendOnly: true });
  assert.equal(nft.calls.length, 1, 'nft: one transaction, no reads');
  assert.match(nft.calls[0]!.stdin!, /elements = \{ 10\.244\.1\.3 \}/);
});

test('own-backend sync: when the read-free restore fails (our jump missing), a save and the full restore repair it', async () => {
  const calls: string[] = [];
  const run: CommandRunner = async (argv, stdin) => {
    calls.push(argv.join(' '));
    if (argv[0] === 'iptables-nft-save') return { code: 0, stdout: EMPTY_NAT, stderr: '' };
    if (stdin?.includes('-D POSTROUTING')) {
      return { code: 1, stdout: '', stderr: 'iptables-nft-restore: line 3 failed: Bad rule (does a matching rule exist in that chain?).\n' };
    }
    return { code: 0, stdout: '', stderr: '' };
  };
  const restores: string[] = [];
  const recording: CommandRunner = async (argv, stdin, env) => {
    if (argv[0]!.endsWith('-restore') && stdin !== undefined) restores.push(stdin);
    return run(argv, stdin, env);
  };
  await syncHostProbeSnat(['10.244.1.3'], { backend: 'iptables-nft', config: v4, run: recording, ownBackendOnly: true });
  assert.deepEqual(calls, ['iptables-nft-restore --noflush --wait=10', 'iptables-nft-save', 'iptables-nft-restore --noflush --wait=10']);
  assert.deepEqual(restores, [buildHostProbeIptablesFast(v4, 4, ['10.244.1.3']), buildHostProbeIptables(v4, 4, ['10.244.1.3'], parseIptablesSave(EMPTY_NAT))]);

  // A failure the repair meets too is reported with the repair's error.
  const broken: CommandRunner = async (argv) =>
    argv[0]!.endsWith('-save') ? { code: 0, stdout: EMPTY_NAT, stderr: '' } : { code: 4, stdout: '', stderr: 'iptables-nft-restore: Permission denied (you must be root)' };
  await assert.rejects(syncHostProbeSnat(['10.244.1.3'], { backend: 'iptables-nft', config: v4, run: broken, ownBackendOnly: true }), (err: Error) => {
    assert.ok(err instanceof HostProbeError);
    assert.match(err.message, /exited with 4: .*Permission denied.*CAP_NET_ADMIN/);
    return true;
  });
});

test('own-backend sync remembers its last write: the change next time, the whole set after a failure or a full sync', async () => {
  const inputs: string[] = [];
  let fail = false;
  const run: CommandRunner = async (argv, stdin) => {
    if (argv[0]!.endsWith('-save')) return { code: 0, stdout: EMPTY_NAT, stderr: '' };
    if (argv[0] === 'nft' && argv[1] === 'list') return { code: 1, stdout: '', stderr: 'No such file' };
    if (argv[0] === 'nft' && argv[1] === '--version') return { code: 0, stdout: '', stderr: '' };
    inputs.push(`${argv[0]}\n${stdin}`);
    return fail ? { code: 1, stdout: '', stderr: 'line 2 failed' } : { code: 0, stdout: '', stderr: '' };
  };
  const own = (ips: string[]) => syncHostProbeSnat(ips, { backend: 'iptables-nft', config: v4, run, ownBackendOnly: true });
  const restore = (input: string) => `iptables-nft-restore\n${input}`;
  await own(['10.244.1.3']);
  await own(['10.244.1.3', '10.244.1.4']);
  assert.deepEqual(inputs.splice(0), [
    restore(buildHostProbeIptablesFast(v4, 4, ['10.244.1.3'])),
    restore(buildHostProbeIptablesDelta(v4, 4, ['10.244.1.3'], ['10.244.1.3', '10.244.1.4'])),
  ]);
  fail = true;
  await assert.rejects(own(['10.244.1.4']), HostProbeError);
  fail = false;
  await own(['10.244.1.4']);
  assert.deepEqual(inputs.splice(0).slice(-1), [restore(buildHostProbeIptablesFast(v4, 4, ['10.244.1.4']))], 'after a failure: the whole set');
  await syncHostProbeSnat(['10.244.1.5'], { backend: 'iptables-nft', config: v4, run });
  inputs.splice(0);
  await own(['10.244.1.5', '10.244.1.6']);
  assert.deepEqual(inputs.splice(0), [restore(buildHostProbeIptablesDelta(v4, 4, ['10.244.1.5'], ['10.244.1.5', '10.244.1.6']))], 'after a full sync: the change');

  // nft: the sets' change; when it fails (our table gone), the whole table
  const nft = (ips: string[]) => syncHostProbeSnat(ips, { backend: 'nft', config: v4, run, ownBackendOnly: true });
  await nft(['10.244.1.3']);
  await nft(['10.244.1.3', '10.244.1.4']);
  assert.deepEqual(inputs.splice(0), [`nft\n${buildHostProbeNftables(v4, ['10.244.1.3'])}`, `nft\n${buildHostProbeNftablesDelta(v4, ['10.244.1.3'], ['10.244.1.3', '10.244.1.4'])}`]);
  let tableGone = true;
  const gone: CommandRunner = async (argv, stdin, env) => (tableGone && stdin?.startsWith('add element') ? ((tableGone = false), { code: 1, stdout: '', stderr: 'No such file or directory' }) : run(argv, stdin, env));
  await syncHostProbeSnat(['10.244.1.3'], { backend: 'nft', config: v4, run: gone, ownBackendOnly: true }); // new runner: nothing remembered
  await syncHostProbeSnat(['10.244.1.3', '10.244.1.9'], { backend: 'nft', config: v4, run: gone, ownBackendOnly: true });
  assert.deepEqual(inputs.splice(0).slice(-1), [`nft\n${buildHostProbeNftables(v4, ['10.244.1.3', '10.244.1.9'])}`]);
});
