/**
 * The protocol's definition, src/api/ambit.proto (its rules are in that file's comments). The
 * build copies it beside this module (scripts/build.sh), so dist/src is complete on its own and
 * the programs load the one file there is.
 */
import { readFileSync } from 'node:fs';

export const AMBIT_PROTO: string = readFileSync(new URL('./ambit.proto', import.meta.url), 'utf8');

