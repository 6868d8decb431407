/**
 * Who may ask the control plane for config and certificates, and for which pod.
 *
 * Two pure decisions, each taking what the I/O shell looked up:
 * - `decideCaller`: the caller's TokenReview result and the caller's own Pod object → an agent on a
 *   node, or a denial. The node comes from that Pod object (spec.nodeName), found through the pod
 *   name and uid the API server bound into the token — never from anything the caller claims.
 * - `decideCsr`: that agent, the pod it asks for (looked up by uid) and the SANs its CSR requests →
 *   the one SPIFFE ID to issue, or a denial. The pod must exist, run on the agent's node and not
 *   have terminated; a CSR may request nothing, or exactly the pod's own identity.
 * Every denial carries a gRPC-style code and a message saying what is wrong and what to do.
 * `authenticateAgent` and `authorizeCsr` are the thin async shells over injected lookups.
 */
import { createHash } from 'node:crypto';
import { workloadSpiffeId } from '../identity/spiffe.js';

/** The `extra` keys the API server's service-account authenticator sets for pod-bound tokens. */
export const EXTRA_POD_NAME = 'authentication.kubernetes.io/pod-name';
export const EXTRA_POD_UID = 'authentication.kubernetes.io/pod-uid';

const SA_PREFIX = 'system:serviceaccount:';

/** TokenReview `status` as the API server returns it. */
export interface TokenReviewStatus {
  authenticated?: boolean;
  user?: { username?: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> };
  audiences?: string[];
  error?: string;
}

/** The fields of a Pod object these decisions read (a plain Kubernetes Pod satisfies it). */
export interface PodFacts {
  metadata: { name?: string; namespace?: string; uid?: string };
  spec?: { nodeName?: string; serviceAccountName?: string };
  status?: { phase?: string };
}

export interface ServiceAccountRef {
  namespace: string;
  name: string;
}

export interface AuthzConfig {
  /** the service account agents run as; default ambit-system/ambit-agent */
  agentServiceAccount: ServiceAccountRef;
  trustDomain: string;
}

export const DEFAULT_AGENT_SERVICE_ACCOUNT: ServiceAccountRef = { namespace: 'ambit-system', name: 'ambit-agent' };

/** An authenticated agent: its pod and the node that pod runs on. */
export interface Agent {
  namespace: string;
  podName: string;
  podUid: string;
  node: string;
}

/** gRPC status names used by denials (the transport maps them to numeric codes). */
export type DenialCode = 'UNAUTHENTICATED' | 'PERMISSION_DENIED' | 'NOT_FOUND' | 'INVALID_ARGUMENT' | 'FAILED_PRECONDITION' | 'UNAVAILABLE';

export interface Denial {
  ok: false;
  code: DenialCode;
  /** stable short reason, for metrics labels and tests */
  reason: string;
  message: string;
}

export type CallerDecision = { ok: true; agent: Agent } | Denial;

export interface CsrGrant {
  ok: true;
  identity: string;
  pod: { namespace: string; name: string; uid: string; serviceAccount: string };
}

export type CsrDecision = CsrGrant | Denial;

const deny = (code: DenialCode, reason: string, message: string): Denial => ({ ok: false, code, reason, message });

/** `system:serviceaccount:<ns>:<name>` → the service account, else undefined. */
export function serviceAccountOf(username: string | undefined): ServiceAccountRef | undefined {
  if (!username?.startsWith(SA_PREFIX)) return undefined;
  const [namespace, name, ...rest] = username.slice(SA_PREFIX.length).split(':');
  if (!namespace || !name || rest.length > 0) return undefined;
  return { namespace, name };
}

