// A typed client for the Kubernetes CRI (runtime.v1) over a containerd unix socket — the way the
// kubelet talks to its runtime. The wire schema is cri.proto beside this file (a subset of the
// upstream api.proto with the same field numbers); this module adds TypeScript shapes for it and
// promise-returning methods with a deadline on every call.
//
// Conventions of the decoded messages (from @grpc/proto-loader options below): field names are
// camelCase; enums are their names ('SANDBOX_READY'); int64/uint64 are decimal strings (use
// nanosToDate for timestamps); unset scalars are their zero values; unset messages are null.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { runtimeFile } from './files.js';

// ---------- message shapes (requests accept partial input; responses are filled by defaults) ----------

export type Int64 = string | number;
export type Labels = Record<string, string>;

export type NamespaceMode = 'POD' | 'CONTAINER' | 'NODE' | 'TARGET';
export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export type MountPropagation = 'PROPAGATION_PRIVATE' | 'PROPAGATION_HOST_TO_CONTAINER' | 'PROPAGATION_BIDIRECTIONAL';
export type PodSandboxState = 'SANDBOX_READY' | 'SANDBOX_NOTREADY';
export type ContainerState = 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN';
export type ProfileType = 'RuntimeDefault' | 'Unconfined' | 'Localhost';

export interface NamespaceOption {
  network?: NamespaceMode;
  pid?: NamespaceMode;
  ipc?: NamespaceMode;
  targetId?: string;
}
export interface Int64Value {
  value: Int64;
}
export interface SecurityProfile {
  profileType?: ProfileType;
  localhostRef?: string;
}
export interface KeyValue {
  key: string;
  value: string;
}
export interface Mount {
  containerPath: string;
  hostPath: string;
  readonly?: boolean;
  selinuxRelabel?: boolean;
  propagation?: MountPropagation;
}
export interface Device {
  containerPath: string;
  hostPath: string;
  permissions?: string;
}
export interface PortMapping {
  protocol?: Protocol;
  containerPort: number;
  hostPort?: number;
  hostIp?: string;
}
export interface DNSConfig {
  servers?: string[];
  searches?: string[];
  options?: string[];
}
export interface ImageSpec {
  image: string;
  annotations?: Labels;
  userSpecifiedImage?: string;
}
export interface LinuxContainerResources {
  cpuPeriod?: Int64;
  cpuQuota?: Int64;
  cpuShares?: Int64;
  memoryLimitInBytes?: Int64;
  oomScoreAdj?: Int64;
  cpusetCpus?: string;
  cpusetMems?: string;
}

export interface PodSandboxMetadata {
  name: string;
  uid: string;
  namespace: string;
  attempt?: number;
}
export interface LinuxSandboxSecurityContext {
  namespaceOptions?: NamespaceOption;
  runAsUser?: Int64Value;
  runAsGroup?: Int64Value;
  readonlyRootfs?: boolean;
  supplementalGroups?: Int64[];
  privileged?: boolean;
  seccomp?: SecurityProfile;
  apparmor?: SecurityProfile;
}
export interface PodSandboxConfig {
  metadata: PodSandboxMetadata;
  hostname?: string;
  /** Host directory for this pod's container logs; ContainerConfig.logPath is relative to it. */
  logDirectory?: string;
  dnsConfig?: DNSConfig;
  portMappings?: PortMapping[];
  labels?: Labels;
  annotations?: Labels;
  linux?: {
    cgroupParent?: string;
    securityContext?: LinuxSandboxSecurityContext;
    sysctls?: Labels;
  };
}

