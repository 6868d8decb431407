/**
 * Strict decoding of built-in objects, the way kube-apiserver decodes a request body into its Go
 * types: a value of the wrong JSON type fails the request with the message of Go's JSON decoder
 * (the fork sigs.k8s.io/json), unknown fields are collected as "strict decoding errors" and then,
 * by the request's fieldValidation directive, rejected, turned into warnings or dropped. Fields
 * the Go types do not know never survive decoding, so the returned object is pruned.
 *
 * The shape of every type comes from client-node's models (see models.ts).
 */
import { badRequest } from './errors.js';
import { model, type TypeRef, goTypeName, goStructName, goQualifiedName } from './models.js';
import type { KObject } from './types.js';

export type FieldValidation = 'Strict' | 'Warn' | 'Ignore';

/** What decoding one body against a model found. */
export interface ModelDecodeResult {
  /** the decoded object, unknown fields and nulls dropped (meaningful only without `error`) */
  obj: unknown;
  /** paths of unknown fields in document order, e.g. "spec.template.spec.containers[0].foo" */
  unknownFields: string[];
  /** the decoder's error text (without the "X in version ..." prefix), if decoding failed */
  error?: string;
}

/**
 * Decodes `obj` as model `modelName` and applies `fieldValidation` like the create/update handlers:
 * - a type error throws 400 `Deployment in version "v1" cannot be handled as a Deployment: json: ...`
 * - unknown fields: Strict throws 400 `...: strict decoding error: unknown field "spec.foo", ...`;
 *   Warn returns them as warnings (`unknown field "spec.foo"`, sent as `Warning: 299 - "..."`);
 *   Ignore drops them silently.
 */
export function decodeBuiltin(
  modelName: string,
  kindForMessages: { kind: string; version: string },
  obj: unknown,
  fieldValidation: FieldValidation,
): { obj: KObject; warnings: string[] } {
  const r = decodeAgainstModel(modelName, obj);
  const prefix = `${kindForMessages.kind} in version "${kindForMessages.version}" cannot be handled as a ${kindForMessages.kind}`;
  if (r.error !== undefined) throw badRequest(`${prefix}: ${r.error}`);
  let warnings: string[] = [];
  if (r.unknownFields.length > 0) {
    if (fieldValidation === 'Strict') throw badRequest(`${prefix}: ${strictDecodingMessage(r.unknownFields)}`);
    if (fieldValidation === 'Warn') warnings = unknownFieldWarnings(r.unknownFields);
  }
  const decoded = (r.obj ?? {}) as KObject;
  if (decoded.metadata === undefined) decoded.metadata = {};
  return { obj: decoded, warnings };
}

/** `strict decoding error: unknown field "a", unknown field "b"` (runtime.StrictDecodingError). */
export function strictDecodingMessage(unknownFields: string[]): string {
  return `strict decoding error: ${unknownFieldWarnings(unknownFields).join(', ')}`;
}

/** One warning per unknown field, as the Warn directive reports them. */
export function unknownFieldWarnings(unknownFields: string[]): string[] {
  return unknownFields.map((f) => `unknown field "${f}"`);
}

/**
 * Decodes `obj` against model `modelName` without any policy: reports the first type error the
 * way Go would (see below) and every unknown field.
 *
 * Go's decoder keeps only the *first* ordinary type error and carries on, but an error raised by
 * a type's own UnmarshalJSON (Time, Quantity, IntOrString) aborts decoding at once and wins even
 * over an earlier ordinary error. Unknown fields only matter when there is no error at all.
 */
export function decodeAgainstModel(modelName: string, obj: unknown): ModelDecodeResult {
  const st: DecodeState = { unknown: [], seen: new Set() };
  const root: TypeRef = { t: 'model', name: modelName };
  let out: unknown;
  try {
    out = decodeValue(root, obj, { struct: '', stack: [] }, '', st, undefined);
  } catch (e) {
    if (e instanceof FatalDecodeError) return { obj: undefined, unknownFields: st.unknown, error: e.message };
    throw e;
  }
  if (st.typeError !== undefined) return { obj: out, unknownFields: st.unknown, error: st.typeError };
  return { obj: out, unknownFields: st.unknown };
}

