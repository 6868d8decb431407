import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import {
  authenticateServiceAccountToken,
  authenticateToken,
  DEFAULT_ISSUER,
  goQuoteList,
  INVALID_BEARER_TOKEN,
  splitServiceAccountUsername,
  TokenIssuer,
  tokenLifetime,
  tokenReviewStatus,
  validateTokenRequestExpiration,
  type LiveObject,
  type ServiceAccountClaims,
  type ServiceAccountTokenLookups,
  type TokenRequestInput,
} from './tokens.js';

const NOW = new Date('2025-03-01T12:00:00Z');
const NOW_S = NOW.getTime() / 1000;
const issuer = TokenIssuer.generate();

const podBound: TokenRequestInput = {
  namespace: 'shop',
  serviceAccountName: 'web',
  serviceAccountUid: 'sa-uid-1',
  audiences: [DEFAULT_ISSUER],
  expirationSeconds: 3600,
  boundObject: { kind: 'Pod', name: 'web-0', uid: 'pod-uid-1' },
  node: { name: 'node-a', uid: 'node-uid-a' },
};

/** A world where the SA, the pod, a secret and a node exist; `change` edits it. */
function lookups(change: { sa?: LiveObject | null; pod?: LiveObject | null; secret?: LiveObject | null; node?: LiveObject | null } = {}): ServiceAccountTokenLookups {
  const pick = (v: LiveObject | null | undefined, d: LiveObject) => (v === null ? undefined : (v ?? d));
  return {
    serviceAccount: (ns, name) => (ns === 'shop' && name === 'web' ? pick(change.sa, { uid: 'sa-uid-1' }) : undefined),
    pod: (ns, name) => (ns === 'shop' && name === 'web-0' ? pick(change.pod, { uid: 'pod-uid-1' }) : undefined),
    secret: (ns, name) => (ns === 'shop' && name === 'tok' ? pick(change.secret, { uid: 'secret-uid-1' }) : undefined),
    node: (name) => (name === 'node-a' ? pick(change.node, { uid: 'node-uid-a' }) : undefined),
  };
}

function decode(part: string): any {
  return JSON.parse(Buffer.from(part, 'base64url').toString());
}

test('issue: header, real claims, sorted keys, expirationTimestamp', () => {
  const { token, expirationTimestamp } = issuer.issue(podBound, NOW, 'jti-1');
  const [h, p] = token.split('.');
  assert.deepEqual(decode(h!), { alg: 'ES256', kid: issuer.kid });
  const claims = decode(p!);
  assert.deepEqual(claims, {
    aud: [DEFAULT_ISSUER],
    exp: NOW_S + 3600,
    iat: NOW_S,
    iss: DEFAULT_ISSUER,
    jti: 'jti-1',
    'kubernetes.io': {
      namespace: 'shop',
      node: { name: 'node-a', uid: 'node-uid-a' },
      pod: { name: 'web-0', uid: 'pod-uid-1' },
      serviceaccount: { name: 'web', uid: 'sa-uid-1' },
    },
    nbf: NOW_S,
    sub: 'system:serviceaccount:shop:web',
  });
  // go-jose merges claims into a map, so keys come out sorted at every level
  assert.deepEqual(Object.keys(claims), [...Object.keys(claims)].sort());
  assert.deepEqual(Object.keys(claims['kubernetes.io']), ['namespace', 'node', 'pod', 'serviceaccount']);
  assert.equal(expirationTimestamp, '2025-03-01T13:00:00Z');
});

