/**
 * A pod's :15008 right after the agent starts: the pod's certificate (from a CSR) can be there
 * before the trust bundle (from the first pushed config). The tunnel handler must hold such a
 * connection until both are there — within the certificate wait — instead of handshaking with an
 * empty bundle and refusing every client certificate. On loopback, with the real HBONE client.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import type { Duplex } from 'node:stream';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import type { ConnectionContext, PodRef } from '../connection.js';
import { HboneClient, type WorkloadCredentials } from '../hbone/index.js';
import { createTestPki } from '../hbone/testing.js';
import { MeshProxy } from './node.js';
import type { CredentialSource, MeshView } from './view.js';

const POD: PodRef = { uid: 'b', namespace: 'shop', name: 'web-0', ips: ['127.0.0.1'] };

async function scenario(rootsAfterMs: number | undefined, certificateWaitMs: number): Promise<{ ok: boolean; error?: string; ms: number }> {
  const pki = await createTestPki();
  const server = await pki.issue('shop', 'web');
  const client = await pki.issue('shop', 'client');
  let roots: string[] = [];
  const timer = rootsAfterMs === undefined ? undefined : setTimeout(() => (roots = pki.roots), rootsAfterMs);
  const view: MeshView = {
    workloadByIp: () => undefined,
    serviceByVip: () => undefined,
    serviceByEndpoint: () => undefined,
    authorizationPolicies: () => [],
    peerAuthentications: () => [],
    rootNamespace: () => 'ambit-system',
    trustRoots: () => roots,
    dnsIndex: () => new Map(),
  };
  const credentials: CredentialSource = {
    current: () => server,
    get: async () => server,
  } as unknown as CredentialSource;
  const mesh = new MeshProxy({ view, credentials, log: pino({ level: 'silent' }), registry: new Registry(), certificateWaitMs });
  const handlers = mesh.forPod(POD);
  // the application, and a stand-in for the pod's :15008 listener that hands sockets to the handler
  const app = net.createServer((s) => {
    s.on('error', () => {}); // the tunnel's end resets it
    s.pipe(s);
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
  const appPort = (app.address() as net.AddressInfo).port;
  const dial = { connect: (to: { host: string; port: number }) => net.connect({ host: to.host, port: to.port, allowHalfOpen: true }), udp: () => { throw new Error('no udp'); } };
  const listener = net.createServer({ pauseOnConnect: true }, (sock) => {
    const ctx = {
      listener: 'tunnel',
      pod: POD,
      source: { family: 4, address: '127.0.0.1', port: sock.remotePort ?? 0 },
      originalDst: undefined,
      dial,
      log: pino({ level: 'silent' }),
      record: { listener: 'tunnel', pod: { namespace: POD.namespace, name: POD.name }, source: '', startedAt: Date.now(), durationMs: 0, bytesFromDownstream: 0, bytesToDownstream: 0 },
      warn: () => {},
    } as unknown as ConnectionContext;
    handlers.handlers.tunnel!(sock, ctx);
  });
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', () => r()));
  const hbone = new HboneClient({ trustBundle: () => pki.roots, connectTimeoutMs: 5000, responseTimeoutMs: 5000 });
  const t0 = Date.now();
  try {
    const tunnel: Duplex = await hbone.connect({
      source: client as WorkloadCredentials,
      expectedPeer: server.identity,
      address: '127.0.0.1',
      port: (listener.address() as net.AddressInfo).port,
      authority: `127.0.0.1:${appPort}`,
    });
    const echoed = await new Promise<string>((resolve, reject) => {
      tunnel.once('data', (b: Buffer) => resolve(b.toString()));
      tunnel.once('error', reject);
      tunnel.write('ping');
    });
    tunnel.destroy();
    return { ok: echoed === 'ping', ms: Date.now() - t0 };
  } catch (err) {
    return { ok: false, error: (err as Error).message, ms: Date.now() - t0 };
  } finally {
    clearTimeout(timer);
    hbone.destroy();
    await handlers.close(100);
    listener.close();
    app.close();
  }
}

test('a tunnel that arrives before the trust bundle waits for it, then goes through', async () => {
  const r = await scenario(300, 3000);
  assert.equal(r.ok, true, r.error);
  assert.ok(r.ms >= 250, `it waited for the bundle (${r.ms} ms)`);
});

test('without a trust bundle within the certificate wait, the tunnel is refused (not handshaken with an empty bundle)', async () => {
  const r = await scenario(undefined, 400);
  assert.equal(r.ok, false);
  assert.ok(r.ms >= 350, `refused only after the wait (${r.ms} ms): ${r.error}`);
});
