/**
 * The codec of the Ambit control API: TypeScript message types ⇄ protobuf bytes, from the embedded
 * ambit.proto. Resource bodies are JSON (see ambit.proto). Decoding never trusts its input: every
 * failure is a `WireError` whose message names the field at fault, so the receiver can answer with
 * INVALID_ARGUMENT (server) or a NACK (agent) instead of crashing.
 */
import protobuf from 'protobufjs';
import { AMBIT_PROTO } from './proto.js';
import {
  RESOURCE_TYPES,
  resourceKey,
  type NodeSnapshot,
  type ResourceDelta,
  type ResourceError,
  type ResourceType,
  type SnapshotDelta,
  type SnapshotResources,
  type TrustSettings,
} from './types.js';

export const SERVICE_NAME = 'ambit.v1.AmbitControl';
export const SUBSCRIBE_PATH = `/${SERVICE_NAME}/Subscribe`;
export const SIGN_PATH = `/${SERVICE_NAME}/Sign`;

/** Agent → server on the Subscribe stream. */
export type AgentMessage =
  | { subscribe: { node: string; resumeVersion: string } }
  | { ack: { version: string } }
  | { nack: { version: string; errors: ResourceError[] } }
  | { demand: { addresses: string[] } };

/** Server → agent on the Subscribe stream. */
export type ControlMessage = { snapshot: NodeSnapshot } | { delta: SnapshotDelta };

export interface SignRequest {
  podUid: string;
  csrPem: string;
  /** 0: the CA's default */
  ttlSeconds: number;
}

export interface SignResponse {
  identity: string;
  certChainPem: string[];
  notAfterMs: number;
  trustBundlePem: string[];
}

/** A message that could not be decoded or breaks the protocol's shape rules. */
export class WireError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WireError';
  }
}

/** A decoded ControlMessage, plus the resources that had to be left out (bad JSON or wrong key). */
export interface DecodedControl {
  message: ControlMessage;
  /** resources the agent could not read; it leaves them out and NACKs them */
  errors: ResourceError[];
}

const root = protobuf.parse(AMBIT_PROTO, { keepCase: false }).root;
const T = {
  agent: root.lookupType('ambit.v1.AgentMessage'),
  control: root.lookupType('ambit.v1.ControlMessage'),
  signReq: root.lookupType('ambit.v1.SignRequest'),
  signRes: root.lookupType('ambit.v1.SignResponse'),
};
const TO_OBJECT: protobuf.IConversionOptions = { longs: Number, defaults: true, arrays: true, oneofs: true };

// ------------------------------------------------------------------------------------------------
// Agent messages

export function encodeAgentMessage(msg: AgentMessage): Buffer {
  return Buffer.from(T.agent.encode(msg as unknown as protobuf.Message).finish());
}

export function decodeAgentMessage(bytes: Uint8Array): AgentMessage {
  const obj = decodeObject(T.agent, bytes, 'AgentMessage');
  switch (obj.msg) {
    case 'subscribe':
      return { subscribe: { node: obj.subscribe.node, resumeVersion: obj.subscribe.resumeVersion } };
    case 'ack':
      return { ack: { version: obj.ack.version } };
    case 'nack':
      return { nack: { version: obj.nack.version, errors: obj.nack.errors.map((e: ResourceError) => ({ type: e.type, key: e.key, message: e.message })) } };
    case 'demand':
      return { demand: { addresses: [...(obj.demand.addresses ?? [])] } };
    default:
      throw new WireError('AgentMessage has none of subscribe, ack, nack, demand set');
  }
}

// ------------------------------------------------------------------------------------------------
// Control messages

export function encodeControlMessage(msg: ControlMessage): Buffer {
  const wire = 'snapshot' in msg ? { snapshot: snapshotToWire(msg.snapshot) } : { delta: deltaToWire(msg.delta) };
  return Buffer.from(T.control.encode(wire as unknown as protobuf.Message).finish());
}

export function decodeControlMessage(bytes: Uint8Array): DecodedControl {
  const obj = decodeObject(T.control, bytes, 'ControlMessage');
  const errors: ResourceError[] = [];
  if (obj.msg === 'snapshot') return { message: { snapshot: snapshotFromWire(obj.snapshot, errors) }, errors };
  if (obj.msg === 'delta') return { message: { delta: deltaFromWire(obj.delta, errors) }, errors };
  throw new WireError('ControlMessage has neither snapshot nor delta set');
}

// ------------------------------------------------------------------------------------------------
// Sign

export function encodeSignRequest(req: SignRequest): Buffer {
  return Buffer.from(T.signReq.encode(req as unknown as protobuf.Message).finish());
}

