/**
 * ControllerRefManager: which candidates a controller owns. It adopts orphans its selector matches
 * and releases children its selector no longer matches, as the real controllers do, so objects a
 * user created by hand with the right labels are taken over.
 */
import type { KObject } from '../types.js';
import { clone, controllerOf, controllerRef } from './meta.js';

export interface Claim {
  /** owned children (adopted ones included, in their adopted form) */
  owned: KObject[];
  /** updated copies to write: adoptions (reference added) and releases (reference removed) */
  writes: KObject[];
}

export function claim(
  owner: KObject,
  ownerApiVersion: string,
  ownerKind: string,
  candidates: KObject[],
  matches: (obj: KObject) => boolean,
): Claim {
  const owned: KObject[] = [];
  const writes: KObject[] = [];
  const ownerDeleting = !!owner.metadata.deletionTimestamp;
  for (const obj of candidates) {
    const ref = controllerOf(obj);
    if (ref) {
      if (ref.uid !== owner.metadata.uid) continue;
      if (matches(obj)) owned.push(obj);
      else if (!ownerDeleting) writes.push(withoutOwner(obj, ref.uid));
      continue;
    }
    if (ownerDeleting || obj.metadata.deletionTimestamp || !matches(obj)) continue;
    const adopted = clone(obj);
    adopted.metadata.ownerReferences = [...(obj.metadata.ownerReferences ?? []), controllerRef(owner, ownerApiVersion, ownerKind)];
    owned.push(adopted);
    writes.push(adopted);
  }
  return { owned, writes };
}

function withoutOwner(obj: KObject, uid: string): KObject {
  const released = clone(obj);
  const refs = (obj.metadata.ownerReferences ?? []).filter((r) => r.uid !== uid);
  if (refs.length) released.metadata.ownerReferences = refs;
  else delete released.metadata.ownerReferences;
  return released;
}
