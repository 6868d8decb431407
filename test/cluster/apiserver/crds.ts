/**
 * CustomResourceDefinitions: validation of a CRD, its status (NamesAccepted, Established), and the
 * resource types it makes the server serve (one per served version, sharing one store).
 */
import type { CrdPrinterColumn, FieldError, KObject, ResourceType } from './types.js';
import { structuralErrors } from './crdschema.js';

type Obj = Record<string, any>;

const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const VERSION_NAME = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

function req(field: string): FieldError {
  return { reason: 'FieldValueRequired', field, message: 'Required value' };
}
function inv(field: string, value: unknown, msg: string): FieldError {
  return { reason: 'FieldValueInvalid', field, message: `Invalid value: ${JSON.stringify(value)}: ${msg}` };
}

export function validateCrd(o: KObject, prev?: KObject): FieldError[] {
  const errs: FieldError[] = [];
  const spec = (o.spec ?? {}) as Obj;
  const names = (spec.names ?? {}) as Obj;
  if (!spec.group) errs.push(req('spec.group'));
  else if (!String(spec.group).includes('.')) errs.push(inv('spec.group', spec.group, 'should be a domain with at least one dot'));
  if (!names.plural) errs.push(req('spec.names.plural'));
  else if (!DNS1035_LABEL.test(names.plural)) errs.push(inv('spec.names.plural', names.plural, 'a lowercase RFC 1123 label must consist of lower case alphanumeric characters or \'-\''));
  if (!names.kind) errs.push(req('spec.names.kind'));
  if (!names.listKind && names.kind) names.listKind = `${names.kind}List`;
  if (names.singular === undefined && names.kind) names.singular = String(names.kind).toLowerCase();
  if (spec.group && names.plural && o.metadata.name !== `${names.plural}.${spec.group}`) {
    errs.push(inv('metadata.name', o.metadata.name, 'must be spec.names.plural+"."+spec.group'));
  }
  if (!['Namespaced', 'Cluster'].includes(spec.scope)) {
    errs.push({ reason: 'FieldValueNotSupported', field: 'spec.scope', message: `Unsupported value: ${JSON.stringify(spec.scope ?? '')}: supported values: "Cluster", "Namespaced"` });
  }
  const versions = (spec.versions ?? []) as Obj[];
  if (versions.length === 0) errs.push(req('spec.versions'));
  const storage = versions.filter((v) => v.storage);
  if (versions.length && storage.length !== 1) errs.push(inv('spec.versions', versions.map((v) => v.name), 'must have exactly one version marked as storage version'));
  const seen = new Set<string>();
  versions.forEach((v, i) => {
    if (!v.name || !VERSION_NAME.test(v.name)) errs.push(inv(`spec.versions[${i}].name`, v.name ?? '', 'a DNS-1035 label must consist of lower case alphanumeric characters or \'-\''));
    if (seen.has(v.name)) errs.push({ reason: 'FieldValueDuplicate', field: `spec.versions[${i}].name`, message: `Duplicate value: ${JSON.stringify(v.name)}` });
    seen.add(v.name);
    const schema = v.schema?.openAPIV3Schema;
    if (!schema) errs.push(req(`spec.versions[${i}].schema.openAPIV3Schema`));
    else errs.push(...structuralErrors(schema, `spec.versions[${i}].schema.openAPIV3Schema`));
  });
  if (prev) {
    const ps = prev.spec as Obj;
    if (ps.group !== spec.group) errs.push(inv('spec.group', spec.group, 'field is immutable'));
    if (ps.scope !== spec.scope) errs.push(inv('spec.scope', spec.scope, 'field is immutable'));
    if (ps.names?.plural !== names.plural) errs.push(inv('spec.names.plural', names.plural, 'field is immutable'));
  }
  return errs;
}

/** The status the real apiextensions server reports for an accepted CRD. */
export function crdStatus(o: KObject, now: number): Obj {
  const spec = o.spec as Obj;
  const t = new Date(now).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const storage = ((spec.versions ?? []) as Obj[]).find((v) => v.storage)?.name;
  const prevStored = ((o.status as Obj | undefined)?.storedVersions as string[] | undefined) ?? [];
  return {
    acceptedNames: { ...spec.names },
    conditions: [
      { type: 'NamesAccepted', status: 'True', lastTransitionTime: t, reason: 'NoConflicts', message: 'no conflicts found' },
      { type: 'Established', status: 'True', lastTransitionTime: t, reason: 'InitialNamesAccepted', message: 'the initial names have been accepted' },
    ],
    storedVersions: [...new Set([...prevStored, ...(storage ? [storage] : [])])],
  };
}

/** The resource types a CRD serves: one per served version. */
export function crdResourceTypes(crd: KObject): ResourceType[] {
  const spec = crd.spec as Obj;
  const names = spec.names as Obj;
  return ((spec.versions ?? []) as Obj[])
    .filter((v) => v.served)
    .map((v) => {
      const rt: ResourceType = {
        group: spec.group,
        version: v.name,
        kind: names.kind,
        listKind: names.listKind ?? `${names.kind}List`,
        plural: names.plural,
        singular: names.singular || String(names.kind).toLowerCase(),
        namespaced: spec.scope === 'Namespaced',
        shortNames: names.shortNames ?? [],
        categories: names.categories ?? [],
        verbs: ['delete', 'deletecollection', 'get', 'list', 'patch', 'create', 'update', 'watch'],
        subresources: {},
        schema: { kind: 'openapi', schema: v.schema?.openAPIV3Schema ?? { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
        custom: true,
      };
      if (v.subresources?.status) rt.subresources.status = true;
      if (v.subresources?.scale) rt.subresources.scale = v.subresources.scale;
      const cols = (v.additionalPrinterColumns ?? []) as CrdPrinterColumn[];
      if (cols.length) rt.printerColumns = cols;
      return rt;
    });
}
