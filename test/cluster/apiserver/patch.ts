/**
 * PATCH semantics of the API test server, as pure functions: JSON Patch (RFC 6902), JSON Merge Patch
 * (RFC 7386) and strategic merge patch, with the errors the real kube-apiserver gives for each.
 *
 * Faithfulness notes (k8s.io/apiserver handlers/patch.go, k8s.io/apimachinery strategicpatch):
 * - the patch body is decoded the way Go's encoding/json does it, so that an unparseable body gets
 *   Go's message ("invalid character 'x' looking for beginning of value") in a 400 BadRequest;
 * - a JSON patch that does not apply is a bare 422 Invalid: the real server discards the
 *   json-patch library's text and says only "the server rejected our request due to an error in
 *   our request";
 * - strategic merge patch follows the server-side merge (MergeParallelList, IgnoreUnmatchedNulls),
 *   including its list ordering rules: items named in the patch but new to the list go first unless
 *   `$setElementOrder` says otherwise;
 * - custom resources do not accept strategic merge patch: 415 with the media types they do accept.
 *
 * The result is the patched wire object. Like the real server, the caller still has to decode it
 * against the schema (unknown fields, `null`s, stray `$` directives in new subtrees), check name and
 * namespace, and validate.
 */
import jsonpatch from 'fast-json-patch';
import { ApiError, badRequest } from './errors.js';
import { fieldType, goTypeName, type TypeRef } from './models.js';
import { patchMeta, type PatchMeta } from './patchmeta.js';
import type { KObject } from './types.js';

export const JSON_PATCH = 'application/json-patch+json';
export const MERGE_PATCH = 'application/merge-patch+json';
export const STRATEGIC_MERGE_PATCH = 'application/strategic-merge-patch+json';
export const APPLY_PATCH = 'application/apply-patch+yaml';

/** The most operations a JSON patch may carry (maxJSONPatchOperations). */
export const MAX_JSON_PATCH_OPERATIONS = 10000;

export interface PatchOptions {
  /** the request's `fieldValidation` parameter; absent means Warn, as on the real server */
  fieldValidation?: string;
}

/** The patch media types a resource accepts, in the order the real server lists them. */
export function acceptedPatchTypes(builtIn: boolean): string[] {
  return builtIn ? [JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH] : [JSON_PATCH, MERGE_PATCH, APPLY_PATCH];
}

/** 415 for a patch Content-Type the resource does not accept (negotiation.NewUnsupportedMediaTypeError). */
export function unsupportedPatchType(accepted: string[]): ApiError {
  return new ApiError(
    415,
    'UnsupportedMediaType',
    `the body of the request was in an unknown format - accepted media types include: ${accepted.join(', ')}`,
  );
}

/**
 * Applies a PATCH body to `original` and returns the patched object (a fresh copy; `original` is
 * not touched). `modelName` is the client-node model of a built-in kind ("V1Deployment"); leave it
 * out for custom resources. Throws ApiError with the real server's code, reason and message.
 * Server-side apply (application/apply-patch+yaml) is accepted but not handled here.
 */
export function applyPatch(
  contentType: string,
  original: KObject,
  patchBody: string | Buffer,
  modelName?: string,
  options: PatchOptions = {},
): KObject {
  const type = mediaType(contentType);
  const accepted = acceptedPatchTypes(modelName !== undefined);
  if (!accepted.includes(type)) throw unsupportedPatchType(accepted);
  const text = typeof patchBody === 'string' ? patchBody : patchBody.toString('utf8');
  // Warn and Strict decode the patch strictly first, which changes some messages.
  const strict = options.fieldValidation !== 'Ignore';
  switch (type) {
    case JSON_PATCH:
      return asObject(applyJsonPatch(structuredClone(original), decodeJsonPatch(text, strict)));
    case MERGE_PATCH:
      return asObject(jsonMergePatch(structuredClone(original), decodeMergePatch(text, strict)));
    case STRATEGIC_MERGE_PATCH:
      return strategicMergePatch(original, decodeStrategicPatch(text), modelName!) as KObject;
    default:
      // What the real patcher says for a type it lists but has no mechanism for.
      throw new ApiError(500, '', `${type}: unimplemented patch type`);
  }
}

/** "application/json-patch+json; charset=utf-8" → "application/json-patch+json", as the server cuts it. */
function mediaType(contentType: string): string {
  const semi = contentType.indexOf(';');
  return semi > 0 ? contentType.slice(0, semi) : contentType;
}

