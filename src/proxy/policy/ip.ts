/**
 * IP addresses and CIDR blocks as numbers, for the `ipBlocks` / `source.ip` / `destination.ip`
 * matches of L4 authorization.
 *
 * Why not compare strings: one address has many spellings (`10.0.0.1` vs `::ffff:10.0.0.1`, `fe80::1`
 * vs `fe80:0:0::1`), and a dual-stack Node socket reports an IPv4 peer as `::ffff:a.b.c.d`. Addresses
 * are therefore parsed to a family plus a bigint, and IPv4-mapped IPv6 addresses (RFC 4291 §2.5.5.2)
 * are folded to IPv4 on both sides, so `10.0.0.0/8` matches a peer the kernel hands us as
 * `::ffff:10.1.2.3`. Host bits set in a block (`10.1.2.3/8`) are ignored, as the kernel does.
 */
import { isIP } from 'node:net';

export interface IpAddress {
  v6: boolean;
  value: bigint;
}

export interface IpBlock {
  v6: boolean;
  /** the network address, host bits cleared */
  base: bigint;
  bits: number;
}

function parseV4(s: string): bigint {
  return s.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

/** Expands `::` and an embedded dotted IPv4 tail (`::ffff:1.2.3.4`) into eight 16-bit groups. */
function parseV6(s: string): bigint {
  let head = s;
  let tail: bigint[] = [];
  const lastColon = s.lastIndexOf(':');
  if (s.includes('.', lastColon)) {
    const v4 = parseV4(s.slice(lastColon + 1));
    tail = [v4 >> 16n, v4 & 0xffffn];
    head = s.slice(0, lastColon + 1);
    if (!head.endsWith('::')) head = head.slice(0, -1);
  }
  const groupsOf = (part: string): bigint[] => (part === '' ? [] : part.split(':').map((g) => BigInt(parseInt(g, 16))));
  const gap = head.indexOf('::');
  const left = groupsOf(gap < 0 ? head : head.slice(0, gap));
  const right = [...(gap < 0 ? [] : groupsOf(head.slice(gap + 2))), ...tail];
  const zeros = Array<bigint>(8 - left.length - right.length).fill(0n);
  return [...left, ...zeros, ...right].reduce((acc, g) => (acc << 16n) | g, 0n);
}

function fold(a: IpAddress): IpAddress {
  return a.v6 && a.value >> 32n === 0xffffn ? { v6: false, value: a.value & 0xffffffffn } : a;
}

/** Parses an address (an IPv6 zone such as `%eth0` is dropped); undefined when it is not one. */
export function parseIp(s: string): IpAddress | undefined {
  const addr = s.split('%')[0] ?? '';
  const family = isIP(addr);
  if (family === 4) return { v6: false, value: parseV4(addr) };
  if (family === 6) return fold({ v6: true, value: parseV6(addr) });
  return undefined;
}

/** Parses `addr` or `addr/bits`; a bare address is a single-host block. Undefined when invalid. */
export function parseIpBlock(s: string): IpBlock | undefined {
  const [addrText, bitsText, extra] = s.split('/');
  if (extra !== undefined || addrText === undefined) return undefined;
  const family = isIP(addrText.split('%')[0] ?? '');
  if (family === 0) return undefined;
  const width = family === 4 ? 32 : 128;
  if (bitsText !== undefined && !/^\d{1,3}$/.test(bitsText)) return undefined;
  let bits = bitsText === undefined ? width : Number(bitsText);
  if (bits > width) return undefined;
  let v6 = family === 6;
  let value = v6 ? parseV6(addrText.split('%')[0]!) : parseV4(addrText);
  // ::ffff:10.0.0.0/104 is the IPv4 block 10.0.0.0/8 (the peer address is folded the same way)
  if (v6 && value >> 32n === 0xffffn && bits >= 96) {
    v6 = false;
    value &= 0xffffffffn;
    bits -= 96;
  }
  return { v6, base: value & mask(v6, bits), bits };
}

function mask(v6: boolean, bits: number): bigint {
  const width = v6 ? 128n : 32n;
  const all = (1n << width) - 1n;
  return bits === 0 ? 0n : (all >> (width - BigInt(bits))) << (width - BigInt(bits));
}

/** Whether `addr` lies in `block` (families must agree after folding IPv4-mapped addresses). */
export function blockContains(block: IpBlock, addr: IpAddress): boolean {
  return block.v6 === addr.v6 && (addr.value & mask(block.v6, block.bits)) === block.base;
}

/** The address in its usual text form without the `::ffff:` of an IPv4-mapped peer (for log lines). */
export function displayIp(s: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(s);
  return m ? m[1]! : s;
}
