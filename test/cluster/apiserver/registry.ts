/**
 * The registry: the write path and read path of every resource, with the real API's semantics —
 * decoding and strict field validation, defaulting, validation, optimistic concurrency,
 * generation, status and scale subresources, finalizers and graceful deletion, namespaces'
 * lifecycle, ClusterIP allocation, service-account admission, CRDs (which add resource types at run
 * time), selectors, paged lists and watches that resume from a resourceVersion or get 410 Gone.
 *
 * HTTP knows nothing of this; this module knows nothing of HTTP. Controllers use it in process
 * through `clientFor()` (the ApiClient interface), so their writes take exactly the same path.
 */
import { randomUUID, randomInt } from 'node:crypto';
import { Store, type Stored, type StoreEvent } from './store.js';
import type { FieldError, KObject, ResourceType } from './types.js';
import { apiVersionOf, qualifiedResource } from './types.js';
import * as E from './errors.js';
import { builtinResources, GENERATION_KINDS, VIRTUAL_KINDS } from './builtins.js';
import { applyDefaults, normalizeStatus, prepareForCreate } from './defaults.js';
import { validateKind, validateKindUpdate, validateObjectMeta } from './validation.js';
import { IpAllocator, PortAllocator } from './ipalloc.js';
import { decodeBuiltin } from './schema.js';
import { validateCustom } from './crdschema.js';
import { applyPatch } from './patch.js';
import { parseLabelSelector, matchesLabels, parseFieldSelector, fieldSelectorMatcher } from './selectors.js';
import { crdResourceTypes, validateCrd, crdStatus } from './crds.js';
import type { ApiClient, ListOptions, DeleteOptions as ClientDeleteOptions, WatchEvent } from './controllers/client.js';

export type FieldValidation = 'Strict' | 'Warn' | 'Ignore';

export interface UserInfo {
  username: string;
  uid?: string;
  groups: string[];
  extra?: Record<string, string[]>;
}

/** Per-request facts that change how a write behaves. */
export interface WriteContext {
  dryRun?: boolean;
  fieldValidation?: FieldValidation;
  /** warnings to return to the client (Warning: 299 headers) */
  warnings?: string[];
}

export interface DeleteOptions {
  gracePeriodSeconds?: number;
  propagationPolicy?: 'Orphan' | 'Background' | 'Foreground';
  orphanDependents?: boolean;
  preconditions?: { uid?: string; resourceVersion?: string };
}

export interface ListQuery {
  labelSelector?: string;
  fieldSelector?: string;
  limit?: number;
  continue?: string;
  resourceVersion?: string;
  resourceVersionMatch?: string;
}

export interface ListResult {
  items: Stored[];
  resourceVersion: string;
  continue?: string;
  remainingItemCount?: number;
}

export interface WatchQuery {
  labelSelector?: string;
  fieldSelector?: string;
  resourceVersion?: string;
  sendInitialEvents?: boolean;
}

export interface WatchSink {
  /** an event; `json` is the serialized object */
  event(type: 'ADDED' | 'MODIFIED' | 'DELETED', obj: KObject, json: string): void;
  /** the end of the initial events of a sendInitialEvents watch */
  initialEventsEnd(rv: number): void;
}

export interface RegistryOptions {
  serviceCidr: string;
  /** how many events per resource a watch may resume from */
  historySize?: number;
  now?: () => number;
}

type Obj = Record<string, any>;

function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

const GENERATE_CHARS = 'bcdfghjklmnpqrstvwxz2456789';
export function generateSuffix(): string {
  let s = '';
  for (let i = 0; i < 5; i++) s += GENERATE_CHARS[randomInt(GENERATE_CHARS.length)];
  return s;
}

/** Sorts CRD/API versions the Kubernetes way: GA > beta > alpha, higher numbers first. */
export function versionPriority(a: string, b: string): number {
  const parse = (v: string) => {
    const m = /^v(\d+)(?:(alpha|beta)(\d+))?$/.exec(v);
    if (!m) return [0, 0, 0, v] as const;
    const level = m[2] === 'alpha' ? 1 : m[2] === 'beta' ? 2 : 3;
    return [level, Number(m[1]), Number(m[3] ?? 0), v] as const;
  };
  const x = parse(a);
  const y = parse(b);
  if (x[0] !== y[0]) return y[0] - x[0];
  if (x[1] !== y[1]) return y[1] - x[1];
  if (x[2] !== y[2]) return y[2] - x[2];
  return a < b ? -1 : a > b ? 1 : 0;
}

export class Registry {
  readonly store: Store;
  readonly now: () => number;
  readonly serviceIps: IpAllocator;
  private readonly nodePorts = new PortAllocator();
  /** `${group}/${version}/${plural}` → type */
  private readonly types = new Map<string, ResourceType>();
  /** notified whenever the set of served types changes (discovery, OpenAPI caches) */
  private readonly typeListeners = new Set<() => void>();
  private typesVersion = 0;