/** Decides whether the token's owner is an agent, and on which node (pure). */
export function decideCaller(review: TokenReviewStatus, callerPod: PodFacts | undefined, cfg: AuthzConfig): CallerDecision {
  if (!review.authenticated) {
    const why = review.error ? `: ${review.error}` : '';
    return deny('UNAUTHENTICATED', 'token-rejected', `the API server did not accept the bearer token${why}; send the agent's current service-account token`);
  }
  const username = review.user?.username ?? '';
  const sa = serviceAccountOf(username);
  const want = cfg.agentServiceAccount;
  if (!sa) {
    return deny('PERMISSION_DENIED', 'not-a-service-account', `caller "${username}" is not a service account; only ${want.namespace}/${want.name} may use this API`);
  }
  if (sa.namespace !== want.namespace || sa.name !== want.name) {
    return deny('PERMISSION_DENIED', 'not-the-agent', `caller is service account ${sa.namespace}/${sa.name}; only ${want.namespace}/${want.name} (the Ambit agent) may use this API`);
  }
  const podName = review.user?.extra?.[EXTRA_POD_NAME]?.[0];
  const podUid = review.user?.extra?.[EXTRA_POD_UID]?.[0];
  if (!podName || !podUid) {
    return deny('PERMISSION_DENIED', 'token-not-pod-bound', 'the token is not bound to a pod; use the projected service-account token the kubelet mounts into the agent pod, not a long-lived Secret token');
  }
  if (!callerPod) {
    return deny('PERMISSION_DENIED', 'caller-pod-gone', `the caller's pod ${sa.namespace}/${podName} does not exist (any more); a new agent pod gets a new token`);
  }
  if (callerPod.metadata.uid !== podUid) {
    return deny('PERMISSION_DENIED', 'caller-pod-replaced', `the token was issued to an earlier pod named ${sa.namespace}/${podName} (uid ${podUid}); the pod by that name now is ${callerPod.metadata.uid}`);
  }
  const podSa = callerPod.spec?.serviceAccountName || 'default';
  if (callerPod.metadata.namespace !== sa.namespace || podSa !== sa.name) {
    return deny('PERMISSION_DENIED', 'caller-pod-mismatch', `the caller's pod ${callerPod.metadata.namespace}/${podName} does not run as ${sa.namespace}/${sa.name}`);
  }
  const node = callerPod.spec?.nodeName;
  if (!node) {
    return deny('PERMISSION_DENIED', 'caller-unscheduled', `the caller's pod ${sa.namespace}/${podName} is not scheduled to a node yet`);
  }
  return { ok: true, agent: { namespace: sa.namespace, podName, podUid, node } };
}

/** What an agent asks to be signed. */
export interface CsrAsk {
  podUid: string;
  /** URI SANs the CSR requests */
  requestedUris: string[];
  /** other SANs the CSR requests, as `type:value` */
  otherSans: string[];
}

/** Decides whether `agent` may get a certificate for the pod, and for which identity (pure). */
export function decideCsr(agent: Agent, ask: CsrAsk, pod: PodFacts | undefined, cfg: AuthzConfig): CsrDecision {
  if (!ask.podUid) return deny('INVALID_ARGUMENT', 'no-pod-uid', 'pod_uid is empty; name the pod whose identity is requested by its metadata.uid');
  if (!pod) {
    return deny('NOT_FOUND', 'pod-not-found', `no pod with uid ${ask.podUid} exists; it may have been deleted, or the control plane has not seen it yet (retry shortly)`);
  }
  const { namespace = '', name = '', uid = '' } = pod.metadata;
  const where = `${namespace}/${name}`;
  const node = pod.spec?.nodeName;
  if (node !== agent.node) {
    return deny(
      'PERMISSION_DENIED',
      'pod-on-other-node',
      `pod ${where} runs on ${node ? `node ${node}` : 'no node yet'}, not on the caller's node ${agent.node}; an agent may only request identities of pods on its own node`,
    );
  }
  const phase = pod.status?.phase;
  if (phase === 'Succeeded' || phase === 'Failed') {
    return deny('FAILED_PRECONDITION', 'pod-terminated', `pod ${where} has terminated (phase ${phase}); it needs no certificate`);
  }
  const serviceAccount = pod.spec?.serviceAccountName || 'default';
  const identity = workloadSpiffeId(cfg.trustDomain, namespace, serviceAccount);
  if (ask.otherSans.length > 0) {
    return deny('INVALID_ARGUMENT', 'csr-extra-sans', `the CSR requests ${ask.otherSans.join(', ')}; workload certificates carry only the SPIFFE ID: request no SANs, or exactly ${identity}`);
  }
  if (ask.requestedUris.length > 1) {
    return deny('INVALID_ARGUMENT', 'csr-many-uris', `the CSR requests ${ask.requestedUris.length} URI SANs; an X.509-SVID carries exactly one: request ${identity} or none`);
  }
  const requested = ask.requestedUris[0];
  if (requested !== undefined && requested !== identity) {
    return deny('PERMISSION_DENIED', 'csr-wrong-identity', `the CSR requests ${requested}, but pod ${where} runs as service account ${serviceAccount}, whose identity is ${identity}`);
  }
  return { ok: true, identity, pod: { namespace, name, uid, serviceAccount } };
}

