#!/usr/bin/env bash
# The main job, the way a platform engineer meets the project: a local control
# plane (etcd + kube-apiserver on loopback), the controller, and one node agent
# for this machine; `kubectl apply` of examples/ci-job.yaml; its phases as
# `kubectl get denv -w` prints them, Pending → Scheduled → Running → Succeeded;
# its exit code and log tail; then everything is stopped and the host is shown
# to hold nothing of it. Run as root after `bash hack/setup.sh`.
#
#   npm run quickstart [-- MANIFEST]     default examples/ci-job.yaml
#
# Everything lives in a fresh directory under /tmp (control plane state, the
# agent's state dir, logs) on free loopback ports, so a running dev cluster
# (`npm run cluster:up`) is not disturbed; it is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

manifest=${1:-examples/ci-job.yaml}
[ -f dist/src/cli/bin.js ] || npm run build --silent
if [ "$(id -u)" -ne 0 ]; then
  echo "quickstart: run as root (the agent makes namespaces and cgroups)" >&2
  exit 1
fi

work=$(mktemp -d /tmp/denv-quickstart-XXXXXX)
chmod 711 "$work" # the env's mapped root user must reach the state dir below it
state="$work/state"
node_name=$(hostname | tr 'A-Z' 'a-z' | tr -c 'a-z0-9.\n-' '-' | sed 's/^[-.]*//; s/[-.]*$//')
node_name=${node_name:-quickstart-node}
lease_ns=disposable-env-system
pids=()

step() { printf '\n==> %s\n' "$*"; }
free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

export DENV_CLUSTER_DIR="$work/cluster"
DENV_ETCD_CLIENT_PORT=$(free_port) DENV_ETCD_PEER_PORT=$(free_port) DENV_APISERVER_PORT=$(free_port)
export DENV_ETCD_CLIENT_PORT DENV_ETCD_PEER_PORT DENV_APISERVER_PORT
export KUBECONFIG="$DENV_CLUSTER_DIR/kubeconfig"
KUBECTL=$(bash hack/cluster.sh bin kubectl)
kubectl() { timeout 900 "$KUBECTL" "$@"; }

