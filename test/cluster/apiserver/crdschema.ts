/**
 * Structural schemas of CustomResourceDefinitions (apiextensions.k8s.io/v1 openAPIV3Schema): what
 * the server does to a custom resource on its way in. In the real order:
 *   1. prune fields the schema does not specify (the "unknown fields" of fieldValidation),
 *   2. apply `default`s,
 *   3. validate (types, enum, required, bounds, lengths, pattern, items, formats), reporting
 *      field errors with the messages of kube-openapi's validator as the apiextensions server
 *      converts them (the caller raises 422 Invalid with them).
 * Plus `checkStructural`, the subset of the CRD-side checks that make a schema unusable.
 */
import { badRequest } from './errors.js';
import { strictDecodingMessage, unknownFieldWarnings, type FieldValidation } from './schema.js';
import type { FieldError, KObject } from './types.js';

/** A JSONSchemaProps node, as it appears in the CRD. */
export type JSONSchema = Record<string, unknown>;

export interface CustomValidation {
  /** the pruned, defaulted object */
  obj: KObject;
  /** warnings for the Warn directive (`unknown field "spec.foo"`) */
  warnings: string[];
  /** schema violations; empty when the object is valid */
  errors: FieldError[];
}

/**
 * Prunes, defaults and validates a custom resource.
 * Unknown fields follow `fieldValidation` like built-ins: Strict throws 400 BadRequest
 * `<Kind> in version "<v>" cannot be handled as a <Kind>: strict decoding error: unknown field "spec.foo"`
 * (kind and version come from `kindForMessages`, else from the object itself).
 */
export function validateCustom(
  schema: JSONSchema,
  obj: unknown,
  fieldValidation: FieldValidation,
  kindForMessages?: { kind: string; version: string },
): CustomValidation {
  const unknown: string[] = [];
  const pruned = pruneRoot(schema, obj, unknown);
  if (unknown.length > 0 && fieldValidation === 'Strict') {
    const k = kindForMessages ?? kindOf(pruned);
    throw badRequest(`${k.kind} in version "${k.version}" cannot be handled as a ${k.kind}: ${strictDecodingMessage(unknown)}`);
  }
  const defaulted = applyDefaults(schema, pruned) as KObject;
  if (!isObject(defaulted.metadata)) defaulted.metadata = {};
  const errors = validateRoot(schema, defaulted);
  return { obj: defaulted, warnings: fieldValidation === 'Warn' ? unknownFieldWarnings(unknown) : [], errors };
}

function kindOf(obj: unknown): { kind: string; version: string } {
  const o = isObject(obj) ? obj : {};
  const kind = typeof o.kind === 'string' ? o.kind : '';
  const apiVersion = typeof o.apiVersion === 'string' ? o.apiVersion : '';
  return { kind, version: apiVersion.split('/').pop() ?? '' };
}

// --- pruning -----------------------------------------------------------------------------------

/** apiVersion, kind and metadata of a resource (root or embedded) are the server's business. */
const RESOURCE_FIELDS = new Set(['apiVersion', 'kind', 'metadata']);

function pruneRoot(schema: JSONSchema, obj: unknown, unknown: string[]): unknown {
  if (!isObject(obj)) return obj;
  return pruneObject(schema, obj, '', unknown, true);
}

/** Returns `value` without the fields `schema` does not specify; records their paths. */
export function prune(schema: JSONSchema | undefined, value: unknown, path: string, unknown: string[]): unknown {
  if (schema === undefined) return value;
  if (Array.isArray(value)) {
    const items = asSchema(schema.items);
    return value.map((item, i) => prune(items, item, `${path}[${i}]`, unknown));
  }
  if (isObject(value)) return pruneObject(schema, value, path, unknown, schema['x-kubernetes-embedded-resource'] === true);
  return value;
}

function pruneObject(schema: JSONSchema, value: Record<string, unknown>, path: string, unknown: string[], isResource: boolean): Record<string, unknown> {
  const props = asProperties(schema.properties);
  const additional = asSchema(schema.additionalProperties);
  const preserve = schema['x-kubernetes-preserve-unknown-fields'] === true || schema.additionalProperties === true;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    const childPath = path ? `${path}.${key}` : key;
    if (isResource && RESOURCE_FIELDS.has(key)) {
      // metadata is validated as ObjectMeta elsewhere; the schema may only constrain name/generateName
      out[key] = key === 'metadata' ? v : prune(props?.[key], v, childPath, unknown);
      continue;
    }
    const sub = props?.[key] ?? additional;
    if (sub !== undefined) out[key] = prune(sub, v, childPath, unknown);
    else if (preserve) out[key] = v;
    else unknown.push(childPath);
  }
  return out;
}

