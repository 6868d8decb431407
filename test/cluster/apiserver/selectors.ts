/**
 * Label and field selectors, parsed, validated, printed and matched the way kube-apiserver does it
 * (k8s.io/apimachinery labels/selector.go, fields/selector.go, the per-kind field label conversion
 * functions and selectable field sets). Every parse or conversion failure is an ApiError 400
 * BadRequest carrying the message the real server sends, because clients (kubectl in particular)
 * print that message verbatim.
 */
import { ApiError, badRequest } from './errors.js';
import { evalJsonPath } from './jsonpath.js';
import type { KObject } from './types.js';

// ---------------------------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------------------------

/** The operators of k8s.io/apimachinery/pkg/selection, spelled as Go spells them. */
export type LabelOperator = 'in' | 'notin' | '=' | '==' | '!=' | 'exists' | '!' | 'gt' | 'lt';

export interface LabelRequirement {
  key: string;
  operator: LabelOperator;
  /** In/NotIn values are sorted and de-duplicated, as the Go parser's string set leaves them. */
  values: string[];
}

/**
 * A parsed label selector: the AND of its requirements. `nothing` is labels.Nothing(), the selector a
 * nil metav1.LabelSelector converts to; it matches no object at all. No requirements and
 * `nothing: false` is labels.Everything().
 */
export interface LabelSelector {
  requirements: LabelRequirement[];
  nothing: boolean;
}

export const everythingSelector: LabelSelector = Object.freeze({ requirements: [], nothing: false }) as LabelSelector;
export const nothingSelector: LabelSelector = Object.freeze({ requirements: [], nothing: true }) as LabelSelector;

/** Parses the `labelSelector` query parameter syntax; throws ApiError 400 with the real message. */
export function parseLabelSelector(s: string): LabelSelector {
  const result = new LabelParser(lex(s)).parse();
  if (typeof result === 'string') throw badRequest(result);
  return { requirements: sortByKey(result), nothing: false };
}

/** metav1.LabelSelector as found in objects (spec.selector of a Deployment, a NetworkPolicy, ...). */
export interface LabelSelectorObject {
  matchLabels?: Record<string, string> | null;
  matchExpressions?: { key: string; operator: string; values?: string[] | null }[] | null;
}

/**
 * metav1.LabelSelectorAsSelector: null/undefined → nothingSelector (matches nothing), an empty object
 * → everythingSelector (matches everything). Invalid content throws ApiError 400 with the Go message.
 */
export function labelSelectorFromObject(sel: LabelSelectorObject | null | undefined): LabelSelector {
  if (sel === null || sel === undefined) return nothingSelector;
  const labels = Object.entries(sel.matchLabels ?? {});
  const exprs = sel.matchExpressions ?? [];
  if (labels.length + exprs.length === 0) return everythingSelector;
  const reqs: LabelRequirement[] = [];
  for (const [k, v] of labels) reqs.push(newRequirement(k, '=', [v], false));
  for (const e of exprs) {
    const op = OBJECT_OPERATORS[e.operator];
    if (!op) throw badRequest(`"${e.operator}" is not a valid label selector operator`);
    // Go copies with append([]string(nil), values...): an empty list stays nil.
    const values = e.values ?? [];
    reqs.push(newRequirement(e.key, op, values, values.length === 0));
  }
  return { requirements: sortByKey(reqs), nothing: false };
}

const OBJECT_OPERATORS: Record<string, LabelOperator> = {
  In: 'in',
  NotIn: 'notin',
  Exists: 'exists',
  DoesNotExist: '!',
};

export function matchesLabels(sel: LabelSelector, labels: Record<string, string> | null | undefined): boolean {
  if (sel.nothing) return false;
  const ls = labels ?? {};
  return sel.requirements.every((r) => requirementMatches(r, ls));
}

