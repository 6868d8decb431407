/**
 * Defaulting of built-in objects, as the real server's defaulters fill them in, and the per-kind
 * "prepare for create/update" rules (which parts of an object a write may not set). Pure: in place
 * on a fresh copy the caller owns.
 */
import type { KObject } from './types.js';

type Obj = Record<string, any>;

function obj(o: unknown): Obj {
  return o as Obj;
}

function setIfAbsent(o: Obj, key: string, v: unknown): void {
  if (o[key] === undefined || o[key] === null) o[key] = v;
}

/** Container defaults shared by pods and pod templates. */
function defaultContainer(c: Obj): void {
  setIfAbsent(c, 'terminationMessagePath', '/dev/termination-log');
  setIfAbsent(c, 'terminationMessagePolicy', 'File');
  const image = String(c.image ?? '');
  const tagged = /:[^/]+$/.test(image) || image.includes('@');
  setIfAbsent(c, 'imagePullPolicy', !tagged || image.endsWith(':latest') ? 'Always' : 'IfNotPresent');
  setIfAbsent(c, 'resources', {});
  for (const p of (c.ports as Obj[] | undefined) ?? []) setIfAbsent(p, 'protocol', 'TCP');
  for (const probe of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
    const pr = c[probe] as Obj | undefined;
    if (!pr) continue;
    setIfAbsent(pr, 'timeoutSeconds', 1);
    setIfAbsent(pr, 'periodSeconds', 10);
    setIfAbsent(pr, 'successThreshold', 1);
    setIfAbsent(pr, 'failureThreshold', 3);
    if (pr.httpGet) setIfAbsent(pr.httpGet, 'path', '/'), setIfAbsent(pr.httpGet, 'scheme', 'HTTP');
  }
  for (const e of (c.env as Obj[] | undefined) ?? []) {
    const fr = e.valueFrom?.fieldRef as Obj | undefined;
    if (fr) setIfAbsent(fr, 'apiVersion', 'v1');
  }
}

