/**
 * For the redirection's root tests: a netns's packet-filter state as text that compares across
 * netns (counters dropped, nft tables sorted), so "the fast apply equals the full one" and "warm
 * equals spawned" are plain deepEqual. Not used by the product.
 */
import { inNs } from '../../sys/testing.js';

/** nft (every table, sorted) and the four iptables saves of the netns `name`. */
export function packetFilterSnapshot(name: string): Record<'nft' | 'legacy4' | 'legacy6' | 'iptnft4' | 'iptnft6', string> {
  const clean = (s: string) =>
    s
      .split('\n')
      .filter((l) => !l.startsWith('#'))
      .map((l) => l.replace(/\[\d+:\d+\]/g, '[]').replace(/counter packets \d+ bytes \d+/g, 'counter'))
      // nft prints iptables-nft's REDIRECT target translated or not, varying between netns with
      // equal rules (the iptables-nft-save text compared beside it is the same)
      .map((l) => l.replace(/counter redirect to :\d+$/, 'counter '))
      .join('\n');
  // Tables in creation order; the two families' restores run side by side, so their order varies.
  const tables = (text: string) => (text.match(/^table [\s\S]*?^\}$/gm) ?? []).sort().join('\n');
  return {
    nft: tables(clean(inNs(name, 'nft', 'list', 'ruleset'))),
    legacy4: clean(inNs(name, 'iptables-legacy-save')),
    legacy6: clean(inNs(name, 'ip6tables-legacy-save')),
    iptnft4: clean(inNs(name, 'iptables-nft-save')),
    iptnft6: clean(inNs(name, 'ip6tables-nft-save')),
  };
}
