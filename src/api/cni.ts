/**
 * The cni → agent protocol: what `ambit-cni` (run by the container runtime for every pod sandbox)
 * asks the node's `ambit-agent`, and what the agent answers. Both programs import only this file
 * from each other's world.
 *
 * Transport: HTTP/1.1 over a unix socket (default /var/run/ambit/cni.sock, root only), JSON
 * bodies. HTTP because it is debuggable with `curl --unix-socket` and needs nothing beyond Node's
 * built-ins in the plugin, whose start-up time is on the pod start path.
 *
 * Written like a .proto: every message, every field, and which side may rely on what.
 *
 *   POST /v1/cni/add    CniPodRequest  → 200 CniAddReply
 *        The pod's sandbox network exists (the interface plugins ran before us). The agent answers
 *        "enrolled" only once the pod's redirection is in place and the proxy listens inside the
 *        pod netns, "not-enrolled" at once for pods outside the mesh.
 *   POST /v1/cni/del    CniPodRequest  → 200 CniDelReply
 *        The sandbox is going away (DEL may repeat; the netns may already be gone).
 *   POST /v1/cni/check  CniPodRequest  → 200 CniCheckReply
 *        Is the pod still as ADD left it?
 *   any failure         → 4xx/5xx CniErrorReply
 *        400 the request is malformed (a version skew between plugin and agent),
 *        503 the agent cannot decide yet (starting, not yet synced with the cluster): retry later,
 *        500 the agent tried and failed (e.g. programming the rules).
 */

/** Versioned paths; a new incompatible protocol gets new paths, so old plugins fail with 404, loudly. */
export const CNI_PATHS = {
  add: '/v1/cni/add',
  del: '/v1/cni/del',
  check: '/v1/cni/check',
} as const;

export type CniOperation = keyof typeof CNI_PATHS;

/** Where the agent listens unless the plugin's network config says otherwise (`agentSocket`). */
export const DEFAULT_CNI_SOCKET = '/var/run/ambit/cni.sock';

/** The pod, from the runtime's CNI_ARGS (K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_UID). */
export interface CniPodRef {
  namespace: string;
  name: string;
  /** "" when the runtime did not pass K8S_POD_UID (containerd < 1.5); the agent then matches by name. */
  uid: string;
}

/** message CniPodRequest — the same shape for add, del and check. */
export interface CniPodRequest {
  pod: CniPodRef;
  /** CNI_CONTAINERID: the sandbox id, the key of this attachment together with `ifname`. */
  containerId: string;
  /** CNI_NETNS: path of the pod's network namespace; "" on a DEL after the netns is gone. */
  netns: string;
  /** CNI_IFNAME: the pod's interface, e.g. "eth0". */
  ifname: string;
  /** The pod's addresses on `ifname` from prevResult, without prefix length; [] when unknown (DEL). */
  ips: string[];
  /** The CNI network name (the conflist's `name`). */
  network: string;
}

export type EnrolDecision = 'enrolled' | 'not-enrolled';

/** message CniAddReply */
export interface CniAddReply {
  decision: EnrolDecision;
}

/** message CniDelReply — the agent forgot the pod (or never knew it). */
export interface CniDelReply {
  released: true;
}

/** message CniCheckReply — `problem` set means the pod is not as ADD left it. */
export interface CniCheckReply {
  ok: boolean;
  problem?: string;
}

/** How the agent classifies a failure; the plugin maps each kind to a CNI error code. */
export type CniFailureKind = 'bad-request' | 'try-again' | 'failed';

/** message CniErrorReply */
export interface CniErrorReply {
  error: {
    kind: CniFailureKind;
    /** One line an operator can act on; the plugin shows it in the CNI error's `msg`. */
    message: string;
  };
}

export const FAILURE_STATUS: Record<CniFailureKind, number> = { 'bad-request': 400, 'try-again': 503, failed: 500 };

// ---------- validation (both sides validate what they receive) ----------

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isString = (v: unknown): v is string => typeof v === 'string';

/** Checks a CniPodRequest received by the agent; names the first bad field. */
export function parseCniPodRequest(body: unknown): Parsed<CniPodRequest> {
  if (!isObject(body)) return { ok: false, error: 'the request body is not a JSON object' };
  const pod = body.pod;
  if (!isObject(pod)) return { ok: false, error: 'pod: must be an object' };
  for (const f of ['namespace', 'name', 'uid'] as const) {
    if (!isString(pod[f])) return { ok: false, error: `pod.${f}: must be a string` };
  }
  if (!pod.namespace || !pod.name) return { ok: false, error: 'pod.namespace and pod.name must not be empty' };
  for (const f of ['containerId', 'netns', 'ifname', 'network'] as const) {
    if (!isString(body[f])) return { ok: false, error: `${f}: must be a string` };
  }
  if (!body.containerId) return { ok: false, error: 'containerId: must not be empty' };
  if (!Array.isArray(body.ips) || !body.ips.every(isString)) return { ok: false, error: 'ips: must be an array of strings' };
  return {
    ok: true,
    value: {
      pod: { namespace: pod.namespace as string, name: pod.name as string, uid: pod.uid as string },
      containerId: body.containerId as string,
      netns: body.netns as string,
      ifname: body.ifname as string,
      ips: [...(body.ips as string[])],
      network: body.network as string,
    },
  };
}

/** Checks the agent's successful answer to `op`, as received by the plugin. */
export function parseCniReply(op: 'add', body: unknown): Parsed<CniAddReply>;
export function parseCniReply(op: 'del', body: unknown): Parsed<CniDelReply>;
export function parseCniReply(op: 'check', body: unknown): Parsed<CniCheckReply>;
export function parseCniReply(op: CniOperation, body: unknown): Parsed<CniAddReply | CniDelReply | CniCheckReply> {
  if (!isObject(body)) return { ok: false, error: 'the reply is not a JSON object' };
  switch (op) {
    case 'add':
      return body.decision === 'enrolled' || body.decision === 'not-enrolled'
        ? { ok: true, value: { decision: body.decision } }
        : { ok: false, error: `decision: expected "enrolled" or "not-enrolled", got ${JSON.stringify(body.decision)}` };
    case 'del':
      return body.released === true ? { ok: true, value: { released: true } } : { ok: false, error: 'released: expected true' };
    case 'check':
      if (typeof body.ok !== 'boolean') return { ok: false, error: 'ok: expected a boolean' };
      if (body.problem !== undefined && !isString(body.problem)) return { ok: false, error: 'problem: expected a string' };
      return { ok: true, value: body.problem === undefined ? { ok: body.ok } : { ok: body.ok, problem: body.problem } };
  }
}

/** Reads a CniErrorReply; undefined when the body is not one (e.g. a proxy's HTML page). */
export function parseCniErrorReply(body: unknown): CniErrorReply['error'] | undefined {
  if (!isObject(body) || !isObject(body.error)) return undefined;
  const { kind, message } = body.error;
  if ((kind !== 'bad-request' && kind !== 'try-again' && kind !== 'failed') || !isString(message)) return undefined;
  return { kind, message };
}
