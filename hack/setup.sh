#!/usr/bin/env bash
# Prepare a fresh Debian machine (run as root) for disposable-env development,
# tests and the quickstart: host packages, npm dependencies, the TypeScript
# build, and the Go-built control plane (etcd, kube-apiserver, kubectl, helm),
# which is cached outside the tree so a second run builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

PACKAGES=(
  runc conmon tini catatonit          # OCI runtime, monitor, zombie-reaping PID 1
  iproute2 util-linux procps kmod     # ip netns, nsenter/unshare/mount, ps, modinfo
  openssl ca-certificates             # control-plane certificates
  qemu-system-x86 linux-image-amd64 busybox-static cpio   # cgroup v2 kernel for tests
  gcc libc6-dev                       # bench/raw-floor.c
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  step "apt-get install ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: root is needed to install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  step "host packages present"
fi

# `npm ci` cannot be used here: the npm registry these machines reach does not
# serve the non-Linux builds of jest's optional native resolver
# (@unrs/resolver-binding-darwin-*, -win32-*, …), so the lockfile cannot list
# them and `npm ci` refuses it as out of sync. `npm install` installs the
# versions the lockfile pins and skips the unavailable optional packages.
step "npm install (versions pinned by package-lock.json)"
npm install --no-audit --no-fund --loglevel=error

step "npm run build"
npm run build --silent

if [ -x hack/cluster.sh ] || [ -f hack/cluster.sh ]; then
  step "control-plane binaries (cached in ${DENV_CACHE_DIR:-$HOME/.cache/disposable-env})"
  bash hack/cluster.sh build
fi
step "setup done"
