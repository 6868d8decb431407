/**
 * What the in-pod redirection is made of: the proxy's ports, the marks, the probe source address and
 * the policy-routing table. One plain object that every builder (iptables, nftables, routes) reads,
 * so the three backends cannot drift apart on a number.
 */
import { isIPv4, isIPv6 } from 'node:net';
import type { IpFamily } from '../../sys/index.js';

export type { IpFamily };

/** The proxy's listeners inside every enrolled pod netns. */
export interface RedirectPorts {
  /** Outbound TCP of the app is redirected here. */
  outbound: number;
  /** Inbound plaintext TCP (from non-mesh clients) is redirected here. */
  inboundPlaintext: number;
  /** Inbound HBONE: reached directly, never redirected. */
  inboundTunnel: number;
  /** DNS (UDP and TCP port 53) is redirected here when DNS capture is on. */
  dns: number;
}

export interface RedirectConfig {
  /** The pod's IP families; rules and routes are made for these only. */
  families: readonly IpFamily[];
  ports: RedirectPorts;
  /** SO_MARK on the proxy's own sockets: the rules never capture packets carrying it. */
  proxyMark: number;
  /**
   * Connection mark given to connections the proxy made (seen marked in PREROUTING). Restored onto
   * reply packets in OUTPUT, where `ip rule fwmark <connMark>/<markMask> lookup <routeTable>` sends
   * them to lo, i.e. back to the proxy, even when the proxy spoofed the client's source address.
   */
  connMark: number;
  /** Bits of the packet and connection mark that Ambit owns; the rest is left to others. */
  markMask: number;
  /**
   * Source address the node SNATs kubelet probes to, so the pod's rules can let them through
   * uncaptured. One per family.
   */
  probeAddresses: { readonly 4: string; readonly 6: string };
  /** Capture DNS (udp/tcp 53) to `ports.dns`. */
  dnsCapture: boolean;
  /** Policy-routing table that holds `local default dev lo`. */
  routeTable: number;
  /** Priority of the fwmark rule; below main (32766) so it is consulted first. */
  rulePriority: number;
}

/** The values of the brief and the issue: Istio's ports and marks, so operators find familiar numbers. */
export const DEFAULT_REDIRECT_CONFIG: RedirectConfig = Object.freeze({
  families: Object.freeze([4]) as readonly IpFamily[],
  ports: Object.freeze({ outbound: 15001, inboundPlaintext: 15006, inboundTunnel: 15008, dns: 15053 }),
  proxyMark: 0x539,
  connMark: 0x111,
  markMask: 0xfff,
  probeAddresses: Object.freeze({ 4: '169.254.7.127', 6: 'fd16:9254:7127:1337:ffff:ffff:ffff:ffff' }),
  dnsCapture: true,
  routeTable: 100,
  rulePriority: 32764,
});

/** The default config with `overrides`, checked. Throws one Error listing every problem found. */
export function redirectConfig(overrides: Partial<RedirectConfig> = {}): RedirectConfig {
  const config: RedirectConfig = { ...DEFAULT_REDIRECT_CONFIG, ...overrides };
  const problems = validateRedirectConfig(config);
  if (problems.length > 0) throw new Error(`invalid redirection config: ${problems.join('; ')}`);
  return config;
}

/** Every problem of `config`, empty when it is usable. Pure. */
export function validateRedirectConfig(config: RedirectConfig): string[] {
  const problems: string[] = [];
  if (config.families.length === 0) problems.push('families must name at least one of 4, 6');
  if (config.families.some((f) => f !== 4 && f !== 6)) problems.push(`families must be 4 or 6, got ${config.families.join(',')}`);
  if (new Set(config.families).size !== config.families.length) problems.push('families must not repeat');
  for (const [name, port] of Object.entries(config.ports)) {
    if (!Number.isInteger(port) || port < 1 || port > 65535) problems.push(`ports.${name} must be 1..65535, got ${port}`);
  }
  const mask = config.markMask;
  if (!isU32(mask) || mask === 0) problems.push(`markMask must be a non-zero 32-bit value, got ${mask}`);
  for (const name of ['proxyMark', 'connMark'] as const) {
    const value = config[name];
    if (!isU32(value) || value === 0) problems.push(`${name} must be a non-zero 32-bit value, got ${value}`);
    else if (isU32(mask) && (value & ~mask) >>> 0 !== 0) problems.push(`${name} ${hex(value)} has bits outside markMask ${hex(mask)}`);
  }
  if (config.proxyMark === config.connMark) problems.push('proxyMark and connMark must differ');
  if (!isIPv4(config.probeAddresses[4])) problems.push(`probeAddresses[4] must be an IPv4 address, got '${config.probeAddresses[4]}'`);
  if (!isIPv6(config.probeAddresses[6])) problems.push(`probeAddresses[6] must be an IPv6 address, got '${config.probeAddresses[6]}'`);
  // 253-255 are the kernel's default/main/local tables; 0 is "unspecified".
  if (!Number.isInteger(config.routeTable) || config.routeTable < 1 || config.routeTable > 252) {
    problems.push(`routeTable must be 1..252, got ${config.routeTable}`);
  }
  if (!Number.isInteger(config.rulePriority) || config.rulePriority < 1 || config.rulePriority >= 32766) {
    problems.push(`rulePriority must be 1..32765 (before the main table), got ${config.rulePriority}`);
  }
  return problems;
}

/** Marks as iptables, nft and ip print them: lowercase hex with 0x. */
export function hex(value: number): string {
  return `0x${(value >>> 0).toString(16)}`;
}

function isU32(value: number): boolean {
  return Number.isInteger(value) && value >= 0 && value <= 0xffffffff;
}