// --- defaulting --------------------------------------------------------------------------------

/** Fills in `default`s of absent properties (and of nulls in non-nullable ones), depth first. */
export function applyDefaults(schema: JSONSchema | undefined, value: unknown): unknown {
  if (schema === undefined) return value;
  if (Array.isArray(value)) {
    const items = asSchema(schema.items);
    return value.map((item) => applyDefaults(items, item));
  }
  if (!isObject(value)) return value;
  const out: Record<string, unknown> = { ...value };
  const props = asProperties(schema.properties);
  for (const [key, sub] of Object.entries(props ?? {})) {
    const hasDefault = sub.default !== undefined;
    const absent = !(key in out);
    const nullNotAllowed = out[key] === null && sub.nullable !== true;
    if (hasDefault && (absent || nullNotAllowed)) out[key] = structuredClone(sub.default);
    if (key in out) out[key] = applyDefaults(sub, out[key]);
  }
  const additional = asSchema(schema.additionalProperties);
  if (additional !== undefined) {
    for (const key of Object.keys(out)) {
      if (props?.[key] === undefined) out[key] = applyDefaults(additional, out[key]);
    }
  }
  return out;
}

// --- validation --------------------------------------------------------------------------------

/**
 * Validates `obj` against the CRD schema. The root's apiVersion/kind/metadata are skipped: the
 * server checks them with the ObjectMeta rules, not the schema.
 */
export function validateRoot(schema: JSONSchema, obj: unknown): FieldError[] {
  const errs: FieldError[] = [];
  if (!isObject(obj)) {
    validateNode(schema, obj, '', errs);
    return errs;
  }
  const rest: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) if (!RESOURCE_FIELDS.has(k)) rest[k] = v;
  const rootSchema: JSONSchema = { ...schema, required: asStringList(schema.required).filter((r) => !RESOURCE_FIELDS.has(r)) };
  validateNode(rootSchema, rest, '', errs);
  return errs;
}

/** Validates one value against one schema node, appending errors in the validator's order. */
export function validateNode(schema: JSONSchema, value: unknown, path: string, errs: FieldError[]): void {
  const types = schemaTypes(schema);
  const format = typeof schema.format === 'string' ? schema.format : '';
  if (value === null || value === undefined) {
    if (types.length > 0 && schema.nullable !== true) errs.push(typeInvalid(path, types.join(','), 'null'));
    checkEnum(schema, null, path, errs);
    return;
  }
  const [dataType, dataFormat] = jsonSchemaType(value);
  checkType(types, format, dataType, dataFormat, value, path, errs);
  if (typeof value === 'string') {
    checkString(schema, value, path, errs);
    checkFormat(format, value, path, errs);
  }
  if (typeof value === 'number') checkNumber(schema, value, path, errs);
  if (Array.isArray(value)) checkArray(schema, value, path, errs);
  checkEnum(schema, value, path, errs);
  if (isObject(value)) checkObject(schema, value, path, errs);
}

/** The JSON type and Go-side format kube-openapi infers for a decoded JSON value. */
function jsonSchemaType(v: unknown): [string, string] {
  if (typeof v === 'string') return ['string', ''];
  if (typeof v === 'boolean') return ['boolean', ''];
  // the server decodes integral JSON numbers as int64, everything else as float64
  if (typeof v === 'number') return Number.isInteger(v) ? ['integer', 'int64'] : ['number', 'float64'];
  if (Array.isArray(v)) return ['array', ''];
  return ['object', ''];
}

function schemaTypes(schema: JSONSchema): string[] {
  if (schema['x-kubernetes-int-or-string'] === true) return ['integer', 'string'];
  return typeof schema.type === 'string' && schema.type !== '' ? [schema.type] : [];
}

