// Tests of the demo/test apps and their images.
// - Everywhere: each app runs straight from test/cluster/apps/src with node on loopback (ephemeral
//   ports) and is checked as a black box: echo's JSON and helpers, tcp-echo's greeting, gRPC unary
//   and streaming, the load client's results and caps, graceful SIGTERM; plus the pure helpers of
//   the image builder (dependency closure, archive merging).
// - As root: builds (or takes from the cache) the demo images and the Ambit image from the real
//   Dockerfile, checks them with buildah, imports them into a throwaway containerd in a network
//   namespace of ours, and runs them over the CRI: the apps talk to each other inside a pod, the
//   tools are there, every container stops cleanly on SIGTERM, and the Ambit image loads dist/src.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { cleanupHostLeftovers, nodeCgroupParent, startContainerd, stopContainerd, type ContainerdInstance } from '../runtime/containerd.js';
import { CriClient, type ContainerConfig, type PodSandboxConfig } from '../runtime/cri.js';
import { buildah, ensurePauseImage, importImage } from '../runtime/images.js';
import { run, waitFor } from '../runtime/proc.js';
import { appsSourceDir, repoRoot, rootCandidates } from './files.js';
import {
  AMBIT_IMAGE,
  DEMO_COMMANDS,
  DEMO_IMAGES,
  DEMO_IMAGE_SPECS,
  archiveStem,
  distinctArchives,
  ensureAmbitImage,
  ensureAppImages,
  mergeArchiveManifests,
  mergeRepositories,
  packageClosure,
  resolvePackageDir,
  type DemoApp,
} from './images.js';

const SRC = appsSourceDir();

// ---------- running an app as a child process ----------

interface App {
  child: ChildProcess;
  port: number;
  output: () => string;
  /** SIGTERM, then the exit code (fails the test if it takes longer than `ms`). */
  terminate: (ms?: number) => Promise<number | null>;
}

const running = new Set<ChildProcess>();
after(() => {
  for (const child of running) child.kill('SIGKILL');
});

