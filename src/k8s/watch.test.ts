/**
 * The watched collection's state machine against a scripted transport and a manual clock: backoff,
 * relist on 410 with the diff reaching the sink, uid changes, unchanged resourceVersions, no hot loop.
 * (watch.server.test.ts runs it against the real API test server.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, DEFAULT_BACKOFF, WatchedCollection, type Clock, type ListWatchTransport, type WatchEvent } from './watch.js';
import { RESOURCES } from './resources.js';
import type { KubeObject } from '../state/objects.js';

test('backoffDelay: exponential, capped, jittered', () => {
  const p = { initialMs: 100, maxMs: 1000, factor: 2, jitter: 0.5 };
  const cases: [number, number, number][] = [
    [0, 0.5, 100],
    [1, 0.5, 200],
    [3, 0.5, 800],
    [4, 0.5, 1000],
    [20, 0.5, 1000],
    [0, 0, 50],
    [0, 0.999999, 150],
    [4, 0, 500],
  ];
  for (const [attempt, random, want] of cases) assert.equal(backoffDelay(attempt, p, random), want, `attempt ${attempt} random ${random}`);
  assert.equal(backoffDelay(100, DEFAULT_BACKOFF, 0.5), 30_000);
});

class ManualClock implements Clock {
  t = 0;
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private next = 0;
  readonly delays: number[] = [];
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    this.delays.push(ms);
    const id = ++this.next;
    this.timers.push({ at: this.t + ms, fn, id });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.timers = this.timers.filter((t) => t.id !== h);
  }
  random(): number {
    return 0.5;
  }
  /** Runs the timers due within `ms`, in order, letting promises settle in between. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await settle();
      const due = this.timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.timers = this.timers.filter((t) => t !== due);
      this.t = due.at;
      due.fn();
    }
    this.t = end;
    await settle();
  }
}

const settle = async (): Promise<void> => {
  for (let i = 0; i < 10; i++) await new Promise<void>((r) => setImmediate(r));
};

const cm = (name: string, rv: string, uid = `uid-${name}`): KubeObject => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'ns', uid, resourceVersion: rv } });

/** A transport whose lists and watches the test scripts. */
class ScriptedTransport implements ListWatchTransport {
  lists: (() => { items: KubeObject[]; resourceVersion: string })[] = [];
  watches: { query: Record<string, unknown>; emit: (type: string, o: unknown) => void; end: (err: unknown) => void; aborted: boolean }[] = [];
  async list(): Promise<{ items: KubeObject[]; resourceVersion: string }> {
    const next = this.lists.shift();
    if (!next) throw new Error('connect ECONNREFUSED');
    return next();
  }
  async watch(_path: string, query: Record<string, unknown>, onEvent: (type: string, o: unknown) => void, onDone: (err: unknown) => void): Promise<{ abort(): void }> {
    const w = { query, emit: onEvent, end: onDone, aborted: false };
    this.watches.push(w);
    return { abort: () => (w.aborted = true) };
  }
  get last() {
    return this.watches[this.watches.length - 1]!;
  }
}

function collection(transport: ScriptedTransport, clock: ManualClock, resyncMs = 0) {
  const events: string[] = [];
  const restarts: string[] = [];
  const c = new WatchedCollection({
    resource: RESOURCES.pods,
    transport,
    clock,
    resyncMs,
    sink: (e: WatchEvent<KubeObject>) => events.push(`${e.type}:${e.object.metadata.name}@${e.object.metadata.resourceVersion}`),
    onRestart: (reason) => restarts.push(reason),
  });
  return { c, events, restarts };
}

test('list, watch, then a failing list is retried with growing backoff until it works', async () => {
  const t = new ScriptedTransport();
  const clock = new ManualClock();
  const { c, events, restarts } = collection(t, clock);
  c.start();
  await clock.advance(0);
  assert.equal(c.isSynced, false);
  await clock.advance(200 + 400 + 800 - 1); // three failures so far: 200, 400, 800 ms
  assert.deepEqual(clock.delays, [200, 400, 800]);
  t.lists.push(() => ({ items: [cm('a', '5')], resourceVersion: '5' }));
  await clock.advance(1);
  await c.synced;
  assert.deepEqual(events, ['added:a@5']);
  assert.deepEqual(restarts, ['list failed', 'list failed', 'list failed']);
  assert.equal(t.last.query['resourceVersion'], '5');
  assert.equal(t.last.query['allowWatchBookmarks'], true);
  c.stop();
});

