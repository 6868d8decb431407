/**
 * Dev tool, not a test: runs the real kubectl against an in-process ApiServer and records the
 * protobuf request bodies its typed clientsets send, so decode.test.ts can decode REAL wire bytes.
 * For each `kubectl create ...` it also records kubectl's own JSON rendering of the same object
 * (`--dry-run=client -o json`), which is what the decoder's output must equal.
 *
 *   node <outDir>/test/cluster/apiserver/protobuf/capture.js <kubectl> <fixtures.ts to write>
 *
 * The server is not modified: the script only wraps the instance's request dispatch to tee the body
 * (the server may well answer 415; the body is recorded before that).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ApiServer } from '../server.js';
import type { KObject } from '../types.js';
import { PROTOBUF_MEDIA_TYPE } from './decode.js';

const run = promisify(execFile);

interface Captured {
  method: string;
  path: string;
  body: Buffer;
}

/** One kubectl invocation; `dryRun` asks kubectl for its JSON rendering of the same object. */
interface Scenario {
  name: string;
  args: string[];
  dryRun?: boolean;
}

export interface CapturedFixture {
  name: string;
  kubectl: string;
  args: string[];
  method: string;
  path: string;
  /** the request body, base64 */
  body: string;
  /** kubectl's `--dry-run=client -o json` output for the same command, when it has one */
  json?: unknown;
}

type Dispatch = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void>;

/** Reads a request fully, then lets the server read the same bytes again through the async iterator. */
async function tee(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const body = Buffer.concat(chunks);
  Object.defineProperty(req, Symbol.asyncIterator, {
    value: async function* replay() {
      if (body.length) yield body;
    },
  });
  return body;
}

function recordProtobufBodies(server: ApiServer, into: Captured[]): void {
  const inner = server as unknown as { dispatch: Dispatch };
  const original = inner.dispatch.bind(server);
  inner.dispatch = async (req, res, url) => {
    const ct = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
    if (ct === PROTOBUF_MEDIA_TYPE) into.push({ method: req.method ?? '', path: url.pathname, body: await tee(req) });
    return original(req, res, url);
  };
}

/** A node with one bare pod on it, so `kubectl drain` has something to evict. */
function seedDrainTarget(server: ApiServer): void {
  const reg = server.registry;
  const ctx = { fieldValidation: 'Ignore' as const };
  // controllers are off, so nothing creates the namespace's default service account for the pods
  reg.create(reg.lookupPath('v1/serviceaccounts'), 'default', { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace: 'default' } } as KObject, ctx);
  reg.create(reg.lookupPath('v1/nodes'), undefined, { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-a' } } as KObject, ctx);
  for (const name of ['lonely', 'lonely2']) {
    const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default' }, spec: { nodeName: 'node-a', containers: [{ name: 'c', image: 'busybox' }] } };
    reg.create(reg.lookupPath('v1/pods'), 'default', pod as unknown as KObject, ctx);
  }
}

function scenarios(dir: string): Scenario[] {
  const c = (name: string, args: string[]): Scenario => ({ name, args, dryRun: true });
  return [
    c('namespace', ['create', 'namespace', 'team-a']),
    c('configmap', ['create', 'configmap', 'cfg', '--from-literal=mode=fast', `--from-file=blob=${join(dir, 'blob.bin')}`]),
    c('secret-generic', ['create', 'secret', 'generic', 'creds', '--from-literal=user=admin', `--from-file=key.bin=${join(dir, 'blob.bin')}`]),
    c('secret-tls', ['create', 'secret', 'tls', 'tls-cert', `--cert=${join(dir, 'tls.crt')}`, `--key=${join(dir, 'tls.key')}`]),
    c('serviceaccount', ['create', 'serviceaccount', 'robot']),
    c('role', ['create', 'role', 'reader', '--verb=get,list,watch', '--resource=pods,services', '--resource=deployments.apps', '--resource-name=web']),
    c('clusterrole', ['create', 'clusterrole', 'node-reader', '--verb=get', '--resource=nodes', '--non-resource-url=/healthz']),
    c('clusterrole-aggregate', ['create', 'clusterrole', 'agg', '--aggregation-rule=team=a']),
    c('rolebinding', ['create', 'rolebinding', 'read-pods', '--role=reader', '--user=alice', '--serviceaccount=default:robot']),
    c('clusterrolebinding', ['create', 'clusterrolebinding', 'read-nodes', '--clusterrole=node-reader', '--group=devs', '--user=bob']),
    c('deployment', ['create', 'deployment', 'web', '--image=nginx', '--port=80']),
    c('deployment-command', ['create', 'deployment', 'job', '--image=busybox', '--replicas=0', '--', 'sh', '-c', 'sleep 3600']),
    c('service-clusterip', ['create', 'service', 'clusterip', 'web', '--tcp=80:8080']),
    c('service-headless', ['create', 'service', 'clusterip', 'headless', '--clusterip=None']),
    c('service-nodeport', ['create', 'service', 'nodeport', 'np', '--tcp=80:http', '--node-port=30080']),
    c('job', ['create', 'job', 'once', '--image=busybox']),
    c('pdb', ['create', 'poddisruptionbudget', 'pdb', '--selector=app=web', '--min-available=50%']),
    c('quota', ['create', 'quota', 'q', '--hard=cpu=1,pods=2']),
    { name: 'token', args: ['create', 'token', 'robot', '--audience=api', '--audience=vault', '--duration=15m'] },
    { name: 'token-bound', args: ['create', 'token', 'robot', '--bound-object-kind=Pod', '--bound-object-name=lonely', '--bound-object-uid=1234'] },
    { name: 'can-i', args: ['auth', 'can-i', 'list', 'pods', '-n', 'default'] },
    { name: 'can-i-subresource', args: ['auth', 'can-i', 'get', 'pods', '--subresource=log', '--all-namespaces'] },
    { name: 'can-i-nonresource', args: ['auth', 'can-i', 'get', '/healthz'] },
    { name: 'can-i-list', args: ['auth', 'can-i', '--list', '-n', 'default'] },
    { name: 'whoami', args: ['auth', 'whoami'] },
    { name: 'drain', args: ['drain', 'node-a', '--force', '--ignore-daemonsets', '--grace-period=0', '--timeout=5s'] },
    { name: 'drain-delete', args: ['drain', 'node-a', '--force', '--disable-eviction', '--grace-period=7', '--timeout=5s'] },
  ];
}

async function kubectl(bin: string, base: string[], args: string[]): Promise<{ stdout: string; stderr: string; ok: boolean }> {
  try {
    const { stdout, stderr } = await run(bin, [...base, ...args], { timeout: 30_000 });
    return { stdout, stderr, ok: true };
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string };
    return { stdout: err.stdout ?? '', stderr: err.stderr ?? '', ok: false };
  }
}

