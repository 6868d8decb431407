/**
 * rtnetlink (NETLINK_ROUTE) for the policy routing of a pod: add/delete an fwmark rule, replace/
 * delete a `local default dev lo` route, and dump rules and routes in the shapes `ip -j` prints.
 *
 * Why not `ip`: every `nsenter … ip` is a fork of the agent (150 MB of page tables copied while the
 * event loop stands still) and two execs, milliseconds each on a CNI ADD's critical path. A netlink
 * socket made inside the pod's netns does the same in microseconds, synchronously, with no process.
 *
 * The socket belongs to the netns it was created in, so `withRtnl(netns, fn)` enters the netns
 * (`inNetns`), creates the socket, runs `fn`, and closes the socket before leaving: everything in
 * `fn` is synchronous, like all of inNetns. The kernel answers a route/rule request inside the
 * sendto() itself, and a dump part inside recv(), so the blocking calls never wait for anything but
 * the kernel; SO_RCVTIMEO bounds them anyway.
 *
 * Layout: pure encoders/decoders first (table-tested in netlink.test.ts), then the thin socket I/O.
 * Constants are the uapi ones: linux/netlink.h, linux/rtnetlink.h, linux/fib_rules.h, linux/if_link.h.
 * Messages are in host byte order (netlink is not a wire protocol), attributes 4-byte aligned.
 */
import { endianness } from 'node:os';
import { AF_INET, AF_INET6, SOCK_CLOEXEC, SOL_SOCKET } from './constants.js';
import { errnoName, SysError, sysError } from './errors.js';
import { lastErrno, libc } from './native.js';
import { inNetns, openNetns, type NetnsHandle } from './netns.js';
import { formatIPv4, formatIPv6 as formatIPv6Bytes, type IpFamily } from './sockaddr.js';

// ---------------------------------------------------------------- constants (uapi)

/** sys/socket.h, linux/netlink.h */
export const AF_NETLINK = 16;
export const SOCK_RAW = 3;
export const NETLINK_ROUTE = 0;
export const SOL_NETLINK = 270;
export const NETLINK_CAP_ACK = 10;
export const NETLINK_EXT_ACK = 11;
/** asm-generic/socket.h: SO_RCVTIMEO_OLD, a struct timeval of two longs on 64-bit Linux. */
const SO_RCVTIMEO = 20;
const MSG_TRUNC = 0x20;

/** nlmsghdr.nlmsg_flags */
export const NLM_F_REQUEST = 0x01;
export const NLM_F_MULTI = 0x02;
export const NLM_F_ACK = 0x04;
export const NLM_F_DUMP_INTR = 0x10;
export const NLM_F_DUMP = 0x300; // NLM_F_ROOT | NLM_F_MATCH
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
/** On an NLMSG_ERROR: the echoed request was cut to its header (NETLINK_CAP_ACK); TLVs follow. */
export const NLM_F_CAPPED = 0x100;
export const NLM_F_ACK_TLVS = 0x200;

/** Control message types. */
export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSG_OVERRUN = 4;
/** enum nlmsgerr_attrs */
const NLMSGERR_ATTR_MSG = 1;

/** linux/rtnetlink.h message types */
export const RTM_NEWLINK = 16;
export const RTM_GETLINK = 18;
export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_GETROUTE = 26;
export const RTM_NEWRULE = 32;
export const RTM_DELRULE = 33;
export const RTM_GETRULE = 34;

/** rtmsg fields */
export const RTN_UNICAST = 1;
export const RTN_LOCAL = 2;
export const RTPROT_BOOT = 3; // what `ip route add/replace` sets; `ip route show` hides it
export const RT_SCOPE_UNIVERSE = 0;
export const RT_SCOPE_HOST = 254;
export const RT_TABLE_UNSPEC = 0;
export const RT_TABLE_DEFAULT = 253;
export const RT_TABLE_MAIN = 254;
export const RT_TABLE_LOCAL = 255;
export const RTM_F_CLONED = 0x200;
/** enum rtattr_type_t */
export const RTA_DST = 1;
export const RTA_OIF = 4;
export const RTA_TABLE = 15;

