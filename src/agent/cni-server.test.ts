// The agent's CNI server on real unix sockets (a path in a temp dir, and abstract names): the
// protocol of src/api/cni.ts spoken by hand (Node's HTTP client), socket ownership (stale, live,
// not-a-socket, abstract name in use), refusals, records for metrics, orderly close. The C plugin
// against this server is tested in test/agent/cni-plugin.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { request } from 'node:http';
import { connect, createServer } from 'node:net';
import { lstat, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeHeaderValue, encodeHeaderValue, socketAddress, type CniPodRequest } from '../api/cni.js';
import { CniServer, CniTryAgain, envFromHeaders, type CniHandlers, type CniRequestRecord } from './cni-server.js';

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'ambit-cni-srv-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

interface Answer {
  status: number;
  exit?: string;
  log: string;
  body: string;
}

/** One request as the plugin sends it: env as headers (encoded), stdin as body. */
function run(socket: string, env: Record<string, string>, stdin: string, opts: { path?: string; method?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { connection: 'close', 'content-type': 'application/json', ...opts.headers };
    for (const [k, v] of Object.entries(env)) headers[`cni-${k.slice(4).toLowerCase()}`] = encodeHeaderValue(v);
    const req = request({ socketPath: socketAddress(socket), path: opts.path ?? '/v1/cni/run', method: opts.method ?? 'POST', headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        const exit = res.headers['cni-exit-code'];
        const log = res.headers['cni-log'];
        resolve({ status: res.statusCode ?? 0, ...(typeof exit === 'string' ? { exit } : {}), log: typeof log === 'string' ? decodeHeaderValue(log) : '', body });
      });
    });
    req.on('error', reject);
    req.end(opts.method === 'GET' ? undefined : stdin);
  });
}

const PREV = { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: '/run/netns/x' }], ips: [{ address: '10.244.1.7/24', interface: 0 }] };
const ENV = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc123', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_ARGS: 'K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_UID=u1', CNI_PATH: '/opt/cni/bin' };
const conf = (o: Record<string, unknown> = {}) => JSON.stringify({ cniVersion: '1.0.0', name: 'pods', type: 'ambit-cni', prevResult: PREV, ...o });

test('envFromHeaders: one variable per header present, decoded; others absent', () => {
  assert.deepEqual(envFromHeaders({ 'cni-command': 'ADD', 'cni-ifname': '%20eth0', 'cni-args': '', 'x-other': 'y' }), { CNI_COMMAND: 'ADD', CNI_IFNAME: ' eth0', CNI_ARGS: '' });
});

test('runs each relayed invocation through the CNI logic with the handlers, and answers what the plugin prints', async () => {
  await withDir(async (dir) => {
    const socketPath = join(dir, 'run', 'cni.sock');
    const seen: CniPodRequest[] = [];
    const records: CniRequestRecord[] = [];
    const handlers: CniHandlers = {
      enrol: async (r) => {
        seen.push(r);
        if (r.pod.name === 'later') throw new CniTryAgain('namespace shop not synced yet');
        return 'enrolled';
      },
      release: async (r) => void seen.push(r),
    };
    const server = await CniServer.start({ socketPath, handlers, onRequest: (r) => records.push(r) });
    try {
      assert.equal((await stat(socketPath)).mode & 0o777, 0o600);
      let a = await run(socketPath, ENV, conf());
      assert.deepEqual([a.status, a.exit, JSON.parse(a.body)], [200, '0', PREV]);
      assert.match(a.log, /ADD shop\/web-0 \(sandbox abc123\): enrolled in \d+ ms/);
      assert.deepEqual(seen[0], { pod: { namespace: 'shop', name: 'web-0', uid: 'u1' }, containerId: 'abc123', netns: '/run/netns/x', ifname: 'eth0', ips: ['10.244.1.7'], network: 'pods' });
      a = await run(socketPath, { ...ENV, CNI_COMMAND: 'DEL' }, conf());
      assert.deepEqual([a.status, a.exit, a.body], [200, '0', '']);
      a = await run(socketPath, { ...ENV, CNI_ARGS: 'K8S_POD_NAMESPACE=shop;K8S_POD_NAME=later' }, conf());
      assert.deepEqual([a.status, a.exit], [200, '1']);
      assert.deepEqual(JSON.parse(a.body), { cniVersion: '1.0.0', code: 11, msg: 'ambit-agent cannot set up the pod yet: namespace shop not synced yet' });
      // exact values arrive: an interface name with a space is the runtime's error (code 4), named
      a = await run(socketPath, { ...ENV, CNI_IFNAME: 'eth 0' }, conf());
      assert.equal(JSON.parse(a.body).code, 4);
      assert.match(JSON.parse(a.body).details, /CNI_IFNAME="eth 0" must not contain/);
      // an absent header is an unset variable
      const { CNI_NETNS: _unset, ...noNetns } = ENV;
      a = await run(socketPath, noNetns, conf());
      assert.match(JSON.parse(a.body).msg, /CNI_NETNS/);
      assert.deepEqual(
        records.map((r) => [r.op, r.outcome, r.code, r.pod]),
        [
          ['add', 'enrolled', undefined, 'shop/web-0'],
          ['del', 'ok', undefined, 'shop/web-0'],
          ['add', 'try-again', 11, 'shop/later'],
          ['add', 'bad-request', 4, undefined],
          ['add', 'bad-request', 4, undefined],
        ],
      );
      // what is not the protocol is refused with a reason, before any handler runs
      const before = seen.length;
      const refusals: Array<[Parameters<typeof run>[3], number, RegExp]> = [
        [{ path: '/v1/cni/add' }, 404, /unknown path \/v1\/cni\/add; this agent serves POST \/v1\/cni\/run/],
        [{ method: 'GET' }, 405, /only POST/],
        [{ headers: { 'content-length': String(5 * 1024 * 1024) } }, 413, /larger than 4194304 bytes/],
      ];
      for (const [opts, status, re] of refusals) {
        const r = await run(socketPath, ENV, opts?.headers ? '' : conf(), opts);
        assert.equal(r.status, status, JSON.stringify(opts));
        assert.match(r.body, re);
      }
      assert.equal(seen.length, before);
    } finally {
      await server.close();
    }
    await assert.rejects(lstat(socketPath), /ENOENT/, 'close removes the socket');
  });
});

