/**
 * How one AuthorizationPolicy's rules match one connection at L4 — the part of Istio's
 * security.istio.io/v1 AuthorizationPolicy semantics a proxy that sees only TCP can evaluate.
 *
 * Facts from Istio's AuthorizationPolicy reference and its ambient (ztunnel) L4 policy docs, in our
 * words:
 * - A policy matches when any of its rules matches; a policy with no rules matches nothing.
 * - A rule matches when each of its present sections (`from`, `to`, `when`) matches; an absent
 *   section matches anything, so the rule `{}` matches every connection. Inside `from` and `to`, one
 *   list element matching is enough; every `when` condition must hold.
 * - Inside one source or operation every present field must hold: a positive list (principals,
 *   ipBlocks, ports, …) needs one entry to match, a negative list (notPrincipals, …) needs none to.
 * - Principals and namespaces use Istio's string forms: exact, prefix `abc*`, suffix `*abc`, and
 *   `*` = present (any non-empty value). Principals are written without `spiffe://`
 *   (`cluster.local/ns/default/sa/sleep`); a peer without an identity (plaintext) has no principal
 *   and no namespace, so positive lists never match it and negative lists always do.
 * - At L4 only these attributes exist: the peer's principal, namespace and service account (from its
 *   certificate), source IP, destination IP and destination port. The ztunnel treats everything
 *   else as HTTP-only: hosts, methods, paths (and their not… forms), requestPrincipals,
 *   remoteIpBlocks (they come from X-Forwarded-For or the PROXY protocol, which a plain TCP
 *   connection does not carry), and every `when` key except source.ip, source.namespace,
 *   source.principal, destination.ip and destination.port.
 * - "Fail closed" for what cannot be seen: in an ALLOW policy a rule that names any HTTP-only
 *   attribute is dropped whole (it can never allow); in a DENY policy only the HTTP-only parts are
 *   dropped and the rest still applies, so the policy denies more than written, never less.
 *
 * Compiling a policy (parsing its CIDRs, splitting its L7 parts off) happens once per policy object:
 * snapshot resources are immutable, so a WeakMap keyed by the object caches it for free.
 */
import type { AuthorizationPolicy, AuthzCondition, AuthzOperation, AuthzRule, AuthzSource } from '../../state/policy.js';
import { blockContains, parseIp, parseIpBlock, type IpAddress, type IpBlock } from './ip.js';

/** What the L4 proxy knows about a connection when it decides. */
export interface ConnectionFacts {
  /** the peer's principal in Istio's form (its SPIFFE ID without `spiffe://`); absent for plaintext */
  principal?: string;
  namespace?: string;
  serviceAccount?: string;
  sourceIp?: IpAddress;
  destinationIp?: IpAddress;
  destinationPort: number;
}

/** The `when` keys a TCP proxy can evaluate (the ztunnel's list). */
export const L4_CONDITION_KEYS: ReadonlySet<string> = new Set(['source.ip', 'source.namespace', 'source.principal', 'destination.ip', 'destination.port']);

const HTTP_OPERATION_FIELDS = ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'] as const;
const HTTP_SOURCE_FIELDS = ['requestPrincipals', 'notRequestPrincipals', 'remoteIpBlocks', 'notRemoteIpBlocks'] as const;

type Predicate = (f: ConnectionFacts) => boolean;

/** A rule reduced to what L4 can check. `match` is undefined when the rule can never match. */
export interface CompiledRule {
  match?: Predicate;
  /** the HTTP-only attributes the rule names (for logs and status), e.g. ["methods", "when request.headers[x]"] */
  httpOnly: string[];
}

export interface CompiledPolicy {
  rules: CompiledRule[];
}

// ---- string matching --------------------------------------------------------------------------