/** The patched document must still be an object; the real server fails decoding it otherwise. */
function asObject(doc: unknown): KObject {
  if (isMap(doc)) return doc as KObject;
  const json = JSON.stringify(doc);
  const detail =
    `couldn't get version/kind; json parse error: json: cannot unmarshal ${goJsonKind(doc)} into Go value of type ` +
    'struct { APIVersion string "json:\\"apiVersion,omitempty\\""; Kind string "json:\\"kind,omitempty\\"" }';
  const body = `Invalid value: ${JSON.stringify(json)}: ${detail}`;
  throw new ApiError(422, 'Invalid', ` "" is invalid: patch: ${body}`, {
    causes: [{ reason: 'FieldValueInvalid', message: body, field: 'patch' }],
  });
}

/** The generic 422 (NewGenericServerResponse): no detail survives, only this sentence. */
function unprocessable(): ApiError {
  return new ApiError(422, 'Invalid', 'the server rejected our request due to an error in our request', {});
}

/** A plain Go error reaching the handler: 500 with no reason and the error text as the message. */
function serverError(message: string): ApiError {
  return new ApiError(500, '', message);
}

// ---------------------------------------------------------------------------------------------
// JSON Patch (RFC 6902)
// ---------------------------------------------------------------------------------------------

type Operation = jsonpatch.Operation;

/** Decodes a JSON patch body; 400 with Go's decoding message when it is not a list of operations. */
export function decodeJsonPatch(text: string, strict = true): unknown[] {
  const prefix = strict ? 'error decoding patch: ' : '';
  const ops = parseGoJson(text, prefix);
  if (ops === null) return []; // a null list is an empty patch
  const listType = strict ? '[]handlers.jsonPatchOp' : 'jsonpatch.Patch';
  const opType = strict ? 'handlers.jsonPatchOp' : 'jsonpatch.Operation';
  if (!Array.isArray(ops)) throw badRequest(`${prefix}json: cannot unmarshal ${goJsonKind(ops)} into Go value of type ${listType}`);
  for (const op of ops) {
    if (op === null) continue;
    if (!isMap(op)) throw badRequest(`${prefix}json: cannot unmarshal ${goJsonKind(op)} into Go value of type ${opType}`);
    if (!strict) continue;
    // The strict decoder reads each operation into a struct of strings.
    for (const field of ['op', 'path', 'from'] as const) {
      const v = op[field];
      if (v !== undefined && v !== null && typeof v !== 'string') {
        throw badRequest(`${prefix}json: cannot unmarshal ${goJsonKind(v)} into Go struct field jsonPatchOp.${field} of type string`);
      }
    }
  }
  if (ops.length > MAX_JSON_PATCH_OPERATIONS) {
    throw new ApiError(
      413,
      'RequestEntityTooLarge',
      `Request entity too large: The allowed maximum operations in a JSON patch is ${MAX_JSON_PATCH_OPERATIONS}, got ${ops.length}`,
    );
  }
  return ops;
}

/** Applies decoded JSON patch operations to `doc` (which it may modify); 422 if any does not apply. */
export function applyJsonPatch(doc: unknown, ops: unknown[]): unknown {
  const normalized: Operation[] = [];
  for (const op of ops) {
    if (!isMap(op) || typeof op['op'] !== 'string' || typeof op['path'] !== 'string') throw unprocessable();
    // The server's json-patch library reads a missing value as null.
    const withValue = ['add', 'replace', 'test'].includes(op['op']) && !('value' in op) ? { ...op, value: null } : op;
    normalized.push(withValue as unknown as Operation);
  }
  try {
    return jsonpatch.applyPatch(doc, normalized, true, true, true).newDocument;
  } catch {
    throw unprocessable();
  }
}

// ---------------------------------------------------------------------------------------------
// JSON Merge Patch (RFC 7386)
// ---------------------------------------------------------------------------------------------

function decodeMergePatch(text: string, strict: boolean): unknown {
  const syntax = goJsonSyntaxError(text);
  if (syntax !== undefined) throw badRequest(strict ? `error decoding patch: ${syntax}` : 'Invalid JSON Patch');
  const patch: unknown = JSON.parse(text);
  if (patch === null) throw badRequest('Invalid JSON Patch');
  if (strict && !isMap(patch)) {
    throw badRequest(`error decoding patch: json: cannot unmarshal ${goJsonKind(patch)} into Go value of type map[string]interface {}`);
  }
  return patch;
}

