/**
 * How every Ambit program reads its settings: a command-line flag wins over its environment
 * variable, which wins over the default; every problem is collected (never thrown) so a program
 * reports all of them at once, each naming the setting, the bad value and what to put there.
 * Pure: the caller passes `env` and `argv`.
 */
import { isIP } from 'node:net';

export interface HostPort {
  host: string;
  port: number;
}

export const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** "24h", "90s", "500ms", "7d", "1h30m" → ms; undefined when it is not a duration. */
export function parseDuration(text: string): number | undefined {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 };
  if (!/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(text)) return undefined;
  let total = 0;
  for (const [, n, , u] of text.matchAll(/(\d+(\.\d+)?)(ms|s|m|h|d)/g)) total += Number(n) * units[u!]!;
  return total;
}

/** `--name value` and `--name=value` → { name: value }; anything else is reported. */
export function parseFlags(argv: readonly string[], errors: string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const m = /^--([a-z][a-z0-9-]*)(?:=(.*))?$/.exec(arg);
    if (!m) {
      errors.push(`unexpected argument "${arg}": settings are given as --name=value`);
      continue;
    }
    if (m[2] !== undefined) flags.set(m[1]!, m[2]);
    else if (i + 1 < argv.length && !argv[i + 1]!.startsWith('--')) flags.set(m[1]!, argv[++i]!);
    else errors.push(`--${m[1]} needs a value: --${m[1]}=<value>`);
  }
  return flags;
}

export interface Setting {
  value: string;
  /** where the value came from, for messages: `--flag` or the variable's name */
  from: string;
}

/** Reads typed settings from flags and variables, collecting problems in `errors`. */
export class SettingsReader {
  readonly errors: string[] = [];
  private readonly flags: Map<string, string>;
  private readonly known = new Set<string>();

  constructor(
    private readonly env: Readonly<Record<string, string | undefined>>,
    argv: readonly string[],
    /** where the settings are documented, for the unknown-flag message */
    private readonly docs: string,
  ) {
    this.flags = parseFlags(argv, this.errors);
  }

  setting(flag: string, variable: string | string[], fallback: string): Setting {
    this.known.add(flag);
    if (this.flags.has(flag)) return { value: this.flags.get(flag)!, from: `--${flag}` };
    for (const v of Array.isArray(variable) ? variable : [variable]) if (this.env[v] !== undefined && this.env[v] !== '') return { value: this.env[v]!, from: v };
    return { value: fallback, from: `--${flag}` };
  }

  /** A Kubernetes name (DNS label); `allowEmpty` lets '' mean "none". */
  name(flag: string, variable: string | string[], fallback: string, allowEmpty = false): string {
    const s = this.setting(flag, variable, fallback);
    if (!(allowEmpty && s.value === '') && !DNS_LABEL.test(s.value)) {
      this.errors.push(`${s.from}="${s.value}" is not a valid Kubernetes name (lower-case letters, digits and '-', at most 63)`);
    }
    return s.value;
  }

  /** `<ip>:<port>`, IPv6 in brackets; port 0 lets the kernel pick. */
  address(flag: string, variable: string, fallback: string): HostPort {
    const s = this.setting(flag, variable, fallback);
    const m = /^(.*):(\d+)$/.exec(s.value);
    const host = m?.[1]?.replace(/^\[(.*)\]$/, '$1') ?? '';
    const port = Number(m?.[2]);
    if (!m || !isIP(host) || !(port >= 0 && port < 65536)) {
      this.errors.push(`${s.from}="${s.value}" is not an address; use <ip>:<port> (port 0 picks a free one), e.g. ${fallback}`);
      return { host: '0.0.0.0', port: 0 };
    }
    return { host, port };
  }

  duration(flag: string, variable: string, fallback: string, minMs: number): number {
    const s = this.setting(flag, variable, fallback);
    const ms = parseDuration(s.value);
    if (ms === undefined || ms < minMs) this.errors.push(`${s.from}="${s.value}" is not a duration of at least ${minMs} ms; use e.g. ${fallback} (units ms, s, m, h, d)`);
    return ms ?? 0;
  }

  /** One of `choices`. */
  choice<T extends string>(flag: string, variable: string, fallback: T, choices: readonly T[]): T {
    const s = this.setting(flag, variable, fallback);
    if (!(choices as readonly string[]).includes(s.value)) {
      this.errors.push(`${s.from}="${s.value}" is not one of ${choices.join(', ')}`);
      return fallback;
    }
    return s.value as T;
  }

  boolean(flag: string, variable: string, fallback: boolean): boolean {
    const s = this.setting(flag, variable, String(fallback));
    if (s.value !== 'true' && s.value !== 'false') {
      this.errors.push(`${s.from}="${s.value}" is not true or false`);
      return fallback;
    }
    return s.value === 'true';
  }

  /** An absolute filesystem path. */
  path(flag: string, variable: string, fallback: string): string {
    const s = this.setting(flag, variable, fallback);
    if (!s.value.startsWith('/')) this.errors.push(`${s.from}="${s.value}" is not an absolute path`);
    return s.value;
  }

  logLevel(): LogLevel {
    return this.choice('log-level', 'AMBIT_LOG_LEVEL', 'info', LOG_LEVELS);
  }

  /** Call last: every flag no reader asked for is a typo the operator should hear about. */
  reportUnknownFlags(): void {
    for (const flag of this.flags.keys()) if (!this.known.has(flag)) this.errors.push(`unknown flag --${flag}; see ${this.docs} for the settings`);
  }
}