  constructor(opts: RegistryOptions) {
    this.store = new Store(opts.historySize ?? 5000);
    this.now = opts.now ?? Date.now;
    this.serviceIps = new IpAllocator(opts.serviceCidr);
    for (const rt of builtinResources()) this.types.set(key(rt), rt);
  }

  // ---------------------------------------------------------------- resource types

  resourceTypes(): ResourceType[] {
    return [...this.types.values()];
  }

  typesGeneration(): number {
    return this.typesVersion;
  }

  onTypesChanged(fn: () => void): () => void {
    this.typeListeners.add(fn);
    return () => this.typeListeners.delete(fn);
  }

  lookup(group: string, version: string, plural: string): ResourceType | undefined {
    return this.types.get(`${group}/${version}/${plural}`);
  }

  /** "apps/v1/deployments" or "v1/pods" */
  lookupPath(resource: string): ResourceType {
    const parts = resource.split('/');
    const rt = parts.length === 2 ? this.lookup('', parts[0]!, parts[1]!) : this.lookup(parts[0]!, parts[1]!, parts[2]!);
    if (!rt) throw E.noSuchResource();
    return rt;
  }

  /** The preferred (storage-facing) type of a group/kind, used to find owners and by controllers. */
  lookupKind(group: string, kind: string): ResourceType | undefined {
    const all = [...this.types.values()].filter((t) => t.group === group && t.kind === kind);
    all.sort((a, b) => versionPriority(a.version, b.version));
    return all[0];
  }

  namespacedResources(): string[] {
    const seen = new Set<string>();
    const out: string[] = [];
    for (const rt of this.types.values()) {
      if (!rt.namespaced || VIRTUAL_KINDS.has(rt.kind)) continue;
      const b = bucketOf(rt);
      if (seen.has(b)) continue;
      seen.add(b);
      out.push(rt.group ? `${rt.group}/${rt.version}/${rt.plural}` : `${rt.version}/${rt.plural}`);
    }
    return out;
  }

  private setTypes(add: ResourceType[], removeGroupPlural?: string): void {
    if (removeGroupPlural) {
      for (const [k, t] of this.types) if (t.custom && `${t.group}/${t.plural}` === removeGroupPlural) this.types.delete(k);
    }
    for (const t of add) this.types.set(key(t), t);
    this.typesVersion++;
    for (const l of this.typeListeners) l();
  }

  // ---------------------------------------------------------------- reads

  get(rt: ResourceType, ns: string | undefined, name: string): Stored {
    const s = this.store.get(bucketOf(rt), objKey(rt, ns, name));
    if (!s) throw E.notFound(qualifiedResource(rt), name, rt.plural, rt.group);
    return this.present(rt, s);
  }

  /** The stored object converted to the requested version (CRDs serve several versions of one store). */
  present(rt: ResourceType, s: Stored): Stored {
    const want = apiVersionOf(rt);
    if (s.obj.apiVersion === want) return s;
    const obj = { ...s.obj, apiVersion: want };
    return { obj, json: JSON.stringify(obj), rv: s.rv };
  }

  matcher(rt: ResourceType, labelSelector?: string, fieldSelector?: string): (o: KObject) => boolean {
    const ls = labelSelector ? parseLabelSelector(labelSelector) : undefined;
    const fs = fieldSelector ? fieldSelectorMatcher(rt, parseFieldSelector(fieldSelector)) : undefined;
    if (!ls && !fs) return () => true;
    return (o) => (!ls || matchesLabels(ls, o.metadata.labels ?? {})) && (!fs || fs(o));
  }

  list(rt: ResourceType, ns: string | undefined, q: ListQuery = {}): ListResult {
    const match = this.matcher(rt, q.labelSelector, q.fieldSelector);
    const current = this.store.currentRv();
    if (q.resourceVersion && q.resourceVersion !== '0') {
      const want = Number(q.resourceVersion);
      if (!Number.isInteger(want) || want < 0) throw E.badRequest(`invalid resource version: ${q.resourceVersion}`);
      if (want > current) throw E.timeout(`Too large resource version: ${want}, current: ${current}`, 1);
      if (q.resourceVersionMatch === 'Exact' && want !== current && want < this.store.oldestRv(bucketOf(rt))) {
        throw E.gone(`too old resource version: ${want} (${this.store.oldestRv(bucketOf(rt))})`);
      }
    }
    let startAfter: string | undefined;
    let listRv = current;
    if (q.continue) {
      const tok = decodeContinue(q.continue);
      if (tok.rv < this.store.oldestRv(bucketOf(rt)) && this.store.oldestRv(bucketOf(rt)) > 0) {
        throw E.gone('The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.');
      }
      startAfter = tok.start;
      listRv = tok.rv;
    }
    const prefix = rt.namespaced && ns ? `${ns}/` : '';
    const all = this.store.list(bucketOf(rt), prefix, startAfter);
    const items: Stored[] = [];
    const limit = q.limit && q.limit > 0 ? q.limit : Infinity;
    let i = 0;
    for (; i < all.length && items.length < limit; i++) {
      const s = all[i]!;
      if (match(s.obj)) items.push(this.present(rt, s));
    }
    const res: ListResult = { items, resourceVersion: String(listRv) };
    if (i < all.length) {
      let remaining = 0;
      for (let j = i; j < all.length; j++) if (match(all[j]!.obj)) remaining++;
      if (remaining > 0) {
        const last = items[items.length - 1]!;
        res.continue = encodeContinue(listRv, objKey(rt, last.obj.metadata.namespace, last.obj.metadata.name!));
        if (!q.labelSelector && !q.fieldSelector) res.remainingItemCount = remaining;
      }
    }
    return res;
  }