test('issue: secret-bound, node-bound, warnafter, random jti', () => {
  const secret = decode(issuer.issue({ ...podBound, boundObject: { kind: 'Secret', name: 'tok', uid: 's1' } }, NOW).token.split('.')[1]!);
  assert.deepEqual(secret['kubernetes.io'].secret, { name: 'tok', uid: 's1' });
  assert.equal(secret['kubernetes.io'].pod, undefined);
  assert.equal(secret['kubernetes.io'].node, undefined, 'node info is only added to pod-bound tokens');
  assert.match(secret.jti, /^[0-9a-f-]{36}$/);

  const node = decode(issuer.issue({ ...podBound, node: undefined, boundObject: { kind: 'Node', name: 'node-a', uid: 'n1' } }, NOW).token.split('.')[1]!);
  assert.deepEqual(node['kubernetes.io'].node, { name: 'node-a', uid: 'n1' });

  const warn = decode(issuer.issue({ ...podBound, warnAfterSeconds: 3607 }, NOW).token.split('.')[1]!);
  assert.equal(warn['kubernetes.io'].warnafter, NOW_S + 3607);

  const noUid = decode(issuer.issue({ ...podBound, node: { name: 'node-a' } }, NOW).token.split('.')[1]!);
  assert.deepEqual(noUid['kubernetes.io'].node, { name: 'node-a' });
});

test('verify: round trip returns the claims', () => {
  const { token } = issuer.issue(podBound, NOW, 'jti-1');
  const claims = issuer.verify(token, NOW);
  assert.notEqual(typeof claims, 'string');
  assert.equal((claims as ServiceAccountClaims).sub, 'system:serviceaccount:shop:web');
});

test('verify: RSA keys sign RS256', () => {
  const rsa = new TokenIssuer(generateKeyPairSync('rsa', { modulusLength: 2048 }));
  const { token } = rsa.issue(podBound, NOW);
  assert.equal(decode(token.split('.')[0]!).alg, 'RS256');
  assert.notEqual(typeof rsa.verify(token, NOW), 'string');
  assert.equal(rsa.publicJwks().keys[0]!.kty, 'RSA');
});

test('verify: failures, table', () => {
  const { token } = issuer.issue(podBound, NOW, 'jti-1');
  const [h, p, s] = token.split('.') as [string, string, string];
  const other = TokenIssuer.generate();
  const otherIssuer = TokenIssuer.generate('https://elsewhere.example');
  const tamperedPayload = Buffer.from(JSON.stringify({ ...decode(p), sub: 'system:serviceaccount:kube-system:admin' })).toString('base64url');
  const cases: { name: string; token: string; now?: Date; audiences?: string[]; want: string }[] = [
    { name: 'not a JWT', token: 'abc', want: INVALID_BEARER_TOKEN },
    { name: 'another issuer', token: otherIssuer.issue(podBound, NOW).token, want: INVALID_BEARER_TOKEN },
    { name: 'tampered payload', token: `${h}.${tamperedPayload}.${s}`, want: 'go-jose/go-jose: error in cryptographic primitive' },
    { name: 'signed by another key', token: other.issue(podBound, NOW).token, want: 'go-jose/go-jose: error in cryptographic primitive' },
    { name: 'bad signature bytes', token: `${h}.${p}.AAAA`, want: 'go-jose/go-jose: error in cryptographic primitive' },
    { name: 'expired past leeway', token, now: new Date(NOW.getTime() + 3661_000), want: 'service account token has expired' },
    { name: 'not valid yet past leeway', token, now: new Date(NOW.getTime() - 61_000), want: 'service account token is not valid yet' },
    {
      name: 'wrong audience',
      token,
      audiences: ['vault', 'ambit'],
      want: 'token audiences ["https://kubernetes.default.svc.cluster.local"] is invalid for the target audiences ["vault" "ambit"]',
    },
  ];
  for (const c of cases) {
    assert.equal(issuer.verify(c.token, c.now ?? NOW, c.audiences), c.want, c.name);
  }
});

test('verify: leeway of 60s around exp and nbf is accepted', () => {
  const { token } = issuer.issue(podBound, NOW);
  assert.notEqual(typeof issuer.verify(token, new Date(NOW.getTime() + 3659_000)), 'string');
  assert.notEqual(typeof issuer.verify(token, new Date(NOW.getTime() - 59_000)), 'string');
});

