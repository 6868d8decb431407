/**
 * The OpenAPI v3 documents the server publishes at /openapi/v3 (the index) and
 * /openapi/v3/<api path> (one per group-version). kubectl depends on them in two places:
 * - server-side field validation: kubectl (cli-runtime's query param verifier) looks in the
 *   group-version document for a PATCH operation whose `x-kubernetes-group-version-kind` is the
 *   object's kind and that takes a `fieldValidation` query parameter; without it, kubectl falls
 *   back to validating on its own;
 * - client-side apply: kubectl takes the component schema whose `x-kubernetes-group-version-kind`
 *   lists the kind, and follows `$ref`s through `allOf` to find `x-kubernetes-patch-strategy` /
 *   `x-kubernetes-patch-merge-key` on list properties when it builds a strategic merge patch
 *   (only if the PATCH operation accepts application/strategic-merge-patch+json).
 * Built-in schemas are generated from client-node's models, custom ones from the CRD's schema.
 * Output is deterministic (keys sorted) so the caller can hash it for the index's `?hash=`.
 */
import { model, type TypeRef } from './models.js';
import { patchMeta as tablePatchMeta, type PatchMeta } from './patchmeta.js';
import { goStructName } from './schema.js';
import type { ResourceType } from './types.js';

type Json = Record<string, unknown>;

/** The index: `{"paths": {"apis/apps/v1": {"serverRelativeURL": "/openapi/v3/apis/apps/v1?hash=..."}}}`. */
export function openapiRoot(groupVersions: string[], hashOf: (gv: string) => string): Json {
  const paths: Json = {};
  for (const gv of [...groupVersions].sort()) {
    const p = apiPathOf(gv);
    paths[p] = { serverRelativeURL: `/openapi/v3/${p}?hash=${hashOf(gv)}` };
  }
  return { paths };
}

/** "v1" → "api/v1", "apps/v1" → "apis/apps/v1" (client-go's naming of the per-GV documents). */
export function apiPathOf(apiVersion: string): string {
  return apiVersion.includes('/') ? `apis/${apiVersion}` : `api/${apiVersion}`;
}

export interface OpenAPIOptions {
  /** where list properties get their patch extensions; defaults to patchmeta.ts's table */
  patchMeta?: (model: string, field: string) => PatchMeta | undefined;
}

/** The document of one group-version serving `resources` (all of the same group and version). */
export function openapiForGroupVersion(resources: ResourceType[], opts: OpenAPIOptions = {}): Json {
  const builder = new DocBuilder(opts.patchMeta ?? tablePatchMeta);
  for (const rt of resources) builder.addResource(rt);
  return sortKeys({
    openapi: '3.0.0',
    info: { title: 'Kubernetes', version: 'unversioned' },
    paths: builder.paths,
    components: {
      schemas: builder.schemas,
      securitySchemes: { BearerToken: { type: 'apiKey', description: 'Bearer Token authentication', name: 'authorization', in: 'header' } },
    },
    security: [{ BearerToken: [] }],
  }) as Json;
}

// --- schema names ------------------------------------------------------------------------------

const META = 'io.k8s.apimachinery.pkg.apis.meta.v1';
const PATCH_SCHEMA = `${META}.Patch`;

/** Types of k8s.io/apimachinery/pkg/apis/meta/v1 that client-node names like any other V1 type. */
const META_TYPES = new Set([
  'V1ObjectMeta', 'V1ListMeta', 'V1LabelSelector', 'V1LabelSelectorRequirement', 'V1ManagedFieldsEntry',
  'V1OwnerReference', 'V1Condition', 'V1Status', 'V1StatusDetails', 'V1StatusCause', 'V1DeleteOptions',
  'V1Preconditions', 'V1APIResource', 'V1APIResourceList', 'V1APIGroup', 'V1APIGroupList', 'V1APIVersions',
  'V1GroupVersionForDiscovery', 'V1ServerAddressByClientCIDR', 'V1WatchEvent', 'V1FieldSelectorRequirement',
]);

/** The scale subresource's types live in autoscaling/v1 whatever resource they scale. */
const AUTOSCALING_TYPES = new Set(['V1Scale', 'V1ScaleSpec', 'V1ScaleStatus']);