function requirementMatches(r: LabelRequirement, ls: Record<string, string>): boolean {
  const has = Object.prototype.hasOwnProperty.call(ls, r.key);
  const val = has ? ls[r.key]! : undefined;
  switch (r.operator) {
    case 'in':
    case '=':
    case '==':
      return val !== undefined && r.values.includes(val);
    case 'notin':
    case '!=':
      return val === undefined || !r.values.includes(val);
    case 'exists':
      return has;
    case '!':
      return !has;
    case 'gt':
    case 'lt': {
      const lv = val === undefined ? undefined : parseInt64(val);
      const rv = r.values.length === 1 ? parseInt64(r.values[0]!) : undefined;
      if (lv === undefined || rv === undefined) return false;
      return r.operator === 'gt' ? lv > rv : lv < rv;
    }
  }
}

/** Selector.String(): requirements by key, joined by ",". Nothing() prints as "". */
export function labelSelectorString(sel: LabelSelector): string {
  return sel.requirements.map(requirementString).join(',');
}

function requirementString(r: LabelRequirement): string {
  const prefix = r.operator === '!' ? '!' : '';
  if (r.operator === 'exists' || r.operator === '!') return prefix + r.key;
  const values = [...r.values].sort(compareBytes).join(',');
  switch (r.operator) {
    case 'in':
      return `${r.key} in (${values})`;
    case 'notin':
      return `${r.key} notin (${values})`;
    case 'gt':
      return `${r.key}>${values}`;
    case 'lt':
      return `${r.key}<${values}`;
    default:
      return `${r.key}${r.operator}${values}`;
  }
}

/** metav1.FormatLabelSelector: "<none>" for an empty (or nil) selector, "<error>" when invalid. */
export function formatLabelSelector(sel: LabelSelectorObject | null | undefined): string {
  let s: string;
  try {
    s = labelSelectorString(labelSelectorFromObject(sel));
  } catch {
    return '<error>';
  }
  return s === '' ? '<none>' : s;
}

/** labels.FormatLabels: "k=v,k2=v2" sorted by key, "<none>" when empty. */
export function formatLabels(labels: Record<string, string> | null | undefined): string {
  const keys = Object.keys(labels ?? {}).sort(compareBytes);
  if (keys.length === 0) return '<none>';
  return keys.map((k) => `${k}=${labels![k]}`).join(',');
}

function sortByKey(reqs: LabelRequirement[]): LabelRequirement[] {
  return [...reqs].sort((a, b) => compareBytes(a.key, b.key));
}

