import assert from 'node:assert/strict';
import { test } from 'node:test';
import { canonicalWorkloadName } from './workload-name.js';

test("canonicalWorkloadName: Istio's workload label from the pod", () => {
  const rows: Array<[string, Parameters<typeof canonicalWorkloadName>[0], string]> = [
    ['app.kubernetes.io/name first', { labels: { 'app.kubernetes.io/name': 'shop', app: 'web' }, name: 'web-5d9c7b6f4-abcde' }, 'shop'],
    ['then app', { labels: { app: 'web' }, name: 'x' }, 'web'],
    ['a Deployment pod: both hashes dropped', { labels: {}, name: 'reviews-v1-5d9c7b6f4c-x2bq9' }, 'reviews-v1'],
    ['a bare pod keeps its name', { name: 'client' }, 'client'],
    ['nothing known', { labels: {} }, 'unknown'],
    ['no workload', undefined, 'unknown'],
  ];
  for (const [what, w, want] of rows) assert.equal(canonicalWorkloadName(w), want, what);
});
