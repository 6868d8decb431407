// The agent's CNI server on a real unix socket in a temp dir: socket ownership (stale, live,
// not-a-socket), request validation, handler outcomes and their status codes, orderly close.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { lstat, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CniPodRequest } from '../api/cni.js';
import { CniServer, CniTryAgain, type CniHandlers, type CniRequestRecord } from './cni-server.js';

const REQ: CniPodRequest = { pod: { namespace: 'shop', name: 'web-0', uid: 'u1' }, containerId: 'abc123', netns: '/run/netns/x', ifname: 'eth0', ips: ['10.244.1.7'], network: 'pods' };

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-cni-srv-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function call(socketPath: string, path: string, body: unknown, method = 'POST'): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    const req = request({ socketPath, path, method, headers: { 'content-type': 'application/json' } }, (res) => {
      let data = '';
      res.on('data', (d) => (data += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data ? JSON.parse(data) : undefined }));
    });
    req.on('error', reject);
    req.end(method === 'GET' ? undefined : text);
  });
}

test('answers add/del/check from the handlers, with the statuses of the protocol', async () => {
  await withDir(async (dir) => {
    const socketPath = join(dir, 'run', 'cni.sock');
    const seen: string[] = [];
    const records: CniRequestRecord[] = [];
    const handlers: CniHandlers = {
      enrol: async (r) => {
        seen.push(`enrol ${r.pod.name} ${r.ips.join(',')}`);
        if (r.pod.name === 'later') throw new CniTryAgain('namespace shop not synced yet');
        if (r.pod.name === 'broken') throw new Error('iptables-restore exited 1');
        if (r.pod.name === 'odd') return 'maybe' as never;
        return r.pod.namespace === 'shop' ? 'enrolled' : 'not-enrolled';
      },
      release: async (r) => void seen.push(`release ${r.pod.name}`),
      check: async (r) => (r.pod.name === 'web-0' ? { ok: true } : { ok: false, problem: 'rules missing' }),
    };
    const server = await CniServer.start({ socketPath, handlers, onRequest: (r) => records.push(r) });
    try {
      assert.equal((await stat(socketPath)).mode & 0o777, 0o600);
      assert.deepEqual(await call(socketPath, '/v1/cni/add', REQ), { status: 200, body: { decision: 'enrolled' } });
      assert.deepEqual(await call(socketPath, '/v1/cni/add', { ...REQ, pod: { ...REQ.pod, namespace: 'plain' } }), { status: 200, body: { decision: 'not-enrolled' } });
      assert.deepEqual(await call(socketPath, '/v1/cni/del', REQ), { status: 200, body: { released: true } });
      assert.deepEqual(await call(socketPath, '/v1/cni/check', REQ), { status: 200, body: { ok: true } });
      assert.deepEqual(await call(socketPath, '/v1/cni/check', { ...REQ, pod: { ...REQ.pod, name: 'x' } }), { status: 200, body: { ok: false, problem: 'rules missing' } });
      const named = (name: string) => ({ ...REQ, pod: { ...REQ.pod, name } });
      assert.deepEqual(await call(socketPath, '/v1/cni/add', named('later')), { status: 503, body: { error: { kind: 'try-again', message: 'namespace shop not synced yet' } } });
      assert.deepEqual(await call(socketPath, '/v1/cni/add', named('broken')), { status: 500, body: { error: { kind: 'failed', message: 'iptables-restore exited 1' } } });
      assert.equal((await call(socketPath, '/v1/cni/add', named('odd'))).status, 500);
      // malformed requests never reach the handlers
      const before = seen.length;
      const bad: Array<[string, unknown, string, number]> = [
        ['/v1/cni/add', '{"pod":', 'POST', 400],
        ['/v1/cni/add', { ...REQ, ips: 'x' }, 'POST', 400],
        ['/v1/cni/add', undefined, 'GET', 400],
        ['/v2/cni/add', REQ, 'POST', 404],
      ];
      for (const [path, body, method, status] of bad) {
        const r = await call(socketPath, path, body, method);
        assert.equal(r.status, status, `${method} ${path}`);
        assert.equal(r.body.error.kind, 'bad-request');
      }
      assert.equal(seen.length, before);
      assert.deepEqual(seen.slice(0, 3), ['enrol web-0 10.244.1.7', 'enrol web-0 10.244.1.7', 'release web-0']);
      assert.deepEqual(records.slice(0, 3).map((r) => [r.op, r.outcome, r.pod]), [['add', 'enrolled', 'shop/web-0'], ['add', 'not-enrolled', 'plain/web-0'], ['del', 'ok', 'shop/web-0']]);
      assert.ok(records.some((r) => r.outcome === 'try-again') && records.some((r) => r.outcome === 'bad-request'));
    } finally {
      await server.close();
    }
    await assert.rejects(lstat(socketPath), /ENOENT/, 'close removes the socket');
  });
});

test('close waits for an enrolment in flight, and the plugin still gets its answer', async () => {
  await withDir(async (dir) => {
    const socketPath = join(dir, 'cni.sock');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const server = await CniServer.start({ socketPath, handlers: { enrol: async () => (await gate, 'enrolled') } });
    const pending = call(socketPath, '/v1/cni/add', REQ);
    await new Promise((r) => setTimeout(r, 100));
    let closed = false;
    const closing = server.close().then(() => (closed = true));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(closed, false);
    release();
    assert.deepEqual(await pending, { status: 200, body: { decision: 'enrolled' } });
    await closing;
  });
});

test('a stale socket of a dead agent is replaced; a live one or a non-socket is refused', async () => {
  await withDir(async (dir) => {
    const handlers: CniHandlers = { enrol: async () => 'enrolled' };
    // stale: a socket bound by a process that has exited (nothing listens)
    const stale = join(dir, 'stale.sock');
    execFileSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', stale]);
    assert.ok((await lstat(stale)).isSocket());
    const s1 = await CniServer.start({ socketPath: stale, handlers });
    assert.equal((await call(stale, '/v1/cni/add', REQ)).status, 200);
    // live: refused, and the live server keeps working
    await assert.rejects(CniServer.start({ socketPath: stale, handlers }), /another process already serves .*second ambit-agent/);
    assert.equal((await call(stale, '/v1/cni/add', REQ)).status, 200);
    await s1.close();
    // not a socket: never deleted
    const file = join(dir, 'file.sock');
    await writeFile(file, 'precious');
    await assert.rejects(CniServer.start({ socketPath: file, handlers }), /exists and is not a socket/);
    assert.ok((await lstat(file)).isFile());
    // a foreign live listener (not an agent) counts as live too
    const other = join(dir, 'other.sock');
    const foreign = createServer().listen(other);
    await new Promise((r) => foreign.once('listening', r));
    await assert.rejects(CniServer.start({ socketPath: other, handlers }), /already serves/);
    await new Promise((r) => foreign.close(r));
  });
});
