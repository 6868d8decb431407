/** SysError formatting and the hint catalogue (pure). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { errnoName, hintFor, SysError, sysError } from './errors.js';

test('sysError carries errno, code, call and an actionable message', () => {
  const err = sysError('setns', 'setns(/proc/42/ns/net, CLONE_NEWNET)', 1);
  assert.ok(err instanceof SysError);
  assert.ok(err instanceof Error);
  assert.equal(err.name, 'SysError');
  assert.equal(err.errno, 1);
  assert.equal(err.code, 'EPERM');
  assert.equal(err.syscall, 'setns(/proc/42/ns/net, CLONE_NEWNET)');
  assert.match(err.message, /^setns\(\/proc\/42\/ns\/net, CLONE_NEWNET\) failed: EPERM \(operation not permitted\): needs CAP_SYS_ADMIN/);
});

test('hints name what to do for the failures operators hit', () => {
  const cases: [op: string, code: string, expected: RegExp | undefined][] = [
    ['setns', 'EPERM', /CAP_SYS_ADMIN/],
    ['setns', 'EINVAL', /not a network namespace/],
    ['setsockopt SO_MARK', 'EPERM', /CAP_NET_ADMIN/],
    ['setsockopt IP_TRANSPARENT', 'EPERM', /CAP_NET_ADMIN/],
    ['bind', 'EADDRINUSE', /reusePort/],
    ['bind', 'EADDRNOTAVAIL', /transparent/],
    ['getsockopt SO_ORIGINAL_DST', 'ENOENT', /not NAT-redirected/],
    ['open netns', 'ENOENT', /does not exist/],
    ['listen', 'EBADF', /closed/], // generic fallback
    ['bind', 'EMFILE', /ulimit/], // generic fallback
    ['listen', 'EINTR', undefined],
  ];
  for (const [op, code, expected] of cases) {
    const hint = hintFor(op, code);
    if (expected === undefined) assert.equal(hint, undefined, `${op}:${code}`);
    else assert.match(hint ?? '', expected, `${op}:${code}`);
  }
});

test('errnoName maps positive errnos and survives unknown ones', () => {
  assert.equal(errnoName(1), 'EPERM');
  assert.equal(errnoName(98), 'EADDRINUSE');
  assert.equal(errnoName(115), 'EINPROGRESS');
  assert.equal(errnoName(9999), 'E9999');
  assert.match(sysError('x', 'x()', 9999).message, /E9999 \(errno 9999\)$/);
});