test('authenticateServiceAccountToken: user with groups and extras', () => {
  const claims = issuer.verify(issuer.issue(podBound, NOW, 'jti-1').token, NOW) as ServiceAccountClaims;
  assert.deepEqual(authenticateServiceAccountToken(claims, lookups(), NOW), {
    username: 'system:serviceaccount:shop:web',
    uid: 'sa-uid-1',
    groups: ['system:serviceaccounts', 'system:serviceaccounts:shop', 'system:authenticated'],
    extra: {
      'authentication.kubernetes.io/credential-id': ['JTI=jti-1'],
      'authentication.kubernetes.io/node-name': ['node-a'],
      'authentication.kubernetes.io/node-uid': ['node-uid-a'],
      'authentication.kubernetes.io/pod-name': ['web-0'],
      'authentication.kubernetes.io/pod-uid': ['pod-uid-1'],
    },
  });
});

test('authenticateServiceAccountToken: bound objects gone or replaced, table', () => {
  const podClaims = issuer.verify(issuer.issue(podBound, NOW).token, NOW) as ServiceAccountClaims;
  const secretClaims = issuer.verify(
    issuer.issue({ ...podBound, node: undefined, boundObject: { kind: 'Secret', name: 'tok', uid: 'secret-uid-1' } }, NOW).token,
    NOW,
  ) as ServiceAccountClaims;
  const nodeClaims = issuer.verify(
    issuer.issue({ ...podBound, node: undefined, boundObject: { kind: 'Node', name: 'node-a', uid: 'node-uid-a' } }, NOW).token,
    NOW,
  ) as ServiceAccountClaims;
  const longAgo = new Date(NOW.getTime() - 120_000).toISOString();
  const justNow = new Date(NOW.getTime() - 10_000).toISOString();
  const cases: { name: string; claims: ServiceAccountClaims; world: ServiceAccountTokenLookups; want: string | 'ok' }[] = [
    { name: 'SA deleted', claims: podClaims, world: lookups({ sa: null }), want: 'serviceaccounts "web" not found' },
    { name: 'SA recreated', claims: podClaims, world: lookups({ sa: { uid: 'sa-uid-2' } }), want: 'service account UID (sa-uid-2) does not match claim (sa-uid-1)' },
    { name: 'SA terminating for long', claims: podClaims, world: lookups({ sa: { uid: 'sa-uid-1', deletionTimestamp: longAgo } }), want: 'service account shop/web has been deleted' },
    { name: 'SA terminating within leeway', claims: podClaims, world: lookups({ sa: { uid: 'sa-uid-1', deletionTimestamp: justNow } }), want: 'ok' },
    { name: 'pod deleted', claims: podClaims, world: lookups({ pod: null }), want: 'service account token has been invalidated' },
    { name: 'pod recreated', claims: podClaims, world: lookups({ pod: { uid: 'pod-uid-2' } }), want: 'pod UID (pod-uid-2) does not match service account pod ref claim (pod-uid-1)' },
    { name: 'pod terminating for long', claims: podClaims, world: lookups({ pod: { uid: 'pod-uid-1', deletionTimestamp: longAgo } }), want: 'service account token has been invalidated' },
    { name: 'pod-bound token ignores its node', claims: podClaims, world: lookups({ node: null }), want: 'ok' },
    { name: 'secret deleted', claims: secretClaims, world: lookups({ secret: null }), want: 'service account token has been invalidated' },
    { name: 'secret recreated', claims: secretClaims, world: lookups({ secret: { uid: 'x' } }), want: 'secret UID (x) does not match service account secret ref claim (secret-uid-1)' },
    { name: 'node deleted', claims: nodeClaims, world: lookups({ node: null }), want: 'service account token has been invalidated' },
    { name: 'node recreated', claims: nodeClaims, world: lookups({ node: { uid: 'y' } }), want: 'node UID (y) does not match service account node ref claim (node-uid-a)' },
  ];
  for (const c of cases) {
    const got = authenticateServiceAccountToken(c.claims, c.world, NOW);
    if (c.want === 'ok') assert.notEqual(typeof got, 'string', c.name);
    else assert.equal(got, c.want, c.name);
  }
});

