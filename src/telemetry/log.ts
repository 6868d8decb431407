/**
 * Ambit's logger: pino writing JSON lines, with secrets redacted (src/identity/sensitive.ts's
 * LOG_REDACT_PATHS) and one child logger per component (`component: "push"`), so a reader can
 * filter one room of the program. Every program makes exactly one root logger in src/main.
 */
import { pino, type DestinationStream, type Logger, type LevelWithSilent } from 'pino';
import { LOG_REDACT_PATHS } from '../identity/sensitive.js';

export type { Logger } from 'pino';

export const LOG_LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface LoggerOptions {
  /** the program, e.g. "ambit-control" */
  name: string;
  level?: LevelWithSilent;
  /** default: stdout */
  destination?: DestinationStream;
}

/** The root logger of a program. */
export function createLogger(opts: LoggerOptions): Logger {
  return pino(
    {
      name: opts.name,
      level: opts.level ?? 'info',
      redact: { paths: [...LOG_REDACT_PATHS], censor: '[redacted]' },
      // errors keep their message and stack under `err`
      serializers: { err: pino.stdSerializers.err },
      base: { pid: process.pid },
    },
    opts.destination ?? bufferedDestination(1),
  );
}

/** Kernel's PIPE_BUF on Linux: a write(2) of at most this many bytes to a pipe is never interleaved. */
const PIPE_BUF = 4096;

/**
 * Where a busy program's lines go: written in batches instead of one write(2) per line. A proxy
 * writes an access-log line per connection; one syscall each (and one wake-up of the container
 * runtime's log reader each) cost more CPU than the connection's own bookkeeping. Lines wait until
 * about a PIPE_BUF's worth is buffered, or at most `flushMs`; each write holds whole lines only and
 * at most PIPE_BUF bytes (sonic-boom starts a new chunk rather than split a line, unless one line is
 * longer), so the lines of several threads writing to the same stdout pipe never interleave.
 * Exiting flushes what is left (pino's exit hook; call `logger.flush()` before a worker ends).
 */
export function bufferedDestination(fd: number, flushMs = 1000): DestinationStream {
  return pino.destination({ fd, sync: false, minLength: PIPE_BUF - 96, maxWrite: PIPE_BUF, periodicFlush: flushMs });
}

/** The logger of one component. */
export function componentLogger(parent: Logger, component: string): Logger {
  return parent.child({ component });
}
