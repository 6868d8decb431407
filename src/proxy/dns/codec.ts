/**
 * DNS wire format for the in-pod DNS proxy: parse and serialise messages (RFC 1035 §4, AAAA of
 * RFC 3596, the EDNS(0) OPT pseudo-record of RFC 6891) and frame them on TCP (RFC 1035 §4.2.2).
 *
 * Why our own codec: the proxy must read every query a pod sends, decide in microseconds whether it
 * can answer it, and hand anything else on byte for byte. That needs a parser that is strict about
 * shape, never trusts a count or a pointer in the packet, and fails with one typed error
 * (`DnsFormatError`) so the caller can forward the packet unchanged instead of crashing.
 *
 * Safety properties, each tested in codec.test.ts:
 * - every read is bounds-checked, so a truncated message or a count that lies ends in TRUNCATED;
 * - a compression pointer must point before the labels it continues, so a name is read in
 *   strictly backward-moving stretches and can never loop (MAX_POINTER_HOPS bounds it besides);
 * - names are limited to 255 octets on the wire and labels to 63, as RFC 1035 §2.3.4 demands;
 * - record data (RDATA) is kept as raw bytes; only OPT's is decoded, because its options carry no
 *   names. RDATA of other types may hold compression pointers relative to the message it came from,
 *   so it is not portable into another message — the proxy never does that.
 */

export const DNS_HEADER_SIZE = 12;
/** A DNS message cannot exceed what a TCP length prefix can say. */
export const DNS_MAX_MESSAGE = 65535;
/** RFC 1035 §2.3.4: what a plain UDP client accepts. */
export const DNS_UDP_CLASSIC_MAX = 512;
const MAX_LABEL = 63;
const MAX_NAME_WIRE = 255;
/** A legal name has at most 127 labels, so it can never need more hops than that. */
const MAX_POINTER_HOPS = 127;
/** Highest offset a 14-bit compression pointer can reach. */
const MAX_POINTER_TARGET = 0x3fff;

export const DnsType = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, OPT: 41, TSIG: 250, ANY: 255 } as const;
export const DnsClass = { IN: 1, CH: 3, ANY: 255 } as const;
export const DnsOpcode = { QUERY: 0, IQUERY: 1, STATUS: 2, NOTIFY: 4, UPDATE: 5 } as const;
export const DnsRcode = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

export type DnsErrorCode =
  /** the message ends inside a field (or a count promises more than is there) */
  | 'TRUNCATED'
  /** a label length byte with the reserved 0b01/0b10 prefixes (a length above 63) */
  | 'BAD_LABEL'
  /** a label longer than 63 octets in a name to encode */
  | 'LABEL_TOO_LONG'
  /** a name longer than 255 octets on the wire */
  | 'NAME_TOO_LONG'
  /** a compression pointer that does not point strictly backwards (a loop) or past the message */
  | 'BAD_POINTER'
  /** more pointer hops than any legal name needs */
  | 'TOO_MANY_POINTERS'
  /** bytes left over after the last section the header announced */
  | 'TRAILING_BYTES'
  /** an OPT record that breaks RFC 6891 (not the root name, two of them, options overrunning) */
  | 'BAD_OPT'
  /** a field value that does not fit its wire width, or a malformed name in presentation form */
  | 'BAD_VALUE'
  /** a message that would exceed 65535 octets */
  | 'MESSAGE_TOO_LARGE'
  /** a TCP frame longer than the reader allows */
  | 'FRAME_TOO_LARGE';

/** The one error this module throws. `offset` is where in the input the problem was found, if it came from one. */
export class DnsFormatError extends Error {
  readonly code: DnsErrorCode;
  readonly offset: number | undefined;
  constructor(code: DnsErrorCode, message: string, offset?: number) {
    super(offset === undefined ? message : `${message} (at byte ${offset})`);
    this.name = 'DnsFormatError';
    this.code = code;
    this.offset = offset;
  }
}

export interface DnsHeader {
  id: number;
  /** QR: a response */
  qr: boolean;
  opcode: number;
  /** AA: authoritative answer */
  aa: boolean;
  /** TC: truncated */
  tc: boolean;
  /** RD: recursion desired */
  rd: boolean;
  /** RA: recursion available */
  ra: boolean;
  /** the reserved Z bit (must be zero; kept so a round trip is exact) */
  z: boolean;
  /** AD: authentic data (RFC 4035) */
  ad: boolean;
  /** CD: checking disabled (RFC 4035) */
  cd: boolean;
  /** the low four bits of the response code (OPT carries the high eight) */
  rcode: number;
}