/** Starts `node src/<file>` on an ephemeral port and waits for its "listening on :<port>" line. */
async function startApp(file: string, env: Record<string, string> = {}): Promise<App> {
  const child = spawn(process.execPath, [join(SRC, file)], { env: { ...process.env, PORT: '0', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  child.on('exit', () => running.delete(child));
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const port = await waitFor(`${file} to listen`, () => {
    if (child.exitCode !== null) throw new Error(`${file} exited ${child.exitCode}: ${out}`);
    const m = /listening on :(\d+)/.exec(out);
    return m ? Number(m[1]) : undefined;
  }, 10_000, 20);
  const terminate = async (ms = 5000): Promise<number | null> => {
    if (child.exitCode !== null) return child.exitCode;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    const [code] = (await exited) as [number | null];
    clearTimeout(timer);
    return code;
  };
  return { child, port, output: () => out, terminate };
}

/** Runs `node src/<file> ...args` to completion (bounded), resolving exit code and output. */
async function runCli(file: string, args: string[], timeoutMs = 20_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [join(SRC, file), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  running.delete(child);
  return { code, stdout, stderr };
}

async function get(port: number, path: string, init: RequestInit = {}): Promise<{ status: number; text: string; ms: number }> {
  const t = Date.now();
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { ...init, signal: AbortSignal.timeout(10_000) });
  return { status: res.status, text: await res.text(), ms: Date.now() - t };
}

/** Connects to a TCP port, sends `data` (after the first chunk arrives when `afterGreeting`), collects `bytes` bytes. */
function tcpExchange(port: number, data: string, bytes: number, afterGreeting = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let got = '';
    let sent = false;
    const send = () => {
      if (sent) return;
      sent = true;
      socket.write(data);
    };
    socket.setTimeout(5000, () => socket.destroy(new Error(`timeout; got ${JSON.stringify(got)}`)));
    socket.on('connect', () => afterGreeting || send());
    socket.on('data', (d) => {
      got += d.toString();
      send();
      if (got.length < bytes) return;
      socket.end();
      resolve(got);
    });
    socket.on('error', reject);
  });
}

interface EchoReply {
  pod: string;
  namespace: string;
  podIp: string;
  node: string;
  version: string;
  hostname: string;
  peer: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  bodyBytes: number;
}

// ---------- echo-server ----------

describe('echo-server', () => {
  const env = { POD_NAME: 'echo-7d9f', POD_NAMESPACE: 'demo', POD_IP: '10.244.1.5', NODE_NAME: 'node-1', VERSION: 'v2' };
  let app: App;
  before(async () => {
    app = await startApp('echo.js', env);
  });
  after(async () => {
    await app?.terminate();
  });

  test('answers with the pod identity from the downward API env, the peer, method, path and headers', async () => {
    const res = await get(app.port, '/some/path?x=1', { method: 'POST', headers: { 'x-test': 'yes' }, body: 'hello' });
    assert.equal(res.status, 200);
    const body = JSON.parse(res.text) as EchoReply;
    assert.equal(body.pod, 'echo-7d9f');
    assert.equal(body.namespace, 'demo');
    assert.equal(body.podIp, '10.244.1.5');
    assert.equal(body.node, 'node-1');
    assert.equal(body.version, 'v2');
    assert.equal(body.peer, '127.0.0.1', 'IPv4 peer without the ::ffff: prefix');
    assert.equal(body.method, 'POST');
    assert.equal(body.path, '/some/path?x=1');
    assert.equal(body.headers['x-test'], 'yes');
    assert.equal(body.bodyBytes, 5);
  });

  test('/healthz is 200, and 503 between POST /healthz/fail and POST /healthz/ok', async () => {
    assert.equal((await get(app.port, '/healthz')).status, 200);
    assert.equal((await get(app.port, '/healthz/fail')).status, 405, 'GET does not flip health');
    assert.equal((await get(app.port, '/healthz/fail', { method: 'POST' })).status, 200);
    assert.equal((await get(app.port, '/healthz')).status, 503);
    assert.equal((await get(app.port, '/healthz/ok', { method: 'POST' })).status, 200);
    assert.equal((await get(app.port, '/healthz')).status, 200);
  });

  test('/status/<code> answers that code with the echo body; /delay/<ms> waits first', async () => {
    const teapot = await get(app.port, '/status/418');
    assert.equal(teapot.status, 418);
    assert.equal((JSON.parse(teapot.text) as EchoReply).pod, 'echo-7d9f');
    assert.equal((await get(app.port, '/status/503')).status, 503);
    assert.equal((await get(app.port, '/status/999')).status, 400);
    const slow = await get(app.port, '/delay/250');
    assert.equal(slow.status, 200);
    assert.ok(slow.ms >= 240, `took ${slow.ms} ms`);
  });

  test('/bytes/<n> answers exactly n bytes of octet-stream, also twice in a row and smaller after larger', async () => {
    for (const n of [1_048_576, 1_048_576, 10, 0]) {
      const res = await fetch(`http://127.0.0.1:${app.port}/bytes/${n}`, { signal: AbortSignal.timeout(10_000) });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'application/octet-stream');
      assert.equal(res.headers.get('content-length'), String(n));
      assert.equal((await res.arrayBuffer()).byteLength, n);
    }
    assert.equal((await get(app.port, '/bytes/999999999')).status, 413, 'over the cap');
  });

  test('logs one access line per request', () => {
    assert.match(app.output(), /^POST \/some\/path\?x=1 from 127\.0\.0\.1 -> 200$/m);
  });

  test('SIGTERM lets an in-flight request finish, then exits 0', async () => {
    const own = await startApp('echo.js', { QUIET: '1' });
    const pending = get(own.port, '/delay/400');
    await new Promise((r) => setTimeout(r, 100));
    const code = await own.terminate();
    const res = await pending;
    assert.equal(res.status, 200);
    assert.equal(code, 0);
    assert.match(own.output(), /SIGTERM: draining\nbye/);
    assert.doesNotMatch(own.output(), /GET \/delay/, 'QUIET=1 silences the access log');
  });

  test('request routing table', async () => {
    const { route } = (await import(pathToFileURL(join(SRC, 'echo.js')).href)) as { route: (m: string, p: string) => unknown };
    const cases: Array<[string, string, unknown]> = [
      ['GET', '/', { kind: 'echo', status: 200, delayMs: 0 }],
      ['GET', '/healthz?x', { kind: 'health' }],
      ['POST', '/healthz/fail', { kind: 'set-health', healthy: false }],
      ['PUT', '/healthz/ok', { kind: 'status', status: 405 }],
      ['GET', '/status/204', { kind: 'echo', status: 204, delayMs: 0 }],
      ['GET', '/status/99', { kind: 'echo', status: 200, delayMs: 0 }],
      ['GET', '/status/100', { kind: 'status', status: 400 }],
      ['GET', '/delay/10', { kind: 'echo', status: 200, delayMs: 10 }],
      ['GET', '/delay/99999999', { kind: 'echo', status: 200, delayMs: 60_000 }],
      ['GET', '/bytes/0', { kind: 'bytes', size: 0 }],
      ['GET', '/bytes/1048576?x', { kind: 'bytes', size: 1_048_576 }],
      ['GET', '/bytes/67108864', { kind: 'bytes', size: 64 * 1024 * 1024 }],
      ['GET', '/bytes/67108865', { kind: 'status', status: 413 }],
      ['GET', '/bytes/-1', { kind: 'echo', status: 200, delayMs: 0 }],
    ];
    for (const [method, path, want] of cases) assert.deepEqual(route(method, path), want, `${method} ${path}`);
  });
});

