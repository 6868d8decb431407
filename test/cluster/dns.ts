// The local cluster's DNS: the names of the Kubernetes DNS specification, answered from Services
// and EndpointSlices, at the cluster DNS address (10.96.0.10:53, UDP and TCP) inside every node's
// network namespace — the address each pod's resolv.conf names.
//
//   <svc>.<ns>.svc.<domain>               A: the ClusterIP; headless: the ready endpoints' IPs
//   <host>.<svc>.<ns>.svc.<domain>        A: one endpoint of a headless Service (hostname or a-b-c-d)
//   _<port>._<proto>.<svc>.<ns>.svc.<domain>  SRV for named ports
//   <svc>.<ns>.svc.<domain> (ExternalName)    CNAME
//   a-b-c-d.<ns>.pod.<domain>             A: a.b.c.d
// Unknown names in the domain get NXDOMAIN (with the zone's SOA, so resolvers cache the miss
// briefly); names outside it REFUSED: there is no upstream, and saying so is quicker than a timeout.
//
// Three layers: a minimal wire codec (only what these answers need), the zone (pure: objects in,
// answers out) and ClusterDns, which keeps the zone current and serves it. The sockets are made
// in each node netns by this process (see bindUdpInNetns), so no DNS process runs per node.
import dgram from 'node:dgram';
import net from 'node:net';
import type { ApiClient } from './apiserver/controllers/client.js';
import { createListenSocket, inNetns, openNetns } from '../../src/sys/index.js';
import { CLUSTER_DNS_IP, CLUSTER_DOMAIN } from './network.js';
import { buildServiceModel, compareIp, type ServiceInfo } from './services.js';

// ---------------------------------------------------------------- wire format (RFC 1035, 2782)

export const TYPE = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, AAAA: 28, SRV: 33, ANY: 255 } as const;
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
const CLASS_IN = 1;
/** The answer size a plain (non-EDNS) UDP client accepts; larger answers are truncated (TC). */
export const UDP_MAX = 512;

export interface Question {
  name: string;
  type: number;
  class: number;
}

export interface Query {
  id: number;
  opcode: number;
  recursionDesired: boolean;
  questions: Question[];
}

export interface Srv {
  priority: number;
  weight: number;
  port: number;
  target: string;
}

export interface Soa {
  mname: string;
  rname: string;
  serial: number;
  refresh: number;
  retry: number;
  expire: number;
  minimum: number;
}

export type RecordData = { type: typeof TYPE.A; ip: string } | { type: typeof TYPE.CNAME; target: string } | { type: typeof TYPE.SRV; srv: Srv } | { type: typeof TYPE.SOA; soa: Soa };
export type DnsRecord = RecordData & { name: string; ttl: number };

export interface Answer {
  rcode: number;
  authoritative: boolean;
  answers: DnsRecord[];
  authority: DnsRecord[];
  additionals: DnsRecord[];
}

export class DnsFormatError extends Error {}

/** Reads a (possibly compressed) name at `offset`; returns it with the offset after it. */
export function readName(buf: Buffer, offset: number): { name: string; next: number } {
  const labels: string[] = [];
  let pos = offset;
  let next = -1;
  for (let hops = 0; ; hops++) {
    if (hops > 64 || pos >= buf.length) throw new DnsFormatError('bad name');
    const len = buf[pos]!;
    if (len === 0) {
      pos += 1;
      break;
    }
    if ((len & 0xc0) === 0xc0) {
      if (pos + 1 >= buf.length) throw new DnsFormatError('bad pointer');
      if (next < 0) next = pos + 2;
      pos = ((len & 0x3f) << 8) | buf[pos + 1]!;
      continue;
    }
    if (len > 63 || pos + 1 + len > buf.length) throw new DnsFormatError('bad label');
    labels.push(buf.toString('latin1', pos + 1, pos + 1 + len));
    pos += 1 + len;
  }
  return { name: labels.join('.'), next: next < 0 ? pos : next };
}