/** The args plus `--dry-run=client -o json`, placed before any `--` (after it they'd be the command). */
function withDryRun(args: string[]): string[] {
  const dashes = args.indexOf('--');
  const flags = ['--dry-run=client', '-o', 'json'];
  return dashes < 0 ? [...args, ...flags] : [...args.slice(0, dashes), ...flags, ...args.slice(dashes)];
}

async function writeTlsPair(dir: string): Promise<void> {
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=web.example', '-keyout', join(dir, 'tls.key'), '-out', join(dir, 'tls.crt')]);
}

function fixturesSource(fixtures: CapturedFixture[]): string {
  return [
    '// Generated by capture.ts from real kubectl request bodies; do not edit by hand.',
    "import type { CapturedFixture } from './capture.js';",
    '',
    `export const CAPTURED: CapturedFixture[] = ${JSON.stringify(fixtures, null, 2)};`,
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const [bin = '/usr/lib/google-cloud-sdk/bin/kubectl.1.32', out] = process.argv.slice(2);
  const dir = mkdtempSync(join(tmpdir(), 'proto-capture-'));
  const server = await ApiServer.start({ controllers: false });
  try {
    const captured: Captured[] = [];
    recordProtobufBodies(server, captured);
    seedDrainTarget(server);
    server.writeKubeconfig(join(dir, 'kubeconfig'));
    writeFileSync(join(dir, 'blob.bin'), Buffer.from([0, 1, 2, 0xfe, 0xff, 0x80, 0x0a]));
    await writeTlsPair(dir);
    const base = ['--kubeconfig', join(dir, 'kubeconfig'), '--cache-dir', join(dir, 'cache')];
    const fixtures: CapturedFixture[] = [];
    for (const s of scenarios(dir)) {
      const before = captured.length;
      const r = await kubectl(bin, base, s.args);
      const bodies = captured.slice(before);
      process.stderr.write(`${s.name}: ${bodies.length} protobuf bodies ${bodies.map((b) => `${b.method} ${b.path}`).join(', ')}; kubectl ${r.ok ? 'ok' : `failed: ${r.stderr.trim().split('\n').pop()}`}\n`);
      const json = s.dryRun ? JSON.parse((await kubectl(bin, base, withDryRun(s.args))).stdout || 'null') : undefined;
      bodies.forEach((b, i) => {
        fixtures.push({ name: bodies.length > 1 ? `${s.name}#${i}` : s.name, kubectl: bin.split('/').pop()!, args: s.args, method: b.method, path: b.path, body: b.body.toString('base64'), ...(json !== undefined ? { json } : {}) });
      });
    }
    const text = fixturesSource(fixtures);
    if (out) writeFileSync(out, text);
    else process.stdout.write(text);
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1]?.endsWith('capture.js')) await main();
