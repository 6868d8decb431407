/**
 * Service-account tokens of the Kubernetes API test server: issuing bound tokens (TokenRequest), verifying
 * them, turning them into the user the rest of the server authorises, and the TokenReview status.
 *
 * Tokens are the JWTs kube-apiserver issues: signed with the server's key (ES256 for a P-256 key, RS256 for
 * an RSA key), `kid` derived from the public key, the registered claims plus the private `kubernetes.io`
 * claim. Failure reasons are the real authenticator's error texts, so a TokenReview or a log line reads
 * the same as on a real cluster. Everything here is pure apart from key generation and the jti.
 */
import {
  createHash,
  generateKeyPairSync,
  randomUUID,
  sign as cryptoSign,
  verify as cryptoVerify,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
import type { FieldError } from '../types.js';

export const DEFAULT_ISSUER = 'https://kubernetes.default.svc.cluster.local';

/** Names of the well-known users and groups of kube-apiserver. */
export const SYSTEM_MASTERS = 'system:masters';
export const ALL_AUTHENTICATED = 'system:authenticated';
export const ALL_UNAUTHENTICATED = 'system:unauthenticated';
export const ANONYMOUS_USER = 'system:anonymous';
export const ALL_SERVICE_ACCOUNTS = 'system:serviceaccounts';

/** The `extra` keys the service-account authenticator sets (k8s.io/apiserver authentication/serviceaccount). */
export const EXTRA_POD_NAME = 'authentication.kubernetes.io/pod-name';
export const EXTRA_POD_UID = 'authentication.kubernetes.io/pod-uid';
export const EXTRA_NODE_NAME = 'authentication.kubernetes.io/node-name';
export const EXTRA_NODE_UID = 'authentication.kubernetes.io/node-uid';
export const EXTRA_CREDENTIAL_ID = 'authentication.kubernetes.io/credential-id';

/**
 * The reason for a token no authenticator recognises (not a JWT, another issuer). The request
 * authenticator reports it alone, or in front of the reason of the authenticator that did recognise it.
 */
export const INVALID_BEARER_TOKEN = 'invalid bearer token';

/** Wire form of authentication.k8s.io/v1 UserInfo (also what authorisation sees). */
export interface UserInfo {
  username: string;
  uid?: string;
  groups: string[];
  extra?: Record<string, string[]>;
}

export interface ObjectRef {
  name: string;
  uid?: string;
}

/** The private `kubernetes.io` claim. */
export interface KubernetesClaim {
  namespace: string;
  serviceaccount: ObjectRef;
  pod?: ObjectRef;
  secret?: ObjectRef;
  node?: ObjectRef;
  /** set on kubelet tokens whose expiry the server extended: when the kubelet should have refreshed */
  warnafter?: number;
}

export interface ServiceAccountClaims {
  iss: string;
  sub: string;
  aud: string[];
  exp: number;
  iat: number;
  nbf: number;
  jti?: string;
  'kubernetes.io': KubernetesClaim;
}

export interface TokenRequestInput {
  namespace: string;
  serviceAccountName: string;
  serviceAccountUid: string;
  audiences: string[];
  expirationSeconds: number;
  /** spec.boundObjectRef of the TokenRequest, already resolved to the object's uid */
  boundObject?: { kind: 'Pod' | 'Secret' | 'Node'; name: string; uid: string };
  /** for a pod-bound token: the pod's node (uid left out when the Node object was not found) */
  node?: ObjectRef;
  /** adds `warnafter` = now + this many seconds (the server's extended-expiry kubelet tokens) */
  warnAfterSeconds?: number;
}

export interface IssuedToken {
  token: string;
  /** RFC 3339, seconds precision: status.expirationTimestamp of the TokenRequest */
  expirationTimestamp: string;
}

/** An object a token refers to, as the authenticator sees it now. */
export interface LiveObject {
  uid: string;
  deletionTimestamp?: string;
}

/** How the authenticator looks up the objects a token is bound to. Absent lookup = not found. */
export interface ServiceAccountTokenLookups {
  serviceAccount(namespace: string, name: string): LiveObject | undefined;
  pod?(namespace: string, name: string): (LiveObject & { nodeName?: string }) | undefined;
  secret?(namespace: string, name: string): LiveObject | undefined;
  node?(name: string): LiveObject | undefined;
}

export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/** A JWK as served by /openid/v1/jwks. */
export type PublicJwk = JsonWebKey & { use: 'sig'; kid: string; alg: string };

/** go-jose's claim-time leeway, which kube-apiserver uses unchanged. */
const LEEWAY_SECONDS = 60;
/** go-jose's error for a signature that does not verify, as kube-apiserver passes it on. */
const BAD_SIGNATURE = 'go-jose/go-jose: error in cryptographic primitive';

export class TokenIssuer {
  readonly alg: 'ES256' | 'RS256';
  readonly kid: string;

  /**
   * @param apiAudiences the server's --api-audiences: what a token without `aud`, and a TokenReview
   *   without spec.audiences, is checked against. kube-apiserver defaults it to the issuer.
   */
  constructor(
    private readonly keys: KeyPair,
    readonly issuer: string = DEFAULT_ISSUER,
    readonly apiAudiences: string[] = [issuer],
  ) {
    this.alg = algorithmFor(keys.publicKey);
    this.kid = keyIdOf(keys.publicKey);
  }

  /** A fresh P-256 key pair, for servers that do not load one. */
  static generate(issuer: string = DEFAULT_ISSUER, apiAudiences?: string[]): TokenIssuer {
    return new TokenIssuer(generateKeyPairSync('ec', { namedCurve: 'P-256' }), issuer, apiAudiences);
  }

  issue(input: TokenRequestInput, now: Date, jti: string = randomUUID()): IssuedToken {
    const claims = buildClaims(this.issuer, input, Math.floor(now.getTime() / 1000), jti);
    return { token: this.sign(claims), expirationTimestamp: rfc3339Seconds(claims.exp) };
  }

  /**
   * Checks issuer, signature, audience and times, in the real authenticator's order. Returns the claims,
   * or the reason the token is rejected (INVALID_BEARER_TOKEN when it is not one of this issuer's).
   * @param audiences the audiences the caller accepts; the server's apiAudiences when not given.
   */
  verify(token: string, now: Date, audiences?: string[]): ServiceAccountClaims | string {
    const parts = token.split('.');
    if (parts.length !== 3) return INVALID_BEARER_TOKEN;
    const [headerPart, payloadPart, signaturePart] = parts as [string, string, string];
    const payload = decodeJson(payloadPart);
    // Tokens of another issuer are left to other authenticators, so they are "not recognised", not bad.
    if (!isObject(payload) || payload['iss'] !== this.issuer) return INVALID_BEARER_TOKEN;
    const header = decodeJson(headerPart);
    if (!isObject(header) || header['alg'] !== this.alg) return BAD_SIGNATURE;
    if (!this.signatureValid(`${headerPart}.${payloadPart}`, signaturePart)) return BAD_SIGNATURE;
    const claims = payload as unknown as ServiceAccountClaims;
    const audienceProblem = checkAudiences(claims, audiences ?? this.apiAudiences, this.apiAudiences);
    if (audienceProblem) return audienceProblem;
    const timeProblem = checkTimes(claims, Math.floor(now.getTime() / 1000));
    if (timeProblem) return timeProblem;
    return claims;
  }

  /** The JWKS document of /openid/v1/jwks. */
  publicJwks(): { keys: PublicJwk[] } {
    const jwk = this.keys.publicKey.export({ format: 'jwk' });
    return { keys: [{ use: 'sig', kty: jwk.kty, kid: this.kid, alg: this.alg, ...withoutKty(jwk) }] };
  }

  /** The document of /.well-known/openid-configuration. */
  openIdConfiguration(jwksUri: string): Record<string, unknown> {
    return {
      issuer: this.issuer,
      jwks_uri: jwksUri,
      response_types_supported: ['id_token'],
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: [this.alg],
    };
  }

  private sign(claims: ServiceAccountClaims): string {
    const signingInput = `${base64url(canonicalJson({ alg: this.alg, kid: this.kid }))}.${base64url(canonicalJson(claims))}`;
    const signature = cryptoSign('sha256', Buffer.from(signingInput), this.signingKey());
    return `${signingInput}.${signature.toString('base64url')}`;
  }

  private signatureValid(signingInput: string, signature: string): boolean {
    try {
      const key = this.alg === 'ES256' ? { key: this.keys.publicKey, dsaEncoding: 'ieee-p1363' as const } : this.keys.publicKey;
      return cryptoVerify('sha256', Buffer.from(signingInput), key, Buffer.from(signature, 'base64url'));
    } catch {
      return false;
    }
  }

  private signingKey(): KeyObject | { key: KeyObject; dsaEncoding: 'ieee-p1363' } {
    // JWS wants the raw r||s form of an ECDSA signature, not the DER node:crypto gives by default.
    return this.alg === 'ES256' ? { key: this.keys.privateKey, dsaEncoding: 'ieee-p1363' } : this.keys.privateKey;
  }
}

/** The claims kube-apiserver's TokenRequest puts in a token (pkg/serviceaccount Claims). */
export function buildClaims(issuer: string, input: TokenRequestInput, nowSeconds: number, jti: string): ServiceAccountClaims {
  const k8s: KubernetesClaim = {
    namespace: input.namespace,
    serviceaccount: { name: input.serviceAccountName, uid: input.serviceAccountUid },
  };
  const bound = input.boundObject;
  if (bound?.kind === 'Pod') {
    k8s.pod = { name: bound.name, uid: bound.uid };
    if (input.node) k8s.node = refWithoutEmptyUid(input.node);
  } else if (bound?.kind === 'Secret') {
    k8s.secret = { name: bound.name, uid: bound.uid };
  } else if (bound?.kind === 'Node') {
    k8s.node = { name: bound.name, uid: bound.uid };
  }
  if (input.warnAfterSeconds) k8s.warnafter = nowSeconds + input.warnAfterSeconds;
  return {
    iss: issuer,
    sub: serviceAccountUsername(input.namespace, input.serviceAccountName),
    aud: [...input.audiences],
    exp: nowSeconds + input.expirationSeconds,
    iat: nowSeconds,
    nbf: nowSeconds,
    jti,
    'kubernetes.io': k8s,
  };
}

/** Kubelets ask for this lifetime; the server then extends it (see tokenLifetime). */
export const WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS = 3607;
/** The extended lifetime: one year. */
export const EXPIRATION_EXTENSION_SECONDS = 365 * 24 * 3600;

/**
 * The lifetime TokenRequest gives a token (--service-account-extend-token-expiration, on by default):
 * a pod-bound token for the API server's audiences asked for with the kubelet's 3607 s lives a year,
 * and carries `warnafter` at the requested lifetime so stale use can be spotted.
 */
export function tokenLifetime(
  requestedSeconds: number,
  podBound: boolean,
  forApiAudiences: boolean,
): { expirationSeconds: number; warnAfterSeconds?: number } {
  if (podBound && forApiAudiences && requestedSeconds === WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS) {
    return { expirationSeconds: EXPIRATION_EXTENSION_SECONDS, warnAfterSeconds: requestedSeconds };
  }
  return { expirationSeconds: requestedSeconds };
}

/** TokenRequest validation of spec.expirationSeconds (after defaulting to 3600). */
export function validateTokenRequestExpiration(expirationSeconds: number): FieldError[] {
  const field = 'spec.expirationSeconds';
  if (expirationSeconds < 600) {
    return [{ reason: 'FieldValueInvalid', field, message: `Invalid value: ${expirationSeconds}: may not specify a duration less than 10 minutes` }];
  }
  if (expirationSeconds > 2 ** 32) {
    return [{ reason: 'FieldValueInvalid', field, message: `Invalid value: ${expirationSeconds}: may not specify a duration larger than 2^32 seconds` }];
  }
  return [];
}

export function serviceAccountUsername(namespace: string, name: string): string {
  return `system:serviceaccount:${namespace}:${name}`;
}

/** `system:serviceaccount:ns:name` → {namespace, name}; undefined for any other username. */
export function splitServiceAccountUsername(username: string): { namespace: string; name: string } | undefined {
  const prefix = 'system:serviceaccount:';
  if (!username.startsWith(prefix)) return undefined;
  const parts = username.slice(prefix.length).split(':');
  if (parts.length !== 2 || !parts[0] || !parts[1]) return undefined;
  return { namespace: parts[0], name: parts[1] };
}

/** The user a service account authenticates as (before any pod/node/credential extras). */
export function serviceAccountUser(namespace: string, name: string, uid?: string): UserInfo {
  const user: UserInfo = {
    username: serviceAccountUsername(namespace, name),
    groups: [ALL_SERVICE_ACCOUNTS, `system:serviceaccounts:${namespace}`, ALL_AUTHENTICATED],
  };
  if (uid) user.uid = uid;
  return user;
}

/**
 * The second half of authentication: the objects the token names must still exist with the same uid
 * (and not be deleted for longer than the leeway). Returns the user, or the real validator's reason.
 */
export function authenticateServiceAccountToken(
  claims: ServiceAccountClaims,
  lookups: ServiceAccountTokenLookups,
  now: Date = new Date(),
): UserInfo | string {
  const k8s = claims['kubernetes.io'];
  if (!isObject(k8s) || !isObject(k8s.serviceaccount)) {
    return 'service account token claims could not be validated due to unexpected private claim';
  }
  const ns = k8s.namespace;
  const saRef = k8s.serviceaccount;
  const deletedBefore = now.getTime() - LEEWAY_SECONDS * 1000;

  const sa = lookups.serviceAccount(ns, saRef.name);
  if (!sa) return `serviceaccounts "${saRef.name}" not found`;
  if (sa.uid !== (saRef.uid ?? '')) return `service account UID (${sa.uid}) does not match claim (${saRef.uid ?? ''})`;
  if (deletedLongAgo(sa, deletedBefore)) return `service account ${ns}/${saRef.name} has been deleted`;

  const invalidated = 'service account token has been invalidated';
  if (k8s.secret) {
    const secret = lookups.secret?.(ns, k8s.secret.name);
    if (!secret) return invalidated;
    if (secret.uid !== (k8s.secret.uid ?? '')) {
      return `secret UID (${secret.uid}) does not match service account secret ref claim (${k8s.secret.uid ?? ''})`;
    }
    if (deletedLongAgo(secret, deletedBefore)) return invalidated;
  }
  if (k8s.pod) {
    const pod = lookups.pod?.(ns, k8s.pod.name);
    if (!pod) return invalidated;
    if (pod.uid !== (k8s.pod.uid ?? '')) {
      return `pod UID (${pod.uid}) does not match service account pod ref claim (${k8s.pod.uid ?? ''})`;
    }
    if (deletedLongAgo(pod, deletedBefore)) return invalidated;
  } else if (k8s.node) {
    // Only a token bound to the Node itself is checked against it; a pod-bound token's node claim is
    // informational (the pod check already covers it).
    const node = lookups.node?.(k8s.node.name);
    if (!node) return invalidated;
    if (node.uid !== (k8s.node.uid ?? '')) {
      return `node UID (${node.uid}) does not match service account node ref claim (${k8s.node.uid ?? ''})`;
    }
    if (deletedLongAgo(node, deletedBefore)) return invalidated;
  }
  return userFromClaims(claims);
}

function userFromClaims(claims: ServiceAccountClaims): UserInfo {
  const k8s = claims['kubernetes.io'];
  const user = serviceAccountUser(k8s.namespace, k8s.serviceaccount.name, k8s.serviceaccount.uid);
  const extra: Record<string, string[]> = {};
  if (claims.jti) extra[EXTRA_CREDENTIAL_ID] = [`JTI=${claims.jti}`];
  if (k8s.node?.name) {
    extra[EXTRA_NODE_NAME] = [k8s.node.name];
    if (k8s.node.uid) extra[EXTRA_NODE_UID] = [k8s.node.uid];
  }
  if (k8s.pod?.name && k8s.pod.uid) {
    extra[EXTRA_POD_NAME] = [k8s.pod.name];
    extra[EXTRA_POD_UID] = [k8s.pod.uid];
  }
  if (Object.keys(extra).length > 0) user.extra = sortedRecord(extra);
  return user;
}

export type AuthenticationResult = { user: UserInfo; audiences: string[] } | { error: string };

/**
 * Authenticates a bearer token the way the request authenticator does: verify, then check the bound
 * objects. `error` is the text the server logs and TokenReview returns, e.g.
 * `[invalid bearer token, service account token has expired]`.
 * @param audiences the audiences the caller accepts; the issuer's apiAudiences when not given or empty.
 */
export function authenticateToken(
  issuer: TokenIssuer,
  token: string,
  lookups: ServiceAccountTokenLookups,
  now: Date,
  audiences?: string[],
): AuthenticationResult {
  const requested = audiences && audiences.length > 0 ? audiences : issuer.apiAudiences;
  const claims = issuer.verify(token, now, requested);
  if (typeof claims === 'string') return { error: authenticationError(claims) };
  const user = authenticateServiceAccountToken(claims, lookups, now);
  if (typeof user === 'string') return { error: authenticationError(user) };
  return { user, audiences: intersect(tokenAudiences(claims, issuer.apiAudiences), requested) };
}

/**
 * The request authenticator's error: its own "invalid bearer token" merged with the service-account
 * authenticator's reason (Go's flattened, de-duplicated error aggregate).
 */
export function authenticationError(reason: string): string {
  return reason === INVALID_BEARER_TOKEN ? reason : `[${INVALID_BEARER_TOKEN}, ${reason}]`;
}

export interface TokenReviewSpec {
  token?: string;
  audiences?: string[];
}

/** authentication.k8s.io/v1 TokenReviewStatus as the server serialises it (omitempty fields left out). */
export interface TokenReviewStatus {
  authenticated?: boolean;
  user: Partial<UserInfo>;
  audiences?: string[];
  error?: string;
}

/**
 * status of a TokenReview: on success {authenticated, user, audiences}; on failure {user: {}, error}
 * (`authenticated: false` and empty fields are omitted on the wire, as the real server's JSON does).
 */
export function tokenReviewStatus(
  issuer: TokenIssuer,
  spec: TokenReviewSpec,
  lookups: ServiceAccountTokenLookups,
  now: Date,
): TokenReviewStatus {
  const result = authenticateToken(issuer, spec.token ?? '', lookups, now, spec.audiences);
  if ('error' in result) return { user: {}, error: result.error };
  const status: TokenReviewStatus = { authenticated: true, user: result.user };
  if (result.audiences.length > 0) status.audiences = result.audiences;
  return status;
}

// ---- claim checks ----------------------------------------------------------------------------------

function tokenAudiences(claims: ServiceAccountClaims, apiAudiences: string[]): string[] {
  const aud = claims.aud as unknown;
  const list = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? (aud as string[]) : [];
  // Legacy tokens carry no audience and count as meant for the API server.
  return list.length > 0 ? list : apiAudiences;
}

function checkAudiences(claims: ServiceAccountClaims, requested: string[], apiAudiences: string[]): string | undefined {
  const tokenAuds = tokenAudiences(claims, apiAudiences);
  if (intersect(tokenAuds, requested).length > 0 || apiAudiences.length === 0) return undefined;
  return `token audiences ${goQuoteList(tokenAuds)} is invalid for the target audiences ${goQuoteList(requested)}`;
}

/** go-jose's checks, in its order, with its leeway; texts as kube-apiserver rewrites them. */
function checkTimes(claims: ServiceAccountClaims, now: number): string | undefined {
  if (typeof claims.nbf === 'number' && now + LEEWAY_SECONDS < claims.nbf) return 'service account token is not valid yet';
  if (typeof claims.exp === 'number' && now - LEEWAY_SECONDS > claims.exp) return 'service account token has expired';
  if (typeof claims.iat === 'number' && now + LEEWAY_SECONDS < claims.iat) return 'service account token is issued in the future';
  return undefined;
}

function deletedLongAgo(obj: LiveObject, deletedBefore: number): boolean {
  return obj.deletionTimestamp !== undefined && Date.parse(obj.deletionTimestamp) < deletedBefore;
}

// ---- encoding helpers ------------------------------------------------------------------------------

function algorithmFor(key: KeyObject): 'ES256' | 'RS256' {
  if (key.asymmetricKeyType === 'rsa') return 'RS256';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256';
  throw new Error(`unsupported service account signing key: ${key.asymmetricKeyType} (want RSA or EC P-256)`);
}

/** kube-apiserver's key id: base64url(SHA-256(DER SubjectPublicKeyInfo)). */
function keyIdOf(publicKey: KeyObject): string {
  const der = publicKey.export({ format: 'der', type: 'spki' });
  return createHash('sha256').update(der).digest('base64url');
}

function withoutKty(jwk: JsonWebKey): JsonWebKey {
  const { kty: _kty, ...rest } = jwk;
  return rest;
}

/**
 * JSON with object keys sorted at every level. go-jose builds the payload by merging the claim sets
 * into a map, so a real token's claims (and the nested kubernetes.io claim) appear in key order.
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeysDeep(value));
}

function sortKeysDeep(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeysDeep);
  if (!isObject(value)) return value;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) {
    if (value[key] !== undefined) out[key] = sortKeysDeep(value[key]);
  }
  return out;
}

function sortedRecord<T>(record: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function refWithoutEmptyUid(ref: ObjectRef): ObjectRef {
  return ref.uid ? { name: ref.name, uid: ref.uid } : { name: ref.name };
}

function base64url(text: string): string {
  return Buffer.from(text).toString('base64url');
}

function decodeJson(part: string): unknown {
  try {
    return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function intersect(a: string[], b: string[]): string[] {
  return a.filter((x) => b.includes(x));
}

/** Go's %q of a []string: `["a" "b"]`. */
export function goQuoteList(items: string[]): string {
  return `[${items.map((s) => JSON.stringify(s)).join(' ')}]`;
}

function rfc3339Seconds(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
