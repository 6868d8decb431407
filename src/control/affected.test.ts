import { test } from 'node:test';
import assert from 'node:assert/strict';
import { computeModel } from '../state/model.js';
import { generateCluster, type ClusterSpec } from './snapshot.gen.js';
import { snapshotFor, type NodeSnapshot } from './snapshot.js';
import { affectsModel, nodesToRecompute } from './affected.js';
import type { KubeObject } from '../state/objects.js';

const pod = (extra: Partial<KubeObject> = {}): KubeObject => ({ metadata: { name: 'p', namespace: 'ns', uid: 'u', labels: { app: 'a' }, resourceVersion: '1' }, spec: { nodeName: 'n1' }, status: { phase: 'Running', podIP: '10.0.0.1', conditions: [] }, ...extra });

test('which watch events can change the model', () => {
  const table: [string, Parameters<typeof affectsModel>[0], KubeObject, KubeObject, boolean][] = [
    ['node heartbeat', 'nodes', { metadata: { name: 'n1' }, status: { a: 1 } }, { metadata: { name: 'n1' }, status: { a: 2 } }, false],
    ['pod condition', 'pods', pod(), pod({ status: { phase: 'Running', podIP: '10.0.0.1', conditions: [{ type: 'Ready' }] } }), false],
    ['pod IP', 'pods', pod(), pod({ status: { phase: 'Running', podIP: '10.0.0.2' } }), true],
    ['pod labels', 'pods', pod(), pod({ metadata: { name: 'p', namespace: 'ns', uid: 'u', labels: { app: 'b' } } }), true],
    ['namespace annotation', 'namespaces', { metadata: { name: 'ns', annotations: { a: '1' } } }, { metadata: { name: 'ns', annotations: { a: '2' } } }, false],
    ['namespace label', 'namespaces', { metadata: { name: 'ns' } }, { metadata: { name: 'ns', labels: { x: 'y' } } }, true],
    ['policy status only', 'authorizationPolicies', { metadata: { name: 'p', generation: 1 } }, { metadata: { name: 'p', generation: 1 }, status: { conditions: [] } }, false],
    ['policy spec', 'authorizationPolicies', { metadata: { name: 'p', generation: 1 } }, { metadata: { name: 'p', generation: 2 } }, true],
    ['endpoint slice', 'endpointSlices', { metadata: { name: 's' } }, { metadata: { name: 's' } }, true],
  ];
  for (const [what, resource, old, object, want] of table) assert.equal(affectsModel(resource, { type: 'updated', old, object }), want, what);
  assert.equal(affectsModel('nodes', { type: 'added', object: { metadata: { name: 'n' } } }), true);
});

for (const scope of [{}, { namespaceServices: true }]) {
  test(`property: recomputing only the nodes named gives the same snapshots as recomputing all (${JSON.stringify(scope)})`, () => {
    const spec: ClusterSpec = { nodes: 12, pods: 300, services: 60, policies: 20, namespaces: 8, ambientShare: 0.8, httpRoutes: 5, seed: 7, rootNamespace: 'ambit-system' };
    const objects = generateCluster(spec);
    let model = computeModel(objects);
    const held = new Map<string, NodeSnapshot>(model.nodes.map((n) => [n, snapshotFor(model, n, scope)]));
    let seed = 11;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    for (let i = 0; i < 60; i++) {
      const p = objects.pods[rand(objects.pods.length)]!;
      const r = rand(5);
      if (r === 0) p.metadata.labels = { ...p.metadata.labels, seq: String(i) };
      else if (r === 1) p.status = { ...p.status, podIP: `10.9.${i}.1`, podIPs: [{ ip: `10.9.${i}.1` }] };
      else if (r === 2) p.spec = { ...p.spec, nodeName: `node-${String(rand(spec.nodes)).padStart(3, '0')}` };
      else if (r === 3) {
        const s = objects.endpointSlices[rand(objects.endpointSlices.length)]!;
        s.endpoints = (s.endpoints ?? []).slice(1);
      } else {
        // a new Service (no endpoints yet) in an existing namespace
        const base = objects.services[rand(objects.services.length)]!;
        (objects.services as typeof base[]).push({ ...base, metadata: { ...base.metadata, name: `new-${i}`, uid: `new-${i}` }, spec: { ...(base.spec as object), clusterIP: `10.97.0.${i + 1}`, clusterIPs: [`10.97.0.${i + 1}`] } });
      }
      const next = computeModel(objects);
      const todo = nodesToRecompute(model, next, next.nodes, (n) => held.get(n), scope);
      for (const n of todo) held.set(n, snapshotFor(next, n, scope));
      for (const n of next.nodes) assert.equal(held.get(n)!.version, snapshotFor(next, n, scope).version, `change ${i} (kind ${r}): node ${n} is stale`);
      model = next;
    }
  });
}
