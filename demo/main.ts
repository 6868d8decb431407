/**
 * `npm run demo [-- --keep]`: brings up the 2-node local cluster the way a user does
 * (`npm run cluster -- up`), then with the real kubectl: a namespace with a client and a
 * two-replica echo server behind a Service, and cross-node calls by pod IP, ClusterIP and DNS
 * name through `kubectl exec`. Every command is printed as it runs. The cluster is torn down at the
 * end, unless `--keep` (then the `export KUBECONFIG=...` line is printed and
 * `npm run cluster -- down` ends it). Later issues extend it with the mesh.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEMO_IMAGES } from '../test/cluster/apps/images.js';
import { echoApp } from '../test/cluster/apps/manifests.js';

const keep = process.argv.includes('--keep');
const here = dirname(fileURLToPath(import.meta.url));
const clusterMain = join(here, '..', 'test', 'cluster', 'main.js');
const tty = process.stdout.isTTY;
const bold = (s: string) => (tty ? `\x1b[1m${s}\x1b[0m` : s);
const dim = (s: string) => (tty ? `\x1b[2m${s}\x1b[0m` : s);

interface Result {
  code: number;
  out: string;
}

/** Runs a command, echoing it and its output; bounded in time. */
function sh(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; quiet?: boolean; timeoutMs?: number } = {}): Promise<Result> {
  if (!opts.quiet) console.log(bold(`$ ${[cmd === process.execPath ? 'node' : cmd, ...args].join(' ')}`));
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const onData = (d: Buffer) => {
      out += d;
      if (!opts.quiet) process.stdout.write(d);
    };
    p.stdout.on('data', onData);
    p.stderr.on('data', onData);
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, out });
    });
  });
}

const app = `apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
${echoApp('shop', 2)}---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{name: client, image: ${DEMO_IMAGES.tools}}]
`;

