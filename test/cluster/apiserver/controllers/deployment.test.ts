import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KObject } from '../types.js';
import type { Action } from './actions.js';
import { computeHash } from './hash.js';
import { field, getCondition, type Condition } from './meta.js';
import { DESIRED_REPLICAS, MAX_REPLICAS, REVISION, deploymentWakeup, reconcileDeployment, resolveFenceposts } from './deployment.js';
import { T0, at, ref } from './fixtures.js';

type Obj = Record<string, unknown>;

function deployment(o: { replicas: number; image: string; strategy?: Obj; revisionHistoryLimit?: number; progressDeadlineSeconds?: number }): KObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: 'default', uid: 'uid-d', generation: 1 },
    spec: {
      replicas: o.replicas,
      selector: { matchLabels: { app: 'web' } },
      template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'c', image: o.image }] } },
      strategy: o.strategy ?? { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' } },
      revisionHistoryLimit: o.revisionHistoryLimit ?? 10,
      progressDeadlineSeconds: o.progressDeadlineSeconds ?? 600,
    },
  };
}

/**
 * A tiny cluster for one Deployment: applies the controller's writes, and plays ReplicaSet
 * controller + kubelet by setting each ReplicaSet's status from its spec. `available` decides
 * how many of a ReplicaSet's pods are available (default: all).
 */
class Sim {
  rss: KObject[] = [];
  pods: KObject[] = [];
  clock = T0;
  private seq = 0;

  constructor(public d: KObject) {}

  step(available: (rs: KObject) => number = (rs) => replicas(rs)): Action[] {
    this.clock += 1000;
    const actions = reconcileDeployment({ deployment: this.d, replicaSets: this.rss, pods: this.pods }, this.clock);
    for (const a of actions) this.apply(a);
    this.kubelet(available);
    return actions;
  }

  /** sets RS status as if their pods came up with `available` available */
  kubelet(available: (rs: KObject) => number): void {
    for (const rs of this.rss) {
      const n = replicas(rs);
      const avail = Math.min(n, available(rs));
      rs['status'] = { replicas: n, readyReplicas: avail, availableReplicas: avail, observedGeneration: rs.metadata.generation };
    }
  }

  private apply(a: Action): void {
    if (a.verb === 'create') {
      const o = structuredClone(a.object);
      o.metadata.uid = `uid-rs-${++this.seq}`;
      o.metadata.creationTimestamp = new Date(this.clock).toISOString().replace(/\.\d+Z/, 'Z');
      o.metadata.generation = 1;
      this.rss.push(o);
    } else if (a.verb === 'update' || a.verb === 'updateStatus') {
      if (a.resource === 'apps/v1/deployments') {
        if (a.verb === 'update') this.d = { ...this.d, metadata: a.object.metadata };
        else this.d = { ...this.d, status: a.object['status'] };
      } else {
        const i = this.rss.findIndex((r) => r.metadata.uid === a.object.metadata.uid);
        this.rss[i] = { ...structuredClone(a.object), metadata: { ...a.object.metadata, generation: (this.rss[i]!.metadata.generation ?? 1) + 1 } };
      }
    } else {
      this.rss = this.rss.filter((r) => r.metadata.name !== a.name);
    }
  }

  setImage(image: string): void {
    const d = structuredClone(this.d);
    (field<Obj>(d, 'spec', 'template', 'spec')!['containers'] as Obj[])[0]!['image'] = image;
    d.metadata.generation = (d.metadata.generation ?? 1) + 1;
    this.d = d;
  }

  setReplicas(n: number): void {
    const d = structuredClone(this.d);
    (d['spec'] as Obj)['replicas'] = n;
    d.metadata.generation = (d.metadata.generation ?? 1) + 1;
    this.d = d;
  }

  /** [replicas of the newest RS, replicas of the others...] */
  sizes(): number[] {
    const sorted = [...this.rss].sort((a, b) => (revision(b) - revision(a)));
    return sorted.map(replicas);
  }