function compareBytes(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// --- lexer (selector.go's Lexer: whitespace-delimited, special symbols = ! ( ) , > <) ----------

type Tok =
  | 'error'
  | 'eos'
  | ')'
  | ','
  | '!'
  | '=='
  | '='
  | '>'
  | 'ident'
  | 'in'
  | '<'
  | '!='
  | 'notin'
  | '(';

interface Item {
  tok: Tok;
  lit: string;
}

const LITERAL_TOKENS: Record<string, Tok> = {
  ')': ')',
  ',': ',',
  '!': '!',
  '==': '==',
  '=': '=',
  '>': '>',
  in: 'in',
  '<': '<',
  '!=': '!=',
  notin: 'notin',
  '(': '(',
};

const isWhitespace = (c: string): boolean => c === ' ' || c === '\t' || c === '\r' || c === '\n';
const isSpecial = (c: string): boolean => '=!(),><'.includes(c);

function lex(s: string): Item[] {
  const items: Item[] = [];
  let pos = 0;
  for (;;) {
    while (pos < s.length && isWhitespace(s[pos]!)) pos++;
    if (pos >= s.length) {
      items.push({ tok: 'eos', lit: '' });
      return items;
    }
    if (isSpecial(s[pos]!)) {
      // Longest run of special symbols that still forms a known token ("!=" but "=" then "!").
      let buf = '';
      let last: Item | undefined;
      while (pos < s.length && isSpecial(s[pos]!)) {
        buf += s[pos];
        const tok = LITERAL_TOKENS[buf];
        if (tok) last = { tok, lit: buf };
        else if (last) break;
        pos++;
      }
      items.push(last ?? { tok: 'error', lit: `error expected: keyword found '${buf}'` });
      continue;
    }
    let buf = '';
    while (pos < s.length && !isSpecial(s[pos]!) && !isWhitespace(s[pos]!)) buf += s[pos++];
    const kw = LITERAL_TOKENS[buf];
    items.push({ tok: kw === 'in' || kw === 'notin' ? kw : 'ident', lit: buf });
  }
}

// --- parser (selector.go's Parser, with the same error texts) --------------------------------

/** Thrown inside the parser; the top level turns it into the message. */
class ParseFailure {
  constructor(readonly message: string) {}
}

class LabelParser {
  private pos = 0;
  constructor(private readonly items: Item[]) {}

  /** Returns the requirements, or the error message. */
  parse(): LabelRequirement[] | string {
    const reqs: LabelRequirement[] = [];
    for (;;) {
      const { tok, lit } = this.lookahead(true);
      if (tok === 'eos') return reqs;
      if (tok !== 'ident' && tok !== '!') return `found '${lit}', expected: !, identifier, or 'end of string'`;
      try {
        reqs.push(this.parseRequirement());
      } catch (e) {
        if (e instanceof ParseFailure) return `unable to parse requirement: ${e.message}`;
        if (e instanceof ApiError) return `unable to parse requirement: ${e.message}`;
        throw e;
      }
      const next = this.consume(true);
      if (next.tok === 'eos') return reqs;
      if (next.tok !== ',') return `found '${next.lit}', expected: ',' or 'end of string'`;
      const after = this.lookahead(true);
      if (after.tok !== 'ident' && after.tok !== '!') return `found '${after.lit}', expected: identifier after ','`;
    }
  }

  /** In the "values" context the keywords in/notin are plain identifiers. */
  private lookahead(values: boolean): Item {
    return asContext(this.items[this.pos]!, values);
  }

  private consume(values: boolean): Item {
    return asContext(this.items[this.pos++]!, values);
  }

  private parseRequirement(): LabelRequirement {
    let operator: LabelOperator | undefined;
    let { tok, lit } = this.consume(true);
    if (tok === '!') {
      operator = '!';
      ({ tok, lit } = this.consume(true));
    }
    if (tok !== 'ident') throw new ParseFailure(`found '${lit}', expected: identifier`);
    const keyErrors = labelKeyErrors(lit);
    if (keyErrors.length) throw new ParseFailure(fieldInvalid('<nil>', goQuote(lit), keyErrors.join('; ')));
    const key = lit;
    const next = this.lookahead(true).tok;
    if (next === 'eos' || next === ',') operator = operator ?? 'exists';
    if (operator === 'exists' || operator === '!') return newRequirement(key, operator, [], false);

    const op = this.parseOperator();
    const values = op === 'in' || op === 'notin' ? this.parseValues() : this.parseExactValue();
    return newRequirement(key, op, [...new Set(values)].sort(compareBytes), false);
  }

  private parseOperator(): LabelOperator {
    const { tok, lit } = this.consume(false);
    const ops: Partial<Record<Tok, LabelOperator>> = {
      in: 'in',
      '=': '=',
      '==': '==',
      '>': 'gt',
      '<': 'lt',
      notin: 'notin',
      '!=': '!=',
    };
    const op = ops[tok];
    if (!op) throw new ParseFailure(`found '${lit}', expected: in, notin, =, ==, !=, gt, lt`);
    return op;
  }

  private parseValues(): string[] {
    const open = this.consume(true);
    if (open.tok !== '(') throw new ParseFailure(`found '${open.lit}' expected: '('`);
    const { tok, lit } = this.lookahead(true);
    if (tok === 'ident' || tok === ',') {
      const values = this.parseIdentifiersList();
      // Go reports the literal it looked ahead at before the list, not the one it found: kept.
      if (this.consume(true).tok !== ')') throw new ParseFailure(`found '${lit}', expected: ')'`);
      return values;
    }
    if (tok === ')') {
      this.consume(true);
      return [''];
    }
    throw new ParseFailure(`found '${lit}', expected: ',', ')' or identifier`);
  }

  private parseIdentifiersList(): string[] {
    const values = new Set<string>();
    for (;;) {
      const { tok, lit } = this.consume(true);
      if (tok === 'ident') {
        values.add(lit);
        const next = this.lookahead(true);
        if (next.tok === ',') continue;
        if (next.tok === ')') return [...values];
        throw new ParseFailure(`found '${next.lit}', expected: ',' or ')'`);
      }
      if (tok === ',') {
        // "(,", ",)" and ",," each stand for an empty value.
        if (values.size === 0) values.add('');
        const next = this.lookahead(true).tok;
        if (next === ')') {
          values.add('');
          return [...values];
        }
        if (next === ',') values.add('');
        continue;
      }
      throw new ParseFailure(`found '${lit}', expected: ',', or identifier`);
    }
  }

  private parseExactValue(): string[] {
    const next = this.lookahead(true).tok;
    if (next === 'eos' || next === ',') return [''];
    const { tok, lit } = this.consume(true);
    if (tok === 'ident') return [lit];
    throw new ParseFailure(`found '${lit}', expected: identifier`);
  }
}

function asContext(item: Item, values: boolean): Item {
  if (values && (item.tok === 'in' || item.tok === 'notin')) return { tok: 'ident', lit: item.lit };
  return item;
}

/**
 * labels.NewRequirement: validates and builds, collecting every error into one aggregate message.
 * `nilValues` says whether Go would see a nil slice (prints as `[]string(nil)` in messages).
 */
function newRequirement(key: string, op: LabelOperator, values: string[], nilValues: boolean): LabelRequirement {
  const errs: string[] = [];
  const keyErrors = labelKeyErrors(key);
  if (keyErrors.length) errs.push(fieldInvalid('key', goQuote(key), keyErrors.join('; ')));
  const shown = goStringSlice(values, nilValues);
  switch (op) {
    case 'in':
    case 'notin':
      if (values.length === 0) errs.push(fieldInvalid('values', shown, "for 'in', 'notin' operators, values set can't be empty"));
      break;
    case '=':
    case '==':
    case '!=':
      if (values.length !== 1) errs.push(fieldInvalid('values', shown, 'exact-match compatibility requires one single value'));
      break;
    case 'exists':
    case '!':
      if (values.length !== 0) errs.push(fieldInvalid('values', shown, 'values set must be empty for exists and does not exist'));
      break;
    case 'gt':
    case 'lt':
      if (values.length !== 1) errs.push(fieldInvalid('values', shown, "for 'Gt', 'Lt' operators, exactly one value is required"));
      values.forEach((v, i) => {
        if (parseInt64(v) === undefined) {
          errs.push(fieldInvalid(`values[${i}]`, goQuote(v), "for 'Gt', 'Lt' operators, the value must be an integer"));
        }
      });
      break;
  }
  values.forEach((v, i) => {
    const valueErrors = labelValueErrors(v);
    if (valueErrors.length) errs.push(fieldInvalid(`values[${i}][${key}]`, goQuote(v), valueErrors.join('; ')));
  });
  if (errs.length) throw badRequest(aggregate(errs));
  return { key, operator: op, values };
}

/** field.Invalid(...).Error(): `<path>: Invalid value: <value>: <detail>`. */
function fieldInvalid(path: string, shownValue: string, detail: string): string {
  return `${path}: Invalid value: ${shownValue}: ${detail}`;
}

/** utilerrors.NewAggregate(...).Error(): one message alone, several de-duplicated in brackets. */
function aggregate(msgs: string[]): string {
  const unique = [...new Set(msgs)];
  return unique.length === 1 ? unique[0]! : `[${unique.join(', ')}]`;
}

/** Go's %q for the strings we meet (printable ASCII in practice). */
function goQuote(s: string): string {
  return JSON.stringify(s);
}

/** Go's %#v of a []string. */
function goStringSlice(values: string[], nil: boolean): string {
  if (nil && values.length === 0) return '[]string(nil)';
  return `[]string{${values.map(goQuote).join(', ')}}`;
}

/** strconv.ParseInt(s, 10, 64). */
function parseInt64(s: string): bigint | undefined {
  if (!/^[+-]?\d+$/.test(s)) return undefined;
  const n = BigInt(s);
  if (n > 9223372036854775807n || n < -9223372036854775808n) return undefined;
  return n;
}

// --- label key / value validation (util/validation IsQualifiedName, IsValidLabelValue, v1.32 texts)

const QUALIFIED_NAME_FMT = '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]';
const QUALIFIED_NAME_MSG = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT = `(${QUALIFIED_NAME_FMT})?`;
const LABEL_VALUE_MSG =
  "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const DNS1123_LABEL_FMT = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
const DNS1123_SUBDOMAIN_FMT = `${DNS1123_LABEL_FMT}(\\.${DNS1123_LABEL_FMT})*`;
const DNS1123_SUBDOMAIN_MSG =
  "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";

const qualifiedNameRe = new RegExp(`^${QUALIFIED_NAME_FMT}$`);
const labelValueRe = new RegExp(`^${LABEL_VALUE_FMT}$`);
const dns1123SubdomainRe = new RegExp(`^${DNS1123_SUBDOMAIN_FMT}$`);

function regexError(msg: string, fmt: string, ...examples: string[]): string {
  if (examples.length === 0) return `${msg} (regex used for validation is '${fmt}')`;
  return `${msg} (e.g. ${examples.map((e) => `'${e}', `).join(' or ')}regex used for validation is '${fmt}')`;
}

const byteLength = (s: string): number => Buffer.byteLength(s, 'utf8');

/** validation.IsQualifiedName. */
export function labelKeyErrors(value: string): string[] {
  const errs: string[] = [];
  const parts = value.split('/');
  let name: string;
  if (parts.length === 1) {
    name = parts[0]!;
  } else if (parts.length === 2) {
    const prefix = parts[0]!;
    name = parts[1]!;
    if (prefix.length === 0) errs.push('prefix part must be non-empty');
    else errs.push(...dns1123SubdomainErrors(prefix).map((m) => `prefix part ${m}`));
  } else {
    return [
      `a qualified name ${regexError(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, 'MyName', 'my.name', '123-abc')}` +
        " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
    ];
  }
  if (name.length === 0) errs.push('name part must be non-empty');
  else if (byteLength(name) > 63) errs.push('name part must be no more than 63 characters');
  if (!qualifiedNameRe.test(name)) errs.push(`name part ${regexError(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, 'MyName', 'my.name', '123-abc')}`);
  return errs;
}

/** validation.IsValidLabelValue. */
export function labelValueErrors(value: string): string[] {
  const errs: string[] = [];
  if (byteLength(value) > 63) errs.push('must be no more than 63 characters');
  if (!labelValueRe.test(value)) errs.push(regexError(LABEL_VALUE_MSG, LABEL_VALUE_FMT, 'MyValue', 'my_value', '12345'));
  return errs;
}

function dns1123SubdomainErrors(value: string): string[] {
  const errs: string[] = [];
  if (byteLength(value) > 253) errs.push('must be no more than 253 characters');
  if (!dns1123SubdomainRe.test(value)) errs.push(regexError(DNS1123_SUBDOMAIN_MSG, DNS1123_SUBDOMAIN_FMT, 'example.com'));
  return errs;
}

// ---------------------------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------------------------

export interface FieldRequirement {
  field: string;
  /** "==" parses to "=": the two are the same operator. */
  operator: '=' | '!=';
  value: string;
}

/** The AND of its requirements; none means everything. */
export interface FieldSelector {
  requirements: FieldRequirement[];
}

/**
 * fields.ParseSelector: comma-separated `field=value`, `field==value`, `field!=value` terms, sorted
 * as strings before parsing (as Go does). Values may escape `\\`, `\,` and `\=`; the field part has
 * no escaping and no trimming ("a = b" selects the field "a ").
 */
export function parseFieldSelector(s: string): FieldSelector {
  const terms = splitTerms(s).sort(compareBytes);
  const requirements: FieldRequirement[] = [];
  for (const term of terms) {
    if (term === '') continue;
    const split = splitTerm(term);
    if (!split) throw badRequest(`invalid selector: '${s}'; can't understand '${term}'`);
    requirements.push({ field: split.lhs, operator: split.op === '!=' ? '!=' : '=', value: unescapeFieldValue(split.rhs) });
  }
  return { requirements };
}

/** Splits on commas not escaped by a backslash; the escapes stay in the terms. */
function splitTerms(s: string): string[] {
  if (s === '') return [];
  const terms: string[] = [];
  let start = 0;
  let inSlash = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (inSlash) inSlash = false;
    else if (c === '\\') inSlash = true;
    else if (c === ',') {
      terms.push(s.slice(start, i));
      start = i + 1;
    }
  }
  terms.push(s.slice(start));
  return terms;
}