export function parseQuery(buf: Buffer): Query {
  if (buf.length < 12) throw new DnsFormatError('short message');
  const flags = buf.readUInt16BE(2);
  if (flags & 0x8000) throw new DnsFormatError('not a query');
  const qdcount = buf.readUInt16BE(4);
  const questions: Question[] = [];
  let pos = 12;
  for (let i = 0; i < qdcount; i++) {
    const { name, next } = readName(buf, pos);
    if (next + 4 > buf.length) throw new DnsFormatError('short question');
    questions.push({ name, type: buf.readUInt16BE(next), class: buf.readUInt16BE(next + 2) });
    pos = next + 4;
  }
  return { id: buf.readUInt16BE(0), opcode: (flags >> 11) & 0xf, recursionDesired: (flags & 0x0100) !== 0, questions };
}

function encodeName(name: string): Buffer {
  const parts = name.split('.').filter(Boolean);
  const out: Buffer[] = [];
  for (const p of parts) {
    const label = Buffer.from(p, 'latin1');
    if (label.length > 63) throw new DnsFormatError(`label too long in ${name}`);
    out.push(Buffer.from([label.length]), label);
  }
  out.push(Buffer.from([0]));
  return Buffer.concat(out);
}

function encodeRecord(r: DnsRecord): Buffer {
  let rdata: Buffer;
  switch (r.type) {
    case TYPE.A:
      rdata = Buffer.from(r.ip.split('.').map(Number));
      break;
    case TYPE.CNAME:
      rdata = encodeName(r.target);
      break;
    case TYPE.SRV: {
      const head = Buffer.alloc(6);
      head.writeUInt16BE(r.srv.priority, 0);
      head.writeUInt16BE(r.srv.weight, 2);
      head.writeUInt16BE(r.srv.port, 4);
      rdata = Buffer.concat([head, encodeName(r.srv.target)]);
      break;
    }
    case TYPE.SOA: {
      const nums = Buffer.alloc(20);
      [r.soa.serial, r.soa.refresh, r.soa.retry, r.soa.expire, r.soa.minimum].forEach((n, i) => nums.writeUInt32BE(n, i * 4));
      rdata = Buffer.concat([encodeName(r.soa.mname), encodeName(r.soa.rname), nums]);
      break;
    }
  }
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(r.type, 0);
  fixed.writeUInt16BE(CLASS_IN, 2);
  fixed.writeUInt32BE(r.ttl, 4);
  fixed.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([encodeName(r.name), fixed, rdata]);
}

export interface ResponseInput {
  id: number;
  opcode?: number;
  recursionDesired?: boolean;
  question?: Question;
  answer: Answer;
  /** UDP: a response longer than this is sent truncated (TC set, no records) so the client retries over TCP */
  maxSize?: number;
}

export function encodeResponse(r: ResponseInput): Buffer {
  const body = (withRecords: boolean) => {
    const sections = withRecords ? [r.answer.answers, r.answer.authority, r.answer.additionals] : [[], [], []];
    const header = Buffer.alloc(12);
    header.writeUInt16BE(r.id, 0);
    const tc = withRecords ? 0 : 0x0200;
    const flags = 0x8000 | ((r.opcode ?? 0) << 11) | (r.answer.authoritative ? 0x0400 : 0) | tc | (r.recursionDesired ? 0x0100 : 0) | (r.answer.rcode & 0xf);
    header.writeUInt16BE(flags, 2);
    header.writeUInt16BE(r.question ? 1 : 0, 4);
    sections.forEach((s, i) => header.writeUInt16BE(s.length, 6 + i * 2));
    const q = r.question ? [encodeName(r.question.name), Buffer.from([r.question.type >> 8, r.question.type & 0xff, r.question.class >> 8, r.question.class & 0xff])] : [];
    return Buffer.concat([header, ...q, ...sections.flat().map(encodeRecord)]);
  };
  const full = body(true);
  return r.maxSize !== undefined && full.length > r.maxSize ? body(false) : full;
}

// ---------------------------------------------------------------- the zone (pure)

export const DNS_TTL = 5;

interface Node {
  a: string[];
  srv: Srv[];
  cname?: string;
}

export class Zone {
  private readonly names = new Map<string, Node>();
  /** names with records below them but none of their own ("svc.cluster.local"): NOERROR, no data */
  private readonly interior = new Set<string>();
  readonly soa: Soa;

  constructor(
    readonly domain: string,
    serial = 1,
  ) {
    this.soa = { mname: `ns.dns.${domain}`, rname: `hostmaster.${domain}`, serial, refresh: 7200, retry: 1800, expire: 86400, minimum: DNS_TTL };
    this.markInterior(domain);
  }

