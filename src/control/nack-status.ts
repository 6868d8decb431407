/**
 * Reporting agents' NACKs on the offending object. Validation (the `Accepted` condition, written
 * from the model by status.ts) says whether the control plane took an object; this says whether
 * the agents could apply it: a second condition, `Programmed`, set to False with reason
 * `RejectedByAgent` when an agent NACKs the object, naming the nodes and the agent's message.
 *
 * Decision (documented in ARCHITECTURE.md): a condition rather than an Event, because a user
 * looks at the object (`kubectl get authorizationpolicy x -o yaml`) and an Event expires after an
 * hour while the rejection lasts; and a separate type rather than flipping `Accepted`, because
 * the object *was* valid — flipping Accepted would make two writers fight over one condition.
 * Agents do not re-apply a NACKed resource until it changes (ambit.proto rule 4), so the
 * condition stays until the object's generation changes (the user edited it) or it is deleted;
 * then it is removed. Only AuthorizationPolicy, PeerAuthentication and routes have a status to
 * write; NACKs of other resource types are logged and counted only.
 *
 * Pure: `NackBook` is plain bookkeeping, `withProgrammed` computes a status or null (no change).
 */
import type { KubeObject } from '../state/objects.js';
import type { StatusKind } from '../state/model.js';
import { CONTROLLER_NAME } from '../state/status.js';

export const PROGRAMMED = 'Programmed';
export const REJECTED_BY_AGENT = 'RejectedByAgent';

/** A resource type of the push protocol that maps to a user object with a status. */
const KIND_OF_TYPE: Record<string, StatusKind | 'route'> = { authorizationPolicies: 'AuthorizationPolicy', peerAuthentications: 'PeerAuthentication', routes: 'route' };

export interface ObjectRef {
  kind: StatusKind;
  namespace: string;
  name: string;
}

/** The user object a NACKed resource stands for, or undefined (workloads, peers, services). */
export function objectOfResource(type: string, key: string): ObjectRef | undefined {
  const kind = KIND_OF_TYPE[type];
  if (!kind) return undefined;
  const parts = key.split('/');
  if (kind === 'route') {
    const [k, namespace, name] = parts;
    if ((k !== 'HTTPRoute' && k !== 'GRPCRoute') || !namespace || !name || parts.length !== 3) return undefined;
    return { kind: k, namespace, name };
  }
  const [namespace, name] = parts;
  if (!namespace || !name || parts.length !== 2) return undefined;
  return { kind, namespace, name };
}

export const refKey = (r: ObjectRef): string => `${r.kind}/${r.namespace}/${r.name}`;

export interface NackRecord {
  node: string;
  version: string;
  message: string;
  /** metadata.generation of the object when it was NACKed (undefined if unknown) */
  generation: number | undefined;
}

/** Who rejected what: per object, per node, the latest NACK. */
export class NackBook {
  readonly #byObject = new Map<string, Map<string, NackRecord>>();

  record(ref: ObjectRef, rec: NackRecord): void {
    const key = refKey(ref);
    const nodes = this.#byObject.get(key) ?? new Map<string, NackRecord>();
    nodes.set(rec.node, rec);
    this.#byObject.set(key, nodes);
  }

  /** The NACKs still standing for `obj` (dropping those of an older generation), sorted by node. */
  standing(ref: ObjectRef, obj: KubeObject | undefined): NackRecord[] {
    const key = refKey(ref);
    const nodes = this.#byObject.get(key);
    if (!nodes) return [];
    if (!obj) {
      this.#byObject.delete(key);
      return [];
    }
    for (const [node, rec] of nodes) if (rec.generation !== obj.metadata.generation) nodes.delete(node);
    if (nodes.size === 0) this.#byObject.delete(key);
    return [...nodes.values()].sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  }

  /** Objects with any record (to revisit them even when the model did not change). */
  refs(): ObjectRef[] {
    return [...this.#byObject.keys()].map((k) => {
      const [kind, namespace, name] = k.split('/');
      return { kind: kind as StatusKind, namespace: namespace!, name: name! };
    });
  }

  get size(): number {
    return this.#byObject.size;
  }
}

interface WireCondition {
  type: string;
  status: string;
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

/** The Programmed=False condition for standing NACKs, or undefined when there are none. */
export function programmedCondition(nacks: readonly NackRecord[], generation: number | undefined): Omit<WireCondition, 'lastTransitionTime'> | undefined {
  if (nacks.length === 0) return undefined;
  const nodes = nacks.map((n) => n.node);
  const first = nacks[0]!;
  const c: Omit<WireCondition, 'lastTransitionTime'> = {
    type: PROGRAMMED,
    status: 'False',
    reason: REJECTED_BY_AGENT,
    message: `the agent on node${nodes.length > 1 ? 's' : ''} ${nodes.join(', ')} could not apply this object (config version ${first.version}): ${first.message}. Edit the object to fix it; this condition clears when the object changes.`,
  };
  if (generation !== undefined) c.observedGeneration = generation;
  return c;
}

/** A condition list with `want` as its Programmed entry (or without one); null when unchanged. */
function mergeProgrammed(existing: unknown, want: Omit<WireCondition, 'lastTransitionTime'> | undefined, now: string): WireCondition[] | null {
  const list = Array.isArray(existing) ? (existing as WireCondition[]) : [];
  const old = list.find((c) => c?.type === PROGRAMMED);
  if (!want) return old && old.reason === REJECTED_BY_AGENT ? list.filter((c) => c !== old) : null;
  if (old && old.status === want.status && old.reason === want.reason && old.message === want.message && old.observedGeneration === want.observedGeneration) return null;
  const lastTransitionTime = old && old.status === want.status && old.lastTransitionTime ? old.lastTransitionTime : now;
  return [...list.filter((c) => c?.type !== PROGRAMMED), { ...want, lastTransitionTime }];
}

/**
 * The object's status with the Programmed condition set from `nacks` (or removed), or null when it
 * already says so. Policies carry it in status.conditions; routes in each of Ambit's status.parents
 * entries (those with our controllerName, written by status.ts).
 */
export function withProgrammed(obj: KubeObject, kind: StatusKind, nacks: readonly NackRecord[], now: string): Record<string, unknown> | null {
  const status = (obj.status ?? {}) as Record<string, unknown>;
  const want = programmedCondition(nacks, obj.metadata.generation);
  if (kind === 'AuthorizationPolicy' || kind === 'PeerAuthentication') {
    const conditions = mergeProgrammed(status['conditions'], want, now);
    return conditions ? { ...status, conditions } : null;
  }
  const parents = Array.isArray(status['parents']) ? (status['parents'] as Record<string, unknown>[]) : [];
  let changed = false;
  const next = parents.map((p) => {
    if (p['controllerName'] !== CONTROLLER_NAME) return p;
    const conditions = mergeProgrammed(p['conditions'], want, now);
    if (!conditions) return p;
    changed = true;
    return { ...p, conditions };
  });
  return changed ? { ...status, parents: next } : null;
}
