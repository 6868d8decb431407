/**
 * SO_PEERCRED through the native layer: the kernel's record of who connected to a unix socket.
 * The agent's CNI socket relies on it to answer root only.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { peerCredentials, socketFd } from './index.js';

async function credsOfNextClient(server: net.Server): Promise<ReturnType<typeof peerCredentials>> {
  const [sock] = (await once(server, 'connection')) as [net.Socket];
  try {
    return peerCredentials(socketFd(sock));
  } finally {
    sock.destroy();
  }
}

test('a client in this process: our own pid, uid and gid', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-peercred-'));
  const server = net.createServer().listen(join(dir, 's.sock'));
  try {
    await once(server, 'listening');
    const got = credsOfNextClient(server);
    const client = net.connect(join(dir, 's.sock'));
    const creds = await got;
    client.destroy();
    assert.deepEqual(creds, { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a client of another user in another process (abstract socket)', { skip: process.getuid?.() === 0 ? false : 'switching uid needs root; CI runs as root' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-peercred-'));
  chmodSync(dir, 0o755);
  const name = `\0ambit-peercred-${process.pid}`;
  const server = net.createServer().listen(name);
  try {
    await once(server, 'listening');
    const got = credsOfNextClient(server);
    const child = spawn(process.execPath, ['-e', `require('net').connect(${JSON.stringify(name)}).on('connect', () => setTimeout(() => process.exit(0), 200))`], { uid: 65534, gid: 65534, stdio: 'ignore' });
    const creds = await got;
    assert.equal(creds.uid, 65534);
    assert.equal(creds.gid, 65534);
    assert.equal(creds.pid, child.pid);
    await once(child, 'exit');
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