/** Root kinds of the core group: whatever they reach (and is not meta) is a core/v1 type. */
const CORE_ROOTS = [
  'V1Pod', 'V1Service', 'V1ConfigMap', 'V1Secret', 'V1Node', 'V1PersistentVolume', 'V1PersistentVolumeClaim',
  'V1Namespace', 'V1Endpoints', 'CoreV1Event', 'V1ServiceAccount', 'V1ReplicationController', 'V1PodTemplate',
  'V1LimitRange', 'V1ResourceQuota', 'V1Binding', 'V1ComponentStatus',
];

let coreModels: Set<string> | undefined;

function isCoreModel(name: string): boolean {
  coreModels ??= reachableModels(CORE_ROOTS);
  return coreModels.has(name);
}

function reachableModels(roots: string[]): Set<string> {
  const seen = new Set<string>();
  const queue = [...roots];
  while (queue.length > 0) {
    const name = queue.pop()!;
    if (seen.has(name)) continue;
    const m = model(name);
    if (!m) continue;
    seen.add(name);
    for (const f of m.fields.values()) queue.push(...modelsIn(f.type));
  }
  return seen;
}

function modelsIn(t: TypeRef): string[] {
  if (t.t === 'model') return [t.name];
  if (t.t === 'array') return modelsIn(t.items);
  if (t.t === 'map') return modelsIn(t.values);
  return [];
}

/** The Go package path the real server uses in schema names, by API group. */
function packageOfGroup(group: string): string {
  if (group === '') return 'io.k8s.api.core';
  if (group === 'apiextensions.k8s.io') return 'io.k8s.apiextensions-apiserver.pkg.apis.apiextensions';
  if (group === 'apiregistration.k8s.io') return 'io.k8s.kube-aggregator.pkg.apis.apiregistration';
  return `io.k8s.api.${group.split('.')[0]}`;
}

function versionOfModel(name: string): string {
  const m = /^(?:[A-Z][a-z]+)?(V\d+(?:alpha\d+|beta\d+)?)(?=[A-Z])/.exec(name);
  return m ? m[1]!.toLowerCase() : 'v1';
}

/** "io.k8s.api.apps.v1.DeploymentSpec" for model V1DeploymentSpec reached from an apps resource. */
export function schemaNameForModel(name: string, group: string): string {
  const typeName = goStructName(name);
  if (META_TYPES.has(name)) return `${META}.${typeName}`;
  if (AUTOSCALING_TYPES.has(name)) return `io.k8s.api.autoscaling.v1.${typeName}`;
  const pkg = isCoreModel(name) ? 'io.k8s.api.core' : packageOfGroup(group);
  return `${pkg}.${versionOfModel(name)}.${typeName}`;
}

/** Custom resources are named by reversed group: "com.example.stable.v1.CronTab". */
export function schemaNameForCustom(group: string, version: string, kind: string): string {
  return `${group.split('.').reverse().join('.')}.${version}.${kind}`;
}

// --- the document ------------------------------------------------------------------------------

interface Gvk {
  group: string;
  version: string;
  kind: string;
}

class DocBuilder {
  readonly paths: Json = {};
  readonly schemas: Json = {};

  constructor(private readonly patchMetaOf: (model: string, field: string) => PatchMeta | undefined) {}

