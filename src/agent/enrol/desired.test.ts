/** Table tests of the enrolment decision. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PodObject } from '../../state/objects.js';
import { desiredEnrolment, isGone, type DesiredContext, type DesiredReason } from './desired.js';

const AMBIENT = { 'ambit.dev/dataplane-mode': 'ambient' };

function pod(over: { labels?: Record<string, string>; node?: string; phase?: string; hostNetwork?: boolean; ips?: string[]; deleting?: boolean } = {}): PodObject {
  const ips = over.ips ?? ['10.244.1.5'];
  return {
    metadata: { name: 'p', namespace: 'ns', uid: 'u1', labels: over.labels ?? { app: 'x' }, ...(over.deleting ? { deletionTimestamp: '2024-01-01T00:00:00Z' } : {}) },
    spec: { nodeName: over.node ?? 'n1', ...(over.hostNetwork !== undefined ? { hostNetwork: over.hostNetwork } : {}) },
    status: { phase: over.phase ?? 'Running', ...(ips.length ? { podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) } : {}) },
  };
}

const NODE: DesiredContext = { nodeName: 'n1' };

const cases: { name: string; pod: PodObject; ns: Record<string, string> | undefined; ctx?: DesiredContext; want: [boolean, DesiredReason] }[] = [
  { name: 'running pod in an ambient namespace', pod: pod(), ns: AMBIENT, want: [true, 'enrolled'] },
  { name: 'dual-stack pod', pod: pod({ ips: ['10.244.1.5', 'fd00::5'] }), ns: AMBIENT, want: [true, 'enrolled'] },
  { name: 'pending pod that already has an IP', pod: pod({ phase: 'Pending' }), ns: AMBIENT, want: [true, 'enrolled'] },
  { name: 'terminating pod stays enrolled', pod: pod({ deleting: true }), ns: AMBIENT, want: [true, 'enrolled'] },
  { name: 'namespace without the label', pod: pod(), ns: {}, want: [false, 'namespace-not-ambient'] },
  { name: 'namespace unknown', pod: pod(), ns: undefined, want: [false, 'namespace-not-ambient'] },
  { name: 'namespace label with another value', pod: pod(), ns: { 'ambit.dev/dataplane-mode': 'sidecar' }, want: [false, 'namespace-not-ambient'] },
  { name: 'pod opts out with none', pod: pod({ labels: { 'ambit.dev/dataplane-mode': 'none' } }), ns: AMBIENT, want: [false, 'opted-out'] },
  { name: 'pod label none in a non-ambient namespace', pod: pod({ labels: { 'ambit.dev/dataplane-mode': 'none' } }), ns: {}, want: [false, 'namespace-not-ambient'] },
  { name: 'pod label ambient does not enrol by itself', pod: pod({ labels: { 'ambit.dev/dataplane-mode': 'ambient' } }), ns: {}, want: [false, 'namespace-not-ambient'] },
  { name: 'host-network pod', pod: pod({ hostNetwork: true }), ns: AMBIENT, want: [false, 'host-network'] },
  { name: 'pod of another node', pod: pod({ node: 'n2' }), ns: AMBIENT, want: [false, 'other-node'] },
  { name: 'unscheduled pod', pod: { ...pod(), spec: {} }, ns: AMBIENT, want: [false, 'other-node'] },
  { name: 'succeeded pod', pod: pod({ phase: 'Succeeded' }), ns: AMBIENT, want: [false, 'terminated'] },
  { name: 'failed pod', pod: pod({ phase: 'Failed' }), ns: AMBIENT, want: [false, 'terminated'] },
  { name: 'pod without an IP yet', pod: pod({ ips: [], phase: 'Pending' }), ns: AMBIENT, want: [false, 'no-ip'] },
  { name: 'CNI knows the IP before the status does', pod: pod({ ips: [], phase: 'Pending' }), ns: AMBIENT, ctx: { nodeName: 'n1', ips: ['10.244.1.9'] }, want: [true, 'enrolled'] },
  { name: 'CNI without IPs still enrols (netns path identifies the pod)', pod: pod({ ips: [], phase: 'Pending' }), ns: AMBIENT, ctx: { nodeName: 'n1', ips: [], fromCni: true }, want: [true, 'enrolled'] },
  { name: 'CNI does not override the opt-out', pod: pod({ ips: [], labels: { 'ambit.dev/dataplane-mode': 'none' } }), ns: AMBIENT, ctx: { nodeName: 'n1', fromCni: true }, want: [false, 'opted-out'] },
  { name: 'node is checked before everything else', pod: pod({ node: 'n2', hostNetwork: true, phase: 'Failed' }), ns: {}, want: [false, 'other-node'] },
];

for (const c of cases) {
  test(`desiredEnrolment: ${c.name}`, () => {
    const d = desiredEnrolment(c.pod, c.ns, c.ctx ?? NODE);
    assert.deepEqual([d.enrol, d.reason], c.want);
  });
}

test('isGone: only finished pods and pods of other nodes are forgotten rather than un-enrolled', () => {
  const table: [DesiredReason, boolean][] = [
    ['terminated', true],
    ['other-node', true],
    ['namespace-not-ambient', false],
    ['opted-out', false],
    ['host-network', false],
    ['no-ip', false],
    ['enrolled', false],
  ];
  for (const [reason, gone] of table) assert.equal(isGone(reason), gone, reason);
});
