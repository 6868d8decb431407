/**
 * The embedded copy of src/api/ambit.proto (the protocol's specification, with its rules in the
 * comments). Only dist/src ships in the image, so the programs load the protocol from this string;
 * proto.test.ts keeps it identical to the .proto file. Edit ambit.proto, then paste its text
 * between the backticks below.
 */
export const AMBIT_PROTO = `// Ambit control-plane API: config push to node agents, and workload certificates.
//
// This file is the protocol's specification. The same text is embedded in src/api/proto.ts (the
// copy the programs load at run time; a test keeps the two identical).
//
// Transport and authentication
// - gRPC over TLS. The server certificate is issued by Ambit's CA; clients verify it against the
//   trust roots (TrustSettings.roots in every Snapshot; SignResponse.trust_bundle_pem).
// - Every call carries "authorization: Bearer <token>" metadata: the agent pod's projected
//   service-account token. The server checks it with a TokenReview. The caller must be the agent
//   service account (default ambit-system/ambit-agent) and the token must be bound to a pod; the
//   caller's node is read from THAT POD's spec.nodeName, never from anything in the request.
//
// Errors (gRPC status; the message always says what is wrong and what to do)
//   UNAUTHENTICATED      no token, or the API server rejected it
//   PERMISSION_DENIED    not the agent service account; token not pod-bound; a node that is not
//                        the caller's; a pod on another node; a CSR for another identity
//   INVALID_ARGUMENT     a message that does not decode, or breaks a rule below
//   NOT_FOUND            Sign: no pod with that uid
//   FAILED_PRECONDITION  Sign: the pod has terminated
//   UNAVAILABLE          the server cannot check the caller right now (API server unreachable); retry
//   RESOURCE_EXHAUSTED   Subscribe: the agent did not read or acknowledge for too long; reconnect
// A bad message ends only its own call; other agents' streams are never affected.

syntax = "proto3";

package ambit.v1;

service AmbitControl {
  // Config push. Rules:
  // 1. The agent's first message is "subscribe". Anything else first, or a second "subscribe",
  //    ends the call with INVALID_ARGUMENT. "subscribe.node" must equal the caller's node.
  // 2. The server answers with either
  //    - a Delta whose from_version equals subscribe.resume_version, when the server still knows
  //      that version (it keeps recent versions per node; versions are content hashes, equal on
  //      every replica for equal config). The Delta may be empty: the agent is already current.
  //    - else a full Snapshot.
  //    If the server has no config for the node yet, it sends it as soon as it has.
  // 3. Then, whenever the node's config changes, a Delta from the version last sent on this stream
  //    to the new one. Only nodes whose config changed receive anything.
  // 4. The agent answers every Snapshot and Delta, in order, with "ack" (applied) or "nack"
  //    (applied except the resources listed in its errors, each with the reason). A NACK is logged,
  //    counted and reported on the offending object's status; the server does not resend.
  //    The version an agent acknowledged (ACK or NACK) is the one it resumes from after reconnecting.
  // 5. Slow agents: the server keeps at most a bounded amount of unsent data per stream. While an
  //    agent is not reading, further changes are coalesced: when it reads again it gets ONE Delta
  //    from the version last sent to the newest. A stream blocked for too long is ended with
  //    RESOURCE_EXHAUSTED; the agent reconnects and resumes. No agent ever delays another.
  // 6. A Delta whose from_version is not the version the agent holds is a protocol error: the agent
  //    drops the stream and resubscribes without resume_version (it gets a full Snapshot).
  rpc Subscribe(stream AgentMessage) returns (stream ControlMessage);

  // Workload certificate for one pod of the caller's node. The pod must exist, run on the caller's
  // node and not have terminated. The CSR must be PKCS#10 (PEM) for an ECDSA P-256 key, signed by
  // that key; it may request no SAN or exactly the pod's SPIFFE ID
  // (spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>). The certificate carries exactly
  // that SPIFFE ID as its only URI SAN, whatever the CSR asked for.
  rpc Sign(SignRequest) returns (SignResponse);
}

message AgentMessage {
  oneof msg {
    Subscribe subscribe = 1;
    Ack ack = 2;
    Nack nack = 3;
  }
}

message Subscribe {
  // The node the agent runs on (checked against the caller's own pod).
  string node = 1;
  // The version the agent holds (last acknowledged), or empty for a full snapshot.
  string resume_version = 2;
}

message Ack {
  string version = 1;
}

message Nack {
  string version = 1;
  // At least one. For a message the agent could not apply at all, one error with type "snapshot".
  repeated ResourceError errors = 2;
}

message ResourceError {
  // "workloads", "peers", "services", "authorizationPolicies", "peerAuthentications", "routes",
  // "trust" or "snapshot" (the whole version)
  string type = 1;
  // The resource key: pod uid for workloads and peers, "<namespace>/<name>" for services and
  // policies, "<Kind>/<namespace>/<name>" for routes.
  string key = 2;
  string message = 3;
}

message ControlMessage {
  oneof msg {
    Snapshot snapshot = 1;
    Delta delta = 2;
  }
}

// One resource: its key, and its body as UTF-8 JSON of the TypeScript type named for its type in
// src/api/types.ts (Workload, PeerWorkload, Service, AuthorizationPolicy, PeerAuthentication,
// Route). The body's own key (uid or key field) equals "key". Agents ignore JSON fields they do not
// know (forward compatibility).
message Resource {
  string key = 1;
  bytes json = 2;
}

// Everything one node needs: its workloads, the peers (pods on other nodes) behind the services it
// can reach, those services, the policies that apply to its workloads, the routes of its services,
// and the mesh's trust settings. Resources in key order, each key once.
message Snapshot {
  string version = 1;
  string node = 2;
  bytes trust = 3;  // JSON TrustSettings (trust domain, root namespace, trusted roots)
  repeated Resource workloads = 4;
  repeated Resource peers = 5;
  repeated Resource services = 6;
  repeated Resource authorization_policies = 7;
  repeated Resource peer_authentications = 8;
  repeated Resource routes = 9;
}

// The changes of one resource type: resources added, resources updated (whole), keys removed.
message ResourceDelta {
  repeated Resource added = 1;
  repeated Resource updated = 2;
  repeated string removed = 3;
}

// Turns the Snapshot at from_version into the one at to_version. trust is empty when unchanged,
// else replaced whole.
message Delta {
  string from_version = 1;
  string to_version = 2;
  string node = 3;
  bytes trust = 4;
  ResourceDelta workloads = 5;
  ResourceDelta peers = 6;
  ResourceDelta services = 7;
  ResourceDelta authorization_policies = 8;
  ResourceDelta peer_authentications = 9;
  ResourceDelta routes = 10;
}

message SignRequest {
  // metadata.uid of the pod whose identity is requested
  string pod_uid = 1;
  // PKCS#10 CSR, PEM, ECDSA P-256
  string csr_pem = 2;
  // Requested lifetime; 0 for the CA's default (24 h unless configured). Capped at the default.
  uint32 ttl_seconds = 3;
}

message SignResponse {
  // The SPIFFE ID in the certificate.
  string identity = 1;
  // The certificate first, then intermediates up to (not including) the root. PEM.
  repeated string cert_chain_pem = 2;
  // Unix milliseconds.
  int64 not_after_ms = 3;
  // The roots to validate peers with (old and new during a CA rotation).
  repeated string trust_bundle_pem = 4;
}
`;