/** linux/fib_rules.h */
export const FR_ACT_TO_TBL = 1;
export const FRA_PRIORITY = 6;
export const FRA_FWMARK = 10;
export const FRA_TABLE = 15;
export const FRA_FWMASK = 16;

/** linux/if_link.h */
export const IFLA_IFNAME = 3;

/**
 * The ifindex of lo in every netns: the kernel registers loopback first in each namespace and its
 * routing code relies on the number (LOOPBACK_IFINDEX in include/net/flow.h). The root tests check
 * that a route made with it shows `dev lo`.
 */
export const LOOPBACK_IFINDEX = 1;

const NLMSG_HDRLEN = 16;
const NLMSGERR_LEN = 4 + NLMSG_HDRLEN; // int error + the request's nlmsghdr
/** struct fib_rule_hdr and struct rtmsg are 12 bytes, struct ifinfomsg 16. */
const FIB_RULE_HDR_LEN = 12;
const RTMSG_LEN = 12;
const IFINFOMSG_LEN = 16;

const LE = endianness() === 'LE';

// ---------------------------------------------------------------- pure: what we ask for

/** `ip rule add fwmark <fwmark>/<fwmask> lookup <table> pref <priority>` of one family. */
export interface FwmarkRule {
  family: IpFamily;
  priority: number;
  fwmark: number;
  fwmask: number;
  table: number;
}

/** `ip route replace local default dev lo table <table>` of one family. */
export interface LocalDefaultRoute {
  family: IpFamily;
  table: number;
}

/** A rule as `ip -j rule show` prints it, reduced to what routes.ts compares (hex as ip prints it). */
export interface RuleView {
  priority: number;
  fwmark?: string;
  fwmask?: string;
  /** 'local' | 'main' | 'default' | the number; absent when the rule names no table */
  table?: string;
}

/** A route as `ip -j route show table all` prints it, reduced to what routes.ts compares. */
export interface RouteView {
  /** absent for unicast, as ip prints it */
  type?: string;
  /** 'default', an address (full-length prefix) or 'address/len' */
  dst: string;
  dev?: string;
  /** absent for the main table */
  table?: string;
}

/** One netlink message: header fields and the payload after the 16-byte header. */
export interface NlMessage {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  payload: Buffer;
}

/** An attribute to encode: its type and its value (u32 numbers are the common case). */
export type NlAttr = { type: number; u32: number } | { type: number; bytes: Buffer } | { type: number; string: string };

/** Rule request: RTM_NEWRULE with CREATE|EXCL (an identical rule fails with EEXIST), or RTM_DELRULE. */
export function encodeRuleRequest(op: 'add' | 'delete', rule: FwmarkRule, seq: number): Buffer {
  const hdr = Buffer.alloc(FIB_RULE_HDR_LEN);
  hdr[0] = familyCode(rule.family);
  hdr[4] = smallTable(rule.table); // FRA_TABLE below carries it anyway; ip fills both the same way
  hdr[7] = FR_ACT_TO_TBL;
  const attrs: NlAttr[] = [
    { type: FRA_PRIORITY, u32: rule.priority },
    { type: FRA_FWMARK, u32: rule.fwmark },
    { type: FRA_FWMASK, u32: rule.fwmask },
    { type: FRA_TABLE, u32: rule.table },
  ];
  const flags = op === 'add' ? NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL : NLM_F_REQUEST | NLM_F_ACK;
  return encodeMessage({ type: op === 'add' ? RTM_NEWRULE : RTM_DELRULE, flags, seq }, hdr, attrs);
}

/**
 * Route request: RTM_NEWROUTE with CREATE|REPLACE, or RTM_DELROUTE, for `local default dev lo
 * table T`. The fields are what `ip route replace` sends: protocol boot, type local, scope host for
 * IPv4 (IPv6 routes have no scope; ip sends universe), no RTA_DST for a zero-length prefix.
 */
