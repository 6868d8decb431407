/**
 * The manager over a TEST DOUBLE of the ApiClient: a small in-memory store with resourceVersions,
 * generateName, optimistic concurrency, deletion finalizers and synchronous watches. The real
 * store replaces it in the API server's integration tests.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KObject } from '../types.js';
import { alreadyExists, conflict, notFound } from '../errors.js';
import type { ApiClient, DeleteOptions, ListOptions, WatchEvent } from './client.js';
import { ControllerManager } from './manager.js';
import { field, type Condition } from './meta.js';

const NAMESPACED = ['v1/pods', 'v1/services', 'v1/endpoints', 'v1/configmaps', 'v1/serviceaccounts', 'discovery.k8s.io/v1/endpointslices', 'apps/v1/replicasets', 'apps/v1/deployments', 'apps/v1/daemonsets', 'apps/v1/controllerrevisions'];

class FakeStore implements ApiClient {
  private readonly data = new Map<string, Map<string, KObject>>();
  private readonly handlers = new Map<string, Set<(ev: WatchEvent) => void>>();
  private rv = 0;
  private seq = 0;
  /** fail the next n calls of a verb on a resource with Conflict */
  conflicts = new Map<string, number>();

  private bucket(resource: string): Map<string, KObject> {
    let b = this.data.get(resource);
    if (!b) this.data.set(resource, (b = new Map()));
    return b;
  }

  private emit(resource: string, ev: WatchEvent): void {
    for (const h of this.handlers.get(resource) ?? []) h(structuredClone(ev));
  }

  private maybeConflict(verb: string, resource: string, name: string): void {
    const k = `${verb} ${resource}`;
    const n = this.conflicts.get(k) ?? 0;
    if (n > 0) {
      this.conflicts.set(k, n - 1);
      throw conflict(resource.split('/').pop()!, name);
    }
  }

  list(resource: string, opts: ListOptions = {}) {
    const items = [...this.bucket(resource).values()].filter((o) => !opts.namespace || o.metadata.namespace === opts.namespace);
    return { items: structuredClone(items), resourceVersion: String(this.rv) };
  }

  get(resource: string, namespace: string | undefined, name: string): KObject | undefined {
    const o = this.bucket(resource).get(`${namespace ?? ''}/${name}`);
    return o && structuredClone(o);
  }

  create(resource: string, input: KObject): KObject {
    const obj = structuredClone(input);
    const m = obj.metadata;
    if (!m.name && m.generateName) m.name = `${m.generateName}${(++this.seq).toString(36).padStart(5, 'x')}`;
    const key = `${m.namespace ?? ''}/${m.name}`;
    if (this.bucket(resource).has(key)) throw alreadyExists(resource, m.name!);
    m.uid = `uid-${++this.seq}`;
    m.resourceVersion = String(++this.rv);
    m.creationTimestamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    m.generation = 1;
    this.bucket(resource).set(key, obj);
    this.emit(resource, { type: 'ADDED', object: obj });
    return structuredClone(obj);
  }

  private write(resource: string, input: KObject, status: boolean): KObject {
    this.maybeConflict(status ? 'updateStatus' : 'update', resource, input.metadata.name!);
    const key = `${input.metadata.namespace ?? ''}/${input.metadata.name}`;
    const old = this.bucket(resource).get(key);
    if (!old) throw notFound(resource, input.metadata.name!);
    if (input.metadata.resourceVersion && input.metadata.resourceVersion !== old.metadata.resourceVersion) throw conflict(resource, input.metadata.name!);
    let next: KObject;
    if (status) next = { ...structuredClone(old), status: structuredClone(input['status']) };
    else {
      next = { ...structuredClone(input), metadata: { ...structuredClone(input.metadata), uid: old.metadata.uid, creationTimestamp: old.metadata.creationTimestamp, deletionTimestamp: old.metadata.deletionTimestamp } };
      if ('status' in old && resource !== 'v1/namespaces') next['status'] = structuredClone(old['status']);
      const specChanged = JSON.stringify(input['spec']) !== JSON.stringify(old['spec']);
      next.metadata.generation = (old.metadata.generation ?? 1) + (specChanged ? 1 : 0);
    }
    next.metadata.resourceVersion = String(++this.rv);
    if (!next.metadata.deletionTimestamp) delete next.metadata.deletionTimestamp;
    this.bucket(resource).set(key, next);
    this.emit(resource, { type: 'MODIFIED', object: next, old });
    this.finishIfDone(resource, key);
    return structuredClone(next);
  }

  update(resource: string, obj: KObject): KObject {
    return this.write(resource, obj, false);
  }

  updateStatus(resource: string, obj: KObject): KObject {
    return this.write(resource, obj, true);
  }

  /** A deleting object with no finalizers left (and a finalized namespace) goes away. */
  private finishIfDone(resource: string, key: string): void {
    const o = this.bucket(resource).get(key);
    if (!o?.metadata.deletionTimestamp || (o.metadata.finalizers ?? []).length) return;
    if (resource === 'v1/namespaces' && (field<string[]>(o, 'spec', 'finalizers') ?? []).length) return;
    this.bucket(resource).delete(key);
    this.emit(resource, { type: 'DELETED', object: o, old: o });
  }

  delete(resource: string, namespace: string | undefined, name: string, opts: DeleteOptions = {}): void {
    const key = `${namespace ?? ''}/${name}`;
    const old = this.bucket(resource).get(key);
    if (!old) throw notFound(resource, name);
    if (opts.uid && opts.uid !== old.metadata.uid) throw conflict(resource, name);
    if (old.metadata.deletionTimestamp) return;
    const next = structuredClone(old);
    next.metadata.deletionTimestamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const fins = next.metadata.finalizers ?? [];
    if (opts.propagationPolicy === 'Orphan') next.metadata.finalizers = [...fins, 'orphan'];
    if (opts.propagationPolicy === 'Foreground') next.metadata.finalizers = [...fins, 'foregroundDeletion'];
    if (resource === 'v1/namespaces') next['status'] = { phase: 'Terminating' };
    next.metadata.resourceVersion = String(++this.rv);
    this.bucket(resource).set(key, next);
    this.emit(resource, { type: 'MODIFIED', object: next, old });
    this.finishIfDone(resource, key);
  }

  watch(resource: string, handler: (ev: WatchEvent) => void): () => void {
    let hs = this.handlers.get(resource);
    if (!hs) this.handlers.set(resource, (hs = new Set()));
    hs.add(handler);
    return () => hs.delete(handler);
  }

  /** plays kubelet: every pod becomes Running and Ready with an IP */
  runPods(): void {
    let ip = 10;
    for (const p of this.list('v1/pods').items) {
      if (field(p, 'status', 'phase') === 'Running') continue;
      this.updateStatus('v1/pods', {
        ...p,
        status: { phase: 'Running', podIP: `10.244.0.${ip}`, podIPs: [{ ip: `10.244.0.${ip++}` }], conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: '2024-01-01T00:00:00Z' }] },
      });
    }
  }
}

