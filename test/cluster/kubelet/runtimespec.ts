// From Pod spec to CRI requests (kuberuntime_sandbox.go / kuberuntime_container.go): the sandbox
// config (hostname, DNS, namespaces, ports, cgroup parent, log directory), the container config
// (command, env, mounts, security context, log path), and the /etc/hosts file the kubelet mounts.
// Pure: everything it needs comes in as arguments.
import { join } from 'node:path';
import type { KObject } from '../apiserver/types.js';
import type { ContainerConfig, DNSConfig, KeyValue, LinuxContainerSecurityContext, Mount, NamespaceOption, PodSandboxConfig, PortMapping } from '../runtime/cri.js';
import { nodeCgroupParent } from '../runtime/containerd.js';
import type { Container, PodSpec, SecurityContext } from './spec.js';
import { podSpec } from './spec.js';
import type { PlannedVolume } from './volumes.js';
import { VolumeError } from './volumes.js';

/** Labels the kubelet puts on sandboxes and containers so it can find them again. */
export const LABEL = {
  podName: 'io.kubernetes.pod.name',
  podNamespace: 'io.kubernetes.pod.namespace',
  podUid: 'io.kubernetes.pod.uid',
  containerName: 'io.kubernetes.container.name',
} as const;
export const ANNOTATION = {
  restartCount: 'io.kubernetes.container.restartCount',
  terminationMessagePath: 'io.kubernetes.container.terminationMessagePath',
} as const;

export interface NodeContext {
  nodeName: string;
  nodeIp: string;
  clusterDns: string;
  clusterDomain: string;
  /** where pod logs live: <logRoot>/<ns>_<name>_<uid>/<container>/<n>.log */
  logRoot: string;
}

/** The pod's DNS settings (pkg/kubelet/network/dns): undefined means "the node's resolv.conf". */
export function dnsConfigFor(pod: KObject, node: NodeContext): DNSConfig | undefined {
  const spec = podSpec(pod);
  const policy = spec.dnsPolicy ?? 'ClusterFirst';
  let cfg: DNSConfig | undefined;
  const clusterFirst = policy === 'ClusterFirstWithHostNet' || (policy === 'ClusterFirst' && !spec.hostNetwork);
  if (clusterFirst) {
    const ns = pod.metadata.namespace;
    const d = node.clusterDomain;
    cfg = { servers: [node.clusterDns], searches: [`${ns}.svc.${d}`, `svc.${d}`, d], options: ['ndots:5'] };
  } else if (policy === 'None') {
    cfg = { servers: [], searches: [], options: [] };
  }
  const extra = spec.dnsConfig;
  if (extra && cfg) {
    cfg.servers = dedupe([...(cfg.servers ?? []), ...(extra.nameservers ?? [])]);
    cfg.searches = dedupe([...(cfg.searches ?? []), ...(extra.searches ?? [])]);
    cfg.options = mergeDnsOptions(cfg.options ?? [], extra.options ?? []);
  }
  return cfg;
}

function dedupe(xs: string[]): string[] {
  return [...new Set(xs)];
}

/** Options by name, later ones overriding ("ndots:2" replaces "ndots:5"). */
function mergeDnsOptions(base: string[], extra: { name: string; value?: string }[]): string[] {
  const m = new Map<string, string>();
  for (const o of base) m.set(o.split(':')[0]!, o);
  for (const o of extra) m.set(o.name, o.value !== undefined ? `${o.name}:${o.value}` : o.name);
  return [...m.values()];
}

/** The pod's hostname: spec.hostname, else the pod name (at most 63 characters, no trailing dot or dash). */
export function podHostname(pod: KObject, node: NodeContext): string {
  const spec = podSpec(pod);
  if (spec.hostNetwork) return node.nodeName;
  const name = spec.hostname || pod.metadata.name || '';
  return name.length <= 63 ? name : name.slice(0, 63).replace(/[-.]+$/, '');
}

export function podLogDir(pod: KObject, logRoot: string): string {
  const m = pod.metadata;
  return join(logRoot, `${m.namespace}_${m.name}_${m.uid}`);
}

export function namespaceOptions(spec: PodSpec): NamespaceOption {
  return {
    network: spec.hostNetwork ? 'NODE' : 'POD',
    pid: spec.hostPID ? 'NODE' : spec.shareProcessNamespace ? 'POD' : 'CONTAINER',
    ipc: spec.hostIPC ? 'NODE' : 'POD',
  };
}

export function allContainers(spec: PodSpec): Container[] {
  return [...(spec.initContainers ?? []), ...spec.containers];
}