test('watch events reach the sink; unchanged resourceVersion dropped; uid change is delete + add', async () => {
  const t = new ScriptedTransport();
  const clock = new ManualClock();
  const { c, events } = collection(t, clock);
  t.lists.push(() => ({ items: [cm('a', '5')], resourceVersion: '5' }));
  c.start();
  await clock.advance(0);
  t.last.emit('MODIFIED', cm('a', '6'));
  t.last.emit('MODIFIED', cm('a', '6'));
  t.last.emit('ADDED', cm('b', '7'));
  t.last.emit('BOOKMARK', { metadata: { resourceVersion: '9' } });
  t.last.emit('MODIFIED', cm('b', '10', 'other-uid'));
  t.last.emit('DELETED', cm('a', '11'));
  assert.deepEqual(events, ['added:a@5', 'updated:a@6', 'added:b@7', 'deleted:b@7', 'added:b@10', 'deleted:a@11']);
  assert.equal(c.resourceVersion, '11');
  assert.deepEqual(c.list().map((o) => o.metadata.name), ['b']);
  c.stop();
});

test('410 Gone relists at once and the diff reports what changed meanwhile', async () => {
  const t = new ScriptedTransport();
  const clock = new ManualClock();
  const { c, events, restarts } = collection(t, clock);
  t.lists.push(() => ({ items: [cm('a', '5'), cm('b', '5')], resourceVersion: '5' }));
  c.start();
  await clock.advance(0);
  t.lists.push(() => ({ items: [cm('a', '8'), cm('c', '7')], resourceVersion: '9' }));
  t.last.emit('ERROR', { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' });
  t.last.end(null);
  await clock.advance(0);
  assert.deepEqual(events.slice(2), ['updated:a@8', 'added:c@7', 'deleted:b@5']);
  assert.deepEqual(restarts, ['410 Gone']);
  assert.equal(t.last.query['resourceVersion'], '9');
  c.stop();
});

test('a watch error resumes from the last resourceVersion after backoff; a clean end resumes at once', async () => {
  const t = new ScriptedTransport();
  const clock = new ManualClock();
  const { c, restarts } = collection(t, clock);
  t.lists.push(() => ({ items: [], resourceVersion: '5' }));
  c.start();
  await clock.advance(0);
  t.last.emit('ADDED', cm('a', '6'));
  t.last.end(new Error('socket hang up'));
  await clock.advance(199);
  assert.equal(t.watches.length, 1, 'waits out the backoff');
  await clock.advance(1);
  assert.equal(t.watches.length, 2);
  assert.equal(t.last.query['resourceVersion'], '6');
  // a server-side timeout after a healthy while: resume immediately, not a restart
  clock.t += 5000;
  t.last.emit('BOOKMARK', { metadata: { resourceVersion: '7' } });
  t.last.end(null);
  await clock.advance(0);
  assert.equal(t.watches.length, 3);
  assert.equal(t.last.query['resourceVersion'], '7');
  // a watch that ends at once with nothing: treated as a failure (no hot loop)
  t.last.end(null);
  await clock.advance(0);
  assert.equal(t.watches.length, 3);
  await clock.advance(200);
  assert.equal(t.watches.length, 4);
  // a non-410 ERROR event is a failure too
  t.last.emit('ERROR', { code: 500, reason: 'InternalError', message: 'boom' });
  t.last.end(null);
  assert.deepEqual(restarts, ['watch failed', 'watch ended at once', 'watch failed']);
  c.stop();
});

test('periodic resync relists and diffs even when the watch went silent', async () => {
  const t = new ScriptedTransport();
  const clock = new ManualClock();
  const { c, events, restarts } = collection(t, clock, 60_000);
  t.lists.push(() => ({ items: [cm('a', '5')], resourceVersion: '5' }));
  c.start();
  await clock.advance(0);
  const silent = t.last;
  t.lists.push(() => ({ items: [cm('b', '8')], resourceVersion: '8' }));
  await clock.advance(60_000);
  assert.equal(silent.aborted, true, 'the silent watch is abandoned');
  assert.deepEqual(events, ['added:a@5', 'added:b@8', 'deleted:a@5']);
  assert.equal(c.resyncs, 1);
  assert.deepEqual(restarts, [], 'a resync is not a restart');
  assert.equal(t.last.query['resourceVersion'], '8');
  c.stop();
});

test('a throwing sink does not stop the collection', async () => {
  const t = new ScriptedTransport();
  const clock = new ManualClock();
  const errors: unknown[] = [];
  const c = new WatchedCollection({ resource: RESOURCES.pods, transport: t, clock, resyncMs: 0, sink: () => { throw new Error('bad sink'); }, onSinkError: (e) => errors.push(e) });
  t.lists.push(() => ({ items: [cm('a', '5')], resourceVersion: '5' }));
  c.start();
  await clock.advance(0);
  t.last.emit('ADDED', cm('b', '6'));
  assert.equal(errors.length, 2);
  assert.equal(c.list().length, 2);
  c.stop();
});