export interface Capability {
  addCapabilities?: string[];
  dropCapabilities?: string[];
  addAmbientCapabilities?: string[];
}
export interface LinuxContainerSecurityContext {
  capabilities?: Capability;
  privileged?: boolean;
  namespaceOptions?: NamespaceOption;
  runAsUser?: Int64Value;
  runAsGroup?: Int64Value;
  runAsUsername?: string;
  readonlyRootfs?: boolean;
  supplementalGroups?: Int64[];
  noNewPrivs?: boolean;
  maskedPaths?: string[];
  readonlyPaths?: string[];
  seccomp?: SecurityProfile;
  apparmor?: SecurityProfile;
}
export interface ContainerMetadata {
  name: string;
  attempt?: number;
}
export interface ContainerConfig {
  metadata: ContainerMetadata;
  image: ImageSpec;
  command?: string[];
  args?: string[];
  workingDir?: string;
  envs?: KeyValue[];
  mounts?: Mount[];
  devices?: Device[];
  labels?: Labels;
  annotations?: Labels;
  /** Relative to the sandbox's logDirectory, e.g. `<container>/<attempt>.log`. */
  logPath?: string;
  stdin?: boolean;
  stdinOnce?: boolean;
  tty?: boolean;
  linux?: {
    resources?: LinuxContainerResources;
    securityContext?: LinuxContainerSecurityContext;
  };
}

export interface VersionResponse {
  version: string;
  runtimeName: string;
  runtimeVersion: string;
  runtimeApiVersion: string;
}
export interface RuntimeCondition {
  type: string;
  status: boolean;
  reason: string;
  message: string;
}
export interface StatusResponse {
  status: { conditions: RuntimeCondition[] } | null;
  info: Labels;
}

export interface PodSandboxStatus {
  id: string;
  metadata: Required<PodSandboxMetadata> | null;
  state: PodSandboxState;
  createdAt: string;
  network: { ip: string; additionalIps: { ip: string }[] } | null;
  linux: { namespaces: { options: Required<NamespaceOption> | null } | null } | null;
  labels: Labels;
  annotations: Labels;
  runtimeHandler: string;
}
export interface PodSandboxStatusResponse {
  status: PodSandboxStatus | null;
  /** Only with verbose: runtime details as JSON strings (containerd puts the sandbox's pid, netns path and config under "info"). */
  info: Labels;
}
export interface PodSandboxFilter {
  id?: string;
  state?: { state: PodSandboxState };
  labelSelector?: Labels;
}
export interface PodSandbox {
  id: string;
  metadata: Required<PodSandboxMetadata> | null;
  state: PodSandboxState;
  createdAt: string;
  labels: Labels;
  annotations: Labels;
  runtimeHandler: string;
}

export interface ContainerFilter {
  id?: string;
  state?: { state: ContainerState };
  podSandboxId?: string;
  labelSelector?: Labels;
}
export interface Container {
  id: string;
  podSandboxId: string;
  metadata: Required<ContainerMetadata> | null;
  image: ImageSpec | null;
  imageRef: string;
  state: ContainerState;
  createdAt: string;
  labels: Labels;
  annotations: Labels;
}
export interface ContainerStatus {
  id: string;
  metadata: Required<ContainerMetadata> | null;
  state: ContainerState;
  createdAt: string;
  startedAt: string;
  finishedAt: string;
  exitCode: number;
  image: ImageSpec | null;
  imageRef: string;
  reason: string;
  message: string;
  labels: Labels;
  annotations: Labels;
  mounts: Mount[];
  /** Absolute path of the container's log file on the node (CRI log format). */
  logPath: string;
}
export interface ContainerStatusResponse {
  status: ContainerStatus | null;
  /** Only with verbose: containerd puts the pid and OCI spec as JSON under "info". */
  info: Labels;
}
export interface ExecSyncResponse {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
}
export interface ExecRequest {
  containerId: string;
  cmd: string[];
  tty?: boolean;
  stdin?: boolean;
  stdout?: boolean;
  stderr?: boolean;
}
export interface AttachRequest {
  containerId: string;
  stdin?: boolean;
  tty?: boolean;
  stdout?: boolean;
  stderr?: boolean;
}
export interface Image {
  id: string;
  repoTags: string[];
  repoDigests: string[];
  size: string;
  uid: Int64Value | null;
  username: string;
  spec: ImageSpec | null;
  pinned: boolean;
}

// ---------- errors ----------

/** A failed CRI call; `code` is the gRPC status (e.g. grpc.status.NOT_FOUND). */
export class CriError extends Error {
  constructor(
    readonly method: string,
    readonly code: grpc.status,
    readonly details: string,
  ) {
    super(`CRI ${method}: ${grpc.status[code] ?? code}: ${details}`);
    this.name = 'CriError';
  }
}

