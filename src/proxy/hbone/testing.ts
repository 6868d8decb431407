/**
 * Test and benchmark fixtures for HBONE: a real Ambit CA (src/identity/ca.ts) issuing workload
 * certificates for SPIFFE identities, as the control plane would. Not used by the product.
 */
import { CertificateAuthority, createKeyAndCsr, generateRootCa, inspectCsr } from '../../identity/ca.js';
import type { WorkloadCredentials } from './types.js';

export interface TestPki {
  ca: CertificateAuthority;
  /** the trust bundle (root PEMs) */
  roots: string[];
  /** a fresh key and certificate for `ns/sa` */
  issue(namespace: string, serviceAccount: string, ttlMs?: number): Promise<WorkloadCredentials>;
}

export async function createTestPki(trustDomain = 'cluster.local'): Promise<TestPki> {
  const ca = await CertificateAuthority.load(await generateRootCa({ trustDomain }), { trustDomain });
  return {
    ca,
    roots: ca.trustBundle().roots,
    async issue(namespace, serviceAccount, ttlMs) {
      const identity = `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
      const { csrPem, keyPem } = await createKeyAndCsr(identity);
      const csr = await inspectCsr(csrPem);
      if (!csr.ok) throw new Error(csr.error);
      const issued = await ca.issueWorkload({ publicKey: csr.csr.publicKey, identity, ...(ttlMs ? { ttlMs } : {}) });
      return { identity, certChainPem: issued.certChainPem, keyPem };
    },
  };
}
