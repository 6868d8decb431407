// Pod volumes on the node: what each volume of a pod becomes (a host directory, maybe with files
// the kubelet writes) is planned by a pure function; `materializeVolumes` then writes the plan under
// <dataDir>/pods/<uid>/volumes/<plugin>/<name>, where the real kubelet keeps them too.
// Supported: hostPath, emptyDir, configMap, secret, downwardAPI, projected (incl. the bound
// service-account token, the cluster CA and the namespace of kube-api-access-*).
//
// hostPath volumes name paths on the NODE, and a local-cluster node is not this machine: each has
// a filesystem root of its own (../nodefs.ts). hostPath `P` is `<nodeFsRoot>/P` — normalised so
// `..` stops at the root, and with symlinks in the root followed inside it when the volume is set
// up — so a pod never mounts, creates or type-checks the machine's real /etc, /opt or /run.
import { chmod, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, normalize } from 'node:path';
import type { KObject } from '../apiserver/types.js';
import { nodePath, resolveNodePath } from '../nodefs.js';
import { configMapData, fieldRefValue, secretData } from './env.js';
import type { Obj } from './spec.js';

/** A volume the kubelet cannot set up; becomes a FailedMount event and the pod waits. */
export class VolumeError extends Error {
  override name = 'VolumeError';
  constructor(
    readonly volume: string,
    detail: string,
  ) {
    super(`MountVolume.SetUp failed for volume "${volume}" : ${detail}`);
  }
}

export interface VolumeFile {
  /** relative to the volume dir */
  path: string;
  data: string;
  mode: number;
}

export interface PlannedVolume {
  name: string;
  /**
   * The directory (or file, for hostPath) bind-mounted into containers. For hostPath: the spec's
   * path under the node fs root — lexically in a plan, symlinks resolved once materialised.
   */
  hostPath: string;
  kind: 'hostPath' | 'emptyDir' | 'files';
  /** kind files: the complete contents */
  files?: VolumeFile[];
  /** kind hostPath: the declared type ('', Directory, DirectoryOrCreate, File, FileOrCreate, ...) */
  hostPathType?: string;
  /** kind hostPath: the path as the pod spec names it (on the node), e.g. /var/run/netns */
  nodePath?: string;
  /** kind hostPath: the node's filesystem root it resolves in */
  nodeFsRoot?: string;
}

export interface VolumeInput {
  pod: KObject;
  /** <dataDir>/pods/<uid> */
  podDir: string;
  /** the node's filesystem root: hostPath `P` is `<nodeFsRoot>/P` (see ../nodefs.ts) */
  nodeFsRoot: string;
  hostIp: string;
  podIps: string[];
  configMap(name: string): KObject | undefined;
  secret(name: string): KObject | undefined;
  /** a service-account token for the pod (TokenRequest with boundObjectRef to the pod) */
  token(audience: string | undefined, expirationSeconds: number): string;
  /** fallback for kube-root-ca.crt when the ConfigMap has not been published yet */
  caPem: string;
}

const DEFAULT_MODE = 0o644;

export function planVolumes(input: VolumeInput): PlannedVolume[] {
  return ((input.pod.spec as Obj)?.volumes ?? []).map((v: Obj) => planVolume(input, v));
}

function pluginDir(input: VolumeInput, plugin: string, name: string): string {
  return join(input.podDir, 'volumes', `kubernetes.io~${plugin}`, name);
}

function planVolume(input: VolumeInput, v: Obj): PlannedVolume {
  const name: string = v.name;
  if (v.hostPath) {
    const path: string = v.hostPath.path ?? '';
    if (!path) throw new VolumeError(name, 'hostPath.path is empty');
    return { name, kind: 'hostPath', hostPath: nodePath(input.nodeFsRoot, path), hostPathType: v.hostPath.type ?? '', nodePath: path, nodeFsRoot: input.nodeFsRoot };
  }
  if (v.emptyDir) return { name, kind: 'emptyDir', hostPath: pluginDir(input, 'empty-dir', name) };
  if (v.configMap) {
    const files = configMapFiles(input, name, v.configMap, v.configMap.defaultMode ?? DEFAULT_MODE);
    return { name, kind: 'files', hostPath: pluginDir(input, 'configmap', name), files };
  }
  if (v.secret) {
    const src = { ...v.secret, name: v.secret.secretName };
    const files = secretFiles(input, name, src, v.secret.defaultMode ?? DEFAULT_MODE);
    return { name, kind: 'files', hostPath: pluginDir(input, 'secret', name), files };
  }
  if (v.downwardAPI) {
    const files = downwardFiles(input, name, v.downwardAPI.items ?? [], v.downwardAPI.defaultMode ?? DEFAULT_MODE);
    return { name, kind: 'files', hostPath: pluginDir(input, 'downward-api', name), files };
  }
  if (v.projected) {
    const mode = v.projected.defaultMode ?? DEFAULT_MODE;
    const files: VolumeFile[] = [];
    for (const s of (v.projected.sources ?? []) as Obj[]) {
      if (s.configMap) files.push(...configMapFiles(input, name, s.configMap, mode));
      else if (s.secret) files.push(...secretFiles(input, name, s.secret, mode));
      else if (s.downwardAPI) files.push(...downwardFiles(input, name, s.downwardAPI.items ?? [], mode));
      else if (s.serviceAccountToken) {
        const t = s.serviceAccountToken;
        files.push({ path: checkPath(name, t.path), data: input.token(t.audience, t.expirationSeconds ?? 3600), mode });
      } else if (s.clusterTrustBundle) throw new VolumeError(name, 'clusterTrustBundle projections are not supported by this kubelet');
    }
    return { name, kind: 'files', hostPath: pluginDir(input, 'projected', name), files };
  }
  const type = Object.keys(v).find((k) => k !== 'name') ?? 'unknown';
  throw new VolumeError(name, `volume type ${type} is not supported by the local cluster's kubelet`);
}

