import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate as NodeX509, webcrypto } from 'node:crypto';
import { inspect } from 'node:util';
import { Writable } from 'node:stream';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import pino from 'pino';
import {
  CaMaterialError,
  CertificateAuthority,
  createKeyAndCsr,
  generateRootCa,
  inspectCsr,
  loadOrCreateCa,
  rootsInWindow,
  rotateRootCa,
  SECRET_KEYS,
  splitPem,
  type CaSecretData,
  type CaSecretStore,
} from './ca.js';
import { LOG_REDACT_PATHS, Sensitive } from './sensitive.js';

const TD = 'cluster.local';
const ID = 'spiffe://cluster.local/ns/shop/sa/web';
const HOUR = 3600_000;

async function freshCa(now = Date.now()): Promise<{ ca: CertificateAuthority; data: CaSecretData }> {
  const data = await generateRootCa({ trustDomain: TD, now });
  return { ca: await CertificateAuthority.load(data, { trustDomain: TD, now: () => now }), data };
}

async function csrKey(pem: string): Promise<x509.PublicKey> {
  const r = await inspectCsr(pem);
  assert.ok(r.ok, r.ok ? '' : r.error);
  return r.csr.publicKey;
}

test('a workload certificate is an X.509-SVID with exactly the authorised SPIFFE ID', async () => {
  const now = Date.now();
  const { ca, data } = await freshCa(now);
  // The CSR asks for a different identity: the CA must not copy it.
  const { csrPem } = await createKeyAndCsr('spiffe://cluster.local/ns/kube-system/sa/admin');
  const issued = await ca.issueWorkload({ publicKey: await csrKey(csrPem), identity: ID });
  assert.equal(issued.certChainPem.length, 1, 'a root-signed leaf needs no intermediates');
  const leaf = new NodeX509(issued.certChainPem[0]!);
  const root = new NodeX509(data[SECRET_KEYS.rootCert]!);
  assert.ok(leaf.checkIssued(root) && leaf.verify(root.publicKey));
  assert.equal(leaf.subjectAltName, `URI:${ID}`);
  assert.equal(leaf.ca, false);
  assert.equal(leaf.subject ?? '', '', 'no subject: the identity is the URI SAN alone');
  assert.deepEqual(leaf.keyUsage?.sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']); // node lists the EKU OIDs here
  const peculiar = new x509.X509Certificate(issued.certChainPem[0]!);
  const ku = peculiar.getExtension(x509.KeyUsagesExtension)!;
  assert.equal(ku.critical, true);
  assert.equal(ku.usages, x509.KeyUsageFlags.digitalSignature);
  assert.equal(peculiar.getExtension(x509.SubjectAlternativeNameExtension)!.critical, true, 'empty subject → critical SAN');
  assert.equal(peculiar.getExtension(x509.BasicConstraintsExtension)!.critical, true);
  const lifetime = issued.notAfter.getTime() - now;
  assert.equal(lifetime, 24 * HOUR, 'default TTL 24 h');
  assert.ok(issued.notBefore.getTime() < now, 'backdated for clock skew');
  assert.match(issued.serialNumber, /^[4-7][0-9a-f]{31}$/);
});

test('TTL is configurable, per CA and per request, and never outlives the CA', async () => {
  const now = Date.now();
  const data = await generateRootCa({ trustDomain: TD, now, validityMs: 10 * HOUR });
  const ca = await CertificateAuthority.load(data, { trustDomain: TD, now: () => now, workloadTtlMs: 2 * HOUR });
  const key = await csrKey((await createKeyAndCsr()).csrPem);
  assert.equal((await ca.issueWorkload({ publicKey: key, identity: ID })).notAfter.getTime() - now, 2 * HOUR);
  assert.equal((await ca.issueWorkload({ publicKey: key, identity: ID, ttlMs: HOUR })).notAfter.getTime() - now, HOUR);
  const capped = await ca.issueWorkload({ publicKey: key, identity: ID, ttlMs: 100 * HOUR });
  assert.equal(capped.notAfter.getTime(), ca.caNotAfter.getTime());
});

test('issueWorkload refuses identities outside the trust domain or malformed', async () => {
  const { ca } = await freshCa();
  const key = await csrKey((await createKeyAndCsr()).csrPem);
  await assert.rejects(ca.issueWorkload({ publicKey: key, identity: 'spiffe://other.td/ns/a/sa/b' }), /not in this CA's trust domain/);
  await assert.rejects(ca.issueWorkload({ publicKey: key, identity: 'spiffe://cluster.local/ns//sa/b' }), /empty segment/);
});

test('inspectCsr: table of bad CSRs', async () => {
  const good = await createKeyAndCsr(ID);
  const p384 = await csrFor({ name: 'ECDSA', namedCurve: 'P-384' }, { name: 'ECDSA', hash: 'SHA-384' });
  const rsa = await csrFor({ name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }, { name: 'RSASSA-PKCS1-v1_5' });
  const tampered = tamperSignature(good.csrPem);
  const table: { name: string; pem: string; error?: RegExp }[] = [
    { name: 'good', pem: good.csrPem },
    { name: 'empty', pem: '', error: /not a PEM "CERTIFICATE REQUEST"/ },
    { name: 'a certificate', pem: (await generateRootCa({ trustDomain: TD }))[SECRET_KEYS.caCert]!, error: /not a PEM "CERTIFICATE REQUEST"/ },
    { name: 'garbage body', pem: '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', error: /cannot be parsed as PKCS#10/ },
    { name: 'huge', pem: 'x'.repeat(9000), error: /larger than 8192 bytes/ },
    { name: 'P-384 key', pem: p384, error: /ECDSA P-384; Ambit issues only for ECDSA P-256/ },
    { name: 'RSA key', pem: rsa, error: /RSASSA-PKCS1-v1_5; Ambit issues only for ECDSA P-256/ },
    { name: 'bad signature', pem: tampered, error: /signature does not verify/ },
  ];
  for (const row of table) {
    const r = await inspectCsr(row.pem);
    if (!row.error) {
      assert.ok(r.ok, row.name);
      assert.deepEqual(r.csr.requestedUris, [ID]);
      assert.deepEqual(r.csr.otherSans, []);
    } else {
      assert.equal(r.ok, false, row.name);
      if (!r.ok) assert.match(r.error, row.error, row.name);
    }
  }
});

test('inspectCsr reports other SAN types for authorisation to refuse', async () => {
  const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: ID }, { type: 'dns', value: 'evil.example' }])],
  });
  const r = await inspectCsr(csr.toString('pem'));
  assert.ok(r.ok);
  assert.deepEqual(r.csr.requestedUris, [ID]);
  assert.deepEqual(r.csr.otherSans, ['dns:evil.example']);
});

