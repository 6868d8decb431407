import { test } from 'node:test';
import assert from 'node:assert/strict';
import { effectiveMtls, type MtlsMode, type PeerAuthentication, type PolicySubject } from '../../state/policy.js';
import { admitPlaintext, inboundMtlsMode, resolveInboundMtls, type ResolvedMtls } from './mtls.js';

const ROOT = 'ambit-system';
const WEB: PolicySubject = { namespace: 'shop', labels: { app: 'web' }, services: [] };

function pa(key: string, mode: MtlsMode, extra: Partial<PeerAuthentication> = {}): PeerAuthentication {
  const [namespace, name] = key.split('/') as [string, string];
  return { key, namespace, name, createdAt: '2026-01-01T00:00:00Z', mode, ...extra };
}

const MESH_STRICT = pa('ambit-system/default', 'STRICT');
const NS_PERMISSIVE = pa('shop/default', 'PERMISSIVE');
const NS_UNSET = pa('shop/default', 'UNSET');
const WL_STRICT = pa('shop/web', 'STRICT', { selector: { app: 'web' } });

interface Row { name: string; pas: PeerAuthentication[]; port?: number; want: ResolvedMtls; workload?: PolicySubject }

const ROWS: Row[] = [
  { name: 'nothing: PERMISSIVE by default', pas: [], want: { mode: 'PERMISSIVE', level: 'default' } },
  { name: 'mesh STRICT', pas: [MESH_STRICT], want: { mode: 'STRICT', level: 'mesh', policy: 'ambit-system/default' } },
  { name: 'namespace overrides mesh', pas: [MESH_STRICT, NS_PERMISSIVE], want: { mode: 'PERMISSIVE', level: 'namespace', policy: 'shop/default' } },
  { name: 'namespace UNSET inherits mesh', pas: [MESH_STRICT, NS_UNSET], want: { mode: 'STRICT', level: 'mesh', policy: 'ambit-system/default' } },
  { name: 'only UNSET everywhere: default', pas: [NS_UNSET, pa('ambit-system/default', 'UNSET')], want: { mode: 'PERMISSIVE', level: 'default' } },
  { name: 'workload selector overrides namespace', pas: [NS_PERMISSIVE, WL_STRICT], want: { mode: 'STRICT', level: 'workload', policy: 'shop/web' } },
  { name: 'workload selector for other labels does not apply', pas: [NS_PERMISSIVE, pa('shop/db', 'STRICT', { selector: { app: 'db' } })], want: { mode: 'PERMISSIVE', level: 'namespace', policy: 'shop/default' } },
  { name: 'selector policy of another namespace does not apply', pas: [pa('dev/web', 'STRICT', { selector: { app: 'web' } })], want: { mode: 'PERMISSIVE', level: 'default' } },
  { name: 'namespace policy of another namespace does not apply', pas: [pa('dev/default', 'STRICT')], want: { mode: 'PERMISSIVE', level: 'default' } },
  { name: 'selector policy in the root namespace is not mesh-wide', pas: [pa('ambit-system/web', 'STRICT', { selector: { app: 'web' } })], want: { mode: 'PERMISSIVE', level: 'default' } },
  { name: 'workload UNSET inherits namespace', pas: [pa('shop/default', 'STRICT'), pa('shop/web', 'UNSET', { selector: { app: 'web' } })], want: { mode: 'STRICT', level: 'namespace', policy: 'shop/default' } },
  { name: 'DISABLE at namespace', pas: [MESH_STRICT, pa('shop/default', 'DISABLE')], want: { mode: 'DISABLE', level: 'namespace', policy: 'shop/default' } },
  { name: 'oldest namespace policy wins', pas: [pa('shop/newer', 'STRICT', { createdAt: '2026-02-01T00:00:00Z' }), pa('shop/older', 'PERMISSIVE', { createdAt: '2025-12-01T00:00:00Z' })], want: { mode: 'PERMISSIVE', level: 'namespace', policy: 'shop/older' } },
  { name: 'oldest workload policy wins', pas: [pa('shop/w2', 'PERMISSIVE', { selector: { app: 'web' }, createdAt: '2026-03-01T00:00:00Z' }), pa('shop/w1', 'STRICT', { selector: { app: 'web' }, createdAt: '2026-02-01T00:00:00Z' })], want: { mode: 'STRICT', level: 'workload', policy: 'shop/w1' } },
  { name: 'port-level mode on that port', port: 9000, pas: [pa('shop/web', 'STRICT', { selector: { app: 'web' }, portModes: { '9000': 'PERMISSIVE' } })], want: { mode: 'PERMISSIVE', level: 'port', policy: 'shop/web' } },
  { name: 'port-level mode not on other ports', port: 8080, pas: [pa('shop/web', 'STRICT', { selector: { app: 'web' }, portModes: { '9000': 'PERMISSIVE' } })], want: { mode: 'STRICT', level: 'workload', policy: 'shop/web' } },
  { name: 'port-level STRICT under a PERMISSIVE namespace', port: 5432, pas: [NS_PERMISSIVE, pa('shop/web', 'UNSET', { selector: { app: 'web' }, portModes: { '5432': 'STRICT' } })], want: { mode: 'STRICT', level: 'port', policy: 'shop/web' } },
  { name: 'port-level UNSET inherits the workload mode', port: 9000, pas: [pa('shop/web', 'STRICT', { selector: { app: 'web' }, portModes: { '9000': 'UNSET' } })], want: { mode: 'STRICT', level: 'workload', policy: 'shop/web' } },
  { name: 'port-level equal to the workload mode is still attributed to the port', port: 9000, pas: [pa('shop/web', 'STRICT', { selector: { app: 'web' }, portModes: { '9000': 'STRICT' } })], want: { mode: 'STRICT', level: 'port', policy: 'shop/web' } },
  { name: 'port-level DISABLE with mesh STRICT', port: 9000, pas: [MESH_STRICT, pa('shop/web', 'UNSET', { selector: { app: 'web' }, portModes: { '9000': 'DISABLE' } })], want: { mode: 'DISABLE', level: 'port', policy: 'shop/web' } },
];

test(`resolveInboundMtls: ${ROWS.length} table cases, and the mode always agrees with effectiveMtls`, () => {
  for (const row of ROWS) {
    const w = row.workload ?? WEB;
    const port = row.port ?? 8080;
    const got = resolveInboundMtls(w, row.pas, port, ROOT);
    assert.deepEqual(got, row.want, row.name);
    assert.equal(inboundMtlsMode(w, row.pas, port, ROOT), row.want.mode, row.name);
    const eff = effectiveMtls(w, row.pas, ROOT);
    assert.equal(got.mode, eff.ports[String(port)] ?? eff.mode, `${row.name}: agrees with effectiveMtls`);
    // the policy named as the decider really carries that mode at its level
    if (got.policy) {
      const p = row.pas.find((x) => x.key === got.policy)!;
      assert.equal(got.level === 'port' ? p.portModes?.[String(port)] : p.mode, got.mode, `${row.name}: attribution`);
    }
  }
});

test('admitPlaintext: only STRICT refuses', () => {
  assert.equal(admitPlaintext('STRICT'), false);
  assert.equal(admitPlaintext('PERMISSIVE'), true);
  assert.equal(admitPlaintext('DISABLE'), true);
});
