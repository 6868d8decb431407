/**
 * Which mTLS mode a workload's inbound side enforces on one port, and which PeerAuthentication set
 * it — so a refused plaintext connection's log line can name the policy to change.
 *
 * The mode itself comes from src/state's `effectiveMtls` (Istio's precedence: a workload-selector
 * policy over the namespace's policy over the mesh policy in the root namespace; UNSET inherits;
 * the oldest policy wins a tie at one level; port-level modes only on a workload policy, keyed by
 * the workload's own (container) port, which is the port the inbound listener sees; default
 * PERMISSIVE). `resolveInboundMtls` only adds *who decided*, walking the same levels.
 *
 * What each mode means for Ambit's two inbound listeners:
 * - 15008 (HBONE) is always mutual TLS, so every mode admits it.
 * - 15006 (plaintext): STRICT refuses; PERMISSIVE admits; DISABLE admits too. Istio's ambient docs
 *   say the ztunnel cannot honour DISABLE (HBONE implies mTLS) and ignores it; here it has the only
 *   meaning left at L4 — plaintext is welcome — which is the same behaviour as PERMISSIVE.
 */
import type { PeerAuthentication, PolicySubject } from '../../state/policy.js';
import { effectiveMtls, selectorMatches } from '../../state/policy.js';

export type InboundMtlsMode = 'STRICT' | 'PERMISSIVE' | 'DISABLE';

export interface ResolvedMtls {
  mode: InboundMtlsMode;
  /** which level set the mode: a port of a workload policy, a workload policy, the namespace, the mesh, or nothing (default) */
  level: 'port' | 'workload' | 'namespace' | 'mesh' | 'default';
  /** "<namespace>/<name>" of the PeerAuthentication that set it; absent for the default */
  policy?: string;
}

const oldestFirst = (a: PeerAuthentication, b: PeerAuthentication): number =>
  a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : a.key < b.key ? -1 : a.key > b.key ? 1 : 0;

/** The policy in force at each level (the oldest one there), as effectiveMtls picks them. */
function levels(w: PolicySubject, pas: readonly PeerAuthentication[], rootNamespace: string): { workload?: PeerAuthentication; namespace?: PeerAuthentication; mesh?: PeerAuthentication } {
  const sorted = [...pas].sort(oldestFirst);
  const out: { workload?: PeerAuthentication; namespace?: PeerAuthentication; mesh?: PeerAuthentication } = {};
  const workload = sorted.find((p) => p.selector && p.namespace === w.namespace && selectorMatches(p.selector, w.labels));
  const namespace = sorted.find((p) => !p.selector && p.namespace === w.namespace);
  const mesh = sorted.find((p) => !p.selector && p.namespace === rootNamespace);
  if (workload) out.workload = workload;
  if (namespace) out.namespace = namespace;
  if (mesh) out.mesh = mesh;
  return out;
}

/** The mode on `port` of `workload`, and the PeerAuthentication (and level) that set it. */
export function resolveInboundMtls(workload: PolicySubject, peerAuthentications: readonly PeerAuthentication[], port: number, rootNamespace: string): ResolvedMtls {
  const eff = effectiveMtls(workload, peerAuthentications, rootNamespace);
  const at = levels(workload, peerAuthentications, rootNamespace);
  const mode = eff.ports[String(port)] ?? eff.mode;
  const portMode = at.workload?.portModes?.[String(port)];
  if (at.workload && portMode !== undefined && portMode !== 'UNSET') return { mode, level: 'port', policy: at.workload.key };
  for (const level of ['workload', 'namespace', 'mesh'] as const) {
    const p = at[level];
    if (p && p.mode !== 'UNSET') return { mode, level, policy: p.key };
  }
  return { mode, level: 'default' };
}

/** The mTLS mode `workload` enforces for inbound connections on `port`. */
export function inboundMtlsMode(workload: PolicySubject, peerAuthentications: readonly PeerAuthentication[], port: number, rootNamespace: string): InboundMtlsMode {
  return resolveInboundMtls(workload, peerAuthentications, port, rootNamespace).mode;
}

/** Whether a plaintext (port 15006) connection is admitted under `mode`. */
export function admitPlaintext(mode: InboundMtlsMode): boolean {
  return mode !== 'STRICT';
}
