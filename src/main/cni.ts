/**
 * ambit-cni's composition root: the executable the container runtime runs for every pod sandbox
 * (installed into the node's CNI bin dir by ambit-agent). Reads the CNI_* environment and the
 * network configuration on stdin, runs one command, prints the result or the spec's error JSON on
 * stdout, logs on stderr, and exits 0 or 1.
 *
 * Imports nothing but Node built-ins (through src/cni and src/api/cni.ts): the installer copies
 * this module's import closure onto the host, and it runs on the pod start path, so it stays small.
 */
import { CniCode, CniError, errorResult, LATEST_VERSION } from '../cni/spec.js';
import { runPlugin } from '../cni/plugin.js';

const MAX_STDIN_BYTES = 4 * 1024 * 1024;

async function readStdin(): Promise<string> {
  // Nothing to read from a terminal (someone running the plugin by hand for VERSION).
  if (process.stdin.isTTY) return '';
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    size += (chunk as Buffer).length;
    if (size > MAX_STDIN_BYTES) throw new Error(`more than ${MAX_STDIN_BYTES} bytes on stdin`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function main(): Promise<number> {
  let stdin: string;
  try {
    stdin = await readStdin();
  } catch (err) {
    const e = new CniError(CniCode.IoFailure, 'could not read the network configuration from stdin', (err as Error).message);
    process.stdout.write(JSON.stringify(errorResult(e, LATEST_VERSION)));
    return 1;
  }
  const out = await runPlugin({ env: process.env, stdin });
  if (out.stderr) process.stderr.write(out.stderr);
  // Exit only once stdout is flushed: the runtime reads the result from the pipe.
  await new Promise<void>((resolve) => process.stdout.write(out.stdout, () => resolve()));
  return out.exitCode;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stdout.write(JSON.stringify(errorResult(new CniError(CniCode.IoFailure, 'ambit-cni crashed', String(err)), LATEST_VERSION)));
    process.exitCode = 1;
  },
);