// ---------------------------------------------------------------------------------------------

interface DecodeState {
  /** the first ordinary (saved) type error */
  typeError?: string;
  unknown: string[];
  seen: Set<string>;
}

/** Go's errorContext: the innermost struct with a known field, and the json names down to here. */
interface GoContext {
  struct: string;
  stack: string[];
}

/** Where a value sits in its parent model, for the tables keyed by model and field. */
interface Owner {
  model: string;
  field: string;
}

class FatalDecodeError extends Error {}

/** Marks a value that does not appear in the decoded object. */
const DROP = Symbol('drop');

/** The real decoder stops collecting strict errors at 100. */
const MAX_STRICT_ERRORS = 100;

/**
 * Fields typed `resource.Quantity` in Go. client-node types them as plain strings, but the Go
 * Quantity type also accepts JSON numbers and rejects malformed strings.
 */
const QUANTITY_FIELDS = new Set([
  'V1ResourceRequirements.limits',
  'V1ResourceRequirements.requests',
  'V1VolumeResourceRequirements.limits',
  'V1VolumeResourceRequirements.requests',
  'V1NodeStatus.capacity',
  'V1NodeStatus.allocatable',
  'V1PersistentVolumeSpec.capacity',
  'V1PersistentVolumeClaimStatus.capacity',
  'V1PersistentVolumeClaimStatus.allocatedResources',
  'V1ContainerStatus.allocatedResources',
  'V1ResourceQuotaSpec.hard',
  'V1ResourceQuotaStatus.hard',
  'V1ResourceQuotaStatus.used',
  'V1LimitRangeItem.max',
  'V1LimitRangeItem.min',
  'V1LimitRangeItem.default',
  'V1LimitRangeItem.defaultRequest',
  'V1LimitRangeItem.maxLimitRequestRatio',
  'V1Overhead.podFixed',
  'V1PodSpec.overhead',
  'V1EmptyDirVolumeSource.sizeLimit',
  'V1CSIStorageCapacity.capacity',
  'V1CSIStorageCapacity.maximumVolumeSize',
]);

function isQuantity(owner: Owner | undefined): boolean {
  return owner !== undefined && QUANTITY_FIELDS.has(`${owner.model}.${owner.field}`);
}

function decodeValue(t: TypeRef, v: unknown, ctx: GoContext, path: string, st: DecodeState, owner: Owner | undefined): unknown {
  // null never fails: pointers, maps and slices become nil, everything else keeps its zero value.
  if (v === null) return DROP;
  switch (t.t) {
    case 'any':
      return v;
    case 'string':
      if (isQuantity(owner)) return decodeQuantity(v);
      if (t.format === 'date-time' || t.format === 'date-time-micro') return decodeTime(v, t.format, ctx);
      if (typeof v !== 'string') return typeMismatch(v, 'string', ctx, st);
      if (t.format === 'byte') return decodeBase64(v, st);
      return v;
    case 'integer':
      return decodeInteger(v, t.format === 'int64' ? 'int64' : 'int32', ctx, st);
    case 'number':
      if (typeof v !== 'number') return typeMismatch(v, 'float64', ctx, st);
      return v;
    case 'boolean':
      if (typeof v !== 'boolean') return typeMismatch(v, 'bool', ctx, st);
      return v;
    case 'int-or-string':
      return decodeIntOrString(v, ctx);
    case 'array':
      return decodeArray(t, v, ctx, path, st, owner);
    case 'map':
      return decodeMap(t, v, ctx, path, st, owner);
    case 'model':
      return decodeModel(t.name, v, ctx, path, st);
  }
}

