/**
 * The enroller against fake effects: a fake "kernel" (which netns exist, which IPs they hold, where
 * rules are, which listeners are open) records every call, and can block or fail any step. Each
 * test bounds its waits.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Logger } from 'pino';
import type { CniPodRequest } from '../../api/cni.js';
import type { PodObject } from '../../state/objects.js';
import { CniTryAgain } from '../cni-server.js';
import type { EnrolmentMetrics } from '../metrics.js';
import { Enroller, type EnrolEffects, type EnrollerOptions, type PodRef, type ProxyHandle } from './enroller.js';

const NODE = 'node-1';
const AMBIENT = { 'ambit.dev/dataplane-mode': 'ambient' };
const TIMEOUT = 5000;

type Op = 'find' | 'apply' | 'remove' | 'has' | 'open' | 'probe';

class Gate {
  private release!: () => void;
  readonly opened = new Promise<void>((r) => (this.release = r));
  open(): void {
    this.release();
  }
}

/** A fake node: netns paths by IP, rules per netns, listeners per netns, with call log, gates and failures. */
class FakeNode implements EnrolEffects {
  readonly log: string[] = [];
  readonly netnsByIp = new Map<string, string>();
  /** netns that exist (as the agent sees them) */
  readonly netns = new Set<string>();
  /** netns → how many times our rules were applied (idempotent: rules are present or not) */
  readonly applies = new Map<string, number>();
  readonly rules = new Set<string>();
  readonly listeners = new Map<string, { closed: boolean }[]>();
  readonly probeSets: string[][] = [];
  readonly gates = new Map<Op, Gate>();
  readonly failures = new Map<Op, number>();
  inflight = 0;
  maxInflight = 0;
  delayMs = 0;
  lookupPod?: (namespace: string, name: string) => Promise<PodObject | undefined>;

  addPodNetns(name: string, ips: string[], withRules = false): string {
    const path = `/agent/netns/${name}`;
    this.netns.add(path);
    for (const ip of ips) this.netnsByIp.set(ip, path);
    if (withRules) this.rules.add(path);
    return path;
  }

  private async step(op: Op, what: string): Promise<void> {
    this.log.push(`${op} ${what}`);
    this.inflight++;
    this.maxInflight = Math.max(this.maxInflight, this.inflight);
    try {
      if (this.delayMs) await sleep(this.delayMs);
      await this.gates.get(op)?.opened;
      const left = this.failures.get(op) ?? 0;
      if (left > 0) {
        this.failures.set(op, left - 1);
        throw new Error(`injected ${op} failure`);
      }
    } finally {
      this.inflight--;
    }
  }

  async findNetns(pod: PodRef, hint?: string): Promise<string | undefined> {
    await this.step('find', `${pod.name}${hint ? ` ${hint}` : ''}`);
    if (hint) {
      const path = `/agent/netns/${hint.split('/').pop()}`;
      if (this.netns.has(path)) return path;
    }
    for (const ip of pod.ips) {
      const p = this.netnsByIp.get(ip);
      if (p && this.netns.has(p)) return p;
    }
    return undefined;
  }
  async applyRedirection(path: string, opts?: { freshNetns?: boolean }): Promise<void> {
    if (opts?.freshNetns) this.log.push(`fresh ${path}`);
    await this.step('apply', path);
    this.applies.set(path, (this.applies.get(path) ?? 0) + 1);
    this.rules.add(path);
    this.log.push(`applied ${path}`);
  }
  async removeRedirection(path: string): Promise<void> {
    await this.step('remove', path);
    this.rules.delete(path);
    this.log.push(`removed ${path}`);
  }
  async hasRedirection(path: string): Promise<boolean> {
    await this.step('has', path);
    return this.rules.has(path);
  }
  async openProxy(path: string): Promise<ProxyHandle> {
    await this.step('open', path);
    const l = { closed: false };
    this.listeners.set(path, [...(this.listeners.get(path) ?? []), l]);
    return {
      close: async () => {
        l.closed = true;
        this.log.push(`close ${path}`);
      },
    };
  }
  /** every sync's options, in order */
  readonly probeFull: boolean[] = [];
  async syncProbeSnat(ips: string[], opts?: { full?: boolean }): Promise<void> {
    await this.step('probe', ips.join(','));
    this.probeSets.push([...ips]);
    this.probeFull.push(opts?.full === true);
  }
  openListeners(path: string): number {
    return (this.listeners.get(path) ?? []).filter((l) => !l.closed).length;
  }
  count(prefix: string): number {
    return this.log.filter((l) => l.startsWith(prefix)).length;
  }
  get lastProbeSet(): string[] | undefined {
    return this.probeSets.at(-1);
  }
}

/** A logger that keeps the objects of info lines, enough for the enroller's "pod enrolled" line. */
function fakeLog(): { log: Logger; infos: { msg: string; obj: Record<string, unknown> }[] } {
  const infos: { msg: string; obj: Record<string, unknown> }[] = [];
  const log = {
    info: (obj: Record<string, unknown>, msg: string) => infos.push({ msg, obj }),
    debug: () => {},
    warn: () => {},
    error: () => {},
    child: () => log,
  };
  return { log: log as unknown as Logger, infos };
}

