/**
 * The DNS proxy's decision, as a pure function: answer a query from the pushed Services, or hand
 * it on unchanged to the pod's own resolver.
 *
 * Why the proxy answers at all: a Service name then resolves from the config the node already
 * holds, without a round trip to cluster DNS (and keeps resolving while that is slow or down).
 * Why it answers so little: DNS capture in other meshes broke SRV lookups and dynamic updates
 * (brief §8, pain point 5). So the proxy answers exactly one shape of query and forwards every
 * other one byte for byte:
 *
 *   opcode QUERY, QR=0, one question, class IN, type A or AAAA, no records besides an EDNS(0)
 *   OPT of version 0, and a name that is a known Service's `<svc>.<ns>.svc.<clusterDomain>`.
 *
 * Which names: a pod's resolv.conf (written by the kubelet) says
 * `search <ns>.svc.<domain> svc.<domain> <domain>` with `ndots:5`, and the *client's* stub resolver
 * applies it: `echo`, `echo.demo` and `echo.demo.svc` all reach the network as the fully qualified
 * `echo.demo.svc.cluster.local.` (after, at most, misses like `echo.demo.demo.svc.cluster.local.`).
 * The proxy therefore sees only fully qualified names and answers only a Service's full hostname.
 * It never expands names itself — `echo.demo.` is a legal public name (a TLD "demo" exists) — and
 * never says NXDOMAIN: a name it does not know may still be a pod name, an ExternalName, a
 * `<hostname>.<svc>` record or a public name, which the pod's resolver knows how to answer.
 *
 * What an answer looks like (as CoreDNS's kubernetes plugin answers, so clients see no change):
 * - a ClusterIP Service: its cluster IPs of the asked family; a headless Service: the IPs of its
 *   ready endpoints (an endpoint of a publishNotReadyAddresses Service is reported ready);
 * - a known name without an address of the asked family: NOERROR with no answers (NODATA);
 * - AA=1, RA=1 (the proxy does offer recursion: it forwards), id, RD, CD and the question echoed
 *   exactly (case included: some clients check 0x20 case randomisation), TTL from the config;
 * - if the query had an OPT record, the response has one too (RFC 6891 §7), with our payload size
 *   and the DO bit copied (RFC 3225); the query's options are not echoed — the proxy implements
 *   none of them (a cookie or NSID echoed unprocessed would be a lie);
 * - an answer too big for the client's UDP size keeps as many whole records as fit and sets TC, so
 *   clients retry over TCP (and old ones that cannot still get usable addresses).
 * A headless Service with no ready endpoint is not in the index: its queries are forwarded.
 */
import type { Service } from '../../api/types.js';
import {
  DNS_MAX_MESSAGE,
  DNS_UDP_CLASSIC_MAX,
  DnsClass,
  DnsFormatError,
  DnsOpcode,
  DnsRcode,
  DnsType,
  canonicalName,
  ipv4Bytes,
  ipv6Bytes,
  parseMessage,
  serializeMessage,
  type DnsMessage,
  type DnsOpt,
  type DnsQuestion,
  type DnsRecord,
} from './codec.js';

/** The addresses one name resolves to, per family. */
export interface DnsAddresses {
  v4: string[];
  v6: string[];
}

/** Service hostname (lower case, no trailing dot) → its addresses. */
export type DnsIndex = ReadonlyMap<string, DnsAddresses>;

/** The Service fields the index reads. */
export type DnsService = Pick<Service, 'hostname' | 'vips' | 'endpoints'>;

/**
 * Builds the index from the pushed Services. `hostname` is the control plane's
 * `<name>.<namespace>.svc.<clusterDomain>`, so the agent needs no cluster-domain setting of its own.
 * Addresses that are not literal IPv4/IPv6 addresses are skipped (they could not be encoded).
 */
