/**
 * Pure tests of the routing seam: every command routes.ts builds maps to the netlink request it
 * stands for (and nothing else is accepted), and the executor drives an injected RoutingTool and
 * command runner exactly as documented: the fresh apply writes the routing and one capture per
 * family with no reads, falls back to the full apply when the rule exists, and an injected runner
 * alone still sees the routing as `ip -batch` commands. No kernel: netlink itself is root-tested in
 * src/sys/netlink.netns.test.ts, the executor end to end in fresh.netns.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { redirectConfig } from './config.js';
import { applyRedirection, removeRedirection, type CommandRunner } from './exec.js';
import { buildRoutingApply, buildRoutingRemoval, type RoutingState } from './routes.js';
import { parseRoutingCommand, RoutingError, type RoutingTool } from './routing-netlink.js';

const CONFIG = redirectConfig({ families: [4, 6] });
const NONE: RoutingState = { rules: [], routes: [] };
const OURS: RoutingState = {
  rules: [{ priority: 32764, fwmark: '0x111', fwmask: '0xfff', table: '100' }],
  routes: [{ type: 'local', dst: 'default', dev: 'lo', table: '100' }],
};

test("every command of routes.ts's builders maps to its netlink request", () => {
  const rule = (family: 4 | 6) => ({ family, priority: 32764, fwmark: 0x111, fwmask: 0xfff, table: 100 });
  for (const family of [4, 6] as const) {
    assert.deepEqual(buildRoutingApply(CONFIG, family, NONE).map(parseRoutingCommand), [
      { kind: 'rule', op: 'add', rule: rule(family) },
      { kind: 'route', op: 'replace', route: { family, table: 100 } },
    ]);
    assert.deepEqual(buildRoutingRemoval(CONFIG, family, OURS).map(parseRoutingCommand), [
      { kind: 'rule', op: 'delete', rule: rule(family) },
      { kind: 'route', op: 'delete', route: { family, table: 100 } },
    ]);
  }
  const other = redirectConfig({ proxyMark: 0x1000, connMark: 0x4000, markMask: 0xf000, routeTable: 7, rulePriority: 99 });
  assert.deepEqual(parseRoutingCommand(buildRoutingApply(other, 4, NONE)[0]!), {
    kind: 'rule',
    op: 'add',
    rule: { family: 4, priority: 99, fwmark: 0x4000, fwmask: 0xf000, table: 7 },
  });
  // a mark without a mask means all bits, as in ip
  assert.deepEqual(parseRoutingCommand(['-4', 'rule', 'add', 'fwmark', '0x5', 'lookup', '1', 'pref', '2']), {
    kind: 'rule',
    op: 'add',
    rule: { family: 4, priority: 2, fwmark: 5, fwmask: 0xffffffff, table: 1 },
  });
});

test('commands without a netlink form are refused, not guessed', () => {
  const bad = [
    ['rule', 'add', 'fwmark', '0x1', 'lookup', '1', 'pref', '2'], // no family
    ['-4', 'rule', 'add', 'from', '10.0.0.0/8', 'lookup', '1', 'pref', '2'],
    ['-4', 'rule', 'add', 'fwmark', '0x1', 'lookup', '1', 'pref', '2', 'iif', 'lo'],
    ['-4', 'rule', 'add', 'fwmark', '0x1/0x2/0x3', 'lookup', '1', 'pref', '2'],
    ['-4', 'rule', 'add', 'fwmark', 'x', 'lookup', '1', 'pref', '2'],
    ['-4', 'rule', 'add', 'fwmark', '0x1', 'lookup', 'main', 'pref', '2'],
    ['-4', 'rule', 'flush'],
    ['-4', 'route', 'replace', 'local', '::/0', 'dev', 'lo', 'table', '100'], // IPv6 dst in -4
    ['-4', 'route', 'replace', 'unicast', '0.0.0.0/0', 'dev', 'lo', 'table', '100'],
    ['-6', 'route', 'replace', 'local', '::/0', 'dev', 'eth0', 'table', '100'],
    ['-4', 'route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '100'],
    ['-4', 'route', 'replace', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '4294967296'],
  ];
  for (const argv of bad) assert.throws(() => parseRoutingCommand(argv), /no netlink form for the routing command/, argv.join(' '));
});

/** A fake pod: a routing tool whose rule adds can be told to meet an existing rule, and a runner. */
function fakes(opts: { ruleExists?: boolean } = {}) {
  const calls: string[] = [];
  const routing: RoutingTool = {
    async read(_path, families) {
      calls.push(`read ${families.join(',')}`);
      return families.map(() => (opts.ruleExists ? OURS : NONE));
    },
    async write(path, commands) {
      for (const c of commands) {
        if (opts.ruleExists && c[1] === 'rule' && c[2] === 'add') {
          calls.push(`refused ${c.join(' ')}`);
          throw new RoutingError(path, c, 'EEXIST', new Error('File exists'));
        }
        calls.push(`write ${c.join(' ')}`);
      }
    },
  };
  const run: CommandRunner = async (argv) => {
    calls.push(argv.join(' '));
    return { code: 0, stdout: '', stderr: '' };
  };
  return { calls, routing, run };
}

