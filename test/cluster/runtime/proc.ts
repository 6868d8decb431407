// Small process helpers for the local cluster's runtime layer: run a command with a bounded time
// and a useful error, find processes by what they were started with, and wait for conditions.
// Everything here acts only on processes and paths the caller names; nothing matches by program name.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile, readdir, readlink } from 'node:fs/promises';

export class CommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
    readonly stdout: string,
    reason: string,
  ) {
    super(`${argv.join(' ')}: ${reason}${stderr.trim() ? `\n${tail(stderr.trim(), 2000)}` : ''}`);
    this.name = 'CommandError';
  }
}

export interface RunOptions {
  /** Kill the command after this long (default 120 s). */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  input?: string;
}

/** Runs argv[0] with the rest as arguments; resolves stdout, rejects with CommandError on non-zero exit. */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<string> {
  const [file, ...args] = argv;
  if (!file) throw new Error('run: empty argv');
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      {
        timeout: opts.timeoutMs ?? 120_000,
        killSignal: 'SIGKILL',
        maxBuffer: 64 * 1024 * 1024,
        env: opts.env ?? process.env,
        cwd: opts.cwd,
        encoding: 'utf8',
      },
      (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: number | string };
        const reason = e.killed
          ? `timed out after ${opts.timeoutMs ?? 120_000} ms`
          : typeof e.code === 'number'
            ? `exited with ${e.code}`
            : String(e.message);
        reject(new CommandError(argv, typeof e.code === 'number' ? e.code : null, stderr, stdout, reason));
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

export function tail(text: string, max: number): string {
  return text.length <= max ? text : `…${text.slice(text.length - max)}`;
}

/** Polls `probe` until it returns a non-undefined value or `timeoutMs` passes (then throws `what`). */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const detail = lastError instanceof Error ? `: last error: ${lastError.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`);
    }
    await sleep(intervalMs);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Alive and not a zombie. Killed processes whose parent died are reparented to PID 1, and this
 * machine's init reaps them only after a second or two; a zombie holds nothing, so it counts as gone.
 */
export function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

export interface ProcInfo {
  pid: number;
  ppid: number;
  argv: string[];
}

/** A snapshot of every process: pid, parent pid and argv (unreadable or vanished ones are skipped). */
export async function listProcesses(): Promise<ProcInfo[]> {
  const out: ProcInfo[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const [stat, cmdline] = await Promise.all([
        readFile(`/proc/${name}/stat`, 'utf8'),
        readFile(`/proc/${name}/cmdline`, 'utf8'),
      ]);
      // The command name in field 2 may hold spaces and parentheses; fields after the last ')' are fixed.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.push({ pid: Number(name), ppid: Number(rest[1]), argv: cmdline.split('\0').filter(Boolean) });
    } catch {
      // the process exited while we looked
    }
  }
  return out;
}

/** `roots` and all their descendants, children after parents. */
export function descendants(procs: readonly ProcInfo[], roots: readonly number[]): number[] {
  const children = new Map<number, number[]>();
  for (const p of procs) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p.pid]);
  const seen: number[] = [];
  const queue = [...roots];
  while (queue.length) {
    const pid = queue.shift()!;
    if (seen.includes(pid)) continue;
    seen.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return seen;
}

/** The inode of a process's network namespace ("net:[4026532…]"), or undefined when it is gone. */
export async function netnsInode(pid: number): Promise<string | undefined> {
  try {
    return await readlink(`/proc/${pid}/ns/net`);
  } catch {
    return undefined;
  }
}

/** Mount points (unescaped) from /proc/self/mountinfo that equal `dir` or lie beneath it. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => unescapeMountPath(line.split(' ')[4] ?? ''))
    .filter((p) => p === dir || p.startsWith(prefix));
}

function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}
