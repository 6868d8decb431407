/**
 * Validation of built-in objects: object names, labels, annotations, and the per-kind rules that
 * users actually hit, with the real server's field paths and messages. Pure: returns every error
 * at once (the caller raises one 422 Invalid listing them all).
 */
import type { FieldError, KObject } from './types.js';
import { labelSelectorFromObject, matchesLabels } from './selectors.js';

type Obj = Record<string, any>;

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const ENV_VAR_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;
const IANA_SVC_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

function invalidValue(field: string, value: unknown, msg: string): FieldError {
  return { reason: 'FieldValueInvalid', field, message: `Invalid value: ${fmt(value)}: ${msg}` };
}
function required(field: string, detail = ''): FieldError {
  return { reason: 'FieldValueRequired', field, message: detail ? `Required value: ${detail}` : 'Required value' };
}
function notSupported(field: string, value: unknown, allowed: string[]): FieldError {
  return { reason: 'FieldValueNotSupported', field, message: `Unsupported value: ${fmt(value)}: supported values: ${allowed.map((a) => `"${a}"`).join(', ')}` };
}
function duplicate(field: string, value: unknown): FieldError {
  return { reason: 'FieldValueDuplicate', field, message: `Duplicate value: ${fmt(value)}` };
}
function forbiddenField(field: string, msg: string): FieldError {
  return { reason: 'FieldValueForbidden', field, message: `Forbidden: ${msg}` };
}
function fmt(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `[]string{${v.map((x) => JSON.stringify(x)).join(', ')}}`;
  return String(v);
}

export function dns1123LabelErrors(v: string): string[] {
  const e: string[] = [];
  if (v.length > 63) e.push('must be no more than 63 characters');
  if (!DNS1123_LABEL.test(v))
    e.push(`a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`);
  return e;
}

export function dns1123SubdomainErrors(v: string): string[] {
  const e: string[] = [];
  if (v.length > 253) e.push('must be no more than 253 characters');
  if (!DNS1123_SUBDOMAIN.test(v))
    e.push(`a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`);
  return e;
}

/** Qualified name ("prefix/name") as used for label and annotation keys. */
export function qualifiedNameErrors(v: string): string[] {
  const parts = v.split('/');
  const e: string[] = [];
  let name = v;
  if (parts.length === 2) {
    const [prefix, n] = parts as [string, string];
    name = n;
    if (!prefix) e.push('prefix part must be non-empty');
    else e.push(...dns1123SubdomainErrors(prefix).map((m) => `prefix part ${m}`));
  } else if (parts.length > 2) {
    return [`a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')`];
  }
  if (!name) e.push('name part must be non-empty');
  else {
    if (name.length > 63) e.push('name part must be no more than 63 characters');
    if (!QUALIFIED_NAME.test(name))
      e.push(`name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`);
  }
  return e;
}

export function labelValueErrors(v: string): string[] {
  const e: string[] = [];
  if (v.length > 63) e.push('must be no more than 63 characters');
  if (!LABEL_VALUE.test(v))
    e.push(`a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`);
  return e;
}

/** Which name rule a kind's metadata.name follows. */
const LABEL_NAMED = new Set(['Namespace', 'Service']);
const PATH_SEGMENT_NAMED = new Set(['Role', 'ClusterRole', 'RoleBinding', 'ClusterRoleBinding']);

export function validateObjectMeta(kind: string, o: KObject, namespaced: boolean): FieldError[] {
  const errs: FieldError[] = [];
  const m = o.metadata;
  const name = m.name ?? '';
  if (!name) errs.push(required('metadata.name', 'name or generateName is required'));
  else if (PATH_SEGMENT_NAMED.has(kind)) {
    if (name === '.' || name === '..' || /[/%]/.test(name)) errs.push(invalidValue('metadata.name', name, `may not contain '/' or '%'`));
  } else {
    const msgs = LABEL_NAMED.has(kind) ? dns1123LabelErrors(name) : dns1123SubdomainErrors(name);
    for (const msg of msgs) errs.push(invalidValue('metadata.name', name, msg));
  }
  if (namespaced && !m.namespace) errs.push(required('metadata.namespace'));
  if (!namespaced && m.namespace) errs.push(forbiddenField('metadata.namespace', 'not allowed on this type'));
  for (const [k, v] of Object.entries(m.labels ?? {})) {
    for (const msg of qualifiedNameErrors(k)) errs.push(invalidValue('metadata.labels', k, msg));
    for (const msg of labelValueErrors(String(v))) errs.push(invalidValue('metadata.labels', v, msg));
  }
  let annSize = 0;
  for (const [k, v] of Object.entries(m.annotations ?? {})) {
    for (const msg of qualifiedNameErrors(k.toLowerCase())) errs.push(invalidValue('metadata.annotations', k, msg));
    annSize += k.length + String(v).length;
  }
  if (annSize > 256 * 1024) errs.push({ reason: 'FieldValueTooLong', field: 'metadata.annotations', message: 'Too long: must have at most 262144 bytes' });
  for (const [i, f] of (m.finalizers ?? []).entries()) {
    for (const msg of qualifiedNameErrors(f)) errs.push(invalidValue(`metadata.finalizers[${i}]`, f, msg));
  }
  return errs;
}

