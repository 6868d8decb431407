/**
 * The API test server judged by @kubernetes/client-node: informers see adds, updates and deletes,
 * and recover from a 410 Gone after the server forgets its watch history (an etcd compaction).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import { ApiServer } from '../cluster/apiserver/server.js';
import { waitUntil } from '../helpers/kubectl.js';

let server: ApiServer;
let kc: k8s.KubeConfig;

before(async () => {
  server = await ApiServer.start({ bookmarkIntervalMs: 500 });
  kc = new k8s.KubeConfig();
  kc.loadFromString(server.kubeconfig());
});

after(async () => {
  await server.close();
});

test('an informer sees adds, updates and deletes, and relists after 410 Gone', async () => {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: 'inf' } } });
  const informer = k8s.makeInformer(kc, '/api/v1/namespaces/inf/configmaps', () => core.listNamespacedConfigMap({ namespace: 'inf' }));
  const seen: string[] = [];
  const errors: unknown[] = [];
  informer.on('add', (o) => seen.push(`add:${o.metadata?.name}`));
  informer.on('update', (o) => seen.push(`update:${o.metadata?.name}=${o.data?.v}`));
  informer.on('delete', (o) => seen.push(`delete:${o.metadata?.name}`));
  informer.on('error', (e) => errors.push(e));
  await informer.start();
  try {
    await core.createNamespacedConfigMap({ namespace: 'inf', body: { metadata: { name: 'a' }, data: { v: '1' } } });
    await waitUntil(() => seen.includes('add:a') || undefined, 10_000, () => `add:a in ${seen}`);
    await core.patchNamespacedConfigMap({ namespace: 'inf', name: 'a', body: { data: { v: '2' } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    await waitUntil(() => seen.includes('update:a=2') || undefined, 10_000, () => `update:a=2 in ${seen}`);
    await core.deleteNamespacedConfigMap({ namespace: 'inf', name: 'a' });
    await waitUntil(() => seen.includes('delete:a') || undefined, 10_000, () => `delete:a in ${seen}`);

    // the server forgets history and drops every watch: the informer's resume gets 410 and relists
    await core.createNamespacedConfigMap({ namespace: 'inf', body: { metadata: { name: 'b' }, data: { v: '1' } } });
    await waitUntil(() => seen.includes('add:b') || undefined, 10_000);
    // a write elsewhere moves the cluster's revision past the informer's, so compaction strands it
    await core.createNamespacedSecret({ namespace: 'inf', body: { metadata: { name: 'elsewhere' } } });
    server.compactAndDropWatches();
    // changes made while the informer is between watches are caught by its relist
    await core.createNamespacedConfigMap({ namespace: 'inf', body: { metadata: { name: 'c' }, data: { v: '1' } } });
    await core.deleteNamespacedConfigMap({ namespace: 'inf', name: 'b' });
    await waitUntil(() => (seen.includes('add:c') && seen.includes('delete:b')) || undefined, 15_000, () => `add:c and delete:b in ${seen}`);
    assert.ok(server.stats.watchesExpired >= 1, 'the informer resumed from a compacted version and was told 410');
    // and it keeps watching afterwards
    await core.patchNamespacedConfigMap({ namespace: 'inf', name: 'c', body: { data: { v: '9' } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    await waitUntil(() => seen.includes('update:c=9') || undefined, 10_000, () => `update:c=9 in ${seen}`);
    assert.deepEqual(errors, []);
    assert.deepEqual(informer.list().map((o) => o.metadata?.name).sort(), ['c', 'kube-root-ca.crt']);
  } finally {
    await informer.stop();
  }
});

test('a watch resuming from a compacted resourceVersion gets an ERROR event with 410 Expired', async () => {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const list = await core.listNamespacedConfigMap({ namespace: 'default' });
  const rv = list.metadata!.resourceVersion!;
  await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'before-compaction' } } });
  server.compactAndDropWatches();
  const events: { type: string; obj: { code?: number; reason?: string } }[] = [];
  const w = new k8s.Watch(kc);
  await new Promise<void>((resolve, reject) => {
    void w.watch('/api/v1/namespaces/default/configmaps', { resourceVersion: rv }, (type, obj) => events.push({ type, obj }), (err) => (err ? reject(err) : resolve()));
  });
  assert.equal(events.length, 1);
  assert.equal(events[0]!.type, 'ERROR');
  assert.equal(events[0]!.obj.code, 410);
  assert.equal(events[0]!.obj.reason, 'Expired');
});

test('watch: resume from a resourceVersion replays what was missed, selectors filter, bookmarks arrive', async () => {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: 'w2' } } });
  const list = await core.listNamespacedConfigMap({ namespace: 'w2' });
  const rv = list.metadata!.resourceVersion!;
  await core.createNamespacedConfigMap({ namespace: 'w2', body: { metadata: { name: 'x', labels: { keep: 'yes' } } } });
  await core.createNamespacedConfigMap({ namespace: 'w2', body: { metadata: { name: 'y', labels: { keep: 'no' } } } });
  const events: string[] = [];
  const w = new k8s.Watch(kc);
  const req = await w.watch('/api/v1/namespaces/w2/configmaps', { resourceVersion: rv, labelSelector: 'keep=yes', allowWatchBookmarks: true }, (type, obj) => events.push(`${type}:${obj.metadata?.name ?? ''}`), () => {});
  try {
    await waitUntil(() => events.includes('ADDED:x') || undefined, 5000, () => String(events));
    // a label change that leaves the selector is a DELETED for this watcher, as on the real server
    await core.patchNamespacedConfigMap({ namespace: 'w2', name: 'x', body: { metadata: { labels: { keep: 'no' } } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    await waitUntil(() => events.includes('DELETED:x') || undefined, 5000, () => String(events));
    await waitUntil(() => events.includes('BOOKMARK:') || undefined, 5000, () => String(events));
    assert.ok(!events.some((e) => e.endsWith(':y')), `y never matched: ${events}`);
  } finally {
    req.abort();
  }
});

test('list: limit and continue page through 250 objects in name order', async () => {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: 'pages' } } });
  for (let i = 0; i < 250; i++) await core.createNamespacedConfigMap({ namespace: 'pages', body: { metadata: { name: `cm-${String(i).padStart(3, '0')}`, labels: { n: String(i % 2) } } } });
  const names: string[] = [];
  let cont: string | undefined;
  let pages = 0;
  do {
    const page: k8s.V1ConfigMapList = await core.listNamespacedConfigMap({ namespace: 'pages', limit: 100, labelSelector: 'n', ...(cont ? { _continue: cont } : {}) });
    names.push(...page.items.map((i) => i.metadata!.name!));
    cont = page.metadata?._continue;
    pages++;
  } while (cont);
  assert.equal(pages, 3);
  assert.equal(names.length, 250);
  assert.deepEqual(names, [...names].sort());
});
