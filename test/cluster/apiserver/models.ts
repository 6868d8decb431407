/**
 * The built-in Kubernetes types, as described by @kubernetes/client-node's generated model classes
 * (each has a static `attributeTypeMap`: json field name → type string). This is the server's source
 * of truth for the shape of built-in objects: strict decoding, OpenAPI documents and strategic merge
 * patch all walk it. Loaded once, lazily.
 */
import * as k8s from '@kubernetes/client-node';

/** A parsed field type. */
export type TypeRef =
  | { t: 'string'; format: string } // format: '', 'date-time', 'byte', 'quantity', ...
  | { t: 'integer'; format: string } // int32 / int64
  | { t: 'number'; format: string } // double
  | { t: 'boolean' }
  | { t: 'int-or-string' }
  | { t: 'any' }
  | { t: 'array'; items: TypeRef }
  | { t: 'map'; values: TypeRef }
  | { t: 'model'; name: string };

export interface ModelField {
  name: string; // json name
  type: TypeRef;
}

export interface Model {
  name: string;
  fields: Map<string, ModelField>;
}

interface Attribute {
  baseName: string;
  type: string;
  format: string;
}

const registry = k8s as unknown as Record<string, { attributeTypeMap?: Attribute[] } | undefined>;
const cache = new Map<string, Model | null>();

/** Parses a client-node type string ("Array<V1Container>", "{ [key: string]: string; }", ...). */
export function parseType(type: string, format = ''): TypeRef {
  const s = type.trim();
  const arr = /^Array<(.*)>$/.exec(s);
  if (arr) return { t: 'array', items: parseType(arr[1]!, format) };
  const map = /^\{ \[key: string\]: (.*); \}$/.exec(s);
  if (map) return { t: 'map', values: parseType(map[1]!, format) };
  switch (s) {
    case 'string':
      return { t: 'string', format };
    case 'Date':
      return { t: 'string', format: format || 'date-time' };
    case 'number':
      return format === 'double' || format === 'float' ? { t: 'number', format } : { t: 'integer', format };
    case 'boolean':
      return { t: 'boolean' };
    case 'IntOrString':
      return { t: 'int-or-string' };
    case 'any':
    case 'object':
      return { t: 'any' };
    default:
      return { t: 'model', name: s };
  }
}

/** The model named `name` (e.g. "V1PodSpec"), or undefined if client-node has no such model. */
export function model(name: string): Model | undefined {
  const hit = cache.get(name);
  if (hit !== undefined) return hit ?? undefined;
  const cls = registry[name];
  const attrs = cls?.attributeTypeMap;
  if (!Array.isArray(attrs)) {
    cache.set(name, null);
    return undefined;
  }
  const fields = new Map<string, ModelField>();
  for (const a of attrs) fields.set(a.baseName, { name: a.baseName, type: parseType(a.type, a.format) });
  const m: Model = { name, fields };
  cache.set(name, m);
  return m;
}

/** The type of `field` inside model `name`, or undefined. */
export function fieldType(name: string, field: string): TypeRef | undefined {
  return model(name)?.fields.get(field)?.type;
}

const MODEL_PREFIX = /^(?:[A-Z][a-z]+)?(V\d+(?:alpha\d+|beta\d+)?)(?=[A-Z])/;

/** The Go type name of a client-node model: "V1DeploymentSpec" → "DeploymentSpec". */
export function goStructName(modelName: string): string {
  const m = MODEL_PREFIX.exec(modelName);
  return m ? modelName.slice(m[0].length) : modelName;
}

/** The Go package-qualified name, as reflect prints it: "V1DeploymentSpec" → "v1.DeploymentSpec". */
export function goQualifiedName(modelName: string): string {
  const m = MODEL_PREFIX.exec(modelName);
  return m ? `${m[1]!.toLowerCase()}.${modelName.slice(m[0].length)}` : modelName;
}

/** Human name of a type, in the words of Go's JSON decoder ("int32", "string", "[]v1.Container"). */
export function goTypeName(t: TypeRef): string {
  switch (t.t) {
    case 'string':
      return t.format === 'date-time' ? 'v1.Time' : t.format === 'date-time-micro' ? 'v1.MicroTime' : 'string';
    case 'integer':
      return t.format === 'int64' ? 'int64' : 'int32';
    case 'number':
      return 'float64';
    case 'boolean':
      return 'bool';
    case 'int-or-string':
      return 'intstr.IntOrString';
    case 'any':
      return 'interface {}';
    case 'array':
      return `[]${goTypeName(t.items)}`;
    case 'map':
      return `map[string]${goTypeName(t.values)}`;
    case 'model':
      return goQualifiedName(t.name);
  }
}
