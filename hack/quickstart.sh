#!/usr/bin/env bash
# The main job, on one host: check what this host can enforce, then run the
# example DisposableEnv in all seven namespaces with limits, watch its phases,
# and show that nothing is left behind. Run as root after `bash hack/setup.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -f dist/src/cli/bin.js ] || npm run build --silent
denv() { node dist/src/cli/bin.js "$@"; }
manifest=${1:-examples/hello.yaml}

echo "==> denv doctor"
denv doctor

echo
echo "==> denv validate -f $manifest"
denv validate -q -f "$manifest"

echo
echo "==> denv run -f $manifest"
denv run -f "$manifest"

echo
echo "==> denv ps"
denv ps

echo
echo "==> leftovers of the project on this host (expect none)"
left=0
if ip netns list 2>/dev/null | grep -q '^denv-'; then ip netns list | grep '^denv-'; left=1; fi
if find /sys/fs/cgroup -maxdepth 3 -type d -name 'disposable.slice' 2>/dev/null | grep -q .; then
  find /sys/fs/cgroup -maxdepth 3 -type d -name 'disposable.slice'; left=1
fi
if [ "$left" -eq 0 ]; then echo "none"; else echo "quickstart: leftovers found" >&2; exit 1; fi
