/**
 * What tests and benchmarks of the installed mesh share: where `daemonset/` is, and how to reach
 * a node's ambit-agent (its admin ports are on the node's localhost: hostNetwork).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { repoRoot } from '../cluster/apps/files.js';
import type { Kubectl } from './kubectl.js';

/** The repository's `daemonset/`: what `kubectl apply -f` installs. */
export function daemonsetDir(): string {
  return join(repoRoot(), 'daemonset');
}

/** The ambit-agent pod on `nodeName` (exactly one). */
export async function agentPod(k: Kubectl, nodeName: string): Promise<string> {
  const out = await k.ok(['get', 'pods', '-n', 'ambit-system', '-l', 'app=ambit-agent', '--field-selector', `spec.nodeName=${nodeName}`, '-o', 'jsonpath={.items[*].metadata.name}']);
  const names = out.trim().split(/\s+/).filter(Boolean);
  assert.equal(names.length, 1, `agent pods on ${nodeName}: ${out}`);
  return names[0]!;
}

/** GET a path of the agent's admin ports (15020 metrics, 15021 ready/debug) from inside its pod. */
export async function agentGet(k: Kubectl, nodeName: string, port: number, path: string): Promise<string> {
  return k.ok(['exec', '-n', 'ambit-system', await agentPod(k, nodeName), '--', 'curl', '-sS', '--noproxy', '*', `http://127.0.0.1:${port}${path}`], { timeoutMs: 30_000 });
}

/** Waits for the agent DaemonSet's rollout. */
export async function rolloutAgents(k: Kubectl): Promise<void> {
  await k.ok(['rollout', 'status', 'daemonset/ambit-agent', '-n', 'ambit-system', '--timeout=120s'], { timeoutMs: 130_000 });
}
