/**
 * The subset of the Kubernetes JSONPath dialect (k8s.io/client-go/util/jsonpath) that CRD
 * additionalPrinterColumns and selectableFields use: `.a.b`, `['a.b']`, `a\.b`, `[n]`, `[-n]`,
 * `[*]`, `.*`, `[start:end]`, `..name` and filters `[?(@.x.y == "v")]` with == != < <= > >= or a
 * bare existence test `[?(@.x)]`. Missing keys yield no result (the server evaluates printer columns
 * with AllowMissingKeys), so a path that matches nothing returns [].
 */

/** One parsed step of a path. */
export type JsonPathStep = Step;
type Step =
  | { kind: 'field'; name: string }
  | { kind: 'wildcard' }
  | { kind: 'recursive'; name: string | '*' }
  | { kind: 'index'; index: number }
  | { kind: 'slice'; start?: number; end?: number }
  | { kind: 'filter'; filter: Filter };

interface Filter {
  path: Step[];
  op?: '==' | '!=' | '<' | '<=' | '>' | '>=';
  literal?: string | number | boolean | null;
}

export class JsonPathError extends Error {
  override name = 'JsonPathError';
}

const cache = new Map<string, Step[]>();

/** All values `path` selects in `obj`, in document order. Throws JsonPathError on bad syntax. */
export function evalJsonPath(obj: unknown, path: string): unknown[] {
  let steps = cache.get(path);
  if (!steps) {
    steps = parseJsonPath(path);
    cache.set(path, steps);
  }
  return applySteps([obj], steps);
}

/** Parses once and reports syntax errors without evaluating (for validating CRD columns). */
export function parseJsonPath(path: string): JsonPathStep[] {
  let s = path.trim();
  if (s.startsWith('{') && s.endsWith('}')) s = s.slice(1, -1).trim();
  if (s.startsWith('$')) s = s.slice(1);
  return new PathParser(s).steps();
}

function applySteps(values: unknown[], steps: Step[]): unknown[] {
  let cur = values;
  for (const step of steps) cur = cur.flatMap((v) => applyStep(v, step));
  return cur;
}

function applyStep(v: unknown, step: Step): unknown[] {
  switch (step.kind) {
    case 'field':
      return isObject(v) && Object.prototype.hasOwnProperty.call(v, step.name) ? [v[step.name]] : [];
    case 'wildcard':
      return Array.isArray(v) ? v : isObject(v) ? Object.keys(v).sort().map((k) => v[k]) : [];
    case 'recursive':
      return descendants(v).flatMap((d) => applyStep(d, step.name === '*' ? { kind: 'wildcard' } : { kind: 'field', name: step.name }));
    case 'index': {
      if (!Array.isArray(v)) return [];
      const i = step.index < 0 ? v.length + step.index : step.index;
      return i >= 0 && i < v.length ? [v[i]] : [];
    }
    case 'slice': {
      if (!Array.isArray(v)) return [];
      return v.slice(step.start ?? 0, step.end ?? v.length);
    }
    case 'filter': {
      const items = Array.isArray(v) ? v : isObject(v) ? Object.keys(v).sort().map((k) => v[k]) : [];
      return items.filter((item) => filterHolds(item, step.filter));
    }
  }
}

function descendants(v: unknown): unknown[] {
  const out: unknown[] = [v];
  const children = Array.isArray(v) ? v : isObject(v) ? Object.keys(v).sort().map((k) => v[k]) : [];
  for (const c of children) out.push(...descendants(c));
  return out;
}

function filterHolds(item: unknown, f: Filter): boolean {
  const found = applySteps([item], f.path);
  if (f.op === undefined) return found.length > 0;
  return found.some((left) => compare(left, f.op!, f.literal));
}