export interface DnsQuestion {
  /** presentation form, case preserved, no trailing dot ("" is the root); see nameToString */
  name: string;
  type: number;
  class: number;
}

export interface DnsRecord {
  name: string;
  type: number;
  class: number;
  ttl: number;
  /** raw RDATA (see the header comment about compressed names inside it) */
  data: Buffer;
}

export interface DnsOption {
  code: number;
  data: Buffer;
}

/** The OPT pseudo-record (RFC 6891 §6.1.2), decoded from its CLASS and TTL fields. */
export interface DnsOpt {
  /** requestor's UDP payload size (the CLASS field) */
  udpPayloadSize: number;
  /** upper eight bits of the 12-bit response code */
  extendedRcode: number;
  version: number;
  /** DO: DNSSEC OK (RFC 3225) */
  dnssecOk: boolean;
  /** the other 15 flag bits, kept as received */
  flags: number;
  options: DnsOption[];
}

export interface DnsMessage {
  header: DnsHeader;
  questions: DnsQuestion[];
  answers: DnsRecord[];
  authorities: DnsRecord[];
  /** the additional section without the OPT record */
  additionals: DnsRecord[];
  /** the OPT record of the additional section, if there was one; serialised last */
  opt?: DnsOpt;
}

// ---------------------------------------------------------------- names (presentation form)

/**
 * One label in presentation form (RFC 1035 §5.1): printable ASCII as is, `.` and `\` escaped with a
 * backslash, anything else as `\DDD`. Escaping dots keeps "a.b" (two labels) and "a\.b" (one label)
 * apart, so a weird label can never pass for a Service name.
 */
function labelToString(buf: Buffer, start: number, end: number): string {
  let s = '';
  for (let i = start; i < end; i++) {
    const b = buf[i]!;
    if (b === 0x2e || b === 0x5c) s += '\\' + String.fromCharCode(b);
    else if (b > 0x20 && b < 0x7f) s += String.fromCharCode(b);
    else s += '\\' + String(b).padStart(3, '0');
  }
  return s;
}

/** Drops a final unescaped dot ("a.b." → "a.b"; in "a\." the dot is escaped and stays). */
function stripTrailingDot(name: string): string {
  if (!name.endsWith('.')) return name;
  let backslashes = 0;
  for (let i = name.length - 2; i >= 0 && name[i] === '\\'; i--) backslashes++;
  return backslashes % 2 === 0 ? name.slice(0, -1) : name;
}

/** Splits a presentation-form name into label bytes; inverse of the parser's naming. */
export function nameToLabels(name: string): Buffer[] {
  const text = stripTrailingDot(name);
  if (text === '') return [];
  const labels: Buffer[] = [];
  let current: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x2e) {
      if (current.length === 0) throw new DnsFormatError('BAD_VALUE', `name "${name}" has an empty label`);
      labels.push(Buffer.from(current));
      current = [];
    } else if (c === 0x5c) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0x30 && next <= 0x39) {
        const digits = text.slice(i + 1, i + 4);
        const value = Number(digits);
        if (!/^[0-9]{3}$/.test(digits) || value > 255) throw new DnsFormatError('BAD_VALUE', `name "${name}" has a bad \\DDD escape`);
        current.push(value);
        i += 3;
      } else if (Number.isNaN(next)) {
        throw new DnsFormatError('BAD_VALUE', `name "${name}" ends in a lone backslash`);
      } else {
        current.push(next);
        i += 1;
      }
    } else {
      if (c > 0xff) throw new DnsFormatError('BAD_VALUE', `name "${name}" has a character outside one octet`);
      current.push(c);
    }
    if (current.length > MAX_LABEL) throw new DnsFormatError('LABEL_TOO_LONG', `name "${name}" has a label longer than ${MAX_LABEL} octets`);
  }
  if (current.length === 0) throw new DnsFormatError('BAD_VALUE', `name "${name}" has an empty label`);
  labels.push(Buffer.from(current));
  const wire = labels.reduce((n, l) => n + 1 + l.length, 1);
  if (wire > MAX_NAME_WIRE) throw new DnsFormatError('NAME_TOO_LONG', `name "${name}" is ${wire} octets on the wire, over ${MAX_NAME_WIRE}`);
  return labels;
}