/**
 * RFC 7386: objects merge recursively, null deletes a member, anything else replaces. `target` may
 * be modified; the result is returned.
 */
export function jsonMergePatch(target: unknown, patch: unknown): unknown {
  if (!isMap(patch)) return patch;
  const doc = isMap(target) ? target : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete doc[key];
    else put(doc, key, jsonMergePatch(Object.hasOwn(doc, key) ? doc[key] : undefined, value));
  }
  return doc;
}

// ---------------------------------------------------------------------------------------------
// Strategic merge patch
// ---------------------------------------------------------------------------------------------

const DIRECTIVE = '$patch';
const RETAIN_KEYS = '$retainKeys';
const DELETE_FROM_PRIMITIVE_LIST = '$deleteFromPrimitiveList';
const SET_ELEMENT_ORDER = '$setElementOrder';

function decodeStrategicPatch(text: string): JsonMap {
  const patch = parseGoJson(text, '');
  if (patch === null) return {};
  if (!isMap(patch)) throw badRequest(`json: cannot unmarshal ${goJsonKind(patch)} into Go value of type map[string]interface {}`);
  return patch;
}

/**
 * Strategic merge patch of `original` (not modified) by `patch`, walking client-node model
 * `modelName` for each field's patch strategy. Throws ApiError as the real server does.
 */
export function strategicMergePatch(original: JsonMap, patch: JsonMap, modelName: string): JsonMap {
  return mergeMap(structuredClone(original), structuredClone(patch), { t: 'model', name: modelName });
}

/** Where the merge is in the type tree; undefined where the model says nothing (merged plainly). */
type Schema = TypeRef | undefined;

interface FieldInfo {
  type: Schema;
  strategy: string; // '', 'merge' or 'replace' (retainKeys is carried by the patch itself)
  mergeKey: string;
}

function fieldInfo(schema: Schema, key: string): FieldInfo {
  let type: Schema;
  let meta: PatchMeta | undefined;
  if (schema?.t === 'model') {
    type = fieldType(schema.name, key);
    meta = patchMeta(schema.name, key);
  } else if (schema?.t === 'map') {
    type = schema.values;
  }
  const strategy = (meta?.strategy ?? '')
    .split(',')
    .filter((s) => s !== '' && s !== 'retainKeys')
    .join(',');
  return { type, strategy, mergeKey: meta?.mergeKey ?? '' };
}

function itemsOf(type: Schema): Schema {
  return type?.t === 'array' ? type.items : undefined;
}

function mergeMap(original: JsonMap, patch: JsonMap, schema: Schema): JsonMap {
  if (Object.hasOwn(patch, DIRECTIVE)) return mapDirective(patch);
  applyRetainKeys(original, patch);
  mergeOrderedLists(original, patch, schema);

  for (const patchKey of Object.keys(patch)) {
    const patchValue = patch[patchKey];
    const isDeleteList = patchKey.startsWith(DELETE_FROM_PRIMITIVE_LIST);
    const key = isDeleteList ? directiveTarget(patchKey, DELETE_FROM_PRIMITIVE_LIST) : patchKey;
    if (patchValue === null) {
      delete original[key];
      continue;
    }
    if (!Object.hasOwn(original, key) || goType(original[key]) !== goType(patchValue)) {
      // New to the object, or of another type: the patch value replaces, minus nulls and directives.
      if (!isDeleteList) setWithoutDirectives(original, key, discardNulls(patchValue));
      continue;
    }
    const current = original[key];
    if (isMap(current) && isMap(patchValue)) {
      const field = fieldInfo(schema, key);
      put(original, key, field.strategy === 'replace' ? patchValue : mergeMap(current, patchValue, field.type));
    } else if (Array.isArray(current) && Array.isArray(patchValue)) {
      const field = fieldInfo(schema, key);
      const merged =
        field.strategy === 'merge' || isDeleteList
          ? mergeList(current, patchValue, itemsOf(field.type), field.mergeKey, isDeleteList)
          : patchValue;
      put(original, key, merged);
    } else {
      setWithoutDirectives(original, key, patchValue);
    }
  }
  return original;
}

/** `$patch` in a map: replace takes the patch as is, delete empties the map. */
function mapDirective(patch: JsonMap): JsonMap {
  const directive = patch[DIRECTIVE];
  if (directive === 'replace') {
    delete patch[DIRECTIVE];
    return patch;
  }
  if (directive === 'delete') return {};
  throw serverError(`unknown patch type: ${goSprintS(directive)} in map: ${goFormat(patch)}`);
}

