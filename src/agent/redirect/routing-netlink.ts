/**
 * The pod's policy routing (routes.ts's rule and route) written and read over rtnetlink from inside
 * the pod's netns (src/sys/netlink.ts), instead of `nsenter … ip` processes: no fork of the agent,
 * no exec, microseconds instead of milliseconds on the CNI ADD path.
 *
 * routes.ts stays the one place that decides *what* to do: its builders return `ip` argument
 * vectors, and `parseRoutingCommand` turns each back into the netlink request it stands for (a
 * pure, table-tested mapping that refuses anything it does not know, so a builder change cannot be
 * silently misread). Reads come back in the shapes `ip -j` prints, so the builders compare them
 * unchanged.
 *
 * `RoutingTool` is the executor's seam (ExecOptions.routing): the real one here, the `ip`-process
 * one in exec.ts (for injected command runners), fakes in unit tests.
 */
import { withRtnl, type FwmarkRule, type LocalDefaultRoute } from '../../sys/index.js';
import type { IpFamily } from './config.js';
import type { RoutingState } from './routes.js';

/** Reads and writes a pod's policy routing. */
export interface RoutingTool {
  /** The current rules and routes of each of `families`, in that order. */
  read(netnsPath: string, families: readonly IpFamily[]): Promise<RoutingState[]>;
  /**
   * Runs routes.ts's `ip` commands (each starting with -4/-6) in order and stops at the first that
   * fails, as `ip -batch` does. A rule add that meets an identical rule fails with an error for
   * which `isRoutingExists` is true.
   */
  write(netnsPath: string, commands: readonly (readonly string[])[]): Promise<void>;
}

/** A routing read or write failed in a pod netns; `exists` when a rule add met an identical rule. */
export class RoutingError extends Error {
  constructor(
    readonly netnsPath: string,
    /** the `ip` command that failed (without `ip`), or the read */
    readonly command: readonly string[],
    /** errno name ('EEXIST', 'ENOENT', …), 'EUNKNOWN' when the failure was no errno */
    readonly code: string,
    cause: Error,
  ) {
    super(`in pod netns ${netnsPath}: ${cause.message}`, { cause });
    this.name = 'RoutingError';
  }

  get exists(): boolean {
    return this.code === 'EEXIST';
  }
}

/** One of the requests routes.ts's commands stand for. */
export type RoutingOp =
  | { kind: 'rule'; op: 'add' | 'delete'; rule: FwmarkRule }
  | { kind: 'route'; op: 'replace' | 'delete'; route: LocalDefaultRoute };

/**
 * The netlink request an `ip` argument vector of routes.ts stands for:
 *   -F rule add|del fwmark M/MASK lookup T pref P
 *   -F route replace|del local 0.0.0.0/0|::/0 dev lo table T
 * Throws for anything else.
 */
export function parseRoutingCommand(argv: readonly string[]): RoutingOp {
  const fail = (): never => {
    throw new Error(`no netlink form for the routing command 'ip ${argv.join(' ')}'`);
  };
  const family = argv[0] === '-4' ? 4 : argv[0] === '-6' ? 6 : fail();
  const [, object, verb, ...rest] = argv;
  if (object === 'rule' && (verb === 'add' || verb === 'del')) {
    const [k1, markMask, k2, table, k3, pref, ...extra] = rest;
    if (k1 !== 'fwmark' || k2 !== 'lookup' || k3 !== 'pref' || extra.length > 0) fail();
    const [mark, mask, ...more] = (markMask ?? '').split('/');
    if (more.length > 0) fail();
    const rule: FwmarkRule = { family, fwmark: u32(mark, fail), fwmask: mask === undefined ? 0xffffffff : u32(mask, fail), table: u32(table, fail), priority: u32(pref, fail) };
    return { kind: 'rule', op: verb === 'add' ? 'add' : 'delete', rule };
  }
  if (object === 'route' && (verb === 'replace' || verb === 'del')) {
    const [type, dst, k1, dev, k2, table, ...extra] = rest;
    const anyDst = family === 4 ? '0.0.0.0/0' : '::/0';
    if (type !== 'local' || (dst !== anyDst && dst !== 'default') || k1 !== 'dev' || dev !== 'lo' || k2 !== 'table' || extra.length > 0) fail();
    return { kind: 'route', op: verb === 'replace' ? 'replace' : 'delete', route: { family, table: u32(table, fail) } };
  }
  return fail();
}

/** The real tool: one netlink socket in the pod's netns per call, all requests of the call on it. */
export const netlinkRouting: RoutingTool = {
  async read(netnsPath, families) {
    try {
      return withRtnl(netnsPath, (nl) => families.map((f) => ({ rules: nl.rules(f), routes: nl.routes(f) })));
    } catch (err) {
      throw routingError(netnsPath, ['read', ...families.map((f) => `-${f}`)], err);
    }
  },

  async write(netnsPath, commands) {
    if (commands.length === 0) return;
    const ops = commands.map(parseRoutingCommand); // all understood before anything changes
    let current: readonly string[] = ['netns', netnsPath];
    try {
      withRtnl(netnsPath, (nl) => {
        ops.forEach((op, i) => {
          current = commands[i]!;
          if (op.kind === 'rule') {
            if (op.op === 'add') nl.addRule(op.rule);
            else nl.deleteRule(op.rule);
          } else if (op.op === 'replace') nl.replaceRoute(op.route);
          else nl.deleteRoute(op.route);
        });
      });
    } catch (err) {
      throw routingError(netnsPath, current, err);
    }
  },
};

function routingError(netnsPath: string, command: readonly string[], err: unknown): RoutingError {
  const cause = err instanceof Error ? err : new Error(String(err));
  // NetlinkError and SysError (netns gone: ENOENT) carry the errno name
  const code = typeof (err as { code?: unknown } | null)?.code === 'string' ? (err as { code: string }).code : 'EUNKNOWN';
  return new RoutingError(netnsPath, command, code, cause);
}

function u32(text: string | undefined, fail: () => never): number {
  if (text === undefined || !/^(0x[0-9a-f]+|\d+)$/i.test(text)) return fail();
  const value = Number(text);
  return value <= 0xffffffff ? value : fail();
}
