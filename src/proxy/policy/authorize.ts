/**
 * The L4 authorization decision for one inbound connection to one workload: which
 * AuthorizationPolicies apply, in which order they are consulted, and a reason an operator can read
 * in the access log.
 *
 * Istio's order of evaluation (AuthorizationPolicy reference, "Authorization policy precedence"),
 * in our words: CUSTOM policies are consulted first, then DENY, then ALLOW. Any matching DENY
 * refuses the connection. If no ALLOW policy applies to the workload at all, the connection is
 * allowed; once at least one ALLOW policy applies, one of them must match. AUDIT policies only mark
 * requests for logging and never change the decision (the ztunnel does not even receive them).
 *
 * CUSTOM delegates to an external authorizer, which Ambit's L4 proxy cannot call. src/state accepts
 * CUSTOM policies (they are valid Istio), so the proxy fails closed on them: a connection that a
 * CUSTOM policy's rules match is refused, with a reason that says so (HTTP-only parts of its rules
 * are dropped as for DENY, so it refuses more, never less). The ztunnel instead does not program
 * CUSTOM policies at all; refusing here keeps "ask the authorizer first" from silently becoming
 * "allow".
 *
 * Which policies apply to a workload is src/state's `authorizationPolicyApplies` (root namespace =
 * mesh-wide; otherwise the policy's namespace, narrowed by selector or targetRefs).
 */
import type { AuthorizationPolicy } from '../../state/policy.js';
import { authorizationPolicyApplies, type PolicySubject } from '../../state/policy.js';
import { displayIp } from './ip.js';
import { peerIdentity, type L4Connection } from './identity.js';
import { compilePolicy, factsOf, matchingRule, type ConnectionFacts } from './match.js';

/** The workload being connected to; `name` only makes reasons clearer. Snapshot Workloads fit. */
export interface AuthzSubject extends PolicySubject {
  name?: string;
}

/** Stable, low-cardinality outcome codes (for metrics labels and filtering logs). */
export type AuthzCode = 'allow_no_policy' | 'allow_policy' | 'deny_policy' | 'deny_custom' | 'deny_no_allow_match';

export interface AuthzDecision {
  allowed: boolean;
  code: AuthzCode;
  /** "<namespace>/<name>" of the policy that decided; absent when no single policy did */
  policy?: string;
  /** index into that policy's spec.rules */
  rule?: number;
  /** one sentence for the access log: verdict, deciding policy, the connection, what to change */
  reason: string;
}

/** How many candidate policies a reason names before it says "and N more". */
const MAX_NAMED = 5;

function factsFor(conn: L4Connection): ConnectionFacts {
  let principal: string | undefined;
  let namespace = conn.sourceNamespace;
  let serviceAccount = conn.sourceServiceAccount;
  if (conn.sourcePrincipal?.startsWith('spiffe://')) {
    principal = conn.sourcePrincipal.slice('spiffe://'.length);
    if (namespace === undefined) {
      const id = peerIdentity(conn.sourcePrincipal);
      namespace = id?.namespace;
      serviceAccount ??= id?.serviceAccount;
    }
  }
  return factsOf({ principal, namespace, serviceAccount, sourceIp: conn.sourceIp, destinationIp: conn.destinationIp, destinationPort: conn.destinationPort });
}

/** "spiffe://td/ns/a/sa/b from 10.0.0.5 to shop/web-1 port 8080" */
export function describeConnection(conn: L4Connection, w: AuthzSubject): string {
  const who = conn.sourcePrincipal ?? 'plaintext client';
  const target = w.name ? `${w.namespace}/${w.name}` : `a workload in ${w.namespace}`;
  return `${who} from ${displayIp(conn.sourceIp)} to ${target} port ${conn.destinationPort}`;
}

function nameList(keys: string[]): string {
  const shown = keys.slice(0, MAX_NAMED).join(', ');
  return keys.length > MAX_NAMED ? `${shown} and ${keys.length - MAX_NAMED} more` : shown;
}