export function buildDnsIndex(services: Iterable<DnsService>): Map<string, DnsAddresses> {
  const index = new Map<string, DnsAddresses>();
  for (const svc of services) {
    const headless = svc.vips.length === 0;
    const ips = headless ? svc.endpoints.filter((e) => e.status === 'ready').map((e) => e.ip) : svc.vips;
    const addrs: DnsAddresses = { v4: [], v6: [] };
    for (const ip of new Set(ips)) {
      if (ipv4Bytes(ip)) addrs.v4.push(ip);
      else if (ipv6Bytes(ip)) addrs.v6.push(ip);
    }
    if (addrs.v4.length + addrs.v6.length === 0) continue;
    index.set(canonicalName(svc.hostname), addrs);
  }
  return index;
}

export interface AnswerOptions {
  /** TTL of answers, seconds (default 30, as CoreDNS's kubernetes plugin) */
  ttlSeconds: number;
  /** the transport the query came on: decides the size limit of the response */
  transport: 'udp' | 'tcp';
  /** rotates the address list by this many places (a per-query counter spreads clients over endpoints) */
  rotation: number;
  /** the UDP payload size our OPT record advertises (default 1232, the DNS Flag Day 2020 value) */
  udpPayloadSize: number;
}

export const DEFAULT_ANSWER_OPTIONS: Readonly<AnswerOptions> = { ttlSeconds: 30, transport: 'udp', rotation: 0, udpPayloadSize: 1232 };

/** Why a query is forwarded rather than answered (a label for logs and metrics). */
export type ForwardReason =
  | 'malformed' // not a message the codec can read: the resolver decides what it is
  | 'not-a-query' // QR=1
  | 'opcode' // UPDATE, NOTIFY, IQUERY, STATUS, …
  | 'question-count' // zero or several questions
  | 'class' // CH, ANY, …
  | 'type' // SRV, TXT, PTR, ANY, HTTPS, …
  | 'extra-records' // answers/authorities in a query, or additionals such as TSIG
  | 'edns-version' // EDNS version > 0: the resolver answers BADVERS
  | 'unknown-name'; // not a Service hostname in the pushed config

export type LocalAnswer =
  | { kind: 'answer'; response: Buffer; name: string; qtype: 'A' | 'AAAA'; addresses: number; truncated: boolean }
  | { kind: 'forward'; reason: ForwardReason; detail?: string };

/** Decides for the raw bytes of a query; never throws for any input. */
export function answerLocally(query: Buffer, index: DnsIndex, options: Partial<AnswerOptions> = {}): LocalAnswer {
  let msg: DnsMessage;
  try {
    msg = parseMessage(query);
  } catch (err) {
    if (err instanceof DnsFormatError) return { kind: 'forward', reason: 'malformed', detail: `${err.code}: ${err.message}` };
    throw err;
  }
  return answerMessage(msg, index, options);
}

/** Decides for a parsed query. */
export function answerMessage(msg: DnsMessage, index: DnsIndex, options: Partial<AnswerOptions> = {}): LocalAnswer {
  const o = { ...DEFAULT_ANSWER_OPTIONS, ...options };
  const h = msg.header;
  if (h.qr) return forward('not-a-query');
  if (h.opcode !== DnsOpcode.QUERY) return forward('opcode', `opcode ${h.opcode}`);
  if (msg.questions.length !== 1) return forward('question-count', `${msg.questions.length} questions`);
  const q = msg.questions[0]!;
  if (q.class !== DnsClass.IN) return forward('class', `class ${q.class}`);
  if (q.type !== DnsType.A && q.type !== DnsType.AAAA) return forward('type', `type ${q.type}`);
  if (msg.answers.length || msg.authorities.length || msg.additionals.length) return forward('extra-records');
  if (msg.opt && msg.opt.version !== 0) return forward('edns-version', `EDNS version ${msg.opt.version}`);
  const addrs = index.get(canonicalName(q.name));
  if (!addrs) return forward('unknown-name');

  const v6 = q.type === DnsType.AAAA;
  const ips = rotate(v6 ? addrs.v6 : addrs.v4, o.rotation);
  const records = ips.map((ip) => addressRecord(q, ip, v6, o.ttlSeconds));
  const limit = responseLimit(msg.opt, o.transport);
  const { response, kept } = fitResponse(msg, records, o, limit);
  return { kind: 'answer', response, name: q.name, qtype: v6 ? 'AAAA' : 'A', addresses: kept, truncated: kept < records.length };
}