/** kube-openapi's typeValidator, quirks included (a format names the type for non-strings). */
function checkType(types: string[], format: string, dataType: string, dataFormat: string, value: unknown, path: string, errs: FieldError[]): void {
  if (types.length === 0 && format === '') return;
  const has = (t: string): boolean => types.includes(t);
  const isFloatInt = dataType === 'number' && Number.isInteger(value) && has('integer');
  const isIntFloat = dataType === 'integer' && has('number');
  const isLowerInt = format === 'int64' && dataFormat === 'int32';
  const isLowerFloat = format === 'float64' && dataFormat === 'float32';
  const isStringOrSlice = dataType === 'string' || dataType === 'array';
  if (!isStringOrSlice && format !== '' && !(has(dataType) || dataFormat === format || isFloatInt || isIntFloat || isLowerInt || isLowerFloat)) {
    errs.push(typeInvalid(path, format, dataFormat));
    return;
  }
  if (!(has('number') || has('integer')) && format !== '' && isStringOrSlice) return;
  if (types.length > 0 && !(has(dataType) || isFloatInt || isIntFloat)) errs.push(typeInvalid(path, types.join(','), dataType));
}

/** maxLength, minLength, pattern: the first failure only, like the string validator. */
function checkString(schema: JSONSchema, value: string, path: string, errs: FieldError[]): void {
  const length = [...value].length; // counted in runes, not bytes
  const max = asNumber(schema.maxLength);
  const min = asNumber(schema.minLength);
  if (max !== undefined && length > max) {
    errs.push({ reason: 'FieldValueTooLong', field: path, message: `Too long: may not be more than ${max} bytes` });
    return;
  }
  if (min !== undefined && length < min) {
    errs.push(invalid(path, value, `${path} in body should be at least ${min} chars long`));
    return;
  }
  if (typeof schema.pattern === 'string' && !matches(schema.pattern, value)) {
    errs.push(invalid(path, value, `${path} in body should match '${schema.pattern}'`));
  }
}

function matches(pattern: string, value: string): boolean {
  try {
    return new RegExp(pattern, 'u').test(value);
  } catch {
    return true; // a pattern JavaScript cannot compile is not the user's fault here
  }
}

/** String formats the server knows; unknown formats are not checked. */
const FORMAT_CHECKS: Record<string, (s: string) => boolean> = {
  'date-time': (s) => /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.test(s) && !Number.isNaN(Date.parse(s.replace(' ', 'T'))),
  date: (s) => /^\d{4}-\d{2}-\d{2}$/.test(s) && !Number.isNaN(Date.parse(s)),
  uuid: (s) => /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i.test(s),
  byte: (s) => /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(s),
  ipv4: (s) => /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/.test(s),
  ipv6: (s) => s.includes(':') && /^[0-9a-fA-F:.]+$/.test(s),
  hostname: (s) => s.length <= 255 && /^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*$/.test(s),
};

function checkFormat(format: string, value: string, path: string, errs: FieldError[]): void {
  const check = FORMAT_CHECKS[format];
  if (check && !check(value)) errs.push(typeInvalid(path, format, value, value));
}

/** multipleOf, minimum, maximum: all reported. Integer data prints bounds as integers. */
function checkNumber(schema: JSONSchema, value: number, path: string, errs: FieldError[]): void {
  const isInt = Number.isInteger(value);
  const show = (n: number): string => (isInt ? String(Math.trunc(n)) : goFloat(n));
  const multipleOf = asNumber(schema.multipleOf);
  if (multipleOf !== undefined && multipleOf > 0 && !isMultiple(value, multipleOf)) {
    errs.push(invalid(path, value, `${path} in body should be a multiple of ${show(multipleOf)}`));
  }
  const min = asNumber(schema.minimum);
  if (min !== undefined) {
    const exclusive = schema.exclusiveMinimum === true;
    if (exclusive ? value <= min : value < min) {
      errs.push(invalid(path, value, `${path} in body should be greater than ${exclusive ? '' : 'or equal to '}${show(min)}`));
    }
  }
  const max = asNumber(schema.maximum);
  if (max !== undefined) {
    const exclusive = schema.exclusiveMaximum === true;
    if (exclusive ? value >= max : value > max) {
      errs.push(invalid(path, value, `${path} in body should be less than ${exclusive ? '' : 'or equal to '}${show(max)}`));
    }
  }
}

function isMultiple(value: number, factor: number): boolean {
  const q = value / factor;
  return Math.abs(q - Math.round(q)) < 1e-9;
}