/** `$retainKeys`: drop every key of `original` not listed; every key the patch sets must be listed. */
function applyRetainKeys(original: JsonMap, patch: JsonMap): void {
  if (!Object.hasOwn(patch, RETAIN_KEYS)) return;
  const list = patch[RETAIN_KEYS];
  delete patch[RETAIN_KEYS];
  if (!Array.isArray(list)) throw badRequest('invalid patch format of retainKeys');
  const retained = new Set<unknown>(list);
  for (const [key, value] of Object.entries(patch)) {
    if (value === null || key.startsWith(DELETE_FROM_PRIMITIVE_LIST) || key.startsWith(SET_ELEMENT_ORDER)) continue;
    if (!retained.has(key)) throw badRequest('invalid patch format of retainKeys');
  }
  for (const key of Object.keys(original)) if (!retained.has(key)) delete original[key];
}

/** "$setElementOrder/containers" → "containers"; 400 when the directive is malformed. */
function directiveTarget(key: string, prefix: string): string {
  const slash = key.indexOf('/');
  if (slash < 0 || key.slice(0, slash) !== prefix) {
    throw badRequest(
      prefix === SET_ELEMENT_ORDER ? 'invalid patch format of setElementOrder list' : 'invalid patch format of primitive list',
    );
  }
  return key.slice(slash + 1);
}

/**
 * `$setElementOrder/<list>`: merge that list now and put its items in the given order, items only
 * the server has keeping their place relative to the live list. The merged list leaves the patch.
 */
function mergeOrderedLists(original: JsonMap, patch: JsonMap, schema: Schema): void {
  for (const orderKey of Object.keys(patch)) {
    if (!orderKey.startsWith(SET_ELEMENT_ORDER)) continue;
    const order = patch[orderKey];
    delete patch[orderKey];
    if (!Array.isArray(order)) throw serverError(errBadArgType('slice', order));
    const key = directiveTarget(orderKey, SET_ELEMENT_ORDER);
    const hasOriginal = Object.hasOwn(original, key);
    const hasPatch = Object.hasOwn(patch, key);
    const originalList = hasOriginal ? original[key] : undefined;
    const patchList = hasPatch ? patch[key] : undefined;
    if (hasOriginal && !Array.isArray(originalList)) throw serverError(errBadArgType('slice', originalList));
    if (hasPatch && !Array.isArray(patchList)) throw serverError(errBadArgType('slice', patchList));
    const originalItems = (originalList ?? []) as unknown[];
    const patchItems = (patchList ?? []) as unknown[];
    const field = fieldInfo(schema, key);
    validateOrder(patchItems, order, field.mergeKey);

    let merged: unknown[];
    if (hasOriginal && hasPatch) {
      merged =
        field.strategy === 'merge'
          ? mergeList(originalItems, patchItems, itemsOf(field.type), field.mergeKey, false)
          : patchItems;
    } else if (hasOriginal) merged = originalItems;
    else if (hasPatch) merged = removeDirectives(patchItems).value as unknown[];
    else continue;

    const [inOrder, serverOnly] = partition(merged, order, field.mergeKey);
    const kind = listElementType(originalItems, patchItems);
    put(original, key, normalizeElementOrder(inOrder, serverOnly, order, originalItems, field.mergeKey, kind));
    delete patch[key];
  }
}

/** The patch list must name its items in the same relative order as `$setElementOrder`. */
function validateOrder(patchList: unknown[], order: unknown[], mergeKey: string): void {
  if (order.length === 0 || patchList.length === 0) return;
  const items = mergeKey ? splitDeletions(patchList)[0] : patchList;
  let p = 0;
  let o = 0;
  while (p < items.length && o < order.length) {
    if (isMap(items[p]) && Object.hasOwn(items[p] as JsonMap, DIRECTIVE)) {
      p++;
      continue;
    }
    if (mergeKeyEqual(items[p], order[o], mergeKey)) p++;
    o++;
  }
  if (p < items.length && o >= order.length) {
    throw serverError(
      `the order in patch list:\n${goFormat(patchList)}\n doesn't match ${SET_ELEMENT_ORDER} list:\n${goFormat(order)}`,
    );
  }
}

