/**
 * Selection rules the controllers share: label selectors (metav1.LabelSelector and the plain map a
 * Service uses), node selector terms of node affinity, and taints versus tolerations.
 */
import type { KObject } from '../types.js';
import { labelSelectorFromObject, matchesLabels } from '../selectors.js';

export interface Requirement {
  key: string;
  operator: string;
  values?: string[];
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: Requirement[];
}

type Labels = Record<string, string> | undefined;

/**
 * metav1.LabelSelectorAsSelector semantics: a missing selector selects nothing, an empty one
 * selects everything.
 */
export function selectorMatches(sel: LabelSelector | undefined | null, labels: Labels): boolean {
  try {
    return matchesLabels(labelSelectorFromObject(sel), labels);
  } catch {
    return false; // an invalid selector selects nothing (the API server refuses to store one)
  }
}

/** A Service selector (a plain map); an absent or empty map selects nothing here. */
export function mapSelectorMatches(sel: Record<string, string> | undefined, labels: Labels): boolean {
  if (!sel || Object.keys(sel).length === 0) return false;
  const l = labels ?? {};
  return Object.entries(sel).every(([k, v]) => l[k] === v);
}

/** Every label of `want` is present with the same value in `labels`. */
export function labelsContain(labels: Labels, want: Labels): boolean {
  const l = labels ?? {};
  return Object.entries(want ?? {}).every(([k, v]) => l[k] === v);
}

function requirementMatches(r: Requirement, labels: Record<string, string>): boolean {
  const has = Object.prototype.hasOwnProperty.call(labels, r.key);
  const v = labels[r.key];
  const values = r.values ?? [];
  switch (r.operator) {
    case 'In':
      return has && values.includes(v!);
    case 'NotIn':
      return !has || !values.includes(v!);
    case 'Exists':
      return has;
    case 'DoesNotExist':
      return !has;
    case 'Gt':
    case 'Lt': {
      if (!has || values.length !== 1) return false;
      const a = Number.parseInt(v!, 10);
      const b = Number.parseInt(values[0]!, 10);
      if (Number.isNaN(a) || Number.isNaN(b)) return false;
      return r.operator === 'Gt' ? a > b : a < b;
    }
    default:
      return false;
  }
}

export interface NodeSelectorTerm {
  matchExpressions?: Requirement[];
  matchFields?: Requirement[];
}

/** A term matches when all its requirements do; an empty term matches nothing (as in the scheduler). */
function termMatches(term: NodeSelectorTerm, node: KObject): boolean {
  const exprs = term.matchExpressions ?? [];
  const fields = term.matchFields ?? [];
  if (exprs.length === 0 && fields.length === 0) return false;
  const labels = node.metadata.labels ?? {};
  const fieldSet: Record<string, string> = { 'metadata.name': node.metadata.name ?? '' };
  return exprs.every((r) => requirementMatches(r, labels)) && fields.every((r) => requirementMatches(r, fieldSet));
}

/**
 * nodeaffinity.GetRequiredNodeAffinity(pod).Match(node): spec.nodeSelector and the required
 * node-affinity terms (ORed) must both match.
 */
export function podFitsNodeAffinity(podSpec: Record<string, unknown>, node: KObject): boolean {
  const nodeSelector = podSpec['nodeSelector'] as Record<string, string> | undefined;
  if (nodeSelector && !labelsContain(node.metadata.labels, nodeSelector)) return false;
  const required = (podSpec['affinity'] as { nodeAffinity?: { requiredDuringSchedulingIgnoredDuringExecution?: { nodeSelectorTerms?: NodeSelectorTerm[] } } } | undefined)
    ?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution;
  if (!required) return true;
  return (required.nodeSelectorTerms ?? []).some((t) => termMatches(t, node));
}

export interface Taint {
  key: string;
  value?: string;
  effect: string;
}

export interface Toleration {
  key?: string;
  operator?: string;
  value?: string;
  effect?: string;
  tolerationSeconds?: number;
}

/** v1.Toleration.ToleratesTaint. */
export function tolerates(t: Toleration, taint: Taint): boolean {
  if (t.effect && t.effect !== taint.effect) return false;
  if (t.key && t.key !== taint.key) return false;
  switch (t.operator ?? '') {
    case '':
    case 'Equal':
      return (t.value ?? '') === (taint.value ?? '');
    case 'Exists':
      return true;
    default:
      return false;
  }
}

/** The first taint passing `filter` that no toleration tolerates. */
export function findUntoleratedTaint(
  taints: Taint[],
  tolerations: Toleration[],
  filter: (t: Taint) => boolean,
): Taint | undefined {
  return taints.filter(filter).find((taint) => !tolerations.some((t) => tolerates(t, taint)));
}
