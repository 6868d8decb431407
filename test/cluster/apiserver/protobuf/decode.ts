/**
 * Decodes a Kubernetes protobuf request body (`application/vnd.kubernetes.protobuf`, what kubectl's
 * typed clientsets send) into the object's JSON wire form, so the rest of the server sees exactly
 * what a JSON body for the same object would have given it.
 *
 * Wire format: the 4 magic bytes `k8s\0`, then a runtime.Unknown message whose typeMeta names the
 * object's apiVersion/kind and whose `raw` is the object's own message (which carries no TypeMeta).
 * The JSON form follows Go's encoding/json over the decoded struct: metav1.Time as an RFC 3339
 * string with seconds precision (null when zero), IntOrString as a number or string, Quantity as
 * its string, bytes as base64, FieldsV1 as its embedded JSON, embedded (inline) structs flattened,
 * zero-valued `omitempty` fields left out. (No kind here has a MicroTime or RawExtension field.)
 */
import protobuf from 'protobufjs';
import { ApiError, badRequest } from '../errors.js';
import { KIND_MESSAGES, PROTO_SOURCES, SPECIAL } from './schema.js';

export const PROTOBUF_MEDIA_TYPE = 'application/vnd.kubernetes.protobuf';

/** `k8s\0`, the prefix of every Kubernetes protobuf payload. */
const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Message = Record<string, unknown>;

let cachedRoot: protobuf.Root | undefined;

/** The parsed schema, built once on first use. */
function schemaRoot(): protobuf.Root {
  if (cachedRoot) return cachedRoot;
  const root = new protobuf.Root();
  // keepCase: the schema's field names already are the JSON names
  for (const source of PROTO_SOURCES) protobuf.parse(source, root, { keepCase: true });
  root.resolveAll();
  cachedRoot = root;
  return root;
}

/** The `apiVersion/kind` pairs this decoder has a schema for (`*` = any group version). */
export function protobufKinds(): string[] {
  return Object.keys(KIND_MESSAGES);
}

/**
 * The object in a protobuf request body, in its JSON form with `apiVersion` and `kind` from the
 * envelope. Throws ApiError 400 BadRequest for malformed bytes and 415 UnsupportedMediaType for a
 * kind with no schema here (the client can send that one as JSON).
 */
export function decodeProtobufBody(body: Buffer): Record<string, Json> {
  const envelope = decodeEnvelope(body);
  const type = messageTypeFor(envelope.apiVersion, envelope.kind);
  let decoded: Message;
  try {
    decoded = type.decode(envelope.raw) as unknown as Message;
  } catch (e) {
    throw badRequest(`unable to decode ${envelope.apiVersion}, Kind=${envelope.kind} from protobuf: ${(e as Error).message}`);
  }
  return { apiVersion: envelope.apiVersion, kind: envelope.kind, ...messageToJson(type, decoded) };
}

interface Envelope {
  apiVersion: string;
  kind: string;
  raw: Uint8Array;
}

function decodeEnvelope(body: Buffer): Envelope {
  if (body.length < MAGIC.length || !body.subarray(0, MAGIC.length).equals(MAGIC)) {
    // the same words the real server's protobuf serializer uses
    throw badRequest(`provided data does not appear to be a protobuf message, expected prefix [${[...MAGIC].join(' ')}]`);
  }
  let unknown: Message;
  try {
    unknown = schemaRoot().lookupType('k8s.io.apimachinery.pkg.runtime.Unknown').decode(body.subarray(MAGIC.length)) as unknown as Message;
  } catch (e) {
    throw badRequest(`unable to decode the protobuf envelope (runtime.Unknown): ${(e as Error).message}`);
  }
  const typeMeta = (unknown['typeMeta'] ?? {}) as { apiVersion?: string; kind?: string };
  const contentEncoding = (unknown['contentEncoding'] as string | undefined) ?? '';
  const contentType = (unknown['contentType'] as string | undefined) ?? '';
  if (contentEncoding) throw badRequest(`unsupported protobuf content encoding ${JSON.stringify(contentEncoding)}: the object must be sent unencoded`);
  if (contentType && contentType !== PROTOBUF_MEDIA_TYPE) throw unsupported(`a protobuf envelope wrapping ${contentType} content`);
  const apiVersion = typeMeta.apiVersion ?? '';
  const kind = typeMeta.kind ?? '';
  if (!kind) throw badRequest(`Object 'Kind' is missing in the protobuf envelope (apiVersion ${JSON.stringify(apiVersion)})`);
  return { apiVersion, kind, raw: (unknown['raw'] as Uint8Array | undefined) ?? new Uint8Array() };
}

function messageTypeFor(apiVersion: string, kind: string): protobuf.Type {
  const name = KIND_MESSAGES[`${apiVersion}/${kind}`] ?? KIND_MESSAGES[`*/${kind}`];
  if (!name) throw unsupported(`${apiVersion}, Kind=${kind}`);
  return schemaRoot().lookupType(name);
}