function decodeModel(name: string, v: unknown, ctx: GoContext, path: string, st: DecodeState): unknown {
  const m = model(name);
  if (m === undefined) return v; // a type client-node does not describe: accept it as it is
  if (!isPlainObject(v)) return typeMismatch(v, goQualifiedName(name), ctx, st);
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(v)) {
    const fieldPath = path ? `${path}.${key}` : key;
    const f = m.fields.get(key);
    if (f === undefined) {
      recordUnknown(fieldPath, st);
      continue;
    }
    const inner: GoContext = { struct: goStructName(name), stack: [...ctx.stack, key] };
    const decoded = decodeValue(f.type, value, inner, fieldPath, st, { model: name, field: key });
    if (decoded !== DROP) out[key] = decoded;
  }
  return out;
}

function decodeArray(t: Extract<TypeRef, { t: 'array' }>, v: unknown, ctx: GoContext, path: string, st: DecodeState, owner: Owner | undefined): unknown {
  if (!Array.isArray(v)) {
    // a string into []byte is base64; client-node types those as string, so this is a real slice
    return typeMismatch(v, `[]${goTypeName(t.items)}`, ctx, st);
  }
  return v.map((item, i) => {
    const decoded = decodeValue(t.items, item, ctx, `${path}[${i}]`, st, owner);
    return decoded === DROP ? zeroValue(t.items) : decoded;
  });
}

function decodeMap(t: Extract<TypeRef, { t: 'map' }>, v: unknown, ctx: GoContext, path: string, st: DecodeState, owner: Owner | undefined): unknown {
  if (!isPlainObject(v)) return typeMismatch(v, `map[string]${goTypeName(t.values)}`, ctx, st);
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(v)) {
    const decoded = decodeValue(t.values, value, ctx, `${path}.${key}`, st, owner);
    out[key] = decoded === DROP ? zeroValue(t.values) : decoded;
  }
  return out;
}

function recordUnknown(path: string, st: DecodeState): void {
  if (st.unknown.length >= MAX_STRICT_ERRORS || st.seen.has(path)) return;
  st.seen.add(path);
  st.unknown.push(path);
}

/** The JSON decoder's name for a JSON value: "string", "number", "bool", "array", "object". */
function jsonKind(v: unknown): string {
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return 'number';
  if (typeof v === 'string') return 'string';
  return 'object';
}

/** `json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32` */
function unmarshalTypeError(value: string, goType: string, ctx: GoContext): string {
  if (ctx.struct === '' && ctx.stack.length === 0) return `json: cannot unmarshal ${value} into Go value of type ${goType}`;
  return `json: cannot unmarshal ${value} into Go struct field ${ctx.struct}.${ctx.stack.join('.')} of type ${goType}`;
}

/** An ordinary type error: saved if it is the first, and decoding goes on. */
function typeMismatch(v: unknown, goType: string, ctx: GoContext, st: DecodeState, value = jsonKind(v)): typeof DROP {
  if (st.typeError === undefined) st.typeError = unmarshalTypeError(value, goType, ctx);
  return DROP;
}

const INT_RANGE = {
  int32: [-2147483648, 2147483647],
  int64: [-9223372036854775808, 9223372036854775807],
} as const;

function decodeInteger(v: unknown, goType: 'int32' | 'int64', ctx: GoContext, st: DecodeState): unknown {
  if (typeof v !== 'number') return typeMismatch(v, goType, ctx, st);
  const [lo, hi] = INT_RANGE[goType];
  // Go parses the literal with ParseInt: fractions and overflow are "number 1.5" errors.
  if (!Number.isInteger(v) || v < lo || v > hi) return typeMismatch(v, goType, ctx, st, `number ${String(v)}`);
  return v;
}

