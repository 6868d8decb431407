#!/usr/bin/env bash
# `npm run build`: compile TypeScript into dist/, then copy the non-TypeScript files the programs
# read at run time (protocol definitions) beside their compiled modules, so dist/src is complete
# on its own (it is what the image ships).
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json
while IFS= read -r f; do
  mkdir -p "dist/$(dirname "$f")"
  cp "$f" "dist/$f"
done < <(find src -name '*.proto')
