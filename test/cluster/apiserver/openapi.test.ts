import assert from 'node:assert/strict';
import { test } from 'node:test';

import { apiPathOf, openapiForGroupVersion, openapiRoot, schemaNameForCustom, schemaNameForModel } from './openapi.js';
import { patchMeta } from './patchmeta.js';
import type { ResourceType } from './types.js';

type Json = Record<string, any>;

const deployments: ResourceType = {
  group: 'apps',
  version: 'v1',
  kind: 'Deployment',
  listKind: 'DeploymentList',
  plural: 'deployments',
  singular: 'deployment',
  namespaced: true,
  shortNames: ['deploy'],
  categories: ['all'],
  verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'],
  subresources: { status: true, scale: { specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas' } },
  schema: { kind: 'model', model: 'V1Deployment' },
  custom: false,
};

const widgets: ResourceType = {
  group: 'stable.example.com',
  version: 'v1',
  kind: 'Widget',
  listKind: 'WidgetList',
  plural: 'widgets',
  singular: 'widget',
  namespaced: false,
  shortNames: [],
  categories: [],
  verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'],
  subresources: {},
  schema: { kind: 'openapi', schema: { type: 'object', properties: { spec: { type: 'object', properties: { size: { type: 'integer' } } } } } },
  custom: true,
};

const containersMergeKey = (model: string, field: string) => (model === 'V1PodSpec' && field === 'containers' ? { strategy: 'merge', mergeKey: 'name' } : undefined);

/** What kubectl's query param verifier does: find the PATCH op of the kind, look for the param. */
function patchOpFor(doc: Json, gvk: { group: string; version: string; kind: string }): Json | undefined {
  for (const item of Object.values(doc.paths as Json)) {
    const p = item.patch;
    const ext = p?.['x-kubernetes-group-version-kind'];
    if (ext && ext.group === gvk.group && ext.version === gvk.version && ext.kind === gvk.kind) return p;
  }
  return undefined;
}

/** What kubectl apply does: the component whose gvk list names the kind, then follow allOf/$ref. */
function componentFor(doc: Json, gvk: { group: string; version: string; kind: string }): Json | undefined {
  return Object.values(doc.components.schemas as Json).find((s: Json) =>
    (s['x-kubernetes-group-version-kind'] ?? []).some((g: Json) => g.group === gvk.group && g.version === gvk.version && g.kind === gvk.kind),
  );
}

function resolve(doc: Json, schema: Json): Json {
  const target = schema.allOf?.[0] ?? schema;
  const ref: string | undefined = target.$ref;
  return ref ? doc.components.schemas[ref.replace('#/components/schemas/', '')] : schema;
}

test('the index lists each group-version with its hash', () => {
  assert.deepEqual(openapiRoot(['apps/v1', 'v1'], (gv) => `H-${gv}`), {
    paths: {
      'api/v1': { serverRelativeURL: '/openapi/v3/api/v1?hash=H-v1' },
      'apis/apps/v1': { serverRelativeURL: '/openapi/v3/apis/apps/v1?hash=H-apps/v1' },
    },
  });
  assert.equal(apiPathOf('v1'), 'api/v1');
  assert.equal(apiPathOf('networking.k8s.io/v1'), 'apis/networking.k8s.io/v1');
});

test('apps/v1 deployments: PATCH with fieldValidation and a strategic merge patch body', () => {
  const doc = openapiForGroupVersion([deployments], { patchMeta: containersMergeKey }) as Json;
  const patch = patchOpFor(doc, { group: 'apps', version: 'v1', kind: 'Deployment' });
  assert.ok(patch, 'PATCH operation for apps/v1 Deployment');
  assert.equal(patch['x-kubernetes-action'], 'patch');
  const params = (patch.parameters as Json[]).filter((p) => p.in === 'query').map((p) => p.name);
  for (const name of ['fieldValidation', 'dryRun', 'fieldManager', 'force']) assert.ok(params.includes(name), name);
  assert.ok(patch.requestBody.content['application/strategic-merge-patch+json']);
  assert.ok(patch.requestBody.content['application/apply-patch+yaml']);
});

test('apps/v1 deployments: paths and actions', () => {
  const doc = openapiForGroupVersion([deployments], { patchMeta: containersMergeKey }) as Json;
  const item = '/apis/apps/v1/namespaces/{namespace}/deployments/{name}';
  const cases: [string, string, string, string][] = [
    ['/apis/apps/v1/namespaces/{namespace}/deployments', 'get', 'list', 'Deployment'],
    ['/apis/apps/v1/namespaces/{namespace}/deployments', 'post', 'post', 'Deployment'],
    ['/apis/apps/v1/namespaces/{namespace}/deployments', 'delete', 'deletecollection', 'Deployment'],
    [item, 'get', 'get', 'Deployment'],
    [item, 'put', 'put', 'Deployment'],
    [item, 'patch', 'patch', 'Deployment'],
    [item, 'delete', 'delete', 'Deployment'],
    [`${item}/status`, 'patch', 'patch', 'Deployment'],
    [`${item}/scale`, 'put', 'put', 'Scale'],
    ['/apis/apps/v1/deployments', 'get', 'list', 'Deployment'],
  ];
  for (const [path, method, action, kind] of cases) {
    const o = doc.paths[path]?.[method];
    assert.ok(o, `${method} ${path}`);
    assert.equal(o['x-kubernetes-action'], action, `${method} ${path}`);
    assert.equal(o['x-kubernetes-group-version-kind'].kind, kind, `${method} ${path}`);
  }
  assert.equal(doc.paths[item].patch.operationId, 'patchAppsV1NamespacedDeployment');
  assert.equal(doc.paths[`${item}/scale`].get['x-kubernetes-group-version-kind'].group, 'autoscaling');
});

test('apps/v1 deployments: the Deployment schema leads to the containers merge key', () => {
  const doc = openapiForGroupVersion([deployments], { patchMeta: containersMergeKey }) as Json;
  const deployment = componentFor(doc, { group: 'apps', version: 'v1', kind: 'Deployment' });
  assert.ok(deployment);
  assert.equal(doc.components.schemas['io.k8s.api.apps.v1.Deployment'], deployment);
  const spec = resolve(doc, deployment.properties.spec);
  const template = resolve(doc, spec.properties.template);
  const podSpec = resolve(doc, template.properties.spec);
  const containers = podSpec.properties.containers;
  assert.equal(containers['x-kubernetes-patch-merge-key'], 'name');
  assert.equal(containers['x-kubernetes-patch-strategy'], 'merge');
  assert.equal(resolve(doc, containers.items).properties.image.type, 'string');
  assert.ok(doc.components.schemas['io.k8s.api.core.v1.PodSpec']);
  assert.ok(doc.components.schemas['io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta']);
  assert.deepEqual(componentFor(doc, { group: 'apps', version: 'v1', kind: 'DeploymentList' }), doc.components.schemas['io.k8s.api.apps.v1.DeploymentList']);
});

test('the patch table in patchmeta.ts reaches the document', { skip: patchMeta('V1PodSpec', 'containers') === undefined && 'patchmeta.ts table not filled yet' }, () => {
  const doc = openapiForGroupVersion([deployments]) as Json;
  const containers = doc.components.schemas['io.k8s.api.core.v1.PodSpec'].properties.containers;
  assert.equal(containers['x-kubernetes-patch-merge-key'], 'name');
});

test('custom resources: schema from the CRD, no strategic merge patch', () => {
  const doc = openapiForGroupVersion([widgets]) as Json;
  const name = schemaNameForCustom('stable.example.com', 'v1', 'Widget');
  assert.equal(name, 'com.example.stable.v1.Widget');
  const widget = componentFor(doc, { group: 'stable.example.com', version: 'v1', kind: 'Widget' });
  assert.equal(widget, doc.components.schemas[name]);
  assert.equal(widget!.properties.spec.properties.size.type, 'integer');
  assert.equal(resolve(doc, widget!.properties.metadata), doc.components.schemas['io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta']);
  const patch = patchOpFor(doc, { group: 'stable.example.com', version: 'v1', kind: 'Widget' });
  assert.ok(patch);
  assert.ok((patch.parameters as Json[]).some((p) => p.name === 'fieldValidation'));
  assert.equal(patch.requestBody.content['application/strategic-merge-patch+json'], undefined);
  assert.ok(doc.paths['/apis/stable.example.com/v1/widgets/{name}']);
});

test('output is deterministic', () => {
  const a = JSON.stringify(openapiForGroupVersion([deployments, widgets]));
  const b = JSON.stringify(openapiForGroupVersion([widgets, deployments]));
  assert.equal(a, b);
});

test('schema names follow the Go packages', () => {
  const cases: [string, string, string][] = [
    ['V1Deployment', 'apps', 'io.k8s.api.apps.v1.Deployment'],
    ['V1PodTemplateSpec', 'apps', 'io.k8s.api.core.v1.PodTemplateSpec'],
    ['V1LabelSelector', 'apps', 'io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector'],
    ['V1Scale', 'apps', 'io.k8s.api.autoscaling.v1.Scale'],
    ['V1Pod', '', 'io.k8s.api.core.v1.Pod'],
    ['V1Ingress', 'networking.k8s.io', 'io.k8s.api.networking.v1.Ingress'],
    ['RbacV1Subject', 'rbac.authorization.k8s.io', 'io.k8s.api.rbac.v1.Subject'],
    ['V1CustomResourceDefinition', 'apiextensions.k8s.io', 'io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition'],
  ];
  for (const [model, group, want] of cases) assert.equal(schemaNameForModel(model, group), want, model);
});
