/**
 * Ambit's certificate authority: the root (or a user-provided intermediate) kept in a Secret, CSR
 * checks, and issuance of workload X.509-SVIDs and the control plane's serving certificate.
 *
 * - Keys are ECDSA P-256, generated with Node's WebCrypto; certificates are built with
 *   @peculiar/x509 (no hand-made ASN.1). The CA's signing key is imported non-extractable, so once
 *   loaded it cannot leave the process, not even by mistake; issued serving keys travel as
 *   `Sensitive` values.
 * - A workload certificate follows the X.509-SVID spec: exactly one URI SAN (the SPIFFE ID the
 *   caller was authorised for — never one copied from the CSR), empty subject (so the SAN is
 *   critical, RFC 5280 4.2.1.6), cA=false, key usage digitalSignature (critical), extended key usage
 *   serverAuth + clientAuth (HBONE uses the same certificate both ways).
 * - Secret layout (the "plug-in CA" layout Istio uses, so an existing one can be reused):
 *   `ca-cert.pem` signing certificate, `ca-key.pem` its key (PKCS#8), `cert-chain.pem` the signing
 *   certificate's chain up to the root (optional for a self-signed root), `root-cert.pem` one or
 *   more trusted roots, and Ambit's `previous-roots.json` (roots retired by a rotation, with the time
 *   they were retired; they stay in the trust bundle for the rotation window).
 */
import 'reflect-metadata'; // @peculiar/x509's dependency injection (tsyringe) needs it loaded first
import * as x509 from '@peculiar/x509';
import { X509Certificate as NodeX509, createPrivateKey, createPublicKey, webcrypto } from 'node:crypto';
import { Sensitive } from './sensitive.js';
import { parseSpiffeId, trustDomainError } from './spiffe.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const ECDSA_SHA256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const HOUR = 3600_000;
const DAY = 24 * HOUR;

export const DEFAULT_WORKLOAD_TTL_MS = 24 * HOUR;
export const DEFAULT_ROOT_VALIDITY_MS = 10 * 365 * DAY;
/** Issued certificates start this far in the past, so peers with a slightly slow clock accept them. */
const BACKDATE_MS = 5 * 60_000;
/** A CSR larger than this is not a P-256 CSR; refuse it before parsing. */
export const MAX_CSR_PEM_BYTES = 8 * 1024;

/** Secret data keys (see the file header). */
export const SECRET_KEYS = {
  caCert: 'ca-cert.pem',
  caKey: 'ca-key.pem',
  certChain: 'cert-chain.pem',
  rootCert: 'root-cert.pem',
  previousRoots: 'previous-roots.json',
} as const;

/** The roots peers must trust, with the trust domain they serve. */
export interface TrustBundle {
  trustDomain: string;
  /** PEM, oldest first */
  roots: string[];
}

/** The Secret's data, decoded to strings. */
export type CaSecretData = Record<string, string>;

/** A root retired by a rotation; trusted until `retiredAt + rotationWindowMs`. */
export interface RetiredRoot {
  pem: string;
  /** ISO 8601 */
  retiredAt: string;
}

export interface CaOptions {
  trustDomain: string;
  /** lifetime of workload certificates; default 24 h */
  workloadTtlMs?: number;
  /** how long a retired root stays in the trust bundle; default 2 × workload TTL (every cert it signed has expired by then) */
  rotationWindowMs?: number;
  /** ms since epoch; injectable for tests */
  now?: () => number;
}

/** A workload certificate as issued: the leaf first, then the intermediates up to (not including) the root. */
export interface IssuedCertificate {
  identity: string;
  certChainPem: string[];
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
}

/** What `inspectCsr` found in a CSR that passed the checks. */
export interface CsrInfo {
  publicKey: x509.PublicKey;
  /** URI SANs the CSR asks for (the CA never copies them; authorisation compares them) */
  requestedUris: string[];
  /** SANs of other types (DNS, IP, email, ...) as `type:value` */
  otherSans: string[];
}

export type CsrCheck = { ok: true; csr: CsrInfo } | { ok: false; error: string };

/** An error loading CA material: every problem found, each saying what to fix. */
export class CaMaterialError extends Error {
  constructor(readonly problems: string[]) {
    super(`CA material is not usable: ${problems.join('; ')}`);
    this.name = 'CaMaterialError';
  }
}