/** Istio's string match forms: `*` (present), `*suffix`, `prefix*`, or exact. */
export function stringMatches(pattern: string, value: string | undefined): boolean {
  if (value === undefined || value === '') return false;
  if (pattern === '*') return true;
  if (pattern.startsWith('*')) return value.endsWith(pattern.slice(1));
  if (pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  return pattern === value;
}

/** Positive list: one entry must match (absent list: anything). Negative: no entry may match. */
function listCheck<T>(positive: readonly T[] | undefined, negative: readonly T[] | undefined, hit: (entry: T) => boolean): boolean {
  if (positive && positive.length > 0 && !positive.some(hit)) return false;
  if (negative && negative.length > 0 && negative.some(hit)) return false;
  return true;
}

function blocks(list: readonly string[] | undefined): IpBlock[] | undefined {
  // The control plane validated every block; an unparsable one (should not happen) matches nothing.
  return list?.map((s) => parseIpBlock(s) ?? { v6: true, base: -1n, bits: 128 });
}

const inBlock = (addr: IpAddress | undefined) => (b: IpBlock): boolean => addr !== undefined && blockContains(b, addr);

// ---- sections ---------------------------------------------------------------------------------

function compileSource(s: AuthzSource): Predicate {
  const ipBlocks = blocks(s.ipBlocks);
  const notIpBlocks = blocks(s.notIpBlocks);
  const { principals, notPrincipals, namespaces, notNamespaces, serviceAccounts, notServiceAccounts } = s;
  return (f) =>
    listCheck(principals, notPrincipals, (p) => stringMatches(p, f.principal)) &&
    listCheck(namespaces, notNamespaces, (n) => stringMatches(n, f.namespace)) &&
    // serviceAccounts are "<namespace>/<name>" and match exactly, with no wildcard forms (as in the ztunnel)
    listCheck(serviceAccounts, notServiceAccounts, (sa) => f.namespace !== undefined && f.serviceAccount !== undefined && sa === `${f.namespace}/${f.serviceAccount}`) &&
    listCheck(ipBlocks, notIpBlocks, inBlock(f.sourceIp));
}

function compileOperation(op: AuthzOperation): Predicate {
  const { ports, notPorts } = op;
  return (f) => listCheck(ports, notPorts, (p) => p === f.destinationPort);
}

function compileCondition(c: AuthzCondition): Predicate {
  const { values, notValues } = c;
  switch (c.key) {
    case 'source.principal':
      return (f) => listCheck(values, notValues, (v) => stringMatches(v, f.principal));
    case 'source.namespace':
      return (f) => listCheck(values, notValues, (v) => stringMatches(v, f.namespace));
    case 'destination.port':
      return (f) => listCheck(values, notValues, (v) => Number(v) === f.destinationPort);
    case 'source.ip': {
      const [pos, neg] = [blocks(values), blocks(notValues)];
      return (f) => listCheck(pos, neg, inBlock(f.sourceIp));
    }
    case 'destination.ip': {
      const [pos, neg] = [blocks(values), blocks(notValues)];
      return (f) => listCheck(pos, neg, inBlock(f.destinationIp));
    }
    default:
      // Not an L4 key: callers drop these before compiling.
      return () => true;
  }
}

const anyOf = (ps: Predicate[]): Predicate => (f) => ps.some((p) => p(f));
const allOf = (ps: Predicate[]): Predicate => (f) => ps.every((p) => p(f));

/** The HTTP-only attributes a rule names, each said as the user wrote it. */
export function httpOnlyAttributes(rule: AuthzRule): string[] {
  const found = new Set<string>();
  for (const op of rule.to ?? []) for (const k of HTTP_OPERATION_FIELDS) if (op[k]?.length) found.add(k);
  for (const src of rule.from ?? []) for (const k of HTTP_SOURCE_FIELDS) if (src[k]?.length) found.add(k);
  for (const c of rule.when ?? []) if (!L4_CONDITION_KEYS.has(c.key)) found.add(`when ${c.key}`);
  return [...found];
}

/**
 * One rule at L4. `failClosedAs` says what to do with HTTP-only parts: 'drop-rule' (ALLOW: the rule
 * can never match) or 'drop-parts' (DENY, CUSTOM: ignore those fields, keep the rest).
 */
export function compileRule(rule: AuthzRule, failClosedAs: 'drop-rule' | 'drop-parts'): CompiledRule {
  const httpOnly = httpOnlyAttributes(rule);
  if (httpOnly.length > 0 && failClosedAs === 'drop-rule') return { httpOnly };
  const sections: Predicate[] = [];
  // A source or operation whose only fields were HTTP-only becomes empty and so matches anything.
  if (rule.from) sections.push(anyOf(rule.from.map(compileSource)));
  if (rule.to) sections.push(anyOf(rule.to.map(compileOperation)));
  const when = (rule.when ?? []).filter((c) => L4_CONDITION_KEYS.has(c.key)).map(compileCondition);
  if (when.length > 0) sections.push(allOf(when));
  return { match: sections.length === 0 ? () => true : allOf(sections), httpOnly };
}

const compiled = new WeakMap<AuthorizationPolicy, CompiledPolicy>();

/** The policy's rules reduced to L4, cached per policy object. */
export function compilePolicy(p: AuthorizationPolicy): CompiledPolicy {
  let c = compiled.get(p);
  if (!c) {
    const mode = p.action === 'ALLOW' ? 'drop-rule' : 'drop-parts';
    c = { rules: p.rules.map((r) => compileRule(r, mode)) };
    compiled.set(p, c);
  }
  return c;
}

/** The index of the first rule of `p` that matches, or -1. A policy without rules matches nothing. */
export function matchingRule(p: AuthorizationPolicy, facts: ConnectionFacts): number {
  return compilePolicy(p).rules.findIndex((r) => r.match !== undefined && r.match(facts));
}

/** Facts from raw connection fields (IPs parsed, IPv4-mapped folded). */
export function factsOf(c: { principal?: string; namespace?: string; serviceAccount?: string; sourceIp: string; destinationIp: string; destinationPort: number }): ConnectionFacts {
  const f: ConnectionFacts = { destinationPort: c.destinationPort };
  if (c.principal !== undefined) f.principal = c.principal;
  if (c.namespace !== undefined) f.namespace = c.namespace;
  if (c.serviceAccount !== undefined) f.serviceAccount = c.serviceAccount;
  const src = parseIp(c.sourceIp);
  if (src) f.sourceIp = src;
  const dst = parseIp(c.destinationIp);
  if (dst) f.destinationIp = dst;
  return f;
}