export function encodeRouteRequest(op: 'replace' | 'delete', route: LocalDefaultRoute, seq: number): Buffer {
  const rtm = Buffer.alloc(RTMSG_LEN);
  rtm[0] = familyCode(route.family);
  rtm[1] = 0; // dst_len: default
  rtm[4] = smallTable(route.table);
  rtm[5] = op === 'replace' ? RTPROT_BOOT : 0; // delete: any protocol
  rtm[6] = route.family === 4 ? RT_SCOPE_HOST : RT_SCOPE_UNIVERSE;
  rtm[7] = RTN_LOCAL;
  const attrs: NlAttr[] = [
    { type: RTA_TABLE, u32: route.table },
    { type: RTA_OIF, u32: LOOPBACK_IFINDEX },
  ];
  const flags = op === 'replace' ? NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE : NLM_F_REQUEST | NLM_F_ACK;
  return encodeMessage({ type: op === 'replace' ? RTM_NEWROUTE : RTM_DELROUTE, flags, seq }, rtm, attrs);
}

/** A dump request: RTM_GETRULE / RTM_GETROUTE of one family, or RTM_GETLINK of all links. */
export function encodeDumpRequest(what: 'rules' | 'routes' | 'links', family: IpFamily | undefined, seq: number): Buffer {
  const type = what === 'rules' ? RTM_GETRULE : what === 'routes' ? RTM_GETROUTE : RTM_GETLINK;
  const body = Buffer.alloc(what === 'links' ? IFINFOMSG_LEN : what === 'rules' ? FIB_RULE_HDR_LEN : RTMSG_LEN);
  body[0] = family === undefined ? 0 : familyCode(family);
  return encodeMessage({ type, flags: NLM_F_REQUEST | NLM_F_DUMP, seq }, body, []);
}

/** nlmsghdr + fixed header + attributes, lengths and padding filled in. */
export function encodeMessage(h: { type: number; flags: number; seq: number }, fixed: Buffer, attrs: readonly NlAttr[]): Buffer {
  const encoded = attrs.map(encodeAttr);
  const length = NLMSG_HDRLEN + align(fixed.length) + encoded.reduce((n, a) => n + a.length, 0);
  const msg = Buffer.alloc(length);
  writeU32(msg, 0, length);
  writeU16(msg, 4, h.type);
  writeU16(msg, 6, h.flags);
  writeU32(msg, 8, h.seq);
  writeU32(msg, 12, 0); // pid: to the kernel
  fixed.copy(msg, NLMSG_HDRLEN);
  let offset = NLMSG_HDRLEN + align(fixed.length);
  for (const a of encoded) {
    a.copy(msg, offset);
    offset += a.length;
  }
  return msg;
}

function encodeAttr(attr: NlAttr): Buffer {
  let data: Buffer;
  if ('u32' in attr) {
    data = Buffer.alloc(4);
    writeU32(data, 0, attr.u32);
  } else if ('string' in attr) data = Buffer.from(`${attr.string}\0`);
  else data = attr.bytes;
  const buf = Buffer.alloc(align(4 + data.length));
  writeU16(buf, 0, 4 + data.length);
  writeU16(buf, 2, attr.type);
  data.copy(buf, 4);
  return buf;
}

// ---------------------------------------------------------------- pure: what the kernel says

/** Splits one datagram into its messages. Throws on a malformed length (never loops forever). */
export function parseMessages(buf: Buffer): NlMessage[] {
  const out: NlMessage[] = [];
  let offset = 0;
  while (offset + NLMSG_HDRLEN <= buf.length) {
    const length = readU32(buf, offset);
    if (length < NLMSG_HDRLEN || offset + length > buf.length) {
      throw new Error(`malformed netlink message: length ${length} at offset ${offset} of a ${buf.length}-byte datagram`);
    }
    out.push({
      type: readU16(buf, offset + 4),
      flags: readU16(buf, offset + 6),
      seq: readU32(buf, offset + 8),
      pid: readU32(buf, offset + 12),
      payload: buf.subarray(offset + NLMSG_HDRLEN, offset + length),
    });
    offset += align(length);
  }
  return out;
}

