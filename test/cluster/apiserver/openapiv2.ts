/**
 * The OpenAPI v2 (swagger 2.0) document the server publishes at /openapi/v2. kubectl still falls
 * back to it in two places even when OpenAPI v3 is served:
 * - client-side validation (`--validate=strict`, the default): when the kind's v3 group-version
 *   document has no PATCH operation taking `fieldValidation` (TokenReview, SubjectAccessReview and
 *   the other create-only kinds, or a kind the server does not know at all), kubectl validates the
 *   object itself against the v2 definition whose `x-kubernetes-group-version-kind` names the kind;
 * - cli-runtime's query param verifier, when reading the v3 document fails for another reason
 *   than "this kind takes no fieldValidation".
 * kubectl asks for the protobuf form (gnostic's `openapi_v2.Document`) and gives up on the whole
 * command if the download fails, so the document must exist and decode, and every `$ref` in it must
 * resolve: kubectl's parser rejects the document as a whole on a dangling reference.
 *
 * The document is derived from the v3 documents (openapi.ts) so that both describe the same paths
 * and schemas: references lose their `allOf` wrapper and point into `#/definitions/`, request bodies
 * become `body` parameters, and schemas drop what v2 cannot say, with the rules the real server
 * applies to CRD schemas (nullable and x-kubernetes-preserve-unknown-fields subtrees become untyped,
 * because kubectl would otherwise reject values it cannot describe).
 */
import protobuf from 'protobufjs';
import YAML from 'yaml';

import { openapiForGroupVersion, sortKeys, type OpenAPIOptions } from './openapi.js';
import { OPENAPI_V2_PROTO } from './openapiv2proto.js';
import { apiVersionOf, type ResourceType } from './types.js';

type Json = Record<string, unknown>;

/**
 * The protobuf media type as the server labels its answer. Clients ask with the older spelling
 * (`...spec.v2@v1.0+protobuf`, what client-go's `OpenAPISchema()` sends), but Go's MIME parser
 * rejects an `@` in a Content-Type, so the real server answers with this one whichever was asked.
 */
export const OPENAPI_V2_PROTOBUF = 'application/com.github.proto-openapi.spec.v2.v1.0+protobuf';

const V2_FORMATS: { subtype: string; format: 'json' | 'protobuf'; contentType: string }[] = [
  { subtype: 'json', format: 'json', contentType: 'application/json' },
  { subtype: 'com.github.proto-openapi.spec.v2@v1.0+protobuf', format: 'protobuf', contentType: OPENAPI_V2_PROTOBUF },
  { subtype: 'com.github.proto-openapi.spec.v2.v1.0+protobuf', format: 'protobuf', contentType: OPENAPI_V2_PROTOBUF },
];

/**
 * Which form of /openapi/v2 an Accept header gets: the first acceptable clause by quality (no
 * header means any), JSON preferred on a wildcard. undefined means 406 Not Acceptable.
 */
export function negotiateOpenapiV2(accept: string | undefined): { format: 'json' | 'protobuf'; contentType: string } | undefined {
  const clauses = (accept?.trim() ? accept : '*/*')
    .split(',')
    .map((c, i) => {
      const [range = '', ...params] = c.split(';').map((x) => x.trim());
      const q = params.find((p) => p.startsWith('q='));
      const [type = '', subtype = ''] = range.split('/');
      return { type, subtype, q: q ? Number(q.slice(2)) : 1, i };
    })
    .filter((c) => c.q > 0)
    .sort((a, b) => b.q - a.q || a.i - b.i);
  for (const c of clauses) {
    if (c.type !== 'application' && c.type !== '*') continue;
    const hit = V2_FORMATS.find((f) => c.subtype === '*' || c.subtype === f.subtype);
    if (hit) return { format: hit.format, contentType: hit.contentType };
  }
  return undefined;
}

/** The protobuf-encoded gnostic `openapi_v2.Document` describing `resources` (any mix of groups). */
export function openapiV2Protobuf(resources: ResourceType[], opts: OpenAPIOptions = {}): Buffer {
  return encodeOpenapiV2(openapiV2Document(resources, opts));
}