  /**
   * Starts a watch. Synchronously replays what the client has not seen (initial state, or history
   * after its resourceVersion), then streams live events; returns the function that stops it.
   * Throws 410 Gone when the resourceVersion is older than the history kept.
   */
  watch(rt: ResourceType, ns: string | undefined, q: WatchQuery, sink: WatchSink): () => void {
    const match = this.matcher(rt, q.labelSelector, q.fieldSelector);
    const bucket = bucketOf(rt);
    const prefix = rt.namespaced && ns ? `${ns}/` : '';
    const deliver = (ev: StoreEvent) => {
      if (prefix && !ev.key.startsWith(prefix)) return;
      const cur = this.present(rt, ev.cur);
      if (ev.type === 'MODIFIED') {
        const was = match(ev.old!.obj);
        const is = match(ev.cur.obj);
        if (was && is) sink.event('MODIFIED', cur.obj, cur.json);
        else if (was) sink.event('DELETED', cur.obj, cur.json);
        else if (is) sink.event('ADDED', cur.obj, cur.json);
      } else if (match(ev.type === 'DELETED' ? ev.old!.obj : ev.cur.obj)) {
        sink.event(ev.type, cur.obj, cur.json);
      }
    };
    const rvText = q.resourceVersion ?? '';
    if (rvText === '' || rvText === '0' || q.sendInitialEvents) {
      // "Get State and Start at Most Recent": the current state as ADDED events, then live changes
      for (const s of this.store.list(bucket, prefix)) {
        if (!match(s.obj)) continue;
        const p = this.present(rt, s);
        sink.event('ADDED', p.obj, p.json);
      }
      if (q.sendInitialEvents) sink.initialEventsEnd(this.store.currentRv());
    } else {
      const from = Number(rvText);
      if (!Number.isInteger(from) || from < 0) throw E.badRequest(`invalid resource version: ${rvText}`);
      const missed = this.store.since(bucket, from);
      if (!missed) throw E.gone(`too old resource version: ${from} (${this.store.oldestRv(bucket)})`);
      for (const ev of missed) deliver(ev);
    }
    return this.store.subscribe(bucket, deliver);
  }

  // ---------------------------------------------------------------- writes