/** Attributes from `offset` of `buf` by type (the last one wins, as in the kernel's nla_parse). */
export function parseAttrs(buf: Buffer, offset: number): Map<number, Buffer> {
  const attrs = new Map<number, Buffer>();
  while (offset + 4 <= buf.length) {
    const length = readU16(buf, offset);
    if (length < 4 || offset + length > buf.length) break; // a truncated tail: ignore, as the kernel does
    attrs.set(readU16(buf, offset + 2) & 0x3fff, buf.subarray(offset + 4, offset + length)); // drop NLA_F_NESTED/NET_BYTEORDER
    offset += align(length);
  }
  return attrs;
}

/** An NLMSG_ERROR: errno 0 is the ack of success; otherwise the positive errno and the kernel's message. */
export interface Ack {
  errno: number;
  /** the extended ack's text (NETLINK_EXT_ACK), e.g. 'Nexthop device is not up' */
  message?: string;
}

export function decodeAck(msg: NlMessage): Ack {
  if (msg.payload.length < 4) throw new Error('malformed netlink error message: shorter than its errno');
  const errno = Math.abs(readI32(msg.payload, 0)); // the kernel sends -errno (abs: no -0)
  if (!(msg.flags & NLM_F_ACK_TLVS) || msg.payload.length < NLMSGERR_LEN) return { errno };
  // The echoed request: only its header when capped, else the whole request (its own length).
  const echoed = msg.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : readU32(msg.payload, 4);
  const text = parseAttrs(msg.payload, 4 + align(echoed)).get(NLMSGERR_ATTR_MSG);
  const message = text === undefined ? undefined : cString(text);
  return message ? { errno, message } : { errno };
}

/** An RTM_NEWRULE of a dump, as `ip -j rule show` prints it. */
export function decodeRule(msg: NlMessage): RuleView {
  if (msg.payload.length < FIB_RULE_HDR_LEN) throw new Error('malformed rule message: shorter than struct fib_rule_hdr');
  const attrs = parseAttrs(msg.payload, FIB_RULE_HDR_LEN);
  const rule: RuleView = { priority: u32Attr(attrs, FRA_PRIORITY) ?? 0 };
  // ip prints the mark when either attribute is there, the mask only when not all ones
  const mark = u32Attr(attrs, FRA_FWMARK);
  const mask = u32Attr(attrs, FRA_FWMASK);
  if (mark !== undefined || mask !== undefined) {
    rule.fwmark = cHex(mark ?? 0);
    if (mask !== undefined && mask !== 0xffffffff) rule.fwmask = cHex(mask);
  }
  const table = u32Attr(attrs, FRA_TABLE) ?? msg.payload[4]!;
  if (table !== RT_TABLE_UNSPEC) rule.table = tableName(table);
  return rule;
}

/**
 * An RTM_NEWROUTE of a dump, as `ip -j route show table all` prints it; undefined for a cloned
 * (cached) route, which ip leaves out too. `links` names the ifindexes (from a link dump).
 */
export function decodeRoute(msg: NlMessage, links: ReadonlyMap<number, string>): RouteView | undefined {
  const p = msg.payload;
  if (p.length < RTMSG_LEN) throw new Error('malformed route message: shorter than struct rtmsg');
  if (readU32(p, 8) & RTM_F_CLONED) return undefined;
  const family = p[0]!;
  const dstLen = p[1]!;
  const type = p[7]!;
  const attrs = parseAttrs(p, RTMSG_LEN);
  // keys in ip's order, so that a failing deepEqual against `ip -j` output reads naturally
  const dst = dstLen === 0 ? 'default' : prefix(family, attrs.get(RTA_DST), dstLen);
  const route: RouteView = type === RTN_UNICAST ? { dst } : { type: RTN_NAMES[type] ?? String(type), dst };
  const oif = u32Attr(attrs, RTA_OIF);
  if (oif !== undefined) route.dev = links.get(oif) ?? `if${oif}`;
  const table = u32Attr(attrs, RTA_TABLE) ?? p[4]!;
  if (table !== RT_TABLE_MAIN) route.table = tableName(table);
  return route;
}