export function isNotFound(err: unknown): boolean {
  return err instanceof CriError && err.code === grpc.status.NOT_FOUND;
}

/** CRI timestamps are int64 nanoseconds since the epoch; 0 means "not set". */
export function nanosToDate(nanos: string): Date | undefined {
  if (!nanos || nanos === '0') return undefined;
  return new Date(Number(BigInt(nanos) / 1_000_000n));
}

// ---------- the client ----------

const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  arrays: true,
  objects: true,
};

type Callback = (err: grpc.ServiceError | null, res: unknown) => void;
type RawClient = grpc.Client & Record<string, (req: unknown, opts: grpc.CallOptions, cb: Callback) => void>;

let cachedPackage: grpc.GrpcObject | undefined;
function criPackage(): grpc.GrpcObject {
  cachedPackage ??= grpc.loadPackageDefinition(protoLoader.loadSync(runtimeFile('cri.proto'), LOADER_OPTIONS));
  return cachedPackage;
}

function serviceCtor(name: 'RuntimeService' | 'ImageService'): grpc.ServiceClientConstructor {
  const runtime = criPackage().runtime as grpc.GrpcObject;
  return (runtime.v1 as grpc.GrpcObject)[name] as grpc.ServiceClientConstructor;
}

export interface CriClientOptions {
  /** Deadline for calls that do not set their own (default 30 s). */
  defaultTimeoutMs?: number;
}

export class CriClient {
  private readonly runtime: RawClient;
  private readonly images: RawClient;
  private readonly defaultTimeoutMs: number;

  /** `socket`: absolute path of the runtime's unix socket (containerd's grpc address). */
  constructor(
    readonly socket: string,
    opts: CriClientOptions = {},
  ) {
    const target = `unix://${socket}`;
    const channelOptions = { 'grpc.max_receive_message_length': 32 * 1024 * 1024 };
    const creds = grpc.credentials.createInsecure();
    this.runtime = new (serviceCtor('RuntimeService'))(target, creds, channelOptions) as unknown as RawClient;
    this.images = new (serviceCtor('ImageService'))(target, creds, channelOptions) as unknown as RawClient;
    this.defaultTimeoutMs = opts.defaultTimeoutMs ?? 30_000;
  }

  close(): void {
    this.runtime.close();
    this.images.close();
  }

  private call<T>(client: RawClient, method: string, request: object, timeoutMs = this.defaultTimeoutMs): Promise<T> {
    const fn = client[method];
    if (typeof fn !== 'function') throw new Error(`cri.proto has no method ${method}`);
    return new Promise<T>((resolve, reject) => {
      fn.call(client, request, { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (err) reject(new CriError(method, err.code, err.details || err.message));
        else resolve(res as T);
      });
    });
  }

  // ----- runtime -----

  version(): Promise<VersionResponse> {
    return this.call(this.runtime, 'Version', { version: 'v1' });
  }

  status(verbose = false): Promise<StatusResponse> {
    return this.call(this.runtime, 'Status', { verbose });
  }

  /** True when the runtime reports both RuntimeReady and NetworkReady (CNI config loaded). */
  async isReady(): Promise<boolean> {
    const conds = (await this.status()).status?.conditions ?? [];
    const ok = (type: string) => conds.some((c) => c.type === type && c.status);
    return ok('RuntimeReady') && ok('NetworkReady');
  }

  async runPodSandbox(config: PodSandboxConfig, runtimeHandler = '', timeoutMs = 120_000): Promise<string> {
    const res = await this.call<{ podSandboxId: string }>(this.runtime, 'RunPodSandbox', { config, runtimeHandler }, timeoutMs);
    return res.podSandboxId;
  }

  async stopPodSandbox(podSandboxId: string, timeoutMs = 60_000): Promise<void> {
    await this.call(this.runtime, 'StopPodSandbox', { podSandboxId }, timeoutMs);
  }

  async removePodSandbox(podSandboxId: string, timeoutMs = 60_000): Promise<void> {
    await this.call(this.runtime, 'RemovePodSandbox', { podSandboxId }, timeoutMs);
  }

