/**
 * ROOT tests of rtnetlink against the real kernel, in network namespaces this file creates
 * (`ambit-nl-<pid>-*`, deleted in after() even when tests fail). Nothing touches the host's rules
 * or routes: every socket is made inside a test netns.
 *
 * - the rule and route made over netlink are what `ip rule add` / `ip route replace` make (the
 *   `ip -d` text of two netns, one programmed each way, is equal), IPv4 and IPv6;
 * - a second add of the same rule fails with EEXIST (NetlinkError.exists), as `ip rule add` does;
 * - the dumps equal `ip -j … show` parsed through routes.ts's parser, also next to foreign rules
 *   and routes of other kinds (unicast, blackhole, host routes, other tables, marks without masks);
 * - delete leaves the netns as it was; deleting again says ENOENT/ESRCH;
 * - the calling thread is back in its own netns afterwards, also when a request fails;
 * - the kernel's own words reach the error (extended ack): an IPv6 route where IPv6 is disabled.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseIpJson, type IpRoute, type IpRule } from '../agent/redirect/routes.js';
import { currentNetnsId, openNetns } from './netns.js';
import { NetlinkError, withRtnl, type FwmarkRule, type LocalDefaultRoute } from './netlink.js';
import type { IpFamily } from './sockaddr.js';
import { run, TestNetns } from './testing.js';

const IS_ROOT = process.getuid?.() === 0;
const NOT_ROOT_REASON = 'NOT RUN: netlink tests need root (netns, CAP_NET_ADMIN); CI runs them as root';
if (!IS_ROOT) console.warn(`\n*** src/sys/netlink.netns.test: ${NOT_ROOT_REASON} ***\n`);

const PREFIX = `ambit-nl-${process.pid}`;
const FAMILIES: IpFamily[] = [4, 6];
const netns = new TestNetns();

const rule = (family: IpFamily): FwmarkRule => ({ family, priority: 32764, fwmark: 0x111, fwmask: 0xfff, table: 100 });
const route = (family: IpFamily): LocalDefaultRoute => ({ family, table: 100 });

function addNamespace(suffix: string, loUp = true): string {
  const name = `${PREFIX}-${suffix}`;
  netns.add(name, { loUp });
  return name;
}

const path = (name: string) => `/var/run/netns/${name}`;

/** `ip -d` text of rules and routes (protocol, scope and all), both families. */
function ipText(name: string): string {
  return FAMILIES.map((f) => run('ip', ['-d', '-n', name, `-${f}`, 'rule', 'show']) + run('ip', ['-d', '-n', name, `-${f}`, 'route', 'show', 'table', 'all'])).join('');
}

/** `ip -j` rules and routes of a family through routes.ts's parser, reduced to the compared fields. */
function ipJson(name: string, family: IpFamily): { rules: IpRule[]; routes: IpRoute[] } {
  const rules = parseIpJson<IpRule>(run('ip', ['-j', '-n', name, `-${family}`, 'rule', 'show']));
  const routes = parseIpJson<IpRoute>(run('ip', ['-j', '-n', name, `-${family}`, 'route', 'show', 'table', 'all']));
  return {
    rules: rules.map((r) => pick(r, ['priority', 'fwmark', 'fwmask', 'table'])),
    routes: routes.map((r) => pick(r, ['type', 'dst', 'dev', 'table'])),
  };
}

function dumped(name: string, family: IpFamily): { rules: IpRule[]; routes: IpRoute[] } {
  return withRtnl(path(name), (nl) => ({ rules: nl.rules(family), routes: nl.routes(family) }));
}

function pick<T extends object>(o: T, keys: (keyof T)[]): T {
  return Object.fromEntries(keys.filter((k) => o[k] !== undefined).map((k) => [k, o[k]])) as T;
}

