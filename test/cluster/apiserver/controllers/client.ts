/**
 * The in-process API the built-in controllers use. It is implemented by the server's store, so a
 * controller's writes go through the same defaulting, validation, resourceVersion and watch path as
 * an HTTP request. Resources are named by "group/version/plural" ("v1/pods", "apps/v1/deployments").
 */
import type { KObject } from '../types.js';

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface WatchEvent {
  type: EventType;
  object: KObject;
  /** the object before the change (MODIFIED and DELETED) */
  old?: KObject;
}

export interface ListOptions {
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
}

export interface DeleteOptions {
  propagationPolicy?: 'Orphan' | 'Background' | 'Foreground';
  gracePeriodSeconds?: number;
  /** only delete if the uid still matches */
  uid?: string;
}

/**
 * Errors thrown carry the HTTP code and the Kubernetes reason ("NotFound", "Conflict",
 * "AlreadyExists", "Invalid", ...): see ApiError in ../errors.ts.
 */
export interface ApiClient {
  list(resource: string, opts?: ListOptions): { items: KObject[]; resourceVersion: string };
  get(resource: string, namespace: string | undefined, name: string): KObject | undefined;
  create(resource: string, obj: KObject): KObject;
  /** full update; fails with Conflict when metadata.resourceVersion is set and stale */
  update(resource: string, obj: KObject): KObject;
  /** update of the status subresource only */
  updateStatus(resource: string, obj: KObject): KObject;
  delete(resource: string, namespace: string | undefined, name: string, opts?: DeleteOptions): void;
  /** every change of `resource` from now on, in order; returns the function that stops it */
  watch(resource: string, handler: (ev: WatchEvent) => void): () => void;
}
