import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyDelta, isEmptyDelta } from '../api/delta.js';
import { fixtureSnapshot, fixtureWorkload } from '../api/fixtures.js';
import type { NodeSnapshot as Snapshot, ResourceError } from '../api/types.js';
import { PushHub, type HubOptions, type Outgoing, type PushSink, type Subscription } from './push-hub.js';

/** A fake transport: records what it gets, can refuse more (back-pressure), applies like an agent. */
class FakeAgent implements PushSink {
  received: Outgoing[] = [];
  held: Snapshot | undefined;
  accept = true;
  closed: string | undefined;
  sub!: Subscription;
  constructor(readonly node: string) {}
  send(m: Outgoing): boolean {
    this.received.push(m);
    return this.accept;
  }
  close(code: string, message: string): void {
    this.closed = `${code}: ${message}`;
  }
  /** applies and acknowledges the oldest message received */
  ackOne(errors: ResourceError[] = []): void {
    const m = this.received.shift()!;
    this.held = 'snapshot' in m.message ? m.message.snapshot : applyDelta(this.held!, m.message.delta);
    assert.equal(this.sub.acknowledge(m.version, errors), undefined);
  }
  /** applies and acknowledges until nothing more arrives */
  ackAll(errors: ResourceError[] = []): void {
    while (this.received.length > 0) this.ackOne(errors);
  }
}

function setup(opts: HubOptions = {}) {
  const hub = new PushHub(opts);
  const join = (node: string, resume = '', agent = `agent-${node}`) => {
    const a = new FakeAgent(node);
    a.sub = hub.subscribe({ node, agent }, resume, a);
    return a;
  };
  return { hub, join };
}

const snap = (node: string, ...uids: string[]) => fixtureSnapshot(node, { workloads: uids.map((u) => fixtureWorkload(u, node)) });

test('an agent waits for its node config, then gets the full snapshot', () => {
  const { hub, join } = setup();
  const a = join('n1');
  assert.equal(a.received.length, 0);
  hub.publish(snap('n1', 'u1'));
  assert.equal(a.received.length, 1);
  assert.equal(a.received[0]!.kind, 'snapshot');
  a.ackAll();
  assert.deepEqual(a.held, snap('n1', 'u1'));
});

test('fan-out reaches only the node whose config changed; an unchanged version reaches nobody', () => {
  const { hub, join } = setup();
  for (const n of ['n1', 'n2', 'n3']) hub.publish(snap(n, `${n}-a`));
  const agents = ['n1', 'n1', 'n2', 'n3'].map((n) => join(n));
  agents.forEach((a) => a.ackAll());
  assert.equal(hub.publish(snap('n2', 'n2-a')), false, 'same version');
  assert.ok(agents.every((a) => a.received.length === 0));
  hub.publish(snap('n2', 'n2-a', 'n2-b'));
  assert.deepEqual(agents.map((a) => a.received.length), [0, 0, 1, 0]);
  const d = agents[2]!.received[0]!;
  assert.equal(d.kind, 'delta');
  assert.ok('delta' in d.message);
  assert.deepEqual(Object.keys(d.message.delta.workloads.added), ['n2-b']);
});

test('resume: a known version gets a delta (empty when current); an unknown one the full snapshot', () => {
  const { hub, join } = setup();
  const v1 = snap('n1', 'u1');
  const v2 = snap('n1', 'u1', 'u2');
  hub.publish(v1);
  hub.publish(v2);
  const fromV1 = join('n1', v1.version);
  assert.equal(fromV1.received[0]!.kind, 'delta');
  fromV1.held = v1;
  fromV1.ackAll();
  assert.deepEqual(fromV1.held, v2);
  const current = join('n1', v2.version);
  const m = current.received[0]!;
  assert.ok(m.kind === 'delta' && 'delta' in m.message && isEmptyDelta(m.message.delta) && m.version === v2.version);
  const unknown = join('n1', 'some-version-from-long-ago');
  assert.equal(unknown.received[0]!.kind, 'snapshot');
});

test('history is bounded: a version older than historyDepth gets a full snapshot', () => {
  const { hub, join } = setup({ historyDepth: 2 });
  const versions = ['a', 'b', 'c'].map((u) => snap('n1', u));
  versions.forEach((v) => hub.publish(v));
  assert.equal(join('n1', versions[0]!.version).received[0]!.kind, 'snapshot');
  assert.equal(join('n1', versions[1]!.version).received[0]!.kind, 'delta');
});

test('one message awaits ACK at a time; changes meanwhile coalesce into one delta', () => {
  const { hub, join } = setup();
  hub.publish(snap('n1', 'u1'));
  const a = join('n1');
  for (const extra of ['u2', 'u3', 'u4']) hub.publish(snap('n1', 'u1', extra));
  assert.equal(a.received.length, 1, 'only the snapshot: nothing more until it is acknowledged');
  a.ackOne();
  // The acknowledgement released one coalesced delta.
  assert.equal(a.received.length, 1);
  const d = a.received[0]!;
  assert.ok('delta' in d.message);
  assert.deepEqual(Object.keys(d.message.delta.workloads.added), ['u4']);
  a.ackAll();
  assert.deepEqual(a.held, snap('n1', 'u1', 'u4'));
});

