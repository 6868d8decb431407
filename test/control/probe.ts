/**
 * The agent probe: a small program run INSIDE a pod of the local cluster, in the Ambit image, so
 * that it talks to ambit-control the way an agent does — through the Service, verifying the
 * serving certificate against the published roots, with the pod's own projected, pod-bound
 * service-account token. The test ships it as a ConfigMap mounted at /probe and reads what it
 * prints (one JSON object per line) with `kubectl logs` (long-running `subscribe`) or `kubectl
 * exec` (one-shot calls).
 *
 *   probe.mjs subscribe <node>               print every update and connection event, forever
 *   probe.mjs subscribe-once <node> [token]  print the first update or error, exit
 *   probe.mjs sign <podUid> [identity|-] [token]   ask for a certificate, print the result
 *   probe.mjs sign-raw <podUid> <csr text> [token]  send an arbitrary CSR
 * `token` "garbage" replaces the pod's token with a malformed one.
 */
export const PROBE_SCRIPT = String.raw`
import { readFileSync } from 'node:fs';
const { ControlClient } = await import('/opt/ambit/dist/src/api/client.js');
const { createKeyAndCsr } = await import('/opt/ambit/dist/src/identity/ca.js');
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const [mode, a1, a2, a3] = process.argv.slice(2);
const tokenArg = mode === 'subscribe-once' ? a2 : a3;
const token = () => (tokenArg === 'garbage' ? 'not.a.token' : readFileSync('/var/run/secrets/kubernetes.io/serviceaccount/token', 'utf8').trim());
const client = new ControlClient({ address: process.env.CONTROL_ADDRESS, rootCertsPem: readFileSync('/etc/ambit/ca/root-cert.pem', 'utf8'), token, serverName: 'ambit-control.ambit-system.svc' });
const summary = (s) => ({
  node: s.node,
  version: s.version,
  workloads: Object.values(s.workloads).map((w) => w.namespace + '/' + w.name + '@' + w.node + ':' + w.enrolled).sort(),
  peers: Object.keys(s.peers).length,
  services: Object.keys(s.services).sort(),
  authorizationPolicies: Object.keys(s.authorizationPolicies).sort(),
  roots: s.trust.roots.length,
});
const changed = (d) => Object.fromEntries(['workloads', 'peers', 'services', 'authorizationPolicies', 'peerAuthentications', 'routes'].map((t) => [t, [...Object.keys(d[t].added), ...Object.keys(d[t].updated), ...d[t].removed]]).filter(([, v]) => v.length > 0));
if (mode === 'subscribe' || mode === 'subscribe-once') {
  const once = mode === 'subscribe-once';
  const sub = client.subscribe({
    node: a1,
    backoff: { initialMs: 200, maxMs: 2000 },
    onUpdate: (u) => {
      out({ ev: 'update', at: Date.now(), kind: u.delta ? 'delta' : 'snapshot', from: u.delta?.from, to: u.snapshot.version, changed: u.delta ? changed(u.delta) : undefined, snapshot: summary(u.snapshot) });
      if (once) setTimeout(() => process.exit(0), 50);
    },
    onConnection: (e) => {
      out(e.state === 'connected' ? { ev: 'conn', state: 'connected', at: Date.now() } : { ev: 'conn', state: 'disconnected', code: e.error.codeName, details: e.error.details, at: Date.now() });
      if (once && e.state !== 'connected') process.exit(0);
    },
  });
  if (once) setTimeout(() => (out({ ev: 'timeout' }), process.exit(0)), 20000);
} else if (mode === 'sign' || mode === 'sign-raw') {
  let csrPem;
  if (mode === 'sign-raw') csrPem = a2;
  else csrPem = (await createKeyAndCsr(a2 && a2 !== '-' ? a2 : undefined)).csrPem;
  try {
    const r = await client.sign({ podUid: a1, csrPem });
    out({ ok: true, identity: r.identity, certChainPem: r.certChainPem, trustBundlePem: r.trustBundlePem, notAfterMs: r.notAfterMs });
  } catch (e) {
    out({ ok: false, code: e.codeName ?? String(e.code), details: e.details ?? e.message });
  }
  client.close();
  process.exit(0);
} else {
  out({ ok: false, code: 'USAGE', details: 'unknown mode ' + mode });
  process.exit(2);
}
`;
