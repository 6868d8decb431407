/**
 * Warm processes: the tools of CNI ADD's rule writes, started before they are needed, so that at
 * use time the agent does not fork. A fork of the agent (~150 MB RSS) costs 1.6 ms on a quiet
 * node and ~13 ms under load, and holds the event loop for all of it; on the ADD path that is
 * latency for this pod and for every other request the loop is serving.
 *
 * Each warm process is `sh -c WARM_SCRIPT ambit-warm <argv…>`, blocked in `read` on its stdin.
 * At use the pool writes two lines, then the tool's input, and ends stdin:
 *   line 1: the network namespace to enter (`exec nsenter --net=<path> -- argv`), or empty for the
 *           agent's own netns (`exec argv`);
 *   line 2: XTABLES_LOCKFILE for the tool (iptables-legacy's lock), or empty to leave it unset.
 * sh's `read` takes a pipe one byte at a time (it may not read past the newline of input it does not
 * own), so everything after line 2 reaches the tool untouched; `exec` replaces sh, so the tool's
 * exit code and output are the process's. When stdin ends before the lines (the pool closed, the
 * agent died), `read` fails and the process exits 0 without a word.
 *
 * The pool (WarmPool) keeps `size` idle processes per command. A run takes one if there is one,
 * otherwise it spawns as before (never waits for a refill). Refills happen after the result is
 * delivered (setImmediate, and only once no run through the pool is in flight), one spawn per turn
 * of the event loop: a refill's fork never sits between a request and its answer. Idle processes
 * are unref'd: they never keep the agent alive, and they exit on their own when it dies (their
 * stdin closes). `close()` ends the idle processes' stdin, waits for them (bounded), and kills
 * by PID those it started that did not exit; runs in flight finish on their own.
 *
 * What is not warm — anything whose environment is more than XTABLES_LOCKFILE, or a line that is
 * not an absolute path — runs as a plain spawn, with the same CommandRunner contract. One
 * difference: a warm tool that is not installed exits 127 (sh says "not found") where a spawn in
 * the agent's own netns rejects; in a netns both report a non-zero exit (nsenter's).
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { Socket } from 'node:net';
import { type CommandResult, type CommandRunner, type RunnerSource, finishProcess, hostRunner, netnsRunner } from './exec.js';

/** The script every warm process runs; the tool's argv follows as "$@". */
export const WARM_SCRIPT = [
  'IFS= read -r ns || exit 0',
  'IFS= read -r lock || exit 0',
  '[ -z "$lock" ] || export XTABLES_LOCKFILE="$lock"',
  '[ -z "$ns" ] || exec nsenter --net="$ns" -- "$@"',
  'exec "$@"',
].join('\n');

/** $0 of the warm processes: what `ps` shows for them. */
export const WARM_NAME = 'ambit-warm';

/** The argv that starts a warm process for `command`. */
export function warmArgv(command: readonly string[]): string[] {
  return ['sh', '-c', WARM_SCRIPT, WARM_NAME, ...command];
}

/**
 * One line of the protocol: '' (absent) or an absolute path without newline or NUL (what `read`
 * could not carry, or would cut). Undefined when `value` cannot be sent.
 */
export function warmLine(value: string | undefined): string | undefined {
  if (value === undefined || value === '') return '';
  if (!value.startsWith('/') || value.includes('\n') || value.includes('\0')) return undefined;
  return value;
}

/**
 * What a warm process of `argv` must be told to run it in `netnsPath` with `env`: the two lines,
 * or undefined when it cannot (an environment beyond XTABLES_LOCKFILE, a line warmLine refuses);
 * the run is then a plain spawn.
 */
export function warmPrologue(netnsPath: string | undefined, env: Record<string, string> | undefined): string | undefined {
  const keys = Object.keys(env ?? {});
  if (keys.some((k) => k !== 'XTABLES_LOCKFILE')) return undefined;
  const ns = warmLine(netnsPath);
  const lock = warmLine(env?.XTABLES_LOCKFILE);
  if (ns === undefined || lock === undefined) return undefined;
  if (netnsPath !== undefined && ns === '') return undefined; // '' would mean "the agent's netns"
  return `${ns}\n${lock}\n`;
}

/** The pool's key for a command. */
function keyOf(argv: readonly string[]): string {
  return argv.join('\0');
}

export interface WarmPoolOptions {
  /** The commands to keep ready, each exactly as the runners will be asked for it (duplicates are fine). */
  commands: readonly (readonly string[])[];
  /** Idle processes per command, 1 to 4 (default 2: two ADDs back to back both find one). */
  size?: number;
  /** How long `close()` waits for idle processes to exit before killing them (default 2000 ms). */
  closeTimeoutMs?: number;
}

export interface WarmPoolStats {
  /** Idle processes now, over all commands. */
  idle: number;
  /** Runs served by a warm process / by a plain spawn (not warm, none idle, or pool closed). */
  warm: number;
  cold: number;
  /** Warm processes started, and the time spent in their `spawn()` calls (the event loop held). */
  spawned: number;
  spawnMs: number;
}

interface Kind {
  argv: readonly string[];
  idle: ChildProcessWithoutNullStreams[];
}

/** Keeps warm processes per command; see the file header. */
export class WarmPool implements RunnerSource {
  readonly #kinds = new Map<string, Kind>();
  readonly #size: number;
  readonly #closeTimeoutMs: number;
  /** Every warm process alive that this pool started (idle or running a tool). */
  readonly #alive = new Set<ChildProcessWithoutNullStreams>();
  #inFlight = 0;
  #refill: NodeJS.Immediate | undefined;
  #closed = false;
  readonly #stats = { warm: 0, cold: 0, spawned: 0, spawnMs: 0 };