test('an abstract socket: reachable by name, one owner at a time, nothing on disk', async () => {
  const name = `@ambit-test-cni-${process.pid}`;
  const handlers: CniHandlers = { enrol: async () => 'not-enrolled' };
  const server = await CniServer.start({ socketPath: name, handlers });
  try {
    assert.equal(server.socketPath, name);
    const a = await run(name, ENV, conf());
    assert.deepEqual([a.status, a.exit, JSON.parse(a.body)], [200, '0', PREV]);
    await assert.rejects(CniServer.start({ socketPath: name, handlers }), /another process already serves @ambit-test-cni-\d+ .*second ambit-agent/);
    assert.equal((await run(name, ENV, conf())).status, 200, 'the first server keeps serving');
  } finally {
    await server.close();
  }
  // the name is free again at once (no file to remove)
  const again = await CniServer.start({ socketPath: name, handlers });
  await again.close();
});

test('verifyPeer refuses a connecting process with 403 and its reason', async () => {
  const name = `@ambit-test-cni-peer-${process.pid}`;
  let asked = 0;
  const server = await CniServer.start({
    socketPath: name,
    handlers: { enrol: async () => (asked++, 'enrolled') },
    verifyPeer: () => 'peer uid 1000 is not root',
  });
  try {
    const a = await run(name, ENV, conf());
    assert.deepEqual([a.status, a.body], [403, 'refused: peer uid 1000 is not root']);
    assert.equal(asked, 0);
  } finally {
    await server.close();
  }
});

test('close waits for an enrolment in flight, and the plugin still gets its answer', async () => {
  await withDir(async (dir) => {
    const socketPath = join(dir, 'cni.sock');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const server = await CniServer.start({ socketPath, handlers: { enrol: async () => (await gate, 'enrolled') } });
    const pending = run(socketPath, ENV, conf());
    await new Promise((r) => setTimeout(r, 100));
    let closed = false;
    const closing = server.close().then(() => (closed = true));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(closed, false);
    release();
    const a = await pending;
    assert.deepEqual([a.status, a.exit, JSON.parse(a.body)], [200, '0', PREV]);
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
    assert.equal((await run(stale, ENV, conf())).status, 200);
    // live: refused, and the live server keeps working
    await assert.rejects(CniServer.start({ socketPath: stale, handlers }), /another process already serves .*second ambit-agent/);
    assert.equal((await run(stale, ENV, conf())).status, 200);
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

test('a plugin that gives up waiting does not break the server', async () => {
  const name = `@ambit-test-cni-gone-${process.pid}`;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const server = await CniServer.start({ socketPath: name, handlers: { enrol: async () => (await gate, 'enrolled') } });
  try {
    // a raw client that sends a request and hangs up before the answer
    await new Promise<void>((resolve, reject) => {
      const body = conf();
      const s = connect(socketAddress(name), () => {
        s.write(`POST /v1/cni/run HTTP/1.1\r\nHost: x\r\nCni-Command: ADD\r\nCni-Containerid: abc\r\nCni-Netns: /n\r\nCni-Ifname: eth0\r\nCni-Args: K8S_POD_NAMESPACE=a;K8S_POD_NAME=b\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
        setTimeout(() => {
          s.destroy();
          resolve();
        }, 100);
      });
      s.on('error', reject);
    });
    release();
    await new Promise((r) => setTimeout(r, 50));
    const a = await run(name, ENV, conf());
    assert.equal(a.status, 200);
  } finally {
    await server.close();
  }
});