export function decodeSignRequest(bytes: Uint8Array): SignRequest {
  const o = decodeObject(T.signReq, bytes, 'SignRequest');
  return { podUid: o.podUid, csrPem: o.csrPem, ttlSeconds: o.ttlSeconds };
}

export function encodeSignResponse(res: SignResponse): Buffer {
  return Buffer.from(T.signRes.encode(res as unknown as protobuf.Message).finish());
}

export function decodeSignResponse(bytes: Uint8Array): SignResponse {
  const o = decodeObject(T.signRes, bytes, 'SignResponse');
  return { identity: o.identity, certChainPem: o.certChainPem, notAfterMs: o.notAfterMs, trustBundlePem: o.trustBundlePem };
}

// ------------------------------------------------------------------------------------------------
// Helpers

interface WireResource {
  key: string;
  json: Uint8Array;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function decodeObject(type: protobuf.Type, bytes: Uint8Array, name: string): any {
  try {
    return type.toObject(type.decode(bytes), TO_OBJECT);
  } catch (err) {
    throw new WireError(`${name} does not decode as protobuf: ${(err as Error).message}`);
  }
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

type AnyResource = SnapshotResources[ResourceType][string];

function resourcesToWire(record: Record<string, unknown>): WireResource[] {
  return Object.entries(record).map(([key, r]) => ({ key, json: json(r) }));
}

function snapshotToWire(s: NodeSnapshot): Record<string, unknown> {
  const wire: Record<string, unknown> = { version: s.version, node: s.node, trust: json(s.trust) };
  for (const t of RESOURCE_TYPES) wire[t] = resourcesToWire(s[t]);
  return wire;
}

function deltaToWire(d: SnapshotDelta): Record<string, unknown> {
  const wire: Record<string, unknown> = { fromVersion: d.from, toVersion: d.to, node: d.node, trust: d.trust ? json(d.trust) : Buffer.alloc(0) };
  for (const t of RESOURCE_TYPES) {
    const r = d[t] as ResourceDelta<unknown>;
    wire[t] = { added: resourcesToWire(r.added), updated: resourcesToWire(r.updated), removed: r.removed };
  }
  return wire;
}

/** Parses the resources of one type into a record; a bad one is reported in `errors` and left out. */
function recordFromWire(type: ResourceType, list: WireResource[], errors: ResourceError[]): Record<string, AnyResource> {
  const out: Record<string, AnyResource> = {};
  for (const r of list) {
    let value: unknown;
    try {
      value = JSON.parse(Buffer.from(r.json).toString('utf8'));
    } catch (err) {
      errors.push({ type, key: r.key, message: `body is not JSON: ${(err as Error).message}` });
      continue;
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      errors.push({ type, key: r.key, message: 'body is not a JSON object' });
      continue;
    }
    const key = resourceKey(type, value as AnyResource);
    if (key !== r.key) {
      errors.push({ type, key: r.key, message: `body has key "${String(key)}", not "${r.key}"` });
      continue;
    }
    out[r.key] = value as AnyResource;
  }
  return out;
}

function trustFromWire(bytes: Uint8Array, required: boolean): TrustSettings | undefined {
  if (bytes.length === 0) {
    if (required) throw new WireError('trust is missing');
    return undefined;
  }
  try {
    return JSON.parse(Buffer.from(bytes).toString('utf8')) as TrustSettings;
  } catch (err) {
    throw new WireError(`trust is not JSON: ${(err as Error).message}`);
  }
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function snapshotFromWire(w: any, errors: ResourceError[]): NodeSnapshot {
  if (!w.version) throw new WireError('snapshot.version is empty');
  const s = { node: w.node, version: w.version, trust: trustFromWire(w.trust, true)! } as NodeSnapshot;
  for (const t of RESOURCE_TYPES) (s as unknown as Record<string, unknown>)[t] = recordFromWire(t, w[t], errors);
  return s;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function deltaFromWire(w: any, errors: ResourceError[]): SnapshotDelta {
  if (!w.toVersion) throw new WireError('delta.to_version is empty');
  const d = { node: w.node, from: w.fromVersion, to: w.toVersion } as SnapshotDelta;
  const trust = trustFromWire(w.trust, false);
  if (trust) d.trust = trust;
  for (const t of RESOURCE_TYPES) {
    const r = w[t] ?? { added: [], updated: [], removed: [] };
    (d as unknown as Record<string, unknown>)[t] = { added: recordFromWire(t, r.added, errors), updated: recordFromWire(t, r.updated, errors), removed: r.removed };
  }
  return d;
}