// ---------------------------------------------------------------------------------------------
// Generation and rotation of Ambit's own root

/** A new self-signed root, as Secret data (the key inside is the one thing that may be stored). */
export async function generateRootCa(opts: { trustDomain: string; validityMs?: number; now?: number }): Promise<CaSecretData> {
  const tdError = trustDomainError(opts.trustDomain);
  if (tdError) throw new Error(tdError);
  const now = opts.now ?? Date.now();
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    // The O carries the trust domain so an operator can tell roots apart; the time makes each rotation's root distinct.
    name: `O=${opts.trustDomain}, CN=Ambit root CA ${new Date(now).toISOString()}`,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + (opts.validityMs ?? DEFAULT_ROOT_VALIDITY_MS)),
    signingAlgorithm: ECDSA_SHA256,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pem = cert.toString('pem');
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return {
    [SECRET_KEYS.caCert]: pem,
    [SECRET_KEYS.caKey]: pemBlock('PRIVATE KEY', Buffer.from(pkcs8)),
    [SECRET_KEYS.rootCert]: pem,
  };
}

/**
 * Rotates a self-generated root: a fresh root signs from now on, and the roots of `data` move to
 * `previous-roots.json` so they stay trusted for the rotation window. A user-provided CA rotates
 * by the user replacing the Secret (with the old roots kept in `root-cert.pem` as long as needed).
 */
export async function rotateRootCa(data: CaSecretData, opts: { trustDomain: string; now?: number }): Promise<CaSecretData> {
  const now = opts.now ?? Date.now();
  const next = await generateRootCa({ trustDomain: opts.trustDomain, now });
  const retiredAt = new Date(now).toISOString();
  const previous = [
    ...parseRetiredRoots(data[SECRET_KEYS.previousRoots]),
    ...splitPem(data[SECRET_KEYS.rootCert] ?? '').map((pem) => ({ pem, retiredAt })),
  ];
  return { ...next, [SECRET_KEYS.previousRoots]: JSON.stringify(previous) };
}

/** Roots still to be trusted at `now`: retired less than `windowMs` ago (pure). */
export function rootsInWindow(retired: RetiredRoot[], windowMs: number, now: number): RetiredRoot[] {
  return retired.filter((r) => Date.parse(r.retiredAt) + windowMs > now);
}

// ---------------------------------------------------------------------------------------------
// Loading from a Secret

/** Where the CA's Secrets are read and written; the Kubernetes I/O is injected. */
export interface CaSecretStore {
  /** the Secret's data decoded to strings, or undefined when the Secret does not exist */
  read(): Promise<CaSecretData | undefined>;
  /** creates the Secret; false when it already exists (another replica created it first) */
  create(data: CaSecretData): Promise<boolean>;
}

/**
 * The CA to run with: a user-provided CA (`plugged`, e.g. Istio's `cacerts` layout) when that Secret
 * exists, else Ambit's own root from `own`, generated and stored on first start. Two replicas
 * starting together both generate; the one whose create fails re-reads and uses the winner's root.
 */
export async function loadOrCreateCa(stores: { own: CaSecretStore; plugged?: CaSecretStore }, opts: CaOptions): Promise<CertificateAuthority> {
  const plugged = await stores.plugged?.read();
  if (plugged) return CertificateAuthority.load(plugged, opts);
  let data = await stores.own.read();
  if (!data) {
    const fresh = await generateRootCa({ trustDomain: opts.trustDomain, now: (opts.now ?? Date.now)() });
    data = (await stores.own.create(fresh)) ? fresh : await stores.own.read();
    if (!data) throw new Error('the CA Secret was reported to exist but cannot be read; check the control plane\'s RBAC on Secrets');
  }
  return CertificateAuthority.load(data, opts);
}

// ---------------------------------------------------------------------------------------------
// The CA

export class CertificateAuthority {
  readonly trustDomain: string;
  readonly workloadTtlMs: number;
  readonly rotationWindowMs: number;
  readonly #signingKey: CryptoKey;
  readonly #signingAlgorithm: Algorithm | EcdsaParams;
  readonly #caCert: x509.X509Certificate;
  /** intermediates between the signing certificate and the root, signing certificate first (empty for a root) */
  readonly #intermediatesPem: string[];
  readonly #rootsPem: string[];
  readonly #retiredRoots: RetiredRoot[];
  readonly #now: () => number;