test('transport back-pressure: nothing is sent until drained; a slow agent never holds up others', () => {
  const { hub, join } = setup({ maxUnacked: 100 });
  hub.publish(snap('n1', 'u1'));
  const slow = join('n1');
  const fast = join('n1');
  slow.accept = false;
  slow.ackAll();
  fast.ackAll();
  for (let i = 0; i < 50; i++) hub.publish(snap('n1', 'u1', `x${i}`));
  assert.equal(slow.received.length, 1, 'one message handed to a blocked transport, then it waits');
  assert.equal(fast.received.length, 50);
  slow.accept = true;
  slow.sub.drained();
  assert.equal(slow.received.length, 2, 'one coalesced delta after drain');
  slow.ackAll();
  fast.ackAll();
  assert.deepEqual(slow.held, hub.current('n1'));
  assert.deepEqual(fast.held, hub.current('n1'));
});

test('ACK and NACK are reported with latency and errors; out-of-order acks are protocol errors', () => {
  let t = 1000;
  const acks: string[] = [];
  const nacks: string[] = [];
  const { hub, join } = setup({
    now: () => t,
    observer: {
      acked: (info, v, ms) => acks.push(`${info.agent}:${v === hub.current('n1')!.version}:${ms}`),
      nacked: (info, _v, errors) => nacks.push(`${info.agent}:${errors.map((e) => e.key).join()}`),
    },
  });
  hub.publish(snap('n1', 'u1'));
  const a = join('n1');
  t = 1025;
  a.ackAll();
  assert.deepEqual(acks, ['agent-n1:true:25']);
  hub.publish(snap('n1', 'u1', 'u2'));
  a.ackAll([{ type: 'workloads', key: 'u2', message: 'bad ip' }]);
  assert.deepEqual(nacks, ['agent-n1:u2']);
  assert.match(a.sub.acknowledge('whatever', [])!, /no version is awaiting one/);
  hub.publish(snap('n1', 'u3'));
  assert.match(a.sub.acknowledge('wrong', [])!, /next version to acknowledge is/);
});

test('a stalled subscriber is closed after the stall timeout; others keep going', () => {
  let t = 0;
  const stalled: string[] = [];
  const { hub, join } = setup({ now: () => t, stallTimeoutMs: 1000, observer: { stalled: (i) => stalled.push(i.agent) } });
  hub.publish(snap('n1', 'u1'));
  const stuck = join('n1', '', 'stuck');
  const ok = join('n1', '', 'ok');
  ok.ackAll();
  t = 500;
  hub.publish(snap('n1', 'u2')); // stuck never acknowledged the snapshot: the change waits
  ok.ackAll();
  t = 1400;
  hub.sweep();
  assert.equal(stuck.closed, undefined, 'waiting 900 ms is within the timeout');
  t = 1600;
  hub.sweep();
  assert.match(stuck.closed!, /^RESOURCE_EXHAUSTED: config for node n1 has waited 1s/);
  assert.deepEqual(stalled, ['stuck']);
  assert.equal(hub.subscriberCount('n1'), 1);
  hub.publish(snap('n1', 'u3'));
  assert.equal(ok.received.length, 1);
  assert.equal(stuck.received.length, 1, 'nothing more goes to a closed subscriber');
});

test('subscribers moving between the same versions share one message, encoded once', () => {
  const { hub, join } = setup();
  hub.publish(snap('n1', 'u1'));
  const agents = Array.from({ length: 5 }, () => join('n1'));
  agents.forEach((a) => a.ackAll());
  hub.publish(snap('n1', 'u1', 'u2'));
  const first = agents[0]!.received[0]!;
  assert.ok(agents.every((a) => a.received[0] === first));
  assert.equal(first.encoded(), first.encoded());
});

test('close unsubscribes; forget drops a node only without subscribers', () => {
  const { hub, join } = setup();
  hub.publish(snap('n1', 'u1'));
  const a = join('n1');
  hub.forget('n1');
  assert.ok(hub.current('n1'));
  a.sub.close();
  assert.equal(hub.subscriberCount(), 0);
  hub.forget('n1');
  assert.equal(hub.current('n1'), undefined);
});

test('property: random publishes, acks and back-pressure always converge to the current snapshot', () => {
  let seed = 7;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  for (let round = 0; round < 30; round++) {
    const { hub, join } = setup({ maxUnacked: 1 + rand(3), historyDepth: 1 + rand(4) });
    const agents = [join('n1'), join('n1')];
    let late: ReturnType<typeof join> | undefined;
    for (let step = 0; step < 40; step++) {
      const r = rand(10);
      if (r < 5) hub.publish(snap('n1', ...Array.from({ length: rand(4) }, () => `u${rand(6)}`)));
      else if (r < 8) agents[rand(2)]!.ackAll();
      else {
        const a = agents[rand(2)]!;
        a.accept = !a.accept;
        if (a.accept) a.sub.drained();
      }
      if (step === 20) {
        const held = hub.current('n1');
        late = join('n1', held?.version ?? '');
        late.held = held;
      }
    }
    for (const a of [...agents, late!]) {
      a.accept = true;
      a.sub.drained();
      for (let i = 0; i < 5; i++) a.ackAll();
    }
    for (const a of [...agents, late!]) assert.deepEqual(a.held, hub.current('n1'), `round ${round}`);
  }
});
