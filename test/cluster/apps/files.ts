// Finds the demo apps' sources (test/cluster/apps/src, plain JavaScript that tsc does not copy) and
// the repository root (Dockerfile, package.json, node_modules) from wherever this module runs:
// the source tree, or <repo>/<outDir>/test/cluster/apps after a build.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const FOLDER = join('test', 'cluster', 'apps');

/** Ancestors of `here` that might be the repository root, nearest first. */
export function rootCandidates(here: string = HERE): string[] {
  const at = here.lastIndexOf(`/${FOLDER}`);
  const out: string[] = [];
  if (at < 0) return out;
  for (let dir = here.slice(0, at) || '/'; ; dir = dirname(dir)) {
    out.push(dir);
    if (dir === dirname(dir)) break;
  }
  return out;
}

/** The repository root: the nearest candidate holding the apps' sources and a Dockerfile. */
export function repoRoot(here: string = HERE): string {
  const found = rootCandidates(here).find((dir) => existsSync(join(dir, FOLDER, 'src', 'echo.js')) && existsSync(join(dir, 'Dockerfile')));
  if (!found) throw new Error(`cannot find the repository (test/cluster/apps/src and a Dockerfile) above ${here}`);
  return found;
}

/** test/cluster/apps/src of the repository. */
export function appsSourceDir(here: string = HERE): string {
  return join(repoRoot(here), FOLDER, 'src');
}

/**
 * The compiled `src/` that was built together with this module (<outDir>/src when running from
 * <outDir>/test/cluster/apps), else the repository's dist/src (what `npm run build` makes).
 */
export function compiledSourceDir(here: string = HERE): string {
  const at = here.lastIndexOf(`/${FOLDER}`);
  const sibling = at >= 0 ? join(here.slice(0, at), 'src') : '';
  if (sibling && existsSync(join(sibling, 'sys', 'index.js'))) return sibling;
  return join(repoRoot(here), 'dist', 'src');
}