// ---------- tcp-echo ----------

test('tcp-echo echoes bytes, with no greeting unless GREETING is set', async () => {
  const app = await startApp('tcp-echo.js', { QUIET: '1' });
  try {
    assert.equal(await tcpExchange(app.port, 'ping\n', 5), 'ping\n');
  } finally {
    assert.equal(await app.terminate(), 0);
  }
});

test('tcp-echo with GREETING speaks first (server-first protocol), then echoes', async () => {
  const app = await startApp('tcp-echo.js', { GREETING: 'hello from tcp-echo' });
  try {
    // The client sends nothing until it has read the greeting.
    const got = await tcpExchange(app.port, 'abc\n', 'hello from tcp-echo\nabc\n'.length, true);
    assert.equal(got, 'hello from tcp-echo\nabc\n');
    assert.match(app.output(), /connection from 127\.0\.0\.1:\d+/);
  } finally {
    assert.equal(await app.terminate(), 0);
  }
});

// ---------- gRPC ----------

describe('grpc-server and grpc-client', () => {
  let app: App;
  before(async () => {
    app = await startApp('grpc-server.js', { POD_NAME: 'grpc-1', POD_NAMESPACE: 'demo', VERSION: 'v1', NODE_NAME: 'node-2' });
  });
  after(async () => {
    assert.equal(await app?.terminate(), 0);
  });

  test('unary Say answers with the pod identity and the peer', async () => {
    const { code, stdout, stderr } = await runCli('grpc-client.js', [`127.0.0.1:${app.port}`, 'hi there']);
    assert.equal(code, 0, stderr);
    const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(lines, [{ message: 'hi there', seq: 0, pod: 'grpc-1', namespace: 'demo', version: 'v1', node: 'node-2', peer: '127.0.0.1' }]);
  });

  test('server streaming sends N replies in order', async () => {
    const { code, stdout, stderr } = await runCli('grpc-client.js', [`127.0.0.1:${app.port}`, 'tick', '--stream', '4', '--interval', '20']);
    assert.equal(code, 0, stderr);
    const replies = stdout.trim().split('\n').map((l) => JSON.parse(l) as { seq: number; message: string });
    assert.deepEqual(replies.map((r) => r.seq), [0, 1, 2, 3]);
    assert.ok(replies.every((r) => r.message === 'tick'));
  });

  test('the client reports an unreachable server with the gRPC status and exit 1, bad usage with exit 2', async () => {
    const down = await runCli('grpc-client.js', ['127.0.0.1:1', 'x', '--timeout', '2000']);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /UNAVAILABLE|DEADLINE_EXCEEDED/);
    const usage = await runCli('grpc-client.js', ['only-one-arg']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /usage: grpc-client/);
  });

  test('grpc-js peer strings reduce to the address', async () => {
    const { peerAddress } = (await import(pathToFileURL(join(SRC, 'grpc-common.js')).href)) as { peerAddress: (p: string) => string };
    const cases: Array<[string, string]> = [
      ['127.0.0.1:5000', '127.0.0.1'],
      ['::ffff:10.244.1.7:43902', '10.244.1.7'],
      ['[::1]:80', '::1'],
      ['ipv4:10.0.0.1:9', '10.0.0.1'],
      ['[::ffff:10.1.2.3]:7', '10.1.2.3'],
    ];
    for (const [peer, want] of cases) assert.equal(peerAddress(peer), want, peer);
  });
});

// ---------- load ----------

interface LoadResult {
  count: number;
  ok: number;
  errors: number;
  planned: number | null;
  statusCodes: Record<string, number>;
  errorKinds: Record<string, number>;
  elapsedMs: number;
  stoppedEarly: boolean;
  latencyMs: { min?: number; p50?: number; p90?: number; p99?: number; max?: number };
}

