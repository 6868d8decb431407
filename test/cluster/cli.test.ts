// Root test of the cluster CLI as a user runs it: `npm run cluster -- up --nodes 2` starts the
// cluster in the background and prints KUBECONFIG=...; the real kubectl then sees 2 Ready nodes;
// `down` stops it and leaves no namespace behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KUBECTL } from '../helpers/kubectl.js';
import { existingClusterNetns } from './network.js';

const isRoot = process.getuid?.() === 0;
const main = join(dirname(fileURLToPath(import.meta.url)), 'main.js');
const NAME = `cli${process.pid % 100000}`;

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 600_000): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('error', reject);
    p.on('close', (code) => (clearTimeout(t), resolve({ code: code ?? -1, out })));
  });
}

test('cluster up --nodes 2, kubectl get nodes shows 2 Ready nodes, down removes it', { skip: isRoot ? false : 'needs root; CI runs as root' }, async () => {
  const up = await run(process.execPath, [main, 'up', '--nodes', '2', '--name', NAME]);
  try {
    assert.equal(up.code, 0, up.out);
    const kc = /KUBECONFIG=(\S+)/.exec(up.out)?.[1];
    assert.ok(kc, up.out);
    const nodes = await run(KUBECTL, ['get', 'nodes', '--no-headers'], { KUBECONFIG: kc });
    assert.equal(nodes.code, 0, nodes.out);
    const lines = nodes.out.trim().split('\n');
    assert.equal(lines.length, 2, nodes.out);
    for (const l of lines) assert.match(l, /^node-\d\s+Ready\s/);
    // a second `up` of the same cluster is refused rather than clobbering it
    const again = await run(process.execPath, [main, 'up', '--nodes', '2', '--name', NAME]);
    assert.notEqual(again.code, 0);
  } finally {
    const down = await run(process.execPath, [main, 'down', '--name', NAME]);
    assert.equal(down.code, 0, down.out);
  }
  assert.deepEqual(await existingClusterNetns(NAME), []);
});