class FakeMetrics implements EnrolmentMetrics {
  enrolled = 0;
  failures = new Map<string, number>();
  programming: string[] = [];
  reconciles = 0;
  setEnrolledPods(n: number): void {
    this.enrolled = n;
  }
  observeRuleProgramming(operation: string): void {
    this.programming.push(operation);
  }
  enrolmentFailure(reason: string): void {
    this.failures.set(reason, (this.failures.get(reason) ?? 0) + 1);
  }
  observeReconcile(): void {
    this.reconciles++;
  }
}

function pod(name: string, ip: string | undefined, over: { ns?: string; labels?: Record<string, string>; phase?: string; uid?: string; node?: string; hostNetwork?: boolean } = {}): PodObject {
  return {
    metadata: { name, namespace: over.ns ?? 'app', uid: over.uid ?? `uid-${name}`, labels: over.labels ?? {} },
    spec: { nodeName: over.node ?? NODE, ...(over.hostNetwork ? { hostNetwork: true } : {}) },
    status: { phase: over.phase ?? (ip ? 'Running' : 'Pending'), ...(ip ? { podIP: ip, podIPs: [{ ip }] } : {}) },
  };
}

function cniReq(name: string, ip: string, netns: string, over: { ns?: string; uid?: string; containerId?: string } = {}): CniPodRequest {
  return {
    pod: { namespace: over.ns ?? 'app', name, uid: over.uid ?? `uid-${name}` },
    containerId: over.containerId ?? `sandbox-${name}`,
    netns,
    ifname: 'eth0',
    ips: ip ? [ip] : [],
    network: 'cbr0',
  };
}

const nsMap = (labels: Record<string, Record<string, string>>) => new Map(Object.entries(labels));

function make(effects: FakeNode, over: Partial<EnrollerOptions> = {}): { enroller: Enroller; metrics: FakeMetrics } {
  const metrics = new FakeMetrics();
  const enroller = new Enroller({
    nodeName: NODE,
    effects,
    debounceMs: 0,
    podWaitMs: 50,
    backoff: { initialMs: 20, maxMs: 200, jitter: 0 },
    metrics,
    ...over,
  });
  return { enroller, metrics };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, pred: () => boolean, ms = TIMEOUT): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

function stateOf(e: Enroller, name: string): string | undefined {
  return e.snapshot().find((p) => p.name === name)?.state;
}

test('CNI ADD before the first reconcile is "try again"', async () => {
  const node = new FakeNode();
  const { enroller } = make(node);
  await assert.rejects(enroller.onCniAdd(cniReq('a', '10.0.0.1', '/var/run/netns/cni-a')), CniTryAgain);
  assert.equal(enroller.ready(), false);
  assert.deepEqual(node.log, []);
});

test('CNI ADD of a pod in an ambient namespace: listeners and rules in the CNI netns; answered only then', async () => {
  const node = new FakeNode();
  const path = node.addPodNetns('cni-a', ['10.0.0.1']);
  const { enroller, metrics } = make(node);
  await enroller.reconcile([pod('a', undefined)], nsMap({ app: AMBIENT }));
  assert.equal(enroller.ready(), true);

  assert.equal(await enroller.onCniAdd(cniReq('a', '10.0.0.1', '/var/run/netns/cni-a')), 'enrolled');
  assert.ok(node.log.includes(`open ${path}`) && node.log.includes(`applied ${path}`), node.log.join(' | '));
  assert.equal(node.openListeners(path), 1);
  assert.deepEqual(node.lastProbeSet, ['10.0.0.1'], 'the probe SNAT covers the IP from the CNI request');
  assert.equal(stateOf(enroller, 'a'), 'enrolled');
  assert.equal(metrics.enrolled, 1);
  assert.deepEqual(metrics.programming, ['apply']);

  // the runtime repeats the ADD: nothing is done twice
  assert.equal(await enroller.onCniAdd(cniReq('a', '10.0.0.1', '/var/run/netns/cni-a')), 'enrolled');
  assert.equal(node.applies.get(path), 1);
  assert.equal(node.count('open'), 1);

  // the watch catches up (status with the IP): still one enrolment
  await enroller.reconcile([pod('a', '10.0.0.1')], nsMap({ app: AMBIENT }));
  assert.equal(node.applies.get(path), 1);
  await enroller.stop();
});

test('the executor hears "fresh netns" only for a CNI sandbox no step has tried yet', async () => {
  const node = new FakeNode();
  const pa = node.addPodNetns('cni-a', ['10.0.9.1']);
  const pb = node.addPodNetns('cni-b', ['10.0.9.2']);
  const pc = node.addPodNetns('cni-c', ['10.0.9.3']);
  const { enroller } = make(node);
  await enroller.reconcile([pod('a', undefined), pod('b', undefined), pod('c', '10.0.9.3')], nsMap({ app: AMBIENT }));
  assert.equal(node.count(`fresh ${pc}`), 0, 'a running pod enrolled by a reconcile: its netns is read first');
  assert.equal(node.applies.get(pc), 1);

  assert.equal(await enroller.onCniAdd(cniReq('a', '10.0.9.1', '/var/run/netns/cni-a')), 'enrolled');
  assert.equal(node.count(`fresh ${pa}`), 1);

  // the first try fails: its retry (and a repeated ADD for the same sandbox) must read what it left
  node.failures.set('apply', 1);
  await assert.rejects(enroller.onCniAdd(cniReq('b', '10.0.9.2', '/var/run/netns/cni-b')), /could not enrol pod app\/b/);
  assert.equal(await enroller.onCniAdd(cniReq('b', '10.0.9.2', '/var/run/netns/cni-b')), 'enrolled');
  assert.deepEqual(node.log.filter((l) => l.endsWith(pb) && (l.startsWith('fresh') || l.startsWith('apply'))), [`fresh ${pb}`, `apply ${pb}`, `apply ${pb}`]);

  // a new sandbox of pod a: a new netns, fresh again
  const pa2 = node.addPodNetns('cni-a2', ['10.0.9.4']);
  assert.equal(await enroller.onCniAdd(cniReq('a', '10.0.9.4', '/var/run/netns/cni-a2', { containerId: 'sandbox-a2' })), 'enrolled');
  assert.equal(node.count(`fresh ${pa2}`), 1);
  await enroller.stop();
});

