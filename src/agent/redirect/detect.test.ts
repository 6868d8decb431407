/** Table tests of backend detection (pure) and of the probe against a fake runner. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decideBackend, decideIptablesMode, iptablesEvidence, probeNode, type IptablesEvidence, type NodeEvidence } from './detect.js';
import type { CommandRunner } from './exec.js';

const none: IptablesEvidence = { available: true, rules: 0, kubeletChains: false };
const rules = (n: number, kubeletChains = false): IptablesEvidence => ({ available: true, rules: n, kubeletChains });
const missing: IptablesEvidence = { available: false, rules: 0, kubeletChains: false };

const modeCases: { name: string; legacy: IptablesEvidence; nft: IptablesEvidence; want: 'legacy' | 'nft' }[] = [
  { name: "kubelet's chains in nft win over more legacy rules", legacy: rules(50), nft: rules(2, true), want: 'nft' },
  { name: "kubelet's chains in legacy", legacy: rules(2, true), nft: rules(40), want: 'legacy' },
  { name: 'both have kubelet chains (a half-migrated node): nft, as kubelet 1.17+ checks', legacy: rules(9, true), nft: rules(1, true), want: 'nft' },
  { name: 'more legacy rules', legacy: rules(12), nft: rules(3), want: 'legacy' },
  { name: 'more nft rules', legacy: rules(3), nft: rules(12), want: 'nft' },
  { name: 'tie goes to nft', legacy: rules(4), nft: rules(4), want: 'nft' },
  { name: 'no rules anywhere: nft', legacy: none, nft: none, want: 'nft' },
  { name: 'only legacy installed', legacy: { ...missing, available: true }, nft: missing, want: 'legacy' },
  { name: 'only nft installed, legacy "has" rules it cannot read', legacy: missing, nft: none, want: 'nft' },
];

for (const c of modeCases) {
  test(`decideIptablesMode: ${c.name}`, () => {
    const decision = decideIptablesMode({ legacy: c.legacy, nft: c.nft });
    assert.equal(decision.value, c.want);
    assert.ok(decision.reason.length > 0);
  });
}

test('decideIptablesMode: neither installed says what to install', () => {
  assert.throws(() => decideIptablesMode({ legacy: missing, nft: missing }), /install the iptables package/);
});

const node: NodeEvidence = { legacy: rules(10), nft: rules(1), nftUsable: false, nftProblem: 'Error: Could not process rule: Operation not supported' };

test('decideBackend: auto follows the node; configured backends are checked', () => {
  assert.deepEqual(decideBackend('auto', node).value, 'iptables-legacy');
  assert.deepEqual(decideBackend('iptables-nft', node).value, 'iptables-nft');
  assert.throws(() => decideBackend('nft', node), /nftables is not usable on this node \(Error: Could not process rule: Operation not supported\)/);
  assert.equal(decideBackend('nft', { ...node, nftUsable: true }).value, 'nft');
  assert.throws(() => decideBackend('iptables-legacy', { ...node, legacy: missing }), /iptables-legacy-save does not run/);
});

test('iptablesEvidence counts rule lines and finds kubelet chains in v4 and v6 output', () => {
  const v4 = '# c\n*mangle\n:PREROUTING ACCEPT [0:0]\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n*nat\n-A OUTPUT -j X\n-A X -j ACCEPT\nCOMMIT\n';
  const v6 = '*nat\n-A OUTPUT -j Y\nCOMMIT\n';
  assert.deepEqual(iptablesEvidence([v4, v6]), { available: true, rules: 3, kubeletChains: true });
  assert.deepEqual(iptablesEvidence([undefined, undefined]), missing);
  assert.equal(iptablesEvidence([':KUBE-IPTABLES-HINTS - [0:0]\n']).kubeletChains, false);
});

test('probeNode runs only read-only commands and assembles the evidence', async () => {
  const seen: string[] = [];
  const run: CommandRunner = async (argv) => {
    seen.push(argv.join(' '));
    if (argv[0] === 'iptables-legacy-save') return { code: 0, stdout: '*nat\n-A OUTPUT -j ACCEPT\nCOMMIT\n', stderr: '' };
    if (argv[0] === 'ip6tables-legacy-save') return { code: 0, stdout: '', stderr: '' };
    if (argv[0]?.endsWith('-nft-save')) return { code: 1, stdout: '', stderr: 'iptables-nft-save: not found' };
    return { code: 1, stdout: '', stderr: 'Error: Could not process rule: Operation not supported\n' };
  };
  const evidence = await probeNode(run);
  assert.deepEqual(evidence, {
    legacy: { available: true, rules: 1, kubeletChains: false },
    nft: missing,
    nftUsable: false,
    nftProblem: 'Error: Could not process rule: Operation not supported',
  });
  assert.deepEqual(seen.sort(), ['ip6tables-legacy-save', 'ip6tables-nft-save', 'iptables-legacy-save', 'iptables-nft-save', 'nft -c -f -']);
});
