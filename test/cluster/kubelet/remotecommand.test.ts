// Table tests of the remote-command framing and statuses, and one session against a real
// WebSocket client speaking v5.channel.k8s.io as kubectl does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { Socket } from 'node:net';
import WebSocket from 'ws';
import { CHANNEL, exitCodeStatus, frame, frames, negotiate, parseExecQuery, parseFrame, serveExec, successStatus } from './remotecommand.js';

test('frames carry the channel byte first; long output is split into 32 KiB frames', () => {
  assert.deepEqual([...frame(CHANNEL.stdout, 'hi')], [1, 104, 105]);
  assert.deepEqual(parseFrame(Buffer.from([3, 123, 125])), { channel: 3, data: Buffer.from('{}') });
  assert.equal(parseFrame(Buffer.alloc(0)), undefined);
  const big = frames(CHANNEL.stderr, Buffer.alloc(70_000, 120));
  assert.deepEqual(big.map((f) => [f[0], f.length - 1]), [[2, 32768], [2, 32768], [2, 4464]]);
});

test('protocol negotiation prefers v5, accepts v4, refuses others', () => {
  const cases: [string[], string | undefined][] = [
    [['v5.channel.k8s.io'], 'v5.channel.k8s.io'],
    [['v4.channel.k8s.io', 'v5.channel.k8s.io'], 'v5.channel.k8s.io'],
    [['v4.channel.k8s.io'], 'v4.channel.k8s.io'],
    [['channel.k8s.io', 'base64.channel.k8s.io'], undefined],
  ];
  for (const [offered, want] of cases) assert.equal(negotiate(offered), want, offered.join(','));
});

test('the exec query and the statuses kubectl decodes', () => {
  assert.deepEqual(parseExecQuery(new URLSearchParams('command=sh&command=-c&command=echo+hi&container=web&stdout=true&stderr=true')), {
    command: ['sh', '-c', 'echo hi'],
    container: 'web',
    stdin: false,
    stdout: true,
    stderr: true,
    tty: false,
  });
  assert.deepEqual(successStatus(), { metadata: {}, status: 'Success' });
  const s = exitCodeStatus(3, ['sh', '-c', 'exit 3']) as { status: string; reason: string; details: unknown };
  assert.equal(s.status, 'Failure');
  assert.equal(s.reason, 'NonZeroExitCode');
  assert.deepEqual(s.details, { causes: [{ reason: 'ExitCode', message: '3' }] });
});

test('a v5 session: stdout, stderr, then the exit status on channel 3 and a normal close', async () => {
  const srv = http.createServer();
  srv.on('upgrade', (req, socket, head) => {
    const q = new URL(req.url ?? '/', 'http://x').searchParams;
    serveExec(req, socket as Socket, head, q, {
      check: (eq) => (eq.container === 'missing' ? 'container not found ("missing")' : undefined),
      run: async () => ({ stdout: Buffer.from('out\n'), stderr: Buffer.from('err\n'), exitCode: 2 }),
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  const session = (query: string) =>
    new Promise<{ protocol: string; messages: Buffer[]; code: number }>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/exec?${query}`, ['v5.channel.k8s.io']);
      const messages: Buffer[] = [];
      ws.on('message', (d: Buffer) => messages.push(d));
      ws.on('close', (code) => resolve({ protocol: ws.protocol, messages, code }));
      ws.on('error', reject);
    });
  try {
    const ok = await session('command=x&stdout=true&stderr=true');
    assert.equal(ok.protocol, 'v5.channel.k8s.io');
    assert.equal(ok.code, 1000);
    const parsed = ok.messages.map((m) => parseFrame(m)!);
    assert.deepEqual(parsed.map((p) => p.channel), [1, 2, 3]);
    assert.equal(parsed[0]!.data.toString(), 'out\n');
    assert.equal(JSON.parse(parsed[2]!.data.toString()).reason, 'NonZeroExitCode');
    const bad = await session('command=x&container=missing&stdout=true');
    assert.match(JSON.parse(parseFrame(bad.messages[0]!)!.data.toString()).message, /container not found/);
    const tty = await session('command=sh&stdin=true&tty=true&stdout=true');
    assert.match(JSON.parse(parseFrame(tty.messages[0]!)!.data.toString()).message, /interactive exec/);
  } finally {
    srv.close();
  }
});