function mergeKeyEqual(left: unknown, right: unknown, mergeKey: string): boolean {
  if (!mergeKey) return goEqual(left, right);
  if (!isMap(left)) throw serverError(errBadArgType('map', left));
  if (!isMap(right)) throw serverError(errBadArgType('map', right));
  if (!Object.hasOwn(left, mergeKey)) throw serverError(errNoMergeKey(left, mergeKey));
  if (!Object.hasOwn(right, mergeKey)) throw serverError(errNoMergeKey(right, mergeKey));
  return goEqual(left[mergeKey], right[mergeKey]);
}

/**
 * Merges a list with merge strategy: primitives as an ordered set (or deleted through the parallel
 * `$deleteFromPrimitiveList`), maps by merge key with `$patch: delete|replace` elements.
 */
function mergeList(original: unknown[], patch: unknown[], items: Schema, mergeKey: string, isDeleteList: boolean): unknown[] {
  if (original.length === 0 && patch.length === 0) return original;
  const kind = listElementType(original, patch);
  let base = original;
  let additions: unknown[] = patch;
  let merged: unknown[];
  if (kind !== 'map') {
    if (isDeleteList) return original.filter((v) => !patch.some((d) => goEqual(d, v)));
    merged = dedupe([...original, ...patch]);
  } else {
    if (!mergeKey) throw serverError(`cannot merge lists without merge key for ${schemaKind(items)}`);
    [base, additions] = applyListDirectives(original, patch, mergeKey);
    merged = mergeByKey(base, additions, mergeKey, items);
  }
  const [fromPatch, serverOnly] = partition(merged, additions, mergeKey);
  return normalizeElementOrder(fromPatch, serverOnly, additions, base, mergeKey, kind);
}

/** Handles `$patch` elements: delete removes matching items, replace makes the rest the whole list. */
function applyListDirectives(original: unknown[], patch: unknown[], mergeKey: string): [unknown[], unknown[]] {
  let base = original;
  const plain: unknown[] = [];
  let replace = false;
  for (const item of patch as JsonMap[]) {
    if (!Object.hasOwn(item, DIRECTIVE)) {
      plain.push(item);
      continue;
    }
    const directive = item[DIRECTIVE];
    if (directive === 'delete') {
      if (!Object.hasOwn(item, mergeKey)) throw serverError(errNoMergeKey(item, mergeKey));
      base = base.filter((v, i) => !mapMatches(v, i, mergeKey, item[mergeKey]));
    } else if (directive === 'replace') {
      replace = true; // keep scanning: later directives are dropped too
    } else if (directive === 'merge') {
      throw serverError('merging lists cannot yet be specified in the patch');
    } else {
      throw serverError(`unknown patch type: ${goSprintS(directive)} in map: ${goFormat(item)}`);
    }
  }
  return replace ? [plain, []] : [base, plain];
}

function mapMatches(item: unknown, index: number, key: string, value: unknown): boolean {
  if (!isMap(item)) throw serverError(`value for key ${index} is not a map`);
  return Object.hasOwn(item, key) && goEqual(item[key], value);
}

/** Patch items merge into the live item with the same key, or are appended. */
function mergeByKey(original: unknown[], patch: unknown[], mergeKey: string, items: Schema): unknown[] {
  const out = [...original];
  for (const item of patch as JsonMap[]) {
    if (!Object.hasOwn(item, mergeKey)) throw serverError(errNoMergeKey(item, mergeKey));
    const at = out.findIndex((v, i) => mapMatches(v, i, mergeKey, item[mergeKey]));
    if (at >= 0) out[at] = mergeMap(out[at] as JsonMap, item, items);
    else out.push(item);
  }
  return out;
}

/** Splits `list` into the items present in `by` (by merge key, or by value for primitives) and the rest. */
function partition(list: unknown[], by: unknown[], mergeKey: string): [unknown[], unknown[]] {
  const present: unknown[] = [];
  const rest: unknown[] = [];
  for (const item of list) {
    let found: boolean;
    if (!mergeKey) found = by.some((b) => goEqual(b, item));
    else {
      if (!isMap(item)) throw serverError(errBadArgType('map', item));
      if (!Object.hasOwn(item, mergeKey)) throw serverError(errNoMergeKey(item, mergeKey));
      found = by.some((b, i) => mapMatches(b, i, mergeKey, item[mergeKey]));
    }
    (found ? present : rest).push(item);
  }
  return [present, rest];
}

/**
 * Orders the patch's items by the patch order and the server-only items by the live order, then
 * interleaves them: a server-only item goes before a patch item only if it was before it in the
 * live list. An item new to the list therefore goes before the server-only items that follow it.
 */
