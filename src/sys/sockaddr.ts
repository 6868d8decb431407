/**
 * Encoding and decoding of `struct sockaddr_in` / `struct sockaddr_in6` and of the IP address text
 * inside them. Pure functions: the native calls take and return these buffers.
 *
 * Layouts (linux/in.h, linux/in6.h):
 *   sockaddr_in  (16 bytes): u16 family (host order) | u16 port (network order) | 4 address bytes | 8 zero
 *   sockaddr_in6 (28 bytes): u16 family (host order) | u16 port (network order) | u32 flowinfo
 *                            | 16 address bytes | u32 scope_id
 */
import { isIPv4, isIPv6 } from 'node:net';
import { endianness } from 'node:os';
import { AF_INET, AF_INET6, SOCKADDR_IN6_SIZE, SOCKADDR_IN_SIZE } from './constants.js';

export type IpFamily = 4 | 6;

export interface SocketAddress {
  family: IpFamily;
  /** Textual address as Node prints it ('10.0.0.1', '::1', '::ffff:10.0.0.1'). */
  address: string;
  port: number;
}

const HOST_LE = endianness() === 'LE';

/** Encodes an address for bind()/connect(). Throws TypeError on a malformed address or port. */
export function encodeSockaddr(addr: SocketAddress): Buffer {
  checkPort(addr.port);
  if (addr.family === 4) {
    const buf = Buffer.alloc(SOCKADDR_IN_SIZE);
    writeFamily(buf, AF_INET);
    buf.writeUInt16BE(addr.port, 2);
    buf.set(parseIPv4(addr.address), 4);
    return buf;
  }
  const buf = Buffer.alloc(SOCKADDR_IN6_SIZE);
  writeFamily(buf, AF_INET6);
  buf.writeUInt16BE(addr.port, 2);
  buf.set(parseIPv6(addr.address), 8);
  return buf;
}

/** Decodes a sockaddr_in or sockaddr_in6 the kernel filled in. Throws on any other family. */
export function decodeSockaddr(buf: Uint8Array): SocketAddress {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const family = HOST_LE ? b.readUInt16LE(0) : b.readUInt16BE(0);
  const port = b.readUInt16BE(2);
  if (family === AF_INET && b.length >= SOCKADDR_IN_SIZE) {
    return { family: 4, address: formatIPv4(b.subarray(4, 8)), port };
  }
  if (family === AF_INET6 && b.length >= SOCKADDR_IN6_SIZE) {
    return { family: 6, address: formatIPv6(b.subarray(8, 24)), port };
  }
  throw new TypeError(`unsupported sockaddr: family ${family}, ${b.length} bytes`);
}

function writeFamily(buf: Buffer, family: number): void {
  if (HOST_LE) buf.writeUInt16LE(family, 0);
  else buf.writeUInt16BE(family, 0);
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new TypeError(`invalid port ${port}`);
}

/** '10.1.2.3' -> 4 bytes. */
export function parseIPv4(text: string): Uint8Array {
  if (!isIPv4(text)) throw new TypeError(`invalid IPv4 address '${text}'`);
  return Uint8Array.from(text.split('.').map(Number));
}

export function formatIPv4(bytes: Uint8Array): string {
  return Array.from(bytes.subarray(0, 4)).join('.');
}

/**
 * IPv6 text -> 16 bytes. Accepts '::' compression and a dotted IPv4 tail ('::ffff:10.0.0.1').
 * Zone ids ('fe80::1%eth0') are rejected: a scope id has no meaning across network namespaces.
 */
export function parseIPv6(text: string): Uint8Array {
  if (text.includes('%') || !isIPv6(text)) throw new TypeError(`invalid IPv6 address '${text}'`);
  const groups = expandIPv6Groups(text);
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  return bytes;
}

/** Splits validated IPv6 text into its eight 16-bit groups. */
function expandIPv6Groups(text: string): number[] {
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const toGroups = (part: string | undefined): number[] =>
    part ? part.split(':').flatMap((g) => (g.includes('.') ? ipv4AsGroups(g) : [parseInt(g, 16)])) : [];
  const left = toGroups(head);
  if (tail === undefined) return left;
  const right = toGroups(tail);
  return [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
}

function ipv4AsGroups(dotted: string): number[] {
  const b = parseIPv4(dotted);
  return [(b[0]! << 8) | b[1]!, (b[2]! << 8) | b[3]!];
}

/**
 * 16 bytes -> IPv6 text, the way Node (libuv's inet_ntop) prints it, so addresses from
 * SO_ORIGINAL_DST compare equal to `socket.remoteAddress` and friends: lowercase hex without leading
 * zeros, the longest run (first on a tie) of two or more zero groups as '::', and a dotted IPv4 tail
 * for IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d) addresses.
 */
export function formatIPv6(bytes: Uint8Array): string {
  const words = Array.from({ length: 8 }, (_, i) => (bytes[2 * i]! << 8) | bytes[2 * i + 1]!);
  const run = longestZeroRun(words);
  const embedsIPv4 = run.start === 0 && (run.length === 6 || (run.length === 5 && words[5] === 0xffff));
  if (embedsIPv4) {
    const prefix = run.length === 5 ? '::ffff:' : '::';
    return prefix + formatIPv4(bytes.subarray(12, 16));
  }
  if (run.length < 2) return words.map((w) => w.toString(16)).join(':');
  const left = words.slice(0, run.start).map((w) => w.toString(16)).join(':');
  const right = words.slice(run.start + run.length).map((w) => w.toString(16)).join(':');
  return `${left}::${right}`;
}

function longestZeroRun(words: number[]): { start: number; length: number } {
  let best = { start: -1, length: 0 };
  let start = -1;
  for (let i = 0; i <= words.length; i++) {
    if (i < words.length && words[i] === 0) {
      if (start < 0) start = i;
      continue;
    }
    if (start >= 0 && i - start > best.length) best = { start, length: i - start };
    start = -1;
  }
  return best;
}