export function sandboxConfig(pod: KObject, node: NodeContext, attempt: number): PodSandboxConfig {
  const spec = podSpec(pod);
  const m = pod.metadata;
  const uid = m.uid ?? '';
  const ports: PortMapping[] = [];
  for (const c of spec.containers) {
    for (const p of c.ports ?? []) {
      ports.push({ protocol: p.protocol ?? 'TCP', containerPort: p.containerPort, hostPort: p.hostPort ?? 0, hostIp: p.hostIP ?? '' });
    }
  }
  const psc = spec.securityContext ?? {};
  const cfg: PodSandboxConfig = {
    metadata: { name: m.name ?? '', uid, namespace: m.namespace ?? '', attempt },
    // A hostNetwork pod shares the node's UTS namespace: the runtime must not set a hostname.
    ...(spec.hostNetwork ? {} : { hostname: podHostname(pod, node) }),
    logDirectory: podLogDir(pod, node.logRoot),
    portMappings: ports,
    labels: { ...(m.labels ?? {}), [LABEL.podName]: m.name ?? '', [LABEL.podNamespace]: m.namespace ?? '', [LABEL.podUid]: uid },
    annotations: { ...(m.annotations ?? {}) },
    linux: {
      cgroupParent: nodeCgroupParent(node.nodeName, uid),
      securityContext: {
        namespaceOptions: namespaceOptions(spec),
        privileged: allContainers(spec).some((c) => c.securityContext?.privileged === true),
        ...(psc.runAsUser !== undefined ? { runAsUser: { value: psc.runAsUser } } : {}),
        ...(psc.runAsGroup !== undefined ? { runAsGroup: { value: psc.runAsGroup } } : {}),
        ...(psc.supplementalGroups?.length ? { supplementalGroups: psc.supplementalGroups } : {}),
      },
      sysctls: Object.fromEntries((psc.sysctls ?? []).map((s) => [s.name, s.value])),
    },
  };
  const dns = dnsConfigFor(pod, node);
  if (dns) cfg.dnsConfig = dns;
  return cfg;
}

/**
 * The effective security context of a container (securitycontext.DetermineEffectiveSecurityContext
 * + the CRI conversion): container fields override the pod's; capabilities pass as names without
 * the CAP_ prefix (containerd adds it).
 */
export function containerSecurityContext(spec: PodSpec, c: Container): LinuxContainerSecurityContext {
  const psc = spec.securityContext ?? {};
  const sc: SecurityContext = c.securityContext ?? {};
  const out: LinuxContainerSecurityContext = {
    namespaceOptions: namespaceOptions(spec),
    privileged: sc.privileged === true,
    readonlyRootfs: sc.readOnlyRootFilesystem === true,
    // allowPrivilegeEscalation=false sets no_new_privs; unset leaves it off, as the kubelet does.
    noNewPrivs: sc.allowPrivilegeEscalation === false,
  };
  const add = (sc.capabilities?.add ?? []).map(stripCap);
  const drop = (sc.capabilities?.drop ?? []).map(stripCap);
  if (add.length || drop.length) out.capabilities = { addCapabilities: add, dropCapabilities: drop };
  const user = sc.runAsUser ?? psc.runAsUser;
  const group = sc.runAsGroup ?? psc.runAsGroup;
  if (user !== undefined) out.runAsUser = { value: user };
  if (group !== undefined) out.runAsGroup = { value: group };
  const groups = [...(psc.supplementalGroups ?? []), ...(psc.fsGroup !== undefined ? [psc.fsGroup] : [])];
  if (groups.length) out.supplementalGroups = groups;
  const seccomp = sc.seccompProfile ?? psc.seccompProfile;
  // Unset: no profile (Unconfined), the kubelet's default without SeccompDefault.
  if (seccomp?.type === 'RuntimeDefault') out.seccomp = { profileType: 'RuntimeDefault' };
  else if (seccomp?.type === 'Localhost') out.seccomp = { profileType: 'Localhost', localhostRef: seccomp.localhostProfile ?? '' };
  return out;
}

function stripCap(c: string): string {
  return c.toUpperCase().replace(/^CAP_/, '');
}

/** CRI mounts for the container's volumeMounts, plus /etc/hosts and the termination-message file. */
export function containerMounts(c: Container, volumes: PlannedVolume[], extra: { etcHosts?: string; terminationLog?: string }): Mount[] {
  const byName = new Map(volumes.map((v) => [v.name, v]));
  const mounts: Mount[] = [];
  for (const vm of c.volumeMounts ?? []) {
    const v = byName.get(vm.name);
    if (!v) throw new VolumeError(vm.name, `volume "${vm.name}" is not defined in the pod spec`);
    const hostPath = vm.subPath ? join(v.hostPath, vm.subPath) : v.hostPath;
    const propagation = vm.mountPropagation === 'Bidirectional' ? 'PROPAGATION_BIDIRECTIONAL' : vm.mountPropagation === 'HostToContainer' ? 'PROPAGATION_HOST_TO_CONTAINER' : 'PROPAGATION_PRIVATE';
    // configMap/secret/downwardAPI/projected volumes are always read-only in the container.
    mounts.push({ containerPath: vm.mountPath, hostPath, readonly: vm.readOnly === true || v.kind === 'files', propagation });
  }
  const paths = new Set(mounts.map((m) => m.containerPath));
  if (extra.etcHosts && !paths.has('/etc/hosts')) mounts.push({ containerPath: '/etc/hosts', hostPath: extra.etcHosts });
  const tmp = c.terminationMessagePath ?? '/dev/termination-log';
  if (extra.terminationLog && !paths.has(tmp)) mounts.push({ containerPath: tmp, hostPath: extra.terminationLog });
  return mounts;
}

