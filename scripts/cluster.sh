#!/usr/bin/env bash
# `npm run cluster -- up [--nodes N] [--name C] | down [--name C] | status [--name C]`: the local
# cluster (test/cluster/main.ts) as a background service. Installs what is missing and builds first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure.sh >&2
exec node dist/test/cluster/main.js "$@"
