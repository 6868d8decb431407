/** Table tests of the pure builders beyond the golden files: reconciling odd rulesets, routing, config. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redirectConfig, validateRedirectConfig, DEFAULT_REDIRECT_CONFIG } from './config.js';
import { buildIptables, buildIptablesRemoval, canonicalIptables, emptyTables, parseIptablesSave, withoutRedirection } from './iptables.js';
import { buildRoutingApply, buildRoutingRemoval, parseIpJson } from './routes.js';

const config = redirectConfig();

function save(table: string, ...lines: string[]): string {
  return [`*${table}`, ':PREROUTING ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ...lines, 'COMMIT', ''].join('\n');
}

/** The lines of the restore input that touch built-in chains or stale chains (not our chain bodies). */
function repairs(text: string): string[] {
  return text.split('\n').filter((l) => /^-[DIFX] /.test(l));
}

test('parseIptablesSave reads chains, policies and rules, and refuses what it does not understand', () => {
  const state = parseIptablesSave(
    '# Generated\n*nat\n:PREROUTING ACCEPT [3:180]\n:X - [0:0]\n[0:0] -A PREROUTING -p tcp -m comment --comment "a b" -j X\nCOMMIT\n',
  );
  assert.deepEqual([...state.get('nat')!.chains], [['PREROUTING', 'ACCEPT'], ['X', '-']]);
  assert.deepEqual(state.get('nat')!.rules, [{ chain: 'PREROUTING', spec: '-p tcp -m comment --comment "a b" -j X' }]);
  assert.throws(() => parseIptablesSave(':X - [0:0]\n'), /before any \*table/);
  assert.throws(() => parseIptablesSave('*nat\n-I X 1 -j Y\nCOMMIT\n'), /is not a rule/);
});

const reconcileCases: { name: string; nat: string[]; want: string[] }[] = [
  {
    name: 'fresh: jumps inserted at the top',
    nat: [],
    want: ['-I PREROUTING 1 -j AMBIT_PREROUTING', '-I OUTPUT 1 -j AMBIT_OUTPUT'],
  },
  {
    name: 'applied: nothing to repair',
    nat: [':AMBIT_PREROUTING - [0:0]', ':AMBIT_OUTPUT - [0:0]', '-A PREROUTING -j AMBIT_PREROUTING', '-A OUTPUT -j AMBIT_OUTPUT'],
    want: [],
  },
  {
    name: 'duplicated jump (a crashed agent, a racing apply): extra deleted',
    nat: [
      ':AMBIT_PREROUTING - [0:0]',
      ':AMBIT_OUTPUT - [0:0]',
      '-A PREROUTING -j AMBIT_PREROUTING',
      '-A PREROUTING -j AMBIT_PREROUTING',
      '-A OUTPUT -j AMBIT_OUTPUT',
    ],
    want: ['-D PREROUTING -j AMBIT_PREROUTING'],
  },
  {
    name: 'jump with extra matches, or from the wrong chain: replaced by the canonical one',
    nat: [
      ':AMBIT_PREROUTING - [0:0]',
      ':AMBIT_OUTPUT - [0:0]',
      '-A PREROUTING -p tcp -j AMBIT_PREROUTING',
      '-A OUTPUT -j AMBIT_OUTPUT',
      '-A POSTROUTING -j AMBIT_OUTPUT',
    ],
    want: ['-D PREROUTING -p tcp -j AMBIT_PREROUTING', '-I PREROUTING 1 -j AMBIT_PREROUTING', '-D POSTROUTING -j AMBIT_OUTPUT'],
  },
  {
    name: 'a chain of an older version: unreferenced, flushed, deleted',
    nat: [':AMBIT_OLD - [0:0]', '-A OUTPUT -j AMBIT_OLD', '-A AMBIT_OLD -j RETURN'],
    want: ['-D OUTPUT -j AMBIT_OLD', '-F AMBIT_OLD', '-X AMBIT_OLD', '-I PREROUTING 1 -j AMBIT_PREROUTING', '-I OUTPUT 1 -j AMBIT_OUTPUT'],
  },
  {
    name: "someone else's rules are never touched",
    nat: [':APP - [0:0]', '-A OUTPUT -p tcp --dport 9 -j APP', '-A PREROUTING -j DNAT --to-destination 1.2.3.4'],
    want: ['-I PREROUTING 1 -j AMBIT_PREROUTING', '-I OUTPUT 1 -j AMBIT_OUTPUT'],
  },
];

