#!/usr/bin/env bash
# Build the node runtime's spawn helper (node-agent/native/spawn-helper.c) into
# dist/native/denv-spawn. The helper is optional: without a C compiler the
# runtime starts programs with child_process.spawn instead, so a missing gcc is
# a warning, not an error. A compile error is an error.
set -euo pipefail
cd "$(dirname "$0")/.."
src=node-agent/native/spawn-helper.c
out=dist/native/denv-spawn
if ! command -v gcc >/dev/null 2>&1; then
  echo "build-native: gcc not found; $out not built (the runtime will fork the agent for every program it runs)" >&2
  exit 0
fi
mkdir -p "$(dirname "$out")"
gcc -O2 -Wall -Wextra -Werror -o "$out.tmp" "$src"
mv -f "$out.tmp" "$out"