  private node(name: string): Node {
    const key = name.toLowerCase();
    let n = this.names.get(key);
    if (!n) {
      n = { a: [], srv: [] };
      this.names.set(key, n);
      this.markInterior(key.slice(key.indexOf('.') + 1));
    }
    return n;
  }

  private markInterior(name: string): void {
    for (let n = name; n.length >= this.domain.length && n.endsWith(this.domain); n = n.slice(n.indexOf('.') + 1)) {
      this.interior.add(n);
      if (!n.includes('.')) break;
    }
  }

  /** Makes `name` exist (NOERROR for every type) even before it has records. */
  addName(name: string): void {
    this.node(name);
  }

  addA(name: string, ip: string): void {
    const n = this.node(name);
    if (!n.a.includes(ip)) n.a.push(ip);
  }

  addSrv(name: string, srv: Srv): void {
    this.node(name).srv.push(srv);
  }

  addCname(name: string, target: string): void {
    this.node(name).cname = target;
  }

  lookup(name: string): Node | undefined {
    return this.names.get(name.toLowerCase());
  }

  inZone(name: string): boolean {
    const n = name.toLowerCase().replace(/\.$/, '');
    return n === this.domain || n.endsWith(`.${this.domain}`);
  }

  isInterior(name: string): boolean {
    return this.interior.has(name.toLowerCase());
  }
}

/** The dashed form Kubernetes DNS uses for an address as a label: 10.244.1.5 → 10-244-1-5. */
export const dashed = (ip: string): string => ip.replaceAll('.', '-');

/** The zone for `services` under `domain` (see the header for the names). */
export function buildZone(services: readonly ServiceInfo[], domain = CLUSTER_DOMAIN, serial = 1): Zone {
  const zone = new Zone(domain, serial);
  for (const svc of services) {
    const base = `${svc.name}.${svc.namespace}.svc.${domain}`;
    if (svc.externalName) {
      zone.addCname(base, svc.externalName);
      continue;
    }
    if (svc.clusterIP) {
      zone.addA(base, svc.clusterIP);
      for (const p of svc.ports) if (p.name) zone.addSrv(`_${p.name}._${p.protocol.toLowerCase()}.${base}`, { priority: 0, weight: 100, port: p.port, target: base });
      continue;
    }
    if (!svc.headless) continue;
    const eps = svc.endpoints.filter((e) => e.ready || svc.publishNotReadyAddresses).sort((a, b) => compareIp(a.ip, b.ip));
    // Even with no ready endpoint the Service's name exists: NOERROR with no data, not NXDOMAIN.
    zone.addName(base);
    for (const e of eps) {
      const host = `${e.hostname ?? dashed(e.ip)}.${base}`;
      zone.addA(base, e.ip);
      zone.addA(host, e.ip);
      for (const p of e.ports) if (p.name) zone.addSrv(`_${p.name}._${p.protocol.toLowerCase()}.${base}`, { priority: 0, weight: 100, port: p.port, target: host });
    }
  }
  return zone;
}

const POD_NAME = /^(\d{1,3})-(\d{1,3})-(\d{1,3})-(\d{1,3})\.[a-z0-9-]+\.pod\.(.+)$/;

