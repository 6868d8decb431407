// Small helpers shared by the demo apps: who this pod is (from the downward API), how a peer
// address reads, flag parsing, and graceful shutdown. Node's standard library only.
import { realpathSync } from 'node:fs';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';

/** The pod's identity as the kubelet passes it (downward API env), with the hostname as fallback. */
export function podIdentity(env = process.env) {
  return {
    pod: env.POD_NAME ?? hostname(),
    namespace: env.POD_NAMESPACE ?? '',
    podIp: env.POD_IP ?? '',
    node: env.NODE_NAME ?? '',
    version: env.VERSION ?? '',
    hostname: hostname(),
  };
}

/** A node server listens dual-stack, so IPv4 peers arrive as ::ffff:a.b.c.d; tests want a.b.c.d. */
export function plainAddress(address) {
  return String(address ?? '').replace(/^::ffff:/, '');
}

/** Port from $PORT, else the app's default; rejects anything that is not a TCP port. */
export function portFromEnv(fallback, env = process.env) {
  const raw = env.PORT ?? String(fallback);
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`PORT must be a TCP port number, got ${JSON.stringify(raw)}`);
  return port;
}

/**
 * `--name value` / `--name=value` / `--flag` parsing against a table of known flags
 * (name → 'string' | 'number' | 'boolean'); returns { flags, positional } or throws on unknown flags
 * and bad numbers, so a typo never silently runs with defaults.
 */
export function parseFlags(argv, spec) {
  const flags = {};
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const kind = spec[name];
    if (!kind) throw new UsageError(`unknown flag --${name}`);
    if (kind === 'boolean') {
      flags[name] = eq < 0 ? true : arg.slice(eq + 1) !== 'false';
      continue;
    }
    const value = eq < 0 ? argv[++i] : arg.slice(eq + 1);
    if (value === undefined) throw new UsageError(`--${name} needs a value`);
    if (kind === 'number') {
      const n = Number(value);
      if (!Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got ${JSON.stringify(value)}`);
      flags[name] = n;
    } else {
      flags[name] = value;
    }
  }
  return { flags, positional };
}

export class UsageError extends Error {}

/**
 * On SIGTERM/SIGINT run `drain` once (stop accepting, let in-flight work finish) and exit 0, or
 * exit 1 if draining takes longer than `graceMs` — the kubelet would SIGKILL us soon after anyway.
 */
export function onShutdown(drain, { graceMs = 5000, log = console.log } = {}) {
  let stopping = false;
  const stop = (signal) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: draining`);
    const timer = setTimeout(() => {
      log(`drain took longer than ${graceMs} ms; exiting`);
      process.exit(1);
    }, graceMs);
    timer.unref();
    Promise.resolve()
      .then(drain)
      .then(
        () => {
          log('bye');
          process.exit(0);
        },
        (err) => {
          log(`drain failed: ${err?.message ?? err}`);
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/** True when `moduleUrl` is the program node was started with (also through a symlink in PATH). */
export function isMain(moduleUrl) {
  if (!process.argv[1]) return false;
  try {
    return realpathSync(process.argv[1]) === realpathSync(fileURLToPath(moduleUrl));
  } catch {
    return false;
  }
}