/**
 * The lookup key of a name: ASCII letters lower-cased (DNS compares names case-insensitively,
 * RFC 4343, and clients randomise case as in draft-vixie-dnsext-0x20), no trailing dot.
 */
export function canonicalName(name: string): string {
  return stripTrailingDot(name).replace(/[A-Z]/g, (c) => c.toLowerCase());
}

// ---------------------------------------------------------------- reading

/** Reads a name at `offset`, following compression pointers; returns it and the offset after it. */
export function readName(buf: Buffer, offset: number): { name: string; next: number } {
  const labels: string[] = [];
  let pos = offset;
  let next = -1;
  let wire = 1; // the terminating root label
  let hops = 0;
  // Every pointer must land before the start of the stretch of labels it continues, so the
  // stretches move strictly backwards through the message: no label is read twice, no chain loops.
  let floor = offset;
  for (;;) {
    if (pos >= buf.length) throw new DnsFormatError('TRUNCATED', 'name runs past the end of the message', pos);
    const len = buf[pos]!;
    if (len === 0) {
      pos += 1;
      break;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (pos + 1 >= buf.length) throw new DnsFormatError('TRUNCATED', 'compression pointer cut short', pos);
      const target = ((len & 0x3f) << 8) | buf[pos + 1]!;
      if (target >= floor) throw new DnsFormatError('BAD_POINTER', `compression pointer to ${target} does not point before the labels it continues (a loop)`, pos);
      if (target < DNS_HEADER_SIZE) throw new DnsFormatError('BAD_POINTER', `compression pointer to ${target} points into the header`, pos);
      if (++hops > MAX_POINTER_HOPS) throw new DnsFormatError('TOO_MANY_POINTERS', `more than ${MAX_POINTER_HOPS} compression pointers in one name`, pos);
      if (next < 0) next = pos + 2;
      pos = target;
      floor = target;
      continue;
    }
    if (kind !== 0) throw new DnsFormatError('BAD_LABEL', `label length byte 0x${len.toString(16)} is neither a length of at most ${MAX_LABEL} nor a pointer`, pos);
    wire += 1 + len;
    if (wire > MAX_NAME_WIRE) throw new DnsFormatError('NAME_TOO_LONG', `name longer than ${MAX_NAME_WIRE} octets`, pos);
    if (pos + 1 + len > buf.length) throw new DnsFormatError('TRUNCATED', 'label runs past the end of the message', pos);
    labels.push(labelToString(buf, pos + 1, pos + 1 + len));
    pos += 1 + len;
  }
  return { name: labels.join('.'), next: next < 0 ? pos : next };
}

function need(buf: Buffer, pos: number, n: number, what: string): void {
  if (pos + n > buf.length) throw new DnsFormatError('TRUNCATED', `message ends inside ${what}`, pos);
}

function parseHeader(buf: Buffer): DnsHeader {
  need(buf, 0, DNS_HEADER_SIZE, 'the header');
  const flags = buf.readUInt16BE(2);
  return {
    id: buf.readUInt16BE(0),
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    aa: (flags & 0x0400) !== 0,
    tc: (flags & 0x0200) !== 0,
    rd: (flags & 0x0100) !== 0,
    ra: (flags & 0x0080) !== 0,
    z: (flags & 0x0040) !== 0,
    ad: (flags & 0x0020) !== 0,
    cd: (flags & 0x0010) !== 0,
    rcode: flags & 0xf,
  };
}

function readRecord(buf: Buffer, offset: number): { record: DnsRecord; next: number } {
  const { name, next: afterName } = readName(buf, offset);
  need(buf, afterName, 10, 'a resource record header');
  const type = buf.readUInt16BE(afterName);
  const klass = buf.readUInt16BE(afterName + 2);
  const ttl = buf.readUInt32BE(afterName + 4);
  const rdlength = buf.readUInt16BE(afterName + 8);
  const start = afterName + 10;
  need(buf, start, rdlength, 'resource record data');
  // A copy, so the record does not pin (or alias) the caller's receive buffer.
  const data = Buffer.from(buf.subarray(start, start + rdlength));
  return { record: { name, type, class: klass, ttl, data }, next: start + rdlength };
}