/** intstr.IntOrString: a JSON string is the string form, anything else must decode as int32. */
function decodeIntOrString(v: unknown, ctx: GoContext): unknown {
  if (typeof v === 'string') return v;
  // The inner json.Unmarshal into int32 fails; its error aborts decoding and gets the outer context.
  if (typeof v !== 'number') throw new FatalDecodeError(unmarshalTypeError(jsonKind(v), 'int32', ctx));
  if (!Number.isInteger(v) || v < INT_RANGE.int32[0] || v > INT_RANGE.int32[1]) {
    throw new FatalDecodeError(unmarshalTypeError(`number ${String(v)}`, 'int32', ctx));
  }
  return v;
}

// --- resource.Quantity -------------------------------------------------------------------------

const QUANTITY_FORMAT_ERROR = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
const QUANTITY_SUFFIXES = new Set(['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi', 'Ei', 'n', 'u', 'm', 'k', 'M', 'G', 'T', 'P', 'E']);

/**
 * Quantity.UnmarshalJSON strips the quotes of a string and parses what is left, so numbers are
 * accepted too (`cpu: 1`). Its errors abort decoding and carry no field context.
 */
function decodeQuantity(v: unknown): unknown {
  const text = typeof v === 'string' ? v : JSON.stringify(v);
  const problem = quantityProblem(text.trim());
  if (problem !== undefined) throw new FatalDecodeError(problem);
  return typeof v === 'string' ? v : text;
}

/** Why `s` is not a quantity, in the words of resource.ParseQuantity, or undefined. */
export function quantityProblem(s: string): string | undefined {
  const m = /^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(.*)$/.exec(s);
  if (!m) return QUANTITY_FORMAT_ERROR;
  const suffix = m[2]!;
  if (QUANTITY_SUFFIXES.has(suffix) || /^[eE][+-]?[0-9]+$/.test(suffix)) return undefined;
  if (!/^[eEinumkKMGTP]*[-+]?[0-9]*$/.test(suffix)) return QUANTITY_FORMAT_ERROR;
  return "unable to parse quantity's suffix";
}

// --- metav1.Time / MicroTime ---------------------------------------------------------------------

const RFC3339 = '2006-01-02T15:04:05Z07:00';
const RFC3339_MICRO = '2006-01-02T15:04:05.000000Z07:00';

/**
 * metav1.Time decodes its JSON as a Go string (a non-string is an error of type string) and
 * parses it as RFC 3339; it always re-encodes in UTC with second precision (MicroTime: micro).
 */
function decodeTime(v: unknown, format: string, ctx: GoContext): unknown {
  if (typeof v !== 'string') throw new FatalDecodeError(unmarshalTypeError(jsonKind(v), 'string', ctx));
  const layout = format === 'date-time-micro' ? RFC3339_MICRO : RFC3339;
  const problem = rfc3339Problem(v, layout);
  if (problem !== undefined) throw new FatalDecodeError(problem);
  return formatTime(v, format === 'date-time-micro');
}

function formatTime(v: string, micro: boolean): string {
  const ms = Date.parse(v);
  const iso = new Date(ms).toISOString(); // 2024-01-02T03:04:05.678Z
  const base = iso.slice(0, 19);
  if (!micro) return `${base}Z`;
  const frac = /\.(\d+)/.exec(v.slice(19))?.[1] ?? '';
  return `${base}.${(frac + '000000').slice(0, 6)}Z`;
}

/** One step of Go's layout: a literal or a numeric element with its width and range. */
interface LayoutElem {
  text: string;
  digits?: number;
  range?: [number, number, string];
}

const RFC3339_ELEMS: LayoutElem[] = [
  { text: '2006', digits: 4 },
  { text: '-' },
  { text: '01', digits: 2, range: [1, 12, 'month'] },
  { text: '-' },
  { text: '02', digits: 2, range: [1, 31, 'day'] },
  { text: 'T' },
  { text: '15', digits: 2, range: [0, 23, 'hour'] },
  { text: ':' },
  { text: '04', digits: 2, range: [0, 59, 'minute'] },
  { text: ':' },
  { text: '05', digits: 2, range: [0, 59, 'second'] },
];