async function eventually(check: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function setup(): { store: FakeStore; mgr: ControllerManager } {
  const store = new FakeStore();
  const mgr = new ControllerManager(store, { caPem: 'PEM', namespacedResources: () => NAMESPACED, clusterResources: () => ['v1/namespaces', 'v1/nodes'], resyncMs: 200 });
  store.create('v1/namespaces', { metadata: { name: 'default' }, spec: { finalizers: ['kubernetes'] }, status: { phase: 'Active' } });
  return { store, mgr };
}

const deployment: KObject = {
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'web', namespace: 'default' },
  spec: {
    replicas: 3,
    selector: { matchLabels: { app: 'web' } },
    template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'c', image: 'nginx', ports: [{ name: 'http', containerPort: 8080 }] }] } },
    strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' } },
    revisionHistoryLimit: 10,
    progressDeadlineSeconds: 600,
  },
};

test('a Deployment rolls out to ready pods, a Service gets endpoints, delete cascades', async () => {
  const { store, mgr } = setup();
  mgr.start();
  try {
    store.create('apps/v1/deployments', deployment);
    store.create('v1/services', { metadata: { name: 'web', namespace: 'default' }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 'http' }] } });
    await eventually(() => store.list('v1/pods').items.length === 3, '3 pods');
    store.runPods();
    await eventually(() => field(store.get('apps/v1/deployments', 'default', 'web'), 'status', 'availableReplicas') === 3, 'deployment available');
    const d = store.get('apps/v1/deployments', 'default', 'web')!;
    const conds = (field<Condition[]>(d, 'status', 'conditions') ?? []).map((c) => `${c.type}/${c.reason}`);
    assert.deepEqual(conds, ['Available/MinimumReplicasAvailable', 'Progressing/NewReplicaSetAvailable']);
    assert.equal(d.metadata.annotations?.['deployment.kubernetes.io/revision'], '1');
    assert.equal(field(d, 'status', 'observedGeneration'), 1);

    await eventually(() => (store.list('discovery.k8s.io/v1/endpointslices').items[0]?.['endpoints'] as unknown[] | undefined)?.length === 3, 'slice with 3 endpoints');
    const slice = store.list('discovery.k8s.io/v1/endpointslices').items[0]!;
    assert.deepEqual(slice['ports'], [{ name: 'http', port: 8080, protocol: 'TCP' }]);
    await eventually(() => ((field<{ addresses?: unknown[] }[]>(store.get('v1/endpoints', 'default', 'web'), 'subsets') ?? [])[0]?.addresses?.length ?? 0) === 3, 'Endpoints with 3 addresses');

    // default namespace housekeeping ran too
    assert.ok(store.get('v1/serviceaccounts', 'default', 'default'));
    assert.equal(field(store.get('v1/configmaps', 'default', 'kube-root-ca.crt'), 'data', 'ca.crt'), 'PEM');

    store.delete('apps/v1/deployments', 'default', 'web', { propagationPolicy: 'Background' });
    await eventually(() => store.list('apps/v1/replicasets').items.length === 0 && store.list('v1/pods').items.length === 0, 'cascade');
    store.delete('v1/services', 'default', 'web');
    await eventually(() => !store.get('v1/endpoints', 'default', 'web'), 'Endpoints removed with the Service');
  } finally {
    mgr.stop();
  }
});