function compare(left: unknown, op: NonNullable<Filter['op']>, right: Filter['literal']): boolean {
  if (op === '==' || op === '!=') {
    const equal = left === right || (typeof left === 'number' && typeof right === 'number' && left === right);
    return op === '==' ? equal : !equal;
  }
  const bothNumbers = typeof left === 'number' && typeof right === 'number';
  const bothStrings = typeof left === 'string' && typeof right === 'string';
  if (!bothNumbers && !bothStrings) return false;
  const l = left as number | string;
  const r = right as number | string;
  switch (op) {
    case '<':
      return l < r;
    case '<=':
      return l <= r;
    case '>':
      return l > r;
    case '>=':
      return l >= r;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Recursive-descent parser over the path text. */
class PathParser {
  private pos = 0;
  /** inside a filter, names also end at spaces, operators and the closing parenthesis */
  private inFilter = false;
  constructor(private readonly s: string) {}

  steps(): Step[] {
    const out: Step[] = [];
    while (this.pos < this.s.length) out.push(this.step());
    return out;
  }

  private fail(what: string): never {
    throw new JsonPathError(`invalid JSONPath ${JSON.stringify(this.s)} at ${this.pos}: ${what}`);
  }

  private step(): Step {
    const c = this.s[this.pos];
    if (c === '.') {
      if (this.s[this.pos + 1] === '.') {
        this.pos += 2;
        const name = this.s[this.pos] === '*' ? (this.pos++, '*') : this.name();
        if (name === '') this.fail('expected a name after ".."');
        return { kind: 'recursive', name };
      }
      this.pos++;
      if (this.s[this.pos] === '*') {
        this.pos++;
        return { kind: 'wildcard' };
      }
      if (this.s[this.pos] === '[') return this.bracket();
      const name = this.name();
      if (name === '') this.fail('expected a field name');
      return { kind: 'field', name };
    }
    if (c === '[') return this.bracket();
    // A leading bare name ("spec.replicas") is accepted as if it started with ".".
    if (this.pos === 0) {
      const name = this.name();
      if (name !== '') return { kind: 'field', name };
    }
    return this.fail(`unexpected ${JSON.stringify(c)}`);
  }

  /** A field name up to the next unescaped "." or "["; "\." keeps a literal dot. */
  private name(): string {
    let out = '';
    while (this.pos < this.s.length) {
      const c = this.s[this.pos]!;
      if (c === '\\' && this.pos + 1 < this.s.length) {
        out += this.s[this.pos + 1];
        this.pos += 2;
        continue;
      }
      if (c === '.' || c === '[') break;
      if (this.inFilter && ' =!<>)'.includes(c)) break;
      out += c;
      this.pos++;
    }
    return out;
  }

  private bracket(): Step {
    this.pos++; // '['
    const close = (): void => {
      this.skipSpace();
      if (this.s[this.pos] !== ']') this.fail('expected "]"');
      this.pos++;
    };
    this.skipSpace();
    const c = this.s[this.pos];
    if (c === '?') {
      this.pos++;
      if (this.s[this.pos] !== '(') this.fail('expected "(" after "?"');
      this.pos++;
      const filter = this.filter();
      this.skipSpace();
      if (this.s[this.pos] !== ')') this.fail('expected ")" closing the filter');
      this.pos++;
      close();
      return { kind: 'filter', filter };
    }
    if (c === "'" || c === '"') {
      const name = this.quoted();
      close();
      return { kind: 'field', name };
    }
    if (c === '*') {
      this.pos++;
      close();
      return { kind: 'wildcard' };
    }
    const start = this.integer();
    this.skipSpace();
    if (this.s[this.pos] === ':') {
      this.pos++;
      const end = this.integer();
      close();
      return { kind: 'slice', start, end };
    }
    if (start === undefined) this.fail('expected an index');
    close();
    return { kind: 'index', index: start };
  }

  private integer(): number | undefined {
    this.skipSpace();
    const m = /^-?\d+/.exec(this.s.slice(this.pos));
    if (!m) return undefined;
    this.pos += m[0].length;
    return Number(m[0]);
  }

  private quoted(): string {
    const q = this.s[this.pos];
    this.pos++;
    let out = '';
    while (this.pos < this.s.length && this.s[this.pos] !== q) {
      if (this.s[this.pos] === '\\' && this.pos + 1 < this.s.length) this.pos++;
      out += this.s[this.pos];
      this.pos++;
    }
    if (this.pos >= this.s.length) this.fail('unterminated quoted string');
    this.pos++;
    return out;
  }

  private filter(): Filter {
    this.skipSpace();
    if (this.s[this.pos] !== '@') this.fail('expected "@" in filter');
    this.pos++;
    const path: Step[] = [];
    this.inFilter = true;
    while (this.s[this.pos] === '.' || this.s[this.pos] === '[') path.push(this.step());
    this.inFilter = false;
    this.skipSpace();
    const m = /^(==|!=|<=|>=|<|>)/.exec(this.s.slice(this.pos));
    if (!m) return { path };
    this.pos += m[0].length;
    this.skipSpace();
    return { path, op: m[0] as Filter['op'], literal: this.literal() };
  }

  private literal(): Filter['literal'] {
    const c = this.s[this.pos];
    if (c === "'" || c === '"') return this.quoted();
    const m = /^(-?\d+(\.\d+)?([eE][-+]?\d+)?|true|false|null)/.exec(this.s.slice(this.pos));
    if (!m) this.fail('expected a literal');
    this.pos += m[0].length;
    if (m[0] === 'true') return true;
    if (m[0] === 'false') return false;
    if (m[0] === 'null') return null;
    return Number(m[0]);
  }

  private skipSpace(): void {
    while (this.s[this.pos] === ' ') this.pos++;
  }
}