function validateContainers(list: Obj[] | undefined, path: string, volumes: Set<string>, requireOne: boolean): FieldError[] {
  const errs: FieldError[] = [];
  if (!list || list.length === 0) {
    if (requireOne) errs.push(required(path));
    return errs;
  }
  const names = new Set<string>();
  list.forEach((c, i) => {
    const p = `${path}[${i}]`;
    if (!c.name) errs.push(required(`${p}.name`));
    else {
      for (const msg of dns1123LabelErrors(c.name)) errs.push(invalidValue(`${p}.name`, c.name, msg));
      if (names.has(c.name)) errs.push(duplicate(`${p}.name`, c.name));
      names.add(c.name);
    }
    if (!c.image || !String(c.image).trim()) errs.push(required(`${p}.image`));
    const portNames = new Set<string>();
    ((c.ports as Obj[]) ?? []).forEach((port, j) => {
      const pp = `${p}.ports[${j}]`;
      if (!(port.containerPort >= 1 && port.containerPort <= 65535)) errs.push(invalidValue(`${pp}.containerPort`, port.containerPort, 'must be between 1 and 65535, inclusive'));
      if (port.name) {
        if (!IANA_SVC_NAME.test(port.name) || port.name.length > 15 || !/[a-z]/.test(port.name)) errs.push(invalidValue(`${pp}.name`, port.name, 'must be no more than 15 characters and contain only lowercase alphanumerics or "-", and at least one letter'));
        if (portNames.has(port.name)) errs.push(duplicate(`${pp}.name`, port.name));
        portNames.add(port.name);
      }
      if (port.protocol && !['TCP', 'UDP', 'SCTP'].includes(port.protocol)) errs.push(notSupported(`${pp}.protocol`, port.protocol, ['SCTP', 'TCP', 'UDP']));
    });
    ((c.env as Obj[]) ?? []).forEach((e, j) => {
      if (!e.name) errs.push(required(`${p}.env[${j}].name`));
      else if (!ENV_VAR_NAME.test(e.name)) errs.push(invalidValue(`${p}.env[${j}].name`, e.name, `a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')`));
    });
    ((c.volumeMounts as Obj[]) ?? []).forEach((vm, j) => {
      if (!vm.name) errs.push(required(`${p}.volumeMounts[${j}].name`));
      else if (!volumes.has(vm.name)) errs.push({ reason: 'FieldValueNotFound', field: `${p}.volumeMounts[${j}].name`, message: `Not found: ${fmt(vm.name)}` });
      if (!vm.mountPath) errs.push(required(`${p}.volumeMounts[${j}].mountPath`));
    });
    if (c.imagePullPolicy && !['Always', 'IfNotPresent', 'Never'].includes(c.imagePullPolicy)) errs.push(notSupported(`${p}.imagePullPolicy`, c.imagePullPolicy, ['Always', 'IfNotPresent', 'Never']));
  });
  return errs;
}