function normalizeElementOrder(
  patchItems: unknown[],
  serverOnly: unknown[],
  patchOrder: unknown[],
  serverOrder: unknown[],
  mergeKey: string,
  kind: GoType,
): unknown[] {
  const right = sortByOrder(patchItems, patchOrder, mergeKey, kind);
  const left = sortByOrder(serverOnly, serverOrder, mergeKey, kind);
  const position = (item: unknown) => indexIn(serverOrder, item, mergeKey, kind);
  const out: unknown[] = [];
  let i = 0;
  let j = 0;
  while (i < left.length || j < right.length) {
    if (j >= right.length) out.push(left[i++]);
    else if (i >= left.length) out.push(right[j++]);
    else {
      const li = position(left[i]);
      const ri = position(right[j]);
      if (li >= 0 && ri >= 0 && li < ri) out.push(left[i++]);
      else out.push(right[j++]);
    }
  }
  return out;
}

/** Stable sort of `list` by position in `order`; `$patch: delete` items go last. */
function sortByOrder(list: unknown[], order: unknown[], mergeKey: string, kind: GoType): unknown[] {
  let items = list;
  let deletions: unknown[] = [];
  if (kind === 'map') {
    for (const l of [list, order]) {
      for (const item of l) {
        if (!isMap(item)) throw serverError(errBadArgType('map', item));
        if (!Object.hasOwn(item, mergeKey)) throw serverError(errNoMergeKey(item, mergeKey));
      }
    }
    [items, deletions] = splitDeletions(list);
  }
  // Go's comparator: by order position when both are found, otherwise "less". An insertion sort
  // (what Go's stable sort runs on short lists) reproduces its result even in that odd case.
  const less = (a: unknown, b: unknown) => {
    const ia = indexIn(order, a, mergeKey, kind);
    const ib = ia >= 0 ? indexIn(order, b, mergeKey, kind) : -1;
    return ia >= 0 && ib >= 0 ? ia < ib : true;
  };
  const sorted = [...items];
  for (let i = 1; i < sorted.length; i++) {
    for (let j = i; j > 0 && less(sorted[j], sorted[j - 1]); j--) [sorted[j], sorted[j - 1]] = [sorted[j - 1], sorted[j]];
  }
  return [...sorted, ...deletions];
}

function splitDeletions(list: unknown[]): [unknown[], unknown[]] {
  const keep: unknown[] = [];
  const remove: unknown[] = [];
  for (const item of list) {
    if (!isMap(item)) throw serverError(errBadArgType('map', item));
    (item[DIRECTIVE] === 'delete' ? remove : keep).push(item);
  }
  return [keep, remove];
}

function indexIn(list: unknown[], value: unknown, mergeKey: string, kind: GoType): number {
  const key = (item: unknown) => (kind === 'map' ? (isMap(item) ? item[mergeKey] : undefined) : item);
  const wanted = key(value);
  return list.findIndex((item) => goEqual(key(item), wanted));
}

/** The one Go type of all the lists' elements; lists of lists and mixed lists are rejected. */
function listElementType(...lists: unknown[][]): GoType {
  let type: GoType | undefined;
  for (const list of lists) {
    for (const item of list) {
      const t = goType(item);
      if (type === undefined) {
        type = t;
        if (t === 'slice') throw unprocessable(); // lists of lists are not supported
      } else if (t !== type) {
        throw serverError(`list element types are not identical: ${goFormat(lists)}`);
      }
    }
  }
  if (type === undefined) throw serverError('no elements in any of the given slices');
  return type;
}

function dedupe(list: unknown[]): unknown[] {
  return list.filter((v, i) => list.findIndex((w) => goEqual(v, w)) === i);
}

/** Drops maps that carry `$patch` (and with them their key or list slot); reports whether to keep. */
function removeDirectives(value: unknown): { keep: boolean; value: unknown } {
  if (isMap(value)) {
    if (Object.hasOwn(value, DIRECTIVE)) return { keep: false, value: undefined };
    for (const key of Object.keys(value)) setWithoutDirectives(value, key, value[key]);
    return { keep: true, value };
  }
  if (Array.isArray(value)) {
    const kept = value.map(removeDirectives).filter((r) => r.keep);
    return { keep: true, value: kept.map((r) => r.value) };
  }
  return { keep: true, value };
}

function setWithoutDirectives(target: JsonMap, key: string, value: unknown): void {
  const r = removeDirectives(value);
  if (r.keep) put(target, key, r.value);
  else delete target[key];
}

