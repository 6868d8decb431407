/**
 * The in-pod capture rules for native nftables, as `nft -f` input: one table, `inet ambit`, that
 * carries the same logic as the iptables rules (see iptables.ts) for every family of the pod.
 *
 * Idempotent and atomic without reading the ruleset first: `nft -f` runs the whole file as one
 * transaction, and the file first makes sure the table exists (`table inet ambit {}` adds nothing
 * when it does), deletes it, and defines it anew. Applying twice equals applying once, and a
 * ruleset that an older agent left behind is replaced, not merged. Removal is the same without the
 * new definition. Nothing outside our table is touched.
 *
 * For a netns CNI ADD just made (`fresh`, see ExecOptions.freshNetns in exec.ts) the make-sure and
 * delete are left out: a deletion makes the nf_tables commit wait for the kernel's grace period
 * (≈ 7 ms of the ≈ 15 ms apply, measured with bench/warm-micro.ts), and there is nothing to delete.
 */
import { type IpFamily, type RedirectConfig, hex } from './config.js';

export const NFT_TABLE = 'ambit';
export const NFT_FAMILY = 'inet';

/** The `nft -f` input that installs (or replaces) the capture table for `config`; `fresh`: installs only. */
export function buildNftables(config: RedirectConfig, opts: { fresh?: boolean } = {}): string {
  const mark = `meta mark & ${hex(config.markMask)}`;
  const ctmark = `ct mark & ${hex(config.markMask)}`;
  const keepBits = hex(~config.markMask >>> 0);
  const { ports } = config;
  // A pod of one family leaves the other family's traffic alone, like the iptables backend, which
  // only programs the pod's families. Marks and connmarks are inert without the family's ip rule.
  const onlyFamily = config.families.length === 1 ? [`meta nfproto != ${nfproto(config.families[0]!)} accept`] : [];
  const probes = config.families.map((f) => `${f === 4 ? 'ip' : 'ip6'} saddr ${config.probeAddresses[f]} meta l4proto tcp accept`);
  const dns = config.dnsCapture ? [`udp dport 53 redirect to :${ports.dns}`, `tcp dport 53 redirect to :${ports.dns}`] : [];
  const chains: Chain[] = [
    {
      name: 'mangle_prerouting',
      hook: 'type filter hook prerouting priority mangle',
      // The proxy's packets arriving over lo mark their connection (iptables: CONNMARK --set-xmark).
      rules: [`${mark} == ${hex(config.proxyMark)} ct mark set ct mark & ${keepBits} | ${hex(config.connMark)}`],
    },
    {
      name: 'mangle_output',
      // type route: a changed mark makes the kernel route the packet again, so `ip rule fwmark` applies.
      hook: 'type route hook output priority mangle',
      rules: [`${ctmark} == ${hex(config.connMark)} meta mark set ct mark`],
    },
    {
      name: 'nat_prerouting',
      hook: 'type nat hook prerouting priority dstnat',
      rules: [
        ...onlyFamily,
        ...probes,
        `${mark} == ${hex(config.proxyMark)} accept`,
        `tcp dport ${ports.inboundTunnel} accept`,
        `meta l4proto tcp redirect to :${ports.inboundPlaintext}`,
      ],
    },
    {
      name: 'nat_output',
      // -100 is dstnat; nft 1.0.6 (Debian 12) accepts the keyword only on the prerouting hook.
      hook: 'type nat hook output priority -100',
      rules: [
        ...onlyFamily,
        'oifname "lo" accept',
        `${mark} == ${hex(config.proxyMark)} accept`,
        ...dns,
        `meta l4proto tcp redirect to :${ports.outbound}`,
      ],
    },
  ];
  const body = chains.flatMap((c) => [
    `\tchain ${c.name} {`,
    `\t\t${c.hook}; policy accept;`,
    ...c.rules.map((r) => `\t\t${r}`),
    '\t}',
  ]);
  const replace = opts.fresh ? [] : buildNftablesRemoval().trimEnd().split('\n');
  return [...replace, `table ${NFT_FAMILY} ${NFT_TABLE} {`, ...body, '}', ''].join('\n');
}

/** The `nft -f` input that removes our table; succeeds whether or not it exists. */
export function buildNftablesRemoval(): string {
  return `table ${NFT_FAMILY} ${NFT_TABLE} {}\ndelete table ${NFT_FAMILY} ${NFT_TABLE}\n`;
}

interface Chain {
  name: string;
  hook: string;
  rules: string[];
}

function nfproto(family: IpFamily): string {
  return family === 4 ? 'ipv4' : 'ipv6';
}
