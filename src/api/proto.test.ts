import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import protobuf from 'protobufjs';
import { AMBIT_PROTO } from './proto.js';

// Tests run from the build output; compare its copy with the source tree's.
function sourceProto(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++, dir = dirname(dir)) {
    try {
      return readFileSync(join(dir, 'src/api/ambit.proto'), 'utf8');
    } catch {
      // keep climbing to the repository root
    }
  }
  throw new Error('src/api/ambit.proto not found above the test file');
}

test('the protocol the programs load is the current src/api/ambit.proto', () => {
  assert.equal(AMBIT_PROTO, sourceProto(), 'dist has a stale ambit.proto: run npm run build (scripts/build.sh copies it)');
});

test('the protocol parses and declares the service with both RPCs', () => {
  const root = protobuf.parse(AMBIT_PROTO).root;
  const svc = root.lookupService('ambit.v1.AmbitControl');
  assert.deepEqual(Object.keys(svc.methods).sort(), ['Sign', 'Subscribe']);
  assert.ok(svc.methods.Subscribe!.requestStream && svc.methods.Subscribe!.responseStream);
  assert.ok(!svc.methods.Sign!.requestStream && !svc.methods.Sign!.responseStream);
});
