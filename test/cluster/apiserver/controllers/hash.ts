/**
 * Template hashes in the real controllers' alphabet. The real ones hash a Go debug print of the
 * template with FNV-32a; we hash canonical JSON instead, so the values differ from a real cluster's
 * but have the same shape (e.g. "7c5ddbdf54") and the same stability: equal templates, equal hash.
 */
import { canonical } from './meta.js';

/** rand.SafeEncodeString's alphabet: no vowels, no confusable characters. */
const ALPHANUMS = 'bcdfghjklmnpqrstvwxz2456789';

export function fnv32a(data: Uint8Array): number {
  let h = 0x811c9dc5;
  for (const b of data) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

export function safeEncodeString(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) out += ALPHANUMS[s.charCodeAt(i) % ALPHANUMS.length];
  return out;
}

/**
 * controller.ComputeHash: the pod-template-hash of a template, salted with the owner's
 * status.collisionCount (as four little-endian bytes plus padding, like the real one).
 */
export function computeHash(template: unknown, collisionCount?: number): string {
  const body = new TextEncoder().encode(canonical(template));
  let data = body;
  if (collisionCount !== undefined) {
    data = new Uint8Array(body.length + 8);
    data.set(body);
    new DataView(data.buffer).setUint32(body.length, collisionCount >>> 0, true);
  }
  return safeEncodeString(String(fnv32a(data)));
}
