#!/usr/bin/env bash
# Makes this checkout ready to run: system packages (as root, from Debian), npm packages, build.
# Idempotent and quick when nothing is missing; used by `npm test`, `npm run demo` and `npm run bench`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the project needs at run time, keyed by the command that proves each is present.
declare -A need=(
  [ip]=iproute2
  [iptables]=iptables
  [nft]=nftables
  [/usr/lib/cni/bridge]=containernetworking-plugins
  [containerd]=containerd
  [runc]=runc
  [buildah]=buildah
  [debootstrap]=debootstrap
  [nsenter]=util-linux
  [curl]=curl
  [gcc]=gcc
  [/usr/lib/x86_64-linux-gnu/libc.a]=libc6-dev
  [haproxy]=haproxy   # the L4 benchmark's reference proxy chain
  [tcpdump]=tcpdump   # the mesh test looks for plaintext on the underlay
)
missing=()
for probe in "${!need[@]}"; do
  if [[ "$probe" == /* ]]; then [ -e "$probe" ] || missing+=("${need[$probe]}")
  else command -v "$probe" >/dev/null 2>&1 || missing+=("${need[$probe]}"); fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "ensure: missing Debian packages: ${missing[*]}; run as root or: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "ensure: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v kubectl >/dev/null 2>&1; then
  echo "ensure: kubectl is not installed; the tests drive the real kubectl. Install it (it ships with this machine image)." >&2
  exit 1
fi

# npm packages: reinstall when the lockfile changed since the last install.
stamp=node_modules/.ambit-lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

bash scripts/build.sh