stop_all() {
  local code=$?
  set +e
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  done
  # envs outlive a stopped agent by design (the next agent adopts them): tear down whatever is left here
  if [ -d "$state/envs" ] && [ -n "$(ls -A "$state/envs" 2>/dev/null)" ]; then
    node --input-type=module -e '
      const { Runtime } = await import(process.argv[1] + "/dist/node-agent/runtime.js");
      const { outstanding } = await import(process.argv[1] + "/dist/node-agent/journal.js");
      const rt = await Runtime.open({ stateDir: process.argv[2] });
      for (const r of (await rt.journal.list()).records) if (outstanding(r).length) await rt.teardown(r.id);
      await rt.close();' "$PWD" "$state" || echo "quickstart: teardown of what the agent left failed" >&2
  fi
  bash hack/cluster.sh down >/dev/null 2>&1
  if [ "$code" -ne 0 ]; then
    mkdir -p /tmp/denv-quickstart-logs && cp "$work"/*.log /tmp/denv-quickstart-logs/ 2>/dev/null &&
      echo "quickstart: the controller's and the agent's logs are in /tmp/denv-quickstart-logs" >&2
  fi
  remove_work
  exit "$code"
}

# Never recurse into a mount: the state dir holds a read-only bind of the host's root while an env may use it.
# Our own mounts below $work are unmounted first; if any is still there, $work is left in place and named.
remove_work() {
  local m
  m=$(awk -v w="$work" 'index($5, w "/") == 1 {print $5}' /proc/self/mountinfo | sort -r)
  if [ -n "$m" ]; then
    echo "quickstart: unmounting what the agent left under $work:" >&2
    echo "$m" >&2
    umount -R -l "$state/hostroot" 2>/dev/null || true
    for p in $m; do umount -l "$p" 2>/dev/null || true; done
  fi
  if awk -v w="$work" 'index($5, w "/") == 1 {found=1} END {exit !found}' /proc/self/mountinfo; then
    echo "quickstart: mounts remain under $work; not removing it" >&2
    return 1
  fi
  rm -rf --one-file-system "$work"
}
trap stop_all EXIT

step "control plane: etcd + kube-apiserver on 127.0.0.1:$DENV_APISERVER_PORT (CRDs installed)"
bash hack/cluster.sh up 2>&1 | grep -E 'ready|built|building' || true
kubectl create namespace "$lease_ns" >/dev/null

step "denv controller"
# started as node itself (not through a shell function), so $! is the process to stop
node dist/src/cli/bin.js controller --http-addr=127.0.0.1:0 --log-level=warn >"$work/controller.log" 2>&1 &
pids+=($!)

step "denv agent --node $node_name (state dir $state)"
node dist/src/cli/bin.js agent --node="$node_name" --state-dir="$state" --http-addr=127.0.0.1:0 --log-level=warn >"$work/agent.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  kubectl get disposablenode "$node_name" >/dev/null 2>&1 && break
  kill -0 "${pids[1]}" 2>/dev/null || { echo "quickstart: the agent exited:" >&2; cat "$work/agent.log" >&2; exit 1; }
  sleep 0.2
done
kubectl get disposablenodes

name=$(node -e 'const y=require("yaml");const d=y.parse(require("fs").readFileSync(process.argv[1],"utf8"));console.log(d.metadata.name)' "$manifest")
ns=$(node -e 'const y=require("yaml");const d=y.parse(require("fs").readFileSync(process.argv[1],"utf8"));console.log(d.metadata.namespace||"default")' "$manifest")

step "kubectl apply -f $manifest, then kubectl get denv -w"
# the binary itself in the background (not the function), so $! is the watch to stop
"$KUBECTL" get denv -n "$ns" -w --request-timeout=0 2>/dev/null &
watch_pid=$!
sleep 0.5
kubectl apply -f "$manifest" >/dev/null
kubectl wait -n "$ns" "denv/$name" --for=condition=Finished --timeout=600s >/dev/null
sleep 0.5
kill "$watch_pid" 2>/dev/null || true
wait "$watch_pid" 2>/dev/null || true

step "result"
kubectl get denv -n "$ns" "$name" -o go-template='phase {{.status.phase}}, reason {{.status.reason}}, exit code {{.status.exitCode}}
conditions:{{range .status.conditions}} {{.type}}={{.status}}{{end}}
log tail:
{{.status.logTail}}
'
kubectl get events -n "$ns" --field-selector "involvedObject.name=$name" -o custom-columns=TYPE:.type,REASON:.reason,FROM:.reportingComponent,MESSAGE:.message 2>/dev/null || true
phase=$(kubectl get denv -n "$ns" "$name" -o jsonpath='{.status.phase}')
cgroup_path=$(kubectl get denv -n "$ns" "$name" -o jsonpath='{.status.cgroupPath}')
env_host_name=${cgroup_path##*/} # denv-<id>: the env's netns, runc container and cgroup leaf share it

step "kubectl delete (the agent releases the finalizer once its teardown is verified)"
kubectl delete -f "$manifest" --wait=true --timeout=60s

step "stop the agent and the controller, then the control plane"
for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
stopped=("${pids[@]}")
pids=()
bash hack/cluster.sh down >/dev/null 2>&1

step "leftovers of this run on the host (expect none): $env_host_name's cgroups, netns, container, conmon; mounts under $work"
left=0
for h in /sys/fs/cgroup/*/; do
  if [ -n "$cgroup_path" ] && [ -d "$h$cgroup_path" ]; then echo "cgroup $h$cgroup_path"; left=1; fi
  if [ -d "${h}disposable.slice" ] && find "${h}disposable.slice" -maxdepth 2 -name "$env_host_name" | grep -q .; then echo "cgroup under ${h}disposable.slice"; left=1; fi
done
if ip netns list 2>/dev/null | grep -q "^$env_host_name\b"; then echo "netns $env_host_name"; left=1; fi
if awk -v w="$work" 'index($5, w "/") == 1 {found=1} END {exit !found}' /proc/self/mountinfo; then
  awk -v w="$work" 'index($5, w "/") == 1 {print "mount " $5}' /proc/self/mountinfo; left=1
fi
if runc --root /run/disposable-env/runc list -q 2>/dev/null | grep -qx "$env_host_name"; then echo "runc container $env_host_name"; left=1; fi
if pgrep -a -x conmon 2>/dev/null | grep -q -- "-c $env_host_name "; then echo "conmon for $env_host_name"; left=1; fi
for pid in "${stopped[@]}"; do if kill -0 "$pid" 2>/dev/null; then echo "process $pid still running"; left=1; fi; done
if [ "$left" -eq 0 ]; then echo "none"; else echo "quickstart: leftovers found" >&2; exit 1; fi
[ "$phase" = "Succeeded" ] || { echo "quickstart: $name ended $phase" >&2; exit 1; }
