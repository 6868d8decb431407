#!/usr/bin/env bash
# `npm test`: install what is missing, build, run every test (unit tests beside the code, integration
# tests under test/). Extra arguments are passed to node's test runner (e.g. --test-name-pattern).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure.sh
mapfile -t files < <(find dist/src dist/test -name '*.test.js' | sort)
exec node --test --test-concurrency=2 --test-timeout=600000 "$@" "${files[@]}"