test('load reports every problem of bad material at once', async () => {
  const a = await generateRootCa({ trustDomain: TD });
  const b = await generateRootCa({ trustDomain: TD });
  const cases: { name: string; data: CaSecretData; problems: RegExp[] }[] = [
    { name: 'empty', data: {}, problems: [/ca-cert.pem is missing/, /ca-key.pem is missing/, /root-cert.pem is missing/] },
    { name: 'key of another CA', data: { ...a, [SECRET_KEYS.caKey]: b[SECRET_KEYS.caKey]! }, problems: [/is not the key of ca-cert.pem/] },
    { name: 'unrelated root', data: { ...a, [SECRET_KEYS.rootCert]: b[SECRET_KEYS.rootCert]! }, problems: [/no certificate in root-cert.pem issued/] },
    { name: 'unreadable key', data: { ...a, [SECRET_KEYS.caKey]: '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n' }, problems: [/not a readable private key/] },
    { name: 'bad previous roots', data: { ...a, [SECRET_KEYS.previousRoots]: '{"x":1}' }, problems: [/previous-roots.json is not valid/] },
  ];
  for (const c of cases) {
    await assert.rejects(CertificateAuthority.load(c.data, { trustDomain: TD }), (err: unknown) => {
      assert.ok(err instanceof CaMaterialError, c.name);
      for (const p of c.problems) assert.ok(err.problems.some((m) => p.test(m)), `${c.name}: ${p} in ${err.problems.join(' | ')}`);
      assert.doesNotMatch(err.message, /BEGIN PRIVATE KEY|MIG/, 'no key material in errors');
      return true;
    });
  }
  // Expired: load "in the future".
  await assert.rejects(CertificateAuthority.load(a, { trustDomain: TD, now: () => Date.now() + 11 * 365 * 24 * HOUR }), /expired on/);
  await assert.rejects(CertificateAuthority.load(a, { trustDomain: 'Bad TD' }), /lowercase/);
});