  status(): Obj {
    return (this.d['status'] ?? {}) as Obj;
  }

  cond(type: string): Condition | undefined {
    return getCondition(this.status()['conditions'] as Condition[], type);
  }
}

const replicas = (rs: KObject): number => field<number>(rs, 'spec', 'replicas') ?? 1;
const revision = (rs: KObject): number => Number(rs.metadata.annotations?.[REVISION] ?? 0);

test('fenceposts: surge rounds up, unavailable rounds down, never both zero', () => {
  const cases: [number | string, number | string, number, number, number][] = [
    ['25%', '25%', 10, 3, 2],
    ['25%', '25%', 4, 1, 1],
    ['25%', '25%', 1, 1, 0],
    [0, 0, 5, 0, 1],
    ['50%', '0%', 3, 2, 0],
    [1, '30%', 3, 1, 0],
    [2, 1, 10, 2, 1],
  ];
  for (const [s, u, d, ws, wu] of cases) assert.deepEqual(resolveFenceposts(s, u, d), { surge: ws, unavailable: wu }, `${s}/${u} of ${d}`);
});

test('template hash is stable, salted by collisionCount, in the safe alphabet', () => {
  const t = { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'c', image: 'a' }] } };
  assert.equal(computeHash(t), computeHash(structuredClone(t)));
  assert.notEqual(computeHash(t), computeHash(t, 1));
  assert.match(computeHash(t), /^[bcdf456789]+$/);
});

test('first sync creates "<name>-<hash>" with the revision annotations and reports progress', () => {
  const sim = new Sim(deployment({ replicas: 3, image: 'v1' }));
  const actions = sim.step(() => 0);
  const rs = sim.rss[0]!;
  const hash = computeHash(field(sim.d, 'spec', 'template'));
  assert.equal(rs.metadata.name, `web-${hash}`);
  assert.deepEqual(rs.metadata.labels, { app: 'web', 'pod-template-hash': hash });
  assert.deepEqual(field(rs, 'spec', 'selector'), { matchLabels: { app: 'web', 'pod-template-hash': hash } });
  assert.equal(field(rs, 'spec', 'template', 'metadata', 'labels', 'pod-template-hash'), hash);
  assert.deepEqual(rs.metadata.annotations, { [REVISION]: '1', [DESIRED_REPLICAS]: '3', [MAX_REPLICAS]: '4' });
  assert.deepEqual(rs.metadata.ownerReferences, [ref('Deployment', 'web', 'uid-d')]);
  assert.equal(replicas(rs), 3);
  assert.deepEqual(actions.map((a) => `${a.verb} ${a.resource}`), ['create apps/v1/replicasets', 'update apps/v1/deployments', 'updateStatus apps/v1/deployments']);
  assert.equal(sim.d.metadata.annotations?.[REVISION], '1');
  assert.equal(sim.cond('Progressing')?.reason, 'NewReplicaSetCreated');
  assert.equal(sim.cond('Progressing')?.message, `Created new replica set "web-${hash}"`);
  assert.equal(sim.cond('Available')?.reason, 'MinimumReplicasUnavailable');

  // pods come up: complete, with the conditions kubectl rollout status reads
  sim.step();
  sim.step();
  assert.deepEqual(
    { ...sim.status(), conditions: undefined },
    { observedGeneration: 1, replicas: 3, updatedReplicas: 3, readyReplicas: 3, availableReplicas: 3, conditions: undefined },
  );
  assert.deepEqual(((sim.status()['conditions'] as Condition[]) ?? []).map((c) => `${c.type}=${c.status}/${c.reason}`), [
    'Available=True/MinimumReplicasAvailable',
    'Progressing=True/NewReplicaSetAvailable',
  ]);
  assert.equal(sim.cond('Progressing')?.message, `ReplicaSet "web-${hash}" has successfully progressed.`);
  // steady state: no writes
  assert.deepEqual(sim.step(), []);
});

