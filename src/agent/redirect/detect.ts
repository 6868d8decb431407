/**
 * Which packet-filter backend the node uses, decided from evidence, never assumed.
 *
 * iptables comes in two backends that do not see each other's rules: iptables-legacy (x_tables)
 * and iptables-nft (nf_tables). A node's kubelet and kube-proxy use one of them; tools that guess
 * wrong write rules nobody else sees (meshes have shipped exactly that bug). We decide as
 * Kubernetes' iptables-wrappers and Istio do:
 *   1. kubelet (1.17+) creates KUBE-IPTABLES-HINT / KUBE-KUBELET-CANARY in the mangle table of the
 *      backend it uses: if one backend has them, that is the node's backend (nft checked first);
 *   2. otherwise, the backend with more rules (lines starting with `-` in `*-save`, v4 + v6) wins;
 *      a tie, including no rules at all, goes to nft, the default of current distributions.
 * Only rules count, never the mere existence of tables: probing (even `iptables -L`) creates empty
 * tables, which would otherwise flip the decision on the next start (Istio issue 61020).
 *
 * Native nftables (`nft`) is usable when the binary runs and the kernel accepts our table in
 * check mode (`nft -c`, which validates against the kernel without committing).
 *
 * `decide*` are pure; `probeNode` runs the save tools in the agent's (the node's) netns.
 */
import { buildNftables } from './nftables.js';
import { DEFAULT_REDIRECT_CONFIG } from './config.js';
import type { CommandRunner } from './exec.js';

export type IptablesMode = 'legacy' | 'nft';
/** Where the pod's rules go. */
export type Backend = 'iptables-legacy' | 'iptables-nft' | 'nft';
/** What the operator configured: a backend, or 'auto' to follow the node. */
export type BackendPreference = Backend | 'auto';

/** What one iptables backend's save tools showed on the node, v4 and v6 together. */
export interface IptablesEvidence {
  /** The save binaries ran. */
  available: boolean;
  /** Number of rules (`-A ...` lines). */
  rules: number;
  /** kubelet's hint/canary chains are present. */
  kubeletChains: boolean;
}

export interface NodeEvidence {
  legacy: IptablesEvidence;
  nft: IptablesEvidence;
  /** `nft` runs and accepts our table in check mode. */
  nftUsable: boolean;
  /** Why nft is not usable (its stderr), for the message. */
  nftProblem?: string;
}

export interface Decision<T> {
  value: T;
  /** Why, in words for the log. */
  reason: string;
}

const KUBELET_CHAINS = /^:(KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY)\s/m;

/** Reads one backend's evidence from its `iptables-save` and `ip6tables-save` outputs. Pure. */
export function iptablesEvidence(saveOutputs: readonly (string | undefined)[]): IptablesEvidence {
  const outputs = saveOutputs.filter((o): o is string => o !== undefined);
  return {
    available: outputs.length > 0,
    rules: outputs.reduce((n, o) => n + o.split('\n').filter((l) => l.startsWith('-')).length, 0),
    kubeletChains: outputs.some((o) => KUBELET_CHAINS.test(o)),
  };
}

/** The node's iptables backend. Throws when neither is installed. Pure. */
export function decideIptablesMode(evidence: Pick<NodeEvidence, 'legacy' | 'nft'>): Decision<IptablesMode> {
  const { legacy, nft } = evidence;
  if (!legacy.available && !nft.available) {
    throw new Error(
      'neither iptables-legacy-save nor iptables-nft-save runs on this node; install the iptables package (1.8.4 or newer) in the agent image',
    );
  }
  if (!legacy.available) return { value: 'nft', reason: 'only iptables-nft is installed' };
  if (!nft.available) return { value: 'legacy', reason: 'only iptables-legacy is installed' };
  if (nft.kubeletChains) return { value: 'nft', reason: "kubelet's KUBE-IPTABLES-HINT/KUBE-KUBELET-CANARY chains are in iptables-nft" };
  if (legacy.kubeletChains) {
    return { value: 'legacy', reason: "kubelet's KUBE-IPTABLES-HINT/KUBE-KUBELET-CANARY chains are in iptables-legacy" };
  }
  if (legacy.rules > nft.rules) {
    return { value: 'legacy', reason: `iptables-legacy holds more rules (${legacy.rules}) than iptables-nft (${nft.rules})` };
  }
  if (nft.rules > 0) return { value: 'nft', reason: `iptables-nft holds at least as many rules (${nft.rules}) as iptables-legacy (${legacy.rules})` };
  return { value: 'nft', reason: 'no iptables rules in either backend; nft is the default of current distributions' };
}

/**
 * The backend for pod rules. 'auto' follows the node's iptables backend (what kubelet, kube-proxy
 * and any in-pod tooling use); native nft only when asked for, and then only if usable. Throws with
 * what to do when the configured backend cannot work. Pure.
 */
export function decideBackend(preference: BackendPreference, evidence: NodeEvidence): Decision<Backend> {
  switch (preference) {
    case 'nft':
      if (!evidence.nftUsable) {
        throw new Error(
          `redirection backend 'nft' is configured but nftables is not usable on this node (${evidence.nftProblem ?? 'nft failed'}); ` +
            "install nftables in the agent image or configure backend 'auto'",
        );
      }
      return { value: 'nft', reason: 'configured' };
    case 'iptables-legacy':
    case 'iptables-nft': {
      const mode = preference === 'iptables-legacy' ? evidence.legacy : evidence.nft;
      if (!mode.available) {
        throw new Error(`redirection backend '${preference}' is configured but ${preference}-save does not run on this node; install iptables or configure backend 'auto'`);
      }
      return { value: preference, reason: 'configured' };
    }
    case 'auto': {
      const mode = decideIptablesMode(evidence);
      return { value: mode.value === 'legacy' ? 'iptables-legacy' : 'iptables-nft', reason: mode.reason };
    }
  }
}

/**
 * Gathers the evidence on the node: runs `{ip,ip6}tables-{legacy,nft}-save` and `nft -c` in the
 * calling process's netns (the agent runs with hostNetwork). Read-only: plain `*-save` without
 * `-t` creates no tables, and `nft -c` commits nothing.
 */
export async function probeNode(run: CommandRunner): Promise<NodeEvidence> {
  const save = async (binary: string): Promise<string | undefined> => {
    const result = await run([binary]).catch(() => undefined);
    return result?.code === 0 ? result.stdout : undefined;
  };
  const [legacy4, legacy6, nft4, nft6] = await Promise.all(
    ['iptables-legacy-save', 'ip6tables-legacy-save', 'iptables-nft-save', 'ip6tables-nft-save'].map(save),
  );
  const check = await run(['nft', '-c', '-f', '-'], buildNftables({ ...DEFAULT_REDIRECT_CONFIG, families: [4, 6] })).catch(
    (err: Error) => ({ code: -1, stdout: '', stderr: err.message }),
  );
  const evidence: NodeEvidence = {
    legacy: iptablesEvidence([legacy4, legacy6]),
    nft: iptablesEvidence([nft4, nft6]),
    nftUsable: check.code === 0,
  };
  if (check.code !== 0) evidence.nftProblem = check.stderr.trim() || `nft exited with ${check.code}`;
  return evidence;
}