describe('rtnetlink in a netns (root)', { skip: IS_ROOT ? false : NOT_ROOT_REASON }, () => {
  after(() => {
    netns.deleteAll();
  });

  test('rule and route equal what `ip rule add` / `ip route replace` make; a second add is EEXIST; delete restores', () => {
    const viaIp = addNamespace('ip');
    const viaNl = addNamespace('nl');
    const home = currentNetnsId();
    const empty = ipText(viaNl);
    for (const f of FAMILIES) {
      run('ip', ['-n', viaIp, `-${f}`, 'rule', 'add', 'fwmark', '0x111/0xfff', 'lookup', '100', 'pref', '32764']);
      run('ip', ['-n', viaIp, `-${f}`, 'route', 'replace', 'local', f === 4 ? '0.0.0.0/0' : '::/0', 'dev', 'lo', 'table', '100']);
    }
    withRtnl(path(viaNl), (nl) => {
      for (const f of FAMILIES) {
        nl.addRule(rule(f));
        nl.replaceRoute(route(f));
      }
    });
    assert.equal(currentNetnsId(), home, 'back in the home netns');
    assert.equal(ipText(viaNl), ipText(viaIp), 'netlink made what ip makes');

    for (const f of FAMILIES) {
      assert.throws(
        () => withRtnl(path(viaNl), (nl) => nl.addRule(rule(f))),
        (err: unknown) => err instanceof NetlinkError && err.exists && err.code === 'EEXIST' && /rule add fwmark 0x111\/0xfff/.test(err.message),
      );
    }
    assert.equal(currentNetnsId(), home, 'back home after a failed request');
    // replace is idempotent
    withRtnl(path(viaNl), (nl) => FAMILIES.forEach((f) => nl.replaceRoute(route(f))));
    assert.equal(ipText(viaNl), ipText(viaIp));

    withRtnl(path(viaNl), (nl) => {
      for (const f of FAMILIES) {
        nl.deleteRule(rule(f));
        nl.deleteRoute(route(f));
      }
    });
    assert.equal(ipText(viaNl), empty, 'delete left nothing behind');
    withRtnl(path(viaNl), (nl) => {
      assert.throws(() => nl.deleteRule(rule(4)), (err: unknown) => err instanceof NetlinkError && err.code === 'ENOENT');
      assert.throws(() => nl.deleteRoute(route(4)), (err: unknown) => err instanceof NetlinkError && err.code === 'ESRCH');
    });
  });

  test('dumps equal `ip -j` parsed through routes.ts, next to foreign rules and routes', () => {
    const name = addNamespace('dump');
    const before = FAMILIES.map((f) => dumped(name, f));
    assert.deepEqual(before, FAMILIES.map((f) => ipJson(name, f)), 'a fresh netns');
    const ip = (...args: string[]) => run('ip', ['-n', name, ...args]);
    ip('-4', 'rule', 'add', 'fwmark', '0x5', 'lookup', '101', 'pref', '100');
    ip('-4', 'rule', 'add', 'lookup', '7', 'pref', '200');
    ip('-4', 'rule', 'add', 'fwmark', '0/0x1', 'lookup', '9', 'pref', '300');
    ip('-4', 'rule', 'add', 'fwmark', '0x20', 'lookup', '1000', 'pref', '400');
    ip('-4', 'rule', 'add', 'blackhole', 'pref', '500');
    ip('-6', 'rule', 'add', 'fwmark', '0x111/0xfff', 'lookup', '100', 'pref', '32764');
    ip('-4', 'route', 'add', '10.9.0.0/16', 'dev', 'lo', 'table', '7');
    ip('-4', 'route', 'add', '10.7.0.1', 'dev', 'lo');
    ip('-4', 'route', 'add', 'blackhole', '10.8.0.0/16', 'table', '1000');
    ip('-4', 'route', 'replace', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '100');
    ip('-6', 'route', 'add', 'fd00:1::/64', 'dev', 'lo', 'table', '7');
    ip('-6', 'route', 'add', 'unreachable', '2001:db8::/32');
    ip('-6', 'route', 'add', '::ffff:0:0/96', 'dev', 'lo', 'table', '8');
    for (const f of FAMILIES) assert.deepEqual(dumped(name, f), ipJson(name, f), `IPv${f}`);
    // the ones the redirection builders look for are there, in their shapes
    const v4 = dumped(name, 4);
    assert.ok(v4.routes.some((r) => r.type === 'local' && r.dst === 'default' && r.dev === 'lo' && r.table === '100'));
    assert.ok(dumped(name, 6).rules.some((r) => r.priority === 32764 && r.fwmark === '0x111' && r.fwmask === '0xfff' && r.table === '100'));
  });

  test('lo is ifindex 1 in a new netns, and routes made with it show dev lo', () => {
    const name = addNamespace('lo');
    const links = parseIpJson<{ ifindex: number; ifname: string }>(run('ip', ['-j', '-n', name, 'link', 'show', 'lo']));
    assert.equal(links[0]?.ifindex, 1);
    assert.equal(withRtnl(path(name), (nl) => nl.links().get(1)), 'lo');
  });

  test("the kernel's words reach the error: an IPv6 route in a netns with IPv6 disabled", () => {
    const name = addNamespace('nov6');
    // a sysctl of the test's own netns, not the host's
    run('ip', ['netns', 'exec', name, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.lo.disable_ipv6=1']);
    assert.throws(
      () => withRtnl(path(name), (nl) => nl.replaceRoute(route(6))),
      (err: unknown) => err instanceof NetlinkError && err.kernelMessage === 'IPv6 is disabled on nexthop device' && /route replace local ::\/0 .*IPv6 is disabled/.test(err.message),
    );
  });

  test('an open handle can be passed, and stays open', () => {
    const name = addNamespace('handle');
    const ns = openNetns(path(name));
    try {
      withRtnl(ns, (nl) => nl.addRule(rule(4)));
      assert.equal(ns.closed, false);
      assert.equal(withRtnl(ns, (nl) => nl.rules(4)).filter((r) => r.priority === 32764).length, 1);
    } finally {
      ns.close();
    }
  });

  test('a netns that is gone fails with an error that says so', () => {
    assert.throws(() => withRtnl(`/var/run/netns/${PREFIX}-missing`, () => 0), /does not exist/);
  });
});
