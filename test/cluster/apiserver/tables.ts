/**
 * The meta.k8s.io/v1 Table conversion kube-apiserver performs when a client (kubectl get) asks for
 * `application/json;as=Table;g=meta.k8s.io;v=v1`. Columns and cells follow the server's printers
 * (kubernetes/pkg/printers/internalversion/printers.go), the apiextensions table convertor for
 * custom resources, and the generic default convertor (NAME, CREATED AT) for kinds that have no
 * printer. The server always prints the wide form: priority-1 columns are in every row and kubectl
 * hides them unless `-o wide`.
 */
import { evalJsonPath } from './jsonpath.js';
import { formatLabelSelector, formatLabels, labelSelectorFromObject, labelSelectorString } from './selectors.js';
import type { CrdPrinterColumn, KObject, ResourceType, TableColumn } from './types.js';

// ---------------------------------------------------------------------------------------------
// Durations and timestamps
// ---------------------------------------------------------------------------------------------

/**
 * k8s.io/apimachinery/pkg/util/duration.HumanDuration for a duration in milliseconds: "45s", "3m2s",
 * "12m", "5h3m", "20h", "2d3h", "45d", "2y30d", "9y". Up to 2s in the future reads "0s".
 */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 60 * 2) return `${seconds}s`;
  const minutes = Math.trunc(ms / 60_000);
  if (minutes < 10) {
    const s = seconds % 60;
    return s === 0 ? `${minutes}m` : `${minutes}m${s}s`;
  }
  if (minutes < 60 * 3) return `${minutes}m`;
  const hours = Math.trunc(ms / 3_600_000);
  if (hours < 8) {
    const m = minutes % 60;
    return m === 0 ? `${hours}h` : `${hours}h${m}m`;
  }
  if (hours < 48) return `${hours}h`;
  const days = Math.trunc(hours / 24);
  if (hours < 24 * 8) {
    const h = hours % 24;
    return h === 0 ? `${days}d` : `${days}d${h}h`;
  }
  if (hours < 24 * 365 * 2) return `${days}d`;
  const years = Math.trunc(days / 365);
  if (hours < 24 * 365 * 8) {
    const dy = days % 365;
    return dy === 0 ? `${years}y` : `${years}y${dy}d`;
  }
  return `${years}y`;
}

/** translateTimestampSince: "<unknown>" for a missing (zero) timestamp. */
function since(ts: unknown, now: number): string {
  const t = timeOf(ts);
  return t === undefined ? '<unknown>' : humanDuration(now - t);
}

function timeOf(ts: unknown): number | undefined {
  if (typeof ts !== 'string' || ts === '') return undefined;
  const t = Date.parse(ts);
  return Number.isNaN(t) ? undefined : t;
}

