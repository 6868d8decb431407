/**
 * Policy routing for the proxy's spoofed-source connections, per family:
 *   ip rule add fwmark <connMark>/<markMask> lookup <table> pref <priority>
 *   ip route replace local default dev lo table <table>
 * Replies on connections the proxy made carry the connmark again (see iptables.ts); this rule sends
 * them to lo, back to the proxy, instead of out of the pod's interface towards the spoofed address.
 *
 * Pure: the commands to run follow from the config and the pod's current rules and routes (as
 * `ip -j rule show` / `ip -j route show table all` print them), so that applying twice adds
 * nothing (`ip rule add` of an existing rule fails with EEXIST) and removal deletes only ours.
 */
import { type IpFamily, type RedirectConfig, hex } from './config.js';

/** What `ip -j [-6] rule show` prints, reduced to the fields we compare. */
export interface IpRule {
  priority?: number;
  fwmark?: string;
  fwmask?: string;
  table?: string;
}

/** What `ip -j [-6] route show table all` prints, reduced to the fields we compare. */
export interface IpRoute {
  type?: string;
  dst?: string;
  dev?: string;
  /** Absent for the main table. */
  table?: string;
}

/** The current rules and routes of one family. */
export interface RoutingState {
  rules: IpRule[];
  /**
   * Routes of all tables (`ip route show table <n>` fails while table n is empty, so we list all).
   */
  routes: IpRoute[];
}

/** `ip` argument vectors (without the leading `ip`) that install our rule and route for `family`. */
export function buildRoutingApply(config: RedirectConfig, family: IpFamily, current: RoutingState): string[][] {
  const commands: string[][] = [];
  const ours = current.rules.filter((r) => isOurRule(config, r));
  // One rule, ours exactly; the kernel refuses a second identical one anyway.
  if (ours.length === 0) commands.push([`-${family}`, 'rule', 'add', ...ruleSelector(config)]);
  if (!current.routes.some((r) => isOurRoute(config, r))) {
    commands.push([`-${family}`, 'route', 'replace', ...routeSpec(config, family)]);
  }
  return commands;
}

/** `ip` argument vectors that remove our rule and route for `family`, leaving anything else alone. */
export function buildRoutingRemoval(config: RedirectConfig, family: IpFamily, current: RoutingState): string[][] {
  const commands: string[][] = [];
  for (const _ of current.rules.filter((r) => isOurRule(config, r))) {
    commands.push([`-${family}`, 'rule', 'del', ...ruleSelector(config)]);
  }
  if (current.routes.some((r) => isOurRoute(config, r))) commands.push([`-${family}`, 'route', 'del', ...routeSpec(config, family)]);
  return commands;
}

/** Parses `ip -j` output; `ip` prints nothing at all (not `[]`) for an empty table on some versions. */
export function parseIpJson<T>(text: string): T[] {
  const trimmed = text.trim();
  if (trimmed === '') return [];
  const parsed: unknown = JSON.parse(trimmed);
  if (!Array.isArray(parsed)) throw new Error(`expected a JSON array from ip -j, got: ${trimmed.slice(0, 200)}`);
  return parsed as T[];
}

function ruleSelector(config: RedirectConfig): string[] {
  return [
    'fwmark',
    `${hex(config.connMark)}/${hex(config.markMask)}`,
    'lookup',
    String(config.routeTable),
    'pref',
    String(config.rulePriority),
  ];
}

function routeSpec(config: RedirectConfig, family: IpFamily): string[] {
  return ['local', family === 4 ? '0.0.0.0/0' : '::/0', 'dev', 'lo', 'table', String(config.routeTable)];
}

function isOurRule(config: RedirectConfig, rule: IpRule): boolean {
  return (
    rule.priority === config.rulePriority &&
    rule.table === String(config.routeTable) &&
    rule.fwmark !== undefined &&
    Number(rule.fwmark) === config.connMark &&
    Number(rule.fwmask ?? '0xffffffff') === config.markMask
  );
}

function isOurRoute(config: RedirectConfig, route: IpRoute): boolean {
  return route.table === String(config.routeTable) && route.type === 'local' && route.dst === 'default' && route.dev === 'lo';
}
