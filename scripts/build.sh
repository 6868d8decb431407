#!/usr/bin/env bash
# `npm run build`: compile TypeScript into dist/, then copy the non-TypeScript files the programs
# read at run time (protocol definitions) beside their compiled modules, so dist/src is complete
# on its own (it is what the image ships), and compile the native CNI plugin binary into
# dist/native/ambit-cni (static: the agent copies it onto nodes that have no libraries of ours).
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json
while IFS= read -r f; do
  mkdir -p "dist/$(dirname "$f")"
  cp "$f" "dist/$f"
done < <(find src -name '*.proto')
mkdir -p dist/native
# Built under a temp name and renamed: a test or an install copying the binary never sees half of it.
gcc -O2 -static -Wall -Wextra -o dist/native/.ambit-cni.tmp native/ambit-cni.c
mv -f dist/native/.ambit-cni.tmp dist/native/ambit-cni
