// Table tests of CRI log handling: line parsing, joining partial lines, tail/since selection,
// timestamps, the PodLogOptions query, and streaming with follow and limitBytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CriLogDecoder, formatEntry, parseCriLine, parseLogQuery, selectEntries, streamLog } from './logs.js';

test('CRI log lines parse into time, stream, partial flag and content', () => {
  const cases: [string, ReturnType<typeof parseCriLine>][] = [
    ['2026-01-01T00:00:00.123456789Z stdout F hello world', { time: '2026-01-01T00:00:00.123456789Z', stream: 'stdout', partial: false, content: 'hello world' }],
    ['2026-01-01T00:00:00Z stderr P part', { time: '2026-01-01T00:00:00Z', stream: 'stderr', partial: true, content: 'part' }],
    ['2026-01-01T00:00:00Z stdout F ', { time: '2026-01-01T00:00:00Z', stream: 'stdout', partial: false, content: '' }],
    ['2026-01-01T00:00:00Z stdout F  leading space', { time: '2026-01-01T00:00:00Z', stream: 'stdout', partial: false, content: ' leading space' }],
    ['garbage', undefined],
    ['2026-01-01T00:00:00Z stdin F x', undefined],
  ];
  for (const [line, want] of cases) assert.deepEqual(parseCriLine(line), want, line);
});

test('the decoder joins partial lines per stream and carries an unfinished line to the next chunk', () => {
  const d = new CriLogDecoder();
  const a = d.push('t1 stdout P hel\nt2 stderr F err\nt3 stdout F lo\nt4 stdout F ne');
  assert.deepEqual(a, [
    { time: 't2', stream: 'stderr', content: 'err\n' },
    { time: 't1', stream: 'stdout', content: 'hello\n' },
  ]);
  assert.deepEqual(d.push('xt\n'), [{ time: 't4', stream: 'stdout', content: 'next\n' }]);
});

test('tailLines and sinceTime select entries; timestamps prefix them', () => {
  const e = (s: number, c: string) => ({ time: `2026-01-01T00:00:0${s}Z`, stream: 'stdout' as const, content: `${c}\n` });
  const entries = [e(1, 'a'), e(2, 'b'), e(3, 'c')];
  assert.deepEqual(selectEntries(entries, { tailLines: 2 }).map((x) => x.content), ['b\n', 'c\n']);
  assert.deepEqual(selectEntries(entries, { tailLines: 0 }), []);
  assert.deepEqual(selectEntries(entries, { sinceMs: Date.parse('2026-01-01T00:00:02Z') }).map((x) => x.content), ['b\n', 'c\n']);
  assert.equal(formatEntry(e(1, 'a'), true), '2026-01-01T00:00:01Z a\n');
  assert.equal(formatEntry(e(1, 'a'), false), 'a\n');
});

test('the log query: booleans, numbers, since', () => {
  const q = parseLogQuery(new URLSearchParams('container=web&follow=true&tailLines=5&timestamps=true&sinceSeconds=10&limitBytes=100'), 1_000_000);
  assert.deepEqual(q, { follow: true, previous: false, timestamps: true, container: 'web', tailLines: 5, limitBytes: 100, sinceMs: 990_000 });
  assert.throws(() => parseLogQuery(new URLSearchParams('tailLines=x'), 0), /invalid tailLines/);
});

test('streaming: follow delivers appended lines and stops when the container stops; limitBytes cuts', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'kubelet-logs-'));
  try {
    const path = join(dir, '0.log');
    await writeFile(path, '2026-01-01T00:00:01Z stdout F one\n');
    let out = '';
    let running = true;
    const sink = { write: (s: string) => ((out += s), true), closed: false };
    const done = streamLog(path, { follow: true, previous: false, timestamps: false }, sink, async () => running, 10);
    await new Promise((r) => setTimeout(r, 50));
    await appendFile(path, '2026-01-01T00:00:02Z stdout P tw\n2026-01-01T00:00:02Z stdout F o\n');
    await new Promise((r) => setTimeout(r, 50));
    running = false;
    await done;
    assert.equal(out, 'one\ntwo\n');

    let limited = '';
    await streamLog(path, { follow: false, previous: false, timestamps: false, limitBytes: 5 }, { write: (s) => ((limited += s), true), closed: false }, async () => false);
    assert.equal(limited, 'one\nt');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