test('authenticateToken: error texts as the request authenticator reports them', () => {
  const { token } = issuer.issue(podBound, NOW);
  assert.deepEqual(authenticateToken(issuer, 'garbage', lookups(), NOW), { error: 'invalid bearer token' });
  assert.deepEqual(authenticateToken(issuer, token, lookups({ pod: null }), NOW), {
    error: '[invalid bearer token, service account token has been invalidated]',
  });
  const ok = authenticateToken(issuer, token, lookups(), NOW);
  assert.ok('user' in ok);
  assert.deepEqual(ok.audiences, [DEFAULT_ISSUER]);
});

test('tokenReviewStatus: success and failure shapes', () => {
  const custom = issuer.issue({ ...podBound, audiences: ['ambit', 'vault'] }, NOW, 'j').token;
  const ok = tokenReviewStatus(issuer, { token: custom, audiences: ['vault'] }, lookups(), NOW);
  assert.equal(ok.authenticated, true);
  assert.deepEqual(ok.audiences, ['vault']);
  assert.equal(ok.user.username, 'system:serviceaccount:shop:web');
  assert.equal(ok.error, undefined);

  // no spec.audiences: checked against the API server's audiences
  assert.deepEqual(tokenReviewStatus(issuer, { token: custom }, lookups(), NOW), {
    user: {},
    error: '[invalid bearer token, token audiences ["ambit" "vault"] is invalid for the target audiences ["https://kubernetes.default.svc.cluster.local"]]',
  });
  const expired = tokenReviewStatus(issuer, { token: custom, audiences: ['ambit'] }, lookups(), new Date(NOW.getTime() + 7200_000));
  assert.deepEqual(expired, { user: {}, error: '[invalid bearer token, service account token has expired]' });
  assert.equal('authenticated' in expired, false, 'authenticated:false is omitted on the wire');
});

test('publicJwks and OIDC discovery document', () => {
  const jwks = issuer.publicJwks();
  assert.equal(jwks.keys.length, 1);
  const key = jwks.keys[0]!;
  assert.deepEqual(Object.keys(key).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
  assert.equal(key.kid, issuer.kid);
  assert.equal(key.alg, 'ES256');
  assert.equal(key.d, undefined, 'no private part');
  assert.deepEqual(issuer.openIdConfiguration('https://127.0.0.1:6443/openid/v1/jwks'), {
    issuer: DEFAULT_ISSUER,
    jwks_uri: 'https://127.0.0.1:6443/openid/v1/jwks',
    response_types_supported: ['id_token'],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: ['ES256'],
  });
});

test('helpers: username split, Go %q of a list', () => {
  assert.deepEqual(splitServiceAccountUsername('system:serviceaccount:a:b'), { namespace: 'a', name: 'b' });
  assert.equal(splitServiceAccountUsername('system:serviceaccount:a:b:c'), undefined);
  assert.equal(splitServiceAccountUsername('alice'), undefined);
  assert.equal(goQuoteList(['a', 'b"c']), '["a" "b\\"c"]');
});

test('tokenLifetime: only the kubelet 3607s pod-bound API token is extended', () => {
  assert.deepEqual(tokenLifetime(3607, true, true), { expirationSeconds: 31536000, warnAfterSeconds: 3607 });
  assert.deepEqual(tokenLifetime(3607, false, true), { expirationSeconds: 3607 });
  assert.deepEqual(tokenLifetime(3607, true, false), { expirationSeconds: 3607 });
  assert.deepEqual(tokenLifetime(3600, true, true), { expirationSeconds: 3600 });
});

test('validateTokenRequestExpiration: table', () => {
  assert.deepEqual(validateTokenRequestExpiration(600), []);
  assert.deepEqual(validateTokenRequestExpiration(599), [
    { reason: 'FieldValueInvalid', field: 'spec.expirationSeconds', message: 'Invalid value: 599: may not specify a duration less than 10 minutes' },
  ]);
  assert.equal(validateTokenRequestExpiration(2 ** 32 + 1).length, 1);
});