test('rolling update, maxSurge 1 / maxUnavailable 1, step by step', () => {
  const sim = new Sim(deployment({ replicas: 4, image: 'v1', strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 1 } } }));
  sim.step();
  sim.step();
  assert.deepEqual(sim.sizes(), [4]);
  sim.setImage('v2');
  // new pods stay unavailable until released
  let hold = true;
  const avail = (rs: KObject) => (hold && revision(rs) === 2 ? Number(field(rs, 'status', 'availableReplicas') ?? 0) : replicas(rs));
  const steps: number[][] = [];
  const run = () => {
    sim.step(avail);
    steps.push(sim.sizes());
  };
  run(); // create new at 1 (surge), scale old 4→3 (one unavailable allowed)
  run(); // new 1→2 while the total stays at 5
  run(); // blocked: 2 new pods unavailable
  hold = false;
  sim.kubelet(avail);
  run(); // new pods available: old 3→1
  run(); // new 2→4
  run(); // old 1→0
  run(); // done
  assert.deepEqual(steps, [[1, 3], [2, 3], [2, 3], [2, 1], [4, 1], [4, 0], [4, 0]]);
  assert.equal(sim.cond('Progressing')?.reason, 'NewReplicaSetAvailable');
  assert.deepEqual(
    ['replicas', 'updatedReplicas', 'availableReplicas', 'unavailableReplicas'].map((k) => sim.status()[k]),
    [4, 4, 4, undefined],
  );
  assert.equal(sim.d.metadata.annotations?.[REVISION], '2');
});

test('mid-rollout status: the numbers kubectl rollout status prints', () => {
  const sim = new Sim(deployment({ replicas: 4, image: 'v1', strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } } }));
  sim.step();
  sim.step();
  sim.setImage('v2');
  sim.step((rs) => (revision(rs) === 2 ? 0 : replicas(rs)));
  sim.step((rs) => (revision(rs) === 2 ? 0 : replicas(rs)));
  assert.deepEqual(sim.sizes(), [1, 4]);
  const s = sim.status();
  assert.deepEqual([s['observedGeneration'], s['replicas'], s['updatedReplicas'], s['availableReplicas'], s['unavailableReplicas']], [2, 5, 1, 4, 1]);
  assert.equal(sim.cond('Progressing')?.reason, 'ReplicaSetUpdated');
  assert.equal(sim.cond('Available')?.status, 'True');
});

test('Recreate: old pods go first, then the new ReplicaSet at full size', () => {
  const sim = new Sim(deployment({ replicas: 3, image: 'v1', strategy: { type: 'Recreate' } }));
  sim.step();
  sim.step();
  sim.setImage('v2');
  sim.step(); // scale old to 0
  assert.deepEqual(sim.sizes(), [0]);
  // an old pod is still running: wait
  const oldRS = sim.rss[0]!;
  sim.pods = [{ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'default', ownerReferences: [ref('ReplicaSet', oldRS.metadata.name!, oldRS.metadata.uid!)] }, status: { phase: 'Running' } }];
  sim.step();
  assert.equal(sim.rss.length, 1);
  sim.pods = [];
  sim.step();
  assert.deepEqual(sim.sizes(), [3, 0]);
});

test('scaling mid-rollout is proportional across ReplicaSets', () => {
  const sim = new Sim(deployment({ replicas: 4, image: 'v1', strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 1 } } }));
  sim.step();
  sim.step();
  sim.setImage('v2');
  const noneNew = (rs: KObject) => (revision(rs) === 2 ? 0 : replicas(rs));
  sim.step(noneNew);
  sim.step(noneNew);
  assert.deepEqual(sim.sizes(), [2, 3]);
  sim.setReplicas(8); // allowed 9, 4 to add: old 3·9/5≈5 (+2), new 2·9/5≈4 (+2)
  sim.step(noneNew);
  assert.deepEqual(sim.sizes(), [4, 5]);
  for (const rs of sim.rss) assert.equal(rs.metadata.annotations?.[DESIRED_REPLICAS], '8');
});

