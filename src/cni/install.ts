/**
 * Installs ambit-cni into a node's CNI chain (and removes it): the agent runs this at start and on
 * uninstall. Pure part: choose the runtime's primary config file, add or remove our entry in its
 * `plugins` list leaving everything else as it was, render the wrapper executable, find the
 * plugin's module closure. Thin part: copy the plugin and write files atomically (temp + rename),
 * binary before config on install and config before binary on removal, so the runtime never sees
 * a config naming a plugin it cannot run.
 */
import { chmod, copyFile, mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { isSupportedVersion, SUPPORTED_VERSIONS } from './spec.js';

export const AMBIT_CNI_TYPE = 'ambit-cni';
/** The plugin's entry module, relative to the compiled tree's root (dist/). */
export const PLUGIN_ENTRY = 'src/main/cni.js';

/** Our entry in the conflist (`type` is added by the installer). */
export interface AmbitConflistEntry {
  agentSocket: string;
  timeoutMs?: number;
  excludeNamespaces?: string[];
}

export class CniInstallError extends Error {
  override readonly name = 'CniInstallError';
}

// ---------- pure ----------

/** Extensions libcni loads from a conf dir. */
const CONF_EXTENSIONS = ['.conf', '.conflist', '.json'];

/**
 * The file the runtime uses: libcni lists the dir sorted by name and containerd/CRI-O take the
 * first loadable one. Our own temp files end in ".tmp", so the runtime never loads them.
 */
export function primaryConfFile(names: readonly string[]): string | undefined {
  return names.filter((n) => CONF_EXTENSIONS.includes(posix.extname(n))).sort()[0];
}

interface Conflist {
  cniVersion?: unknown;
  plugins: Record<string, unknown>[];
  [k: string]: unknown;
}

function parseConflist(text: string, file: string): Conflist {
  let conf: unknown;
  try {
    conf = JSON.parse(text);
  } catch (err) {
    throw new CniInstallError(`${file} is not valid JSON (${(err as Error).message}); fix the node's CNI config before ambit-cni can be added`);
  }
  if (typeof conf !== 'object' || conf === null || !Array.isArray((conf as Conflist).plugins)) {
    throw new CniInstallError(`${file} has no "plugins" list; ambit-cni chains onto a conflist (a single-plugin .conf cannot be chained)`);
  }
  return conf as Conflist;
}

/** The indentation the file uses (so a rewrite looks like the original), default two spaces. */
export function detectIndent(text: string): string | number {
  const m = /^\{\s*?\n([ \t]+)\S/.exec(text);
  if (m) return m[1]!;
  return text.includes('\n') ? 2 : 0;
}

function serialize(conf: Conflist, original: string): string {
  const indent = detectIndent(original);
  const out = indent === 0 ? JSON.stringify(conf) : JSON.stringify(conf, null, indent);
  return original.endsWith('\n') ? `${out}\n` : out;
}

export interface ConflistEdit {
  text: string;
  changed: boolean;
}

/**
 * Appends our entry to the conflist's plugins, or updates it in place when it is already there
 * (idempotent: installing twice is installing once). Refuses a cniVersion ambit-cni does not speak,
 * which would fail every pod of the node.
 */
export function addAmbitPlugin(text: string, entry: AmbitConflistEntry, file = 'the CNI config'): ConflistEdit {
  const conf = parseConflist(text, file);
  if (!isSupportedVersion(conf.cniVersion)) {
    throw new CniInstallError(`${file} has cniVersion ${JSON.stringify(conf.cniVersion)}; ambit-cni speaks ${SUPPORTED_VERSIONS.join(', ')}, so it is not added (pods would fail to start)`);
  }
  const ours = { type: AMBIT_CNI_TYPE, ...entry };
  const at = conf.plugins.findIndex((p) => p.type === AMBIT_CNI_TYPE);
  const plugins = at < 0 ? [...conf.plugins, ours] : conf.plugins.map((p, i) => (i === at ? ours : p));
  const next = serialize({ ...conf, plugins }, text);
  // Compare meaning, not bytes: a file written by someone else with other spacing is not rewritten.
  const changed = at < 0 || JSON.stringify(conf.plugins[at]) !== JSON.stringify(ours);
  return { text: changed ? next : text, changed };
}

/** Removes every ambit-cni entry; the rest of the file stays as it was. */
export function removeAmbitPlugin(text: string, file = 'the CNI config'): ConflistEdit {
  const conf = parseConflist(text, file);
  const plugins = conf.plugins.filter((p) => p.type !== AMBIT_CNI_TYPE);
  if (plugins.length === conf.plugins.length) return { text, changed: false };
  return { text: serialize({ ...conf, plugins }, text), changed: true };
}

const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** The executable the runtime runs: a shell wrapper that execs Node on the plugin's entry module. */
export function renderWrapper(nodePath: string, entryPath: string): string {
  return [
    '#!/bin/sh',
    '# ambit-cni: the Ambit mesh CNI plugin, installed by ambit-agent (which rewrites or removes this file).',
    `exec ${shellQuote(nodePath)} ${shellQuote(entryPath)} "$@"`,
    '',
  ].join('\n');
}

/**
 * The module specifiers of a compiled ES module's static imports and re-exports (what the
 * installer must copy along). Dynamic imports are not followed: the plugin has none.
 */
export function staticImports(source: string): string[] {
  const out: string[] = [];
  const re = /^\s*(?:import|export)\s(?:[^'";]*?\sfrom\s*)?['"]([^'"]+)['"]/gm;
  for (let m = re.exec(source); m; m = re.exec(source)) out.push(m[1]!);
  return out;
}

// ---------- thin ----------

/**
 * The files (relative to `distRoot`) the plugin needs: `entry` and every module it reaches through
 * relative imports. Any import of a package (not `node:`) is an error: the copy on the host has no
 * node_modules.
 */
export async function pluginModuleClosure(distRoot: string, entry = PLUGIN_ENTRY): Promise<string[]> {
  const seen = new Set<string>();
  const queue = [posix.normalize(entry)];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const spec of staticImports(await readFile(join(distRoot, file), 'utf8'))) {
      if (spec.startsWith('node:')) continue;
      if (!spec.startsWith('.')) throw new CniInstallError(`${file} imports the package "${spec}"; the CNI plugin may import only node: built-ins and its own modules`);
      queue.push(posix.normalize(posix.join(posix.dirname(file), spec)));
    }
  }
  return [...seen].sort();
}

export interface InstallOptions {
  /** the runtime's CNI config dir (e.g. /etc/cni/net.d) */
  confDir: string;
  /** the runtime's CNI bin dir (e.g. /opt/cni/bin) */
  binDir: string;
  /** where the plugin's modules go; default <binDir>/ambit-cni.d */
  libDir?: string;
  /** the compiled tree holding PLUGIN_ENTRY */
  distRoot: string;
  /** the Node.js the wrapper runs, as seen by the runtime (a host path) */
  nodePath: string;
  /** copy `nodePath` into libDir and run that copy (when the agent's Node is not on the host) */
  copyNode?: boolean;
  entry: AmbitConflistEntry;
}

export interface InstallReport {
  /** the conflist we edited (absolute path) */
  conflist: string;
  /** false when everything was already in place */
  conflistChanged: boolean;
  wrapper: string;
}

const libDirOf = (o: { binDir: string; libDir?: string }): string => o.libDir ?? join(o.binDir, `${AMBIT_CNI_TYPE}.d`);

/** Writes via a temp file in the same dir and a rename, so readers see the old or the new file. */
async function writeAtomically(path: string, content: string, mode: number): Promise<void> {
  const tmp = join(dirname(path), `.${posix.basename(path)}.${process.pid}.tmp`);
  await writeFile(tmp, content, { mode });
  await chmod(tmp, mode);
  await rename(tmp, path);
}

/** A rewritten config keeps its permissions (some nodes keep it 0600). */
const modeOf = async (path: string): Promise<number> => (await stat(path)).mode & 0o777;

async function primaryConflistPath(confDir: string): Promise<string> {
  const names = await readdir(confDir).catch(() => [] as string[]);
  const primary = primaryConfFile(names);
  if (!primary) throw new CniInstallError(`no CNI network config in ${confDir} yet; ambit-cni chains onto the node's pod network, so it waits for that to be installed`);
  return join(confDir, primary);
}

/** Installs (or refreshes) the plugin and its conflist entry. Safe to repeat. */
export async function installCni(o: InstallOptions): Promise<InstallReport> {
  const libDir = libDirOf(o);
  const conflist = await primaryConflistPath(o.confDir);
  const original = await readFile(conflist, 'utf8');
  const edit = addAmbitPlugin(original, o.entry, conflist); // validate before touching anything

  await mkdir(libDir, { recursive: true });
  for (const rel of await pluginModuleClosure(o.distRoot)) {
    await mkdir(join(libDir, dirname(rel)), { recursive: true });
    await copyFile(join(o.distRoot, rel), join(libDir, rel));
  }
  // The copied modules are ES modules: without this, Node would load them as CommonJS.
  await writeFile(join(libDir, 'package.json'), '{"type":"module"}\n');
  let nodePath = o.nodePath;
  if (o.copyNode) {
    nodePath = join(libDir, 'node');
    await copyFile(o.nodePath, `${nodePath}.tmp`);
    await chmod(`${nodePath}.tmp`, 0o755);
    await rename(`${nodePath}.tmp`, nodePath);
  }
  const wrapper = join(o.binDir, AMBIT_CNI_TYPE);
  await writeAtomically(wrapper, renderWrapper(nodePath, join(libDir, PLUGIN_ENTRY)), 0o755);

  if (edit.changed) await writeAtomically(conflist, edit.text, await modeOf(conflist));
  return { conflist, conflistChanged: edit.changed, wrapper };
}

/** Removes our conflist entry, then the wrapper and modules. Safe to repeat; leaves others' files alone. */
export async function uninstallCni(o: { confDir: string; binDir: string; libDir?: string }): Promise<{ conflistChanged: boolean }> {
  let conflistChanged = false;
  const names = await readdir(o.confDir).catch(() => [] as string[]);
  // Every config file, not only the primary: the primary may have changed since we installed.
  for (const name of names.filter((n) => CONF_EXTENSIONS.includes(posix.extname(n)))) {
    const path = join(o.confDir, name);
    const text = await readFile(path, 'utf8');
    let edit: ConflistEdit;
    try {
      edit = removeAmbitPlugin(text, path);
    } catch {
      continue; // not a conflist (a .conf, or broken): nothing of ours in it
    }
    if (edit.changed) {
      await writeAtomically(path, edit.text, await modeOf(path));
      conflistChanged = true;
    }
  }
  await rm(join(o.binDir, AMBIT_CNI_TYPE), { force: true });
  await rm(libDirOf(o), { recursive: true, force: true });
  return { conflistChanged };
}
