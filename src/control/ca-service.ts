/**
 * The Sign call's logic, free of gRPC: authenticate the agent, check the CSR, authorise the pod,
 * issue. Every refusal is a `Denial` (gRPC status name + what to do); the push server only maps it
 * onto the wire. Keys: the CSR carries only the agent's public key; nothing here sees a private key.
 */
import type { CertificateAuthority } from '../identity/ca.js';
import { inspectCsr } from '../identity/ca.js';
import type { SignRequest, SignResponse } from '../api/wire.js';
import { authenticateAgent, authorizeCsr, type Agent, type AuthzConfig, type AuthzLookups, type Denial } from './authz-csr.js';

export interface SignObserver {
  signed?(agent: Agent, identity: string, podUid: string): void;
  denied?(denial: Denial, agent: Agent | undefined): void;
}

export interface SignDeps {
  ca: CertificateAuthority;
  lookups: AuthzLookups;
  authz: AuthzConfig;
  observer?: SignObserver;
}

export type SignResult = { ok: true; response: SignResponse; agent: Agent } | (Denial & { agent?: Agent });

/** Handles one Sign request from the bearer of `token`. */
export async function handleSign(deps: SignDeps, token: string | undefined, req: SignRequest): Promise<SignResult> {
  const caller = await authenticateAgent(deps.lookups, deps.authz, token);
  if (!caller.ok) return denied(deps, caller, undefined);
  const agent = caller.agent;
  const csr = await inspectCsr(req.csrPem);
  if (!csr.ok) return denied(deps, { ok: false, code: 'INVALID_ARGUMENT', reason: 'csr-invalid', message: csr.error }, agent);
  const grant = await authorizeCsr(deps.lookups, deps.authz, agent, {
    podUid: req.podUid,
    requestedUris: csr.csr.requestedUris,
    otherSans: csr.csr.otherSans,
  });
  if (!grant.ok) return denied(deps, grant, agent);
  // A caller may ask for less than the CA's lifetime, never more.
  const ttlMs = req.ttlSeconds > 0 ? Math.min(req.ttlSeconds * 1000, deps.ca.workloadTtlMs) : deps.ca.workloadTtlMs;
  const issued = await deps.ca.issueWorkload({ publicKey: csr.csr.publicKey, identity: grant.identity, ttlMs });
  deps.observer?.signed?.(agent, grant.identity, req.podUid);
  return {
    ok: true,
    agent,
    response: {
      identity: issued.identity,
      certChainPem: issued.certChainPem,
      notAfterMs: issued.notAfter.getTime(),
      trustBundlePem: deps.ca.trustBundle().roots,
    },
  };
}

function denied(deps: SignDeps, denial: Denial, agent: Agent | undefined): SignResult {
  deps.observer?.denied?.(denial, agent);
  return agent ? { ...denial, agent } : denial;
}