  /** Decodes a request body into an object of `rt`: kind checks, strict field validation, pruning. */
  decode(rt: ResourceType, body: unknown, ctx: WriteContext, expectKind = rt.kind): KObject {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw E.badRequest(`Object 'Kind' is missing in '${JSON.stringify(body)}'`);
    }
    // like the real codec, a body without apiVersion/kind takes the endpoint's
    const o = { ...(body as Obj) };
    o.kind ||= expectKind;
    const want = apiVersionOf(rt);
    o.apiVersion ||= want;
    if (o.apiVersion !== want) {
      const [g] = String(o.apiVersion).includes('/') ? String(o.apiVersion).split('/') : [''];
      const sameGroupServed = rt.custom && g === rt.group && this.lookup(rt.group, String(o.apiVersion).split('/')[1]!, rt.plural);
      if (!sameGroupServed) throw E.badRequest(`the API version in the data (${o.apiVersion}) does not match the expected API version (${want})`);
    }
    if (o.kind !== expectKind) throw E.badRequest(`the kind in the data (${o.kind}) does not match the expected kind (${expectKind})`);
    const fv = ctx.fieldValidation ?? 'Warn';
    let out: KObject;
    let warnings: string[];
    if (rt.schema.kind === 'model') {
      ({ obj: out, warnings } = decodeBuiltin(rt.schema.model, { kind: rt.kind, version: rt.version }, o, fv));
    } else {
      const r = validateCustom(rt.schema.schema, o, fv, { kind: rt.kind, version: rt.version });
      out = r.obj as KObject;
      warnings = r.warnings;
      if (r.errors.length) throw E.invalid(rt.kind, rt.group, String(o.metadata?.name ?? ''), r.errors);
    }
    if (warnings.length) (ctx.warnings ??= []).push(...warnings);
    out.apiVersion = apiVersionOf(rt);
    out.kind = rt.kind;
    if (!out.metadata || typeof out.metadata !== 'object') out.metadata = {};
    return out;
  }

  create(rt: ResourceType, ns: string | undefined, input: KObject, ctx: WriteContext = {}): KObject {
    if (VIRTUAL_KINDS.has(rt.kind)) throw E.methodNotAllowed();
    const o = structuredClone(input);
    const m = o.metadata;
    if (rt.namespaced) {
      if (m.namespace && ns && m.namespace !== ns) throw E.badRequest('the namespace of the provided object does not match the namespace sent on the request');
      m.namespace = ns ?? m.namespace;
    } else if (m.namespace) {
      delete m.namespace; // the real server clears it for cluster-scoped kinds
    }
    if (!m.name && m.generateName) m.name = `${m.generateName}${generateSuffix()}`;
    delete m.resourceVersion;
    delete m.deletionTimestamp;
    delete m.deletionGracePeriodSeconds;
    delete m.managedFields;
    delete m.selfLink;
    m.uid = randomUUID();
    m.creationTimestamp = rfc3339(this.now());
    if (GENERATION_KINDS.has(rt.kind) || rt.custom) m.generation = 1;
    else delete m.generation;
    if (!rt.custom) {
      applyDefaults(rt.kind, o);
      prepareForCreate(rt.kind, o, !!rt.subresources.status);
      normalizeStatus(rt.kind, o);
    } else if (rt.subresources.status) delete o.status;
    this.admit(rt, o, undefined);
    this.validate(rt, o, undefined);
    if (rt.namespaced) this.checkNamespaceOpen(rt, m.namespace!, m.name!);
    const k = objKey(rt, m.namespace, m.name!);
    if (this.store.get(bucketOf(rt), k)) throw E.alreadyExists(qualifiedResource(rt), m.name!, rt.group);
    const undo = this.allocate(rt, o, undefined);
    if (ctx.dryRun) {
      undo();
      return o;
    }
    if (rt.kind === 'CustomResourceDefinition') o.status = crdStatus(o, this.now());
    const s = this.store.put(bucketOf(rt), k, (rv) => stamp(o, rv));
    if (rt.kind === 'CustomResourceDefinition') this.syncCrd(s.obj);
    return s.obj;
  }

  /**
   * Full update (PUT) of the object or of its status subresource. The stored object's
   * resourceVersion must match when the request names one (optimistic concurrency).
   */
  update(rt: ResourceType, ns: string | undefined, name: string, input: KObject, ctx: WriteContext = {}, subresource?: 'status'): KObject {
    const cur = this.store.get(bucketOf(rt), objKey(rt, ns, name));
    if (!cur) throw E.notFound(qualifiedResource(rt), name, rt.plural, rt.group);
    const inName = input.metadata?.name;
    if (inName && inName !== name) throw E.badRequest(`the name of the object (${inName}) does not match the name on the URL (${name})`);
    if (rt.namespaced && input.metadata?.namespace && input.metadata.namespace !== ns) {
      throw E.badRequest('the namespace of the provided object does not match the namespace sent on the request');
    }
    const rv = input.metadata?.resourceVersion;
    if (rv && rv !== String(cur.rv)) throw E.conflict(qualifiedResource(rt), name, rt.group);
    return this.commitUpdate(rt, cur, structuredClone(input), ctx, subresource);
  }

  /** PATCH of the object or its status: applies the patch to the current state, then updates. */
  patch(rt: ResourceType, ns: string | undefined, name: string, contentType: string, body: string, ctx: WriteContext = {}, subresource?: 'status'): KObject {
    const cur = this.store.get(bucketOf(rt), objKey(rt, ns, name));
    if (!cur) throw E.notFound(qualifiedResource(rt), name, rt.plural, rt.group);
    const presented = this.present(rt, cur).obj;
    const patched = applyPatch(contentType, presented, body, rt.schema.kind === 'model' ? rt.schema.model : undefined, { fieldValidation: ctx.fieldValidation ?? 'Warn' });
    const rv = patched.metadata?.resourceVersion;
    if (rv && rv !== String(cur.rv)) throw E.conflict(qualifiedResource(rt), name, rt.group);
    if (patched.metadata?.name !== undefined && patched.metadata.name !== name) throw E.badRequest(`the name of the object (${patched.metadata.name}) does not match the name on the URL (${name})`);
    const decoded = this.decode(rt, patched, ctx);
    return this.commitUpdate(rt, cur, decoded, ctx, subresource);
  }

  private commitUpdate(rt: ResourceType, cur: Stored, next: KObject, ctx: WriteContext, subresource?: 'status'): KObject {
    if (VIRTUAL_KINDS.has(rt.kind)) throw E.methodNotAllowed();
    const prev = cur.obj;
    let o: KObject;
    if (subresource === 'status') {
      // a status write changes status only
      o = structuredClone(prev);
      if (next.status === undefined) delete o.status;
      else o.status = next.status;
      if (!rt.custom) normalizeStatus(rt.kind, o);
    } else {
      o = next;
      o.apiVersion = prev.apiVersion;
      o.kind = prev.kind;
      const m = o.metadata ?? (o.metadata = {});
      const pm = prev.metadata;
      m.name = pm.name;
      if (pm.namespace) m.namespace = pm.namespace;
      m.uid = pm.uid;
      m.creationTimestamp = pm.creationTimestamp;
      if (pm.deletionTimestamp) m.deletionTimestamp = pm.deletionTimestamp;
      else delete m.deletionTimestamp;
      if (pm.deletionGracePeriodSeconds !== undefined) m.deletionGracePeriodSeconds = pm.deletionGracePeriodSeconds;
      delete m.managedFields;
      delete m.selfLink;
      if (pm.generation !== undefined) m.generation = pm.generation;
      if (!rt.custom) applyDefaults(rt.kind, o);
      if (rt.subresources.status) {
        if (prev.status === undefined) delete o.status;
        else o.status = prev.status;
      }
      if (pm.deletionTimestamp) {
        // while deleting, finalizers may only be removed
        const added = (m.finalizers ?? []).filter((f) => !(pm.finalizers ?? []).includes(f));
        if (added.length) throw E.invalid(rt.kind, rt.group, pm.name!, [{ reason: 'FieldValueForbidden', field: 'metadata.finalizers', message: `Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{${added.map((f) => JSON.stringify(f)).join(', ')}}` }]);
      }
      if (m.generation !== undefined && specChanged(prev, o)) m.generation = (pm.generation ?? 0) + 1;
      this.admit(rt, o, prev);
      this.validate(rt, o, prev);
    }
    if (ctx.dryRun) return o;
    if (JSON.stringify(withoutRv(o)) === JSON.stringify(withoutRv(prev))) return prev; // a no-op write keeps the resourceVersion
    this.allocate(rt, o, prev);
    const k = objKey(rt, prev.metadata.namespace, prev.metadata.name!);
    if (this.readyToRemove(rt, o)) {
      this.removeNow(rt, k, o);
      return o;
    }
    const s = this.store.put(bucketOf(rt), k, (rv) => stamp(o, rv));
    if (rt.kind === 'CustomResourceDefinition') this.syncCrd(s.obj);
    return this.present(rt, s).obj;
  }

  /**
   * DELETE. Returns the object and whether it is gone now (false while finalizers, a pod's grace
   * period, or a namespace's cleanup hold it).
   */
  delete(rt: ResourceType, ns: string | undefined, name: string, opts: DeleteOptions = {}, ctx: WriteContext = {}): { obj: KObject; removed: boolean } {
    const k = objKey(rt, ns, name);
    const cur = this.store.get(bucketOf(rt), k);
    if (!cur) throw E.notFound(qualifiedResource(rt), name, rt.plural, rt.group);
    const prev = cur.obj;
    const pre = opts.preconditions;
    if (pre?.uid && pre.uid !== prev.metadata.uid) {
      throw new E.ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${qualifiedResource(rt)} "${name}": Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${prev.metadata.uid}`, { name, kind: rt.plural, group: rt.group });
    }
    if (pre?.resourceVersion && pre.resourceVersion !== String(cur.rv)) {
      throw new E.ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${qualifiedResource(rt)} "${name}": Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${cur.rv}`, { name, kind: rt.plural, group: rt.group });
    }
    const policy = opts.propagationPolicy ?? (opts.orphanDependents === true ? 'Orphan' : opts.orphanDependents === false ? 'Background' : undefined);
    const o = structuredClone(prev);
    const m = o.metadata;
    const isPod = rt.kind === 'Pod' && !rt.group;
    const podTerminal = isPod && ['Succeeded', 'Failed'].includes((o.status as Obj)?.phase);
    const requestedGrace = opts.gracePeriodSeconds;

    if (m.deletionTimestamp) {
      // already deleting: only a shorter grace period for a pod changes anything
      if (isPod && requestedGrace !== undefined && requestedGrace < (m.deletionGracePeriodSeconds ?? Infinity)) {
        m.deletionGracePeriodSeconds = requestedGrace;
        m.deletionTimestamp = rfc3339(this.now() + requestedGrace * 1000);
        if (ctx.dryRun) return { obj: o, removed: false };
        if (this.readyToRemove(rt, o)) return { obj: this.removeNow(rt, k, o), removed: true };
        return { obj: this.store.put(bucketOf(rt), k, (rv) => stamp(o, rv)).obj, removed: false };
      }
      return { obj: prev, removed: false };
    }

    const fins = new Set(m.finalizers ?? []);
    if (policy === 'Orphan') fins.add('orphan');
    if (policy === 'Foreground') fins.add('foregroundDeletion');
    let grace = 0;
    if (isPod && (o.spec as Obj)?.nodeName && !podTerminal) {
      grace = requestedGrace ?? (o.spec as Obj)?.terminationGracePeriodSeconds ?? 30;
      if (grace < 0) grace = 1;
    }
    const isNs = rt.kind === 'Namespace' && !rt.group;
    if (fins.size === 0 && grace === 0 && !isNs) {
      if (ctx.dryRun) return { obj: prev, removed: true };
      return { obj: this.removeNow(rt, k, o), removed: true };
    }
    m.finalizers = [...fins];
    if (m.finalizers.length === 0) delete m.finalizers;
    m.deletionTimestamp = rfc3339(this.now() + grace * 1000);
    m.deletionGracePeriodSeconds = grace;
    if (m.generation !== undefined) m.generation += 1;
    if (isNs) (o.status as Obj) = { ...(o.status as Obj), phase: 'Terminating' };
    if (ctx.dryRun) return { obj: o, removed: false };
    if (this.readyToRemove(rt, o)) return { obj: this.removeNow(rt, k, o), removed: true };
    return { obj: this.store.put(bucketOf(rt), k, (rv) => stamp(o, rv)).obj, removed: false };
  }

  deleteCollection(rt: ResourceType, ns: string | undefined, q: ListQuery, opts: DeleteOptions, ctx: WriteContext = {}): KObject[] {
    const out: KObject[] = [];
    for (const s of this.list(rt, ns, { labelSelector: q.labelSelector, fieldSelector: q.fieldSelector }).items) {
      try {
        out.push(this.delete(rt, s.obj.metadata.namespace, s.obj.metadata.name!, opts, ctx).obj);
      } catch (e) {
        if (!(e instanceof E.ApiError && e.code === 404)) throw e;
      }
    }
    return out;
  }

  /** Binds a pod to a node (the pods/binding subresource the scheduler uses). */
  bind(ns: string, podName: string, nodeName: string): void {
    const rt = this.lookupPath('v1/pods');
    const cur = this.store.get(bucketOf(rt), objKey(rt, ns, podName));
    if (!cur) throw E.notFound('pods', podName, 'pods');
    const o = structuredClone(cur.obj) as Obj;
    if (o.metadata.deletionTimestamp) throw E.conflict('pods', podName);
    if (o.spec.nodeName) throw new E.ApiError(409, 'Conflict', `Operation cannot be fulfilled on pods/binding "${podName}": pod ${podName} is already assigned to node "${o.spec.nodeName}"`);
    o.spec.nodeName = nodeName;
    const conds = ((o.status.conditions as Obj[]) ?? []).filter((c) => c.type !== 'PodScheduled');
    conds.push({ type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: rfc3339(this.now()) });
    o.status.conditions = conds;
    this.store.put(bucketOf(rt), objKey(rt, ns, podName), (rv) => stamp(o as KObject, rv));
  }

  // ---------------------------------------------------------------- internals

  private readyToRemove(rt: ResourceType, o: KObject): boolean {
    const m = o.metadata;
    if (!m.deletionTimestamp || (m.finalizers?.length ?? 0) > 0) return false;
    if (rt.kind === 'Namespace' && !rt.group) return ((o.spec as Obj)?.finalizers?.length ?? 0) === 0;
    if (rt.kind === 'Pod' && !rt.group) return (m.deletionGracePeriodSeconds ?? 0) === 0;
    return true;
  }

  private removeNow(rt: ResourceType, k: string, o: KObject): KObject {
    const s = this.store.remove(bucketOf(rt), k, (_old, rv) => stamp(o, rv));
    this.release(rt, o);
    if (rt.kind === 'CustomResourceDefinition') this.dropCrd(o);
    return s ? s.obj : o;
  }

  private validate(rt: ResourceType, o: KObject, prev: KObject | undefined): void {
    const errs: FieldError[] = validateObjectMeta(rt.kind, o, rt.namespaced);
    if (!rt.custom) {
      errs.push(...validateKind(rt.kind, o));
      if (prev) errs.push(...validateKindUpdate(rt.kind, o, prev));
      if (rt.kind === 'CustomResourceDefinition') errs.push(...validateCrd(o, prev));
    }
    if (errs.length) throw E.invalid(rt.kind, rt.group, o.metadata.name ?? '', errs);
  }

  /** What admission plugins do on the way in: namespace lifecycle, service-account token mounts, secrets. */
  private admit(rt: ResourceType, o: KObject, prev: KObject | undefined): void {
    if (rt.group) return;
    if (rt.kind === 'Secret') {
      const s = o as Obj;
      if (s.stringData) {
        s.data ??= {};
        for (const [k, v] of Object.entries(s.stringData as Record<string, string>)) s.data[k] = Buffer.from(String(v)).toString('base64');
        delete s.stringData;
      }
      for (const [k, v] of Object.entries((s.data as Record<string, unknown>) ?? {})) {
        if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v) || v.length % 4 !== 0) {
          throw E.badRequest(`Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte ${firstBadBase64(String(v))} (data[${k}])`);
        }
      }
    }
    if (rt.kind === 'Pod' && !prev) this.admitPodServiceAccount(o);
  }

  private admitPodServiceAccount(o: KObject): void {
    const spec = o.spec as Obj;
    const ns = o.metadata.namespace!;
    const saName = spec.serviceAccountName ?? 'default';
    const sa = this.store.get('/serviceaccounts', `${ns}/${saName}`);
    if (!sa) {
      throw E.forbidden(`pods "${o.metadata.name}" is forbidden: error looking up service account ${ns}/${saName}: serviceaccount "${saName}" not found`, o.metadata.name, 'pods');
    }
    const automount = spec.automountServiceAccountToken ?? (sa.obj as Obj).automountServiceAccountToken ?? true;
    if (!automount) return;
    const mountPath = '/var/run/secrets/kubernetes.io/serviceaccount';
    const all = [...((spec.containers as Obj[]) ?? []), ...((spec.initContainers as Obj[]) ?? [])];
    if (all.some((c) => ((c.volumeMounts as Obj[]) ?? []).some((vm) => vm.mountPath === mountPath))) return;
    const volName = `kube-api-access-${generateSuffix()}`;
    spec.volumes = [
      ...((spec.volumes as Obj[]) ?? []),
      {
        name: volName,
        projected: {
          defaultMode: 0o644,
          sources: [
            { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
            { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
            { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
          ],
        },
      },
    ];
    for (const c of all) c.volumeMounts = [...((c.volumeMounts as Obj[]) ?? []), { name: volName, readOnly: true, mountPath }];
  }

  private checkNamespaceOpen(rt: ResourceType, ns: string, name: string): void {
    if (rt.kind === 'Event') return; // events may be recorded for a terminating namespace
    const nsObj = this.store.get('/namespaces', `/${ns}`);
    if (!nsObj) throw E.notFound('namespaces', ns, 'namespaces');
    if (nsObj.obj.metadata.deletionTimestamp) {
      throw E.forbidden(`${qualifiedResource(rt)} "${name}" is forbidden: unable to create new content in namespace ${ns} because it is being terminated`, name, rt.plural, rt.group);
    }
  }

  /** ClusterIP and NodePort allocation for Services; returns the undo for a dry run. */
  private allocate(rt: ResourceType, o: KObject, prev: KObject | undefined): () => void {
    if (rt.group || rt.kind !== 'Service') return () => {};
    const spec = o.spec as Obj;
    const undo: (() => void)[] = [];
    if (spec.type === 'ExternalName') {
      delete spec.clusterIP;
      delete spec.clusterIPs;
      return () => {};
    }
    const prevIp = (prev?.spec as Obj | undefined)?.clusterIP;
    if (prevIp) {
      spec.clusterIP = prevIp;
    } else if (spec.clusterIP !== 'None') {
      const r = this.serviceIps.allocate(spec.clusterIP || undefined);
      if (typeof r !== 'string') {
        throw E.invalid('Service', '', o.metadata.name!, [{ reason: 'FieldValueInvalid', field: 'spec.clusterIPs', message: `Invalid value: []string{"${spec.clusterIP ?? ''}"}: ${r.error}` }]);
      }
      spec.clusterIP = r;
      undo.push(() => this.serviceIps.release(r));
    }
    spec.clusterIPs = [spec.clusterIP];
    spec.ipFamilies ??= ['IPv4'];
    spec.ipFamilyPolicy ??= 'SingleStack';
    if (spec.type === 'NodePort' || spec.type === 'LoadBalancer') {
      const prevPorts = ((prev?.spec as Obj | undefined)?.ports as Obj[] | undefined) ?? [];
      for (const p of (spec.ports as Obj[]) ?? []) {
        const old = prevPorts.find((x) => x.port === p.port && x.protocol === p.protocol)?.nodePort;
        if (old && (!p.nodePort || p.nodePort === old)) {
          p.nodePort = old;
          continue;
        }
        const r = this.nodePorts.allocate(p.nodePort);
        if (typeof r !== 'number') {
          undo.forEach((f) => f());
          throw E.invalid('Service', '', o.metadata.name!, [{ reason: 'FieldValueInvalid', field: 'spec.ports[0].nodePort', message: `Invalid value: ${p.nodePort}: ${r.error}` }]);
        }
        p.nodePort = r;
        undo.push(() => this.nodePorts.release(r));
      }
    }
    return () => undo.forEach((f) => f());
  }

  private release(rt: ResourceType, o: KObject): void {
    if (rt.group || rt.kind !== 'Service') return;
    const spec = o.spec as Obj;
    if (spec.clusterIP && spec.clusterIP !== 'None') this.serviceIps.release(spec.clusterIP);
    for (const p of (spec.ports as Obj[]) ?? []) if (p.nodePort) this.nodePorts.release(p.nodePort);
  }

  /** A CRD was written: serve its versions (once established) and mark it so. */
  private syncCrd(crd: KObject): void {
    const types = crdResourceTypes(crd);
    const spec = crd.spec as Obj;
    this.setTypes(types, `${spec.group}/${spec.names.plural}`);
  }

  private dropCrd(crd: KObject): void {
    const spec = crd.spec as Obj;
    const bucket = `${spec.group}/${spec.names.plural}`;
    for (const s of this.store.list(bucket)) this.store.remove(bucket, `${s.obj.metadata.namespace ?? ''}/${s.obj.metadata.name}`, (obj, rv) => stamp(obj, rv));
    this.store.dropBucket(bucket);
    this.setTypes([], bucket);
  }

  // ---------------------------------------------------------------- in-process client

  /** The ApiClient the controllers use: same path as HTTP, no authorization (they are the system). */
  clientFor(): ApiClient {
    const reg = this;
    const ctx: WriteContext = { fieldValidation: 'Ignore' };
    const rtOf = (r: string) => reg.lookupPath(r);
    return {
      list(resource: string, opts: ListOptions = {}) {
        const rt = rtOf(resource);
        const q: ListQuery = {};
        if (opts.labelSelector) q.labelSelector = opts.labelSelector;
        if (opts.fieldSelector) q.fieldSelector = opts.fieldSelector;
        const r = reg.list(rt, opts.namespace, q);
        return { items: r.items.map((s) => s.obj), resourceVersion: r.resourceVersion };
      },
      get(resource: string, ns: string | undefined, name: string) {
        const rt = rtOf(resource);
        const s = reg.store.get(bucketOf(rt), objKey(rt, ns, name));
        return s ? reg.present(rt, s).obj : undefined;
      },
      create(resource: string, obj: KObject) {
        const rt = rtOf(resource);
        return reg.create(rt, obj.metadata.namespace, reg.decode(rt, { apiVersion: apiVersionOf(rt), kind: rt.kind, ...obj }, ctx), ctx);
      },
      update(resource: string, obj: KObject) {
        const rt = rtOf(resource);
        return reg.update(rt, obj.metadata.namespace, obj.metadata.name!, reg.decode(rt, { apiVersion: apiVersionOf(rt), kind: rt.kind, ...obj }, ctx), ctx);
      },
      updateStatus(resource: string, obj: KObject) {
        const rt = rtOf(resource);
        return reg.update(rt, obj.metadata.namespace, obj.metadata.name!, reg.decode(rt, { apiVersion: apiVersionOf(rt), kind: rt.kind, ...obj }, ctx), ctx, 'status');
      },
      delete(resource: string, ns: string | undefined, name: string, opts: ClientDeleteOptions = {}) {
        const rt = rtOf(resource);
        const d: DeleteOptions = {};
        if (opts.propagationPolicy) d.propagationPolicy = opts.propagationPolicy;
        if (opts.gracePeriodSeconds !== undefined) d.gracePeriodSeconds = opts.gracePeriodSeconds;
        if (opts.uid) d.preconditions = { uid: opts.uid };
        reg.delete(rt, ns, name, d, ctx);
      },
      watch(resource: string, handler: (ev: WatchEvent) => void) {
        const rt = rtOf(resource);
        return reg.store.subscribe(bucketOf(rt), (ev) => {
          const w: WatchEvent = { type: ev.type, object: reg.present(rt, ev.cur).obj };
          if (ev.old) w.old = ev.old.obj;
          handler(w);
        });
      },
    };
  }
}

// ---------------------------------------------------------------- helpers

function key(rt: ResourceType): string {
  return `${rt.group}/${rt.version}/${rt.plural}`;
}

/** Storage is per group/resource, shared by every version of it. */
export function bucketOf(rt: Pick<ResourceType, 'group' | 'plural'>): string {
  return `${rt.group}/${rt.plural}`;
}

export function objKey(rt: Pick<ResourceType, 'namespaced'>, ns: string | undefined, name: string): string {
  return rt.namespaced ? `${ns ?? ''}/${name}` : `/${name}`;
}

function stamp(o: KObject, rv: number): KObject {
  o.metadata.resourceVersion = String(rv);
  return o;
}

function withoutRv(o: KObject): KObject {
  const { resourceVersion: _rv, ...meta } = o.metadata;
  void _rv;
  return { ...o, metadata: meta };
}

/** Did anything other than metadata and status change? (what bumps metadata.generation) */
function specChanged(prev: KObject, next: KObject): boolean {
  const strip = (o: KObject) => {
    const { metadata: _m, status: _s, ...rest } = o;
    void _m;
    void _s;
    return JSON.stringify(rest);
  };
  return strip(prev) !== strip(next);
}

function encodeContinue(rv: number, start: string): string {
  return Buffer.from(JSON.stringify({ v: 'meta.k8s.io/v1', rv, start })).toString('base64url');
}

function decodeContinue(tok: string): { rv: number; start: string } {
  try {
    const t = JSON.parse(Buffer.from(tok, 'base64url').toString('utf8'));
    if (t.v !== 'meta.k8s.io/v1' || typeof t.rv !== 'number' || typeof t.start !== 'string') throw new Error('bad');
    return t;
  } catch {
    throw E.badRequest('continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)');
  }
}

function firstBadBase64(s: string): number {
  const i = s.search(/[^A-Za-z0-9+/=]/);
  return i >= 0 ? i : s.length;
}