test('a fresh CNI sandbox gets listeners and rules at once; a running pod gets listeners first', async () => {
  const node = new FakeNode();
  const fresh = node.addPodNetns('cni-f', ['10.0.14.1']);
  const running = node.addPodNetns('cni-r', ['10.0.14.2']);
  const { log, infos } = fakeLog();
  const { enroller, metrics } = make(node, { log });
  await enroller.reconcile([pod('f', undefined)], nsMap({ app: AMBIENT }));

  // CNI ADD: with the listeners held, the rules go in anyway
  let gate = new Gate();
  node.gates.set('open', gate);
  const add = enroller.onCniAdd(cniReq('f', '10.0.14.1', '/var/run/netns/cni-f'));
  await waitFor('the rules applied while the listeners are held', () => node.count(`applied ${fresh}`) === 1);
  assert.equal(node.count(`fresh ${fresh}`), 1);
  gate.open();
  assert.equal(await add, 'enrolled');
  assert.equal(node.openListeners(fresh), 1);
  assert.deepEqual(metrics.programming, ['apply']);
  const line = infos.find((l) => l.msg === 'pod enrolled' && l.obj['netns'] === fresh);
  assert.ok(line, 'a "pod enrolled" line');
  assert.deepEqual(Object.keys(line.obj['stepsMs'] as object), ['netns', 'proxy', 'apply'], 'the keys bench/cni.ts reads');
  assert.equal(line.obj['overlapped'], true);
  const steps = line.obj['stepsMs'] as { proxy: number; apply: number };
  assert.ok(steps.proxy >= steps.apply, `each step has its own time: the held listeners took longer (${JSON.stringify(steps)})`);

  // a reconcile enrols a running pod: with the listeners held, no rule goes in
  gate = new Gate();
  node.gates.set('open', gate);
  const pass = enroller.reconcile([pod('f', '10.0.14.1'), pod('r', '10.0.14.2')], nsMap({ app: AMBIENT }));
  await waitFor('listeners opening', () => node.count(`open ${running}`) === 1);
  await sleep(20);
  assert.equal(node.count(`apply ${running}`), 0, 'rules wait for the listeners');
  gate.open();
  await pass;
  assert.ok(node.log.indexOf(`applied ${running}`) > node.log.indexOf(`open ${running}`));
  assert.equal(infos.find((l) => l.msg === 'pod enrolled' && l.obj['netns'] === running)?.obj['overlapped'], undefined);
  await enroller.stop();
});

test('fresh sandbox, listeners fail while the rules went in: the rules come out, ADD fails, the retry is in order', async () => {
  const node = new FakeNode();
  const path = node.addPodNetns('cni-g', ['10.0.15.1']);
  const { enroller, metrics } = make(node);
  await enroller.reconcile([pod('g', undefined)], nsMap({ app: AMBIENT }));
  node.failures.set('open', 1);
  await assert.rejects(enroller.onCniAdd(cniReq('g', '10.0.15.1', '/var/run/netns/cni-g')), /could not enrol pod app\/g: cannot open the proxy listeners in \/agent\/netns\/cni-g: injected open failure/);
  assert.equal(node.rules.has(path), false, 'no capture into a closed port');
  assert.ok(node.log.indexOf(`removed ${path}`) > node.log.indexOf(`applied ${path}`));
  assert.equal(metrics.failures.get('proxy'), 1);
  assert.equal(stateOf(enroller, 'g'), 'failed');

  // the runtime retries the same sandbox: not fresh any more (read first), listeners before rules
  node.log.length = 0;
  assert.equal(await enroller.onCniAdd(cniReq('g', '10.0.15.1', '/var/run/netns/cni-g')), 'enrolled');
  assert.equal(node.count('fresh'), 0);
  assert.ok(node.log.indexOf(`open ${path}`) < node.log.indexOf(`apply ${path}`), node.log.join(' | '));
  assert.equal(node.openListeners(path), 1);
  assert.equal(node.rules.has(path), true);
  await enroller.stop();
});