/** The first operator occurrence splits; "!=" and "==" win over "=" at the same position. */
function splitTerm(term: string): { lhs: string; op: string; rhs: string } | undefined {
  for (let i = 0; i < term.length; i++) {
    for (const op of ['!=', '==', '=']) {
      if (term.startsWith(op, i)) return { lhs: term.slice(0, i), op, rhs: term.slice(i + op.length) };
    }
  }
  return undefined;
}

function unescapeFieldValue(s: string): string {
  if (!/[\\,=]/.test(s)) return s;
  let out = '';
  let inSlash = false;
  for (const c of s) {
    if (inSlash) {
      if (c !== '\\' && c !== ',' && c !== '=') {
        throw badRequest(`invalid field selector: invalid escape sequence: \\${c}`);
      }
      out += c;
      inSlash = false;
    } else if (c === '\\') {
      inSlash = true;
    } else if (c === ',' || c === '=') {
      // Go formats the offending rune with %v, i.e. as its code point number.
      throw badRequest(`invalid field selector: unescaped character in value: ${c.codePointAt(0)}`);
    } else {
      out += c;
    }
  }
  if (inSlash) throw badRequest('invalid field selector: invalid escape sequence: \\');
  return out;
}

/** fields.EscapeValue: the inverse of the unescaping above. */
export function escapeFieldValue(s: string): string {
  return s.replace(/[\\,=]/g, (c) => `\\${c}`);
}

