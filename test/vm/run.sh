#!/usr/bin/env bash
# Run a command inside the cgroup v2 VM (see test/vm/README.md).
#   test/vm/run.sh [--mem MiB] [--cpus N] [--timeout S] [--cwd DIR] [--console] -- CMD [ARG...]
# The command runs as root with /bin/sh semantics in the VM, cwd = the current
# directory (the host root is mounted read-only, so host paths work).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
exec "$repo/node_modules/.bin/tsx" "$here/cli.ts" "$@"