test('fresh sandbox, rules fail while the listeners opened: the listeners stay, the retry re-applies only', async () => {
  const node = new FakeNode();
  const path = node.addPodNetns('cni-h', ['10.0.16.1']);
  const { enroller, metrics } = make(node);
  await enroller.reconcile([pod('h', undefined)], nsMap({ app: AMBIENT }));
  node.failures.set('apply', 1);
  await assert.rejects(enroller.onCniAdd(cniReq('h', '10.0.16.1', '/var/run/netns/cni-h')), /cannot apply the redirection in \/agent\/netns\/cni-h/);
  assert.equal(node.openListeners(path), 1);
  assert.equal(metrics.failures.get('apply'), 1);
  assert.equal(await enroller.onCniAdd(cniReq('h', '10.0.16.1', '/var/run/netns/cni-h')), 'enrolled');
  assert.equal(node.count('open'), 1, 'listeners opened once');
  assert.equal(node.count(`fresh ${path}`), 1, 'only the first try was fresh');
  assert.equal(node.count('remove'), 0);
  await enroller.stop();
});

test('fresh sandbox, both fail: a listeners failure naming both, rules still counted as maybe present', async () => {
  const node = new FakeNode();
  const path = node.addPodNetns('cni-i', ['10.0.17.1']);
  const { enroller, metrics } = make(node);
  await enroller.reconcile([pod('i', undefined)], nsMap({ app: AMBIENT }));
  node.failures.set('open', 1);
  node.failures.set('apply', 1);
  await assert.rejects(enroller.onCniAdd(cniReq('i', '10.0.17.1', '/var/run/netns/cni-i')), /injected open failure; applying the redirection failed too: injected apply failure/);
  assert.equal(metrics.failures.get('proxy'), 1);
  assert.equal(node.count('remove'), 0, 'nothing went in that needs taking out');
  assert.deepEqual(node.lastProbeSet, ['10.0.17.1']);
  // un-enrolled now: the rules that may be there are removed
  await enroller.reconcile([pod('i', '10.0.17.1')], nsMap({ app: {} }));
  await waitFor('removed', () => stateOf(enroller, 'i') === 'removed');
  assert.equal(node.count(`remove ${path}`), 1);
  await enroller.stop();
});

test("CNI ADD programs the host's probe SNAT while the rules go in, and answers after both", async () => {
  const node = new FakeNode();
  const path = node.addPodNetns('cni-p', ['10.0.8.1']);
  const { enroller } = make(node);
  await enroller.reconcile([pod('p', undefined)], nsMap({ app: AMBIENT }));
  const gate = new Gate();
  node.gates.set('apply', gate);
  let answered = false;
  const add = enroller.onCniAdd(cniReq('p', '10.0.8.1', '/var/run/netns/cni-p')).then((r) => ((answered = true), r));
  await waitFor('the probe SNAT synced while the apply is held', () => node.probeSets.some((s) => s.includes('10.0.8.1')));
  assert.equal(node.count(`applied ${path}`), 0);
  assert.equal(answered, false);
  gate.open();
  assert.equal(await add, 'enrolled');
  await enroller.stop();
});

test("the periodic full probe SNAT sync uses the enroller's set (a pod mid-ADD included) and runs even when the set is unchanged", async () => {
  const node = new FakeNode();
  node.addPodNetns('cni-p', ['10.0.8.1']);
  const { enroller } = make(node);
  await enroller.reconcile([pod('p', undefined)], nsMap({ app: AMBIENT }));
  const gate = new Gate();
  node.gates.set('apply', gate);
  const add = enroller.onCniAdd(cniReq('p', '10.0.8.1', '/var/run/netns/cni-p'));
  await waitFor('the ADD has synced the probe set', () => node.probeSets.some((s) => s.includes('10.0.8.1')));
  const before = node.probeSets.length;
  await enroller.refreshProbes(); // while the pod is still being enrolled (its apply is held)
  assert.deepEqual(node.probeSets.at(-1), ['10.0.8.1'], 'the pod whose ADD is under way stays in the set');
  assert.equal(node.probeFull.at(-1), true, 'a full sync');
  assert.equal(node.probeSets.length, before + 1, 'run although the set did not change');
  gate.open();
  assert.equal(await add, 'enrolled');
  await enroller.stop();
});

test('CNI ADD of pods outside the mesh returns at once and touches nothing', async () => {
  const node = new FakeNode();
  node.addPodNetns('cni-x', ['10.0.0.9']);
  const { enroller } = make(node, { podWaitMs: 5000 });
  await enroller.reconcile(
    [pod('optout', undefined, { labels: { 'ambit.dev/dataplane-mode': 'none' } }), pod('hostnet', undefined, { hostNetwork: true })],
    nsMap({ app: AMBIENT, plain: {} }),
  );
  const t0 = Date.now();
  // a namespace that is not ambient decides without waiting for the pod
  assert.equal(await enroller.onCniAdd(cniReq('unknown-pod', '10.0.0.9', '/var/run/netns/cni-x', { ns: 'plain' })), 'not-enrolled');
  assert.equal(await enroller.onCniAdd(cniReq('optout', '10.0.0.9', '/var/run/netns/cni-x')), 'not-enrolled');
  assert.equal(await enroller.onCniAdd(cniReq('hostnet', '10.0.0.9', '/var/run/netns/cni-x')), 'not-enrolled');
  assert.ok(Date.now() - t0 < 1000, 'no waiting');
  assert.deepEqual(node.log.filter((l) => !l.startsWith('probe')), []);
  assert.deepEqual(enroller.snapshot(), []);
  await enroller.stop();
});