export function validatePodSpec(spec: Obj | undefined, path: string): FieldError[] {
  if (!spec) return [required(path)];
  const errs: FieldError[] = [];
  const volumes = new Set<string>();
  ((spec.volumes as Obj[]) ?? []).forEach((v, i) => {
    if (!v.name) errs.push(required(`${path}.volumes[${i}].name`));
    else if (volumes.has(v.name)) errs.push(duplicate(`${path}.volumes[${i}].name`, v.name));
    volumes.add(v.name);
  });
  errs.push(...validateContainers(spec.containers, `${path}.containers`, volumes, true));
  errs.push(...validateContainers(spec.initContainers, `${path}.initContainers`, volumes, false));
  if (spec.restartPolicy && !['Always', 'OnFailure', 'Never'].includes(spec.restartPolicy)) errs.push(notSupported(`${path}.restartPolicy`, spec.restartPolicy, ['Always', 'OnFailure', 'Never']));
  if (spec.dnsPolicy && !['ClusterFirstWithHostNet', 'ClusterFirst', 'Default', 'None'].includes(spec.dnsPolicy)) errs.push(notSupported(`${path}.dnsPolicy`, spec.dnsPolicy, ['ClusterFirstWithHostNet', 'ClusterFirst', 'Default', 'None']));
  if (spec.terminationGracePeriodSeconds !== undefined && spec.terminationGracePeriodSeconds < 0) errs.push(invalidValue(`${path}.terminationGracePeriodSeconds`, spec.terminationGracePeriodSeconds, 'must be greater than or equal to 0'));
  return errs;
}

function selectorMatchesTemplate(sel: Obj | undefined, tplLabels: Record<string, string> | undefined, path: string): FieldError[] {
  if (!sel || (!sel.matchLabels && !sel.matchExpressions)) return [required(`${path}.selector`)];
  let matches: boolean;
  try {
    matches = matchesLabels(labelSelectorFromObject(sel), tplLabels ?? {});
  } catch (e) {
    return [invalidValue(`${path}.selector`, 'v1.LabelSelector', (e as Error).message)];
  }
  return matches ? [] : [invalidValue(`${path}.template.metadata.labels`, (tplLabels ?? {}) as never, '`selector` does not match template `labels`')];
}

function nonNegative(v: unknown, field: string): FieldError[] {
  return typeof v === 'number' && v < 0 ? [invalidValue(field, v, 'must be greater than or equal to 0')] : [];
}

/** Per-kind rules on create and update. */
export function validateKind(kind: string, o: KObject): FieldError[] {
  const spec = o.spec as Obj | undefined;
  switch (kind) {
    case 'Pod':
      return validatePodSpec(spec, 'spec');
    case 'Deployment':
    case 'ReplicaSet':
    case 'DaemonSet': {
      const errs: FieldError[] = [];
      if (!spec) return [required('spec')];
      errs.push(...nonNegative(spec.replicas, 'spec.replicas'));
      errs.push(...selectorMatchesTemplate(spec.selector, spec.template?.metadata?.labels, 'spec'));
      errs.push(...validatePodSpec(spec.template?.spec, 'spec.template.spec'));
      if (spec.template?.spec?.restartPolicy && spec.template.spec.restartPolicy !== 'Always') errs.push(notSupported('spec.template.spec.restartPolicy', spec.template.spec.restartPolicy, ['Always']));
      if (kind === 'Deployment' && spec.strategy?.type && !['Recreate', 'RollingUpdate'].includes(spec.strategy.type)) errs.push(notSupported('spec.strategy.type', spec.strategy.type, ['Recreate', 'RollingUpdate']));
      return errs;
    }
    case 'Service': {
      const errs: FieldError[] = [];
      if (!spec) return [required('spec')];
      const types = ['ClusterIP', 'ExternalName', 'LoadBalancer', 'NodePort'];
      if (!types.includes(spec.type)) errs.push(notSupported('spec.type', spec.type, types));
      const ports = (spec.ports as Obj[]) ?? [];
      if (spec.type !== 'ExternalName' && ports.length === 0 && spec.clusterIP !== 'None') errs.push(required('spec.ports'));
      const seen = new Set<string>();
      ports.forEach((p, i) => {
        if (!(p.port >= 1 && p.port <= 65535)) errs.push(invalidValue(`spec.ports[${i}].port`, p.port, 'must be between 1 and 65535, inclusive'));
        if (ports.length > 1 && !p.name) errs.push(required(`spec.ports[${i}].name`));
        if (p.name) {
          if (seen.has(p.name)) errs.push(duplicate(`spec.ports[${i}].name`, p.name));
          seen.add(p.name);
        }
        if (typeof p.targetPort === 'number' && !(p.targetPort >= 1 && p.targetPort <= 65535)) errs.push(invalidValue(`spec.ports[${i}].targetPort`, p.targetPort, 'must be between 1 and 65535, inclusive'));
        if (p.protocol && !['TCP', 'UDP', 'SCTP'].includes(p.protocol)) errs.push(notSupported(`spec.ports[${i}].protocol`, p.protocol, ['SCTP', 'TCP', 'UDP']));
      });
      if (spec.type === 'ExternalName' && !spec.externalName) errs.push(required('spec.externalName'));
      return errs;
    }
    case 'ConfigMap':
    case 'Secret': {
      const errs: FieldError[] = [];
      for (const field of ['data', 'binaryData', 'stringData']) {
        for (const k of Object.keys((o as Obj)[field] ?? {})) {
          if (!/^[-._a-zA-Z0-9]+$/.test(k) || k.length > 253) errs.push(invalidValue(`${field}[${k}]`, k, `a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')`));
        }
      }
      return errs;
    }
    case 'RoleBinding':
    case 'ClusterRoleBinding': {
      const errs: FieldError[] = [];
      const ref = (o as Obj).roleRef;
      if (!ref?.name) errs.push(required('roleRef.name'));
      if (ref && !['Role', 'ClusterRole'].includes(ref.kind)) errs.push(notSupported('roleRef.kind', ref.kind, ['Role', 'ClusterRole']));
      if (kind === 'ClusterRoleBinding' && ref?.kind === 'Role') errs.push(notSupported('roleRef.kind', ref.kind, ['ClusterRole']));
      ((o as Obj).subjects ?? []).forEach((s: Obj, i: number) => {
        if (!['User', 'Group', 'ServiceAccount'].includes(s.kind)) errs.push(notSupported(`subjects[${i}].kind`, s.kind, ['ServiceAccount', 'User', 'Group']));
        if (!s.name) errs.push(required(`subjects[${i}].name`));
        if (s.kind === 'ServiceAccount' && kind === 'ClusterRoleBinding' && !s.namespace) errs.push(required(`subjects[${i}].namespace`));
      });
      return errs;
    }
    case 'EndpointSlice': {
      const t = (o as Obj).addressType;
      return ['IPv4', 'IPv6', 'FQDN'].includes(t) ? [] : t ? [notSupported('addressType', t, ['FQDN', 'IPv4', 'IPv6'])] : [required('addressType')];
    }
    default:
      return [];
  }
}

