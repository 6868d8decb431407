/**
 * Installs ambit-cni into a node's CNI chain (and removes it): the agent runs this at start and on
 * uninstall. Pure part: choose the runtime's primary config file, add or remove our entry in its
 * `plugins` list leaving everything else as it was. Thin part: copy the plugin binary (the static
 * native/ambit-cni, built into dist/native/) and write files atomically (temp + rename), binary
 * before config on install and config before binary on removal, so the runtime never sees a config
 * naming a plugin it cannot run, nor a half-written binary.
 */
import { chmod, copyFile, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { agentSocketProblem, isSupportedVersion, SUPPORTED_VERSIONS } from './spec.js';

export const AMBIT_CNI_TYPE = 'ambit-cni';

/**
 * The plugin binary that ships with this build: dist/native/ambit-cni (scripts/build.sh compiles
 * native/ambit-cni.c there), found relative to this module (dist/src/cni/install.js).
 */
export const BUNDLED_PLUGIN_BINARY = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'native', AMBIT_CNI_TYPE);

/** Our entry in the conflist (`type` is added by the installer). */
export interface AmbitConflistEntry {
  /** "@name" (abstract) or a path; omitted: the plugin's default, @ambit/cni */
  agentSocket?: string;
  /** how long the plugin waits for the agent (default 30 s) */
  timeoutMs?: number;
  /** pods of these namespaces pass through, also while the agent is down */
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
  if (entry.agentSocket !== undefined && agentSocketProblem(entry.agentSocket)) {
    throw new CniInstallError(`agentSocket ${JSON.stringify(entry.agentSocket)}: ${agentSocketProblem(entry.agentSocket)}`);
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

// ---------- thin ----------

export interface InstallOptions {
  /** the runtime's CNI config dir (e.g. /etc/cni/net.d) */
  confDir: string;
  /** the runtime's CNI bin dir (e.g. /opt/cni/bin) */
  binDir: string;
  /** the plugin binary to copy; default BUNDLED_PLUGIN_BINARY */
  binary?: string;
  entry: AmbitConflistEntry;
}

export interface InstallReport {
  /** the conflist we edited (absolute path) */
  conflist: string;
  /** false when the entry was already in place */
  conflistChanged: boolean;
  /** the installed plugin (<binDir>/ambit-cni) */
  plugin: string;
  /** false when the installed plugin already had these exact bytes */
  pluginChanged: boolean;
}

/** Writes via a temp file in the same dir and a rename, so readers see the old or the new file. */
async function writeAtomically(path: string, content: string, mode: number): Promise<void> {
  const tmp = tempNameFor(path);
  await writeFile(tmp, content, { mode });
  await chmod(tmp, mode);
  await rename(tmp, path);
}

/** A dot file ending in ".tmp" beside `path`: the runtime loads neither as config nor as plugin. */
const tempNameFor = (path: string): string => join(dirname(path), `.${posix.basename(path)}.${process.pid}.tmp`);

/** A rewritten config keeps its permissions (some nodes keep it 0600). */
const modeOf = async (path: string): Promise<number> => (await stat(path)).mode & 0o777;

async function primaryConflistPath(confDir: string): Promise<string> {
  const names = await readdir(confDir).catch(() => [] as string[]);
  const primary = primaryConfFile(names);
  if (!primary) throw new CniInstallError(`no CNI network config in ${confDir} yet; ambit-cni chains onto the node's pod network, so it waits for that to be installed`);
  return join(confDir, primary);
}

/**
 * Copies the binary into the bin dir under a temp name and renames it over the old one: a runtime
 * running the plugin at that moment keeps executing the old inode, the next run gets the new one
 * (copying in place would fail with ETXTBSY, or worse, expose a half-written file).
 */
async function installBinary(source: string, target: string): Promise<boolean> {
  const wanted = await readFile(source).catch((err: NodeJS.ErrnoException) => {
    throw new CniInstallError(`cannot read the ambit-cni binary ${source} (${err.code ?? err.message}); it is built by scripts/build.sh into dist/native/`);
  });
  const current = await readFile(target).catch(() => undefined);
  if (current?.equals(wanted) && ((await stat(target)).mode & 0o777) === 0o755) return false;
  const tmp = tempNameFor(target);
  try {
    await copyFile(source, tmp);
    await chmod(tmp, 0o755);
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return true;
}

/** Installs (or refreshes) the plugin and its conflist entry. Safe to repeat. */
export async function installCni(o: InstallOptions): Promise<InstallReport> {
  const conflist = await primaryConflistPath(o.confDir);
  const original = await readFile(conflist, 'utf8');
  const edit = addAmbitPlugin(original, o.entry, conflist); // validate before touching anything
  const plugin = join(o.binDir, AMBIT_CNI_TYPE);
  const pluginChanged = await installBinary(o.binary ?? BUNDLED_PLUGIN_BINARY, plugin);
  if (edit.changed) await writeAtomically(conflist, edit.text, await modeOf(conflist));
  return { conflist, conflistChanged: edit.changed, plugin, pluginChanged };
}

/** Removes our conflist entry, then the binary. Safe to repeat; leaves others' files alone. */
export async function uninstallCni(o: { confDir: string; binDir: string }): Promise<{ conflistChanged: boolean }> {
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
  // What installers before the native plugin left: the Node modules the old wrapper ran.
  await rm(join(o.binDir, `${AMBIT_CNI_TYPE}.d`), { recursive: true, force: true });
  return { conflistChanged };
}
