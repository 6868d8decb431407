/**
 * The watched collection against the real API test server (through client-node's Watch and
 * https lists): adds, updates and deletes; recovery after a compaction drops every watch; recovery
 * after the server closes every connection; resync catching changes a dead watch never delivered.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type https from 'node:https';
import { ApiServer } from '../../test/cluster/apiserver/server.js';
import { waitUntil } from '../../test/helpers/kubectl.js';
import { KubeConnection } from './client.js';
import { RESOURCES, type ResourceKind } from './resources.js';
import { WatchedCollection, type ListWatchTransport, type WatchEvent } from './watch.js';
import type { KubeObject } from '../state/objects.js';

let server: ApiServer;
let conn: KubeConnection;
const CM: ResourceKind = { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true };

before(async () => {
  server = await ApiServer.start({ bookmarkIntervalMs: 500 });
  conn = KubeConnection.fromKubeconfig(server.kubeconfig());
});

after(async () => {
  await server.close();
});

const fastBackoff = { initialMs: 50, maxMs: 500, factor: 2, jitter: 0.2 };

function follow(namespace: string, transport: ListWatchTransport = conn, resyncMs = 0) {
  const events: string[] = [];
  const c = new WatchedCollection({ resource: CM, namespace, transport, backoff: fastBackoff, resyncMs, sink: (e: WatchEvent<KubeObject>) => events.push(`${e.type}:${e.object.metadata.name}=${(e.object['data'] as { v?: string } | undefined)?.v ?? ''}`) });
  c.start();
  const saw = (e: string) => waitUntil(() => events.includes(e) || undefined, 10_000, () => `${e} in ${events.join(', ')}`);
  return { c, events, saw };
}

const create = (ns: string, name: string, v: string) => conn.request('POST', `/api/v1/namespaces/${ns}/configmaps`, { body: { metadata: { name }, data: { v } } });
const patch = (ns: string, name: string, v: string) => conn.request('PATCH', `/api/v1/namespaces/${ns}/configmaps/${name}`, { body: { data: { v } }, contentType: 'application/merge-patch+json' });
const remove = (ns: string, name: string) => conn.request('DELETE', `/api/v1/namespaces/${ns}/configmaps/${name}`);

test('adds, updates and deletes reach the sink; list() holds the current objects', async () => {
  await conn.request('POST', '/api/v1/namespaces', { body: { metadata: { name: 'w1' } } });
  await create('w1', 'before', '0');
  const { c, saw } = follow('w1');
  await c.synced;
  await saw('added:before=0');
  await create('w1', 'a', '1');
  await saw('added:a=1');
  await patch('w1', 'a', '2');
  await saw('updated:a=2');
  await remove('w1', 'a');
  await saw('deleted:a=2');
  assert.deepEqual(c.list().map((o) => o.metadata.name).sort(), ['before', 'kube-root-ca.crt']);
  assert.equal(c.list()[0]!.kind, 'ConfigMap', 'list items get their kind');
  assert.equal(c.restarts, 0);
  c.stop();
});

test('recovers after the server compacts its history and drops every watch', async () => {
  await conn.request('POST', '/api/v1/namespaces', { body: { metadata: { name: 'w2' } } });
  const { c, saw } = follow('w2');
  await c.synced;
  await create('w2', 'b', '1');
  await saw('added:b=1');
  await conn.request('POST', '/api/v1/namespaces/default/secrets', { body: { metadata: { name: 'moves-rv' } } });
  server.compactAndDropWatches();
  await create('w2', 'c', '1');
  await remove('w2', 'b');
  await saw('added:c=1');
  await saw('deleted:b=1');
  await patch('w2', 'c', '2');
  await saw('updated:c=2');
  assert.ok(c.restarts >= 1, 'the resumed watch was told 410 and relisted');
  c.stop();
});

test('recovers after the server closes all its connections', async () => {
  await conn.request('POST', '/api/v1/namespaces', { body: { metadata: { name: 'w3' } } });
  const { c, saw } = follow('w3');
  await c.synced;
  await create('w3', 'd', '1');
  await saw('added:d=1');
  const opened = server.stats.watchesOpened;
  // the HTTPS server itself is private to the test server; closing its sockets is what a restarted
  // or overloaded API server (or a broken network path) does to us
  (server as unknown as { server: https.Server }).server.closeAllConnections();
  await create('w3', 'e', '1');
  await saw('added:e=1');
  await patch('w3', 'd', '2');
  await saw('updated:d=2');
  assert.ok(server.stats.watchesOpened > opened, 'a new watch was opened');
  c.stop();
});

test('resync finds changes a silently dead watch never delivered', async () => {
  await conn.request('POST', '/api/v1/namespaces', { body: { metadata: { name: 'w4' } } });
  // a transport whose watches connect but never deliver anything: a half-open TCP connection
  const deaf: ListWatchTransport = {
    list: (r, o) => conn.list(r, o),
    watch: async () => ({ abort: () => {} }),
  };
  const { c, saw } = follow('w4', deaf, 300);
  await c.synced;
  await create('w4', 'f', '1');
  await saw('added:f=1');
  await patch('w4', 'f', '2');
  await saw('updated:f=2');
  await remove('w4', 'f');
  await saw('deleted:f=2');
  assert.ok(c.resyncs >= 3);
  c.stop();
});

test('cluster-scoped resources and a label selector', async () => {
  const events: string[] = [];
  const c = new WatchedCollection({ resource: RESOURCES.namespaces, transport: conn, labelSelector: 'team=x', backoff: fastBackoff, sink: (e) => events.push(`${e.type}:${e.object.metadata.name}`) });
  c.start();
  await c.synced;
  await conn.request('POST', '/api/v1/namespaces', { body: { metadata: { name: 'w5', labels: { team: 'x' } } } });
  await conn.request('POST', '/api/v1/namespaces', { body: { metadata: { name: 'w6' } } });
  await waitUntil(() => events.includes('added:w5') || undefined, 10_000, () => events.join());
  assert.ok(!events.includes('added:w6'));
  c.stop();
});
