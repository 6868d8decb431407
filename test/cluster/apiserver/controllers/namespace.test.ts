import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KObject } from '../types.js';
import { describe as show } from './actions.js';
import { field, type Condition } from './meta.js';
import { ROOT_CA_DESCRIPTION, groupResource, reconcileNamespace } from './namespace.js';
import { T0, at } from './fixtures.js';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

function ns(terminating = false, finalizers = ['kubernetes']): KObject {
  const o: KObject = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'team', uid: 'uid-ns' }, spec: { finalizers }, status: { phase: terminating ? 'Terminating' : 'Active' } };
  if (terminating) o.metadata.deletionTimestamp = at(0);
  return o;
}

test('an active namespace gets the default ServiceAccount and kube-root-ca.crt', () => {
  const actions = reconcileNamespace({ namespace: ns(), caPem: PEM }, T0);
  assert.deepEqual(actions.map(show), ['create v1/serviceaccounts team/default', 'create v1/configmaps team/kube-root-ca.crt']);
  const cm = actions[1]!.verb === 'create' ? actions[1]!.object : undefined;
  assert.deepEqual(cm?.['data'], { 'ca.crt': PEM });
  assert.equal(cm?.metadata.annotations?.['kubernetes.io/description'], ROOT_CA_DESCRIPTION);
});

test('kube-root-ca.crt is repaired when its data or annotation drifts', () => {
  const sa: KObject = { metadata: { name: 'default', namespace: 'team' } };
  const good: KObject = { metadata: { name: 'kube-root-ca.crt', namespace: 'team', annotations: { 'kubernetes.io/description': ROOT_CA_DESCRIPTION } }, data: { 'ca.crt': PEM } };
  assert.deepEqual(reconcileNamespace({ namespace: ns(), caPem: PEM, serviceAccount: sa, rootCA: good }, T0), []);
  const stale = { ...good, data: { 'ca.crt': 'old', extra: 'x' } };
  const actions = reconcileNamespace({ namespace: ns(), caPem: PEM, serviceAccount: sa, rootCA: stale }, T0);
  assert.deepEqual(actions.map(show), ['update v1/configmaps team/kube-root-ca.crt']);
  assert.deepEqual(actions[0]!.verb === 'update' && actions[0]!.object['data'], { 'ca.crt': PEM });
});

test('a terminating namespace: content deleted, conditions reported, no finalize yet', () => {
  const contents = new Map<string, KObject[]>([
    ['v1/pods', [{ metadata: { name: 'p1', namespace: 'team', uid: 'u1' } }, { metadata: { name: 'p2', namespace: 'team', uid: 'u2', deletionTimestamp: at(0) } }]],
    ['apps/v1/deployments', [{ metadata: { name: 'd', namespace: 'team', uid: 'u3', finalizers: ['example.com/hold'] } }]],
    ['v1/configmaps', []],
  ]);
  const actions = reconcileNamespace({ namespace: ns(true), caPem: PEM, contents }, T0);
  assert.deepEqual(actions.map(show), ['delete apps/v1/deployments team/d', 'delete v1/pods team/p1', 'updateStatus v1/namespaces team']);
  const conds = actions[2]!.verb === 'updateStatus' ? (field<Condition[]>(actions[2]!.object, 'status', 'conditions') ?? []) : [];
  assert.deepEqual(conds.map((c) => `${c.type}=${c.status}/${c.reason}`), [
    'NamespaceDeletionDiscoveryFailure=False/ResourcesDiscovered',
    'NamespaceDeletionGroupVersionParsingFailure=False/ParsedGroupVersions',
    'NamespaceDeletionContentFailure=False/ContentDeleted',
    'NamespaceContentRemaining=True/SomeResourcesRemain',
    'NamespaceFinalizersRemaining=True/SomeFinalizersRemain',
  ]);
  assert.equal(conds[3]!.message, 'Some resources are remaining: deployments.apps has 1 resource instances, pods. has 1 resource instances');
  assert.equal(conds[4]!.message, 'Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances');
});

test('an empty terminating namespace is finalized: the kubernetes finalizer goes', () => {
  const actions = reconcileNamespace({ namespace: ns(true), caPem: PEM, contents: new Map([['v1/pods', []]]) }, T0);
  assert.deepEqual(actions.map((a) => a.verb), ['updateStatus', 'update']);
  const last = actions[1]!.verb === 'update' ? actions[1]!.object : undefined;
  assert.deepEqual(field(last, 'spec', 'finalizers'), []);
  // already finalized: nothing more to do
  assert.deepEqual(reconcileNamespace({ namespace: ns(true, []), caPem: PEM, contents: new Map() }, T0), []);
});

test('groupResource spells resources as the real messages do', () => {
  assert.equal(groupResource('v1/pods'), 'pods.');
  assert.equal(groupResource('apps/v1/deployments'), 'deployments.apps');
});