/** An RTM_NEWLINK of a dump: its ifindex and name. */
export function decodeLink(msg: NlMessage): { index: number; name: string } {
  const p = msg.payload;
  if (p.length < IFINFOMSG_LEN) throw new Error('malformed link message: shorter than struct ifinfomsg');
  const name = parseAttrs(p, IFINFOMSG_LEN).get(IFLA_IFNAME);
  return { index: readI32(p, 4), name: name === undefined ? '' : cString(name) };
}

const RTN_NAMES: Readonly<Record<number, string>> = {
  0: 'none', // RTN_UNSPEC, as ip names it
  1: 'unicast',
  2: 'local',
  3: 'broadcast',
  4: 'anycast',
  5: 'multicast',
  6: 'blackhole',
  7: 'unreachable',
  8: 'prohibit',
  9: 'throw',
  10: 'nat',
  11: 'xresolve',
};

/** A table id as ip prints it (the kernel's reserved names; numbers otherwise). */
export function tableName(id: number): string {
  return id === RT_TABLE_LOCAL ? 'local' : id === RT_TABLE_MAIN ? 'main' : id === RT_TABLE_DEFAULT ? 'default' : String(id);
}

/** printf("%#x"): `0x` and lowercase hex, but a bare `0` for zero (ip prints marks this way). */
export function cHex(value: number): string {
  return value === 0 ? '0' : `0x${(value >>> 0).toString(16)}`;
}

/** An address with its prefix length, the length left out when it covers the whole address (as ip). */
function prefix(family: number, addr: Buffer | undefined, length: number): string {
  if (addr === undefined) return `?/${length}`;
  const text = family === AF_INET6 ? formatIPv6(addr) : formatIPv4(addr);
  return length === addr.length * 8 ? text : `${text}/${length}`;
}

/** 16 bytes as IPv6 text, as inet_ntop writes it (sockaddr.ts's formatter, which ip's agrees with). */
export function formatIPv6(addr: Buffer): string {
  if (addr.length !== 16) throw new Error(`an IPv6 address has 16 bytes, got ${addr.length}`);
  return formatIPv6Bytes(addr);
}

// ---------------------------------------------------------------- errors

/** The kernel refused a netlink request: errno, what we asked, and the kernel's own words if any. */
export class NetlinkError extends SysError {
  constructor(
    errno: number,
    /** the request in `ip` terms, e.g. 'ip -4 rule add fwmark 0x111/0xfff lookup 100 pref 32764' */
    readonly request: string,
    /** the kernel's extended-ack text, when it gave one */
    readonly kernelMessage: string | undefined,
  ) {
    const code = errnoName(errno);
    const hint = [kernelMessage, NETLINK_HINTS.get(code)].filter((s) => s !== undefined).join('; ');
    super(errno, code, `netlink ${request}`, hint === '' ? undefined : hint);
    this.name = 'NetlinkError';
  }

  /** The rule or route is there already (only NLM_F_EXCL requests, i.e. `addRule`, can say so). */
  get exists(): boolean {
    return this.code === 'EEXIST';
  }
}

const NETLINK_HINTS: ReadonlyMap<string, string> = new Map([
  ['EPERM', 'changing routes and rules needs CAP_NET_ADMIN; grant NET_ADMIN to the agent container'],
  ['ENETDOWN', "the netns's lo is down (the runtime brings it up before CNI ADD)"],
  ['EAFNOSUPPORT', 'this address family is not available in the netns (IPv6 disabled?)'],
]);

