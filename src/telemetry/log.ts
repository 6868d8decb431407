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
    opts.destination ?? pino.destination({ fd: 1, sync: false }),
  );
}

/** The logger of one component. */
export function componentLogger(parent: Logger, component: string): Logger {
  return parent.child({ component });
}
