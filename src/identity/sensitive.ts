/**
 * Keeping secrets out of logs. `Sensitive` wraps a secret value (a private key PEM, a bearer token)
 * so that every way of printing it — JSON.stringify, util.inspect, template strings — shows
 * '[redacted]'; only an explicit `reveal()` hands the value out, at the one place that needs it
 * (a TLS context, a request header). `LOG_REDACT_PATHS` is the pino `redact` list for the fields
 * where secrets could still appear as plain strings.
 */
import { inspect } from 'node:util';

const REDACTED = '[redacted]';

export class Sensitive<T> {
  readonly #value: T;
  constructor(value: T) {
    this.#value = value;
  }
  /** The secret itself. Call only where it is used, never to log or store it. */
  reveal(): T {
    return this.#value;
  }
  toJSON(): string {
    return REDACTED;
  }
  toString(): string {
    return REDACTED;
  }
  [inspect.custom](): string {
    return REDACTED;
  }
}

/**
 * pino `redact.paths` for Ambit's loggers: private keys (ours and the CA's Secret keys), bearer tokens
 * and authorization metadata, at the top level and one object down (pino paths do not recurse).
 */
export const LOG_REDACT_PATHS: readonly string[] = [
  'keyPem',
  '*.keyPem',
  'privateKey',
  '*.privateKey',
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'headers.authorization',
  '["ca-key.pem"]',
  '*["ca-key.pem"]',
  'data["ca-key.pem"]',
  '*.data["ca-key.pem"]',
];
