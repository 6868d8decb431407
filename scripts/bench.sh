#!/usr/bin/env bash
# `npm run bench -- <scenario> [--json]`: runs one benchmark scenario from bench/ (or all with no
# scenario). Installs and builds what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure.sh >&2
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
scenarios=(apiserver cluster cni control l4)
if [ $# -gt 0 ] && [[ "$1" != --* ]]; then scenarios=("$1"); shift; fi
for s in "${scenarios[@]}"; do
  f="dist/bench/$s.js"
  [ -f "$f" ] || { echo "bench: no scenario '$s' (have: $(ls dist/bench | sed -n 's/\.js$//p' | tr '\n' ' '))" >&2; exit 2; }
  node "$f" "$@"
done
