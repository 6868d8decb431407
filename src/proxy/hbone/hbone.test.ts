/**
 * HBONE client and server on loopback with a real Ambit CA and real workload certificates (no root
 * needed): tunnels, pooling, identity checks both ways, certificate renewal under traffic, every
 * kind of bad input closing only its own connection or stream, half-close, integrity of a large
 * transfer, and graceful drain. Every wait is bounded.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http2 from 'node:http2';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import { HboneClient, type HboneConnectRequest } from './client.js';
import { HboneError } from './errors.js';
import { HboneServer, type HboneServerOptions, type RejectEvent } from './server.js';
import { createTestPki, type TestPki } from './testing.js';
import type { TunnelEvent, WorkloadCredentials } from './types.js';

const TD = 'cluster.local';
const FRONTEND = `spiffe://${TD}/ns/shop/sa/frontend`;
const BACKEND = `spiffe://${TD}/ns/shop/sa/backend`;

let pki: TestPki;
let otherPki: TestPki;
let frontend: WorkloadCredentials;
let backend: WorkloadCredentials;
let echoPort: number;
const echo = net.createServer({ allowHalfOpen: true }, (s) => {
  s.on('error', () => {});
  s.pipe(s); // echo; our end follows the client's end (half-close passes back)
});

before(async () => {
  pki = await createTestPki(TD);
  otherPki = await createTestPki(TD); // same trust domain, different root: must not be trusted
  frontend = await pki.issue('shop', 'frontend');
  backend = await pki.issue('shop', 'backend');
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  echoPort = (echo.address() as net.AddressInfo).port;
});
after(() => {
  echo.close();
});

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]);
}

/** Connects to the application named in the tunnel's authority, like the agent will. */
function dialApp(host: string, port: number): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, allowHalfOpen: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

interface Stack {
  server: HboneServer;
  client: HboneClient;
  port: number;
  events: TunnelEvent[];
  rejects: RejectEvent[];
  /** a request for the echo app with the defaults */
  req(over?: Partial<HboneConnectRequest>): HboneConnectRequest;
  stop(): Promise<void>;
}

async function stack(over: Partial<HboneServerOptions> = {}, clientOver: Partial<ConstructorParameters<typeof HboneClient>[0]> = {}): Promise<Stack> {
  const events: TunnelEvent[] = [];
  const rejects: RejectEvent[] = [];
  const server = new HboneServer({
    credentials: () => backend,
    trustBundle: () => pki.roots,
    onTunnel: async (t) => dialApp(t.host, t.port),
    onEvent: (e) => events.push(e),
    onReject: (e) => rejects.push(e),
    ...over,
  });
  const { port } = await server.listen({ port: 0, host: '127.0.0.1' });
  const client = new HboneClient({ trustBundle: () => pki.roots, connectTimeoutMs: 3000, responseTimeoutMs: 3000, ...clientOver });
  return {
    server,
    client,
    port,
    events,
    rejects,
    req: (o = {}) => ({ source: frontend, expectedPeer: BACKEND, address: '127.0.0.1', port, authority: `127.0.0.1:${echoPort}`, ...o }),
    async stop() {
      client.destroy();
      await server.close({ drainMs: 200 });
    },
  };
}

/** Writes `data`, ends, and collects everything until the peer ends. */
async function exchange(stream: Duplex, data: Buffer | string, ms = 5000): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
  stream.end(data);
  return withTimeout(done, ms, 'exchange');
}

