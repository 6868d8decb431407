// Container logs as the kubelet serves them (pkg/kubelet/kuberuntime/logs): the runtime writes
// each line as `<RFC3339Nano> <stream> <P|F> <content>` (P: a partial line continued by the next
// entry); the kubelet joins partials, applies tailLines/sinceTime/limitBytes, optionally prefixes
// the timestamp, and with follow keeps reading until the client leaves or the container stops.
import { open, type FileHandle } from 'node:fs/promises';

export interface LogEntry {
  /** the timestamp as the runtime wrote it */
  time: string;
  stream: 'stdout' | 'stderr';
  /** content including its newline when the line is complete */
  content: string;
}

/** One CRI log line (without its trailing newline) → tag and content; undefined when malformed. */
export function parseCriLine(line: string): { time: string; stream: 'stdout' | 'stderr'; partial: boolean; content: string } | undefined {
  const a = line.indexOf(' ');
  const b = line.indexOf(' ', a + 1);
  if (a <= 0 || b < 0) return undefined;
  const stream = line.slice(a + 1, b);
  if (stream !== 'stdout' && stream !== 'stderr') return undefined;
  const c = line.indexOf(' ', b + 1);
  const tag = c < 0 ? line.slice(b + 1) : line.slice(b + 1, c);
  const content = c < 0 ? '' : line.slice(c + 1);
  return { time: line.slice(0, a), stream, partial: tag.split(':').includes('P'), content };
}

/**
 * Turns CRI log text into entries, joining partial lines per stream. `carry` holds unfinished
 * state across calls (a following read continues the last line).
 */
export class CriLogDecoder {
  private rest = '';
  private readonly partial: Record<'stdout' | 'stderr', { time: string; content: string } | undefined> = { stdout: undefined, stderr: undefined };

  push(text: string): LogEntry[] {
    const data = this.rest + text;
    const lines = data.split('\n');
    this.rest = lines.pop() ?? '';
    const out: LogEntry[] = [];
    for (const line of lines) {
      const p = parseCriLine(line);
      if (!p) continue;
      const pending = this.partial[p.stream];
      if (p.partial) {
        this.partial[p.stream] = { time: pending?.time ?? p.time, content: (pending?.content ?? '') + p.content };
        continue;
      }
      this.partial[p.stream] = undefined;
      out.push({ time: pending?.time ?? p.time, stream: p.stream, content: `${pending?.content ?? ''}${p.content}\n` });
    }
    return out;
  }
}

export interface LogOptions {
  follow: boolean;
  previous: boolean;
  timestamps: boolean;
  tailLines?: number;
  sinceMs?: number;
  limitBytes?: number;
  container?: string;
}

/** The query of GET pods/log (PodLogOptions). Throws with a message for invalid values. */
export function parseLogQuery(q: URLSearchParams, nowMs: number): LogOptions {
  const bool = (k: string) => q.get(k) === 'true' || q.get(k) === '1';
  const int = (k: string) => {
    const v = q.get(k);
    if (v === null || v === '') return undefined;
    const n = Number(v);
    if (!Number.isInteger(n)) throw new Error(`invalid ${k}: ${v}`);
    return n;
  };
  const opts: LogOptions = { follow: bool('follow'), previous: bool('previous'), timestamps: bool('timestamps') };
  const c = q.get('container');
  if (c) opts.container = c;
  const tail = int('tailLines');
  if (tail !== undefined) opts.tailLines = Math.max(0, tail);
  const limit = int('limitBytes');
  if (limit !== undefined) opts.limitBytes = limit;
  const since = int('sinceSeconds');
  if (since !== undefined) opts.sinceMs = nowMs - since * 1000;
  const sinceTime = q.get('sinceTime');
  if (sinceTime) opts.sinceMs = Date.parse(sinceTime);
  return opts;
}

/** How an entry is written to the client. */
export function formatEntry(e: LogEntry, timestamps: boolean): string {
  return timestamps ? `${e.time} ${e.content}` : e.content;
}

/** The entries to send first: filtered by since, then the last `tailLines`. */
export function selectEntries(entries: LogEntry[], opts: Pick<LogOptions, 'tailLines' | 'sinceMs'>): LogEntry[] {
  let out = opts.sinceMs !== undefined ? entries.filter((e) => Date.parse(e.time) >= opts.sinceMs!) : entries;
  if (opts.tailLines !== undefined) out = opts.tailLines === 0 ? [] : out.slice(-opts.tailLines);
  return out;
}

export interface LogSink {
  write(chunk: string): boolean;
  readonly closed: boolean;
}

/**
 * Streams a CRI log file into `sink`. With follow, polls for new content until `stillRunning()`
 * says no (then drains what is left) or the sink closes.
 */
export async function streamLog(path: string, opts: LogOptions, sink: LogSink, stillRunning: () => Promise<boolean>, pollMs = 100): Promise<void> {
  const fh: FileHandle = await open(path, 'r');
  try {
    const decoder = new CriLogDecoder();
    let position = 0;
    let budget = opts.limitBytes ?? Infinity;
    const send = (entries: LogEntry[]): boolean => {
      for (const e of entries) {
        if (opts.sinceMs !== undefined && Date.parse(e.time) < opts.sinceMs) continue;
        let text = formatEntry(e, opts.timestamps);
        if (Buffer.byteLength(text) > budget) text = Buffer.from(text).subarray(0, budget).toString('utf8');
        budget -= Buffer.byteLength(text);
        sink.write(text);
        if (budget <= 0) return false;
      }
      return true;
    };
    const readMore = async (): Promise<string> => {
      const chunks: Buffer[] = [];
      for (;;) {
        const buf = Buffer.alloc(64 * 1024);
        const { bytesRead } = await fh.read(buf, 0, buf.length, position);
        if (bytesRead === 0) break;
        position += bytesRead;
        chunks.push(buf.subarray(0, bytesRead));
      }
      return Buffer.concat(chunks).toString('utf8');
    };
    if (!send(selectEntries(decoder.push(await readMore()), opts))) return;
    if (!opts.follow) return;
    for (;;) {
      if (sink.closed) return;
      const running = await stillRunning();
      const text = await readMore();
      if (text && !send(decoder.push(text))) return;
      if (!running) return;
      await new Promise((r) => setTimeout(r, pollMs));
    }
  } finally {
    await fh.close();
  }
}
