/**
 * Golden-file tests of the pure builders: the exact iptables-restore and nft input for IPv4 and
 * IPv6, fresh and re-applied, and the removal scripts. `UPDATE_GOLDEN=1` rewrites the files under
 * testdata/ (review the diff: it is what the kernel will be given).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { redirectConfig } from './config.js';
import { buildIptables, buildIptablesRemoval, parseIptablesSave } from './iptables.js';
import { buildNftables, buildNftablesRemoval } from './nftables.js';

/** testdata/ in the source tree, found from this file in src/ or in any <outDir>/src/. */
function testdata(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    const candidate = join(dir, 'src', 'agent', 'redirect', 'testdata');
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error(`src/agent/redirect/testdata not found above ${fileURLToPath(import.meta.url)}`);
}

function golden(name: string, actual: string): void {
  const path = join(testdata(), name);
  if (process.env.UPDATE_GOLDEN === '1') writeFileSync(path, actual);
  assert.equal(actual, readFileSync(path, 'utf8'), `${name} differs; UPDATE_GOLDEN=1 rewrites it`);
}

function fixture(name: string): string {
  return readFileSync(join(testdata(), name), 'utf8');
}

const v4 = redirectConfig({ families: [4] });
const v6 = redirectConfig({ families: [6] });
const dual = redirectConfig({ families: [4, 6] });

test('iptables apply, fresh pod (v4, v6, without DNS capture)', () => {
  golden('iptables-v4.rules', buildIptables(v4, 4));
  golden('iptables-v6.rules', buildIptables(v6, 6));
  golden('iptables-v4-nodns.rules', buildIptables(redirectConfig({ dnsCapture: false }), 4));
});

// The *.save fixtures are real `iptables-{legacy,nft}-save` output, captured from a netns after one
// apply, next to a foreign chain and rule that must survive everything we do.
test('iptables re-apply on an applied ruleset adds no jump; only our chains are refilled', () => {
  for (const family of [4, 6] as const) {
    const applied = parseIptablesSave(fixture(`iptables-v${family}-applied.save`));
    golden(`iptables-v${family}-reapply.rules`, buildIptables(family === 4 ? v4 : v6, family, applied));
  }
});

test('iptables removal deletes exactly our jumps and chains', () => {
  for (const family of [4, 6] as const) {
    golden(`iptables-v${family}-remove.rules`, buildIptablesRemoval(parseIptablesSave(fixture(`iptables-v${family}-applied.save`))));
  }
});

test('nft apply (v4, v6, dual stack) and removal', () => {
  golden('nft-v4.nft', buildNftables(v4));
  golden('nft-v6.nft', buildNftables(v6));
  golden('nft-dual.nft', buildNftables(dual));
  golden('nft-remove.nft', buildNftablesRemoval());
  // a fresh netns: the same table, without replacing one (nothing to replace)
  assert.equal(buildNftables(dual, { fresh: true }), buildNftables(dual).replace(buildNftablesRemoval(), ''));
  assert.doesNotMatch(buildNftables(v4, { fresh: true }), /delete table/);
});