  private constructor(init: {
    opts: CaOptions;
    signingKey: CryptoKey;
    signingAlgorithm: Algorithm | EcdsaParams;
    caCert: x509.X509Certificate;
    intermediatesPem: string[];
    rootsPem: string[];
    retiredRoots: RetiredRoot[];
  }) {
    this.trustDomain = init.opts.trustDomain;
    this.workloadTtlMs = init.opts.workloadTtlMs ?? DEFAULT_WORKLOAD_TTL_MS;
    this.rotationWindowMs = init.opts.rotationWindowMs ?? 2 * this.workloadTtlMs;
    this.#now = init.opts.now ?? Date.now;
    this.#signingKey = init.signingKey;
    this.#signingAlgorithm = init.signingAlgorithm;
    this.#caCert = init.caCert;
    this.#intermediatesPem = init.intermediatesPem;
    this.#rootsPem = init.rootsPem;
    this.#retiredRoots = init.retiredRoots;
  }

  /** Loads CA material (Secret data), checking everything and reporting every problem at once. */
  static async load(data: CaSecretData, opts: CaOptions): Promise<CertificateAuthority> {
    const problems: string[] = [];
    const tdError = trustDomainError(opts.trustDomain);
    if (tdError) problems.push(tdError);
    const checked = checkMaterial(data, (opts.now ?? Date.now)(), problems);
    if (!checked || problems.length > 0) throw new CaMaterialError(problems);
    const signing = await importSigningKey(data[SECRET_KEYS.caKey]!);
    return new CertificateAuthority({
      opts,
      signingKey: signing.key,
      signingAlgorithm: signing.algorithm,
      caCert: new x509.X509Certificate(checked.caPem),
      intermediatesPem: checked.intermediatesPem,
      rootsPem: checked.rootsPem,
      retiredRoots: checked.retiredRoots,
    });
  }

  /** The signing certificate (PEM). */
  get caCertPem(): string {
    return this.#caCert.toString('pem');
  }

  get caNotAfter(): Date {
    return this.#caCert.notAfter;
  }

  /** The roots peers must trust now: current roots plus retired ones still inside the rotation window. */
  trustBundle(): TrustBundle {
    const retired = rootsInWindow(this.#retiredRoots, this.rotationWindowMs, this.#now()).map((r) => r.pem);
    const roots = [...new Set([...retired, ...this.#rootsPem])];
    return { trustDomain: this.trustDomain, roots: sortByNotBefore(roots) };
  }

  /**
   * Issues a workload certificate for `identity` (already authorised) to the key of a CSR that
   * passed `inspectCsr`. The certificate never outlives the signing certificate.
   */
  async issueWorkload(req: { publicKey: x509.PublicKey; identity: string; ttlMs?: number }): Promise<IssuedCertificate> {
    const parsed = parseSpiffeId(req.identity);
    if (!parsed.ok) throw new Error(parsed.error);
    if (parsed.id.trustDomain !== this.trustDomain) {
      throw new Error(`identity ${req.identity} is not in this CA's trust domain ${this.trustDomain}`);
    }
    const extensions = [
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: req.identity }], true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth], false),
    ];
    return this.#issueLeaf({ subject: '', publicKey: req.publicKey, ttlMs: req.ttlMs ?? this.workloadTtlMs, extensions, identity: req.identity });
  }