test('CNI ADD waits briefly for the watch to deliver the pod, else "try again" (or asks lookupPod)', async () => {
  const node = new FakeNode();
  node.addPodNetns('cni-late', ['10.0.0.2']);
  const { enroller } = make(node, { podWaitMs: 2000 });
  await enroller.reconcile([], nsMap({ app: AMBIENT }));
  const add = enroller.onCniAdd(cniReq('late', '10.0.0.2', '/var/run/netns/cni-late'));
  await sleep(20);
  assert.equal(node.count('apply'), 0);
  void enroller.reconcile([pod('late', undefined)], nsMap({ app: AMBIENT }));
  assert.equal(await add, 'enrolled');

  const quick = make(new FakeNode(), { podWaitMs: 30 }).enroller;
  await quick.reconcile([], nsMap({ app: AMBIENT }));
  await assert.rejects(quick.onCniAdd(cniReq('ghost', '10.0.0.3', '/var/run/netns/cni-g')), (err: unknown) => err instanceof CniTryAgain && /not in ambit-agent's watch/.test((err as Error).message));
  await assert.rejects(quick.onCniAdd(cniReq('p', '10.0.0.3', '/var/run/netns/cni-g', { ns: 'new-ns' })), (err: unknown) => err instanceof CniTryAgain && /namespace new-ns/.test((err as Error).message));

  const viaApi = new FakeNode();
  viaApi.addPodNetns('cni-l', ['10.0.0.4']);
  viaApi.lookupPod = async (_ns: string, name: string) => (name === 'looked' ? pod('looked', undefined) : undefined);
  const withLookup = make(viaApi, { podWaitMs: 10 }).enroller;
  await withLookup.reconcile([], nsMap({ app: AMBIENT }));
  assert.equal(await withLookup.onCniAdd(cniReq('looked', '10.0.0.4', '/var/run/netns/cni-l')), 'enrolled');
  await Promise.all([enroller.stop(), quick.stop(), withLookup.stop()]);
});

test('labelling a namespace enrols its running pods once, even with overlapping reconciles and a CNI ADD', async () => {
  const node = new FakeNode();
  const names = ['a', 'b', 'c'];
  const paths = names.map((n, i) => node.addPodNetns(`cni-${n}`, [`10.0.1.${i + 1}`]));
  const pods = names.map((n, i) => pod(n, `10.0.1.${i + 1}`));
  const { enroller, metrics } = make(node);
  await enroller.reconcile(pods, nsMap({ app: {} }));
  assert.equal(node.count('apply'), 0);
  assert.deepEqual(enroller.snapshot(), [], 'first pass found no leftovers and keeps no entries for plain pods');

  const gate = new Gate();
  node.gates.set('apply', gate);
  const passes = [enroller.reconcile(pods, nsMap({ app: AMBIENT }))];
  await waitFor('applies started', () => node.count('apply') === 3);
  // more watch events and a CNI ADD for one of them while the applies are in flight
  passes.push(enroller.reconcile(pods, nsMap({ app: AMBIENT })), enroller.reconcile([...pods], nsMap({ app: AMBIENT, other: {} })));
  const add = enroller.onCniAdd(cniReq('a', '10.0.1.1', '/var/run/netns/cni-a'));
  gate.open();
  await Promise.all(passes);
  assert.equal(await add, 'enrolled');
  for (const p of paths) {
    assert.equal(node.applies.get(p), 1, `${p} applied once`);
    assert.equal(node.openListeners(p), 1, `${p} one set of listeners`);
  }
  assert.equal(metrics.enrolled, 3);
  assert.deepEqual(node.lastProbeSet, ['10.0.1.1', '10.0.1.2', '10.0.1.3']);
  // the probe SNAT was programmed before any rule went in
  assert.ok(node.log.indexOf('probe 10.0.1.1,10.0.1.2,10.0.1.3') < node.log.findIndex((l) => l.startsWith('applied')));
  await enroller.stop();
});

test('removing the label removes the rules, then closes the listeners; the probe set shrinks', async () => {
  const node = new FakeNode();
  const pa = node.addPodNetns('cni-a', ['10.0.2.1']);
  const pb = node.addPodNetns('cni-b', ['10.0.2.2']);
  const pods = [pod('a', '10.0.2.1'), pod('b', '10.0.2.2')];
  const { enroller, metrics } = make(node);
  await enroller.reconcile(pods, nsMap({ app: AMBIENT }));
  assert.equal(metrics.enrolled, 2);

  await enroller.reconcile(pods, nsMap({ app: {} }));
  for (const p of [pa, pb]) {
    assert.equal(node.rules.has(p), false);
    assert.equal(node.openListeners(p), 0);
    assert.ok(node.log.indexOf(`removed ${p}`) < node.log.indexOf(`close ${p}`), 'rules out before listeners close');
  }
  assert.deepEqual(enroller.snapshot().map((s) => [s.name, s.want, s.state]), [['a', 'not-enrolled', 'removed'], ['b', 'not-enrolled', 'removed']]);
  assert.deepEqual(node.lastProbeSet, []);
  assert.equal(metrics.enrolled, 0);
  assert.deepEqual(metrics.programming.sort(), ['apply', 'apply', 'remove', 'remove']);

  // label back: enrolled again
  await enroller.reconcile(pods, nsMap({ app: AMBIENT }));
  assert.equal(node.applies.get(pa), 2);
  assert.equal(node.openListeners(pa), 1);
  await enroller.stop();
});

test('a pod labelled none opts out on its own', async () => {
  const node = new FakeNode();
  const pa = node.addPodNetns('cni-a', ['10.0.3.1']);
  const pb = node.addPodNetns('cni-b', ['10.0.3.2']);
  const { enroller } = make(node);
  await enroller.reconcile([pod('a', '10.0.3.1'), pod('b', '10.0.3.2')], nsMap({ app: AMBIENT }));
  await enroller.reconcile([pod('a', '10.0.3.1', { labels: { 'ambit.dev/dataplane-mode': 'none' } }), pod('b', '10.0.3.2')], nsMap({ app: AMBIENT }));
  assert.equal(node.rules.has(pa), false);
  assert.equal(node.openListeners(pa), 0);
  assert.equal(node.rules.has(pb), true);
  assert.equal(node.openListeners(pb), 1);
  assert.equal(enroller.snapshot().find((s) => s.name === 'a')?.reason, 'opted-out');
  assert.deepEqual(node.lastProbeSet, ['10.0.3.2']);
  await enroller.stop();
});

test('a deleted pod: listeners closed, no rule removal (its netns is gone), forgotten, probe set updated', async () => {
  const node = new FakeNode();
  const pa = node.addPodNetns('cni-a', ['10.0.4.1']);
  node.addPodNetns('cni-b', ['10.0.4.2']);
  const { enroller } = make(node);
  await enroller.reconcile([pod('a', '10.0.4.1'), pod('b', '10.0.4.2')], nsMap({ app: AMBIENT }));
  node.netns.delete(pa);
  await enroller.reconcile([pod('b', '10.0.4.2')], nsMap({ app: AMBIENT }));
  assert.equal(node.openListeners(pa), 0);
  assert.equal(node.count('remove'), 0);
  assert.deepEqual(enroller.snapshot().map((s) => s.name), ['b']);
  assert.deepEqual(node.lastProbeSet, ['10.0.4.2']);

  // a finished pod is forgotten the same way
  await enroller.reconcile([pod('b', '10.0.4.2', { phase: 'Succeeded' })], nsMap({ app: AMBIENT }));
  assert.deepEqual(enroller.snapshot(), []);
  assert.equal(node.count('remove'), 0);
  assert.deepEqual(node.lastProbeSet, []);
  await enroller.stop();
});

test('CNI DEL closes the listeners and forgets; reconciles do not re-enrol it by scan; a DEL of an older sandbox is ignored', async () => {
  const node = new FakeNode();
  const p1 = node.addPodNetns('cni-1', ['10.0.5.1']);
  const { enroller } = make(node);
  await enroller.reconcile([pod('a', undefined)], nsMap({ app: AMBIENT }));
  assert.equal(await enroller.onCniAdd(cniReq('a', '10.0.5.1', '/var/run/netns/cni-1', { containerId: 's1' })), 'enrolled');

  // the sandbox is recreated: the new ADD moves the pod, the old sandbox's late DEL changes nothing
  const p2 = node.addPodNetns('cni-2', ['10.0.5.2']);
  assert.equal(await enroller.onCniAdd(cniReq('a', '10.0.5.2', '/var/run/netns/cni-2', { containerId: 's2' })), 'enrolled');
  assert.equal(node.openListeners(p1), 0, 'old listeners closed');
  assert.equal(node.openListeners(p2), 1);
  await enroller.onCniDel(cniReq('a', '', '', { containerId: 's1' }));
  assert.equal(stateOf(enroller, 'a'), 'enrolled');

  await enroller.onCniDel(cniReq('a', '', '', { containerId: 's2' }));
  assert.equal(node.openListeners(p2), 0);
  assert.equal(node.count('remove'), 0);
  assert.deepEqual(enroller.snapshot(), []);
  assert.deepEqual(node.lastProbeSet, []);
  await enroller.onCniDel(cniReq('a', '', '', { containerId: 's2' })); // repeats are fine

  // the pod still shows in the watch with its IP while it goes away: not re-enrolled by scan
  await enroller.reconcile([pod('a', '10.0.5.2')], nsMap({ app: AMBIENT }));
  assert.deepEqual(enroller.snapshot(), []);
  assert.equal(node.applies.get(p2), 1);
  await enroller.stop();
});

test('a CNI request without a uid is matched by name and re-keyed when the watch shows the uid', async () => {
  const node = new FakeNode();
  const path = node.addPodNetns('cni-a', ['10.0.6.1']);
  const { enroller } = make(node);
  await enroller.reconcile([], nsMap({ app: AMBIENT }));
  const add = enroller.onCniAdd(cniReq('a', '10.0.6.1', '/var/run/netns/cni-a', { uid: '' }));
  void enroller.reconcile([pod('a', undefined, { uid: 'u-real' })], nsMap({ app: AMBIENT }));
  assert.equal(await add, 'enrolled');
  await enroller.reconcile([pod('a', '10.0.6.1', { uid: 'u-real' })], nsMap({ app: AMBIENT }));
  assert.deepEqual(enroller.snapshot().map((s) => [s.key, s.state]), [['u-real', 'enrolled']]);
  assert.equal(node.applies.get(path), 1);
  await enroller.stop();
});

test('after a restart: re-applies on enrolled pods (no duplicates), reopens listeners, removes leftovers of non-enrolled pods', async () => {
  const node = new FakeNode();
  // the kernel as the previous agent left it
  const pEnrolled = node.addPodNetns('cni-e', ['10.0.7.1'], true);
  const pLeft = node.addPodNetns('cni-l', ['10.0.7.2'], true); // namespace un-labelled while the agent was down
  const pOpt = node.addPodNetns('cni-o', ['10.0.7.3'], true); // opted out while the agent was down
  const pClean = node.addPodNetns('cni-c', ['10.0.7.4']);
  const pods = [
    pod('e', '10.0.7.1'),
    pod('l', '10.0.7.2', { ns: 'was-ambient' }),
    pod('o', '10.0.7.3', { labels: { 'ambit.dev/dataplane-mode': 'none' } }),
    pod('c', '10.0.7.4', { ns: 'plain' }),
    pod('pending', undefined, { ns: 'plain' }),
    pod('h', '10.250.0.10', { ns: 'plain', hostNetwork: true }),
  ];
  const { enroller } = make(node);
  assert.equal(enroller.ready(), false);
  await enroller.reconcile(pods, nsMap({ app: AMBIENT, 'was-ambient': {}, plain: {} }));
  assert.equal(enroller.ready(), true);

  assert.equal(node.rules.has(pEnrolled), true);
  assert.equal(node.applies.get(pEnrolled), 1, 're-applied once (idempotent)');
  assert.equal(node.openListeners(pEnrolled), 1);
  assert.equal(node.rules.has(pLeft), false, 'leftover removed');
  assert.equal(node.rules.has(pOpt), false, 'leftover of an opted-out pod removed');
  assert.equal(node.count(`remove ${pClean}`), 0, 'a clean pod is only inspected');
  assert.equal(node.count(`has ${pClean}`), 1);
  assert.equal(node.count('has /agent/netns/'), 3, 'host-network and IP-less pods are not inspected');
  assert.deepEqual(enroller.snapshot().map((s) => [s.name, s.state]), [['e', 'enrolled']]);
  assert.deepEqual(node.lastProbeSet, ['10.0.7.1']);

  // later passes do not inspect again
  await enroller.reconcile(pods, nsMap({ app: AMBIENT, 'was-ambient': {}, plain: {} }));
  assert.equal(node.count('has'), 3);
  assert.equal(node.applies.get(pEnrolled), 1);
  await enroller.stop();
});

test('failures are retried with backoff and counted; reconciles do not cut the backoff short', async () => {
  const node = new FakeNode();
  const path = node.addPodNetns('cni-a', ['10.0.8.1']);
  node.failures.set('apply', 2);
  const { enroller, metrics } = make(node, { backoff: { initialMs: 40, maxMs: 1000, jitter: 0 } });
  const t0 = Date.now();
  await enroller.reconcile([pod('a', '10.0.8.1')], nsMap({ app: AMBIENT }));
  assert.equal(enroller.ready(), true, 'a failing pod does not hold readiness');
  const snap = enroller.snapshot()[0]!;
  assert.equal(snap.state, 'failed');
  assert.match(snap.lastError ?? '', /cannot apply the redirection in \/agent\/netns\/cni-a: injected apply failure/);
  assert.ok(snap.retryInMs !== undefined && snap.retryInMs <= 40);
  for (let i = 0; i < 5; i++) await enroller.reconcile([pod('a', '10.0.8.1')], nsMap({ app: AMBIENT }));
  assert.equal(node.count('apply'), 1, 'reconciles leave the retry to the backoff');

  await waitFor('enrolled after retries', () => stateOf(enroller, 'a') === 'enrolled');
  assert.ok(Date.now() - t0 >= 40 + 80 - 5, 'waited 40 ms then 80 ms');
  assert.equal(node.count('apply'), 3);
  assert.equal(node.count('open'), 1, 'listeners stay open across retries');
  assert.equal(metrics.failures.get('apply'), 2);
  assert.equal(enroller.snapshot()[0]!.attempts, 0);
  assert.equal(node.applies.get(path), 1);

  // a netns that cannot be found is its own failure reason
  await enroller.reconcile([pod('a', '10.0.8.1'), pod('ghost', '10.0.8.9')], nsMap({ app: AMBIENT }));
  assert.equal(stateOf(enroller, 'ghost'), 'failed');
  assert.equal(metrics.failures.get('netns-not-found'), 1);
  assert.match(enroller.snapshot().find((s) => s.name === 'ghost')!.lastError!, /no network namespace visible to ambit-agent holds the pod IPs 10\.0\.8\.9/);

  // a CNI ADD that fails is answered with the error
  node.failures.set('open', 1);
  node.addPodNetns('cni-n', ['10.0.8.5']);
  await enroller.reconcile([pod('a', '10.0.8.1'), pod('n', undefined)], nsMap({ app: AMBIENT }));
  await assert.rejects(enroller.onCniAdd(cniReq('n', '10.0.8.5', '/var/run/netns/cni-n')), /could not enrol pod app\/n: cannot open the proxy listeners/);
  assert.equal(metrics.failures.get('proxy'), 1);
  await enroller.stop();
});

test('a failed un-enrolment keeps the listeners (rules still point at them) and is retried', async () => {
  const node = new FakeNode();
  const path = node.addPodNetns('cni-a', ['10.0.9.1']);
  const { enroller, metrics } = make(node);
  await enroller.reconcile([pod('a', '10.0.9.1')], nsMap({ app: AMBIENT }));
  node.failures.set('remove', 1);
  await enroller.reconcile([pod('a', '10.0.9.1')], nsMap({ app: {} }));
  assert.equal(stateOf(enroller, 'a'), 'failed');
  assert.equal(node.openListeners(path), 1, 'still listening while the rules are in');
  assert.deepEqual(node.lastProbeSet, ['10.0.9.1'], 'probes stay SNATed while the rules are in');
  await waitFor('removed on retry', () => stateOf(enroller, 'a') === 'removed');
  assert.equal(node.openListeners(path), 0);
  assert.equal(metrics.failures.get('remove'), 1);
  await waitFor('probe set emptied', () => node.lastProbeSet?.length === 0);
  await enroller.stop();
});

test('a failed probe SNAT sync is counted and retried', async () => {
  const node = new FakeNode();
  node.addPodNetns('cni-a', ['10.0.10.1']);
  node.failures.set('probe', 1);
  const { enroller, metrics } = make(node);
  await enroller.reconcile([pod('a', '10.0.10.1')], nsMap({ app: AMBIENT }));
  await waitFor('probe SNAT programmed', () => node.lastProbeSet?.join() === '10.0.10.1');
  assert.equal(metrics.failures.get('probe-snat'), 1);
  await enroller.stop();
});

test('at most `concurrency` pods are worked on at once', async () => {
  const node = new FakeNode();
  node.delayMs = 3;
  const pods: PodObject[] = [];
  for (let i = 1; i <= 20; i++) {
    node.addPodNetns(`cni-${i}`, [`10.0.11.${i}`]);
    pods.push(pod(`p${i}`, `10.0.11.${i}`));
  }
  const { enroller, metrics } = make(node, { concurrency: 3 });
  // inflight counts every effect; the probe sync runs outside the pods' limit, so measure pod steps only
  let podInflight = 0;
  let podMax = 0;
  const wrap = <A extends unknown[], R>(fn: (...a: A) => Promise<R>) => async (...a: A) => {
    podInflight++;
    podMax = Math.max(podMax, podInflight);
    try {
      return await fn(...a);
    } finally {
      podInflight--;
    }
  };
  const original = { find: node.findNetns.bind(node), open: node.openProxy.bind(node), apply: node.applyRedirection.bind(node) };
  node.findNetns = wrap(original.find);
  node.openProxy = wrap(original.open);
  node.applyRedirection = wrap(original.apply);
  await enroller.reconcile(pods, nsMap({ app: AMBIENT }));
  assert.equal(metrics.enrolled, 20);
  assert.equal(podMax, 3, `at most 3 at once, and the limit is used (saw ${podMax})`);
  await enroller.stop();
});

test("one pod's steps are serialised: a CNI DEL that arrives during the ADD's apply waits for it", async () => {
  const node = new FakeNode();
  const path = node.addPodNetns('cni-a', ['10.0.12.1']);
  const { enroller } = make(node);
  await enroller.reconcile([pod('a', undefined)], nsMap({ app: AMBIENT }));
  const gate = new Gate();
  node.gates.set('apply', gate);
  const add = enroller.onCniAdd(cniReq('a', '10.0.12.1', '/var/run/netns/cni-a'));
  const addOutcome = add.then(
    (d) => d,
    (e: Error) => e.message,
  );
  await waitFor('apply started', () => node.count('apply') === 1);
  let delDone = false;
  const del = enroller.onCniDel(cniReq('a', '', '')).then(() => (delDone = true));
  await sleep(30);
  assert.equal(delDone, false, 'DEL waits');
  assert.equal(node.count('close'), 0, 'listeners untouched during the apply');
  gate.open();
  await del;
  assert.ok(node.log.indexOf(`applied ${path}`) < node.log.indexOf(`close ${path}`), node.log.join(' | '));
  assert.equal(node.openListeners(path), 0);
  assert.deepEqual(enroller.snapshot(), []);
  // the ADD's sandbox was released before it could be answered: the runtime sees an error
  assert.match(String(await addOutcome), /released while enrolling/);
  await enroller.stop();
});

test('snapshot shows each pod for the admin endpoint', async () => {
  const node = new FakeNode();
  node.addPodNetns('cni-a', ['10.0.13.1']);
  const { enroller } = make(node);
  await enroller.reconcile([pod('a', undefined)], nsMap({ app: AMBIENT }));
  await enroller.onCniAdd(cniReq('a', '10.0.13.1', '/var/run/netns/cni-a'));
  assert.deepEqual(enroller.snapshot(), [
    {
      key: 'uid-a',
      namespace: 'app',
      name: 'a',
      uid: 'uid-a',
      ips: ['10.0.13.1'],
      want: 'enrolled',
      state: 'enrolled',
      reason: 'enrolled',
      netns: '/agent/netns/cni-a',
      cniNetns: '/var/run/netns/cni-a',
      listening: true,
      attempts: 0,
    },
  ]);
  await enroller.stop({ closeListeners: true });
  assert.equal(node.openListeners('/agent/netns/cni-a'), 0);
});