async function main(): Promise<number> {
  const up = await sh(process.execPath, [clusterMain, 'up', '--nodes', '2'], { timeoutMs: 20 * 60_000 });
  const kc = /KUBECONFIG=(\S+)/.exec(up.out)?.[1];
  if (up.code !== 0 || !kc) {
    console.error('demo: the local cluster did not come up');
    return 1;
  }
  const dir = mkdtempSync(join(tmpdir(), 'ambit-demo-'));
  const env = { KUBECONFIG: kc };
  const kubectl = (args: string[], quiet = false) => sh('kubectl', ['--cache-dir', join(dir, 'cache'), ...args], { env, quiet });
  let failed = false;
  const step = async (args: string[]) => {
    const r = await kubectl(args);
    if (r.code !== 0) failed = true;
    return r;
  };
  try {
    await step(['get', 'nodes', '-o', 'wide']);
    const f = join(dir, 'shop.yaml');
    writeFileSync(f, app);
    await step(['apply', '-f', f]);
    await step(['rollout', 'status', 'deployment/echo', '-n', 'shop', '--timeout=120s']);
    await step(['wait', '--for=condition=Ready', 'pod/client', '-n', 'shop', '--timeout=120s']);
    await step(['get', 'pods,svc,endpointslices', '-n', 'shop', '-o', 'wide']);

    // pick the echo pod on the other node than the client, to show a cross-node call
    const clientNode = (await kubectl(['get', 'pod', 'client', '-n', 'shop', '-o', 'jsonpath={.spec.nodeName}'], true)).out.trim();
    const pods = JSON.parse((await kubectl(['get', 'pods', '-n', 'shop', '-l', 'app=echo', '-o', 'json'], true)).out).items as { status: { podIP: string }; spec: { nodeName: string }; metadata: { name: string } }[];
    const remote = pods.find((p) => p.spec.nodeName !== clientNode) ?? pods[0]!;
    console.log(dim(`\n# client runs on ${clientNode}; ${remote.metadata.name} runs on ${remote.spec.nodeName}`));
    console.log(dim('# by pod IP, across the underlay:'));
    await step(['exec', '-n', 'shop', 'client', '--', 'curl', '-sS', '--max-time', '5', `http://${remote.status.podIP}:8080/hello`]);
    console.log(dim('\n# by ClusterIP (kube-proxy rules in the node):'));
    const vip = (await kubectl(['get', 'svc', 'echo', '-n', 'shop', '-o', 'jsonpath={.spec.clusterIP}'], true)).out.trim();
    await step(['exec', '-n', 'shop', 'client', '--', 'curl', '-sS', '--max-time', '5', `http://${vip}/by-vip`]);
    console.log(dim('\n# by DNS name (cluster DNS, search path from the pod\'s resolv.conf):'));
    await step(['exec', '-n', 'shop', 'client', '--', 'curl', '-sS', '--max-time', '5', 'http://echo/by-name']);
    await step(['exec', '-n', 'shop', 'client', '--', 'dig', '+short', 'SRV', '_http._tcp.echo.shop.svc.cluster.local']);
    await step(['logs', '-n', 'shop', remote.metadata.name, '--tail=3']);

    console.log(dim('\n# install Ambit the way a user does: CRDs, the control plane, the node agent (DaemonSet):'));
    await step(['apply', '-f', join(here, '..', '..', 'daemonset')]);
    await step(['rollout', 'status', 'deployment/ambit-control', '-n', 'ambit-system', '--timeout=120s']);
    await step(['rollout', 'status', 'daemonset/ambit-agent', '-n', 'ambit-system', '--timeout=120s']);
    await step(['get', 'pods', '-n', 'ambit-system', '-o', 'wide']);

    console.log(dim('\n# opt the namespace in: its running pods are enrolled in place (same pods, no restart):'));
    await step(['label', 'namespace', 'shop', 'ambit.dev/dataplane-mode=ambient']);
    const agentOnClient = JSON.parse((await kubectl(['get', 'pods', '-n', 'ambit-system', '-l', 'app=ambit-agent', '--field-selector', `spec.nodeName=${clientNode}`, '-o', 'json'], true)).out).items[0]?.metadata.name as string | undefined;
    const agentGet = (port: number, path: string) => kubectl(['exec', '-n', 'ambit-system', agentOnClient ?? 'missing', '--', 'curl', '-sS', '--noproxy', '*', `http://127.0.0.1:${port}${path}`], true);
    for (let i = 0; i < 60; i++) {
      const state = await agentGet(15021, '/debug/state');
      if (state.code === 0 && (JSON.parse(state.out) as Array<{ name: string; state: string }>).some((p) => p.name === 'client' && p.state === 'enrolled')) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    await step(['get', 'pods', '-n', 'shop', '-o', 'wide']);
    console.log(dim('\n# the same calls again, now captured inside the client pod (15001 outbound, 15053 DNS):'));
    await step(['exec', '-n', 'shop', 'client', '--', 'curl', '-sS', '--max-time', '5', 'http://echo/captured']);
    await step(['exec', '-n', 'shop', 'client', '--', 'curl', '-sS', '--max-time', '5', `http://${remote.status.podIP}:8080/captured`]);
    console.log(dim(`\n# what the agent on ${clientNode} counted (node metrics on :15020):`));
    const metrics = await agentGet(15020, '/metrics');
    console.log(metrics.out.split('\n').filter((l) => /^ambit_agent_(enrolled_pods|captured_connections_total|dns_queries_total|cni_requests_total)/.test(l)).join('\n'));
    console.log(dim('\n# kubelet probes still pass: they reach the pods from the probe SNAT address, not captured:'));
    await step(['logs', '-n', 'shop', remote.metadata.name, '--tail=2']);

    // The proof of mTLS: the server's node agent terminated HBONE and names the client's identity.
    const agentOf = async (node: string) =>
      JSON.parse((await kubectl(['get', 'pods', '-n', 'ambit-system', '-l', 'app=ambit-agent', '--field-selector', `spec.nodeName=${node}`, '-o', 'json'], true)).out).items[0]?.metadata.name as string;
    const serverAgent = await agentOf(remote.spec.nodeName);
    const scrape = async (agent: string) => (await kubectl(['exec', '-n', 'ambit-system', agent, '--', 'curl', '-sS', '--noproxy', '*', 'http://127.0.0.1:15020/metrics'], true)).out;
    for (let i = 0; i < 60; i++) {
      await kubectl(['exec', '-n', 'shop', 'client', '--', 'curl', '-sS', '--max-time', '5', '-o', '/dev/null', `http://${remote.status.podIP}:8080/mtls`], true);
      if (/istio_tcp_connections_opened_total\{reporter="destination".*connection_security_policy="mutual_tls"/.test(await scrape(serverAgent))) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    console.log(dim(`\n# mutual TLS between the nodes: ${remote.spec.nodeName}'s agent access log names the client's SPIFFE principal:`));
    await new Promise((r) => setTimeout(r, 1500)); // the agent writes its log lines in batches, at least every second
    const access = (await kubectl(['logs', '-n', 'ambit-system', serverAgent], true)).out.split('\n').filter((l) => l.includes('"component":"access"') && l.includes('"reporter":"destination"'));
    console.log(access.slice(-2).map((l) => {
      const e = JSON.parse(l) as Record<string, unknown>;
      return `${String(e.src)} -> ${String(e.dst)}  src_principal=${String(e.src_principal)}  dst_principal=${String(e.dst_principal)}  security=${String(e.security)}  flags=${String(e.flags)}`;
    }).join('\n'));
    console.log(dim('\n# ...and its Istio-named metrics say mutual_tls:'));
    console.log((await scrape(serverAgent)).split('\n').filter((l) => l.startsWith('istio_tcp_connections_opened_total{reporter="destination"')).slice(0, 3).join('\n'));

    console.log(dim('\n# a DENY policy on the client\'s principal: the same call is now refused by the server\'s proxy:'));
    const deny = join(dir, 'deny.yaml');
    writeFileSync(deny, `apiVersion: security.ambit.dev/v1
kind: AuthorizationPolicy
metadata: {name: deny-client, namespace: shop}
spec:
  selector: {matchLabels: {app: echo}}
  action: DENY
  rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/default]}}]}]
`);
    await step(['apply', '-f', deny]);
    let denied = false;
    for (let i = 0; i < 40 && !denied; i++) {
      await new Promise((r) => setTimeout(r, 500));
      denied = (await kubectl(['exec', '-n', 'shop', 'client', '--', 'curl', '-sS', '--max-time', '3', `http://${remote.status.podIP}:8080/denied`], true)).code !== 0;
    }
    const r = await kubectl(['exec', '-n', 'shop', 'client', '--', 'curl', '-sS', '--max-time', '3', `http://${remote.status.podIP}:8080/denied`]);
    if (r.code === 0 || !denied) failed = true;
    await new Promise((r) => setTimeout(r, 1500)); // (batched log lines, as above)
    const denials = (await kubectl(['logs', '-n', 'ambit-system', serverAgent], true)).out.split('\n').filter((l) => l.includes('"component":"access"') && l.includes('RBAC'));
    console.log(denials.slice(-1).map((l) => {
      const e = JSON.parse(l) as Record<string, unknown>;
      return `${String(e.src_principal)} -> ${String(e.dst)}  flags=${String(e.flags)}  ${String(e.error ?? '')}`;
    }).join('\n'));
    await step(['delete', '-f', deny]);
    console.log(dim('\n# the mesh CA (generated on first start, kept in a Secret) publishes its root for agents:'));
    await step(['get', 'configmap', 'ambit-root-cert', '-n', 'ambit-system', '-o', 'jsonpath={.data}']);
    console.log();
    console.log(dim('\n# an invalid policy is reported on its own status, and disturbs nothing else:'));
    const policy = join(dir, 'policy.yaml');
    writeFileSync(policy, `apiVersion: security.ambit.dev/v1
kind: AuthorizationPolicy
metadata: {name: broken, namespace: shop}
spec:
  action: DENY
  rules: [{from: [{source: {ipBlocks: [not-an-ip]}}]}]
`);
    await step(['apply', '-f', policy]);
    await new Promise((r) => setTimeout(r, 2000));
    await step(['get', 'authorizationpolicy', 'broken', '-n', 'shop', '-o', 'jsonpath={.status.conditions[0].reason}: {.status.conditions[0].message}']);
    console.log();
  } finally {
    rmSync(dir, { recursive: true, force: true });
    if (keep) {
      console.log(`\nThe cluster stays up. Use it with:\nexport KUBECONFIG=${kc}\nand end it with: npm run cluster -- down`);
    } else {
      await sh(process.execPath, [clusterMain, 'down'], { timeoutMs: 120_000 });
    }
  }
  if (failed) console.error('demo: a step failed (see above)');
  return failed ? 1 : 0;
}

process.exitCode = await main();