/** Rules that only apply to updates: immutable fields. */
export function validateKindUpdate(kind: string, next: KObject, prev: KObject): FieldError[] {
  const ns = next.spec as Obj | undefined;
  const ps = prev.spec as Obj | undefined;
  switch (kind) {
    case 'Deployment':
    case 'ReplicaSet':
    case 'DaemonSet':
      if (JSON.stringify(ns?.selector) !== JSON.stringify(ps?.selector)) return [invalidValue('spec.selector', 'v1.LabelSelector', 'field is immutable')];
      return [];
    case 'Service':
      if (ps?.clusterIP && ns?.clusterIP !== ps.clusterIP && ps.type !== 'ExternalName' && ns?.type !== 'ExternalName') return [invalidValue('spec.clusterIPs[0]', ns?.clusterIP ?? '', 'may not change once set')];
      return [];
    case 'Secret':
    case 'ConfigMap':
      if ((prev as Obj).immutable === true && JSON.stringify([(next as Obj).data, (next as Obj).binaryData]) !== JSON.stringify([(prev as Obj).data, (prev as Obj).binaryData])) return [forbiddenField('data', 'field is immutable when `immutable` is set')];
      return [];
    case 'Pod': {
      // only images, activeDeadlineSeconds, added tolerations and terminationGracePeriodSeconds may change
      const strip = (s: Obj | undefined) => {
        const c = structuredClone(s ?? {});
        for (const k of ['containers', 'initContainers']) for (const x of (c[k] as Obj[]) ?? []) delete x.image;
        delete c.activeDeadlineSeconds;
        delete c.tolerations;
        delete c.terminationGracePeriodSeconds;
        delete c.nodeName; // set once, by binding
        return JSON.stringify(c);
      };
      if (strip(ns) !== strip(ps)) {
        return [forbiddenField('spec', 'pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)')];
      }
      if (ps?.nodeName && ns?.nodeName !== ps.nodeName) return [invalidValue('spec.nodeName', ns?.nodeName ?? '', 'field is immutable')];
      return [];
    }
    default:
      return [];
  }
}
