/**
 * A workload's name as Istio's telemetry reports it (`source_workload`, `destination_workload`):
 * the app's declared name (label app.kubernetes.io/name, else app), else the pod name without the
 * ReplicaSet and pod hashes a Deployment adds, else "unknown". Computed by the control plane for
 * pods of other nodes (their snapshot record carries only this name, not labels) and by the proxy
 * for its own node's pods, with this one rule so both sides of a connection agree.
 */
export function canonicalWorkloadName(w: { labels?: Readonly<Record<string, string>> | undefined; name?: string | undefined } | undefined): string {
  if (!w) return 'unknown';
  const declared = w.labels?.['app.kubernetes.io/name'] ?? w.labels?.app;
  if (declared) return declared;
  if (!w.name) return 'unknown';
  return w.name.replace(/-[a-z0-9]{6,10}-[a-z0-9]{5}$/, '');
}