function decodeOpt(record: DnsRecord, offset: number): DnsOpt {
  if (record.name !== '') throw new DnsFormatError('BAD_OPT', 'OPT record owner is not the root name', offset);
  const options: DnsOption[] = [];
  const d = record.data;
  let pos = 0;
  while (pos < d.length) {
    if (pos + 4 > d.length) throw new DnsFormatError('BAD_OPT', 'OPT option header cut short', offset);
    const code = d.readUInt16BE(pos);
    const len = d.readUInt16BE(pos + 2);
    if (pos + 4 + len > d.length) throw new DnsFormatError('BAD_OPT', `OPT option ${code} runs past the record data`, offset);
    options.push({ code, data: Buffer.from(d.subarray(pos + 4, pos + 4 + len)) });
    pos += 4 + len;
  }
  return {
    udpPayloadSize: record.class,
    extendedRcode: record.ttl >>> 24,
    version: (record.ttl >>> 16) & 0xff,
    dnssecOk: (record.ttl & 0x8000) !== 0,
    flags: record.ttl & 0x7fff,
    options,
  };
}

/**
 * Parses a whole message. Throws only DnsFormatError. Every loop is bounded by the message length
 * (each question or record consumes at least five octets), whatever the header's counts say.
 */
export function parseMessage(buf: Buffer): DnsMessage {
  const header = parseHeader(buf);
  const counts = [4, 6, 8, 10].map((at) => buf.readUInt16BE(at)) as [number, number, number, number];
  let pos = DNS_HEADER_SIZE;
  const questions: DnsQuestion[] = [];
  for (let i = 0; i < counts[0]; i++) {
    const { name, next } = readName(buf, pos);
    need(buf, next, 4, 'a question');
    questions.push({ name, type: buf.readUInt16BE(next), class: buf.readUInt16BE(next + 2) });
    pos = next + 4;
  }
  const sections: DnsRecord[][] = [[], [], []];
  let opt: DnsOpt | undefined;
  for (let s = 0; s < 3; s++) {
    for (let i = 0; i < counts[s + 1]!; i++) {
      const at = pos;
      const { record, next } = readRecord(buf, pos);
      pos = next;
      if (s === 2 && record.type === DnsType.OPT) {
        if (opt) throw new DnsFormatError('BAD_OPT', 'more than one OPT record', at);
        opt = decodeOpt(record, at);
      } else {
        sections[s]!.push(record);
      }
    }
  }
  if (pos !== buf.length) throw new DnsFormatError('TRAILING_BYTES', `${buf.length - pos} octets after the last record`, pos);
  const msg: DnsMessage = { header, questions, answers: sections[0]!, authorities: sections[1]!, additionals: sections[2]! };
  if (opt) msg.opt = opt;
  return msg;
}

/** The message id, without parsing the rest; undefined for a message shorter than its id. */
export function messageId(buf: Buffer): number | undefined {
  return buf.length >= 2 ? buf.readUInt16BE(0) : undefined;
}

/** A copy of the message with another id (e.g. to tell apart queries multiplexed on one upstream socket). */
export function withMessageId(buf: Buffer, id: number): Buffer {
  if (buf.length < 2) throw new DnsFormatError('TRUNCATED', 'message is shorter than its id', 0);
  checkUint(id, 16, 'id');
  const copy = Buffer.from(buf);
  copy.writeUInt16BE(id, 0);
  return copy;
}

// ---------------------------------------------------------------- writing

function checkUint(value: number, bits: 4 | 8 | 15 | 16 | 32, field: string): void {
  const max = 2 ** bits - 1;
  if (!Number.isInteger(value) || value < 0 || value > max) throw new DnsFormatError('BAD_VALUE', `${field} ${value} is not an integer in 0..${max}`);
}

/** A growable output buffer with RFC 1035 §4.1.4 name compression. */
class Writer {
  #buf = Buffer.allocUnsafe(512);
  #len = 0;
  /** lower-cased suffix (label bytes with length octets) → offset where it was written */
  readonly #suffixes = new Map<string, number>();

  get length(): number {
    return this.#len;
  }