/** Items first, then minItems, then maxItems, as the slice validator orders them. */
function checkArray(schema: JSONSchema, value: unknown[], path: string, errs: FieldError[]): void {
  const items = asSchema(schema.items);
  if (items !== undefined) value.forEach((item, i) => validateNode(items, item, `${path}[${i}]`, errs));
  const min = asNumber(schema.minItems);
  const max = asNumber(schema.maxItems);
  if (min !== undefined && value.length < min) {
    errs.push(invalid(path, value.length, `${path} in body should have at least ${min} items`));
  }
  if (max !== undefined && value.length > max) {
    errs.push({ reason: 'FieldValueTooMany', field: path, message: `Too many: ${value.length}: must have at most ${max} items` });
  }
}

function checkEnum(schema: JSONSchema, value: unknown, path: string, errs: FieldError[]): void {
  if (!Array.isArray(schema.enum) || schema.enum.length === 0) return;
  if (schema.enum.some((e) => deepEqual(e, value))) return;
  const supported = schema.enum.map((e) => JSON.stringify(typeof e === 'string' ? e : JSON.stringify(e)));
  errs.push({ reason: 'FieldValueNotSupported', field: path, message: `Unsupported value: ${goValue(value)}: supported values: ${supported.join(', ')}` });
}

/** Properties (schema order), then additionalProperties, then required; embedded resources. */
function checkObject(schema: JSONSchema, value: Record<string, unknown>, path: string, errs: FieldError[]): void {
  const count = Object.keys(value).length;
  const minProps = asNumber(schema.minProperties);
  const maxProps = asNumber(schema.maxProperties);
  if (minProps !== undefined && count < minProps) {
    errs.push(invalid(path, count, `${path} in body should have at least ${minProps} properties`));
    return;
  }
  if (maxProps !== undefined && count > maxProps) {
    errs.push({ reason: 'FieldValueTooMany', field: path, message: `Too many: ${count}: must have at most ${maxProps} items` });
    return;
  }
  const props = asProperties(schema.properties) ?? {};
  for (const [key, sub] of Object.entries(props)) {
    if (key in value) validateNode(sub, value[key], join(path, key), errs);
  }
  const additional = asSchema(schema.additionalProperties);
  if (additional !== undefined) {
    for (const [key, v] of Object.entries(value)) if (!(key in props)) validateNode(additional, v, join(path, key), errs);
  }
  for (const key of asStringList(schema.required)) {
    if (!(key in value)) errs.push({ reason: 'FieldValueRequired', field: join(path, key), message: 'Required value' });
  }
  if (schema['x-kubernetes-embedded-resource'] === true) checkEmbedded(value, path, errs);
}

/** An embedded resource must name its apiVersion and kind. */
function checkEmbedded(value: Record<string, unknown>, path: string, errs: FieldError[]): void {
  for (const key of ['apiVersion', 'kind']) {
    if (typeof value[key] !== 'string' || value[key] === '') {
      errs.push({ reason: 'FieldValueRequired', field: join(path, key), message: 'Required value: must not be empty' });
    }
  }
}

// --- structural schema checks ------------------------------------------------------------------

const OPENAPI_TYPES = ['array', 'boolean', 'integer', 'number', 'object', 'string'];

/**
 * Why `schema` cannot serve as a CRD version's structural schema, as field errors under `base`
 * (e.g. "spec.versions[0].schema.openAPIV3Schema").
 */
export function structuralErrors(schema: unknown, base = 'openAPIV3Schema'): FieldError[] {
  const errs: FieldError[] = [];
  if (!isObject(schema)) {
    errs.push({ reason: 'FieldValueRequired', field: base, message: 'Required value' });
    return errs;
  }
  if (schema.type === undefined || schema.type === '') {
    errs.push({ reason: 'FieldValueRequired', field: `${base}.type`, message: 'Required value: must not be empty at the root' });
  } else if (schema.type !== 'object' && OPENAPI_TYPES.includes(String(schema.type))) {
    errs.push(invalid(`${base}.type`, schema.type, 'must be object at the root'));
  }
  checkSchemaNode(schema, base, errs, 'root');
  return errs;
}

