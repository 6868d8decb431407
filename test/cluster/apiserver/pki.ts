/**
 * The API server's own PKI: a self-signed CA and a serving certificate for the names and addresses
 * clients use (127.0.0.1, the `kubernetes` Service's ClusterIP and DNS names). ECDSA P-256, made
 * with @peculiar/x509 on Node's WebCrypto; keys stay in memory.
 */
import { webcrypto, createPrivateKey, type KeyObject } from 'node:crypto';
import 'reflect-metadata'; // @peculiar/x509's dependency injection (tsyringe) needs it loaded first
import * as x509 from '@peculiar/x509';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export interface Pki {
  caPem: string;
  certPem: string;
  keyPem: string;
  /** the CA's key, to sign further certificates (e.g. kubelet serving certs) */
  caKey: KeyObject;
  caCert: x509.X509Certificate;
  caCryptoKey: CryptoKey;
}

function pemKey(der: ArrayBuffer): string {
  const b64 = Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN PRIVATE KEY-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END PRIVATE KEY-----\n`;
}

function serial(): string {
  return Buffer.from(webcrypto.getRandomValues(new Uint8Array(16))).toString('hex').replace(/^[89a-f]/, '1');
}

export async function createPki(opts: { commonName?: string; dnsNames: string[]; ips: string[]; days?: number }): Promise<Pki> {
  const days = opts.days ?? 365;
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(Date.now() + days * 86400_000);
  const caKeys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${opts.commonName ?? 'ambit-test-apiserver-ca'}`,
    notBefore,
    notAfter,
    signingAlgorithm: ALG,
    keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const { certPem, keyPem } = await issueServing(caCert, caKeys.privateKey, opts.dnsNames, opts.ips, days, 'kube-apiserver');
  const caPkcs8 = await webcrypto.subtle.exportKey('pkcs8', caKeys.privateKey);
  return { caPem: caCert.toString('pem'), certPem, keyPem, caKey: createPrivateKey(pemKey(caPkcs8)), caCert, caCryptoKey: caKeys.privateKey };
}

/** A serving certificate signed by the CA (server and client auth). */
export async function issueServing(caCert: x509.X509Certificate, caKey: CryptoKey, dnsNames: string[], ips: string[], days: number, cn: string): Promise<{ certPem: string; keyPem: string }> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${cn}`,
    issuer: caCert.subject,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + days * 86400_000),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([...dnsNames.map((d) => ({ type: 'dns' as const, value: d })), ...ips.map((i) => ({ type: 'ip' as const, value: i }))]),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { certPem: cert.toString('pem'), keyPem: pemKey(pkcs8) };
}