export interface ContainerInput {
  pod: KObject;
  container: Container;
  restartCount: number;
  imageRef: string;
  envs: KeyValue[];
  command: string[];
  args: string[];
  mounts: Mount[];
}

export function containerConfig(i: ContainerInput): ContainerConfig {
  const spec = podSpec(i.pod);
  const c = i.container;
  const m = i.pod.metadata;
  const cfg: ContainerConfig = {
    metadata: { name: c.name, attempt: i.restartCount },
    image: { image: i.imageRef, userSpecifiedImage: c.image ?? '' },
    command: i.command,
    args: i.args,
    workingDir: c.workingDir ?? '',
    envs: i.envs,
    mounts: i.mounts,
    labels: { [LABEL.containerName]: c.name, [LABEL.podName]: m.name ?? '', [LABEL.podNamespace]: m.namespace ?? '', [LABEL.podUid]: m.uid ?? '' },
    annotations: { [ANNOTATION.restartCount]: String(i.restartCount), [ANNOTATION.terminationMessagePath]: c.terminationMessagePath ?? '/dev/termination-log' },
    logPath: join(c.name, `${i.restartCount}.log`),
    stdin: c.stdin === true,
    stdinOnce: c.stdinOnce === true,
    tty: c.tty === true,
    linux: { resources: containerResources(c), securityContext: containerSecurityContext(spec, c) },
  };
  return cfg;
}

/** cgroup limits from resources.limits (cpu → quota over a 100 ms period, memory → bytes). */
function containerResources(c: Container): { cpuPeriod?: number; cpuQuota?: number; cpuShares?: number; memoryLimitInBytes?: number } {
  const out: { cpuPeriod?: number; cpuQuota?: number; cpuShares?: number; memoryLimitInBytes?: number } = {};
  const cpuLimit = parseCpu(c.resources?.limits?.cpu);
  const cpuRequest = parseCpu(c.resources?.requests?.cpu ?? c.resources?.limits?.cpu);
  if (cpuRequest !== undefined) out.cpuShares = Math.max(2, Math.round(cpuRequest * 1024));
  if (cpuLimit !== undefined) {
    out.cpuPeriod = 100_000;
    out.cpuQuota = Math.max(1000, Math.round(cpuLimit * 100_000));
  }
  const mem = parseQuantity(c.resources?.limits?.memory);
  if (mem !== undefined) out.memoryLimitInBytes = mem;
  return out;
}

/** CPU quantity in cores ("500m" → 0.5, "2" → 2). */
export function parseCpu(q: string | number | undefined): number | undefined {
  if (q === undefined) return undefined;
  const s = String(q);
  if (s.endsWith('m')) return Number(s.slice(0, -1)) / 1000;
  const n = Number(s);
  return Number.isFinite(n) ? n : undefined;
}

const SUFFIX: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12, m: 1e-3, '': 1 };

/** A resource quantity in base units ("128Mi" → 134217728). */
export function parseQuantity(q: string | number | undefined): number | undefined {
  if (q === undefined) return undefined;
  const m = /^([0-9.]+)(Ki|Mi|Gi|Ti|k|M|G|T|m)?$/.exec(String(q));
  if (!m) return undefined;
  return Math.round(Number(m[1]) * SUFFIX[m[2] ?? '']!);
}

/** The /etc/hosts the kubelet writes for a pod (managedHostsFileContent), with hostAliases. */
export function hostsFile(pod: KObject, podIps: string[], node: NodeContext): string {
  const spec = podSpec(pod);
  const lines = [
    '# Kubernetes-managed hosts file.',
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    'fe00::0\tip6-localnet',
    'fe00::0\tip6-mcastprefix',
    'fe00::1\tip6-allnodes',
    'fe00::2\tip6-allrouters',
  ];
  const hostname = podHostname(pod, node);
  const fqdn = spec.subdomain ? `${hostname}.${spec.subdomain}.${pod.metadata.namespace}.svc.${node.clusterDomain}` : undefined;
  for (const ip of podIps) lines.push(fqdn ? `${ip}\t${fqdn}\t${hostname}` : `${ip}\t${hostname}`);
  const aliases = spec.hostAliases ?? [];
  if (aliases.length) {
    lines.push('', '# Entries added by HostAliases.');
    for (const a of aliases) lines.push(`${a.ip}\t${(a.hostnames ?? []).join('\t')}`);
  }
  return `${lines.join('\n')}\n`;
}