/** fieldSelector.String(). */
export function fieldSelectorString(sel: FieldSelector): string {
  return sel.requirements.map((r) => `${r.field}${r.operator}${escapeFieldValue(r.value)}`).join(',');
}

/** RequiresExactMatch: the value a selector pins `field` to with "=", if any (watch-by-name uses it). */
export function fieldRequiresExactMatch(sel: FieldSelector, field: string): string | undefined {
  return sel.requirements.find((r) => r.field === field && r.operator === '=')?.value;
}

/** What fieldSelectorMatcher needs to know of a resource; a ResourceType fits. */
export interface SelectableResource {
  group: string;
  plural: string;
  /** defaults to true; cluster-scoped custom resources refuse metadata.namespace */
  namespaced?: boolean;
  /** served from a CRD */
  custom?: boolean;
  /** a CRD version's selectableFields jsonPaths (".spec.color"), custom resources only */
  selectableFields?: string[];
}

/** The selectable field set of one built-in kind, as its registry strategy computes it. */
interface BuiltinFields {
  /** labels accepted by the kind's field label conversion function */
  labels: string[];
  /** labels renamed by that function (pods: spec.host → spec.nodeName) */
  renames?: Record<string, string>;
  /** the selectable field values of an object (missing fields read as "") */
  values: (obj: KObject) => Record<string, string>;
}