// ---------------------------------------------------------------- I/O

/** How long one recv() may wait for the kernel before the request counts as unanswered. */
const RECV_TIMEOUT_MS = 2000;
/** Bounds: datagrams read for one ack, messages of one dump, retries of an interrupted dump. */
const MAX_ACK_DATAGRAMS = 64;
const MAX_DUMP_MESSAGES = 1_000_000;
const DUMP_TRIES = 3;
const RECV_BUFFER = 64 * 1024; // the kernel sizes dump parts by our buffer, up to 32 KiB

/** One receive buffer per thread: everything here is synchronous, and module state is per isolate. */
let recvBuffer: Buffer | undefined;
/** Sequence numbers, per thread; replies carry ours back. */
let nextSeq = Math.floor(Math.random() * 0x7fffffff);

/**
 * A NETLINK_ROUTE socket in the network namespace the calling thread was in when `open()` ran.
 * Synchronous throughout. Use `withRtnl` to open one inside a pod's netns.
 */
export class RtnlSocket {
  #fd: number;
  #links: Map<number, string> | undefined;

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /** Opens a socket in the calling thread's current network namespace. */
  static open(): RtnlSocket {
    const c = libc();
    const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) throw sysError('socket', 'socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)', lastErrno());
    const sock = new RtnlSocket(fd);
    try {
      // Best effort: kernel messages in errors (>= 4.12), and errors without the echoed request.
      c.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, u32(1), 4);
      c.setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, u32(1), 4);
      const tv = Buffer.alloc(16); // struct timeval { long tv_sec; long tv_usec; }
      writeU64(tv, 0, Math.floor(RECV_TIMEOUT_MS / 1000));
      writeU64(tv, 8, (RECV_TIMEOUT_MS % 1000) * 1000);
      if (c.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16) < 0) {
        throw sysError('setsockopt SO_RCVTIMEO', `setsockopt(fd ${fd}, SO_RCVTIMEO)`, lastErrno());
      }
    } catch (err) {
      sock.close();
      throw err;
    }
    return sock;
  }

  /** Adds the rule; throws a NetlinkError whose `exists` is true when an identical rule is there. */
  addRule(rule: FwmarkRule): void {
    this.#request((seq) => encodeRuleRequest('add', rule, seq), () => describeRule('add', rule));
  }

  /** Deletes the rule; ENOENT when there is none. */
  deleteRule(rule: FwmarkRule): void {
    this.#request((seq) => encodeRuleRequest('delete', rule, seq), () => describeRule('del', rule));
  }

  /** Creates or replaces `local default dev lo table T`. */
  replaceRoute(route: LocalDefaultRoute): void {
    this.#request((seq) => encodeRouteRequest('replace', route, seq), () => describeRoute('replace', route));
  }

  /** Deletes `local default dev lo table T`; ESRCH when there is none. */
  deleteRoute(route: LocalDefaultRoute): void {
    this.#request((seq) => encodeRouteRequest('delete', route, seq), () => describeRoute('del', route));
  }

  /** The family's rules, as `ip -j -<family> rule show` prints them. */
  rules(family: IpFamily): RuleView[] {
    return this.#dump('rules', family, `ip -j -${family} rule show`).map(decodeRule);
  }

  /** The family's routes of all tables, as `ip -j -<family> route show table all` prints them. */
  routes(family: IpFamily): RouteView[] {
    const links = this.links();
    const out: RouteView[] = [];
    for (const msg of this.#dump('routes', family, `ip -j -${family} route show table all`)) {
      const route = decodeRoute(msg, links);
      if (route) out.push(route);
    }
    return out;
  }

  /** ifindex → name of the netns's links (read once per socket). */
  links(): ReadonlyMap<number, string> {
    if (!this.#links) {
      this.#links = new Map();
      for (const msg of this.#dump('links', undefined, 'ip -j link show')) {
        const link = decodeLink(msg);
        this.#links.set(link.index, link.name);
      }
    }
    return this.#links;
  }

  /** Closes the socket. Idempotent. */
  close(): void {
    if (this.#fd < 0) return;
    libc().close(this.#fd);
    this.#fd = -1;
  }

  get fd(): number {
    if (this.#fd < 0) throw new Error('the netlink socket is closed');
    return this.#fd;
  }

  /** Sends one request and reads datagrams until its ack; throws a NetlinkError for a refusal. */
  #request(build: (seq: number) => Buffer, what: () => string): void {
    const seq = takeSeq();
    this.#send(build(seq), what);
    for (let i = 0; i < MAX_ACK_DATAGRAMS; i++) {
      for (const msg of this.#receive(what)) {
        if (msg.seq !== seq || msg.type !== NLMSG_ERROR) continue; // a late reply to an earlier request
        const ack = decodeAck(msg);
        if (ack.errno !== 0) throw new NetlinkError(ack.errno, what(), ack.message);
        return;
      }
    }
    throw new Error(`netlink ${what()}: no acknowledgement from the kernel`);
  }

  /** Sends a dump request and collects its messages until NLMSG_DONE; repeats an interrupted dump. */
  #dump(kind: 'rules' | 'routes' | 'links', family: IpFamily | undefined, label: string): NlMessage[] {
    const what = () => label;
    for (let attempt = 1; ; attempt++) {
      const seq = takeSeq();
      this.#send(encodeDumpRequest(kind, family, seq), what);
      const out: NlMessage[] = [];
      let interrupted = false;
      let done = false;
      while (!done) {
        for (const msg of this.#receive(what)) {
          if (msg.seq !== seq) continue;
          if (msg.flags & NLM_F_DUMP_INTR) interrupted = true;
          if (msg.type === NLMSG_DONE) {
            // its payload is the dump's own error, 0 when it went through
            const errno = msg.payload.length >= 4 ? Math.abs(readI32(msg.payload, 0)) : 0;
            if (errno > 0) throw new NetlinkError(errno, label, undefined);
            done = true;
            break;
          }
          if (msg.type === NLMSG_ERROR) {
            const ack = decodeAck(msg);
            throw new NetlinkError(ack.errno || 5, label, ack.message);
          }
          if (msg.type === NLMSG_NOOP) continue;
          if (msg.type === NLMSG_OVERRUN) throw new Error(`netlink ${label}: the kernel reports lost data (overrun)`);
          out.push({ ...msg, payload: Buffer.from(msg.payload) }); // off the shared receive buffer
          if (out.length > MAX_DUMP_MESSAGES) throw new Error(`netlink ${label}: more than ${MAX_DUMP_MESSAGES} entries`);
        }
      }
      // Changed while being dumped: ask again (ip would show the inconsistent result; we are stricter).
      if (!interrupted) return out;
      if (attempt >= DUMP_TRIES) throw new Error(`netlink ${label}: the table kept changing during ${DUMP_TRIES} dumps`);
    }
  }

  #send(msg: Buffer, what: () => string): void {
    const to = Buffer.alloc(12); // struct sockaddr_nl { family, pad, pid 0 (the kernel), groups 0 }
    writeU16(to, 0, AF_NETLINK);
    const sent = libc().sendto(this.fd, msg, msg.length, 0, to, to.length);
    if (sent < 0) throw sysError('sendto', `sendto(netlink, ${what()})`, lastErrno());
    if (sent !== msg.length) throw new Error(`netlink ${what()}: sent ${sent} of ${msg.length} bytes`);
  }

  /** One datagram's messages (views into the shared buffer: decode before the next receive). */
  #receive(what: () => string): NlMessage[] {
    recvBuffer ??= Buffer.allocUnsafe(RECV_BUFFER);
    const n = libc().recv(this.fd, recvBuffer, recvBuffer.length, MSG_TRUNC);
    if (n < 0) {
      const errno = lastErrno();
      const code = errnoName(errno);
      if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
        throw new SysError(errno, code, `recv(netlink, ${what()})`, `the kernel did not answer within ${RECV_TIMEOUT_MS} ms`);
      }
      throw sysError('recv', `recv(netlink, ${what()})`, errno);
    }
    if (n > recvBuffer.length) throw new Error(`netlink ${what()}: a ${n}-byte reply does not fit the ${recvBuffer.length}-byte buffer`);
    return parseMessages(recvBuffer.subarray(0, n));
  }
}