/** Writes one message and waits for that many bytes back (the stream stays open). */
function ping(stream: Duplex, msg: string, ms = 3000): Promise<string> {
  return withTimeout(
    new Promise<string>((resolve, reject) => {
      let got = '';
      const onData = (c: Buffer): void => {
        got += c.toString();
        if (got.length >= msg.length) {
          stream.off('data', onData);
          stream.off('error', reject);
          resolve(got);
        }
      };
      stream.on('data', onData);
      stream.once('error', reject);
      stream.write(msg);
    }),
    ms,
    `ping ${msg}`,
  );
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function closedWithin(socket: net.Socket | tls.TLSSocket, ms: number): Promise<void> {
  return withTimeout(
    new Promise<void>((resolve) => {
      if (socket.destroyed) return resolve();
      socket.once('close', () => resolve());
      socket.on('error', () => {});
      socket.resume();
    }),
    ms,
    'the server to close the bad connection',
  );
}

/** An h2 session that presents `creds` (raw, to send what the real client never would). */
function rawSession(port: number, creds: WorkloadCredentials | undefined, maxSendHeaderBlockLength?: number): http2.ClientHttp2Session {
  const session = http2.connect(`https://127.0.0.1:${port}`, {
    ...(maxSendHeaderBlockLength ? { maxSendHeaderBlockLength } : {}),
    ca: pki.roots,
    ...(creds ? { cert: creds.certChainPem.join(''), key: creds.keyPem.reveal() } : {}),
    checkServerIdentity: () => undefined,
    minVersion: 'TLSv1.3',
  });
  session.on('error', () => {});
  return session;
}

test('a tunnel carries bytes both ways; both sides see the verified identities', async () => {
  const s = await stack();
  try {
    const tunnel = await s.client.connect(s.req());
    const back = await exchange(tunnel, 'hello through hbone');
    assert.equal(back.toString(), 'hello through hbone');
    await until(() => s.events.some((e) => e.type === 'close'), 2000, 'server close event');
    const open = s.events.find((e) => e.type === 'open')!.tunnel;
    assert.equal(open.peerIdentity, FRONTEND);
    assert.equal(open.localIdentity, BACKEND);
    assert.equal(open.authority, `127.0.0.1:${echoPort}`);
    const closed = s.events.find((e) => e.type === 'close')!.tunnel;
    assert.equal(closed.requestBytes, 19);
    assert.equal(closed.responseBytes, 19);
    assert.equal(closed.responseFlags, '-');
    assert.equal(closed.status, 200);
  } finally {
    await s.stop();
  }
});

test('client.tunnel relays a downstream socket and reports bytes and flags', async () => {
  const clientEvents: TunnelEvent[] = [];
  const s = await stack({}, { onEvent: (e) => clientEvents.push(e) });
  // A captured application connection: one end of a loopback pair.
  const lst = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => lst.listen(0, '127.0.0.1', () => r()));
  try {
    const accepted = new Promise<net.Socket>((r) => lst.once('connection', r));
    const app = net.connect({ port: (lst.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
    const downstream = await accepted;
    const recordP = s.client.tunnel(s.req(), downstream);
    const back = await exchange(app, Buffer.alloc(100_000, 7));
    assert.equal(back.length, 100_000);
    const record = await withTimeout(recordP, 3000, 'tunnel record');
    assert.equal(record.requestBytes, 100_000);
    assert.equal(record.responseBytes, 100_000);
    assert.equal(record.responseFlags, '-');
    assert.deepEqual(clientEvents.map((e) => e.type), ['open', 'close']);

    // a refused tunnel: the downstream is reset, the record says why
    const denied = await stack({ onTunnel: async () => ({ refuse: 403, reason: 'DENY policy shop/no-frontend' }) });
    try {
      const accepted2 = new Promise<net.Socket>((r) => lst.once('connection', r));
      const app2 = net.connect({ port: (lst.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
      app2.on('error', () => {});
      const rec = await withTimeout(denied.client.tunnel(denied.req(), await accepted2), 3000, 'denied record');
      assert.equal(rec.status, 403);
      assert.equal(rec.responseFlags, 'RBAC');
      assert.match(rec.error!, /403.*AuthorizationPolicy/);
      await closedWithin(app2, 2000);
    } finally {
      await denied.stop();
    }
  } finally {
    lst.close();
    await s.stop();
  }
});

test('many tunnels to one destination share one TLS session', async () => {
  const s = await stack();
  try {
    const tunnels = await Promise.all(Array.from({ length: 20 }, () => s.client.connect(s.req())));
    assert.equal(s.client.stats().sessionsOpened, 1);
    assert.equal(s.server.stats().sessions, 1);
    assert.equal(s.server.stats().tunnels, 20);
    const replies = await Promise.all(tunnels.map((t, i) => exchange(t, `msg ${i}`)));
    replies.forEach((r, i) => assert.equal(r.toString(), `msg ${i}`));
    // later tunnels reuse the same session
    await exchange(await s.client.connect(s.req()), 'again');
    assert.equal(s.client.stats().sessionsOpened, 1);
    // another source address is another session (in-pod: another pod's netns)
    await exchange(await s.client.connect(s.req({ sourceAddress: '10.0.0.9' })), 'other pod');
    assert.equal(s.client.stats().sessionsOpened, 2);
  } finally {
    await s.stop();
  }
});

test('a session idle for idleTimeoutMs leaves the pool and closes', async () => {
  const s = await stack({}, { idleTimeoutMs: 100 });
  try {
    await exchange(await s.client.connect(s.req()), 'x');
    await until(() => s.client.stats().sessions === 0, 2000, 'idle session to close');
    await until(() => s.server.stats().sessions === 0, 2000, 'server to see the close');
    await exchange(await s.client.connect(s.req()), 'y');
    assert.equal(s.client.stats().sessionsOpened, 2);
  } finally {
    await s.stop();
  }
});

test('a server with another identity is refused, naming expected and presented identities', async () => {
  const s = await stack();
  try {
    const err = await s.client.connect(s.req({ expectedPeer: `spiffe://${TD}/ns/shop/sa/payments` })).then(
      () => assert.fail('connected to the wrong workload'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof HboneError);
    assert.equal(err.code, 'PEER_IDENTITY');
    assert.match(err.message, /is spiffe:\/\/cluster\.local\/ns\/shop\/sa\/backend, expected spiffe:\/\/cluster\.local\/ns\/shop\/sa\/payments/);
  } finally {
    await s.stop();
  }
});

test('a server certificate from another CA is refused', async () => {
  const impostor = await otherPki.issue('shop', 'backend');
  const s = await stack({ credentials: () => impostor, trustBundle: () => [...pki.roots, ...otherPki.roots] });
  try {
    const err = await s.client.connect(s.req()).then(
      () => assert.fail('trusted a foreign CA'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof HboneError);
    assert.equal(err.code, 'TLS_FAILED');
    assert.match(err.message, /does not chain to the trust bundle/);
  } finally {
    await s.stop();
  }
});

test('a client certificate from another CA is refused at the handshake', async () => {
  const s = await stack();
  try {
    const good = await s.client.connect(s.req());
    const foreign = await otherPki.issue('shop', 'frontend');
    const err = await s.client.connect(s.req({ source: foreign, sourceAddress: 'x' })).then(
      () => assert.fail('server trusted a foreign client'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof HboneError, String(err));
    assert.equal(err.code, 'TLS_FAILED');
    assert.match(err.message, /rejected our client certificate/);
    await until(() => s.rejects.some((r) => r.scope === 'connection'), 2000, 'reject event');
    assert.match(s.rejects[0]!.reason, /does not chain to the trust bundle/);
    assert.equal(await ping(good, 'still here'), 'still here');
    good.end();
  } finally {
    await s.stop();
  }
});

test('bad input closes only its own connection; an established tunnel keeps working', async () => {
  const s = await stack();
  const good = await s.client.connect(s.req());
  try {
    // 1. non-TLS garbage
    const garbage = net.connect({ port: s.port, host: '127.0.0.1' });
    garbage.write(randomBytes(300));
    await closedWithin(garbage, 3000);
    // 2. a plain HTTP/1 request
    const plain = net.connect({ port: s.port, host: '127.0.0.1' });
    plain.write('GET / HTTP/1.1\r\nHost: backend\r\n\r\n');
    await closedWithin(plain, 3000);
    // 3. TLS without a client certificate
    const noCert = tls.connect({ port: s.port, host: '127.0.0.1', ca: pki.roots, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
    await closedWithin(noCert, 3000);
    // 4. TLS with a certificate but ALPN http/1.1 only
    const h1 = tls.connect({ port: s.port, host: '127.0.0.1', ca: pki.roots, cert: frontend.certChainPem.join(''), key: frontend.keyPem.reveal(), ALPNProtocols: ['http/1.1'], checkServerIdentity: () => undefined });
    await closedWithin(h1, 3000);
    // 5. TLS 1.2
    const old = tls.connect({ port: s.port, host: '127.0.0.1', ca: pki.roots, maxVersion: 'TLSv1.2', ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
    await closedWithin(old, 3000);

    await until(() => s.rejects.length >= 5, 2000, 'five reject events');
    const reasons = s.rejects.map((r) => r.reason).join('\n');
    assert.match(reasons, /not a TLS 1\.3 client/);
    assert.match(reasons, /no client certificate/);
    assert.match(reasons, /ALPN/);
    assert.match(reasons, /TLS version|TLS 1\.3/);
    assert.ok(s.rejects.every((r) => r.scope === 'connection'));
    assert.equal(await ping(good, 'alive after bad connections'), 'alive after bad connections');
  } finally {
    good.destroy();
    await s.stop();
  }
});

test('bad requests on a valid session are refused per stream (405, 400, oversized headers)', async () => {
  const s = await stack();
  const good = await s.client.connect(s.req());
  const session = rawSession(s.port, frontend);
  try {
    const status = (headers: http2.OutgoingHttpHeaders): Promise<number | string> =>
      withTimeout(
        new Promise((resolve) => {
          const st = session.request(headers, { endStream: false });
          st.on('error', () => {});
          st.once('response', (h) => resolve(Number(h[':status'])));
          st.once('close', () => resolve(`reset ${st.rstCode}`));
        }),
        3000,
        `response to ${JSON.stringify(headers).slice(0, 80)}`,
      );
    assert.equal(await status({ ':method': 'GET', ':path': '/' }), 405);
    assert.equal(await status({ ':method': 'POST', ':path': '/x' }), 405);
    assert.equal(await status({ ':method': 'CONNECT', ':authority': 'backend.shop:80' }), 400);
    assert.equal(await status({ ':method': 'CONNECT', ':authority': '127.0.0.1' }), 400);
    assert.equal(await status({ ':method': 'CONNECT', ':authority': '127.0.0.1:0' }), 400);
    // a header block over the advertised limit: nghttp2 resets the stream (ENHANCE_YOUR_CALM) once
    // our SETTINGS are acknowledged; before that our own check answers 431
    const over = await status({ ':method': 'CONNECT', ':authority': `127.0.0.1:${echoPort}`, 'x-pad': 'a'.repeat(20_000) });
    assert.ok(over === 431 || over === `reset ${http2.constants.NGHTTP2_ENHANCE_YOUR_CALM}`, String(over));
    const early = rawSession(s.port, frontend); // its first request goes out before our SETTINGS are acknowledged
    const early431 = await withTimeout(
      new Promise<number | string>((resolve) => {
        const st = early.request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${echoPort}`, 'x-pad': 'a'.repeat(20_000) }, { endStream: false });
        st.on('error', () => {});
        st.once('response', (h) => resolve(Number(h[':status'])));
        st.once('close', () => resolve(`reset ${st.rstCode}`));
      }),
      3000,
      'early oversized request',
    );
    early.destroy();
    assert.ok(early431 === 431 || early431 === `reset ${http2.constants.NGHTTP2_ENHANCE_YOUR_CALM}`, String(early431));
    const rejected = s.rejects.filter((r) => r.scope === 'stream').map((r) => r.status);
    assert.deepEqual(rejected.slice(0, 5), [405, 405, 400, 400, 400]);
    // far over what nghttp2 itself accepts: that stream is reset, the session may go; the proxy stays
    const huge = rawSession(s.port, frontend, 300_000);
    const hs = huge.request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${echoPort}`, 'x-pad': 'a'.repeat(200_000) }, { endStream: false });
    hs.on('error', () => {});
    const hugeOutcome = await withTimeout(
      new Promise<string>((resolve) => {
        hs.once('response', (h) => resolve(`status ${String(h[':status'])}`));
        hs.once('close', () => resolve(`reset ${hs.rstCode}`));
      }),
      3000,
      'huge header outcome',
    );
    huge.destroy();
    assert.match(hugeOutcome, /^reset|status 431/);
    assert.equal(await ping(good, 'alive after bad streams'), 'alive after bad streams');
    // the tunnelling client still opens new tunnels
    assert.equal((await exchange(await s.client.connect(s.req()), 'new')).toString(), 'new');
  } finally {
    session.destroy();
    good.destroy();
    await s.stop();
  }
});

test('abusive streams (rapid open/reset, unanswered tunnels) do not hurt other tunnels', async () => {
  let hang = true;
  const s = await stack({
    tunnelSetupTimeoutMs: 300,
    onTunnel: async (t) => {
      if (hang && t.port === 1) return new Promise<Duplex>(() => {}); // never answers: hits the setup timeout
      return dialApp(t.host, t.port);
    },
  });
  const good = await s.client.connect(s.req());
  const session = rawSession(s.port, frontend);
  try {
    await withTimeout(new Promise((r) => session.once('connect', r)), 3000, 'raw session');
    for (let i = 0; i < 500 && !session.destroyed && !session.closed; i++) {
      const st = session.request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${echoPort}` }, { endStream: false });
      st.on('error', () => {});
      st.close(http2.constants.NGHTTP2_CANCEL);
    }
    // tunnels whose setup never finishes get 504 after the setup timeout
    const st = session.destroyed ? undefined : session.request({ ':method': 'CONNECT', ':authority': '127.0.0.1:1' }, { endStream: false });
    if (st) {
      st.on('error', () => {});
      const got = await withTimeout(
        new Promise<number | string>((resolve) => {
          st.once('response', (h) => resolve(Number(h[':status'])));
          st.once('close', () => resolve('closed'));
        }),
        3000,
        'setup timeout answer',
      );
      assert.ok(got === 504 || got === 'closed', String(got));
    }
    assert.equal(await ping(good, 'alive after abuse'), 'alive after abuse');
    hang = false;
    assert.equal((await exchange(await s.client.connect(s.req()), 'fresh')).toString(), 'fresh');
  } finally {
    session.destroy();
    good.destroy();
    await s.stop();
  }
});

test('refusals from onTunnel close only that stream with their status', async () => {
  const s = await stack({
    onTunnel: async (t) => {
      if (t.port === 1) return { refuse: 403, reason: 'denied by policy shop/deny-frontend' };
      if (t.port === 2) return { refuse: 503, reason: 'application refused' };
      if (t.port === 3) throw new Error('connect ECONNREFUSED 127.0.0.1:3');
      return dialApp(t.host, t.port);
    },
  });
  try {
    const good = await s.client.connect(s.req());
    for (const [port, status, text] of [[1, 403, /AuthorizationPolicy/], [2, 503, /not ready/], [3, 502, /refused the connection/]] as const) {
      const err = await s.client.connect(s.req({ authority: `127.0.0.1:${port}` })).then(
        () => assert.fail('tunnel should be refused'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof HboneError);
      assert.equal(err.code, 'TUNNEL_REFUSED');
      assert.equal(err.status, status);
      assert.match(err.message, text);
    }
    assert.equal(await ping(good, 'unaffected'), 'unaffected');
    assert.equal(s.client.stats().sessionsOpened, 1);
    good.end();
  } finally {
    await s.stop();
  }
});

test('server certificate renewal: streaming tunnel continues, new sessions see the new certificate', async () => {
  let current = backend;
  const s = await stack({ credentials: () => current });
  try {
    const old = (await s.client.connect(s.req())) as http2.ClientHttp2Stream;
    const oldSerial = (old.session!.socket as tls.TLSSocket).getPeerCertificate().serialNumber;
    // keep bytes flowing on the old tunnel across the swap
    let pings = 0;
    const pinger = (async () => {
      for (let i = 0; i < 20; i++) {
        assert.equal(await ping(old, `p${i}.`), `p${i}.`);
        pings++;
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    await until(() => pings >= 3, 3000, 'pings before renewal');
    current = await pki.issue('shop', 'backend'); // renewed: same identity, new key and serial
    const fresh = (await s.client.connect(s.req({ sourceAddress: 'new-session' }))) as http2.ClientHttp2Stream;
    const newCert = (fresh.session!.socket as tls.TLSSocket).getPeerCertificate();
    await withTimeout(pinger, 5000, 'pings across renewal');
    assert.equal(pings, 20);
    assert.notEqual(newCert.serialNumber, oldSerial);
    assert.equal((await exchange(fresh, 'new cert')).toString(), 'new cert');
    assert.equal((await exchange(old, 'old session')).toString().endsWith('old session'), true);
  } finally {
    await s.stop();
  }
});

test('client certificate renewal moves new tunnels to a new session; old tunnels finish', async () => {
  const s = await stack();
  try {
    const old = await s.client.connect(s.req());
    const renewed = await pki.issue('shop', 'frontend');
    const fresh = await s.client.connect(s.req({ source: renewed }));
    assert.equal(s.client.stats().sessionsOpened, 2);
    assert.equal(await ping(old, 'old'), 'old');
    assert.equal((await exchange(fresh, 'fresh')).toString(), 'fresh');
    assert.equal((await exchange(old, 'bye')).toString(), 'bye');
    // the old session closes once its last tunnel is done
    await until(() => s.client.stats().sessions === 1, 2000, 'old session to close');
  } finally {
    await s.stop();
  }
});

test('half-close: the client ends its side, the application sees the end and keeps sending', async () => {
  let appSawEnd = false;
  const app = net.createServer({ allowHalfOpen: true }, (sock) => {
    sock.on('error', () => {});
    sock.resume();
    sock.once('end', () => {
      appSawEnd = true;
      // answer after the request side is closed, in three pieces
      let n = 0;
      const timer = setInterval(() => {
        sock.write(`reply${n}.`);
        if (++n === 3) {
          clearInterval(timer);
          sock.end();
        }
      }, 20);
    });
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
  const s = await stack();
  try {
    const t = await s.client.connect(s.req({ authority: `127.0.0.1:${(app.address() as net.AddressInfo).port}` }));
    const back = await exchange(t, 'request then FIN');
    assert.ok(appSawEnd);
    assert.equal(back.toString(), 'reply0.reply1.reply2.');
    await until(() => s.events.some((e) => e.type === 'close'), 2000, 'close event');
    const rec = s.events.find((e) => e.type === 'close')!.tunnel;
    assert.equal(rec.requestBytes, 16);
    assert.equal(rec.responseBytes, 21);
    assert.equal(rec.responseFlags, '-');
  } finally {
    app.close();
    await s.stop();
  }
});

test('a reset by the application resets the tunnel (not a clean end)', async () => {
  const app = net.createServer((sock) => {
    sock.once('data', () => sock.resetAndDestroy());
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
  const s = await stack();
  try {
    const t = await s.client.connect(s.req({ authority: `127.0.0.1:${(app.address() as net.AddressInfo).port}` }));
    // (Node also emits 'end' on a reset HTTP/2 stream; the reset shows in rstCode.)
    const rst = await withTimeout(
      new Promise<number | undefined>((resolve) => {
        t.on('error', () => {});
        t.once('close', () => resolve((t as http2.ClientHttp2Stream).rstCode));
        t.resume();
        t.write('trigger');
      }),
      3000,
      'tunnel reset',
    );
    assert.equal(rst, http2.constants.NGHTTP2_CONNECT_ERROR);
    await until(() => s.events.some((e) => e.type === 'close'), 2000, 'close event');
    assert.equal(s.events.find((e) => e.type === 'close')!.tunnel.responseFlags, 'UC');
  } finally {
    app.close();
    await s.stop();
  }
});

test('64 MiB through a tunnel arrive intact', async () => {
  const s = await stack();
  try {
    const t = await s.client.connect(s.req());
    const block = randomBytes(1 << 20);
    const sent = createHash('sha256');
    const got = createHash('sha256');
    let received = 0;
    const done = new Promise<void>((resolve, reject) => {
      t.on('data', (c: Buffer) => {
        got.update(c);
        received += c.length;
      });
      t.once('end', () => resolve());
      t.once('error', reject);
    });
    const started = Date.now();
    for (let i = 0; i < 64; i++) {
      // vary each MiB so a reordering or duplication would change the hash
      block.writeUInt32BE(i, 0);
      const copy = Buffer.from(block);
      sent.update(copy);
      if (!t.write(copy)) await withTimeout(new Promise((r) => t.once('drain', r)), 10_000, 'drain');
    }
    t.end();
    await withTimeout(done, 60_000, '64 MiB echo');
    const seconds = (Date.now() - started) / 1000;
    assert.equal(received, 64 << 20);
    assert.equal(got.digest('hex'), sent.digest('hex'));
    console.log(`# 64 MiB echoed in ${seconds.toFixed(2)} s (${((2 * 64) / seconds).toFixed(0)} MiB/s both ways)`);
  } finally {
    await s.stop();
  }
});

test('connect timeout and refusal say what to check', async () => {
  const client = new HboneClient({ trustBundle: () => pki.roots, connectTimeoutMs: 200 });
  try {
    // a dial that never completes (like a SYN dropped by a NetworkPolicy)
    const err = await client
      .connect({
        source: frontend,
        expectedPeer: BACKEND,
        address: '10.1.2.3',
        authority: '10.1.2.3:8080',
        connectSocket: () => {
          const sock = new net.Socket();
          (sock as unknown as { connecting: boolean }).connecting = true;
          return sock;
        },
      })
      .then(
        () => assert.fail('should time out'),
        (e: unknown) => e,
      );
    assert.ok(err instanceof HboneError);
    assert.equal(err.code, 'CONNECT_TIMEOUT');
    assert.match(err.message, /connection to 10\.1\.2\.3:15008 timed out after 200 ms — is a NetworkPolicy blocking port 15008/);

    // nothing listening
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const closedPort = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const refused = await client.connect({ source: frontend, expectedPeer: BACKEND, address: '127.0.0.1', port: closedPort, authority: '127.0.0.1:80' }).then(
      () => assert.fail('should be refused'),
      (e: unknown) => e,
    );
    assert.ok(refused instanceof HboneError);
    assert.equal(refused.code, 'CONNECT_REFUSED');
    assert.match(refused.message, /refused — nothing listens on the HBONE port/);

    // something that accepts TCP but never speaks TLS
    const muted = new Set<net.Socket>();
    const mute = net.createServer((sock) => {
      muted.add(sock);
      sock.on('error', () => {});
    });
    await new Promise<void>((r) => mute.listen(0, '127.0.0.1', () => r()));
    try {
      const silent = await client.connect({ source: frontend, expectedPeer: BACKEND, address: '127.0.0.1', port: (mute.address() as net.AddressInfo).port, authority: '127.0.0.1:80' }).then(
        () => assert.fail('should time out'),
        (e: unknown) => e,
      );
      assert.ok(silent instanceof HboneError);
      assert.equal(silent.code, 'TLS_TIMEOUT');
    } finally {
      for (const sock of muted) sock.destroy();
      mute.close();
    }
    await until(() => client.stats().sessions === 0, 2000, 'failed sessions to leave the pool');
  } finally {
    client.destroy();
  }
});

test('graceful drain: GOAWAY, open tunnels go on until drainMs, then everything is closed', async () => {
  const s = await stack();
  try {
    const t = await s.client.connect(s.req());
    assert.equal(await ping(t, 'before'), 'before');
    const started = Date.now();
    const closing = s.server.close({ drainMs: 400 });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(await ping(t, 'during drain'), 'during drain');
    // new tunnels cannot start here any more
    const err = await s.client.connect(s.req()).then(
      () => assert.fail('draining server accepted a tunnel'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof HboneError, String(err));
    await withTimeout(closing, 3000, 'drain');
    const took = Date.now() - started;
    assert.ok(took >= 350 && took < 2000, `drain took ${took} ms`);
    await withTimeout(
      new Promise<void>((r) => (t.destroyed ? r() : t.once('close', () => r()))),
      2000,
      'tunnel cut after drain',
    );
    assert.equal(s.server.stats().sessions, 0);
  } finally {
    await s.stop();
  }
});