test('revisionHistoryLimit removes the oldest idle ReplicaSets once complete', () => {
  const sim = new Sim(deployment({ replicas: 1, image: 'v1', revisionHistoryLimit: 1 }));
  for (const img of ['v2', 'v3', 'v4']) {
    sim.step();
    sim.step();
    sim.step();
    sim.setImage(img);
  }
  for (let i = 0; i < 5; i++) sim.step();
  assert.deepEqual(sim.rss.map(revision).sort(), [3, 4]);
});

test('rollback to an older template reuses its ReplicaSet and records revision history', () => {
  const sim = new Sim(deployment({ replicas: 1, image: 'v1' }));
  sim.step();
  sim.step();
  sim.setImage('v2');
  for (let i = 0; i < 4; i++) sim.step();
  sim.setImage('v1');
  for (let i = 0; i < 4; i++) sim.step();
  assert.equal(sim.rss.length, 2);
  const v1 = sim.rss.find((r) => field(r, 'spec', 'template', 'spec', 'containers', '0', 'image') === 'v1')!;
  assert.equal(v1.metadata.annotations?.[REVISION], '3');
  assert.equal(v1.metadata.annotations?.['deployment.kubernetes.io/revision-history'], '1');
  assert.deepEqual(sim.sizes(), [1, 0]);
});

test('progress deadline: no progress for progressDeadlineSeconds times out', () => {
  const d = deployment({ replicas: 1, image: 'v1', progressDeadlineSeconds: 60 });
  const sim = new Sim(d);
  sim.step(() => 0);
  sim.step(() => 0);
  const cond = sim.cond('Progressing')!;
  assert.equal(deploymentWakeup(sim.d, sim.clock), Date.parse(cond.lastUpdateTime!) + 61_000);
  sim.clock += 61_000;
  sim.step(() => 0);
  assert.equal(sim.cond('Progressing')?.status, 'False');
  assert.equal(sim.cond('Progressing')?.reason, 'ProgressDeadlineExceeded');
  assert.match(sim.cond('Progressing')!.message!, /has timed out progressing\.$/);
  assert.equal(sim.cond('Progressing')?.lastTransitionTime, at((sim.clock - T0) / 1000));
});

test('paused: Progressing Unknown/DeploymentPaused, template changes wait', () => {
  const sim = new Sim(deployment({ replicas: 2, image: 'v1' }));
  sim.step();
  sim.step();
  (sim.d['spec'] as Obj)['paused'] = true;
  sim.setImage('v2');
  sim.step();
  assert.equal(sim.rss.length, 1);
  assert.equal(sim.cond('Progressing')?.status, 'Unknown');
  assert.equal(sim.cond('Progressing')?.reason, 'DeploymentPaused');
  (sim.d['spec'] as Obj)['paused'] = false;
  sim.step();
  assert.equal(sim.rss.length, 2);
});

test('a name collision bumps status.collisionCount instead of adopting the stranger', () => {
  const d = deployment({ replicas: 1, image: 'v1' });
  const hash = computeHash(field(d, 'spec', 'template'));
  const stranger: KObject = {
    apiVersion: 'apps/v1', kind: 'ReplicaSet',
    metadata: { name: `web-${hash}`, namespace: 'default', uid: 'x', labels: { other: 'x' } },
    spec: { replicas: 0, selector: { matchLabels: { other: 'x' } }, template: { metadata: { labels: { other: 'x' } }, spec: { containers: [] } } },
  };
  const actions = reconcileDeployment({ deployment: d, replicaSets: [stranger], pods: [] }, T0);
  assert.deepEqual(actions.map((a) => a.verb), ['updateStatus']);
  assert.equal(actions[0]!.verb === 'updateStatus' && (actions[0]!.object['status'] as Obj)['collisionCount'], 1);
});