/** Answers one question from `zone`. */
export function answerQuestion(zone: Zone, q: Question): Answer {
  const none = (rcode: number, authoritative: boolean): Answer => ({
    rcode,
    authoritative,
    answers: [],
    authority: authoritative ? [{ name: zone.domain, ttl: DNS_TTL, type: TYPE.SOA, soa: zone.soa }] : [],
    additionals: [],
  });
  const name = q.name.replace(/\.$/, '');
  if (q.class !== CLASS_IN && q.class !== 255) return none(RCODE.REFUSED, false);
  if (!zone.inZone(name)) return none(RCODE.REFUSED, false);
  const wants = (t: number) => q.type === t || q.type === TYPE.ANY;

  const pod = POD_NAME.exec(name.toLowerCase());
  if (pod && pod[5] === zone.domain && pod.slice(1, 5).every((o) => Number(o) <= 255)) {
    const ip = pod.slice(1, 5).map(Number).join('.');
    return wants(TYPE.A) ? { ...none(RCODE.NOERROR, true), authority: [], answers: [{ name, ttl: DNS_TTL, type: TYPE.A, ip }] } : none(RCODE.NOERROR, true);
  }

  if (wants(TYPE.SOA) && name.toLowerCase() === zone.domain) {
    return { ...none(RCODE.NOERROR, true), authority: [], answers: [{ name, ttl: DNS_TTL, type: TYPE.SOA, soa: zone.soa }] };
  }
  const node = zone.lookup(name);
  if (!node) return none(zone.isInterior(name) ? RCODE.NOERROR : RCODE.NXDOMAIN, true);
  if (node.cname && q.type !== TYPE.CNAME) {
    // The target lies outside the cluster; the client resolves it (and gets REFUSED here).
    return { ...none(RCODE.NOERROR, true), authority: [], answers: [{ name, ttl: DNS_TTL, type: TYPE.CNAME, target: node.cname }] };
  }
  const answers: DnsRecord[] = [];
  const additionals: DnsRecord[] = [];
  if (wants(TYPE.A)) for (const ip of node.a) answers.push({ name, ttl: DNS_TTL, type: TYPE.A, ip });
  if (wants(TYPE.CNAME) && node.cname) answers.push({ name, ttl: DNS_TTL, type: TYPE.CNAME, target: node.cname });
  if (wants(TYPE.SRV)) {
    for (const srv of node.srv) {
      answers.push({ name, ttl: DNS_TTL, type: TYPE.SRV, srv });
      // The targets' addresses ride along, as CoreDNS sends them, sparing a round trip.
      for (const ip of zone.lookup(srv.target)?.a ?? []) {
        if (!additionals.some((r) => r.name === srv.target && r.type === TYPE.A && r.ip === ip)) additionals.push({ name: srv.target, ttl: DNS_TTL, type: TYPE.A, ip });
      }
    }
  }
  if (answers.length === 0) return none(RCODE.NOERROR, true);
  return { rcode: RCODE.NOERROR, authoritative: true, answers, authority: [], additionals };
}

/** A whole response for a raw query (undefined when the packet is not worth answering at all). */
export function respond(zone: Zone, packet: Buffer, maxSize?: number): Buffer | undefined {
  let query: Query;
  try {
    query = parseQuery(packet);
  } catch {
    if (packet.length < 12) return undefined;
    const id = packet.readUInt16BE(0);
    return encodeResponse({ id, answer: { rcode: RCODE.FORMERR, authoritative: false, answers: [], authority: [], additionals: [] } });
  }
  const base = { id: query.id, opcode: query.opcode, recursionDesired: query.recursionDesired, question: query.questions[0], maxSize };
  const fail = (rcode: number): Answer => ({ rcode, authoritative: false, answers: [], authority: [], additionals: [] });
  if (query.opcode !== 0) return encodeResponse({ ...base, answer: fail(RCODE.NOTIMP) });
  if (query.questions.length !== 1) return encodeResponse({ ...base, answer: fail(RCODE.FORMERR) });
  return encodeResponse({ ...base, answer: answerQuestion(zone, query.questions[0]!) });
}

// ---------------------------------------------------------------- serving

/**
 * A UDP socket bound inside the network namespace at `netnsPath`. dgram creates its socket inside
 * bind(); with an address literal and a lookup that answers synchronously, bind() runs to the
 * socket() and bind() calls before it returns, so doing it inside inNetns puts the socket in the
 * node's namespace (src/sys/netns.ts explains why only synchronous work may run there).
 */
export function bindUdpInNetns(netnsPath: string, host: string, port: number): Promise<dgram.Socket> {
  const sock = dgram.createSocket({ type: 'udp4', lookup: (address, _opts, cb) => cb(null, address, 4) });
  return new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.once('listening', () => {
      sock.off('error', reject);
      resolve(sock);
    });
    const ns = openNetns(netnsPath);
    try {
      inNetns(ns, () => sock.bind({ address: host, port }));
    } catch (err) {
      reject(err as Error);
    } finally {
      ns.close();
    }
  });
}

/** A TCP server listening inside the namespace at `netnsPath`. */
export async function listenTcpInNetns(netnsPath: string, host: string, port: number, onConnection: (s: net.Socket) => void): Promise<net.Server> {
  const ns = openNetns(netnsPath);
  let fd: number;
  try {
    fd = inNetns(ns, () => createListenSocket({ family: 4, host, port }));
  } finally {
    ns.close();
  }
  const server = net.createServer(onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ fd }, () => resolve());
  });
  return server;
}