export function defaultPodSpec(spec: Obj): void {
  setIfAbsent(spec, 'restartPolicy', 'Always');
  setIfAbsent(spec, 'terminationGracePeriodSeconds', 30);
  setIfAbsent(spec, 'dnsPolicy', 'ClusterFirst');
  setIfAbsent(spec, 'securityContext', {});
  setIfAbsent(spec, 'schedulerName', 'default-scheduler');
  setIfAbsent(spec, 'enableServiceLinks', true);
  setIfAbsent(spec, 'preemptionPolicy', 'PreemptLowerPriority');
  setIfAbsent(spec, 'priority', 0);
  if (spec.serviceAccount && !spec.serviceAccountName) spec.serviceAccountName = spec.serviceAccount;
  setIfAbsent(spec, 'serviceAccountName', 'default');
  spec.serviceAccount = spec.serviceAccountName;
  if (spec.hostNetwork) {
    for (const c of [...((spec.containers as Obj[]) ?? []), ...((spec.initContainers as Obj[]) ?? [])]) {
      for (const p of (c.ports as Obj[] | undefined) ?? []) setIfAbsent(p, 'hostPort', p.containerPort);
    }
  }
  for (const c of (spec.containers as Obj[] | undefined) ?? []) defaultContainer(c);
  for (const c of (spec.initContainers as Obj[] | undefined) ?? []) defaultContainer(c);
  for (const v of (spec.volumes as Obj[] | undefined) ?? []) {
    if (v.configMap) setIfAbsent(v.configMap, 'defaultMode', 0o644);
    if (v.secret) setIfAbsent(v.secret, 'defaultMode', 0o644);
    if (v.hostPath) setIfAbsent(v.hostPath, 'type', '');
    if (v.projected) setIfAbsent(v.projected, 'defaultMode', 0o644);
  }
  if (spec.tolerations === undefined) {
    // the DefaultTolerationSeconds admission plugin adds these to every pod
    spec.tolerations = [
      { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
      { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
    ];
  }
}

function defaultTemplate(tpl: Obj | undefined): void {
  if (!tpl) return;
  setIfAbsent(tpl, 'metadata', {});
  if (tpl.spec) defaultPodSpec(tpl.spec);
}

function intOrPercentDefault(o: Obj, key: string, v: string): void {
  setIfAbsent(o, key, v);
}

/** Fills defaults of a built-in object of `kind` (in place). */
export function applyDefaults(kind: string, o: KObject): void {
  const spec = obj(o.spec ?? {});
  switch (kind) {
    case 'Pod':
      o.spec = spec;
      defaultPodSpec(spec);
      break;
    case 'Deployment': {
      o.spec = spec;
      setIfAbsent(spec, 'replicas', 1);
      setIfAbsent(spec, 'strategy', { type: 'RollingUpdate' });
      if (spec.strategy.type === 'RollingUpdate') {
        setIfAbsent(spec.strategy, 'rollingUpdate', {});
        intOrPercentDefault(spec.strategy.rollingUpdate, 'maxUnavailable', '25%');
        intOrPercentDefault(spec.strategy.rollingUpdate, 'maxSurge', '25%');
      }
      setIfAbsent(spec, 'revisionHistoryLimit', 10);
      setIfAbsent(spec, 'progressDeadlineSeconds', 600);
      defaultTemplate(spec.template);
      break;
    }
    case 'ReplicaSet':
      o.spec = spec;
      setIfAbsent(spec, 'replicas', 1);
      defaultTemplate(spec.template);
      break;
    case 'DaemonSet':
      o.spec = spec;
      setIfAbsent(spec, 'updateStrategy', { type: 'RollingUpdate' });
      if (spec.updateStrategy.type === 'RollingUpdate') {
        setIfAbsent(spec.updateStrategy, 'rollingUpdate', {});
        setIfAbsent(spec.updateStrategy.rollingUpdate, 'maxUnavailable', 1);
        setIfAbsent(spec.updateStrategy.rollingUpdate, 'maxSurge', 0);
      }
      setIfAbsent(spec, 'revisionHistoryLimit', 10);
      defaultTemplate(spec.template);
      break;
    case 'Service': {
      o.spec = spec;
      setIfAbsent(spec, 'type', 'ClusterIP');
      if (spec.type !== 'ExternalName') {
        setIfAbsent(spec, 'sessionAffinity', 'None');
        setIfAbsent(spec, 'internalTrafficPolicy', 'Cluster');
      }
      for (const p of (spec.ports as Obj[] | undefined) ?? []) {
        setIfAbsent(p, 'protocol', 'TCP');
        setIfAbsent(p, 'targetPort', p.port);
      }
      if (spec.type === 'NodePort' || spec.type === 'LoadBalancer') setIfAbsent(spec, 'externalTrafficPolicy', 'Cluster');
      break;
    }
    case 'Namespace':
      o.spec = spec;
      setIfAbsent(spec, 'finalizers', ['kubernetes']);
      break;
    case 'Secret':
      setIfAbsent(obj(o), 'type', 'Opaque');
      break;
    case 'NetworkPolicy': {
      o.spec = spec;
      if (!spec.policyTypes) {
        spec.policyTypes = ['Ingress'];
        if (spec.egress) spec.policyTypes.push('Egress');
      }
      break;
    }
    case 'EndpointSlice':
      for (const p of (obj(o).ports as Obj[] | undefined) ?? []) setIfAbsent(p, 'protocol', 'TCP');
      break;
    case 'Node':
      o.spec = spec;
      break;
    case 'CustomResourceDefinition':
      o.spec = spec;
      setIfAbsent(spec, 'conversion', { strategy: 'None' });
      break;
    default:
      break;
  }
  // the well-known labels the real server adds
  if (kind === 'Namespace') {
    const labels = (o.metadata.labels ??= {});
    labels['kubernetes.io/metadata.name'] = o.metadata.name ?? '';
  }
}

/**
 * Resets what a create may not set (status that the system owns), per kind. Returns nothing:
 * changes `o` in place.
 */
export function prepareForCreate(kind: string, o: KObject, hasStatusSubresource: boolean): void {
  switch (kind) {
    case 'Pod':
      o.status = { phase: 'Pending', qosClass: qosClass(obj(o.spec)) };
      break;
    case 'Namespace':
      o.status = { phase: 'Active' };
      break;
    case 'Service':
      o.status = { loadBalancer: {} };
      break;
    case 'Deployment':
    case 'ReplicaSet':
    case 'DaemonSet':
      o.status = kind === 'DaemonSet' ? { currentNumberScheduled: 0, numberMisscheduled: 0, desiredNumberScheduled: 0, numberReady: 0 } : {};
      break;
    case 'CustomResourceDefinition':
      o.status = {};
      break;
    case 'Node':
      break; // the kubelet registers its node with a status
    default:
      if (hasStatusSubresource) delete o.status;
  }
}

/** The pod's QoS class, from its containers' requests and limits. */
export function qosClass(spec: Obj): string {
  const cs = [...((spec.containers as Obj[]) ?? []), ...((spec.initContainers as Obj[]) ?? [])];
  let any = false;
  let guaranteed = cs.length > 0;
  for (const c of cs) {
    const req = (c.resources?.requests ?? {}) as Obj;
    const lim = (c.resources?.limits ?? {}) as Obj;
    if (Object.keys(req).length || Object.keys(lim).length) any = true;
    for (const r of ['cpu', 'memory']) {
      const l = lim[r];
      const q = req[r] ?? l;
      if (l === undefined || String(q) !== String(l)) guaranteed = false;
    }
  }
  if (!any) return 'BestEffort';
  return guaranteed ? 'Guaranteed' : 'Burstable';
}

/**
 * The v1 ⇄ internal conversion of the real server keeps the singular and plural pod IP fields in
 * step (podIP = podIPs[0], hostIP = hostIPs[0]); a client may set either.
 */
export function normalizeStatus(kind: string, o: KObject): void {
  if (kind !== 'Pod') return;
  const st = o.status as Obj | undefined;
  if (!st) return;
  for (const [one, many] of [['podIP', 'podIPs'], ['hostIP', 'hostIPs']] as const) {
    if (st[one] && !(st[many]?.length)) st[many] = [{ ip: st[one] }];
    else if (st[many]?.length && !st[one]) st[one] = st[many][0].ip;
  }
}
