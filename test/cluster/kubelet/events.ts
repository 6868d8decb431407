// Pod events from the kubelet, as client-go's recorder writes them: core/v1 Events named
// <pod>.<hex nanoseconds>, source.component "kubelet" with the node as host, and repeats of the same
// (object, field, type, reason, message) folded into one Event whose count and lastTimestamp grow
// (the event correlator's dedupe), so a probe failing every second does not flood the store.
import type { ApiClient } from '../apiserver/controllers/client.js';
import type { KObject } from '../apiserver/types.js';
import { rfc3339 } from '../apiserver/controllers/meta.js';

export type EventType = 'Normal' | 'Warning';

export interface EventSpec {
  type: EventType;
  reason: string;
  message: string;
  /** e.g. spec.containers{web} */
  fieldPath?: string;
}

/** client-go's event name: the object's name and the time in nanoseconds, hex. */
export function eventName(objectName: string, nowMs: number, seq = 0): string {
  const nanos = BigInt(nowMs) * 1_000_000n + BigInt(seq % 1_000_000);
  return `${objectName}.${nanos.toString(16)}`;
}

/** `component` is the source (kubelet, default-scheduler); `host` the node, '' for cluster components. */
export function eventObject(pod: KObject, e: EventSpec, component: string, host: string, nowMs: number, name: string): KObject {
  const ts = rfc3339(nowMs);
  const involved: Record<string, unknown> = {
    kind: 'Pod',
    namespace: pod.metadata.namespace,
    name: pod.metadata.name,
    uid: pod.metadata.uid,
    apiVersion: 'v1',
  };
  if (e.fieldPath) involved.fieldPath = e.fieldPath;
  return {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name, namespace: pod.metadata.namespace },
    involvedObject: involved,
    reason: e.reason,
    message: e.message,
    source: host ? { component, host } : { component },
    firstTimestamp: ts,
    lastTimestamp: ts,
    count: 1,
    type: e.type,
    eventTime: null,
    reportingComponent: component,
    reportingInstance: host,
  };
}

export class EventRecorder {
  /** dedupe key → event name */
  private readonly seen = new Map<string, string>();
  private seq = 0;

  constructor(
    private readonly api: ApiClient,
    private readonly host: string,
    private readonly log: (s: string) => void,
    private readonly component = 'kubelet',
  ) {}

  record(pod: KObject, e: EventSpec): void {
    const ns = pod.metadata.namespace;
    const key = [pod.metadata.uid, e.fieldPath ?? '', e.type, e.reason, e.message].join('\u0000');
    const now = Date.now();
    try {
      const existingName = this.seen.get(key);
      const existing = existingName ? this.api.get('v1/events', ns, existingName) : undefined;
      if (existing) {
        this.api.update('v1/events', { ...existing, count: Number(existing.count ?? 1) + 1, lastTimestamp: rfc3339(now) });
        return;
      }
      const name = eventName(pod.metadata.name ?? 'pod', now, this.seq++);
      this.api.create('v1/events', eventObject(pod, e, this.component, this.host, now, name));
      this.seen.set(key, name);
    } catch (err) {
      // Events are best effort (e.g. the namespace is being deleted); never fail a sync for one.
      this.log(`event ${e.reason} for ${ns}/${pod.metadata.name} not recorded: ${(err as Error).message}`);
    }
  }

  /** Forget a pod's dedupe keys once it is gone. */
  forget(podUid: string): void {
    for (const k of this.seen.keys()) if (k.startsWith(`${podUid}\u0000`)) this.seen.delete(k);
  }
}

export function containerFieldPath(name: string, isInit: boolean): string {
  return `spec.${isInit ? 'initContainers' : 'containers'}{${name}}`;
}
