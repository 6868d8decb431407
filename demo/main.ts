/**
 * `npm run demo`: shows, with the real kubectl, what stands today. At this stage the local cluster
 * is its API server only (nodes come with the local-cluster issue), so the demo plays the kubelet's
 * part of marking pods Ready and says so. Every kubectl command is printed as it runs.
 * `--keep` leaves the server running and prints the `export KUBECONFIG=...` line.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, waitUntil, type Kubectl } from '../test/helpers/kubectl.js';

const keep = process.argv.includes('--keep');
const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);

async function run(k: Kubectl, args: string[], stdin?: string): Promise<string> {
  console.log(bold(`$ kubectl ${args.join(' ')}`));
  const r = await k.run(args, stdin === undefined ? {} : { stdin });
  process.stdout.write(r.stdout);
  process.stdout.write(r.stderr);
  return r.stdout;
}

const manifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo, version: v1}}
    spec:
      containers:
      - {name: echo, image: localhost/ambit-demo-echo:latest, ports: [{containerPort: 8080, name: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: shop}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http}]
`;

const { server, kubectl: k, stop } = await startServer();
try {
  console.log(`API test server at ${server.url}\n`);
  await run(k, ['get', 'namespaces']);
  await run(k, ['create', 'namespace', 'shop']);
  await waitUntil(async () => (await k.run(['get', 'sa', 'default', '-n', 'shop'])).code === 0 || undefined, 10_000);
  const f = join(k.dir, 'echo.yaml');
  writeFileSync(f, manifest);
  await run(k, ['apply', '-f', f]);
  await run(k, ['get', 'deploy,rs,pods', '-n', 'shop', '-o', 'wide']);

  console.log('\n(no nodes run pods yet: the demo plays the kubelet and marks the pods Running and Ready)');
  const pods = (await k.ok(['get', 'pods', '-n', 'shop', '-o', 'name'])).trim().split('\n');
  let ip = 10;
  for (const p of pods) {
    const now = new Date().toISOString().replace(/\.\d+Z/, 'Z');
    const status = { status: { phase: 'Running', podIP: `10.244.1.${ip++}`, conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: now }], containerStatuses: [{ name: 'echo', ready: true, restartCount: 0, image: 'localhost/ambit-demo-echo:latest', imageID: '', started: true, state: { running: { startedAt: now } } }] } };
    await run(k, ['patch', p, '-n', 'shop', '--subresource=status', '--type=merge', '-p', JSON.stringify(status)]);
  }
  await run(k, ['rollout', 'status', 'deployment/echo', '-n', 'shop', '--timeout=30s']);
  await run(k, ['get', 'pods,svc,endpointslices', '-n', 'shop', '-o', 'wide']);

  console.log('\nRBAC is enforced, as on a real cluster:');
  await run(k, ['create', 'serviceaccount', 'agent', '-n', 'shop']);
  await run(k, ['create', 'role', 'read-pods', '-n', 'shop', '--verb=get,list,watch', '--resource=pods']);
  await run(k, ['create', 'rolebinding', 'agent-read-pods', '-n', 'shop', '--role=read-pods', '--serviceaccount=shop:agent']);
  await run(k, ['auth', 'can-i', 'list', 'pods', '-n', 'shop', '--as=system:serviceaccount:shop:agent']);
  await run(k, ['auth', 'can-i', 'list', 'secrets', '-n', 'shop', '--as=system:serviceaccount:shop:agent']);
  await run(k, ['get', 'secrets', '-n', 'shop', '--as=system:serviceaccount:shop:agent']);

  if (keep) {
    const kc = join(process.cwd(), '.cache', 'kubeconfig');
    server.writeKubeconfig(kc);
    console.log(`\nThe server stays up (Ctrl-C to stop):\nexport KUBECONFIG=${kc}`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
  }
} finally {
  await stop();
}