function lockDir(): string {
  return mkdtempSync(join(tmpdir(), 'ambit-routing-unit-'));
}

test('fresh apply: routing first (no reads), then one restore per family', async () => {
  const dir = lockDir();
  try {
    const f = fakes();
    await applyRedirection('/pod', { backend: 'iptables-nft', config: CONFIG }, { run: f.run, routing: f.routing, lockDir: dir, freshNetns: true });
    assert.deepEqual(f.calls.slice(0, 4), [
      'write -4 rule add fwmark 0x111/0xfff lookup 100 pref 32764',
      'write -4 route replace local 0.0.0.0/0 dev lo table 100',
      'write -6 rule add fwmark 0x111/0xfff lookup 100 pref 32764',
      'write -6 route replace local ::/0 dev lo table 100',
    ]);
    assert.deepEqual(f.calls.slice(4).sort(), ['ip6tables-nft-restore --noflush', 'iptables-nft-restore --noflush']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('fresh apply over an existing rule falls back to the full apply (reads, nothing re-added)', async () => {
  const dir = lockDir();
  try {
    const f = fakes({ ruleExists: true });
    await applyRedirection('/pod', { backend: 'iptables-nft', config: CONFIG }, { run: f.run, routing: f.routing, lockDir: dir, freshNetns: true });
    assert.equal(f.calls[0], 'refused -4 rule add fwmark 0x111/0xfff lookup 100 pref 32764');
    assert.ok(f.calls.includes('read 4,6'), f.calls.join('\n'));
    assert.ok(f.calls.includes('iptables-legacy-save'), 'other backends are read');
    assert.equal(f.calls.filter((c) => c.startsWith('write')).length, 0, 'our rule and route are there: nothing to write');
    assert.ok(f.calls.includes('iptables-nft-restore --noflush'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an error other than EEXIST fails the fresh apply', async () => {
  const dir = lockDir();
  try {
    const f = fakes();
    f.routing.write = async (path, commands) => {
      throw new RoutingError(path, commands[0]!, 'EPERM', new Error('Operation not permitted'));
    };
    await assert.rejects(
      applyRedirection('/pod', { backend: 'nft', config: CONFIG }, { run: f.run, routing: f.routing, lockDir: dir, freshNetns: true }),
      (err: unknown) => err instanceof RoutingError && err.code === 'EPERM' && /in pod netns \/pod: Operation not permitted/.test(err.message),
    );
    assert.deepEqual(f.calls, [], 'no capture without the routing');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('with only a command runner injected, the routing goes through it as ip commands', async () => {
  const dir = lockDir();
  try {
    const f = fakes();
    await applyRedirection('/pod', { backend: 'nft', config: CONFIG }, { run: f.run, lockDir: dir, freshNetns: true });
    assert.deepEqual(f.calls.slice(0, 2).sort(), ['ip -4 -batch -', 'ip -6 -batch -']);
    assert.deepEqual(f.calls.slice(2), ['nft -f -']);
    f.calls.length = 0;
    await removeRedirection('/pod', CONFIG, { run: f.run, lockDir: dir });
    assert.ok(f.calls.includes('ip -j -4 rule show') && f.calls.includes('ip -j -6 route show table all'), f.calls.join('\n'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