/** The swagger 2.0 JSON document describing `resources` (what /openapi/v2 serves as JSON). */
export function openapiV2Document(resources: ResourceType[], opts: OpenAPIOptions = {}): Json {
  const paths: Json = {};
  const definitions: Json = {};
  for (const group of groupByApiVersion(resources)) {
    const v3 = openapiForGroupVersion(group, opts);
    for (const [path, item] of Object.entries(v3.paths as Json)) paths[path] = pathItemV2(item as Json);
    const schemas = (v3.components as Json).schemas as Json;
    for (const [name, schema] of Object.entries(schemas)) addDefinition(definitions, name, schemaV2(schema as Json));
  }
  return sortKeys({
    swagger: '2.0',
    info: { title: 'Kubernetes', version: 'unversioned' },
    paths,
    definitions,
    securityDefinitions: { BearerToken: { type: 'apiKey', description: 'Bearer Token authentication', name: 'authorization', in: 'header' } },
    security: [{ BearerToken: [] }],
  }) as Json;
}

function groupByApiVersion(resources: ResourceType[]): ResourceType[][] {
  const byGv = new Map<string, ResourceType[]>();
  for (const rt of resources) {
    const gv = apiVersionOf(rt);
    byGv.set(gv, [...(byGv.get(gv) ?? []), rt]);
  }
  return [...byGv.values()];
}

/**
 * Shared definitions (ObjectMeta, DeleteOptions, ...) arrive once per group-version with the same
 * content; only their kind lists may differ, and the real document lists every kind.
 */
function addDefinition(definitions: Json, name: string, schema: Json): void {
  const existing = definitions[name] as Json | undefined;
  if (!existing) {
    definitions[name] = schema;
    return;
  }
  const key = 'x-kubernetes-group-version-kind';
  const have = (existing[key] ?? []) as Json[];
  const more = ((schema[key] ?? []) as Json[]).filter((g) => !have.some((h) => JSON.stringify(h) === JSON.stringify(g)));
  if (more.length > 0) existing[key] = [...have, ...more];
}

// --- paths -------------------------------------------------------------------------------------

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch'] as const;

function pathItemV2(item: Json): Json {
  const out: Json = {};
  for (const m of METHODS) if (item[m]) out[m] = operationV2(m, item[m] as Json);
  if (Array.isArray(item.parameters)) out.parameters = (item.parameters as Json[]).map(parameterV2);
  return out;
}

function operationV2(method: string, op: Json): Json {
  const body = op.requestBody as Json | undefined;
  const bodyTypes = body ? Object.keys(body.content as Json) : [];
  const params = ((op.parameters ?? []) as Json[]).map(parameterV2);
  if (body) params.unshift({ name: 'body', in: 'body', required: body.required === true, schema: schemaV2(firstSchema(body.content as Json)) });
  const responses: Json = {};
  const produces = new Set<string>();
  for (const [code, r] of Object.entries(op.responses as Json)) {
    const resp = r as Json;
    const content = resp.content as Json | undefined;
    responses[code] = content ? { description: resp.description, schema: schemaV2(firstSchema(content)) } : { description: resp.description };
    for (const t of Object.keys(content ?? {})) produces.add(t);
  }
  const out: Json = {
    operationId: op.operationId,
    // PATCH lists its patch types, which is how kubectl tells whether strategic merge patch is taken.
    consumes: method === 'patch' ? bodyTypes : ['*/*'],
    produces: [...produces],
    schemes: ['https'],
    responses,
    ...extensionsOf(op),
  };
  if (params.length > 0) out.parameters = params;
  return out;
}

function firstSchema(content: Json): Json {
  const media = Object.values(content)[0] as Json | undefined;
  return (media?.schema ?? {}) as Json;
}

/** v3 `{name, in, schema: {type}}` → v2 `{name, in, type}`. */
function parameterV2(p: Json): Json {
  const { schema, ...rest } = p as Json & { schema?: Json };
  return { ...rest, ...(schema ?? {}) };
}

function extensionsOf(o: Json): Json {
  return Object.fromEntries(Object.entries(o).filter(([k]) => k.startsWith('x-')));
}

// --- schemas -----------------------------------------------------------------------------------

/** The keywords a v2 schema has (anything else of v3, such as oneOf or nullable, is dropped). */
const V2_SCHEMA_KEYS = new Set([
  '$ref', 'format', 'title', 'description', 'default', 'multipleOf', 'maximum', 'exclusiveMaximum', 'minimum',
  'exclusiveMinimum', 'maxLength', 'minLength', 'pattern', 'maxItems', 'minItems', 'uniqueItems', 'maxProperties',
  'minProperties', 'required', 'enum', 'additionalProperties', 'type', 'items', 'properties', 'readOnly', 'example',
]);