test('a user-provided intermediate signs; leaves carry the intermediate and validate to the root', async () => {
  const { rootPem, intermediate } = await rootAndIntermediate();
  const ca = await CertificateAuthority.load(intermediate, { trustDomain: TD });
  const issued = await ca.issueWorkload({ publicKey: await csrKey((await createKeyAndCsr()).csrPem), identity: ID });
  assert.equal(issued.certChainPem.length, 2);
  const [leaf, inter] = issued.certChainPem.map((p) => new NodeX509(p));
  const root = new NodeX509(rootPem);
  assert.ok(leaf!.verify(inter!.publicKey) && leaf!.checkIssued(inter!));
  assert.ok(inter!.verify(root.publicKey));
  assert.deepEqual(ca.trustBundle().roots, [root.toString()]);
  // Without the chain up to the root the material is refused, saying what to add.
  await assert.rejects(CertificateAuthority.load({ ...intermediate, [SECRET_KEYS.rootCert]: (await generateRootCa({ trustDomain: TD }))[SECRET_KEYS.rootCert]! }, { trustDomain: TD }), /no certificate in root-cert.pem issued/);
});

test('root rotation keeps old and new roots trusted for the window, then drops the old one', async () => {
  const t0 = Date.now();
  const old = await generateRootCa({ trustDomain: TD, now: t0 - HOUR });
  const oldCa = await CertificateAuthority.load(old, { trustDomain: TD });
  const oldLeaf = await oldCa.issueWorkload({ publicKey: await csrKey((await createKeyAndCsr()).csrPem), identity: ID });
  const rotated = await rotateRootCa(old, { trustDomain: TD, now: t0 });
  let clock = t0;
  const ca = await CertificateAuthority.load(rotated, { trustDomain: TD, now: () => clock });
  const bundle = ca.trustBundle();
  assert.equal(bundle.roots.length, 2);
  assert.equal(bundle.roots[0], splitPem(old[SECRET_KEYS.rootCert]!)[0], 'older root first');
  // A certificate from before the rotation still validates against the bundle.
  const leaf = new NodeX509(oldLeaf.certChainPem[0]!);
  assert.ok(bundle.roots.some((r) => leaf.verify(new NodeX509(r).publicKey)));
  // New certificates come from the new root.
  const fresh = new NodeX509((await ca.issueWorkload({ publicKey: await csrKey((await createKeyAndCsr()).csrPem), identity: ID })).certChainPem[0]!);
  assert.ok(fresh.verify(new NodeX509(bundle.roots[1]!).publicKey));
  clock = t0 + ca.rotationWindowMs + 1;
  assert.deepEqual(ca.trustBundle().roots, [bundle.roots[1]]);
  // A second rotation keeps both earlier roots retired.
  const twice = await rotateRootCa(rotated, { trustDomain: TD, now: t0 + 1000 });
  assert.equal(JSON.parse(twice[SECRET_KEYS.previousRoots]!).length, 2);
});

test('rootsInWindow', () => {
  const r = (t: number) => ({ pem: String(t), retiredAt: new Date(t).toISOString() });
  assert.deepEqual(rootsInWindow([r(0), r(1000), r(5000)], 2000, 2999).map((x) => x.pem), ['1000', '5000']);
});

test('loadOrCreateCa: first start generates and stores; a racing replica adopts the stored root', async () => {
  const stored: { data?: CaSecretData } = {};
  const store: CaSecretStore = {
    read: async () => stored.data,
    create: async (data) => {
      if (stored.data) return false;
      stored.data = data;
      return true;
    },
  };
  // Each replica reads "absent" once (both start before either has created the Secret).
  const replica = (): CaSecretStore => {
    let firstRead = true;
    return { read: async () => (firstRead ? ((firstRead = false), undefined) : stored.data), create: store.create };
  };
  const first = await loadOrCreateCa({ own: replica() }, { trustDomain: TD });
  const second = await loadOrCreateCa({ own: replica() }, { trustDomain: TD });
  assert.equal(first.caCertPem, second.caCertPem);
  assert.equal(stored.data?.[SECRET_KEYS.caCert], first.caCertPem);
  // A plugged-in CA wins over the own one.
  const { intermediate } = await rootAndIntermediate();
  const plugged = await loadOrCreateCa({ own: store, plugged: { read: async () => intermediate, create: async () => false } }, { trustDomain: TD });
  assert.equal(plugged.caCertPem, intermediate[SECRET_KEYS.caCert]);
});