  /**
   * A serving certificate (and a fresh key) for the control plane's own endpoints, e.g. the push
   * server: DNS and IP SANs, serverAuth.
   */
  async issueServing(req: { dnsNames: string[]; ips?: string[]; ttlMs: number; commonName?: string }): Promise<{ certChainPem: string[]; keyPem: Sensitive<string>; notAfter: Date }> {
    const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as CryptoKeyPair;
    const names = [
      ...req.dnsNames.map((value) => ({ type: 'dns' as const, value })),
      ...(req.ips ?? []).map((value) => ({ type: 'ip' as const, value })),
    ];
    const extensions = [
      new x509.SubjectAlternativeNameExtension(names, false),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
    ];
    const issued = await this.#issueLeaf({
      subject: `CN=${req.commonName ?? req.dnsNames[0] ?? 'ambit-control'}`,
      publicKey: keys.publicKey,
      ttlMs: req.ttlMs,
      extensions,
      identity: '',
    });
    const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
    return { certChainPem: issued.certChainPem, keyPem: new Sensitive(pemBlock('PRIVATE KEY', Buffer.from(pkcs8))), notAfter: issued.notAfter };
  }

  async #issueLeaf(req: { subject: string; publicKey: x509.PublicKey | CryptoKey; ttlMs: number; extensions: x509.Extension[]; identity: string }): Promise<IssuedCertificate> {
    const now = this.#now();
    const notBefore = new Date(now - BACKDATE_MS);
    const notAfter = new Date(Math.min(now + req.ttlMs, this.#caCert.notAfter.getTime()));
    const publicKey = req.publicKey instanceof x509.PublicKey ? await req.publicKey.export() : req.publicKey;
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: req.subject,
      issuer: this.#caCert.subjectName,
      notBefore,
      notAfter,
      signingAlgorithm: this.#signingAlgorithm,
      publicKey,
      signingKey: this.#signingKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        ...req.extensions,
        await x509.SubjectKeyIdentifierExtension.create(publicKey),
        await x509.AuthorityKeyIdentifierExtension.create(this.#caCert.publicKey),
      ],
    });
    return {
      identity: req.identity,
      certChainPem: [cert.toString('pem'), ...this.#intermediatesPem],
      serialNumber: cert.serialNumber,
      notBefore,
      notAfter,
    };
  }
}

// ---------------------------------------------------------------------------------------------
// CSR checks

/**
 * Parses a CSR and checks what the CA relies on: PEM of a PKCS#10 request, a valid self-signature
 * (the caller holds the key), an ECDSA P-256 key. Returns the requested SANs for authorisation to
 * compare; they are never copied into a certificate.
 */
export async function inspectCsr(pem: string): Promise<CsrCheck> {
  const fail = (error: string): CsrCheck => ({ ok: false, error });
  if (Buffer.byteLength(pem) > MAX_CSR_PEM_BYTES) return fail(`CSR is larger than ${MAX_CSR_PEM_BYTES} bytes; send one PEM CERTIFICATE REQUEST for an ECDSA P-256 key`);
  if (!/-----BEGIN (NEW )?CERTIFICATE REQUEST-----/.test(pem)) return fail('CSR is not a PEM "CERTIFICATE REQUEST" block');
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem);
  } catch (err) {
    return fail(`CSR cannot be parsed as PKCS#10: ${(err as Error).message}`);
  }
  const alg = csr.publicKey.algorithm as { name?: string; namedCurve?: string };
  if (alg.name !== 'ECDSA' || alg.namedCurve !== 'P-256') {
    return fail(`CSR key is ${alg.name ?? 'unknown'}${alg.namedCurve ? ` ${alg.namedCurve}` : ''}; Ambit issues only for ECDSA P-256 keys`);
  }
  let signatureOk = false;
  try {
    signatureOk = await csr.verify();
  } catch (err) {
    return fail(`CSR signature cannot be checked: ${(err as Error).message}`);
  }
  if (!signatureOk) return fail('CSR signature does not verify with its own public key');
  const requestedUris: string[] = [];
  const otherSans: string[] = [];
  const san = csr.extensions.find((e): e is x509.SubjectAlternativeNameExtension => e instanceof x509.SubjectAlternativeNameExtension);
  for (const name of san?.names.toJSON() ?? []) {
    if (name.type === 'url') requestedUris.push(name.value);
    else otherSans.push(`${name.type}:${name.value}`);
  }
  return { ok: true, csr: { publicKey: csr.publicKey, requestedUris, otherSans } };
}

/** A P-256 key pair and a CSR for it asking for `identity` (what an agent does for each pod). The key stays with the caller. */
export async function createKeyAndCsr(identity?: string): Promise<{ csrPem: string; keyPem: Sensitive<string> }> {
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm: ECDSA_SHA256,
    extensions: identity ? [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: identity }], true)] : [],
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { csrPem: csr.toString('pem'), keyPem: new Sensitive(pemBlock('PRIVATE KEY', Buffer.from(pkcs8))) };
}