test('foreground and orphan deletion', async () => {
  const { store, mgr } = setup();
  mgr.start();
  try {
    store.create('apps/v1/deployments', deployment);
    await eventually(() => store.list('v1/pods').items.length === 3, '3 pods');
    store.delete('apps/v1/deployments', 'default', 'web', { propagationPolicy: 'Orphan' });
    await eventually(() => !store.get('apps/v1/deployments', 'default', 'web'), 'deployment gone');
    const rs = store.list('apps/v1/replicasets').items;
    assert.equal(rs.length, 1);
    assert.equal(rs[0]!.metadata.ownerReferences, undefined);

    store.delete('apps/v1/replicasets', 'default', rs[0]!.metadata.name!, { propagationPolicy: 'Foreground' });
    // the owner stays (with its finalizer) until its pods are gone
    assert.ok(store.get('apps/v1/replicasets', 'default', rs[0]!.metadata.name!));
    await eventually(() => store.list('apps/v1/replicasets').items.length === 0, 'replicaset gone');
    assert.equal(store.list('v1/pods').items.length, 0);
  } finally {
    mgr.stop();
  }
});

test('conflicts are retried', async () => {
  const { store, mgr } = setup();
  store.conflicts.set('updateStatus apps/v1/replicasets', 3);
  mgr.start();
  try {
    store.create('apps/v1/deployments', { ...deployment, spec: { ...(deployment['spec'] as object), replicas: 1 } });
    await eventually(() => store.list('v1/pods').items.length === 1, 'pod');
    store.runPods();
    await eventually(() => field(store.list('apps/v1/replicasets').items[0], 'status', 'readyReplicas') === 1, 'rs status after conflicts');
    assert.equal(store.conflicts.get('updateStatus apps/v1/replicasets'), 0);
  } finally {
    mgr.stop();
  }
});

test('a namespace is populated, then emptied and finalized on delete', async () => {
  const { store, mgr } = setup();
  mgr.start();
  try {
    store.create('v1/namespaces', { metadata: { name: 'team' }, spec: { finalizers: ['kubernetes'] }, status: { phase: 'Active' } });
    await eventually(() => !!store.get('v1/serviceaccounts', 'team', 'default') && !!store.get('v1/configmaps', 'team', 'kube-root-ca.crt'), 'defaults');
    store.create('apps/v1/deployments', { ...deployment, metadata: { name: 'web', namespace: 'team' } });
    await eventually(() => store.list('v1/pods', { namespace: 'team' }).items.length === 3, 'pods');
    store.delete('v1/namespaces', undefined, 'team');
    await eventually(() => !store.get('v1/namespaces', undefined, 'team'), 'namespace removed');
    for (const r of NAMESPACED) assert.deepEqual(store.list(r, { namespace: 'team' }).items, [], r);
  } finally {
    mgr.stop();
  }
});

test('a DaemonSet places one pod per node and follows node changes', async () => {
  const { store, mgr } = setup();
  mgr.start();
  try {
    store.create('v1/nodes', { metadata: { name: 'n1' }, spec: {} });
    store.create('apps/v1/daemonsets', {
      metadata: { name: 'agent', namespace: 'default' },
      spec: { selector: { matchLabels: { app: 'agent' } }, template: { metadata: { labels: { app: 'agent' } }, spec: { containers: [{ name: 'c', image: 'a' }] } }, updateStrategy: { type: 'RollingUpdate' } },
    });
    await eventually(() => store.list('v1/pods').items.length === 1, 'pod on n1');
    store.create('v1/nodes', { metadata: { name: 'n2' }, spec: {} });
    await eventually(() => store.list('v1/pods').items.length === 2, 'pod on n2');
    assert.deepEqual(store.list('v1/pods').items.map((p) => field(p, 'spec', 'nodeName')).sort(), ['n1', 'n2']);
    assert.equal(store.list('apps/v1/controllerrevisions').items.length, 1);
    store.runPods();
    await eventually(() => field(store.get('apps/v1/daemonsets', 'default', 'agent'), 'status', 'numberAvailable') === 2, 'ds status');
  } finally {
    mgr.stop();
  }
});