interface KeySource {
  name?: string;
  items?: { key: string; path: string; mode?: number }[];
  optional?: boolean;
}

function configMapFiles(input: VolumeInput, volume: string, src: KeySource, mode: number): VolumeFile[] {
  const name = src.name ?? '';
  let cm = input.configMap(name);
  if (!cm && name === 'kube-root-ca.crt') cm = { metadata: { name }, data: { 'ca.crt': input.caPem } };
  if (!cm) {
    if (src.optional) return [];
    throw new VolumeError(volume, `configmap "${name}" not found`);
  }
  return keyFiles(volume, configMapData(cm), src, mode, `configmap references non-existent config key`);
}

function secretFiles(input: VolumeInput, volume: string, src: KeySource, mode: number): VolumeFile[] {
  const name = src.name ?? '';
  const s = input.secret(name);
  if (!s) {
    if (src.optional) return [];
    throw new VolumeError(volume, `secret "${name}" not found`);
  }
  return keyFiles(volume, secretData(s), src, mode, `references non-existent secret key`);
}

function keyFiles(volume: string, data: Record<string, string>, src: KeySource, mode: number, missing: string): VolumeFile[] {
  if (!src.items?.length) return Object.keys(data).sort().map((k) => ({ path: checkPath(volume, k), data: data[k]!, mode }));
  const out: VolumeFile[] = [];
  for (const item of src.items) {
    const value = data[item.key];
    if (value === undefined) {
      if (src.optional) continue;
      throw new VolumeError(volume, `${missing}: ${item.key}`);
    }
    out.push({ path: checkPath(volume, item.path), data: value, mode: item.mode ?? mode });
  }
  return out;
}

function downwardFiles(input: VolumeInput, volume: string, items: Obj[], mode: number): VolumeFile[] {
  return items.map((item) => {
    const data = item.fieldRef ? fieldRefValue(input.pod, item.fieldRef.fieldPath, input.hostIp, input.podIps) : '';
    return { path: checkPath(volume, item.path), data, mode: item.mode ?? mode };
  });
}

/** Item paths are relative and may not climb out of the volume (validation does this too). */
function checkPath(volume: string, p: string): string {
  const n = normalize(p ?? '');
  if (!n || n.startsWith('/') || n === '..' || n.startsWith('../')) throw new VolumeError(volume, `invalid path ${JSON.stringify(p)}`);
  return n;
}

/**
 * Creates what the plan describes and returns the plan to mount: the same, with each hostPath
 * resolved inside its node fs root (a symlink on the way, e.g. the node's /var/run -> ../run or
 * one a pod made, must not lead runc out of the root). Files volumes are rewritten only where
 * content or mode changed, and keys that disappeared are removed, so a periodic call keeps them current.
 */
export async function materializeVolumes(plan: PlannedVolume[]): Promise<PlannedVolume[]> {
  const out: PlannedVolume[] = [];
  for (const v of plan) {
    if (v.kind === 'emptyDir') {
      await mkdir(v.hostPath, { recursive: true, mode: 0o777 });
      await chmod(v.hostPath, 0o777);
      out.push(v);
    } else if (v.kind === 'hostPath') {
      out.push(await prepareHostPath(v));
    } else {
      await writeFilesVolume(v.hostPath, v.files ?? []);
      out.push(v);
    }
  }
  return out;
}

/** Type check (or creation) of a hostPath in the node fs, as the kubelet does it on a node's `/`. */
async function prepareHostPath(planned: PlannedVolume): Promise<PlannedVolume> {
  if (planned.nodeFsRoot === undefined || planned.nodePath === undefined) throw new VolumeError(planned.name, 'hostPath volume planned without a node fs root');
  const v = { ...planned, hostPath: await resolveNodePath(planned.nodeFsRoot, planned.nodePath) };
  const st = await stat(v.hostPath).catch(() => undefined);
  const failed = (what: string) => new VolumeError(v.name, `hostPath type check failed: ${v.nodePath} is not ${what} (node fs: ${v.hostPath})`);
  switch (v.hostPathType) {
    case 'DirectoryOrCreate':
      if (!st) await mkdir(v.hostPath, { recursive: true, mode: 0o755 });
      return v;
    case 'FileOrCreate':
      if (!st) {
        await mkdir(dirname(v.hostPath), { recursive: true });
        await writeFile(v.hostPath, '', { mode: 0o644 });
      }
      return v;
    case 'Directory':
      if (!st?.isDirectory()) throw failed('a directory');
      return v;
    case 'File':
      if (!st?.isFile()) throw failed('a file');
      return v;
    case 'Socket':
      if (!st?.isSocket()) throw failed('a socket file');
      return v;
    default:
      return v; // '' : no check, the runtime creates a missing directory (in the node fs: the path is resolved)
  }
}

async function writeFilesVolume(dir: string, files: VolumeFile[]): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const wanted = new Set(files.map((f) => f.path));
  for (const f of files) {
    const path = join(dir, f.path);
    const cur = await readFile(path, 'utf8').catch(() => undefined);
    if (cur !== f.data) {
      await mkdir(dirname(path), { recursive: true, mode: 0o755 });
      await writeFile(path, f.data);
    }
    await chmod(path, f.mode);
  }
  // The key list of the last write, beside the volume dir (not in it: containers see the dir).
  const manifest = `${dir}.keys`;
  const previous = (await readFile(manifest, 'utf8').catch(() => '')).split('\n').filter(Boolean);
  for (const p of previous) if (!wanted.has(p)) await rm(join(dir, p), { force: true });
  await writeFile(manifest, [...wanted].join('\n'));
}