/** Why `value` does not parse with the RFC 3339 layout, phrased like Go's time.ParseError. */
export function rfc3339Problem(value: string, layout = RFC3339): string | undefined {
  const q = JSON.stringify;
  let rest = value;
  let layoutRest = layout;
  const cannot = (elem: string): string => `parsing time ${q(value)} as ${q(layout)}: cannot parse ${q(rest)} as ${q(elem)}`;
  for (const e of RFC3339_ELEMS) {
    layoutRest = layoutRest.slice(e.text.length);
    if (e.digits === undefined) {
      if (!rest.startsWith(e.text)) return cannot(e.text);
      rest = rest.slice(e.text.length);
      continue;
    }
    const m = new RegExp(`^\\d{${e.digits}}`).exec(rest);
    if (!m) return cannot(e.text);
    const n = Number(m[0]);
    if (e.range && (n < e.range[0] || n > e.range[1])) return `parsing time ${q(value)}: ${e.range[2]} out of range`;
    rest = rest.slice(m[0].length);
  }
  // Go accepts fractional seconds after "05" even when the layout has none.
  const frac = /^[.,]\d+/.exec(rest);
  if (frac) rest = rest.slice(frac[0].length);
  else if (layoutRest.startsWith('.000000')) return cannot('.000000');
  if (rest === 'Z') return checkDay(value);
  const zone = /^[+-](\d{2}):(\d{2})/.exec(rest);
  if (zone) {
    if (rest.length > 6) return `parsing time ${q(value)}: extra text: ${q(rest.slice(6))}`;
  } else if (rest.startsWith('Z')) {
    return `parsing time ${q(value)}: extra text: ${q(rest.slice(1))}`;
  } else {
    return cannot('Z07:00');
  }
  if (Number(zone[1]) > 23 || Number(zone[2]) > 59) return `parsing time ${q(value)}: time zone offset out of range`;
  return checkDay(value);
}

/** Go checks the day against the month only once the whole value has parsed. */
function checkDay(value: string): string | undefined {
  const day = Number(value.slice(8, 10));
  const month = Number(value.slice(5, 7));
  const year = Number(value.slice(0, 4));
  if (day > daysIn(month, year)) return `parsing time ${JSON.stringify(value)}: day out of range`;
  return undefined;
}

function daysIn(month: number, year: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

// --- []byte ------------------------------------------------------------------------------------

/** []byte fields are standard base64 with padding; Go reports the first bad byte. */
function decodeBase64(v: string, st: DecodeState): unknown {
  const at = base64ErrorOffset(v);
  if (at !== undefined) {
    if (st.typeError === undefined) st.typeError = `illegal base64 data at input byte ${at}`;
    return DROP;
  }
  return v;
}

function base64ErrorOffset(s: string): number | undefined {
  const body = s.replace(/[\r\n]/g, '');
  const firstBad = body.search(/[^A-Za-z0-9+/=]/);
  const pad = body.indexOf('=');
  if (firstBad >= 0 && (pad < 0 || firstBad < pad)) return firstBad;
  if (pad >= 0) {
    const tail = body.slice(pad);
    if (!/^={1,2}$/.test(tail) || body.length % 4 !== 0) return pad;
    return undefined;
  }
  // an incomplete final quantum is reported at its first byte
  if (body.length % 4 !== 0) return body.length - (body.length % 4);
  return undefined;
}

// --- helpers -----------------------------------------------------------------------------------

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The zero value Go leaves in a slice or map slot that held JSON null. */
function zeroValue(t: TypeRef): unknown {
  switch (t.t) {
    case 'string':
      return '';
    case 'integer':
    case 'number':
    case 'int-or-string':
      return 0;
    case 'boolean':
      return false;
    case 'model':
      return {};
    default:
      return null;
  }
}


export { goStructName, goQualifiedName };