  #reserve(n: number): void {
    const want = this.#len + n;
    if (want > DNS_MAX_MESSAGE) throw new DnsFormatError('MESSAGE_TOO_LARGE', `message would exceed ${DNS_MAX_MESSAGE} octets`);
    if (want <= this.#buf.length) return;
    const grown = Buffer.allocUnsafe(Math.min(DNS_MAX_MESSAGE, Math.max(want, this.#buf.length * 2)));
    this.#buf.copy(grown, 0, 0, this.#len);
    this.#buf = grown;
  }

  u8(v: number): void {
    this.#reserve(1);
    this.#buf[this.#len++] = v;
  }

  u16(v: number): void {
    this.#reserve(2);
    this.#buf.writeUInt16BE(v, this.#len);
    this.#len += 2;
  }

  u32(v: number): void {
    this.#reserve(4);
    this.#buf.writeUInt32BE(v, this.#len);
    this.#len += 4;
  }

  bytes(b: Buffer): void {
    this.#reserve(b.length);
    b.copy(this.#buf, this.#len);
    this.#len += b.length;
  }

  patchU16(at: number, v: number): void {
    this.#buf.writeUInt16BE(v, at);
  }

  /** Writes a name, pointing at the longest suffix already written (compared case-insensitively). */
  name(name: string, compress: boolean): void {
    const labels = nameToLabels(name);
    const keys = labels.map((_, i) => suffixKey(labels, i));
    for (let i = 0; i < labels.length; i++) {
      const seen = compress ? this.#suffixes.get(keys[i]!) : undefined;
      if (seen !== undefined) {
        this.u16(0xc000 | seen);
        return;
      }
      if (compress && this.#len <= MAX_POINTER_TARGET && !this.#suffixes.has(keys[i]!)) this.#suffixes.set(keys[i]!, this.#len);
      this.u8(labels[i]!.length);
      this.bytes(labels[i]!);
    }
    this.u8(0);
  }

  result(): Buffer {
    return Buffer.from(this.#buf.subarray(0, this.#len));
  }
}

function suffixKey(labels: Buffer[], from: number): string {
  let key = '';
  for (let i = from; i < labels.length; i++) {
    const l = labels[i]!;
    key += String.fromCharCode(l.length);
    for (const b of l) key += String.fromCharCode(b >= 0x41 && b <= 0x5a ? b + 0x20 : b);
  }
  return key;
}

function headerFlags(h: DnsHeader): number {
  checkUint(h.opcode, 4, 'opcode');
  checkUint(h.rcode, 4, 'rcode');
  return (
    (h.qr ? 0x8000 : 0) |
    (h.opcode << 11) |
    (h.aa ? 0x0400 : 0) |
    (h.tc ? 0x0200 : 0) |
    (h.rd ? 0x0100 : 0) |
    (h.ra ? 0x0080 : 0) |
    (h.z ? 0x0040 : 0) |
    (h.ad ? 0x0020 : 0) |
    (h.cd ? 0x0010 : 0) |
    h.rcode
  );
}

function writeRecord(w: Writer, r: DnsRecord, compress: boolean): void {
  checkUint(r.type, 16, 'type');
  checkUint(r.class, 16, 'class');
  checkUint(r.ttl, 32, 'ttl');
  checkUint(r.data.length, 16, 'RDATA length');
  w.name(r.name, compress);
  w.u16(r.type);
  w.u16(r.class);
  w.u32(r.ttl);
  w.u16(r.data.length);
  w.bytes(r.data);
}

/** The OPT pseudo-record as a plain record (RFC 6891 §6.1.2–6.1.3). */
export function optToRecord(opt: DnsOpt): DnsRecord {
  checkUint(opt.udpPayloadSize, 16, 'OPT UDP payload size');
  checkUint(opt.extendedRcode, 8, 'OPT extended rcode');
  checkUint(opt.version, 8, 'OPT version');
  checkUint(opt.flags, 15, 'OPT flags');
  const parts: Buffer[] = [];
  for (const o of opt.options) {
    checkUint(o.code, 16, 'OPT option code');
    checkUint(o.data.length, 16, 'OPT option length');
    const head = Buffer.allocUnsafe(4);
    head.writeUInt16BE(o.code, 0);
    head.writeUInt16BE(o.data.length, 2);
    parts.push(head, o.data);
  }
  const ttl = ((opt.extendedRcode << 24) | (opt.version << 16) | (opt.dnssecOk ? 0x8000 : 0) | opt.flags) >>> 0;
  return { name: '', type: DnsType.OPT, class: opt.udpPayloadSize, ttl, data: Buffer.concat(parts) };
}

export interface SerializeOptions {
  /** compress owner names against earlier names (default true) */
  compress?: boolean;
}

/** Serialises a message; counts come from the arrays. Throws DnsFormatError for values that do not fit. */
export function serializeMessage(msg: DnsMessage, options: SerializeOptions = {}): Buffer {
  const compress = options.compress ?? true;
  const h = msg.header;
  checkUint(h.id, 16, 'id');
  const additionals = msg.opt ? [...msg.additionals, optToRecord(msg.opt)] : msg.additionals;
  for (const [n, what] of [[msg.questions.length, 'questions'], [msg.answers.length, 'answers'], [msg.authorities.length, 'authorities'], [additionals.length, 'additionals']] as const) {
    checkUint(n, 16, `number of ${what}`);
  }
  const w = new Writer();
  w.u16(h.id);
  w.u16(headerFlags(h));
  w.u16(msg.questions.length);
  w.u16(msg.answers.length);
  w.u16(msg.authorities.length);
  w.u16(additionals.length);
  for (const q of msg.questions) {
    checkUint(q.type, 16, 'question type');
    checkUint(q.class, 16, 'question class');
    w.name(q.name, compress);
    w.u16(q.type);
    w.u16(q.class);
  }
  for (const r of msg.answers) writeRecord(w, r, compress);
  for (const r of msg.authorities) writeRecord(w, r, compress);
  for (const r of additionals) writeRecord(w, r, compress);
  return w.result();
}

// ---------------------------------------------------------------- addresses (RDATA of A / AAAA)

/** The four octets of a dotted-quad IPv4 address, or undefined if it is not one. */
export function ipv4Bytes(ip: string): Buffer | undefined {
  const parts = ip.split('.');
  if (parts.length !== 4) return undefined;
  const out = Buffer.allocUnsafe(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255) return undefined;
    out[i] = Number(p);
  }
  return out;
}

/** The sixteen octets of an IPv6 address (with `::` and an embedded IPv4 tail), or undefined. */
export function ipv6Bytes(ip: string): Buffer | undefined {
  if (ip.includes('%')) return undefined; // a zone index has no place in DNS data
  const halves = ip.split('::');
  if (halves.length > 2) return undefined;
  const groups = (s: string): number[] | undefined => {
    if (s === '') return [];
    const out: number[] = [];
    const parts = s.split(':');
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (i === parts.length - 1 && p.includes('.')) {
        const v4 = ipv4Bytes(p);
        if (!v4) return undefined;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return undefined;
        out.push(parseInt(p, 16));
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...new Array<number>(missing).fill(0), ...tail];
  const out = Buffer.allocUnsafe(16);
  all.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

// ---------------------------------------------------------------- TCP framing (RFC 1035 §4.2.2)

/** Prefixes a message with its two-octet length, as DNS over TCP sends it. */
export function encodeTcpFrame(message: Buffer): Buffer {
  if (message.length > DNS_MAX_MESSAGE) throw new DnsFormatError('MESSAGE_TOO_LARGE', `message of ${message.length} octets cannot be framed (max ${DNS_MAX_MESSAGE})`);
  const out = Buffer.allocUnsafe(2 + message.length);
  out.writeUInt16BE(message.length, 0);
  message.copy(out, 2);
  return out;
}

/**
 * Reassembles length-prefixed messages from a TCP byte stream. Memory is bounded: at most one
 * partial frame (≤ maxFrame + 1 octets) is held between pushes; whole frames are returned at once.
 */
export class TcpFrameReader {
  readonly #maxFrame: number;
  #pending: Buffer = Buffer.alloc(0);

  /** maxFrame: the longest message accepted (default 65535, all a prefix can say). */
  constructor(maxFrame = DNS_MAX_MESSAGE) {
    checkUint(maxFrame, 16, 'maxFrame');
    this.#maxFrame = maxFrame;
  }

  /** Octets received but not yet returned as a frame. */
  get buffered(): number {
    return this.#pending.length;
  }

  /**
   * Feeds a chunk; returns the complete messages it finished, in order. Throws FRAME_TOO_LARGE as
   * soon as a prefix announces more than maxFrame — the caller should close the connection.
   */
  push(chunk: Buffer): Buffer[] {
    const data = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    const frames: Buffer[] = [];
    let pos = 0;
    while (data.length - pos >= 2) {
      const len = data.readUInt16BE(pos);
      if (len > this.#maxFrame) {
        this.#pending = Buffer.alloc(0);
        throw new DnsFormatError('FRAME_TOO_LARGE', `TCP frame of ${len} octets exceeds the limit of ${this.#maxFrame}`);
      }
      if (data.length - pos - 2 < len) break;
      frames.push(Buffer.from(data.subarray(pos + 2, pos + 2 + len)));
      pos += 2 + len;
    }
    // Copy the remainder so the (possibly large) chunk it came from can be freed.
    this.#pending = pos === data.length ? Buffer.alloc(0) : Buffer.from(data.subarray(pos));
    return frames;
  }
}