// ---------------------------------------------------------------------------------------------
// Helpers

interface CheckedMaterial {
  caPem: string;
  intermediatesPem: string[];
  rootsPem: string[];
  retiredRoots: RetiredRoot[];
}

/** Checks Secret data; pushes each problem (with what to fix) and returns what it could read. */
function checkMaterial(data: CaSecretData, now: number, problems: string[]): CheckedMaterial | undefined {
  const caPem = data[SECRET_KEYS.caCert];
  const keyPem = data[SECRET_KEYS.caKey];
  const rootsPem = splitPem(data[SECRET_KEYS.rootCert] ?? '');
  if (!caPem) problems.push(`${SECRET_KEYS.caCert} is missing: put the signing CA certificate (PEM) there`);
  if (!keyPem) problems.push(`${SECRET_KEYS.caKey} is missing: put the signing CA's private key (PKCS#8 PEM) there`);
  if (rootsPem.length === 0) problems.push(`${SECRET_KEYS.rootCert} is missing or empty: put the trusted root certificate(s) (PEM) there`);
  if (!caPem || !keyPem || rootsPem.length === 0) return undefined;

  const ca = parseNodeCert(caPem, SECRET_KEYS.caCert, problems);
  const roots = rootsPem.map((pem) => parseNodeCert(pem, SECRET_KEYS.rootCert, problems));
  const chainPem = splitPem(data[SECRET_KEYS.certChain] ?? '');
  const chain = chainPem.map((pem) => parseNodeCert(pem, SECRET_KEYS.certChain, problems));
  if (!ca || roots.some((r) => !r) || chain.some((c) => !c)) return undefined;

  if (!ca.ca) problems.push(`${SECRET_KEYS.caCert} is not a CA certificate (basicConstraints cA is not true)`);
  if (!isKeyCertSign(ca)) {
    problems.push(`${SECRET_KEYS.caCert} key usage does not allow certificate signing (keyCertSign)`);
  }
  if (Date.parse(ca.validTo) <= now) problems.push(`${SECRET_KEYS.caCert} expired on ${ca.validTo}: replace the CA`);
  if (Date.parse(ca.validFrom) > now + BACKDATE_MS) problems.push(`${SECRET_KEYS.caCert} is not valid before ${ca.validFrom}: check the clock`);
  checkKeyMatches(keyPem, ca, problems);

  // The path ca → chain... → one of the roots must verify link by link.
  const path = [ca, ...chain.filter((c) => c!.fingerprint256 !== ca.fingerprint256)] as NodeX509[];
  const top = path[path.length - 1]!;
  const root = (roots as NodeX509[]).find((r) => r.fingerprint256 === top.fingerprint256 || (top.checkIssued(r) && top.verify(r.publicKey)));
  for (let i = 0; i + 1 < path.length; i++) {
    if (!path[i]!.checkIssued(path[i + 1]!) || !path[i]!.verify(path[i + 1]!.publicKey)) {
      problems.push(`${SECRET_KEYS.certChain}: certificate ${i + 1} (${path[i + 1]!.subject}) did not issue ${path[i]!.subject}; order the chain from the signing certificate up to the root`);
    }
  }
  if (!root) problems.push(`no certificate in ${SECRET_KEYS.rootCert} issued ${top.subject}: put the root of ${SECRET_KEYS.caCert}'s chain in ${SECRET_KEYS.rootCert}`);

  // Intermediates sent with each leaf: the signing certificate (unless it is itself a root) and
  // the chain above it, never the roots (peers have those in the bundle).
  const rootPrints = new Set((roots as NodeX509[]).map((r) => r.fingerprint256));
  const intermediatesPem = path.filter((c) => !rootPrints.has(c.fingerprint256)).map((c) => c.toString());
  let retiredRoots: RetiredRoot[] = [];
  try {
    retiredRoots = parseRetiredRoots(data[SECRET_KEYS.previousRoots]);
  } catch (err) {
    problems.push(`${SECRET_KEYS.previousRoots} is not valid: ${(err as Error).message}`);
  }
  return { caPem, intermediatesPem, rootsPem: (roots as NodeX509[]).map((r) => r.toString()), retiredRoots };
}