for (const c of reconcileCases) {
  test(`buildIptables reconciles: ${c.name}`, () => {
    const text = buildIptables(config, 4, parseIptablesSave(save('nat', ...c.nat)));
    const natBlock = text.slice(text.indexOf('*nat'));
    assert.deepEqual(repairs(natBlock), c.want);
  });
}

test('buildIptablesRemoval: nothing of ours → empty; foreign jumps and chains stay', () => {
  assert.equal(buildIptablesRemoval(parseIptablesSave(save('nat', ':APP - [0:0]', '-A OUTPUT -j APP'))), '');
  const removal = buildIptablesRemoval(
    parseIptablesSave(save('nat', ':APP - [0:0]', ':AMBIT_OUTPUT - [0:0]', '-A OUTPUT -j APP', '-A OUTPUT -g AMBIT_OUTPUT', '-A AMBIT_OUTPUT -j APP')),
  );
  assert.equal(removal, '*nat\n-D OUTPUT -g AMBIT_OUTPUT\n-F AMBIT_OUTPUT\n-X AMBIT_OUTPUT\nCOMMIT\n');
});

test('emptyTables / canonicalIptables: a table with only default built-ins counts as absent', () => {
  const applied = parseIptablesSave(save('nat', ':AMBIT_OUTPUT - [0:0]', '-A OUTPUT -j AMBIT_OUTPUT') + save('mangle', ':APP - [0:0]'));
  assert.deepEqual(emptyTables(withoutRedirection(applied)), ['nat']);
  assert.equal(canonicalIptables(save('nat')), '');
  assert.equal(canonicalIptables(save('nat', '-A OUTPUT -j ACCEPT')), '*nat\n:PREROUTING ACCEPT\n:OUTPUT ACCEPT\n-A OUTPUT -j ACCEPT\nCOMMIT');
  assert.notEqual(canonicalIptables('*filter\n:INPUT DROP [0:0]\nCOMMIT\n'), '');
});

const ourRule = { priority: 32764, src: 'all', fwmark: '0x111', fwmask: '0xfff', table: '100' };
const ourRoute = { type: 'local', dst: 'default', dev: 'lo', table: '100', scope: 'host' };
const mainRule = { priority: 32766, src: 'all', table: 'main' };

test('routing: added only when missing, removed only when ours', () => {
  assert.deepEqual(buildRoutingApply(config, 4, { rules: [mainRule], routes: [] }), [
    ['-4', 'rule', 'add', 'fwmark', '0x111/0xfff', 'lookup', '100', 'pref', '32764'],
    ['-4', 'route', 'replace', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '100'],
  ]);
  assert.deepEqual(buildRoutingApply(config, 6, { rules: [ourRule], routes: [ourRoute] }), []);
  assert.deepEqual(buildRoutingRemoval(config, 6, { rules: [mainRule, ourRule], routes: [ourRoute, { ...ourRoute, table: '101' }] }), [
    ['-6', 'rule', 'del', 'fwmark', '0x111/0xfff', 'lookup', '100', 'pref', '32764'],
    ['-6', 'route', 'del', 'local', '::/0', 'dev', 'lo', 'table', '100'],
  ]);
  // Same table, other mark (someone else's): not ours.
  assert.deepEqual(buildRoutingRemoval(config, 4, { rules: [{ ...ourRule, fwmark: '0x222' }], routes: [] }), []);
  assert.deepEqual(parseIpJson(''), []);
  assert.throws(() => parseIpJson('{}'), /JSON array/);
});

test('config validation lists every problem', () => {
  assert.deepEqual(validateRedirectConfig(DEFAULT_REDIRECT_CONFIG), []);
  const problems = validateRedirectConfig({
    ...DEFAULT_REDIRECT_CONFIG,
    families: [],
    ports: { ...DEFAULT_REDIRECT_CONFIG.ports, dns: 70000 },
    proxyMark: 0x1539,
    routeTable: 254,
  });
  assert.equal(problems.length, 4, problems.join('\n'));
  assert.throws(() => redirectConfig({ connMark: 0x539 }), /proxyMark and connMark must differ/);
});