/**
 * Runs `fn` with a NETLINK_ROUTE socket of the network namespace `netns` (a path, or an open
 * handle), synchronously, inside that netns; the socket is closed before returning. A path is
 * opened and closed here; a handle stays the caller's.
 */
export function withRtnl<T>(netns: string | NetnsHandle, fn: (nl: RtnlSocket) => T): T {
  const handle = typeof netns === 'string' ? openNetns(netns) : netns;
  try {
    return inNetns(handle, () => {
      const nl = RtnlSocket.open();
      try {
        return fn(nl);
      } finally {
        nl.close();
      }
    });
  } finally {
    if (typeof netns === 'string') handle.close();
  }
}

// ---------------------------------------------------------------- helpers

/** The request in `ip` terms, for messages. */
export function describeRule(verb: 'add' | 'del', r: FwmarkRule): string {
  return `ip -${r.family} rule ${verb} fwmark ${cHex(r.fwmark)}/${cHex(r.fwmask)} lookup ${r.table} pref ${r.priority}`;
}

export function describeRoute(verb: 'replace' | 'del', r: LocalDefaultRoute): string {
  return `ip -${r.family} route ${verb} local ${r.family === 4 ? '0.0.0.0/0' : '::/0'} dev lo table ${r.table}`;
}

function takeSeq(): number {
  nextSeq = (nextSeq + 1) >>> 0;
  return nextSeq;
}

