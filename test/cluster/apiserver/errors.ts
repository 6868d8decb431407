/**
 * The server's one error catalogue: every failure becomes a meta/v1 Status with the code, reason and
 * message the real kube-apiserver gives for the same situation.
 */
import type { FieldError } from './types.js';

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: { reason?: string; message: string; field?: string }[];
  retryAfterSeconds?: number;
}

export interface Status {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, unknown>;
  status: 'Failure' | 'Success';
  message: string;
  reason: string;
  details?: StatusDetails;
  code: number;
}

export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: StatusDetails,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  toStatus(): Status {
    const s: Status = {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: this.message,
      reason: this.reason,
      code: this.code,
    };
    // the real server leaves an empty reason out (e.g. for errors it has no StatusReason for)
    if (!this.reason) delete (s as Partial<Status>).reason;
    if (this.details) s.details = this.details;
    return s;
  }
}

/** `pods "web-0" not found` */
export function notFound(qualified: string, name: string, kind?: string, group?: string): ApiError {
  return new ApiError(404, 'NotFound', `${qualified} "${name}" not found`, detail(name, kind ?? qualified.split('.')[0]!, group));
}

/** `pods "web-0" already exists` */
export function alreadyExists(qualified: string, name: string, group?: string): ApiError {
  return new ApiError(409, 'AlreadyExists', `${qualified} "${name}" already exists`, detail(name, qualified.split('.')[0]!, group));
}

/** The optimistic-concurrency failure. */
export function conflict(qualified: string, name: string, group?: string): ApiError {
  return new ApiError(
    409,
    'Conflict',
    `Operation cannot be fulfilled on ${qualified} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    detail(name, qualified.split('.')[0]!, group),
  );
}

export function badRequest(message: string): ApiError {
  return new ApiError(400, 'BadRequest', message);
}

export function methodNotAllowed(message = 'the server does not allow this method on the requested resource'): ApiError {
  return new ApiError(405, 'MethodNotAllowed', message);
}

export function notAcceptable(message: string): ApiError {
  return new ApiError(406, 'NotAcceptable', message);
}

export function unsupportedMediaType(contentType: string): ApiError {
  return new ApiError(
    415,
    'UnsupportedMediaType',
    `the body of the request was in an unknown format (${contentType || 'none'}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml`,
  );
}

export function gone(message: string): ApiError {
  return new ApiError(410, 'Expired', message);
}

export function unauthorized(): ApiError {
  return new ApiError(401, 'Unauthorized', 'Unauthorized');
}

/** `pods is forbidden: User "x" cannot list resource "pods" in API group "" in the namespace "ns"` */
export function forbidden(message: string, name?: string, kind?: string, group?: string): ApiError {
  const d: StatusDetails = {};
  if (name) d.name = name;
  if (kind) d.kind = kind;
  if (group !== undefined && kind) d.group = group;
  return new ApiError(403, 'Forbidden', message, d);
}

/** The generic "the server could not find the requested resource". */
export function noSuchResource(): ApiError {
  return new ApiError(404, 'NotFound', 'the server could not find the requested resource');
}

/**
 * 422 Invalid, with every field error as a cause:
 * `Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0`
 */
export function invalid(kind: string, group: string, name: string, errs: FieldError[]): ApiError {
  const gk = group ? `${kind}.${group}` : kind;
  const parts = errs.map((e) => `${e.field}: ${e.message}`);
  const list = parts.length === 1 ? parts[0]! : `[${parts.join(', ')}]`;
  return new ApiError(422, 'Invalid', `${gk} "${name}" is invalid: ${list}`, {
    name,
    group,
    kind,
    causes: errs.map((e) => ({ reason: e.reason, message: e.message, field: e.field })),
  });
}

export function internal(message: string): ApiError {
  return new ApiError(500, 'InternalError', `Internal error occurred: ${message}`);
}

export function timeout(message: string, retryAfterSeconds = 1): ApiError {
  return new ApiError(504, 'Timeout', message, { retryAfterSeconds });
}

function detail(name: string, kind: string, group?: string): StatusDetails {
  const d: StatusDetails = { name, kind };
  if (group) d.group = group;
  return d;
}
