// Finds the non-TypeScript files of this folder (cri.proto, pause.c) at run time. tsc does not copy
// them, so code running from <repo>/<outDir>/test/cluster/runtime looks them up in the source tree.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const FOLDER = join('test', 'cluster', 'runtime');

/** Candidate paths for `file`: beside this module, then <ancestor>/test/cluster/runtime/<file>. */
export function candidatePaths(file: string, here: string = HERE): string[] {
  const out = [join(here, file)];
  const at = here.lastIndexOf(`/${FOLDER}`);
  if (at < 0) return out;
  for (let dir = dirname(here.slice(0, at + 1)); ; dir = dirname(dir)) {
    out.push(join(dir, FOLDER, file));
    if (dir === dirname(dir)) break;
  }
  return out;
}

/** The first existing candidate for `file`; throws naming every place it looked. */
export function runtimeFile(file: string): string {
  const candidates = candidatePaths(file);
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`${file} not found; looked in: ${candidates.join(', ')}`);
  return found;
}