/** `checkStructural` for callers that only need the messages: "<field>: <message>" lines. */
export function checkStructural(schema: unknown, base = 'openAPIV3Schema'): string[] {
  return structuralErrors(schema, base).map((e) => `${e.field}: ${e.message}`);
}

function checkSchemaNode(s: JSONSchema, path: string, errs: FieldError[], role: 'root' | 'property' | 'items' | 'additional'): void {
  const intOrString = s['x-kubernetes-int-or-string'] === true;
  const preserve = s['x-kubernetes-preserve-unknown-fields'];
  if (s.type !== undefined && s.type !== '' && !OPENAPI_TYPES.includes(String(s.type))) {
    errs.push({ reason: 'FieldValueNotSupported', field: `${path}.type`, message: `Unsupported value: ${goValue(s.type)}: supported values: ${OPENAPI_TYPES.map((t) => JSON.stringify(t)).join(', ')}` });
  }
  if ((s.type === undefined || s.type === '') && !intOrString && preserve !== true && role !== 'root') {
    const detail = role === 'items' ? 'must not be empty for specified array items' : 'must not be empty for specified object fields';
    errs.push({ reason: 'FieldValueRequired', field: `${path}.type`, message: `Required value: ${detail}` });
  }
  if (preserve === false) errs.push(invalid(`${path}.x-kubernetes-preserve-unknown-fields`, false, 'must be true or undefined'));
  if (s.type === 'array' && s.items === undefined) {
    errs.push({ reason: 'FieldValueRequired', field: `${path}.items`, message: 'Required value: must be specified' });
  }
  if (s.properties !== undefined && s.additionalProperties !== undefined && s.additionalProperties !== false) {
    errs.push({ reason: 'FieldValueForbidden', field: `${path}.additionalProperties`, message: 'Forbidden: additionalProperties and properties are mutual exclusive' });
  }
  if (s['x-kubernetes-embedded-resource'] === true && s.type !== 'object') {
    errs.push(invalid(`${path}.type`, s.type ?? '', 'must be object if x-kubernetes-embedded-resource is true'));
  }
  for (const [key, sub] of Object.entries(asProperties(s.properties) ?? {})) {
    checkSchemaNode(sub, `${path}.properties[${key}]`, errs, 'property');
  }
  const items = asSchema(s.items);
  if (items !== undefined) checkSchemaNode(items, `${path}.items`, errs, 'items');
  const additional = asSchema(s.additionalProperties);
  if (additional !== undefined) checkSchemaNode(additional, `${path}.additionalProperties`, errs, 'additional');
}

// --- helpers -----------------------------------------------------------------------------------

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function asSchema(v: unknown): JSONSchema | undefined {
  return isObject(v) ? v : undefined;
}

function asProperties(v: unknown): Record<string, JSONSchema> | undefined {
  return isObject(v) ? (v as Record<string, JSONSchema>) : undefined;
}

function asNumber(v: unknown): number | undefined {
  return typeof v === 'number' ? v : undefined;
}

function asStringList(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

/** `X in body must be of type T: "actual"`, reported as a type error of the field. */
function typeInvalid(path: string, expected: string, actual: string, badValue: unknown = actual): FieldError {
  return { reason: 'FieldValueTypeInvalid', field: path, message: `Invalid value: ${goValue(badValue)}: ${path} in body must be of type ${expected}: ${JSON.stringify(actual)}` };
}

function invalid(path: string, value: unknown, detail: string): FieldError {
  return { reason: 'FieldValueInvalid', field: path, message: `Invalid value: ${goValue(value)}: ${detail}` };
}

/** A bad value as field.Error prints it: strings quoted, numbers and booleans bare. */
export function goValue(v: unknown): string {
  if (v === null || v === undefined) return '"null"';
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : goFloat(v);
  if (typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

/** Go's %v of a float64: shortest digits, exponent form below 1e-4 and from 1e+06 (=%g). */
export function goFloat(n: number): string {
  if (n === 0 || !Number.isFinite(n)) return String(n);
  const [mantissa, expText] = n.toExponential().split('e') as [string, string];
  const exp = Number(expText);
  if (exp < -4 || exp >= 6) {
    const sign = exp < 0 ? '-' : '+';
    const digits = String(Math.abs(exp)).padStart(2, '0');
    return `${mantissa}e${sign}${digits}`;
  }
  return String(n);
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}