/** A v3 schema as a v2 schema. Exported for tests. */
export function schemaV2(s: Json): Json {
  const ref = refOf(s);
  if (ref) {
    // kubectl rejects a reference that also carries a type or properties.
    const out: Json = { $ref: ref, ...extensionsOf(s) };
    if (typeof s.description === 'string') out.description = s.description;
    return out;
  }
  const out: Json = {};
  for (const [k, v] of Object.entries(s)) if (V2_SCHEMA_KEYS.has(k) || k.startsWith('x-')) out[k] = v;
  if (isObject(s.properties)) out.properties = Object.fromEntries(Object.entries(s.properties).map(([k, v]) => [k, schemaV2(v as Json)]));
  if (isObject(s.items)) out.items = schemaV2(s.items);
  if (isObject(s.additionalProperties)) out.additionalProperties = schemaV2(s.additionalProperties);
  return untypeWhatKubectlCannotCheck(out, s);
}

/** `$ref`, or the real v3 documents' `allOf: [{$ref}]` wrapper, rewritten to `#/definitions/`. */
function refOf(s: Json): string | undefined {
  let ref = s.$ref;
  if (ref === undefined && Array.isArray(s.allOf) && s.allOf.length === 1 && isObject(s.allOf[0])) ref = s.allOf[0].$ref;
  return typeof ref === 'string' ? ref.replace('#/components/schemas/', '#/definitions/') : undefined;
}

/**
 * The real server's v2 rules for CRD schemas: kubectl cannot cope with a nullable value, with
 * fields it does not know under x-kubernetes-preserve-unknown-fields, or with an array without an
 * item schema, so such subtrees lose their type (and with it, client-side checking).
 */
