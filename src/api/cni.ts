/**
 * The cni → agent protocol: how `ambit-cni` (native/ambit-cni.c, the static binary the container
 * runtime runs for every pod sandbox) relays one CNI invocation to the node's `ambit-agent`, which
 * runs the CNI logic itself (src/cni/) and answers what the plugin prints. Also the in-process
 * types that logic hands to the agent's handlers (CniPodRequest and the answers).
 *
 * Written like a .proto: every message, every field, and which side may rely on what.
 *
 * Transport: HTTP/1.1 over a unix stream socket, one request per connection. By default the
 * ABSTRACT socket `@ambit/cni` (`\0ambit/cni`): the abstract namespace belongs to the network
 * namespace, the agent is hostNetwork and the runtime runs plugins in the node's netns, so every
 * node (also the local cluster's nodes, which are netns on one host) has its own, with no host path
 * to mount or clean up. The conflist's `agentSocket` may name another: "@name" (abstract) or an
 * absolute path (a filesystem socket, 0600). HTTP because `curl --unix-socket` can speak it.
 *
 *   POST /v1/cni/run                                         (the only route)
 *     request headers, one per CNI_* variable the runtime set (an unset variable → no header; a
 *     variable set to "" → an empty header). Values are percent-encoded: every byte outside
 *     visible ASCII (0x21-0x7e) and "%" itself as %XX, so CR/LF, spaces and UTF-8 survive exactly.
 *       Cni-Command      CNI_COMMAND       ADD | DEL | CHECK (VERSION is answered by the plugin)
 *       Cni-Containerid  CNI_CONTAINERID
 *       Cni-Netns        CNI_NETNS
 *       Cni-Ifname       CNI_IFNAME
 *       Cni-Args         CNI_ARGS
 *       Cni-Path         CNI_PATH
 *       Content-Length   the size of the body; Connection: close
 *     body: the plugin's stdin, unchanged (the network configuration; at most 4 MiB).
 *
 *   200 — the agent ran the command; the plugin prints the body on stdout and exits with:
 *       Cni-Exit-Code    "0" or "1"
 *       Cni-Log          optional: what the plugin writes to stderr (percent-encoded like above)
 *       Content-Length   the body: the CNI result, the spec's error structure, or empty
 *     The agent answers ADD only once the pod is enrolled (redirection in place, proxy listening)
 *     or known not to be: holding the answer is what holds the pod's start.
 *   404 unknown path, 405 not POST, 413 body over 4 MiB, 403 peer refused — text/plain reason;
 *     the plugin reports them as error 101 (a version skew between plugin and agent), except on
 *     DEL, which always succeeds.
 *
 * Without an answer (nothing listens, timeoutMs passed, connection broken) the plugin decides
 * alone: DEL succeeds, ADD of a non-pod or an excluded namespace passes prevResult through, ADD
 * and CHECK fail with error 11 (try again later) — see native/ambit-cni.c.
 *
 * Note for debugging by hand: Node 20 binds an abstract name padded with NULs to the whole
 * sun_path (108 bytes); curl and socat connect with the exact length and miss it. The plugin tries
 * both. Easiest by hand is the plugin itself: `CNI_COMMAND=ADD ... ambit-cni < conf.json`.
 */

/** The one route. A new incompatible protocol gets a new path, so old plugins fail loudly (404). */
export const CNI_RUN_PATH = '/v1/cni/run';

/** Where the agent listens unless the conflist's `agentSocket` says otherwise ("@" = abstract). */
export const DEFAULT_CNI_SOCKET = '@ambit/cni';

/** Largest body either side accepts (stdin of the plugin, stdout of the agent). */
export const MAX_CNI_BODY_BYTES = 4 * 1024 * 1024;

/** The CNI_* variables relayed, each with its request header (lower case, as Node reports them). */
export const CNI_ENV_HEADERS = {
  CNI_COMMAND: 'cni-command',
  CNI_CONTAINERID: 'cni-containerid',
  CNI_NETNS: 'cni-netns',
  CNI_IFNAME: 'cni-ifname',
  CNI_ARGS: 'cni-args',
  CNI_PATH: 'cni-path',
} as const;

export const CNI_EXIT_CODE_HEADER = 'cni-exit-code';
export const CNI_LOG_HEADER = 'cni-log';

/** The address Node's net.Server.listen / net.connect takes for a conflist-style socket name. */
export function socketAddress(socket: string): string {
  return socket.startsWith('@') ? `\0${socket.slice(1)}` : socket;
}

/** Percent-encoding of header values (see above). */
export function encodeHeaderValue(value: string): string {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    out += byte <= 0x20 || byte >= 0x7f || byte === 0x25 ? `%${byte.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(byte);
  }
  return out;
}

/** The inverse of encodeHeaderValue; bytes become UTF-8 text. A "%" not followed by two hex digits stays as it is. */
export function decodeHeaderValue(value: string): string {
  // Node hands header values over as latin1: one char per byte.
  const bytes = Buffer.from(value, 'latin1');
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const hex = bytes[i] === 0x25 && i + 2 < bytes.length ? bytes.subarray(i + 1, i + 3).toString('latin1') : '';
    if (/^[0-9a-fA-F]{2}$/.test(hex)) {
      out.push(parseInt(hex, 16));
      i += 2;
    } else out.push(bytes[i]!);
  }
  return Buffer.from(out).toString('utf8');
}

// ---------- what the CNI logic tells the agent's handlers (in process) ----------

export type CniOperation = 'add' | 'del' | 'check';

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

/** message CniCheckReply — `problem` set means the pod is not as ADD left it. */
export interface CniCheckReply {
  ok: boolean;
  problem?: string;
}
