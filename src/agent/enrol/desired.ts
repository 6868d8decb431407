/**
 * Whether the agent should have one pod enrolled right now: a pure decision from the Pod (as the
 * watch or a CNI request sees it) and its Namespace's labels. The enroller (enroller.ts) compares
 * this with what it has done and drives the effects; keeping the decision pure keeps the table of
 * cases readable in one place (desired.test.ts).
 *
 * Mesh membership itself (namespace `ambit.dev/dataplane-mode=ambient`, pod `=none` opts out, no
 * host-network pods) is `isEnrolled` of the mesh model, so the control plane and the agent can never
 * disagree on it. This file adds what only the node's agent cares about: the pod must be on this
 * node, still running, and have a network to capture.
 */
import type { PodObject } from '../../state/objects.js';
import { DATAPLANE_MODE_LABEL, DATAPLANE_NONE, isEnrolled, podIps } from '../../state/model.js';

/** Why a pod is (not) to be enrolled; stable strings, shown in logs and the admin snapshot. */
export type DesiredReason =
  | 'enrolled'
  | 'other-node'
  | 'terminated'
  | 'host-network'
  | 'namespace-not-ambient'
  | 'opted-out'
  | 'no-ip';

export interface Desired {
  enrol: boolean;
  reason: DesiredReason;
}

export interface DesiredContext {
  /** The agent's node; pods of other nodes are never ours (the watch should not even deliver them). */
  nodeName: string;
  /**
   * The pod's addresses when the caller knows better than `status` (a CNI ADD, which comes before
   * the kubelet reports the IP). Default: the pod's status.podIPs / podIP.
   */
  ips?: readonly string[];
  /**
   * The CNI plugin reports the sandbox's network exists: no IP is needed to decide (prevResult may
   * carry none), the netns path identifies the pod.
   */
  fromCni?: boolean;
}

/**
 * The decision for one pod. The first failing condition names the reason, in this order: node,
 * finished, host network, namespace, opt-out, addresses.
 *
 * A terminating pod (deletionTimestamp set) stays enrolled: its containers still run and their
 * connections still need the proxy until the sandbox goes away (CNI DEL or the pod's deletion).
 */
export function desiredEnrolment(pod: PodObject, namespaceLabels: Record<string, string> | undefined, ctx: DesiredContext): Desired {
  if (pod.spec?.nodeName !== ctx.nodeName) return { enrol: false, reason: 'other-node' };
  const phase = pod.status?.phase;
  if (phase === 'Succeeded' || phase === 'Failed') return { enrol: false, reason: 'terminated' };
  if (pod.spec?.hostNetwork === true) return { enrol: false, reason: 'host-network' };
  if (!isEnrolled(pod, namespaceLabels)) {
    const optedOut = pod.metadata.labels?.[DATAPLANE_MODE_LABEL] === DATAPLANE_NONE;
    return { enrol: false, reason: optedOut && isEnrolled(withoutOptOut(pod), namespaceLabels) ? 'opted-out' : 'namespace-not-ambient' };
  }
  const ips = ctx.ips ?? podIps(pod);
  if (!ctx.fromCni && ips.length === 0) return { enrol: false, reason: 'no-ip' };
  return { enrol: true, reason: 'enrolled' };
}

/** Whether the decision means "this pod's sandbox is finished or not ours: forget it" rather than "un-enrol it". */
export function isGone(reason: DesiredReason): boolean {
  return reason === 'terminated' || reason === 'other-node';
}

function withoutOptOut(pod: PodObject): PodObject {
  const labels = { ...pod.metadata.labels };
  delete labels[DATAPLANE_MODE_LABEL];
  return { ...pod, metadata: { ...pod.metadata, labels } };
}