function unsupported(what: string): ApiError {
  return new ApiError(
    415,
    'UnsupportedMediaType',
    `the body of the request was in an unknown format (${PROTOBUF_MEDIA_TYPE}): this server cannot decode protobuf for ${what} - send it as application/json`,
  );
}

// ------------------------------------------------------------------ message -> JSON

function option(field: protobuf.Field, name: 'keepZero' | 'inline'): boolean {
  return field.options?.[`(${name})`] === true;
}

/**
 * A field's decoded value, or undefined when it was not on the wire: protobufjs sets own
 * properties only for decoded fields (defaults live on the prototype).
 */
function own(msg: Message, name: string): unknown {
  return Object.prototype.hasOwnProperty.call(msg, name) ? msg[name] : undefined;
}

function messageToJson(type: protobuf.Type, msg: Message): Record<string, Json> {
  const out: Record<string, Json> = {};
  for (const field of type.fieldsArray) {
    const value = own(msg, field.name);
    if (field.map || field.repeated) {
      const json = collectionToJson(field, value);
      if (json !== undefined) out[field.name] = json;
    } else if (value === undefined) {
      continue;
    } else if (field.resolvedType instanceof protobuf.Type) {
      const json = specialOrMessage(field.resolvedType, value as Message);
      if (option(field, 'inline') && isObject(json)) Object.assign(out, json);
      else out[field.name] = json;
    } else {
      const json = scalarToJson(value);
      // gogo writes every non-pointer scalar, zero or not; Go's JSON omitempty then drops the zero
      if (isZero(json) && !option(field, 'keepZero')) continue;
      out[field.name] = json;
    }
  }
  return out;
}

/**
 * Maps and repeated fields: protobufjs gives every message its own empty ones, so emptiness is
 * absence. Go decodes an absent one to nil, which JSON omits (omitempty) or renders as null.
 */
function collectionToJson(field: protobuf.Field, value: unknown): Json | undefined {
  const entries = field.map ? Object.entries((value ?? {}) as Message) : ((value ?? []) as unknown[]).map((v, i) => [String(i), v] as const);
  if (entries.length === 0) return option(field, 'keepZero') ? null : undefined;
  if (field.repeated) return entries.map(([, v]) => elementToJson(field, v));
  return Object.fromEntries(entries.map(([k, v]) => [k, elementToJson(field, v)]));
}

function elementToJson(field: protobuf.Field, value: unknown): Json {
  return field.resolvedType instanceof protobuf.Type ? specialOrMessage(field.resolvedType, value as Message) : scalarToJson(value);
}

/** The types whose Go JSON marshalling is custom; everything else is a plain object. */
function specialOrMessage(type: protobuf.Type, msg: Message): Json {
  switch (type.fullName) {
    case SPECIAL.time:
      return timeToJson(msg);
    case SPECIAL.intOrString:
      return toNumber(own(msg, 'type')) === 1 ? ((own(msg, 'strVal') as string | undefined) ?? '') : (toNumber(own(msg, 'intVal')) ?? 0);
    case SPECIAL.quantity:
      return (own(msg, 'string') as string | undefined) ?? '0';
    case SPECIAL.fieldsV1:
      return fieldsV1ToJson(own(msg, 'raw') as Uint8Array | undefined);
    case SPECIAL.authnExtraValue:
    case SPECIAL.authzExtraValue:
      return ((own(msg, 'items') as string[] | undefined) ?? []).slice();
    default:
      return messageToJson(type, msg);
  }
}

/**
 * metav1.Time: an empty message is the zero time (JSON null). Go's unmarshaller keeps only the
 * seconds, and JSON renders RFC 3339 in UTC with seconds precision.
 */
function timeToJson(msg: Message): Json {
  const seconds = toNumber(own(msg, 'seconds'));
  const nanos = toNumber(own(msg, 'nanos'));
  if (seconds === undefined && nanos === undefined) return null;
  return `${new Date((seconds ?? 0) * 1000).toISOString().slice(0, 19)}Z`;
}

/** A managed-fields set: its bytes are JSON text, embedded as is. */
function fieldsV1ToJson(raw: Uint8Array | undefined): Json {
  if (!raw || raw.length === 0) return null;
  try {
    return JSON.parse(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8')) as Json;
  } catch (e) {
    throw badRequest(`managedFields fieldsV1 does not hold valid JSON: ${(e as Error).message}`);
  }
}

function scalarToJson(value: unknown): Json {
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
  const n = toNumber(value);
  if (n !== undefined) return n;
  return value as Json;
}

/** numbers, and int64s that protobufjs hands back as Long objects */
function toNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return value;
  if (isLong(value)) return value.toNumber();
  return undefined;
}

function isLong(value: unknown): value is { low: number; high: number; toNumber(): number } {
  return typeof value === 'object' && value !== null && 'low' in value && 'high' in value && typeof (value as { toNumber?: unknown }).toNumber === 'function';
}

function isZero(value: Json): boolean {
  return value === '' || value === 0 || value === false || value === null;
}

function isObject(value: Json): value is { [key: string]: Json } {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