/**
 * Sets an own property, also for the key "__proto__": a patch is data, and a "__proto__" member
 * must neither change an object's prototype nor reach Object.prototype.
 */
function put(target: JsonMap, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
}

/** Null members of a value new to the object carry no meaning: drop them, at every depth. */
function discardNulls(value: unknown): unknown {
  if (isMap(value)) {
    for (const [k, v] of Object.entries(value)) {
      if (v === null) delete value[k];
      else discardNulls(v);
    }
  } else if (Array.isArray(value)) {
    value.forEach(discardNulls);
  }
  return value;
}

/** The reflect kind Go would name for a list's element type, for one error message. */
function schemaKind(schema: Schema): string {
  const kinds: Record<string, string> = { model: 'struct', 'int-or-string': 'struct', map: 'map', array: 'slice', boolean: 'bool' };
  if (schema === undefined || schema.t === 'any') return 'interface';
  return kinds[schema.t] ?? goTypeName(schema);
}

// ---------------------------------------------------------------------------------------------
// Go's view of JSON: decoding errors, dynamic types, %v formatting
// ---------------------------------------------------------------------------------------------

type JsonMap = Record<string, unknown>;
type GoType = 'map' | 'slice' | 'string' | 'int64' | 'float64' | 'bool' | 'nil';

function isMap(v: unknown): v is JsonMap {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The dynamic type Go's decoder gives a JSON value (integers stay int64, as the server decodes). */
function goType(v: unknown): GoType {
  if (v === null || v === undefined) return 'nil';
  if (Array.isArray(v)) return 'slice';
  if (typeof v === 'object') return 'map';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int64' : 'float64';
  return typeof v === 'boolean' ? 'bool' : 'string';
}

const GO_TYPE_NAMES: Record<GoType, string> = {
  map: 'map[string]interface {}',
  slice: '[]interface {}',
  string: 'string',
  int64: 'int64',
  float64: 'float64',
  bool: 'bool',
  nil: '%!s(<nil>)',
};

function errBadArgType(expected: 'map' | 'slice', actual: unknown): string {
  return `expected a ${GO_TYPE_NAMES[expected]}, but received a ${GO_TYPE_NAMES[goType(actual)]}`;
}

function errNoMergeKey(m: JsonMap, key: string): string {
  return `map: ${goFormat(m)} does not contain declared merge key: ${key}`;
}

/** Go's == on decoded JSON scalars (nil equals nil). */
function goEqual(a: unknown, b: unknown): boolean {
  return (a ?? null) === (b ?? null);
}

/** What encoding/json calls a JSON value in "cannot unmarshal X into ...". */
function goJsonKind(v: unknown): string {
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'boolean') return 'bool';
  return typeof v; // object, string, number
}

/** fmt's %v of a decoded JSON value: map[a:1 b:[x y]], keys sorted. */
export function goFormat(v: unknown): string {
  if (v === null || v === undefined) return '<nil>';
  if (Array.isArray(v)) return `[${v.map(goFormat).join(' ')}]`;
  if (typeof v === 'object') {
    const m = v as JsonMap;
    return `map[${Object.keys(m)
      .sort()
      .map((k) => `${k}:${goFormat(m[k])}`)
      .join(' ')}]`;
  }
  if (typeof v === 'number') return goNumber(v);
  return String(v);
}