  podSandboxStatus(podSandboxId: string, verbose = false): Promise<PodSandboxStatusResponse> {
    return this.call(this.runtime, 'PodSandboxStatus', { podSandboxId, verbose });
  }

  async listPodSandbox(filter?: PodSandboxFilter): Promise<PodSandbox[]> {
    return (await this.call<{ items: PodSandbox[] }>(this.runtime, 'ListPodSandbox', { filter })).items;
  }

  async createContainer(podSandboxId: string, config: ContainerConfig, sandboxConfig: PodSandboxConfig): Promise<string> {
    const res = await this.call<{ containerId: string }>(this.runtime, 'CreateContainer', { podSandboxId, config, sandboxConfig }, 120_000);
    return res.containerId;
  }

  async startContainer(containerId: string): Promise<void> {
    await this.call(this.runtime, 'StartContainer', { containerId }, 120_000);
  }

  /** Sends the stop signal, then SIGKILL after `timeoutSeconds` (0: at once). */
  async stopContainer(containerId: string, timeoutSeconds: number): Promise<void> {
    await this.call(this.runtime, 'StopContainer', { containerId, timeout: timeoutSeconds }, (timeoutSeconds + 30) * 1000);
  }

  async removeContainer(containerId: string): Promise<void> {
    await this.call(this.runtime, 'RemoveContainer', { containerId }, 60_000);
  }

  async listContainers(filter?: ContainerFilter): Promise<Container[]> {
    return (await this.call<{ containers: Container[] }>(this.runtime, 'ListContainers', { filter })).containers;
  }

  containerStatus(containerId: string, verbose = false): Promise<ContainerStatusResponse> {
    return this.call(this.runtime, 'ContainerStatus', { containerId, verbose });
  }

  async reopenContainerLog(containerId: string): Promise<void> {
    await this.call(this.runtime, 'ReopenContainerLog', { containerId });
  }

  /** Runs `cmd` in the container and collects its output; `timeoutSeconds` 0 means no runtime-side limit. */
  execSync(containerId: string, cmd: string[], timeoutSeconds = 10): Promise<ExecSyncResponse> {
    const deadlineMs = timeoutSeconds > 0 ? (timeoutSeconds + 10) * 1000 : 24 * 3600_000;
    return this.call(this.runtime, 'ExecSync', { containerId, cmd, timeout: timeoutSeconds }, deadlineMs);
  }

  /** The runtime's streaming-server URL for an exec session (SPDY/WebSocket, as the kubelet proxies it). */
  async exec(req: ExecRequest): Promise<string> {
    return (await this.call<{ url: string }>(this.runtime, 'Exec', req)).url;
  }

  async attach(req: AttachRequest): Promise<string> {
    return (await this.call<{ url: string }>(this.runtime, 'Attach', req)).url;
  }

  async portForward(podSandboxId: string, ports: number[]): Promise<string> {
    return (await this.call<{ url: string }>(this.runtime, 'PortForward', { podSandboxId, port: ports })).url;
  }

  // ----- images -----

  async listImages(image?: string): Promise<Image[]> {
    const filter = image ? { image: { image } } : undefined;
    return (await this.call<{ images: Image[] }>(this.images, 'ListImages', { filter })).images;
  }

  /** The image, or undefined when the runtime does not have it (CRI returns an empty status then). */
  async imageStatus(image: string): Promise<Image | undefined> {
    const res = await this.call<{ image: Image | null }>(this.images, 'ImageStatus', { image: { image } });
    return res.image ?? undefined;
  }

  /** Asks the runtime to pull; without a registry this fails for anything not already present. */
  async pullImage(image: string, sandboxConfig?: PodSandboxConfig, timeoutMs = 60_000): Promise<string> {
    const res = await this.call<{ imageRef: string }>(this.images, 'PullImage', { image: { image }, sandboxConfig }, timeoutMs);
    return res.imageRef;
  }

  async removeImage(image: string): Promise<void> {
    await this.call(this.images, 'RemoveImage', { image: { image } });
  }
}