function forward(reason: ForwardReason, detail?: string): LocalAnswer {
  return detail === undefined ? { kind: 'forward', reason } : { kind: 'forward', reason, detail };
}

function rotate<T>(list: readonly T[], by: number): T[] {
  if (list.length < 2) return [...list];
  const k = ((Math.trunc(by) % list.length) + list.length) % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}

function addressRecord(q: DnsQuestion, ip: string, v6: boolean, ttl: number): DnsRecord {
  // The index only holds addresses that encode (buildDnsIndex checks), so the fallback is never used.
  const data = (v6 ? ipv6Bytes(ip) : ipv4Bytes(ip)) ?? Buffer.alloc(v6 ? 16 : 4);
  // Owner = the question's name as asked: the writer turns it into a pointer to offset 12.
  return { name: q.name, type: q.type, class: DnsClass.IN, ttl, data };
}

/** The largest response the client accepts on this transport (RFC 1035 §4.2.1, RFC 6891 §6.2.5). */
function responseLimit(opt: DnsOpt | undefined, transport: 'udp' | 'tcp'): number {
  if (transport === 'tcp') return DNS_MAX_MESSAGE;
  return opt ? Math.min(DNS_MAX_MESSAGE, Math.max(DNS_UDP_CLASSIC_MAX, opt.udpPayloadSize)) : DNS_UDP_CLASSIC_MAX;
}

function responseFor(query: DnsMessage, answers: DnsRecord[], o: AnswerOptions, truncated: boolean): DnsMessage {
  const h = query.header;
  const msg: DnsMessage = {
    header: { id: h.id, qr: true, opcode: DnsOpcode.QUERY, aa: true, tc: truncated, rd: h.rd, ra: true, z: false, ad: false, cd: h.cd, rcode: DnsRcode.NOERROR },
    questions: query.questions.map((q) => ({ ...q })),
    answers,
    authorities: [],
    additionals: [],
  };
  if (query.opt) msg.opt = { udpPayloadSize: o.udpPayloadSize, extendedRcode: 0, version: 0, dnssecOk: query.opt.dnssecOk, flags: 0, options: [] };
  return msg;
}

/** Serialises the response, dropping trailing records (and setting TC) until it fits `limit`. */
function fitResponse(query: DnsMessage, records: DnsRecord[], o: AnswerOptions, limit: number): { response: Buffer; kept: number } {
  const full = serializeMessage(responseFor(query, records, o, false));
  if (full.length <= limit) return { response: full, kept: records.length };
  // Every answer record has the same size (a 2-octet pointer owner, 10 octets of fields, RDATA),
  // so the number that fits follows from the empty response's size.
  const empty = serializeMessage(responseFor(query, [], o, true));
  const perRecord = (full.length - empty.length) / records.length;
  const kept = Math.max(0, Math.floor((limit - empty.length) / perRecord));
  return { response: serializeMessage(responseFor(query, records.slice(0, kept), o, true)), kept };
}

/**
 * A response with only a response code (e.g. SERVFAIL when the pod's resolver cannot be reached),
 * echoing the query's id, flags and question so the client matches it. Undefined when the query is
 * too broken to echo — then there is no one to answer; drop it.
 */
export function buildErrorResponse(query: Buffer, rcode: number): Buffer | undefined {
  let msg: DnsMessage;
  try {
    msg = parseMessage(query);
  } catch {
    return undefined;
  }
  if (msg.header.qr || rcode < 0 || rcode > 15) return undefined;
  const h = msg.header;
  const reply: DnsMessage = {
    header: { id: h.id, qr: true, opcode: h.opcode, aa: false, tc: false, rd: h.rd, ra: true, z: false, ad: false, cd: h.cd, rcode },
    questions: msg.questions,
    answers: [],
    authorities: [],
    additionals: [],
  };
  if (msg.opt) reply.opt = { udpPayloadSize: DEFAULT_ANSWER_OPTIONS.udpPayloadSize, extendedRcode: 0, version: 0, dnssecOk: msg.opt.dnssecOk, flags: 0, options: [] };
  try {
    return serializeMessage(reply);
  } catch {
    return undefined;
  }
}