test('private keys never show in JSON, inspect, template strings or pino logs', async () => {
  const { ca } = await freshCa();
  const serving = await ca.issueServing({ dnsNames: ['ambit-control.ambit-system.svc'], ips: ['127.0.0.1'], ttlMs: HOUR });
  assert.match(serving.keyPem.reveal(), /BEGIN PRIVATE KEY/);
  for (const shown of [JSON.stringify(serving), inspect(serving, { depth: 5 }), `${serving.keyPem}`, inspect(ca, { depth: 5, showHidden: true })]) {
    assert.doesNotMatch(shown, /PRIVATE KEY/);
  }
  const lines: string[] = [];
  const sink = new Writable({ write: (chunk, _enc, cb) => (lines.push(String(chunk)), cb()) });
  const log = pino({ redact: [...LOG_REDACT_PATHS] }, sink);
  log.info({ keyPem: 'K1', req: { token: 'T1', authorization: 'Bearer T2' }, data: { 'ca-key.pem': 'K2' }, wrapped: new Sensitive('K3') }, 'hello');
  await new Promise((r) => setImmediate(r));
  assert.doesNotMatch(lines.join(''), /K1|K2|K3|T1|T2/);
});

test('serving certificate: DNS and IP SANs, serverAuth, chain to the root', async () => {
  const { ca, data } = await freshCa();
  const s = await ca.issueServing({ dnsNames: ['ambit-control.ambit-system.svc'], ips: ['127.0.0.1'], ttlMs: HOUR });
  const cert = new NodeX509(s.certChainPem[0]!);
  assert.equal(cert.subjectAltName, 'DNS:ambit-control.ambit-system.svc, IP Address:127.0.0.1');
  assert.ok(cert.verify(new NodeX509(data[SECRET_KEYS.rootCert]!).publicKey));
  assert.ok(cert.checkHost('ambit-control.ambit-system.svc'));
});

// ---------------------------------------------------------------------------------------------

async function csrFor(genAlg: webcrypto.EcKeyGenParams | webcrypto.RsaHashedKeyGenParams, signAlg: webcrypto.Algorithm | webcrypto.EcdsaParams): Promise<string> {
  const keys = (await webcrypto.subtle.generateKey(genAlg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: signAlg, name: 'CN=x' });
  return csr.toString('pem');
}

/** Flips a byte of the signature (the DER's last bytes) so the CSR still parses but no longer verifies. */
function tamperSignature(pem: string): string {
  const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  der[der.length - 2] ^= 0x01;
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${b64}\n-----END CERTIFICATE REQUEST-----\n`;
}

async function rootAndIntermediate(): Promise<{ rootPem: string; intermediate: CaSecretData }> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const rootKeys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=corp root',
    keys: rootKeys,
    signingAlgorithm: alg,
    notBefore: new Date(Date.now() - HOUR),
    notAfter: new Date(Date.now() + 1000 * HOUR),
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
  });
  const interKeys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const inter = await x509.X509CertificateGenerator.create({
    subject: 'CN=ambit intermediate',
    issuer: root.subject,
    publicKey: interKeys.publicKey,
    signingKey: rootKeys.privateKey,
    signingAlgorithm: alg,
    notBefore: new Date(Date.now() - HOUR),
    notAfter: new Date(Date.now() + 500 * HOUR),
    extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', interKeys.privateKey)).toString('base64');
  const rootPem = root.toString('pem');
  return {
    rootPem,
    intermediate: {
      [SECRET_KEYS.caCert]: inter.toString('pem'),
      [SECRET_KEYS.caKey]: `-----BEGIN PRIVATE KEY-----\n${pkcs8}\n-----END PRIVATE KEY-----\n`,
      [SECRET_KEYS.certChain]: inter.toString('pem') + '\n' + rootPem,
      [SECRET_KEYS.rootCert]: rootPem,
    },
  };
}