function isKeyCertSign(cert: NodeX509): boolean {
  const usage = new x509.X509Certificate(cert.raw).getExtension(x509.KeyUsagesExtension);
  return !usage || (usage.usages & x509.KeyUsageFlags.keyCertSign) !== 0;
}

function checkKeyMatches(keyPem: string, ca: NodeX509, problems: string[]): void {
  try {
    const fromKey = createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'der' });
    const fromCert = ca.publicKey.export({ type: 'spki', format: 'der' });
    if (!fromKey.equals(fromCert)) problems.push(`${SECRET_KEYS.caKey} is not the key of ${SECRET_KEYS.caCert}: put the matching pair in the Secret`);
  } catch {
    // The key's parser error text could quote key material; say only what is wrong.
    problems.push(`${SECRET_KEYS.caKey} is not a readable private key: it must be an unencrypted PKCS#8 (or SEC1/PKCS#1) PEM`);
  }
}

function parseNodeCert(pem: string, field: string, problems: string[]): NodeX509 | undefined {
  try {
    return new NodeX509(pem);
  } catch (err) {
    problems.push(`${field} holds a certificate that cannot be parsed: ${(err as Error).message}`);
    return undefined;
  }
}

/** The CA key as a non-extractable WebCrypto key, with the signature algorithm that fits it. */
async function importSigningKey(pem: string): Promise<{ key: CryptoKey; algorithm: Algorithm | EcdsaParams }> {
  const keyObject = createPrivateKey(pem);
  const der = keyObject.export({ type: 'pkcs8', format: 'der' });
  if (keyObject.asymmetricKeyType === 'ec') {
    const curve = keyObject.asymmetricKeyDetails?.namedCurve;
    const namedCurve = curve === 'prime256v1' ? 'P-256' : curve === 'secp384r1' ? 'P-384' : undefined;
    if (!namedCurve) throw new CaMaterialError([`${SECRET_KEYS.caKey} uses curve ${curve}; use P-256 or P-384`]);
    const hash = namedCurve === 'P-384' ? 'SHA-384' : 'SHA-256';
    const key = await webcrypto.subtle.importKey('pkcs8', der, { name: 'ECDSA', namedCurve }, false, ['sign']);
    return { key, algorithm: { name: 'ECDSA', hash } as EcdsaParams };
  }
  if (keyObject.asymmetricKeyType === 'rsa') {
    const algorithm = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    const key = await webcrypto.subtle.importKey('pkcs8', der, algorithm, false, ['sign']);
    return { key, algorithm };
  }
  throw new CaMaterialError([`${SECRET_KEYS.caKey} is a ${keyObject.asymmetricKeyType} key; use ECDSA (P-256/P-384) or RSA`]);
}

function parseRetiredRoots(json: string | undefined): RetiredRoot[] {
  if (!json) return [];
  const value: unknown = JSON.parse(json);
  if (!Array.isArray(value) || !value.every((r) => typeof r?.pem === 'string' && typeof r?.retiredAt === 'string' && !Number.isNaN(Date.parse(r.retiredAt)))) {
    throw new Error('expected a JSON array of {"pem": "...", "retiredAt": "<ISO time>"}');
  }
  return value as RetiredRoot[];
}

/** The PEM blocks of a bundle, each normalised to end with a newline. */
export function splitPem(bundle: string): string[] {
  return (bundle.match(/-----BEGIN ([A-Z0-9 ]+)-----[\s\S]+?-----END \1-----/g) ?? []).map((b) => `${b}\n`);
}

function sortByNotBefore(pems: string[]): string[] {
  const withTime = pems.map((pem) => ({ pem, t: Date.parse(new NodeX509(pem).validFrom) }));
  return withTime.sort((a, b) => a.t - b.t || (a.pem < b.pem ? -1 : 1)).map((x) => x.pem);
}

function pemBlock(label: string, der: Buffer): string {
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/** 16 random bytes, positive as a DER INTEGER (top bit clear) and with no leading zero byte. */
function randomSerial(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return Buffer.from(bytes).toString('hex');
}

type Algorithm = webcrypto.Algorithm;
type EcdsaParams = webcrypto.EcdsaParams;