function untypeWhatKubectlCannotCheck(out: Json, v3: Json): Json {
  const preserve = v3['x-kubernetes-preserve-unknown-fields'] === true;
  if (v3.nullable === true || preserve) {
    delete out.items;
    delete out.properties;
  }
  if (v3.nullable === true) delete out.type;
  if (out.type === 'array' && out.items === undefined) delete out.type;
  if (preserve && out.type === 'object') delete out.type;
  const props = isObject(v3.properties) ? v3.properties : {};
  if (Array.isArray(out.required)) {
    const required = (out.required as string[]).filter((f) => !(isObject(props[f]) && props[f].nullable === true));
    if (required.length > 0) out.required = required;
    else delete out.required;
  }
  if (isObject(v3.additionalProperties) && v3.additionalProperties.nullable === true) delete out.required;
  return out;
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// --- protobuf ----------------------------------------------------------------------------------

let root: protobuf.Root | undefined;

function documentType(): protobuf.Type {
  // keepCase: the messages below are written with the .proto's own (snake_case) field names.
  root ??= protobuf.parse(OPENAPI_V2_PROTO, { keepCase: true }).root;
  return root.lookupType('openapi.v2.Document');
}

/** Encodes a swagger 2.0 JSON document as gnostic's `openapi_v2.Document`. */
export function encodeOpenapiV2(doc: Json): Buffer {
  const type = documentType();
  return Buffer.from(type.encode(type.fromObject(documentMessage(doc))).finish());
}

/** Decodes gnostic protobuf bytes into a plain object with the .proto's field names (for tests). */
export function decodeOpenapiV2(bytes: Uint8Array): Json {
  const type = documentType();
  return type.toObject(type.decode(bytes), { longs: Number, arrays: false, defaults: false }) as Json;
}

function documentMessage(d: Json): Json {
  const sec = (d.securityDefinitions ?? {}) as Json;
  return {
    swagger: d.swagger,
    info: { ...(d.info as Json), vendor_extension: vendorExtensions(d.info as Json) },
    paths: { path: named(d.paths as Json, pathItemMessage) },
    definitions: { additional_properties: named(d.definitions as Json, schemaMessage) },
    security: ((d.security ?? []) as Json[]).map((req) => ({
      additional_properties: Object.entries(req).map(([name, scopes]) => ({ name, value: { value: scopes } })),
    })),
    security_definitions: {
      additional_properties: Object.entries(sec).map(([name, s]) => ({ name, value: { api_key_security: { ...(s as Json), vendor_extension: vendorExtensions(s as Json) } } })),
    },
    vendor_extension: vendorExtensions(d),
  };
}

function named(o: Json | undefined, message: (v: Json) => Json): Json[] {
  return Object.entries(o ?? {}).map(([name, v]) => ({ name, value: message(v as Json) }));
}

function pathItemMessage(item: Json): Json {
  const out: Json = { vendor_extension: vendorExtensions(item) };
  for (const m of METHODS) if (item[m]) out[m] = operationMessage(item[m] as Json);
  if (Array.isArray(item.parameters)) out.parameters = (item.parameters as Json[]).map(parameterMessage);
  return out;
}

function operationMessage(op: Json): Json {
  return {
    tags: op.tags,
    summary: op.summary,
    description: op.description,
    operation_id: op.operationId,
    produces: op.produces,
    consumes: op.consumes,
    parameters: ((op.parameters ?? []) as Json[]).map(parameterMessage),
    responses: {
      response_code: Object.entries((op.responses ?? {}) as Json).map(([name, r]) => ({ name, value: { response: responseMessage(r as Json) } })),
    },
    schemes: op.schemes,
    deprecated: op.deprecated,
    vendor_extension: vendorExtensions(op),
  };
}

function responseMessage(r: Json): Json {
  const out: Json = { description: r.description ?? '', vendor_extension: vendorExtensions(r) };
  if (isObject(r.schema)) out.schema = { schema: schemaMessage(r.schema) };
  return out;
}

/** A parameter in the oneof nest gnostic uses: body, or non-body by location, or a reference. */
function parameterMessage(p: Json): Json {
  if (typeof p.$ref === 'string') return { json_reference: { _ref: p.$ref } };
  const common = { name: p.name, in: p.in, description: p.description, required: p.required, vendor_extension: vendorExtensions(p) };
  if (p.in === 'body') return { parameter: { body_parameter: { ...common, schema: schemaMessage((p.schema ?? {}) as Json) } } };
  const sub = { ...common, type: p.type, format: p.format, unique_items: p.uniqueItems };
  if (p.in === 'query') return { parameter: { non_body_parameter: { query_parameter_sub_schema: sub } } };
  if (p.in === 'path') return { parameter: { non_body_parameter: { path_parameter_sub_schema: sub } } };
  throw new Error(`openapi v2: unsupported parameter location ${String(p.in)}`);
}

function schemaMessage(s: Json): Json {
  const items = s.items;
  const ap = s.additionalProperties;
  return {
    _ref: s.$ref,
    format: s.format,
    title: s.title,
    description: s.description,
    default: s.default === undefined ? undefined : anyMessage(s.default),
    multiple_of: s.multipleOf,
    maximum: s.maximum,
    exclusive_maximum: s.exclusiveMaximum,
    minimum: s.minimum,
    exclusive_minimum: s.exclusiveMinimum,
    max_length: s.maxLength,
    min_length: s.minLength,
    pattern: s.pattern,
    max_items: s.maxItems,
    min_items: s.minItems,
    unique_items: s.uniqueItems,
    max_properties: s.maxProperties,
    min_properties: s.minProperties,
    required: s.required,
    enum: Array.isArray(s.enum) ? s.enum.map(anyMessage) : undefined,
    additional_properties: typeof ap === 'boolean' ? { boolean: ap } : isObject(ap) ? { schema: schemaMessage(ap) } : undefined,
    type: s.type === undefined ? undefined : { value: Array.isArray(s.type) ? s.type : [s.type] },
    items: Array.isArray(items) ? { schema: (items as Json[]).map(schemaMessage) } : isObject(items) ? { schema: [schemaMessage(items)] } : undefined,
    all_of: Array.isArray(s.allOf) ? (s.allOf as Json[]).map(schemaMessage) : undefined,
    properties: isObject(s.properties) ? { additional_properties: named(s.properties, schemaMessage) } : undefined,
    read_only: s.readOnly,
    example: s.example === undefined ? undefined : anyMessage(s.example),
    vendor_extension: vendorExtensions(s),
  };
}

/**
 * `x-` keys as gnostic's NamedAny list. gnostic keeps each value as YAML text, and that is what
 * kubectl reads back (it YAML-decodes `x-kubernetes-group-version-kind` both from a PATCH
 * operation, as a map, and from a definition, as a list of maps).
 */
function vendorExtensions(o: Json): Json[] {
  return Object.entries(o)
    .filter(([k]) => k.startsWith('x-'))
    .map(([name, value]) => ({ name, value: anyMessage(value) }));
}

function anyMessage(value: unknown): Json {
  return { yaml: YAML.stringify(value, { lineWidth: 0 }) };
}