function familyCode(family: IpFamily): number {
  if (family === 4) return AF_INET;
  if (family === 6) return AF_INET6;
  throw new TypeError(`invalid address family ${String(family)}; expected 4 or 6`);
}

/** The 8-bit table field: the id when it fits, else RT_TABLE_UNSPEC (the u32 attribute carries it). */
function smallTable(table: number): number {
  if (!Number.isInteger(table) || table < 1 || table > 0xffffffff) throw new RangeError(`invalid routing table ${table}`);
  return table < 256 ? table : RT_TABLE_UNSPEC;
}

function u32Attr(attrs: ReadonlyMap<number, Buffer>, type: number): number | undefined {
  const b = attrs.get(type);
  return b !== undefined && b.length >= 4 ? readU32(b, 0) : undefined;
}

function cString(b: Buffer): string {
  const end = b.indexOf(0);
  return b.subarray(0, end < 0 ? b.length : end).toString();
}

function align(n: number): number {
  return (n + 3) & ~3;
}

function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  writeU32(b, 0, value);
  return b;
}

function readU16(b: Buffer, o: number): number {
  return LE ? b.readUInt16LE(o) : b.readUInt16BE(o);
}
function readU32(b: Buffer, o: number): number {
  return LE ? b.readUInt32LE(o) : b.readUInt32BE(o);
}
function readI32(b: Buffer, o: number): number {
  return LE ? b.readInt32LE(o) : b.readInt32BE(o);
}
function writeU16(b: Buffer, o: number, v: number): void {
  if (LE) b.writeUInt16LE(v, o);
  else b.writeUInt16BE(v, o);
}
function writeU32(b: Buffer, o: number, v: number): void {
  if (LE) b.writeUInt32LE(v >>> 0, o);
  else b.writeUInt32BE(v >>> 0, o);
}
function writeU64(b: Buffer, o: number, v: number): void {
  if (LE) b.writeBigUInt64LE(BigInt(v), o);
  else b.writeBigUInt64BE(BigInt(v), o);
}
