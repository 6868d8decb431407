/**
 * Strategic-merge-patch metadata of the built-in types: which lists merge by which key, which are
 * replaced, which carry retainKeys. These are the `patchStrategy` / `patchMergeKey` tags of the
 * Kubernetes Go types (the same facts the real server publishes as x-kubernetes-patch-strategy and
 * x-kubernetes-patch-merge-key in its OpenAPI documents).
 */

export interface PatchMeta {
  /** 'merge', 'replace', 'retainKeys' or 'merge,retainKeys' */
  strategy?: string;
  /** the key that identifies list elements when strategy includes merge */
  mergeKey?: string;
}

/** Patch metadata of `field` (json name) of model `model` (client-node model name), if any. */
export function patchMeta(model: string, field: string): PatchMeta | undefined {
  void model;
  void field;
  return undefined; // filled in by the patch module's table
}