/** Where the shells look things up (TokenReview against the API server; pods from the watch cache or the API). */
export interface AuthzLookups {
  tokenReview(token: string): Promise<TokenReviewStatus>;
  getPod(namespace: string, name: string): Promise<PodFacts | undefined>;
  getPodByUid(uid: string): Promise<PodFacts | undefined>;
}

/** TokenReview + the caller's pod → `decideCaller`. Lookup failures become UNAVAILABLE (retryable). */
export async function authenticateAgent(lookups: AuthzLookups, cfg: AuthzConfig, token: string | undefined): Promise<CallerDecision> {
  if (!token) return deny('UNAUTHENTICATED', 'no-token', 'no bearer token; send "authorization: Bearer <service-account token>" metadata');
  let review: TokenReviewStatus;
  try {
    review = await lookups.tokenReview(token);
  } catch (err) {
    return deny('UNAVAILABLE', 'tokenreview-failed', `cannot verify the token right now (TokenReview failed: ${(err as Error).message}); retry`);
  }
  const sa = serviceAccountOf(review.user?.username);
  const podName = review.user?.extra?.[EXTRA_POD_NAME]?.[0];
  let callerPod: PodFacts | undefined;
  if (review.authenticated && sa && podName) {
    try {
      callerPod = await lookups.getPod(sa.namespace, podName);
    } catch (err) {
      return deny('UNAVAILABLE', 'pod-lookup-failed', `cannot look up the caller's pod right now (${(err as Error).message}); retry`);
    }
  }
  return decideCaller(review, callerPod, cfg);
}

/** The requested pod by uid → `decideCsr`. */
export async function authorizeCsr(lookups: AuthzLookups, cfg: AuthzConfig, agent: Agent, ask: CsrAsk): Promise<CsrDecision> {
  let pod: PodFacts | undefined;
  if (ask.podUid) {
    try {
      pod = await lookups.getPodByUid(ask.podUid);
    } catch (err) {
      return deny('UNAVAILABLE', 'pod-lookup-failed', `cannot look up pod ${ask.podUid} right now (${(err as Error).message}); retry`);
    }
  }
  return decideCsr(agent, ask, pod, cfg);
}

/**
 * Wraps a TokenReview function with a short cache keyed by the token's SHA-256 (the token itself is
 * not kept), so an agent asking for many certificates at node start costs one review. Failures of
 * the review call itself are not cached.
 */
export function cachedTokenReview(
  review: (token: string) => Promise<TokenReviewStatus>,
  opts: { ttlMs?: number; maxEntries?: number; now?: () => number } = {},
): (token: string) => Promise<TokenReviewStatus> {
  const ttlMs = opts.ttlMs ?? 10_000;
  const maxEntries = opts.maxEntries ?? 10_000;
  const now = opts.now ?? Date.now;
  const cache = new Map<string, { at: number; result: Promise<TokenReviewStatus> }>();
  return (token) => {
    const key = createHash('sha256').update(token).digest('base64');
    const hit = cache.get(key);
    if (hit && now() - hit.at < ttlMs) return hit.result;
    cache.delete(key);
    const result = review(token);
    cache.set(key, { at: now(), result });
    result.catch(() => cache.delete(key));
    // Map iteration is insertion order: the first key is the oldest entry.
    if (cache.size > maxEntries) cache.delete(cache.keys().next().value!);
    return result;
  };
}