  constructor(opts: WarmPoolOptions) {
    this.#size = Math.min(4, Math.max(1, Math.floor(opts.size ?? 2)));
    this.#closeTimeoutMs = opts.closeTimeoutMs ?? 2000;
    for (const argv of opts.commands) {
      if (argv.length === 0) throw new TypeError('warm pool: empty command');
      this.#kinds.set(keyOf(argv), { argv: [...argv], idle: [] });
    }
    this.#scheduleRefill();
  }

  /** A CommandRunner in `netnsPath` (undefined: the agent's own netns), warm where it can be. */
  runner(netnsPath?: string): CommandRunner {
    return (argv, stdin, env) => this.run(argv, stdin, env, netnsPath);
  }

  async run(argv: readonly string[], stdin?: string, env?: Record<string, string>, netnsPath?: string): Promise<CommandResult> {
    this.#inFlight++;
    try {
      const prologue = this.#closed ? undefined : warmPrologue(netnsPath, env);
      const child = prologue === undefined ? undefined : this.#take(argv);
      if (child === undefined) {
        this.#stats.cold++;
        return await (netnsPath === undefined ? hostRunner : netnsRunner(netnsPath))(argv, stdin, env);
      }
      this.#stats.warm++;
      return await finishProcess(child, prologue + (stdin ?? ''));
    } finally {
      // After the caller's result: its continuation runs (microtasks) before any setImmediate.
      this.#inFlight--;
      if (this.#inFlight === 0) this.#scheduleRefill();
    }
  }

  stats(): WarmPoolStats {
    let idle = 0;
    for (const k of this.#kinds.values()) idle += k.idle.length;
    return { idle, ...this.#stats };
  }

  /** PIDs of the idle processes (tests, the benchmark). */
  idlePids(): number[] {
    return [...this.#kinds.values()].flatMap((k) => k.idle.map((c) => c.pid!));
  }

  /** Resolves true once every command has `size` idle processes, false after `timeoutMs` (tests, the benchmark). */
  async whenFull(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#full()) {
      if (this.#closed || Date.now() >= deadline) return false;
      await new Promise((r) => setTimeout(r, 5));
    }
    return true;
  }

  /**
   * Stops refilling, ends every idle process's stdin (they exit 0), waits up to closeTimeoutMs and
   * kills, by PID, any that did not exit. Runs in flight are not touched; later runs spawn.
   */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#refill) clearImmediate(this.#refill);
    this.#refill = undefined;
    const idle = [...this.#kinds.values()].flatMap((k) => k.idle.splice(0));
    for (const child of idle) child.stdin.end();
    const exited = await Promise.all(idle.map((c) => exitOf(c, this.#closeTimeoutMs)));
    const stuck = idle.filter((_, i) => !exited[i]);
    for (const child of stuck) child.kill('SIGKILL');
    await Promise.all(stuck.map((c) => exitOf(c, 1000)));
  }

  #full(): boolean {
    return [...this.#kinds.values()].every((k) => k.idle.length >= this.#size);
  }

  /** An idle, live process of `argv`, made ready to run (ref'd again); undefined if none. */
  #take(argv: readonly string[]): ChildProcessWithoutNullStreams | undefined {
    const kind = this.#kinds.get(keyOf(argv));
    while (kind && kind.idle.length > 0) {
      const child = kind.idle.shift()!;
      if (!this.#alive.has(child)) continue; // died while idle; its exit event has not removed it yet
      holdsLoop(child, true);
      return child;
    }
    return undefined;
  }

  #scheduleRefill(): void {
    if (this.#closed || this.#refill !== undefined || this.#full()) return;
    this.#refill = setImmediate(() => {
      this.#refill = undefined;
      this.#refillOne();
    });
  }

  /** One spawn per turn of the loop, and none while a run is in flight (its end schedules the next). */
  #refillOne(): void {
    if (this.#closed || this.#inFlight > 0) return;
    const kind = [...this.#kinds.values()].find((k) => k.idle.length < this.#size);
    if (kind === undefined) return;
    this.#spawnIdle(kind);
    this.#scheduleRefill();
  }

  #spawnIdle(kind: Kind): void {
    const [command, ...args] = warmArgv(kind.argv);
    const t0 = performance.now();
    const child = spawn(command!, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.#stats.spawnMs += performance.now() - t0;
    this.#stats.spawned++;
    this.#alive.add(child);
    const gone = () => {
      this.#alive.delete(child);
      const i = kind.idle.indexOf(child);
      if (i >= 0) kind.idle.splice(i, 1);
    };
    child.on('exit', gone);
    child.on('error', gone); // could not start (no sh?): runs spawn instead
    child.stdin.on('error', () => {}); // EPIPE from a process that died while idle
    // Idle, it must not keep the agent alive; #take refs it again.
    holdsLoop(child, false);
    kind.idle.push(child);
  }
}

/** Whether `child` and its pipes keep the event loop alive (its pipes are sockets; the types say streams). */
function holdsLoop(child: ChildProcessWithoutNullStreams, on: boolean): void {
  if (on) child.ref();
  else child.unref();
  for (const stream of [child.stdin, child.stdout, child.stderr]) {
    const pipe = stream as unknown as Partial<Pick<Socket, 'ref' | 'unref'>>;
    if (on) pipe.ref?.();
    else pipe.unref?.();
  }
}

/** True once `child` has exited and its pipes closed; false after `ms`. */
function exitOf(child: ChildProcessWithoutNullStreams, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
    child.once('error', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