function goNumber(n: number): string {
  if (Number.isInteger(n) && Math.abs(n) < 1e21) return String(n);
  // float64 %v: shortest digits, exponent form below 1e-4 and from 1e6 on.
  const [mantissa, exp] = n.toExponential().split('e') as [string, string];
  const e = Number(exp);
  if (e < -4 || e >= 6) return `${mantissa}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
  return String(n);
}

/** fmt's %s of a value that may not be a string. */
function goSprintS(v: unknown): string {
  const t = goType(v);
  return t === 'string' ? (v as string) : t === 'int64' || t === 'float64' || t === 'bool' ? `%!s(${t}=${goFormat(v)})` : goFormat(v);
}

/** JSON.parse with Go's syntax error message (prefixed) as a 400. */
function parseGoJson(text: string, prefix: string): unknown {
  const syntax = goJsonSyntaxError(text);
  if (syntax !== undefined) throw badRequest(prefix + syntax);
  return JSON.parse(text) as unknown;
}

class GoSyntaxError extends Error {}

/** The message Go's encoding/json gives for malformed `text`, or undefined when it is valid JSON. */
export function goJsonSyntaxError(text: string): string | undefined {
  let i = 0;
  const isDigit = (c: string) => c >= '0' && c <= '9';
  const bad = (what: string) => new GoSyntaxError(`invalid character ${goQuoteChar(text, i)} ${what}`);
  const peek = (): string => {
    if (i >= text.length) throw new GoSyntaxError('unexpected end of JSON input');
    return text[i]!;
  };
  const skipSpace = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const digits = () => {
    while (i < text.length && isDigit(text[i]!)) i++;
  };
  const literal = (word: string) => {
    for (let k = 1; k < word.length; k++) {
      i++;
      if (peek() !== word[k]) throw bad(`in literal ${word} (expecting ${goQuoteChar(word, k)})`);
    }
    i++;
  };
  const number = () => {
    if (text[i] === '-') {
      i++;
      if (!isDigit(peek())) throw bad('in numeric literal');
    }
    if (text[i] === '0') i++;
    else digits();
    if (text[i] === '.') {
      i++;
      if (!isDigit(peek())) throw bad('after decimal point in numeric literal');
      digits();
    }
    if (text[i] === 'e' || text[i] === 'E') {
      i++;
      if (peek() === '+' || peek() === '-') i++;
      if (!isDigit(peek())) throw bad('in exponent of numeric literal');
      digits();
    }
  };
  const string = () => {
    i++;
    for (;;) {
      const c = peek();
      if (c === '"') {
        i++;
        return;
      }
      if (c === '\\') {
        i++;
        const e = peek();
        if (e === 'u') {
          for (let k = 0; k < 4; k++) {
            i++;
            if (!/[0-9a-fA-F]/.test(peek())) throw bad('in \\u hexadecimal character escape');
          }
        } else if (!'"\\/bfnrt'.includes(e)) {
          throw bad('in string escape code');
        }
      } else if (c < ' ') {
        throw bad('in string literal');
      }
      i++;
    }
  };
  const value = (): void => {
    skipSpace();
    const c = peek();
    if (c === '{') return object();
    if (c === '[') return array();
    if (c === '"') return string();
    if (c === '-' || isDigit(c)) return number();
    if (c === 't') return literal('true');
    if (c === 'f') return literal('false');
    if (c === 'n') return literal('null');
    throw bad('looking for beginning of value');
  };
  const object = () => {
    i++;
    skipSpace();
    if (peek() === '}') {
      i++;
      return;
    }
    for (;;) {
      if (peek() !== '"') throw bad('looking for beginning of object key string');
      string();
      skipSpace();
      if (peek() !== ':') throw bad('after object key');
      i++;
      value();
      skipSpace();
      const c = peek();
      i++;
      if (c === '}') return;
      if (c !== ',') {
        i--;
        throw bad('after object key:value pair');
      }
      skipSpace();
    }
  };
  const array = () => {
    i++;
    skipSpace();
    if (peek() === ']') {
      i++;
      return;
    }
    for (;;) {
      value();
      skipSpace();
      const c = peek();
      i++;
      if (c === ']') return;
      if (c !== ',') {
        i--;
        throw bad('after array element');
      }
    }
  };
  try {
    value();
    skipSpace();
    if (i < text.length) throw bad('after top-level value');
    return undefined;
  } catch (e) {
    if (e instanceof GoSyntaxError) return e.message;
    throw e;
  }
}

/** Go's quoteChar: the offending byte in single quotes, escaped as strconv.Quote would. */
function goQuoteChar(text: string, at: number): string {
  const code = text.codePointAt(at) ?? 0;
  if (code === 0x27) return `'\\''`;
  if (code === 0x22) return `'"'`;
  if (code >= 0x80) {
    // Go quotes the first byte of the UTF-8 sequence as if it were a Latin-1 rune.
    const byte = Buffer.from(String.fromCodePoint(code))[0]!;
    return byte < 0xa0 || byte === 0xad ? `'\\u00${byte.toString(16)}'` : `'${String.fromCharCode(byte)}'`;
  }
  const named: Record<number, string> = { 7: '\\a', 8: '\\b', 9: '\\t', 10: '\\n', 11: '\\v', 12: '\\f', 13: '\\r', 0x5c: '\\\\' };
  if (named[code]) return `'${named[code]}'`;
  if (code < 0x20 || code === 0x7f) return `'\\x${code.toString(16).padStart(2, '0')}'`;
  return `'${String.fromCharCode(code)}'`;
}
