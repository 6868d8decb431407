// Interoperability: a real, independent DNS client (c-ares, inside Node's dns.Resolver) asks a tiny
// UDP + TCP server on 127.0.0.1 that answers with this module's codec and answerLocally. If our
// wire format, name compression, NODATA, truncation (TC → retry over TCP) or TCP framing were
// wrong, c-ares would reject the answers. Loopback only; `dig` is not installed on this machine.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { promises as dns } from 'node:dns';
import { DnsRcode, TcpFrameReader, encodeTcpFrame, DnsFormatError } from './codec.js';
import { answerLocally, buildDnsIndex, buildErrorResponse, type ForwardReason } from './resolve.js';

const manyIps = Array.from({ length: 100 }, (_, i) => `10.244.${1 + Math.floor(i / 50)}.${10 + (i % 50)}`);
const index = buildDnsIndex([
  { hostname: 'echo.demo.svc.cluster.local', vips: ['10.96.0.20'], endpoints: [] },
  { hostname: 'dual.demo.svc.cluster.local', vips: ['10.96.0.21', 'fd00:10:96::21'], endpoints: [] },
  { hostname: 'db.demo.svc.cluster.local', vips: [], endpoints: [{ ip: '10.244.1.5', status: 'ready' }, { ip: '10.244.2.6', status: 'ready' }] },
  { hostname: 'big.demo.svc.cluster.local', vips: [], endpoints: manyIps.map((ip) => ({ ip, status: 'ready' as const })) },
]);

/** What the server did, for assertions: forwarded reasons stand in for the pod's real resolver. */
const seen = { forwarded: [] as ForwardReason[], udpQueries: 0, tcpQueries: 0 };
let udp: dgram.Socket;
let tcp: net.Server;
let port = 0;

function handle(query: Buffer, transport: 'udp' | 'tcp'): Buffer | undefined {
  const r = answerLocally(query, index, { transport });
  if (r.kind === 'answer') return r.response;
  seen.forwarded.push(r.reason);
  // The test has no upstream: say REFUSED, which c-ares reports as EREFUSED.
  return buildErrorResponse(query, DnsRcode.REFUSED);
}

async function listenPair(): Promise<void> {
  // TCP first on an ephemeral port, then UDP on the same number (c-ares retries TCP on the same port).
  for (let attempt = 0; attempt < 20; attempt++) {
    const t = net.createServer((sock) => {
      const reader = new TcpFrameReader();
      sock.on('data', (chunk) => {
        try {
          for (const q of reader.push(chunk)) {
            seen.tcpQueries++;
            const resp = handle(q, 'tcp');
            if (resp) sock.write(encodeTcpFrame(resp));
          }
        } catch (err) {
          if (!(err instanceof DnsFormatError)) throw err;
          sock.destroy();
        }
      });
      sock.on('error', () => sock.destroy());
    });
    await new Promise<void>((resolve, reject) => t.once('error', reject).listen(0, '127.0.0.1', resolve));
    const p = (t.address() as net.AddressInfo).port;
    const u = dgram.createSocket('udp4');
    const bound = await new Promise<boolean>((resolve) => {
      u.once('error', () => resolve(false));
      u.bind(p, '127.0.0.1', () => resolve(true));
    });
    if (!bound) {
      u.close();
      await new Promise<void>((resolve) => t.close(() => resolve()));
      continue;
    }
    u.on('message', (q, rinfo) => {
      seen.udpQueries++;
      const resp = handle(q, 'udp');
      if (resp) u.send(resp, rinfo.port, rinfo.address);
    });
    udp = u;
    tcp = t;
    port = p;
    return;
  }
  throw new Error('could not bind UDP and TCP on one loopback port in 20 attempts');
}

before(listenPair);
after(async () => {
  udp?.close();
  await new Promise<void>((resolve) => (tcp ? tcp.close(() => resolve()) : resolve()));
});

function resolver(): dns.Resolver {
  // bounded: one try, two seconds
  const r = new dns.Resolver({ timeout: 2000, tries: 1 });
  r.setServers([`127.0.0.1:${port}`]);
  return r;
}

test('c-ares reads an A answer with its TTL', { timeout: 10_000 }, async () => {
  assert.deepEqual(await resolver().resolve4('echo.demo.svc.cluster.local', { ttl: true }), [{ address: '10.96.0.20', ttl: 30 }]);
});

test('c-ares reads an AAAA answer', { timeout: 10_000 }, async () => {
  assert.deepEqual(await resolver().resolve6('dual.demo.svc.cluster.local'), ['fd00:10:96::21']);
});

test('c-ares sees NODATA for the other family', { timeout: 10_000 }, async () => {
  await assert.rejects(resolver().resolve6('echo.demo.svc.cluster.local'), (e: NodeJS.ErrnoException) => e.code === 'ENODATA');
});

test('c-ares reads a headless answer and a mixed-case name', { timeout: 10_000 }, async () => {
  assert.deepEqual((await resolver().resolve4('DB.demo.SVC.cluster.local')).sort(), ['10.244.1.5', '10.244.2.6']);
});

test('c-ares: a truncated UDP answer makes it retry over TCP, which carries all 100 addresses', { timeout: 10_000 }, async () => {
  const tcpBefore = seen.tcpQueries;
  const got = await resolver().resolve4('big.demo.svc.cluster.local');
  assert.deepEqual(got, manyIps);
  assert.ok(seen.tcpQueries > tcpBefore, 'the answer came over TCP');
});

test('c-ares: SRV and outside names are forwarded (here: REFUSED by the stand-in upstream)', { timeout: 10_000 }, async () => {
  seen.forwarded.length = 0;
  await assert.rejects(resolver().resolveSrv('_http._tcp.echo.demo.svc.cluster.local'), (e: NodeJS.ErrnoException) => e.code === 'EREFUSED');
  await assert.rejects(resolver().resolve4('example.com'), (e: NodeJS.ErrnoException) => e.code === 'EREFUSED');
  assert.deepEqual(seen.forwarded, ['type', 'unknown-name']);
});