function ignoredHttpNote(p: AuthorizationPolicy, rule: number): string {
  const attrs = compilePolicy(p).rules[rule]?.httpOnly ?? [];
  if (attrs.length === 0) return '';
  return ` (its HTTP-only ${attrs.join(', ')} cannot be seen at L4 and were ignored, so it denies more than written; use a waypoint for HTTP rules)`;
}

/** ALLOW rules the L4 proxy skipped because they need HTTP: said once in a no-match reason. */
function skippedHttpNote(allows: AuthorizationPolicy[]): string {
  const skipped: string[] = [];
  for (const p of allows) {
    compilePolicy(p).rules.forEach((r, i) => {
      if (r.match === undefined) skipped.push(`${p.key} rules[${i}] (${r.httpOnly.join(', ')})`);
    });
  }
  if (skipped.length === 0) return '';
  return `; these ALLOW rules never match at L4 because they need HTTP attributes: ${nameList(skipped)}`;
}

/**
 * Decides whether `conn` may reach `workload`. `policies` may hold every policy the agent knows;
 * only those that apply to the workload are consulted, in the given order (snapshot records are in
 * key order, so the deciding policy named in a reason is deterministic).
 */
export function authorize(conn: L4Connection, policies: readonly AuthorizationPolicy[], workload: AuthzSubject, rootNamespace: string): AuthzDecision {
  const applying = policies.filter((p) => authorizationPolicyApplies(p, workload, rootNamespace));
  const facts = factsFor(conn);
  const what = describeConnection(conn, workload);

  for (const p of applying) {
    if (p.action !== 'CUSTOM') continue;
    const rule = matchingRule(p, facts);
    if (rule < 0) continue;
    const provider = p.provider ? ` (provider ${p.provider})` : '';
    return {
      allowed: false, code: 'deny_custom', policy: p.key, rule,
      reason: `denied by CUSTOM policy ${p.key} rules[${rule}]${provider}: ${what}; Ambit's L4 proxy cannot consult external authorizers, so connections a CUSTOM policy matches are refused — express the check as ALLOW/DENY policies`,
    };
  }
  for (const p of applying) {
    if (p.action !== 'DENY') continue;
    const rule = matchingRule(p, facts);
    if (rule >= 0) return { allowed: false, code: 'deny_policy', policy: p.key, rule, reason: `denied by DENY policy ${p.key} rules[${rule}]${ignoredHttpNote(p, rule)}: ${what}` };
  }
  const allows = applying.filter((p) => p.action === 'ALLOW');
  if (allows.length === 0) return { allowed: true, code: 'allow_no_policy', reason: `allowed, no ALLOW policy applies: ${what}` };
  for (const p of allows) {
    const rule = matchingRule(p, facts);
    if (rule >= 0) return { allowed: true, code: 'allow_policy', policy: p.key, rule, reason: `allowed by ALLOW policy ${p.key} rules[${rule}]: ${what}` };
  }
  return {
    allowed: false, code: 'deny_no_allow_match',
    reason: `denied, ALLOW policies apply but none matches: ${what}; policies consulted: ${nameList(allows.map((p) => p.key))}; add a rule that allows this peer and port${skippedHttpNote(allows)}`,
  };
}

/**
 * What a policy asks for that the L4 proxy cannot enforce as written, one message per problem, for
 * the agent to log when a snapshot arrives (and, if the lead wants, to report as a NACK/condition).
 * Empty when the policy is fully enforceable at L4.
 */
export function l4Limitations(p: AuthorizationPolicy): string[] {
  const out: string[] = [];
  if (p.action === 'CUSTOM') out.push(`${p.key}: CUSTOM policies cannot be consulted at L4; connections their rules match are refused`);
  compilePolicy(p).rules.forEach((r, i) => {
    if (r.httpOnly.length === 0) return;
    if (p.action === 'ALLOW') out.push(`${p.key} rules[${i}]: uses HTTP-only ${r.httpOnly.join(', ')}; the rule never allows at L4 (use a waypoint for HTTP rules)`);
    else if (p.action !== 'AUDIT') out.push(`${p.key} rules[${i}]: uses HTTP-only ${r.httpOnly.join(', ')}; enforced without them at L4, so it denies more than written`);
  });
  return out;
}