describe('load', () => {
  let echo: App;
  before(async () => {
    echo = await startApp('echo.js', { QUIET: '1' });
  });
  after(async () => {
    await echo?.terminate();
  });

  test('--requests N with concurrency sends exactly N and reports ordered percentiles', async () => {
    const { code, stdout, stderr } = await runCli('load.js', ['--url', `http://127.0.0.1:${echo.port}/`, '--requests', '200', '--concurrency', '8']);
    assert.equal(code, 0, stderr);
    const r = JSON.parse(stdout) as LoadResult;
    assert.equal(r.count, 200);
    assert.equal(r.ok, 200);
    assert.equal(r.errors, 0);
    assert.deepEqual(r.statusCodes, { 200: 200 });
    const { min, p50, p90, p99, max } = r.latencyMs;
    assert.ok(min! <= p50! && p50! <= p90! && p90! <= p99! && p99! <= max!, JSON.stringify(r.latencyMs));
  });

  test('--new-connection opens one TCP connection per request; by default workers keep theirs', async () => {
    let connections = 0;
    const server = createServer((_req, res) => res.end('ok'));
    server.on('connection', () => connections++);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    try {
      const fresh = await runCli('load.js', ['--url', url, '--requests', '30', '--concurrency', '3', '--new-connection']);
      assert.equal(fresh.code, 0, fresh.stderr);
      const r = JSON.parse(fresh.stdout) as LoadResult & { newConnection: boolean };
      assert.equal(r.ok, 30);
      assert.equal(r.newConnection, true);
      assert.equal(connections, 30);
      connections = 0;
      const kept = await runCli('load.js', ['--url', url, '--requests', '30', '--concurrency', '3']);
      assert.equal(kept.code, 0, kept.stderr);
      assert.ok(connections <= 3, `${connections} connections for 3 keep-alive workers`);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  test('--warmup runs first and is not counted; its connections carry the measured run', async () => {
    let connections = 0;
    let requests = 0;
    const server = createServer((_req, res) => {
      requests++;
      res.end('ok');
    });
    server.on('connection', () => connections++);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    try {
      const t = Date.now();
      const { code, stdout, stderr } = await runCli('load.js', ['--url', url, '--warmup', '0.3', '--rps', '100', '--requests', '10', '--concurrency', '4']);
      assert.equal(code, 0, stderr);
      const r = JSON.parse(stdout) as LoadResult;
      assert.equal(r.count, 10, 'only the measured requests are reported');
      assert.ok(requests > 10, `the server saw the warm-up too (${requests} requests)`);
      assert.ok(connections <= 4, `${connections} connections: the run reused the warm-up's`);
      assert.ok(r.elapsedMs < 300, `elapsed ${r.elapsedMs} ms excludes the warm-up`);
      assert.ok(Date.now() - t >= 300, 'the warm-up ran');
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
    const bad = await runCli('load.js', ['--url', url, '--requests', '1', '--warmup', '61']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--warmup must be between 0 and 60/);
  });

  test('counts response body bytes and their rate', async () => {
    const { code, stdout, stderr } = await runCli('load.js', ['--url', `http://127.0.0.1:${echo.port}/bytes/100000`, '--requests', '5', '--concurrency', '2']);
    assert.equal(code, 0, stderr);
    const r = JSON.parse(stdout) as LoadResult & { bytes: number; megabytesPerS: number };
    assert.equal(r.bytes, 500_000);
    assert.ok(Math.abs(r.megabytesPerS - 0.5 / (r.elapsedMs / 1000)) <= 0.05 * r.megabytesPerS + 0.001, JSON.stringify(r));
  });

  test('--rps with --duration paces rps*duration requests over the duration', async () => {
    const { code, stdout, stderr } = await runCli('load.js', ['--url', `http://127.0.0.1:${echo.port}/`, '--rps', '40', '--duration', '0.5', '--concurrency', '2']);
    assert.equal(code, 0, stderr);
    const r = JSON.parse(stdout) as LoadResult;
    assert.equal(r.planned, 20);
    assert.equal(r.count, 20);
    assert.ok(r.elapsedMs >= 450 && r.elapsedMs < 3000, `elapsed ${r.elapsedMs} ms`);
  });

  test('--duration alone runs closed-loop and stops at the duration', async () => {
    const t = Date.now();
    const { code, stdout } = await runCli('load.js', ['--url', `http://127.0.0.1:${echo.port}/delay/50`, '--duration', '0.4', '--concurrency', '2']);
    assert.equal(code, 0);
    const r = JSON.parse(stdout) as LoadResult;
    assert.ok(r.count >= 4 && r.count <= 20, `count ${r.count}`);
    assert.ok(Date.now() - t < 5000);
  });

  test('--requests with --duration stops at the duration and says it stopped early', async () => {
    const t = Date.now();
    const { stdout } = await runCli('load.js', ['--url', `http://127.0.0.1:${echo.port}/delay/100`, '--requests', '1000', '--duration', '0.3']);
    const r = JSON.parse(stdout) as LoadResult;
    assert.equal(r.stoppedEarly, true);
    assert.ok(r.count >= 2 && r.count <= 4, `count ${r.count}`);
    assert.ok(Date.now() - t < 3000);
  });

  test('5xx responses and timeouts count as errors; a slow server cannot stretch the run', async () => {
    const five = JSON.parse((await runCli('load.js', ['--url', `http://127.0.0.1:${echo.port}/status/503`, '--requests', '3'])).stdout) as LoadResult;
    assert.equal(five.errors, 3);
    assert.deepEqual(five.statusCodes, { 503: 3 });
    const t = Date.now();
    const slow = await runCli('load.js', ['--url', `http://127.0.0.1:${echo.port}/delay/5000`, '--requests', '2', '--concurrency', '2', '--timeout', '200']);
    assert.equal(slow.code, 1, 'exit 1 when any request failed');
    const r = JSON.parse(slow.stdout) as LoadResult;
    assert.deepEqual(r.errorKinds, { ETIMEDOUT: 2 });
    assert.ok(Date.now() - t < 3000, 'bounded by --timeout');
    const refused = JSON.parse((await runCli('load.js', ['--url', 'http://127.0.0.1:1/', '--requests', '2'])).stdout) as LoadResult;
    assert.deepEqual(refused.errorKinds, { ECONNREFUSED: 2 });
  });

  test('arguments beyond the hard caps are refused with exit 2', async () => {
    const url = `http://127.0.0.1:${echo.port}/`;
    const cases: Array<[string[], RegExp]> = [
      [['--url', url, '--requests', '1000000'], /--requests must be between 1 and 200000/],
      [['--url', url, '--duration', '3600'], /--duration must be between/],
      [['--url', url, '--requests', '10', '--concurrency', '5000'], /--concurrency must be between 1 and 256/],
      [['--url', url, '--rps', '20000', '--duration', '60'], /the cap is 200000/],
      [['--url', url, '--rps', '1', '--requests', '1000'], /would take 1000 s; the cap is 300 s/],
      [['--url', url], /give --requests or --duration/],
      [['--url', 'ftp://x/', '--requests', '1'], /http:\/\/ or https:\/\//],
      [['--requests', '1'], /--url is required/],
      [['--url', url, '--requests', '1', '--bogus'], /unknown flag --bogus/],
    ];
    for (const [args, message] of cases) {
      const { code, stderr, stdout } = await runCli('load.js', args);
      assert.equal(code, 2, `${args.join(' ')}: ${stdout}`);
      assert.match(stderr, message);
    }
  });

  test('nearest-rank percentiles', async () => {
    const { percentile } = (await import(pathToFileURL(join(SRC, 'load.js')).href)) as { percentile: (s: number[], p: number) => number | undefined };
    const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
    const cases: Array<[number[], number, number | undefined]> = [
      [[], 50, undefined],
      [[7], 99, 7],
      [hundred, 50, 50],
      [hundred, 90, 90],
      [hundred, 99, 99],
      [hundred, 100, 100],
      [[1, 2, 3], 50, 2],
      [[1, 2, 3], 0, 1],
    ];
    for (const [sorted, p, want] of cases) assert.equal(percentile(sorted, p), want, `p${p} of ${sorted.length}`);
  });
});

// ---------- idle (the tools image's entry point) ----------

test('idle keeps running and exits 0 at once on SIGTERM', async () => {
  const child = spawn('sh', [join(SRC, 'idle.sh')], { stdio: 'ignore' });
  running.add(child);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(child.exitCode, null, 'still running');
  const t = Date.now();
  child.kill('SIGTERM');
  const [code] = (await once(child, 'exit')) as [number | null];
  running.delete(child);
  assert.equal(code, 0);
  assert.ok(Date.now() - t < 2000);
});

// ---------- image builder helpers ----------

test('the gRPC packages come with their whole run-time dependency closure and nothing else', async () => {
  const closure = await packageClosure(repoRoot(), ['@grpc/grpc-js', '@grpc/proto-loader']);
  const names = closure.map((p) => p.name);
  for (const must of ['@grpc/grpc-js', '@grpc/proto-loader', '@js-sdsl/ordered-map', 'protobufjs', 'long', 'lodash.camelcase', 'yargs']) {
    assert.ok(names.includes(must), `${must} in closure`);
  }
  for (const mustNot of ['typescript', '@kubernetes/client-node', 'pino', '@types/ws']) assert.ok(!names.includes(mustNot), `${mustNot} not in closure`);
  assert.ok(closure.every((p) => p.dir.startsWith('node_modules/') && /^\d+\.\d+\.\d+/.test(p.version)));
  await assert.rejects(packageClosure(repoRoot(), ['no-such-package-ambit']), /no-such-package-ambit \(needed by the demo apps\) is not installed/);
});

test('package resolution looks in nested node_modules first, then up to the root', () => {
  const present = new Set(['/r/node_modules/a/node_modules/b/package.json', '/r/node_modules/b/package.json', '/r/node_modules/c/package.json']);
  const exists = (p: string) => present.has(p);
  assert.equal(resolvePackageDir('/r', '/r/node_modules/a', 'b', exists), '/r/node_modules/a/node_modules/b');
  assert.equal(resolvePackageDir('/r', '/r/node_modules/a', 'c', exists), '/r/node_modules/c');
  assert.equal(resolvePackageDir('/r', '/r/node_modules/@s/x', 'c', exists), '/r/node_modules/c');
  assert.equal(resolvePackageDir('/r', '/r/node_modules/a', 'd', exists), undefined);
});

test('docker-archive manifests merge by tag; shared layers are listed by the same names', () => {
  const base = 'base.tar';
  const merged = mergeArchiveManifests([
    [{ Config: 'c1.json', RepoTags: ['localhost/a:1'], Layers: [base, 'app.tar'] }],
    [{ Config: 'c2.json', RepoTags: ['localhost/b:1'], Layers: [base, 'app.tar'] }],
    [{ Config: 'c3.json', RepoTags: ['localhost/a:1', 'localhost/c:1'], Layers: [base] }],
  ]);
  assert.deepEqual(merged, [
    { Config: 'c3.json', RepoTags: ['localhost/a:1'], Layers: [base] },
    { Config: 'c2.json', RepoTags: ['localhost/b:1'], Layers: [base, 'app.tar'] },
    { Config: 'c3.json', RepoTags: ['localhost/c:1'], Layers: [base] },
  ]);
  assert.deepEqual(mergeRepositories([{ 'localhost/a': { '1': 'x' } }, { 'localhost/a': { '2': 'y' }, 'localhost/b': { '1': 'z' } }]), {
    'localhost/a': { '1': 'x', '2': 'y' },
    'localhost/b': { '1': 'z' },
  });
});

test('image names, entry points and archive names', () => {
  assert.deepEqual(DEMO_IMAGES, {
    echo: 'localhost/ambit-demo-echo:1',
    'tcp-echo': 'localhost/ambit-demo-tcp-echo:1',
    grpc: 'localhost/ambit-demo-grpc:1',
    load: 'localhost/ambit-demo-load:1',
    tools: 'localhost/ambit-demo-tools:1',
  });
  for (const spec of Object.values(DEMO_IMAGE_SPECS)) {
    const command = spec.entrypoint[0]!.replace('/usr/local/bin/', '');
    assert.ok(DEMO_COMMANDS[command], `${command} is installed`);
  }
  for (const file of Object.values(DEMO_COMMANDS)) assert.ok(existsSync(join(SRC, file)), file);
  assert.equal(archiveStem('ambit-dev-0123456789abcdef.tar'), 'ambit-dev-');
  assert.equal(archiveStem('ambit-demo-all-0123456789abcdef.tar'), 'ambit-demo-all-');
  assert.equal(archiveStem('rootfs-bookworm.tar'), undefined);
  const img = (name: string, archive: string) => ({ name, archive, key: 'k', built: false, ms: 0 });
  assert.deepEqual(distinctArchives([img('a', '/x.tar'), img('b', '/x.tar'), img('c', '/y.tar')]), ['/x.tar', '/y.tar']);
});

test('the repository root is found from the source tree and from a build output dir', () => {
  assert.deepEqual(rootCandidates('/w/repo/.cache/out/test/cluster/apps'), ['/w/repo/.cache/out', '/w/repo/.cache', '/w/repo', '/w', '/']);
  assert.deepEqual(rootCandidates('/w/repo/test/cluster/apps'), ['/w/repo', '/w', '/']);
  assert.deepEqual(rootCandidates('/elsewhere'), []);
});

// ---------- the images, built and run for real (root) ----------

const isRoot = process.getuid?.() === 0;
const rootOnly = { skip: isRoot ? false : 'needs root (buildah, network namespaces, containerd); CI runs as root' } as const;

describe('images (root)', rootOnly, () => {
  const NODE = `ap${process.pid}`;
  const NETNS = `ambit-apps-test-${process.pid}`;
  const DIR = `/var/lib/ambit-apps-test-${process.pid}`;
  const POD_CIDR = '10.244.78.0/24';
  const timings: Record<string, number | boolean> = {};
  let inst: ContainerdInstance | undefined;
  let cri: CriClient | undefined;

  before(async () => {
    let t = Date.now();
    const apps = await ensureAppImages();
    timings.appImagesMs = Date.now() - t;
    timings.appImagesBuilt = apps[0]!.built;
    t = Date.now();
    const ambit = await ensureAmbitImage();
    timings.ambitImageMs = Date.now() - t;
    timings.ambitImageBuilt = ambit.built;
    const pause = await ensurePauseImage();
    await run(['ip', 'netns', 'add', NETNS]);
    await run(['ip', '-n', NETNS, 'link', 'set', 'lo', 'up']);
    inst = await startContainerd({ name: NODE, netns: NETNS, dir: DIR, podCidr: POD_CIDR, sandboxImage: pause.name });
    t = Date.now();
    for (const archive of distinctArchives([pause, ...apps, ambit])) await importImage(inst.socket, archive, inst.snapshotter);
    timings.importMs = Date.now() - t;
    cri = new CriClient(inst.socket);
  }, { timeout: 20 * 60_000 });

  after(async () => {
    cri?.close();
    if (inst) await stopContainerd(inst).catch(() => undefined);
    await run(['ip', 'netns', 'del', NETNS]).catch(() => undefined);
    await cleanupHostLeftovers().catch(() => undefined);
    console.log(`# apps image timings: ${JSON.stringify(timings)}`);
  });

  test('buildah holds every image, each demo image with its app as the entry point', async () => {
    const listed = await buildah(['images', '--format', '{{.Name}}:{{.Tag}}']);
    for (const name of [...Object.values(DEMO_IMAGES), AMBIT_IMAGE]) assert.ok(listed.split('\n').includes(name), `${name} in buildah images`);
    for (const [app, spec] of Object.entries(DEMO_IMAGE_SPECS) as Array<[DemoApp, (typeof DEMO_IMAGE_SPECS)[DemoApp]]>) {
      const config = (JSON.parse(await buildah(['inspect', '--type', 'image', spec.name])) as { OCIv1: { config: Record<string, unknown> } }).OCIv1.config;
      assert.deepEqual(config.Entrypoint, spec.entrypoint, app);
      assert.equal(config.Cmd, undefined, `${app}: no CMD left over from the base`);
      assert.equal((config.Labels as Record<string, string>)['io.ambit.demo.app'], app);
    }
    const ambit = (JSON.parse(await buildah(['inspect', '--type', 'image', AMBIT_IMAGE])) as { OCIv1: { config: Record<string, unknown> } }).OCIv1.config;
    assert.deepEqual(ambit.Entrypoint, ['node']);
    assert.equal(ambit.WorkingDir, '/opt/ambit');
    assert.ok((ambit.Env as string[]).includes('NODE_ENV=production'));
  });

  test('one import of the demo archive gives the node all five demo images', async () => {
    for (const name of [...Object.values(DEMO_IMAGES), AMBIT_IMAGE]) {
      const image = await cri!.imageStatus(name);
      assert.ok(image, `${name} known to the CRI`);
      assert.deepEqual(image.repoTags, [name]);
    }
  });

  function sandboxConfig(name: string): PodSandboxConfig {
    const uid = randomUUID();
    return {
      metadata: { name, uid, namespace: 'demo', attempt: 0 },
      hostname: name,
      logDirectory: join(DIR, 'pods', `demo_${name}_${uid}`),
      labels: { 'io.kubernetes.pod.name': name, 'io.kubernetes.pod.namespace': 'demo', 'io.kubernetes.pod.uid': uid },
      linux: { cgroupParent: nodeCgroupParent(NODE, uid), securityContext: { namespaceOptions: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } },
    };
  }

  /** A container as the kubelet would make it, with the downward-API env the apps read. */
  function container(name: string, image: string, extra: Partial<ContainerConfig> = {}, env: Record<string, string> = {}): ContainerConfig {
    const downward = { POD_NAME: 'apps-pod', POD_NAMESPACE: 'demo', NODE_NAME: NODE, VERSION: 'v1' };
    return {
      metadata: { name, attempt: 0 },
      image: { image },
      envs: Object.entries({ ...downward, ...env }).map(([key, value]) => ({ key, value })),
      logPath: `${name}/0.log`,
      labels: { 'io.kubernetes.container.name': name },
      ...extra,
    };
  }

  test('the demo images run as a pod: apps by their entry points, tools for exec, clean SIGTERM exits', async () => {
    const sb = sandboxConfig('apps-pod');
    const sandboxId = await cri!.runPodSandbox(sb);
    const podIp = (await cri!.podSandboxStatus(sandboxId)).status?.network?.ip ?? '';
    assert.match(podIp, /^10\.244\.78\.\d+$/);
    const ids: Record<string, string> = {};
    const specs: Array<[string, ContainerConfig]> = [
      ['echo', container('echo', DEMO_IMAGES.echo)],
      ['tcp-echo', container('tcp-echo', DEMO_IMAGES['tcp-echo'], {}, { GREETING: 'hi from tcp-echo' })],
      ['grpc', container('grpc', DEMO_IMAGES.grpc)],
      ['tools', container('tools', DEMO_IMAGES.tools)],
    ];
    for (const [name, config] of specs) {
      ids[name] = await cri!.createContainer(sandboxId, config, sb);
      await cri!.startContainer(ids[name]!);
    }
    // From the node, over the CNI bridge: echo-server answers with the downward-API identity.
    const body = await waitFor(
      'echo-server on the pod IP',
      async () => run(['ip', 'netns', 'exec', NETNS, 'curl', '-sS', '--max-time', '2', `http://${podIp}:8080/from-node`]).catch(() => undefined),
      20_000,
      100,
    );
    const echo = JSON.parse(body) as EchoReply;
    assert.equal(echo.pod, 'apps-pod');
    assert.equal(echo.version, 'v1');
    assert.equal(echo.path, '/from-node');
    assert.equal(echo.peer, '10.244.78.1');

    const exec = async (cmd: string[]) => {
      const r = await cri!.execSync(ids.tools!, cmd, 30);
      return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
    };
    const tools = await exec(['sh', '-c', 'for c in curl dig nc ip ps node echo-server tcp-echo grpc-server grpc-client load idle; do command -v $c >/dev/null || echo missing $c; done']);
    assert.equal(tools.out, '', 'every tool is on PATH');
    await waitFor('grpc-server to listen', async () => ((await exec(['grpc-client', 'localhost:50051', 'ready'])).code === 0 ? true : undefined), 20_000, 200);
    const grpcStream = await exec(['grpc-client', 'localhost:50051', 'hello', '--stream', '3']);
    assert.equal(grpcStream.code, 0, grpcStream.err);
    assert.deepEqual(grpcStream.out.trim().split('\n').map((l) => (JSON.parse(l) as { seq: number; pod: string }).pod), ['apps-pod', 'apps-pod', 'apps-pod']);
    const greeting = await exec(['sh', '-c', 'sleep 0.3 | nc -q 1 localhost 9000']);
    assert.equal(greeting.out, 'hi from tcp-echo\n');
    const load = await exec(['load', '--url', 'http://localhost:8080/', '--requests', '50', '--concurrency', '4']);
    assert.equal(load.code, 0, load.err);
    assert.equal((JSON.parse(load.out) as LoadResult).ok, 50);

    for (const [name, id] of Object.entries(ids)) {
      const t = Date.now();
      await cri!.stopContainer(id, 10);
      const status = (await cri!.containerStatus(id)).status!;
      assert.equal(status.state, 'CONTAINER_EXITED', name);
      assert.equal(status.exitCode, 0, `${name} exits 0 on SIGTERM`);
      assert.ok(Date.now() - t < 8000, `${name} stopped in ${Date.now() - t} ms, before the SIGKILL deadline`);
      await cri!.removeContainer(id);
    }
    const echoLog = await readFile(join(sb.logDirectory!, 'echo/0.log'), 'utf8');
    assert.match(echoLog, /stdout F GET \/from-node from 10\.244\.78\.1 -> 200$/m);
    await cri!.stopPodSandbox(sandboxId);
    await cri!.removePodSandbox(sandboxId);
  });

  test('the Ambit image from the real Dockerfile holds dist/src and production dependencies only, and loads sys/index.js', async () => {
    const sb = sandboxConfig('ambit-check');
    const sandboxId = await cri!.runPodSandbox(sb);
    // Runs through the image's ENTRYPOINT ["node"]: args only, as a manifest would give them.
    const script = `
      const fs = require('node:fs');
      import('/opt/ambit/dist/src/sys/index.js').then((sys) => {
        const has = (p) => fs.existsSync('/opt/ambit/' + p);
        console.log(JSON.stringify({
          sys: typeof sys.openNetns, cwd: process.cwd(), env: process.env.NODE_ENV,
          deps: ['@grpc/grpc-js', '@kubernetes/client-node', 'koffi', 'pino', 'ws', 'yaml'].filter((d) => has('node_modules/' + d)),
          dev: ['typescript', '@types/ws'].filter((d) => has('node_modules/' + d)),
          files: ['package.json', 'package-lock.json', 'dist/src/sys/index.js', 'dist/test', 'test', 'src'].filter(has),
        }));
      }, (err) => { console.error(err); process.exit(1); });`;
    const id = await cri!.createContainer(sandboxId, container('ambit', AMBIT_IMAGE, { args: ['-e', script] }), sb);
    await cri!.startContainer(id);
    const status = await waitFor('the Ambit check to exit', async () => {
      const s = (await cri!.containerStatus(id)).status!;
      return s.state === 'CONTAINER_EXITED' ? s : undefined;
    }, 30_000, 100);
    const log = await readFile(join(sb.logDirectory!, 'ambit/0.log'), 'utf8');
    assert.equal(status.exitCode, 0, log);
    const line = /stdout F (\{.*\})$/m.exec(log)?.[1];
    assert.ok(line, log);
    assert.deepEqual(JSON.parse(line), {
      sys: 'function',
      cwd: '/opt/ambit',
      env: 'production',
      deps: ['@grpc/grpc-js', '@kubernetes/client-node', 'koffi', 'pino', 'ws', 'yaml'],
      dev: [],
      files: ['package.json', 'package-lock.json', 'dist/src/sys/index.js'],
    });
    await cri!.removeContainer(id);
    await cri!.stopPodSandbox(sandboxId);
    await cri!.removePodSandbox(sandboxId);
  });
});