/** DNS over TCP: each message is preceded by its length (2 bytes); a connection may carry several. */
export function serveTcpConnection(sock: net.Socket, answer: (packet: Buffer) => Buffer | undefined): void {
  let pending = Buffer.alloc(0);
  sock.setTimeout(30_000, () => sock.destroy());
  sock.on('error', () => sock.destroy());
  sock.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 2) {
      const len = pending.readUInt16BE(0);
      if (pending.length < 2 + len) break;
      const reply = answer(pending.subarray(2, 2 + len));
      pending = pending.subarray(2 + len);
      if (!reply) continue;
      const prefix = Buffer.alloc(2);
      prefix.writeUInt16BE(reply.length);
      sock.write(Buffer.concat([prefix, reply]));
    }
  });
}

export interface DnsNode {
  name: string;
  /** path of the node's network namespace, e.g. /run/netns/ambit-c-node-1 */
  netnsPath: string;
}

export interface ClusterDnsOptions {
  api: ApiClient;
  nodes: readonly DnsNode[];
  /** default 10.96.0.10; the address must already exist in each node netns */
  ip?: string;
  port?: number;
  domain?: string;
  log?: (s: string) => void;
}

/** Serves the cluster zone on every node and rebuilds it whenever Services or EndpointSlices change. */
export class ClusterDns {
  private zone: Zone;
  private serial = 1;
  private readonly stops: Array<() => void> = [];
  private readonly udp: dgram.Socket[] = [];
  private readonly tcp: net.Server[] = [];
  private readonly conns = new Set<net.Socket>();
  private rebuildTimer: NodeJS.Timeout | undefined;
  /** queries answered, for tests and benchmarks */
  queries = 0;

  constructor(private readonly opts: ClusterDnsOptions) {
    this.zone = new Zone(opts.domain ?? CLUSTER_DOMAIN);
  }

  get domain(): string {
    return this.opts.domain ?? CLUSTER_DOMAIN;
  }

  async start(): Promise<void> {
    for (const r of ['v1/services', 'discovery.k8s.io/v1/endpointslices']) this.stops.push(this.opts.api.watch(r, () => this.scheduleRebuild()));
    this.rebuild();
    const ip = this.opts.ip ?? CLUSTER_DNS_IP;
    const port = this.opts.port ?? 53;
    try {
      for (const node of this.opts.nodes) {
        const udp = await bindUdpInNetns(node.netnsPath, ip, port);
        udp.on('message', (msg, peer) => {
          const reply = this.answer(msg, UDP_MAX);
          if (reply) udp.send(reply, peer.port, peer.address);
        });
        udp.on('error', (err) => this.opts.log?.(`dns ${node.name}: ${err.message}`));
        this.udp.push(udp);
        this.tcp.push(
          await listenTcpInNetns(node.netnsPath, ip, port, (s) => {
            this.conns.add(s);
            s.on('close', () => this.conns.delete(s));
            serveTcpConnection(s, (m) => this.answer(m));
          }),
        );
      }
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  async stop(): Promise<void> {
    for (const s of this.stops.splice(0)) s();
    clearTimeout(this.rebuildTimer);
    for (const u of this.udp.splice(0)) u.close();
    for (const c of this.conns) c.destroy();
    await Promise.all(this.tcp.splice(0).map((t) => new Promise<void>((resolve) => t.close(() => resolve()))));
  }

  /** The answer to one raw query, from the current zone. */
  answer(packet: Buffer, maxSize?: number): Buffer | undefined {
    this.queries++;
    return respond(this.zone, packet, maxSize);
  }

  private scheduleRebuild(): void {
    if (this.rebuildTimer) return;
    // A rollout changes many objects in one burst; one rebuild covers them.
    this.rebuildTimer = setTimeout(() => {
      this.rebuildTimer = undefined;
      this.rebuild();
    }, 10);
  }

  private rebuild(): void {
    const services = buildServiceModel(this.opts.api.list('v1/services').items, this.opts.api.list('discovery.k8s.io/v1/endpointslices').items);
    this.zone = buildZone(services, this.domain, ++this.serial);
  }
}