const META = ['metadata.name', 'metadata.namespace'];

/**
 * Kinds with their own field label conversion function. Every other built-in kind uses
 * runtime.DefaultMetaV1FieldSelectorConversion (metadata.name, metadata.namespace only).
 */
const BUILTIN_FIELDS: Record<string, BuiltinFields> = {
  '/pods': {
    labels: [
      ...META,
      'spec.nodeName',
      'spec.restartPolicy',
      'spec.schedulerName',
      'spec.serviceAccountName',
      'spec.hostNetwork',
      'status.phase',
      'status.podIP',
      'status.podIPs',
      'status.nominatedNodeName',
    ],
    renames: { 'spec.host': 'spec.nodeName' },
    values: (o) => {
      const podIPs = arr(get(o, 'status', 'podIPs'));
      return {
        'spec.nodeName': str(get(o, 'spec', 'nodeName')),
        'spec.restartPolicy': str(get(o, 'spec', 'restartPolicy')),
        'spec.schedulerName': str(get(o, 'spec', 'schedulerName')),
        'spec.serviceAccountName': str(get(o, 'spec', 'serviceAccountName')),
        'spec.hostNetwork': String(get(o, 'spec', 'hostNetwork') === true),
        'status.phase': str(get(o, 'status', 'phase')),
        // the strategy reads the first of status.podIPs, not status.podIP
        'status.podIP': str(get(podIPs[0], 'ip')),
        'status.nominatedNodeName': str(get(o, 'status', 'nominatedNodeName')),
      };
    },
  },
  '/nodes': {
    labels: ['metadata.name', 'spec.unschedulable'],
    values: (o) => ({ 'spec.unschedulable': String(get(o, 'spec', 'unschedulable') === true) }),
  },
  '/namespaces': {
    labels: ['metadata.name', 'status.phase'],
    values: (o) => ({ 'status.phase': str(get(o, 'status', 'phase')) }),
  },
  '/secrets': {
    labels: [...META, 'type'],
    values: (o) => ({ type: str(get(o, 'type')) }),
  },
  '/services': {
    labels: [...META, 'spec.clusterIP', 'spec.type'],
    values: (o) => ({ 'spec.clusterIP': str(get(o, 'spec', 'clusterIP')), 'spec.type': str(get(o, 'spec', 'type')) }),
  },
  '/replicationcontrollers': {
    labels: [...META, 'status.replicas'],
    values: (o) => ({ 'status.replicas': String(num(get(o, 'status', 'replicas'))) }),
  },
  'apps/replicasets': {
    labels: [...META, 'status.replicas'],
    values: (o) => ({ 'status.replicas': String(num(get(o, 'status', 'replicas'))) }),
  },
  'batch/jobs': {
    labels: [...META, 'status.successful'],
    values: (o) => ({ 'status.successful': String(num(get(o, 'status', 'succeeded'))) }),
  },
  'certificates.k8s.io/certificatesigningrequests': {
    labels: ['metadata.name', 'spec.signerName'],
    values: (o) => ({ 'spec.signerName': str(get(o, 'spec', 'signerName')) }),
  },
  '/events': { labels: eventLabels(), values: (o) => eventValues(o, false) },
  // events.k8s.io shares the storage and the core field names; its wire fields are renamed.
  'events.k8s.io/events': { labels: eventLabels(), values: (o) => eventValues(o, true) },
};