  addResource(rt: ResourceType): void {
    const gvk: Gvk = { group: rt.group, version: rt.version, kind: rt.kind };
    const itemSchema = this.addRootSchemas(rt);
    const listSchema = `${itemSchema}List`;
    this.addSchema(PATCH_SCHEMA, { type: 'object', description: 'Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.' });
    const deleteOptions = this.addModel('V1DeleteOptions', rt.group);
    const status = this.addModel('V1Status', rt.group);
    const ids = operationIds(rt);
    const base = rt.group ? `/apis/${rt.group}/${rt.version}` : `/api/${rt.version}`;
    const collection = rt.namespaced ? `${base}/namespaces/{namespace}/${rt.plural}` : `${base}/${rt.plural}`;
    const item = `${collection}/{name}`;
    const can = (verb: string): boolean => rt.verbs.includes(verb);
    const scopeParams = rt.namespaced ? [NAMESPACE_PARAM, PRETTY_PARAM] : [PRETTY_PARAM];
    const writeBody = { required: true, content: jsonContent(itemSchema) };

    const coll: Json = {};
    if (can('list')) coll.get = op(`list${ids.scoped}`, 'list', gvk, LIST_PARAMS, undefined, { '200': ok(listSchema) });
    if (can('create')) coll.post = op(`create${ids.scoped}`, 'post', gvk, WRITE_PARAMS, writeBody, { '200': ok(itemSchema), '201': created(itemSchema), '202': accepted(itemSchema) });
    if (can('deletecollection')) {
      coll.delete = op(`delete${ids.gv}Collection${ids.scope}${rt.kind}`, 'deletecollection', gvk, [...DELETE_PARAMS, ...LIST_PARAMS], { content: jsonContent(deleteOptions) }, { '200': ok(status) });
    }
    this.addPath(collection, coll, scopeParams);

    const one: Json = {};
    if (can('get')) one.get = op(`read${ids.scoped}`, 'get', gvk, [], undefined, { '200': ok(itemSchema) });
    if (can('update')) one.put = op(`replace${ids.scoped}`, 'put', gvk, WRITE_PARAMS, writeBody, { '200': ok(itemSchema), '201': created(itemSchema) });
    if (can('patch')) one.patch = op(`patch${ids.scoped}`, 'patch', gvk, PATCH_PARAMS, patchBody(!rt.custom), { '200': ok(itemSchema), '201': created(itemSchema) });
    if (can('delete')) one.delete = op(`delete${ids.scoped}`, 'delete', gvk, DELETE_PARAMS, { content: jsonContent(deleteOptions) }, { '200': ok(status), '202': accepted(status) });
    this.addPath(item, one, [NAME_PARAM, ...scopeParams]);

    if (rt.namespaced && can('list')) {
      this.addPath(`${base}/${rt.plural}`, { get: op(`list${ids.gv}${rt.kind}ForAllNamespaces`, 'list', gvk, LIST_PARAMS, undefined, { '200': ok(listSchema) }) }, [PRETTY_PARAM]);
    }
    if (rt.subresources.status) this.addSubresource(`${item}/status`, `${ids.scoped}Status`, gvk, itemSchema, !rt.custom, scopeParams);
    if (rt.subresources.scale) {
      const scale = this.addModel('V1Scale', 'autoscaling');
      this.addSubresource(`${item}/scale`, `${ids.scoped}Scale`, { group: 'autoscaling', version: 'v1', kind: 'Scale' }, scale, !rt.custom, scopeParams);
    }
  }

  private addSubresource(path: string, id: string, gvk: Gvk, schema: string, smp: boolean, scopeParams: Json[]): void {
    this.addPath(
      path,
      {
        get: op(`read${id}`, 'get', gvk, [], undefined, { '200': ok(schema) }),
        put: op(`replace${id}`, 'put', gvk, WRITE_PARAMS, { required: true, content: jsonContent(schema) }, { '200': ok(schema), '201': created(schema) }),
        patch: op(`patch${id}`, 'patch', gvk, PATCH_PARAMS, patchBody(smp), { '200': ok(schema), '201': created(schema) }),
      },
      [NAME_PARAM, ...scopeParams],
    );
  }

  private addPath(path: string, ops: Json, parameters: Json[]): void {
    if (Object.keys(ops).length === 0) return;
    this.paths[path] = { ...ops, parameters };
  }

  /** Adds the item and list schemas of `rt`; returns the item schema's name. */
  private addRootSchemas(rt: ResourceType): string {
    const gvk = { group: rt.group, version: rt.version, kind: rt.kind };
    const listGvk = { ...gvk, kind: rt.listKind };
    let itemName: string;
    if (rt.schema.kind === 'model') {
      itemName = this.addModel(rt.schema.model, rt.group);
      const listModel = `${rt.schema.model}List`;
      if (model(listModel)) this.addModel(listModel, rt.group);
      else this.addSchema(`${itemName}List`, this.listSchema(itemName));
    } else {
      itemName = schemaNameForCustom(rt.group, rt.version, rt.kind);
      this.addSchema(itemName, this.customSchema(rt.schema.schema));
      this.addSchema(`${itemName}List`, this.listSchema(itemName));
    }
    tagGvk(this.schemas[itemName] as Json, gvk);
    tagGvk(this.schemas[`${itemName}List`] as Json, listGvk);
    return itemName;
  }

