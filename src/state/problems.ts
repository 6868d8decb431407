/**
 * Collecting what is wrong with a user's object. Validation never stops at the first error: every
 * problem is gathered with the field it concerns, so one status condition tells the user everything
 * to fix at once (the linkerd way of config parsing).
 */

export interface Problem {
  /** dotted path into the object, e.g. "spec.rules[0].to[0].operation.ports[1]" */
  field: string;
  /** what is wrong and what to do about it */
  message: string;
}

/** A sink for problems found while reading one object. */
export class Problems {
  readonly list: Problem[] = [];

  add(field: string, message: string): void {
    this.list.push({ field, message });
  }

  get ok(): boolean {
    return this.list.length === 0;
  }

  /** All problems as one human message, e.g. for a status condition. */
  message(): string {
    return this.list.map((p) => `${p.field}: ${p.message}`).join('; ');
  }
}

/** Reads an optional string array, reporting anything else. Returns undefined when absent. */
export function stringList(v: unknown, field: string, problems: Problems): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) {
    problems.add(field, 'must be a list of strings');
    return undefined;
  }
  const out: string[] = [];
  v.forEach((s, i) => {
    if (typeof s !== 'string') problems.add(`${field}[${i}]`, 'must be a string');
    else if (s === '') problems.add(`${field}[${i}]`, 'must not be empty; remove the empty entry');
    else out.push(s);
  });
  return out;
}

/** Reads an optional string→string map (matchLabels and the like). */
export function stringMap(v: unknown, field: string, problems: Problems): Record<string, string> | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) {
    problems.add(field, 'must be a map of strings to strings');
    return undefined;
  }
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    if (typeof val !== 'string') problems.add(`${field}.${k}`, 'must be a string');
    else out[k] = val;
  }
  return out;
}

/** Reads an optional list of objects; non-objects are reported and dropped. */
export function objectList(v: unknown, field: string, problems: Problems): Record<string, unknown>[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) {
    problems.add(field, 'must be a list');
    return undefined;
  }
  const out: Record<string, unknown>[] = [];
  v.forEach((o, i) => {
    if (typeof o !== 'object' || o === null || Array.isArray(o)) problems.add(`${field}[${i}]`, 'must be an object');
    else out.push(o as Record<string, unknown>);
  });
  return out;
}

/** Reads an optional object. */
export function objectField(v: unknown, field: string, problems: Problems): Record<string, unknown> | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) {
    problems.add(field, 'must be an object');
    return undefined;
  }
  return v as Record<string, unknown>;
}