function eventLabels(): string[] {
  return [
    'involvedObject.kind',
    'involvedObject.namespace',
    'involvedObject.name',
    'involvedObject.uid',
    'involvedObject.apiVersion',
    'involvedObject.resourceVersion',
    'involvedObject.fieldPath',
    'reason',
    'reportingComponent',
    'source',
    'type',
    ...META,
  ];
}

function eventValues(o: KObject, eventsV1: boolean): Record<string, string> {
  const ref = get(o, eventsV1 ? 'regarding' : 'involvedObject');
  // core/v1 serialises ReportingController as "reportingComponent"; events.k8s.io/v1 does not rename it
  const reportingController = str(get(o, eventsV1 ? 'reportingController' : 'reportingComponent'));
  const component = str(get(o, eventsV1 ? 'deprecatedSource' : 'source', 'component'));
  return {
    'involvedObject.kind': str(get(ref, 'kind')),
    'involvedObject.namespace': str(get(ref, 'namespace')),
    'involvedObject.name': str(get(ref, 'name')),
    'involvedObject.uid': str(get(ref, 'uid')),
    'involvedObject.apiVersion': str(get(ref, 'apiVersion')),
    'involvedObject.resourceVersion': str(get(ref, 'resourceVersion')),
    'involvedObject.fieldPath': str(get(ref, 'fieldPath')),
    reason: str(get(o, 'reason')),
    reportingComponent: reportingController,
    source: component || reportingController,
    type: str(get(o, 'type')),
  };
}