  private listSchema(itemName: string): Json {
    const listMeta = this.addModel('V1ListMeta', '');
    return {
      type: 'object',
      required: ['items'],
      properties: {
        apiVersion: { type: 'string' },
        items: { type: 'array', items: ref(itemName) },
        kind: { type: 'string' },
        metadata: ref(listMeta),
      },
    };
  }

  /** The CRD's schema, with metadata pointing at ObjectMeta and apiVersion/kind always present. */
  private customSchema(crdSchema: Record<string, unknown>): Json {
    const objectMeta = this.addModel('V1ObjectMeta', '');
    const copy = structuredClone(crdSchema) as Json;
    const props = (typeof copy.properties === 'object' && copy.properties !== null ? copy.properties : {}) as Json;
    copy.type = 'object';
    copy.properties = { ...props, apiVersion: { type: 'string' }, kind: { type: 'string' }, metadata: ref(objectMeta) };
    return copy;
  }

  /** Adds model `name` and everything it reaches; returns its schema name. */
  private addModel(name: string, group: string): string {
    const schemaName = schemaNameForModel(name, group);
    if (this.schemas[schemaName] !== undefined) return schemaName;
    const m = model(name);
    if (!m) {
      this.addSchema(schemaName, { type: 'object' });
      return schemaName;
    }
    const properties: Json = {};
    this.schemas[schemaName] = { type: 'object', properties }; // placed first: models can be recursive
    for (const f of m.fields.values()) {
      const prop = this.typeSchema(f.type, group);
      const pm = this.patchMetaOf(name, f.name);
      if (pm?.strategy) prop['x-kubernetes-patch-strategy'] = pm.strategy;
      if (pm?.mergeKey) prop['x-kubernetes-patch-merge-key'] = pm.mergeKey;
      properties[f.name] = prop;
    }
    return schemaName;
  }

  private typeSchema(t: TypeRef, group: string): Json {
    switch (t.t) {
      case 'string':
        return t.format ? { type: 'string', format: t.format === 'date-time-micro' ? 'date-time' : t.format } : { type: 'string' };
      case 'integer':
        return { type: 'integer', format: t.format || 'int32' };
      case 'number':
        return { type: 'number', format: t.format || 'double' };
      case 'boolean':
        return { type: 'boolean' };
      case 'int-or-string':
        return { type: 'string', format: 'int-or-string', 'x-kubernetes-int-or-string': true };
      case 'any':
        return {};
      case 'array':
        return { type: 'array', items: this.typeSchema(t.items, group) };
      case 'map':
        return { type: 'object', additionalProperties: this.typeSchema(t.values, group) };
      case 'model':
        return ref(this.addModel(t.name, group));
    }
  }

  private addSchema(name: string, schema: Json): void {
    if (this.schemas[name] === undefined) this.schemas[name] = schema;
  }
}

/** The real documents wrap every reference in allOf, and kubectl's patch lookup expects it. */
function ref(schemaName: string): Json {
  return { allOf: [{ $ref: `#/components/schemas/${schemaName}` }] };
}

function tagGvk(schema: Json | undefined, gvk: Gvk): void {
  if (schema) schema['x-kubernetes-group-version-kind'] = [{ group: gvk.group, kind: gvk.kind, version: gvk.version }];
}

// --- operations --------------------------------------------------------------------------------

function op(operationId: string, action: string, gvk: Gvk, parameters: Json[], requestBody: Json | undefined, responses: Json): Json {
  const o: Json = {
    operationId,
    parameters,
    responses: { ...responses, '401': { description: 'Unauthorized' } },
    'x-kubernetes-action': action,
    'x-kubernetes-group-version-kind': { group: gvk.group, kind: gvk.kind, version: gvk.version },
  };
  if (parameters.length === 0) delete o.parameters;
  if (requestBody) o.requestBody = requestBody;
  return o;
}

