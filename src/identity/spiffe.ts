/**
 * SPIFFE IDs as Ambit uses them: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
 * Building one from a pod's namespace and service account, and parsing/validating one taken from a
 * certificate or a CSR (SPIFFE ID spec: lowercase trust domain of [a-z0-9._-]; path segments of
 * [a-zA-Z0-9._-], none empty, none '.' or '..'; no query, fragment, port or userinfo).
 */

export const DEFAULT_TRUST_DOMAIN = 'cluster.local';

/** The SPIFFE spec caps a SPIFFE ID's length (as URI SAN) at 2048 bytes. */
const MAX_ID_LENGTH = 2048;
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const PATH_SEGMENT = /^[a-zA-Z0-9._-]+$/;

/** A parsed SPIFFE ID; `namespace`/`serviceAccount` are set when the path has Ambit's workload form. */
export interface ParsedSpiffeId {
  trustDomain: string;
  /** path segments, in order */
  segments: string[];
  namespace?: string;
  serviceAccount?: string;
}

export type ParseResult = { ok: true; id: ParsedSpiffeId } | { ok: false; error: string };

/** Why `trustDomain` is not a valid SPIFFE trust domain, or undefined when it is. */
export function trustDomainError(trustDomain: string): string | undefined {
  if (trustDomain === '') return 'trust domain is empty';
  if (!TRUST_DOMAIN.test(trustDomain)) {
    return `trust domain "${trustDomain}" may contain only lowercase letters, digits, '.', '-' and '_'`;
  }
  return undefined;
}

/** The workload SPIFFE ID of a service account. Throws on names that cannot form a valid ID. */
export function workloadSpiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  const id = `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
  const parsed = parseSpiffeId(id);
  if (!parsed.ok) throw new Error(`cannot form a SPIFFE ID for ${namespace}/${serviceAccount}: ${parsed.error}`);
  return id;
}

/** Parses and validates a SPIFFE ID; the error says what is wrong with it. */
export function parseSpiffeId(id: string): ParseResult {
  const fail = (error: string): ParseResult => ({ ok: false, error });
  if (Buffer.byteLength(id) > MAX_ID_LENGTH) return fail(`SPIFFE ID is longer than ${MAX_ID_LENGTH} bytes`);
  if (!id.startsWith('spiffe://')) return fail(`"${id}" is not a SPIFFE ID: it must start with spiffe://`);
  const rest = id.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash < 0 ? rest : rest.slice(0, slash);
  const tdError = trustDomainError(trustDomain);
  if (tdError) return fail(`"${id}": ${tdError}`);
  if (slash < 0) return { ok: true, id: { trustDomain, segments: [] } };
  const segments = rest.slice(slash + 1).split('/');
  for (const segment of segments) {
    if (segment === '') return fail(`"${id}": path has an empty segment (double or trailing '/')`);
    if (segment === '.' || segment === '..') return fail(`"${id}": path segments '.' and '..' are not allowed`);
    if (!PATH_SEGMENT.test(segment)) {
      return fail(`"${id}": path segment "${segment}" may contain only letters, digits, '.', '-' and '_'`);
    }
  }
  const parsed: ParsedSpiffeId = { trustDomain, segments };
  if (segments.length === 4 && segments[0] === 'ns' && segments[2] === 'sa') {
    parsed.namespace = segments[1];
    parsed.serviceAccount = segments[3];
  }
  return { ok: true, id: parsed };
}