/** Go's time.RFC3339 in UTC, second precision; the zero time for a missing timestamp. */
function rfc3339(ts: unknown): string {
  const t = timeOf(ts);
  if (t === undefined) return '0001-01-01T00:00:00Z';
  return new Date(Math.floor(t / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

// ---------------------------------------------------------------------------------------------
// Column definitions
// ---------------------------------------------------------------------------------------------

// ObjectMeta's swagger docs, which the server uses for the Name and Age columns of every printer.
const NAME_DOC =
  'Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names';
const CREATION_DOC =
  'CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata';
const CONTAINERS_DOC = 'Names of each container in the template.';
const IMAGES_DOC = 'Images referenced by each container in the template.';

function col(name: string, type: TableColumn['type'], description: string, priority = 0, format = ''): TableColumn {
  return { name, type, format, description, priority };
}

const NAME = col('Name', 'string', NAME_DOC, 0, 'name');
const AGE = col('Age', 'string', CREATION_DOC);
const wide = (name: string, description: string): TableColumn => col(name, 'string', description, 1);

/** The generic convertor of k8s.io/apiserver/pkg/registry/rest (kinds without a printer). */
const DEFAULT_COLUMNS = [NAME, col('Created At', 'date', CREATION_DOC)];

type Obj = Record<string, unknown>;
type RowFn = (o: KObject, now: number) => unknown[];

interface Printer {
  columns: TableColumn[];
  row: RowFn;
}

const PRINTERS: Record<string, Printer> = {
  '/Pod': {
    columns: [
      NAME,
      col('Ready', 'string', 'The aggregate readiness state of this pod for accepting traffic.'),
      col('Status', 'string', 'The aggregate status of the containers in this pod.'),
      col(
        'Restarts',
        'string',
        'The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.',
      ),
      AGE,
      wide('IP', 'podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.'),
      wide('Node', 'NodeName indicates in which node this pod is scheduled.'),
      wide('Nominated Node', 'nominatedNodeName is set only when this pod preempts other pods on the node.'),
      wide('Readiness Gates', 'If specified, all readiness gates will be evaluated for pod readiness.'),
    ],
    row: podRow,
  },
  '/Service': {
    columns: [
      NAME,
      col('Type', 'string', 'type determines how the Service is exposed.'),
      col('Cluster-IP', 'string', 'clusterIP is the IP address of the service and is usually assigned randomly.'),
      col('External-IP', 'string', 'externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.'),
      col('Port(s)', 'string', 'The list of ports that are exposed by this service.'),
      AGE,
      wide('Selector', 'Route service traffic to pods with label keys and values matching this selector.'),
    ],
    row: serviceRow,
  },
  'apps/Deployment': {
    columns: [
      NAME,
      col('Ready', 'string', 'Number of the pod with ready state'),
      col('Up-to-date', 'string', 'Total number of non-terminated pods targeted by this deployment that have the desired template spec.'),
      col('Available', 'string', 'Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.'),
      AGE,
      wide('Containers', CONTAINERS_DOC),
      wide('Images', IMAGES_DOC),
      wide('Selector', 'Label selector for pods.'),
    ],
    row: deploymentRow,
  },
  'apps/ReplicaSet': {
    columns: [
      NAME,
      col('Desired', 'integer', 'Replicas is the number of desired replicas.'),
      col('Current', 'integer', 'Replicas is the most recently observed number of replicas.'),
      col('Ready', 'integer', 'The number of ready replicas for this replica set.'),
      AGE,
      wide('Containers', CONTAINERS_DOC),
      wide('Images', IMAGES_DOC),
      wide('Selector', 'Selector is a label query over pods that should match the replica count.'),
    ],
    row: replicaSetRow,
  },
  '/ReplicationController': {
    columns: [
      NAME,
      col('Desired', 'integer', 'Replicas is the number of desired replicas.'),
      col('Current', 'integer', 'Replicas is the most recently observed number of replicas.'),
      col('Ready', 'integer', 'The number of ready replicas for this replication controller.'),
      AGE,
      wide('Containers', CONTAINERS_DOC),
      wide('Images', IMAGES_DOC),
      wide('Selector', 'Selector is a label query over pods that should match the Replicas count.'),
    ],
    row: replicationControllerRow,
  },
  'apps/DaemonSet': {
    columns: [
      NAME,
      col('Desired', 'integer', 'The total number of nodes that should be running the daemon pod.'),
      col('Current', 'integer', 'The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.'),
      col('Ready', 'integer', 'The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.'),
      col('Up-to-date', 'integer', 'The total number of nodes that are running updated daemon pod'),
      col('Available', 'integer', 'The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.'),
      col('Node Selector', 'string', "NodeSelector is a selector which must be true for the pod to fit on a node."),
      AGE,
      wide('Containers', CONTAINERS_DOC),
      wide('Images', IMAGES_DOC),
      wide('Selector', 'A label query over pods that are managed by the daemon set.'),
    ],
    row: daemonSetRow,
  },
  'apps/StatefulSet': {
    columns: [NAME, col('Ready', 'string', 'Number of the pod with ready state'), AGE, wide('Containers', CONTAINERS_DOC), wide('Images', IMAGES_DOC)],
    row: statefulSetRow,
  },
  '/Node': {
    columns: [
      NAME,
      col('Status', 'string', 'The status of the node'),
      col('Roles', 'string', 'The roles of the node'),
      AGE,
      col('Version', 'string', 'Kubelet Version reported by the node.'),
      wide('Internal-IP', 'List of addresses reachable to the node.'),
      wide('External-IP', 'List of addresses reachable to the node.'),
      wide('OS-Image', 'OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).'),
      wide('Kernel-Version', "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
      wide('Container-Runtime', 'ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).'),
    ],
    row: nodeRow,
  },
  '/Namespace': {
    columns: [NAME, col('Status', 'string', 'The status of the namespace'), AGE],
    row: (o, now) => [name(o), str(g(o, 'status', 'phase')), age(o, now)],
  },
  '/ConfigMap': {
    columns: [NAME, col('Data', 'string', 'Data contains the configuration data.'), AGE],
    row: (o, now) => [name(o), keys(g(o, 'data')) + keys(g(o, 'binaryData')), age(o, now)],
  },
  '/Secret': {
    columns: [
      NAME,
      col('Type', 'string', 'Used to facilitate programmatic handling of secret data.'),
      col('Data', 'string', 'Data contains the secret data.'),
      AGE,
    ],
    row: (o, now) => [name(o), str(g(o, 'type')), keys(g(o, 'data')), age(o, now)],
  },
  '/ServiceAccount': {
    columns: [NAME, col('Secrets', 'string', 'Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.'), AGE],
    row: (o, now) => [name(o), arr(g(o, 'secrets')).length, age(o, now)],
  },
  '/Event': { columns: eventColumns(), row: (o, now) => eventRow(coreEvent(o), now) },
  'events.k8s.io/Event': { columns: eventColumns(), row: (o, now) => eventRow(eventsV1Event(o), now) },
  '/Endpoints': {
    columns: [NAME, col('Endpoints', 'string', 'The set of all endpoints is the union of all subsets.'), AGE],
    row: (o, now) => [name(o), formatEndpoints(arr(g(o, 'subsets'))), age(o, now)],
  },
  'discovery.k8s.io/EndpointSlice': {
    columns: [
      NAME,
      col('AddressType', 'string', 'addressType specifies the type of address carried by this EndpointSlice.'),
      col('Ports', 'string', 'ports specifies the list of network ports exposed by each endpoint in this slice.'),
      col('Endpoints', 'string', 'endpoints is a list of unique endpoints in this slice.'),
      AGE,
    ],
    row: (o, now) => [name(o), str(g(o, 'addressType')), formatSlicePorts(arr(g(o, 'ports'))), formatSliceEndpoints(arr(g(o, 'endpoints'))), age(o, now)],
  },
  'rbac.authorization.k8s.io/RoleBinding': { columns: bindingColumns('roleBinding'), row: bindingRow },
  'rbac.authorization.k8s.io/ClusterRoleBinding': { columns: bindingColumns('clusterRoleBinding'), row: bindingRow },
  'coordination.k8s.io/Lease': {
    columns: [NAME, col('Holder', 'string', 'holderIdentity contains the identity of the holder of a current lease.'), AGE],
    row: (o, now) => [name(o), str(g(o, 'spec', 'holderIdentity')), age(o, now)],
  },
  'networking.k8s.io/NetworkPolicy': {
    columns: [NAME, col('Pod-Selector', 'string', 'Selects the pods to which this NetworkPolicy object applies.'), AGE],
    row: (o, now) => [name(o), formatLabelSelector((g(o, 'spec', 'podSelector') ?? {}) as Obj), age(o, now)],
  },
  'admissionregistration.k8s.io/MutatingWebhookConfiguration': { columns: webhookColumns(), row: webhookRow },
  'admissionregistration.k8s.io/ValidatingWebhookConfiguration': { columns: webhookColumns(), row: webhookRow },
};

function eventColumns(): TableColumn[] {
  return [
    col('Last Seen', 'string', 'The time at which the most recent occurrence of this event was recorded.'),
    col('Type', 'string', 'Type of this event (Normal, Warning), new types could be added in the future'),
    col('Reason', 'string', "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
    col('Object', 'string', 'The object that this event is about.'),
    wide('Subobject', 'If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.'),
    wide('Source', 'The component reporting this event. Should be a short machine understandable string.'),
    col('Message', 'string', 'A human-readable description of the status of this operation.'),
    wide('First Seen', 'The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)'),
    wide('Count', 'The number of times this event has occurred.'),
    col('Name', 'string', NAME_DOC, 1, 'name'),
  ];
}

function bindingColumns(what: string): TableColumn[] {
  return [
    NAME,
    col('Role', 'string', 'RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace.'),
    AGE,
    wide('Users', `Users in the ${what}`),
    wide('Groups', `Groups in the ${what}`),
    wide('ServiceAccounts', `ServiceAccounts in the ${what}`),
  ];
}

function webhookColumns(): TableColumn[] {
  return [NAME, col('Webhooks', 'integer', 'Webhooks indicates the number of webhooks registered in this configuration'), AGE];
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/**
 * The column definitions for `group`/`kind`. Passing `crdColumns` (even an empty array) means the
 * kind is a custom resource: NAME plus the CRD version's printer columns, or NAME + Age when it
 * declares none (the CRD default column). Built-in kinds without a printer (Role, ClusterRole,
 * CustomResourceDefinition, ...) get the generic NAME + CREATED AT.
 */
export function tableColumns(group: string, kind: string, crdColumns?: CrdPrinterColumn[]): TableColumn[] {
  if (crdColumns !== undefined) return customColumns(crdColumns);
  return (PRINTERS[`${group}/${kind}`]?.columns ?? DEFAULT_COLUMNS).map((c) => ({ ...c }));
}

/** The cells of one object's row, aligned with tableColumns(group, kind, crdColumns). */
export function tableRow(group: string, kind: string, obj: KObject, now: number, crdColumns?: CrdPrinterColumn[]): unknown[] {
  if (crdColumns !== undefined) return customRow(obj, crdColumns, now);
  const printer = PRINTERS[`${group}/${kind}`];
  return printer ? printer.row(obj, now) : [name(obj), rfc3339(obj.metadata?.creationTimestamp)];
}

/** tableColumns for a served resource: custom resources use their printer columns. */
export function tableColumnsFor(rt: Pick<ResourceType, 'group' | 'kind' | 'custom' | 'printerColumns'>): TableColumn[] {
  return tableColumns(rt.group, rt.kind, rt.custom ? (rt.printerColumns ?? []) : undefined);
}

/** tableRow for a served resource. */
export function tableRowFor(rt: Pick<ResourceType, 'group' | 'kind' | 'custom' | 'printerColumns'>, obj: KObject, now: number): unknown[] {
  return tableRow(rt.group, rt.kind, obj, now, rt.custom ? (rt.printerColumns ?? []) : undefined);
}

export interface TableRowCondition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

/** Row conditions the pod printer attaches: Completed=True for Succeeded and Failed pods. */
export function tableRowConditions(group: string, kind: string, obj: KObject): TableRowCondition[] | undefined {
  if (group !== '' || kind !== 'Pod') return undefined;
  const phase = g(obj, 'status', 'phase');
  if (phase === 'Succeeded') return [{ type: 'Completed', status: 'True', reason: 'Succeeded', message: 'The pod has completed successfully.' }];
  if (phase === 'Failed') return [{ type: 'Completed', status: 'True', reason: 'Failed', message: 'The pod failed.' }];
  return undefined;
}

export interface TableOptions {
  crdColumns?: CrdPrinterColumn[];
  /** `?includeObject=`: None, Metadata (the server default) or Object */
  includeObject?: 'None' | 'Metadata' | 'Object';
  /** TableOptions.noHeaders: omit columnDefinitions */
  noHeaders?: boolean;
  resourceVersion?: string;
  continue?: string;
  remainingItemCount?: number;
}

/** A whole meta.k8s.io/v1 Table for a list (or a one-element list for a single GET). */
export function buildTable(group: string, kind: string, objs: KObject[], now: number, opts: TableOptions = {}): Record<string, unknown> {
  const metadata: Record<string, unknown> = {};
  if (opts.resourceVersion !== undefined) metadata.resourceVersion = opts.resourceVersion;
  if (opts.continue) metadata.continue = opts.continue;
  if (opts.remainingItemCount !== undefined) metadata.remainingItemCount = opts.remainingItemCount;
  const rows = objs.map((o) => {
    const row: Record<string, unknown> = { cells: tableRow(group, kind, o, now, opts.crdColumns) };
    const conditions = tableRowConditions(group, kind, o);
    if (conditions) row.conditions = conditions;
    const object = rowObject(o, opts.includeObject ?? 'Metadata');
    if (object) row.object = object;
    return row;
  });
  const table: Record<string, unknown> = { kind: 'Table', apiVersion: 'meta.k8s.io/v1', metadata };
  if (!opts.noHeaders) table.columnDefinitions = tableColumns(group, kind, opts.crdColumns);
  table.rows = rows;
  return table;
}

function rowObject(o: KObject, include: 'None' | 'Metadata' | 'Object'): unknown {
  if (include === 'None') return undefined;
  if (include === 'Object') return o;
  return { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata };
}

// ---------------------------------------------------------------------------------------------
// Custom resources (apiextensions tableconvertor)
// ---------------------------------------------------------------------------------------------

/** The column every CRD version gets when it declares no additionalPrinterColumns. */
const CRD_DEFAULT_COLUMNS: CrdPrinterColumn[] = [
  { name: 'Age', type: 'date', description: CREATION_DOC, jsonPath: '.metadata.creationTimestamp' },
];

function effectiveCrdColumns(cols: CrdPrinterColumn[]): CrdPrinterColumn[] {
  return cols.length > 0 ? cols : CRD_DEFAULT_COLUMNS;
}

function customColumns(cols: CrdPrinterColumn[]): TableColumn[] {
  return [
    { ...NAME },
    ...effectiveCrdColumns(cols).map((c) => ({
      name: c.name,
      type: c.type as TableColumn['type'],
      format: c.format ?? '',
      description: c.description || `Custom resource definition column (in JSONPath format): ${c.jsonPath}`,
      priority: c.priority ?? 0,
    })),
  ];
}

function customRow(obj: KObject, cols: CrdPrinterColumn[], now: number): unknown[] {
  return [name(obj), ...effectiveCrdColumns(cols).map((c) => customCell(obj, c, now))];
}

function customCell(obj: KObject, c: CrdPrinterColumn, now: number): unknown {
  let results: unknown[];
  try {
    results = evalJsonPath(obj, c.jsonPath);
  } catch {
    return null;
  }
  if (results.length === 0) return null;
  const value = results[0];
  if (value === null || value === undefined) return null;
  if (c.type === 'string') return jsonPathText(value);
  return cellForJsonValue(c.type, value, now);
}

/** How jsonpath PrintResults renders one value: text for scalars, compact JSON for the rest. */
function jsonPathText(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return goJson(v);
}

/** encoding/json.Marshal: sorted object keys, HTML-significant characters escaped. */
function goJson(v: unknown): string {
  const sorted = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(sorted);
    if (x !== null && typeof x === 'object') {
      const o = x as Obj;
      return Object.fromEntries(Object.keys(o).sort().map((k) => [k, sorted(o[k])]));
    }
    return x;
  };
  return JSON.stringify(sorted(v)).replace(/[<>&]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`);
}

function cellForJsonValue(type: string, v: unknown, now: number): unknown {
  switch (type) {
    case 'integer':
      return typeof v === 'number' ? Math.trunc(v) : null;
    case 'number':
      return typeof v === 'number' ? v : null;
    case 'boolean':
      return typeof v === 'boolean' ? v : null;
    case 'date': {
      if (typeof v !== 'string') return null;
      const t = Date.parse(v);
      return Number.isNaN(t) ? '<invalid>' : humanDuration(now - t);
    }
    default:
      return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Printers
// ---------------------------------------------------------------------------------------------

function g(v: unknown, ...path: string[]): unknown {
  let cur = v;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
    cur = (cur as Obj)[p];
  }
  return cur;
}

const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const num = (v: unknown): number => (typeof v === 'number' ? v : 0);
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const keys = (v: unknown): number => (v !== null && typeof v === 'object' ? Object.keys(v).length : 0);
const name = (o: KObject): string => o.metadata?.name ?? '';
const age = (o: KObject, now: number): string => since(o.metadata?.creationTimestamp, now);
/** spec.replicas as stored: defaulting gives 1 when a client omitted it. */
const replicas = (o: KObject): number => (typeof g(o, 'spec', 'replicas') === 'number' ? (g(o, 'spec', 'replicas') as number) : 1);

/** layoutContainerCells: names and images joined with ",". */
function containerCells(podSpec: unknown): [string, string] {
  const containers = arr(g(podSpec, 'containers'));
  return [containers.map((c) => str(g(c, 'name'))).join(','), containers.map((c) => str(g(c, 'image'))).join(',')];
}

// --- Pod ------------------------------------------------------------------------------------

interface ContainerStatus {
  name?: string;
  ready?: boolean;
  started?: boolean;
  restartCount?: number;
  state?: ContainerState;
  lastState?: ContainerState;
}

interface ContainerState {
  waiting?: { reason?: string };
  running?: object;
  terminated?: { reason?: string; exitCode?: number; signal?: number; finishedAt?: string };
}

/** What the pod printer computes: READY, STATUS and RESTARTS. */
export interface PodSummary {
  ready: string;
  status: string;
  restarts: string;
}

/** The pod printer's status logic (printPod in printers.go, v1.29+ with sidecar containers). */
export function podSummary(pod: KObject, now: number): PodSummary {
  const spec = (pod.spec ?? {}) as Obj;
  const status = (pod.status ?? {}) as Obj;
  const phase = str(status.phase);
  const initSpecs = arr(spec.initContainers) as { name?: string; restartPolicy?: string }[];
  const isSidecar = (n: string | undefined): boolean => initSpecs.some((c) => c.name === n && c.restartPolicy === 'Always');

  let restarts = 0;
  let sidecarRestarts = 0;
  let totalContainers = arr(spec.containers).length + initSpecs.filter((c) => c.restartPolicy === 'Always').length;
  let readyContainers = 0;
  let lastRestart = 0; // epoch ms; 0 = the zero time
  let lastSidecarRestart = 0;

  let reason = str(status.reason) || phase;
  for (const c of arr(status.conditions)) {
    if (g(c, 'type') === 'PodScheduled' && g(c, 'reason') === 'SchedulingGated') reason = 'SchedulingGated';
  }

  const initStatuses = arr(status.initContainerStatuses) as ContainerStatus[];
  let initializing = false;
  for (let i = 0; i < initStatuses.length; i++) {
    const c = initStatuses[i]!;
    restarts += c.restartCount ?? 0;
    lastRestart = Math.max(lastRestart, terminatedAt(c));
    const sidecar = isSidecar(c.name);
    if (sidecar) {
      sidecarRestarts += c.restartCount ?? 0;
      lastSidecarRestart = Math.max(lastSidecarRestart, terminatedAt(c));
    }
    const term = c.state?.terminated;
    const waiting = c.state?.waiting;
    if (term && (term.exitCode ?? 0) === 0) continue;
    if (sidecar && c.started === true) {
      if (c.ready) readyContainers++;
      continue;
    }
    if (term) {
      reason = term.reason ? `Init:${term.reason}` : term.signal ? `Init:Signal:${term.signal}` : `Init:ExitCode:${term.exitCode ?? 0}`;
    } else if (waiting?.reason && waiting.reason !== 'PodInitializing') {
      reason = `Init:${waiting.reason}`;
    } else {
      reason = `Init:${i}/${initSpecs.length}`;
    }
    initializing = true;
    break;
  }

  if (!initializing || conditionTrue(status, 'Initialized')) {
    restarts = sidecarRestarts;
    lastRestart = lastSidecarRestart;
    let hasRunning = false;
    const statuses = arr(status.containerStatuses) as ContainerStatus[];
    // The printer walks the statuses backwards, so the first container's state has the last word.
    for (let i = statuses.length - 1; i >= 0; i--) {
      const c = statuses[i]!;
      restarts += c.restartCount ?? 0;
      lastRestart = Math.max(lastRestart, terminatedAt(c));
      const term = c.state?.terminated;
      if (c.state?.waiting?.reason) reason = c.state.waiting.reason;
      else if (term?.reason) reason = term.reason;
      else if (term) reason = term.signal ? `Signal:${term.signal}` : `ExitCode:${term.exitCode ?? 0}`;
      else if (c.ready && c.state?.running) {
        hasRunning = true;
        readyContainers++;
      }
    }
    // A pod whose other containers completed but one still runs is Running (or NotReady).
    if (reason === 'Completed' && hasRunning) reason = conditionTrue(status, 'Ready') ? 'Running' : 'NotReady';
  }

  const deleting = pod.metadata?.deletionTimestamp !== undefined && pod.metadata.deletionTimestamp !== null;
  if (deleting && status.reason === 'NodeLost') reason = 'Unknown';
  else if (deleting && phase !== 'Succeeded' && phase !== 'Failed') reason = 'Terminating';

  const restartText = restarts !== 0 && lastRestart !== 0 ? `${restarts} (${humanDuration(now - lastRestart)} ago)` : String(restarts);
  return { ready: `${readyContainers}/${totalContainers}`, status: reason, restarts: restartText };
}

/** lastState.terminated.finishedAt in epoch ms, 0 when absent. */
function terminatedAt(c: ContainerStatus): number {
  return timeOf(c.lastState?.terminated?.finishedAt) ?? 0;
}

function conditionTrue(status: Obj, type: string): boolean {
  const c = arr(status.conditions).find((x) => g(x, 'type') === type);
  return g(c, 'status') === 'True';
}

function podRow(pod: KObject, now: number): unknown[] {
  const s = podSummary(pod, now);
  const podIP = str(g(arr(g(pod, 'status', 'podIPs'))[0], 'ip')) || '<none>';
  const nodeName = str(g(pod, 'spec', 'nodeName')) || '<none>';
  const nominated = str(g(pod, 'status', 'nominatedNodeName')) || '<none>';
  const gates = arr(g(pod, 'spec', 'readinessGates'));
  let readinessGates = '<none>';
  if (gates.length > 0) {
    const conditions = arr(g(pod, 'status', 'conditions'));
    const trueCount = gates.filter((gate) => {
      const c = conditions.find((x) => g(x, 'type') === g(gate, 'conditionType'));
      return g(c, 'status') === 'True';
    }).length;
    readinessGates = `${trueCount}/${gates.length}`;
  }
  return [name(pod), s.ready, s.status, s.restarts, age(pod, now), podIP, nodeName, nominated, readinessGates];
}

// --- Service --------------------------------------------------------------------------------

function serviceRow(o: KObject, now: number): unknown[] {
  const spec = g(o, 'spec');
  const internalIP = str(arr(g(spec, 'clusterIPs'))[0]) || '<none>';
  const ports = arr(g(spec, 'ports'))
    .map((p) => {
      const port = num(g(p, 'port'));
      const nodePort = num(g(p, 'nodePort'));
      const proto = str(g(p, 'protocol'));
      return nodePort > 0 ? `${port}:${nodePort}/${proto}` : `${port}/${proto}`;
    })
    .join(',');
  return [
    name(o),
    str(g(spec, 'type')),
    internalIP,
    serviceExternalIP(o),
    ports || '<none>',
    age(o, now),
    formatLabels(g(spec, 'selector') as Record<string, string> | undefined),
  ];
}

function serviceExternalIP(o: KObject): string {
  const externalIPs = arr(g(o, 'spec', 'externalIPs')).map(str);
  switch (g(o, 'spec', 'type')) {
    case 'ClusterIP':
    case 'NodePort':
      return externalIPs.length > 0 ? externalIPs.join(',') : '<none>';
    case 'LoadBalancer': {
      // The table is always generated wide, so the 16-character clipping never applies.
      const lb = loadBalancerIPs(arr(g(o, 'status', 'loadBalancer', 'ingress')));
      if (externalIPs.length > 0) return [...lb, ...externalIPs].join(',');
      return lb.length > 0 ? lb.join(',') : '<pending>';
    }
    case 'ExternalName':
      return str(g(o, 'spec', 'externalName'));
    default:
      return '<unknown>';
  }
}

function loadBalancerIPs(ingress: unknown[]): string[] {
  const set = new Set<string>();
  for (const i of ingress) {
    const ip = str(g(i, 'ip'));
    const host = str(g(i, 'hostname'));
    if (ip) set.add(ip);
    else if (host) set.add(host);
  }
  return [...set].sort();
}

// --- workloads ------------------------------------------------------------------------------

function deploymentRow(o: KObject, now: number): unknown[] {
  const [containers, images] = containerCells(g(o, 'spec', 'template', 'spec'));
  let selector: string;
  try {
    selector = labelSelectorString(labelSelectorFromObject(g(o, 'spec', 'selector') as Obj | undefined));
  } catch {
    selector = '<invalid>';
  }
  return [
    name(o),
    `${num(g(o, 'status', 'readyReplicas'))}/${replicas(o)}`,
    num(g(o, 'status', 'updatedReplicas')),
    num(g(o, 'status', 'availableReplicas')),
    age(o, now),
    containers,
    images,
    selector,
  ];
}

function replicaSetRow(o: KObject, now: number): unknown[] {
  const [containers, images] = containerCells(g(o, 'spec', 'template', 'spec'));
  return [
    name(o),
    replicas(o),
    num(g(o, 'status', 'replicas')),
    num(g(o, 'status', 'readyReplicas')),
    age(o, now),
    containers,
    images,
    formatLabelSelector(g(o, 'spec', 'selector') as Obj | undefined),
  ];
}

function replicationControllerRow(o: KObject, now: number): unknown[] {
  const [containers, images] = containerCells(g(o, 'spec', 'template', 'spec'));
  return [
    name(o),
    replicas(o),
    num(g(o, 'status', 'replicas')),
    num(g(o, 'status', 'readyReplicas')),
    age(o, now),
    containers,
    images,
    formatLabels(g(o, 'spec', 'selector') as Record<string, string> | undefined),
  ];
}

function daemonSetRow(o: KObject, now: number): unknown[] {
  const podSpec = g(o, 'spec', 'template', 'spec');
  const [containers, images] = containerCells(podSpec);
  const s = (f: string): number => num(g(o, 'status', f));
  return [
    name(o),
    s('desiredNumberScheduled'),
    s('currentNumberScheduled'),
    s('numberReady'),
    s('updatedNumberScheduled'),
    s('numberAvailable'),
    formatLabels(g(podSpec, 'nodeSelector') as Record<string, string> | undefined),
    age(o, now),
    containers,
    images,
    formatLabelSelector(g(o, 'spec', 'selector') as Obj | undefined),
  ];
}

function statefulSetRow(o: KObject, now: number): unknown[] {
  const [containers, images] = containerCells(g(o, 'spec', 'template', 'spec'));
  return [name(o), `${num(g(o, 'status', 'readyReplicas'))}/${replicas(o)}`, age(o, now), containers, images];
}

// --- Node -----------------------------------------------------------------------------------

function nodeRow(o: KObject, now: number): unknown[] {
  const ready = arr(g(o, 'status', 'conditions')).find((c) => g(c, 'type') === 'Ready');
  const status: string[] = [];
  if (ready) status.push(g(ready, 'status') === 'True' ? 'Ready' : 'NotReady');
  else status.push('Unknown');
  if (g(o, 'spec', 'unschedulable') === true) status.push('SchedulingDisabled');

  const roles = new Set<string>();
  for (const [k, v] of Object.entries(o.metadata?.labels ?? {})) {
    if (k.startsWith('node-role.kubernetes.io/')) {
      const role = k.slice('node-role.kubernetes.io/'.length);
      if (role) roles.add(role);
    } else if (k === 'kubernetes.io/role' && v !== '') {
      roles.add(v);
    }
  }
  const info = g(o, 'status', 'nodeInfo');
  const address = (type: string): string =>
    str(g(arr(g(o, 'status', 'addresses')).find((a) => g(a, 'type') === type), 'address')) || '<none>';
  return [
    name(o),
    status.join(','),
    [...roles].sort().join(',') || '<none>',
    age(o, now),
    str(g(info, 'kubeletVersion')),
    address('InternalIP'),
    address('ExternalIP'),
    str(g(info, 'osImage')) || '<unknown>',
    str(g(info, 'kernelVersion')) || '<unknown>',
    str(g(info, 'containerRuntimeVersion')) || '<unknown>',
  ];
}

// --- Event ----------------------------------------------------------------------------------

/** The fields of the internal Event type the printer reads, from either API group's wire form. */
interface EventView {
  name: string;
  type: string;
  reason: string;
  message: string;
  involved: unknown;
  sourceComponent: string;
  sourceHost: string;
  reportingController: string;
  reportingInstance: string;
  firstTimestamp: unknown;
  lastTimestamp: unknown;
  eventTime: unknown;
  count: number;
  series: unknown;
}

function coreEvent(o: KObject): EventView {
  return {
    name: name(o),
    type: str(g(o, 'type')),
    reason: str(g(o, 'reason')),
    message: str(g(o, 'message')),
    involved: g(o, 'involvedObject'),
    sourceComponent: str(g(o, 'source', 'component')),
    sourceHost: str(g(o, 'source', 'host')),
    reportingController: str(g(o, 'reportingComponent')),
    reportingInstance: str(g(o, 'reportingInstance')),
    firstTimestamp: g(o, 'firstTimestamp'),
    lastTimestamp: g(o, 'lastTimestamp'),
    eventTime: g(o, 'eventTime'),
    count: num(g(o, 'count')),
    series: g(o, 'series'),
  };
}

function eventsV1Event(o: KObject): EventView {
  return {
    name: name(o),
    type: str(g(o, 'type')),
    reason: str(g(o, 'reason')),
    message: str(g(o, 'note')),
    involved: g(o, 'regarding'),
    sourceComponent: str(g(o, 'deprecatedSource', 'component')),
    sourceHost: str(g(o, 'deprecatedSource', 'host')),
    reportingController: str(g(o, 'reportingController')),
    reportingInstance: str(g(o, 'reportingInstance')),
    firstTimestamp: g(o, 'deprecatedFirstTimestamp'),
    lastTimestamp: g(o, 'deprecatedLastTimestamp'),
    eventTime: g(o, 'eventTime'),
    count: num(g(o, 'deprecatedCount')),
    series: g(o, 'series'),
  };
}

function eventRow(e: EventView, now: number): unknown[] {
  const first = timeOf(e.firstTimestamp) !== undefined ? since(e.firstTimestamp, now) : since(e.eventTime, now);
  let last = timeOf(e.lastTimestamp) !== undefined ? since(e.lastTimestamp, now) : first;
  let count = e.count;
  if (e.series !== undefined && e.series !== null) {
    last = since(g(e.series, 'lastObservedTime'), now);
    count = num(g(e.series, 'count'));
  } else if (count === 0) {
    count = 1; // singleton events of the new API carry no count
  }
  const kind = str(g(e.involved, 'kind')).toLowerCase();
  const involvedName = str(g(e.involved, 'name'));
  const target = involvedName ? `${kind}/${involvedName}` : kind;
  const component = e.sourceComponent || e.reportingController;
  const host = e.sourceHost || e.reportingInstance;
  const source = host ? `${component}, ${host}` : component;
  return [last, e.type, e.reason, target, str(g(e.involved, 'fieldPath')), source, e.message.trim(), first, count, e.name];
}

// --- Endpoints / EndpointSlice --------------------------------------------------------------

/** formatEndpoints: up to three "ip:port" entries, then " + N more...". */
function formatEndpoints(subsets: unknown[]): string {
  if (subsets.length === 0) return '<none>';
  const max = 3;
  const list: string[] = [];
  let count = 0;
  for (const ss of subsets) {
    const addresses = arr(g(ss, 'addresses'));
    const ports = arr(g(ss, 'ports'));
    const entries = ports.length === 0 ? addresses.map((a) => str(g(a, 'ip'))) : ports.flatMap((p) => addresses.map((a) => joinHostPort(str(g(a, 'ip')), num(g(p, 'port')))));
    for (const e of entries) {
      if (list.length < max) list.push(e);
      count++;
    }
  }
  const ret = list.join(',');
  return count > max ? `${ret} + ${count - max} more...` : ret;
}

function joinHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function formatSlicePorts(ports: unknown[]): string {
  return listWithMore(
    ports.map((p) => {
      const port = g(p, 'port');
      const pname = g(p, 'name');
      return typeof port === 'number' ? String(port) : typeof pname === 'string' ? pname : '*';
    }),
  );
}

function formatSliceEndpoints(endpoints: unknown[]): string {
  return listWithMore(endpoints.flatMap((e) => arr(g(e, 'addresses')).map(str)));
}

/** listWithMoreString: three entries, " + N more...", "<unset>" when there are none. */
function listWithMore(all: string[]): string {
  const max = 3;
  const ret = all.slice(0, max).join(',');
  if (all.length > max) return `${ret} + ${all.length - max} more...`;
  return ret === '' ? '<unset>' : ret;
}

// --- RBAC, webhooks -------------------------------------------------------------------------

function bindingRow(o: KObject, now: number): unknown[] {
  const users: string[] = [];
  const groups: string[] = [];
  const sas: string[] = [];
  for (const s of arr(g(o, 'subjects'))) {
    const kind = g(s, 'kind');
    if (kind === 'ServiceAccount') sas.push(`${str(g(s, 'namespace'))}/${str(g(s, 'name'))}`);
    else if (kind === 'User') users.push(str(g(s, 'name')));
    else if (kind === 'Group') groups.push(str(g(s, 'name')));
  }
  const roleRef = `${str(g(o, 'roleRef', 'kind'))}/${str(g(o, 'roleRef', 'name'))}`;
  return [name(o), roleRef, age(o, now), users.join(', '), groups.join(', '), sas.join(', ')];
}

function webhookRow(o: KObject, now: number): unknown[] {
  return [name(o), arr(g(o, 'webhooks')).length, age(o, now)];
}