/** operationId pieces: "AppsV1", "Namespaced", and "AppsV1NamespacedDeployment". */
function operationIds(rt: ResourceType): { gv: string; scope: string; scoped: string } {
  const groupWords = rt.group === '' ? ['core'] : rt.group.replace(/\.k8s\.io$/, '').split(/[.-]/);
  const gv = groupWords.map(capitalize).join('') + capitalize(rt.version);
  const scope = rt.namespaced ? 'Namespaced' : '';
  return { gv, scope, scoped: `${gv}${scope}${rt.kind}` };
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

const MEDIA_TYPES = ['application/json', 'application/yaml'];

function jsonContent(schemaName: string): Json {
  return Object.fromEntries(MEDIA_TYPES.map((m) => [m, { schema: { $ref: `#/components/schemas/${schemaName}` } }]));
}

/** Custom resources take no strategic merge patch, which is what makes kubectl use merge patch. */
function patchBody(strategic: boolean): Json {
  const types = ['application/apply-patch+yaml', 'application/json-patch+json', 'application/merge-patch+json'];
  if (strategic) types.push('application/strategic-merge-patch+json');
  const content = Object.fromEntries(types.map((t) => [t, { schema: { $ref: `#/components/schemas/${PATCH_SCHEMA}` } }]));
  return { required: true, content };
}

function ok(schemaName: string): Json {
  return { description: 'OK', content: jsonContent(schemaName) };
}

function created(schemaName: string): Json {
  return { description: 'Created', content: jsonContent(schemaName) };
}

function accepted(schemaName: string): Json {
  return { description: 'Accepted', content: jsonContent(schemaName) };
}

function queryParam(name: string, type: string, description: string): Json {
  return { name, in: 'query', description, schema: { type, uniqueItems: true } };
}

const NAME_PARAM: Json = { name: 'name', in: 'path', description: 'name of the resource', required: true, schema: { type: 'string', uniqueItems: true } };
const NAMESPACE_PARAM: Json = { name: 'namespace', in: 'path', description: 'object name and auth scope, such as for teams and projects', required: true, schema: { type: 'string', uniqueItems: true } };
const PRETTY_PARAM = queryParam('pretty', 'string', "If 'true', then the output is pretty printed.");

const DRY_RUN = queryParam('dryRun', 'string', 'When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed');
const FIELD_MANAGER = queryParam('fieldManager', 'string', 'fieldManager is a name associated with the actor or entity that is making these changes.');
const FIELD_VALIDATION = queryParam(
  'fieldValidation',
  'string',
  'fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict',
);

const WRITE_PARAMS = [DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION];
const PATCH_PARAMS = [...WRITE_PARAMS, queryParam('force', 'boolean', 'Force is going to "force" Apply requests. It means user will re-acquire conflicting fields owned by other people.')];
const DELETE_PARAMS = [
  DRY_RUN,
  queryParam('gracePeriodSeconds', 'integer', 'The duration in seconds before the object should be deleted.'),
  queryParam('orphanDependents', 'boolean', 'Deprecated: please use the PropagationPolicy.'),
  queryParam('propagationPolicy', 'string', "Whether and how garbage collection will be performed. Acceptable values are: 'Orphan', 'Background', 'Foreground'."),
];
const LIST_PARAMS = [
  queryParam('allowWatchBookmarks', 'boolean', 'allowWatchBookmarks requests watch events with type "BOOKMARK".'),
  queryParam('continue', 'string', 'The continue option should be set when retrieving more results from the server.'),
  queryParam('fieldSelector', 'string', 'A selector to restrict the list of returned objects by their fields. Defaults to everything.'),
  queryParam('labelSelector', 'string', 'A selector to restrict the list of returned objects by their labels. Defaults to everything.'),
  queryParam('limit', 'integer', 'limit is a maximum number of responses to return for a list call.'),
  queryParam('resourceVersion', 'string', 'resourceVersion sets a constraint on what resource versions a request may be served from.'),
  queryParam('resourceVersionMatch', 'string', 'resourceVersionMatch determines how resourceVersion is applied to list calls.'),
  queryParam('sendInitialEvents', 'boolean', 'sendInitialEvents=true may be set together with watch=true.'),
  queryParam('timeoutSeconds', 'integer', 'Timeout for the list/watch call.'),
  queryParam('watch', 'boolean', 'Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.'),
];

// --- determinism -------------------------------------------------------------------------------

/** A deep copy with every object's keys in sorted order (arrays keep their order). */
export function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (typeof v !== 'object' || v === null) return v;
  const out: Json = {};
  for (const k of Object.keys(v).sort()) out[k] = sortKeys((v as Json)[k]);
  return out;
}

