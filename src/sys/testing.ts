/**
 * What the root tests and micro-benchmarks that work in network namespaces share: running a tool,
 * and a set of named netns they create and always delete again (never the host's own). Not used by
 * the product; lives beside the native layer because every netns test builds on it.
 */
import { execFileSync, spawnSync } from 'node:child_process';

/** Runs a tool and returns its stdout; throws with its stderr when it fails. */
export function run(cmd: string, args: readonly string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Runs `cmd` inside the named netns (`ip netns exec`). */
export function inNs(name: string, cmd: string, ...args: string[]): string {
  return run('ip', ['netns', 'exec', name, cmd, ...args]);
}

/**
 * Named network namespaces made for one test file or benchmark. Names should carry the process id
 * (e.g. `ambit-fresh-<pid>-…`), so a leftover of an earlier run is recognisable and replaced.
 */
export class TestNetns {
  readonly #names = new Set<string>();

  /** Makes `name` (replacing a leftover of that name) with lo up, as a runtime leaves a sandbox before CNI ADD; returns its path. */
  add(name: string, opts: { loUp?: boolean } = {}): string {
    spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    run('ip', ['netns', 'add', name]);
    this.#names.add(name);
    if (opts.loUp ?? true) run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    return `/var/run/netns/${name}`;
  }

  /** Deletes one of them now. */
  delete(name: string): void {
    spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    this.#names.delete(name);
  }

  /** Deletes all that are left (call from `after` / `finally`). */
  deleteAll(): void {
    for (const name of [...this.#names]) this.delete(name);
  }

  get names(): readonly string[] {
    return [...this.#names];
  }
}
