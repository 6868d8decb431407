// Table test of how the plugin reads the agent's HTTP replies (the transport itself is exercised
// against the real server in plugin.process.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { interpretReply, agentDownMessage } from './agent-client.js';
import { CniError } from './spec.js';

const SOCK = '/var/run/ambit/cni.sock';

test('interpretReply: answers, agent failures and protocol mismatches', () => {
  assert.deepEqual(interpretReply('add', 200, '{"decision":"enrolled"}', SOCK), { decision: 'enrolled' });
  assert.deepEqual(interpretReply('add', 200, '{"decision":"not-enrolled"}', SOCK), { decision: 'not-enrolled' });
  assert.deepEqual(interpretReply('del', 200, '{"released":true}', SOCK), { released: true });
  assert.deepEqual(interpretReply('check', 200, '{"ok":false,"problem":"x"}', SOCK), { ok: false, problem: 'x' });

  const failures: Array<{ op: 'add' | 'del' | 'check'; status: number; body: string; code: number; msg: RegExp }> = [
    { op: 'add', status: 503, body: '{"error":{"kind":"try-again","message":"not synced with the API server yet"}}', code: 11, msg: /cannot set up the pod yet: not synced/ },
    { op: 'add', status: 500, body: '{"error":{"kind":"failed","message":"iptables-restore: exit 1"}}', code: 100, msg: /failed to set up the pod: iptables-restore/ },
    { op: 'check', status: 500, body: '{"error":{"kind":"failed","message":"rules gone"}}', code: 102, msg: /failed to check the pod: rules gone/ },
    { op: 'add', status: 400, body: '{"error":{"kind":"bad-request","message":"ips: must be an array"}}', code: 101, msg: /refused the request \(are ambit-cni and ambit-agent the same version/ },
    { op: 'add', status: 404, body: 'Not Found', code: 101, msg: /refused the request/ },
    { op: 'add', status: 503, body: '<html>busy</html>', code: 11, msg: /cannot set up the pod yet: HTTP 503/ },
    { op: 'add', status: 200, body: '{"decision":"maybe"}', code: 101, msg: /not understood/ },
    { op: 'add', status: 200, body: 'garbage', code: 101, msg: /not understood/ },
    { op: 'del', status: 200, body: '{}', code: 101, msg: /not understood/ },
  ];
  for (const f of failures) {
    assert.throws(
      () => interpretReply(f.op, f.status, f.body, SOCK),
      (e: unknown) => e instanceof CniError && e.code === f.code && f.msg.test(e.msg),
      `${f.op} ${f.status} ${f.body}`,
    );
  }
});

test('the message for a missing agent says what happens and what to look at', () => {
  const m = agentDownMessage(SOCK);
  assert.match(m, /^ambit-agent is not running on this node/);
  assert.match(m, /\/var\/run\/ambit\/cni\.sock/);
  assert.match(m, /the runtime retries/);
  assert.match(m, /kubectl -n ambit-system get pods/);
});
