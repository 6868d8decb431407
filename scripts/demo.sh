#!/usr/bin/env bash
# `npm run demo [-- --keep]`: installs what is missing, builds, and runs the demo (demo/main.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure.sh
mkdir -p .cache
exec node dist/demo/main.js "$@"