/** A matcher over objects, built after checking every field label against the resource. */
export type ObjectMatcher = (obj: KObject) => boolean;

/**
 * Converts the selector's field labels the way the resource's conversion function does, throwing
 * ApiError 400 with the real message for the first unsupported label (in sorted term order), and
 * returns a matcher over objects of that resource. Accepts a string (parsed first) or a parsed
 * selector.
 */
export function fieldSelectorMatcher(resource: SelectableResource, sel: FieldSelector | string): ObjectMatcher {
  const parsed = typeof sel === 'string' ? parseFieldSelector(sel) : sel;
  if (parsed.requirements.length === 0) return () => true;
  const source = fieldSource(resource);
  const reqs = parsed.requirements.map((r) => ({ ...r, field: source.convert(r.field) }));
  return (obj) => {
    const fields = source.values(obj);
    return reqs.every((r) => ((fields[r.field] ?? '') === r.value) === (r.operator === '='));
  };
}

interface FieldSource {
  /** the converted label, or throws the resource's "unsupported" error */
  convert(label: string): string;
  values(obj: KObject): Record<string, string>;
}

function fieldSource(resource: SelectableResource): FieldSource {
  const namespaced = resource.namespaced ?? true;
  if (resource.custom) return customResourceFields(resource, namespaced);
  const builtin = BUILTIN_FIELDS[`${resource.group}/${resource.plural}`];
  if (builtin) {
    return {
      convert: (label) => {
        const renamed = builtin.renames?.[label];
        if (renamed) return renamed;
        if (!builtin.labels.includes(label)) throw badRequest(`field label not supported: ${label}`);
        return label;
      },
      values: (obj) => ({ ...metaFields(obj), ...builtin.values(obj) }),
    };
  }
  return {
    convert: (label) => {
      if (!META.includes(label)) {
        throw badRequest(`"${label}" is not a known field selector: only "metadata.name", "metadata.namespace"`);
      }
      return label;
    },
    values: metaFields,
  };
}

/** apiextensions' crConverter.ConvertFieldLabel plus the CRD version's selectableFields. */
function customResourceFields(resource: SelectableResource, namespaced: boolean): FieldSource {
  const selectable = new Map((resource.selectableFields ?? []).map((p) => [p.replace(/^\./, ''), p]));
  return {
    convert: (label) => {
      if (label === 'metadata.name' || (namespaced && label === 'metadata.namespace') || selectable.has(label)) return label;
      throw badRequest(`field label not supported: ${label}`);
    },
    values: (obj) => {
      const out = metaFields(obj);
      for (const [label, path] of selectable) {
        const [v] = evalJsonPath(obj, path);
        out[label] = v === undefined || v === null ? '' : String(v);
      }
      return out;
    },
  };
}

/** generic.ObjectMetaFieldsSet: metadata.name, and metadata.namespace for namespaced objects. */
function metaFields(obj: KObject): Record<string, string> {
  const out: Record<string, string> = { 'metadata.name': str(obj.metadata?.name) };
  if (obj.metadata?.namespace) out['metadata.namespace'] = obj.metadata.namespace;
  return out;
}

function get(v: unknown, ...path: string[]): unknown {
  let cur = v;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
    cur = (cur as Record<string, unknown>)[p];
  }
  return cur;
}

const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const num = (v: unknown): number => (typeof v === 'number' ? v : 0);
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
