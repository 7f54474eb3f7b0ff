#!/usr/bin/env bash
# A real, local Kubernetes control plane for development, tests and the
# quickstart: etcd + kube-apiserver on loopback, with TLS, RBAC and the
# project's CRDs. Binaries are built from their Go modules (hack/k8s,
# hack/etcd, hack/helm, and the tests' kstatus tool in hack/kstatus) through
# the Go module proxy and cached by version outside the git tree, so only the
# first run builds anything.
#
#   hack/cluster.sh build [NAME...]  build missing binaries (etcd kube-apiserver kubectl helm kstatus)
#   hack/cluster.sh up               build what is missing, start, wait for /readyz, install crds/
#   hack/cluster.sh down             stop what `up` started (by pidfile) and remove its state
#   hack/cluster.sh status           show whether it runs and where
#   hack/cluster.sh env              print the `export KUBECONFIG=...` line
#   hack/cluster.sh bin NAME         print the cached path of NAME (building it if missing)
#   hack/cluster.sh path NAME        print the cached path of NAME, built or not (never builds)
#   hack/cluster.sh kubectl|helm ARGS  run the cached kubectl/helm against this cluster
#
# Environment (defaults in brackets):
#   DENV_CACHE_DIR            [$HOME/.cache/disposable-env]  binaries go to $DENV_CACHE_DIR/bin
#   DENV_CLUSTER_DIR          [$DENV_CACHE_DIR/cluster]      state: pki, etcd data, logs, pids, kubeconfig
#   DENV_ETCD_CLIENT_PORT     [23791]   etcd client port on 127.0.0.1
#   DENV_ETCD_PEER_PORT       [23801]   etcd peer port on 127.0.0.1
#   DENV_APISERVER_PORT       [16443]   kube-apiserver secure port on 127.0.0.1
#   DENV_CRDS_DIR             [<repo>/crds]  CRDs applied after start; "none" skips
#   DENV_READY_TIMEOUT        [120]     seconds to wait for etcd health and apiserver /readyz
#   DENV_STOP_TIMEOUT         [15]      seconds between SIGTERM and SIGKILL on down
#   DENV_ETCD_UNSAFE_NO_FSYNC [true]    false: etcd fsyncs its WAL as in production (the benchmark's
#                                       own cluster does; dev and test clusters skip it, docs/dev-cluster.md)
#   DENV_APISERVER_PROFILING  [false]   true: serve /debug/pprof on kube-apiserver (admin only;
#                                       `npm run bench -- controller` with DENV_BENCH_PROFILE_DIR)
#
# There is no kube-controller-manager: namespace deletion never finalizes
# (namespaces stay Terminating) and no service account tokens are created.
# See docs/dev-cluster.md.
set -Eeuo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HACK_DIR="$REPO_ROOT/hack"
CACHE_DIR="${DENV_CACHE_DIR:-$HOME/.cache/disposable-env}"
BIN_DIR="$CACHE_DIR/bin"
STATE_DIR="${DENV_CLUSTER_DIR:-$CACHE_DIR/cluster}"
ETCD_CLIENT_PORT="${DENV_ETCD_CLIENT_PORT:-23791}"
ETCD_PEER_PORT="${DENV_ETCD_PEER_PORT:-23801}"
APISERVER_PORT="${DENV_APISERVER_PORT:-16443}"
CRDS_DIR="${DENV_CRDS_DIR:-$REPO_ROOT/crds}"
READY_TIMEOUT="${DENV_READY_TIMEOUT:-120}"
STOP_TIMEOUT="${DENV_STOP_TIMEOUT:-15}"
APISERVER_PROFILING="${DENV_APISERVER_PROFILING:-false}"
ETCD_UNSAFE_NO_FSYNC="${DENV_ETCD_UNSAFE_NO_FSYNC:-true}"
HOST=127.0.0.1
MARKER=".disposable-env-cluster"

PKI="$STATE_DIR/pki"
LOGS="$STATE_DIR/logs"
RUN="$STATE_DIR/run"
KUBECONFIG_PATH="$STATE_DIR/kubeconfig"

# Seconds since $1 (an $EPOCHREALTIME value), to one decimal.
elapsed_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- versions

# Version of module $2 as required by the go.mod in directory $1.
module_version() {
  local v
  v="$(awk -v mod="$2" '$1 ~ /^\/\// { next } { for (i = 1; i < NF; i++) if ($i == mod && $(i + 1) ~ /^v[0-9]/) { print $(i + 1); exit } }' "$1/go.mod")"
  [[ -n "$v" ]] || die "cannot find $2 in $1/go.mod"
  printf '%s' "$v"
}

# name -> "module-dir|go package|version-module"
binary_spec() {
  case "$1" in
    kube-apiserver) echo "k8s|k8s.io/kubernetes/cmd/kube-apiserver|k8s.io/kubernetes" ;;
    kubectl) echo "k8s|k8s.io/kubernetes/cmd/kubectl|k8s.io/kubernetes" ;;
    etcd) echo "etcd|go.etcd.io/etcd/server/v3|go.etcd.io/etcd/server/v3" ;;
    helm) echo "helm|helm.sh/helm/v3/cmd/helm|helm.sh/helm/v3" ;;
    # Our own program (hack/kstatus/main.go), versioned by the cli-utils it runs.
    kstatus) echo "kstatus|disposable-env/hack/kstatus|sigs.k8s.io/cli-utils" ;;
    *) die "unknown binary '$1' (known: etcd kube-apiserver kubectl helm kstatus)" ;;
  esac
}

# Version stamps the upstream builds set through -ldflags -X; without them
# kube-apiserver and kubectl report v0.0.0-master and helm a bare v3.NN.
version_ldflags() {
  local name="$1" version="$2" minor pkg
  case "$name" in
    kube-apiserver | kubectl)
      minor="${version#v*.}"
      minor="${minor%%.*}"
      for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        printf -- ' -X %s.gitVersion=%s -X %s.gitMajor=%s -X %s.gitMinor=%s -X %s.gitTreeState=clean' \
          "$pkg" "$version" "$pkg" "$(echo "${version#v}" | cut -d. -f1)" "$pkg" "$minor" "$pkg"
      done
      ;;
    helm) printf -- ' -X helm.sh/helm/v3/internal/version.version=%s -X helm.sh/helm/v3/internal/version.gitTreeState=clean' "$version" ;;
    etcd | kstatus) ;;
  esac
}

build_ldflags() { printf -- '-s -w%s' "$(version_ldflags "$1" "$2")"; }

# The module's own Go sources (hack/kstatus/main.go); none for the wrappers.
module_sources() {
  local f
  for f in "$1"/*.go; do
    if [[ -f "$f" ]]; then printf '%s\n' "$f"; fi
  done
}

# Cache key: name, upstream version, and a short hash of the recipe (the
# wrapper module's go.mod/go.sum, its own Go sources if any, and the link
# flags), so changing any of them builds anew instead of reusing a binary
# made another way.
binary_path() {
  local spec dir mod version recipe sources
  spec="$(binary_spec "$1")"
  IFS='|' read -r dir _ mod <<<"$spec"
  version="$(module_version "$HACK_DIR/$dir" "$mod")"
  mapfile -t sources < <(module_sources "$HACK_DIR/$dir")
  recipe="$({ cat "$HACK_DIR/$dir/go.mod" "$HACK_DIR/$dir/go.sum" "${sources[@]}"; build_ldflags "$1" "$version"; } | sha256sum | cut -c1-8)"
  printf '%s/%s-%s-%s' "$BIN_DIR" "$1" "$version" "$recipe"
}

# ---------------------------------------------------------------- build

# Builds one binary into the cache unless it is there. Progress (name and
# elapsed time) goes to stderr; on failure the Go error is shown.
build_one() {
  local name="$1" spec dir pkg mod ldflags out tmp blog pid start rc=0 last=0 now
  spec="$(binary_spec "$name")"
  IFS='|' read -r dir pkg mod <<<"$spec"
  ldflags="$(build_ldflags "$name" "$(module_version "$HACK_DIR/$dir" "$mod")")"
  out="$(binary_path "$name")"
  [[ -x "$out" ]] && return 0
  command -v go >/dev/null 2>&1 || die "'go' is not on PATH; it is needed once to build $name into $BIN_DIR"
  mkdir -p "$BIN_DIR"
  tmp="$out.tmp.$$"
  blog="$BIN_DIR/.build-$name.log"
  log "building $(basename "$out") from $pkg (first build takes minutes on 2 cores)"
  start=$SECONDS
  (
    cd "$HACK_DIR/$dir"
    # -mod=readonly: go.mod/go.sum are committed and must not change here.
    CGO_ENABLED=0 GOFLAGS=-mod=readonly exec go build -trimpath -buildvcs=false \
      -ldflags="$ldflags" -o "$tmp" "$pkg"
  ) >"$blog" 2>&1 </dev/null &
  pid=$!
  # Remove the half-written binary and stop the compiler if we are interrupted.
  trap 'kill -TERM '"$pid"' 2>/dev/null; rm -f "'"$tmp"'"; exit 130' INT TERM
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    now=$((SECONDS - start))
    if ((now - last >= 15)); then
      log "  ... $name: ${now}s"
      last=$now
    fi
  done
  wait "$pid" || rc=$?
  trap - INT TERM
  if ((rc != 0)); then
    rm -f "$tmp"
    printf '[cluster] go build of %s failed (exit %d) after %ss; last lines of %s:\n' "$name" "$rc" "$((SECONDS - start))" "$blog" >&2
    tail -n 40 "$blog" >&2
    exit 1
  fi
  mv -f "$tmp" "$out"
  log "built $(basename "$out") in $((SECONDS - start))s"
}

cmd_build() {
  local names=("$@") lockfd
  ((${#names[@]})) || names=(etcd kube-apiserver kubectl helm kstatus)
  mkdir -p "$BIN_DIR"
  # One builder at a time per cache (a dev `up` and a test run may race).
  exec {lockfd}>"$BIN_DIR/.build.lock"
  flock "$lockfd"
  for n in "${names[@]}"; do build_one "$n"; done
  exec {lockfd}>&-
}

# ---------------------------------------------------------------- processes

pid_of() { if [[ -f "$RUN/$1.pid" ]]; then cat "$RUN/$1.pid"; fi; }

# True if the pidfile's process is alive and is the binary we started with
# this state dir (guards against a recycled PID).
is_ours() {
  local pid cmd
  pid="$(pid_of "$1")"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  [[ "$cmd" == *"$BIN_DIR/$1-"* && "$cmd" == *"$STATE_DIR"* ]]
}

stop_one() {
  local name="$1" pid waited=0
  if ! is_ours "$name"; then
    rm -f "$RUN/$name.pid"
    return 0
  fi
  pid="$(pid_of "$name")"
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && ((waited < STOP_TIMEOUT * 10)); do
    sleep 0.1
    waited=$((waited + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not exit ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$RUN/$name.pid"
}

stop_all() {
  stop_one kube-apiserver
  stop_one etcd
}

# Starts "$@" detached from our stdio with output to $LOGS/$name.log.
start_one() {
  local name="$1"
  shift
  # No job control here, so the child is not a group leader and the PID we
  # record is the binary's own after exec.
  "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

port_in_use() {
  if command -v ss >/dev/null 2>&1; then
    [[ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ]]
  else
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
  fi
}

# Who listens on port $1, e.g. 'etcd-v3.6.8-d22a3dc6 (pid 123)', when ss can tell.
port_holder() {
  ss -Htlnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -n 1
}

# ---------------------------------------------------------------- pki

openssl_q() { openssl "$@" 2>>"$LOGS/openssl.log" || die "openssl $1 failed; see $LOGS/openssl.log"; }

# sign NAME SUBJECT EXTENSIONS: key + cert for NAME signed by the CA.
sign() {
  local name="$1" subj="$2" ext="$3"
  openssl_q genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$name.key"
  openssl_q req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr"
  printf '%s\n' "$ext" >"$PKI/$name.ext"
  openssl_q x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt"
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

make_pki() {
  local server_ext='basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=IP:127.0.0.1,DNS:localhost'
  local client_ext='basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth'
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  openssl_q genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/ca.key"
  openssl_q req -x509 -new -key "$PKI/ca.key" -subj "/CN=disposable-env-ca" -days 365 -sha256 \
    -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature' \
    -out "$PKI/ca.crt"
  sign apiserver "/CN=kube-apiserver" "$server_ext"
  sign etcd "/CN=etcd" "$server_ext"
  sign apiserver-etcd-client "/CN=kube-apiserver-etcd-client" "$client_ext"
  sign admin "/O=system:masters/CN=disposable-env-admin" "$client_ext"
  openssl_q genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key"
  openssl_q pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
}

write_kubeconfig() {
  local tmp="$KUBECONFIG_PATH.tmp"
  cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: disposable-env
  cluster:
    server: https://$HOST:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: disposable-env-admin
  user:
    client-certificate-data: $(base64 -w0 "$PKI/admin.crt")
    client-key-data: $(base64 -w0 "$PKI/admin.key")
contexts:
- name: disposable-env
  context:
    cluster: disposable-env
    user: disposable-env-admin
current-context: disposable-env
EOF
  chmod 600 "$tmp"
  mv -f "$tmp" "$KUBECONFIG_PATH"
}

# ---------------------------------------------------------------- health

curl_tls() {
  curl --silent --show-error --max-time 5 --cacert "$PKI/ca.crt" "$@"
}

# wait_for NAME URL CERT KEY: poll until URL answers 200, or fail with the log.
wait_for() {
  local name="$1" url="$2" cert="$3" key="$4" deadline=$((SECONDS + READY_TIMEOUT)) body=""
  while ((SECONDS < deadline)); do
    # Just after the fork /proc/PID/cmdline can still be the shell's, before the
    # exec: judge "exited" by the PID being gone, not by is_ours.
    local pid
    pid="$(pid_of "$name")"
    if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
      printf '[cluster] %s exited during startup; last lines of %s:\n' "$name" "$LOGS/$name.log" >&2
      tail -n 30 "$LOGS/$name.log" >&2
      return 1
    fi
    if body="$(curl_tls --fail --cert "$cert" --key "$key" "$url" 2>&1)"; then
      return 0
    fi
    sleep 0.5
  done
  printf '[cluster] %s not healthy after %ss at %s: %s\n' "$name" "$READY_TIMEOUT" "$url" "$body" >&2
  # /readyz?verbose names the checks that fail ("[-]...").
  curl_tls --cert "$cert" --key "$key" "$url?verbose" 2>/dev/null | grep -F '[-]' >&2 || true
  printf '[cluster] last lines of %s:\n' "$LOGS/$name.log" >&2
  tail -n 30 "$LOGS/$name.log" >&2
  return 1
}

# ---------------------------------------------------------------- up / down

# Prepares an empty state dir, refusing to touch a non-empty directory
# that we did not create (DENV_CLUSTER_DIR may point anywhere).
fresh_state_dir() {
  if [[ -d "$STATE_DIR" ]]; then
    if [[ -f "$STATE_DIR/$MARKER" ]]; then
      rm -rf "${STATE_DIR:?}/pki" "${STATE_DIR:?}/etcd" "${STATE_DIR:?}/logs" "${STATE_DIR:?}/run" "$KUBECONFIG_PATH"
    elif [[ -n "$(ls -A "$STATE_DIR")" ]]; then
      die "$STATE_DIR exists, is not empty and was not created by this script; choose another DENV_CLUSTER_DIR"
    fi
  fi
  mkdir -p "$STATE_DIR" "$LOGS" "$RUN"
  touch "$STATE_DIR/$MARKER"
}

print_usage_hint() {
  cat <<EOF
[cluster] control plane ready: https://$HOST:$APISERVER_PORT (etcd $HOST:$ETCD_CLIENT_PORT)
[cluster] use it with:
export KUBECONFIG=$KUBECONFIG_PATH
[cluster] kubectl: $(binary_path kubectl)
[cluster] stop it with: npm run cluster:down
EOF
}

install_crds() {
  local kubectl files applied
  kubectl="$(binary_path kubectl)"
  if [[ "$CRDS_DIR" == none ]]; then
    log "DENV_CRDS_DIR=none: not installing CRDs"
    return 0
  fi
  shopt -s nullglob
  files=("$CRDS_DIR"/*.yaml "$CRDS_DIR"/*.yml)
  shopt -u nullglob
  if ((${#files[@]} == 0)); then
    log "warning: no CRD manifests in $CRDS_DIR; none installed"
    return 0
  fi
  log "installing CRDs from $CRDS_DIR"
  if ! applied="$(timeout 60 "$kubectl" --kubeconfig "$KUBECONFIG_PATH" apply --server-side --field-manager=disposable-env-cluster -f "$CRDS_DIR" -o name 2>&1)"; then
    printf '[cluster] kubectl apply -f %s failed:\n%s\n' "$CRDS_DIR" "$applied" >&2
    return 1
  fi
  # shellcheck disable=SC2086 # one resource name per line
  if ! timeout 90 "$kubectl" --kubeconfig "$KUBECONFIG_PATH" wait --for=condition=Established --timeout=60s $applied >&2; then
    log "CRDs from $CRDS_DIR did not become Established"
    return 1
  fi
}

cmd_up() {
  local t0 etcd_bin apiserver_bin holder p
  if is_ours kube-apiserver && is_ours etcd; then
    log "already running (pids $(pid_of etcd), $(pid_of kube-apiserver)); re-applying CRDs"
    install_crds || die "installing CRDs failed"
    print_usage_hint
    return 0
  fi
  # Half-running from an earlier crash: stop the rest before starting over.
  stop_all
  for p in "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT"; do
    if port_in_use "$p"; then
      holder="$(port_holder "$p")"
      die "port $HOST:$p is already in use${holder:+ by $holder}; stop it or pick other ports with DENV_ETCD_CLIENT_PORT, DENV_ETCD_PEER_PORT, DENV_APISERVER_PORT (nothing was started)"
    fi
  done
  [[ "$APISERVER_PROFILING" == true || "$APISERVER_PROFILING" == false ]] ||
    die "DENV_APISERVER_PROFILING must be true or false, not '$APISERVER_PROFILING'"
  [[ "$ETCD_UNSAFE_NO_FSYNC" == true || "$ETCD_UNSAFE_NO_FSYNC" == false ]] ||
    die "DENV_ETCD_UNSAFE_NO_FSYNC must be true or false, not '$ETCD_UNSAFE_NO_FSYNC'"
  command -v openssl >/dev/null 2>&1 || die "openssl is required (apt-get install openssl)"
  command -v curl >/dev/null 2>&1 || die "curl is required (apt-get install curl)"

  cmd_build etcd kube-apiserver kubectl
  etcd_bin="$(binary_path etcd)"
  apiserver_bin="$(binary_path kube-apiserver)"

  fresh_state_dir
  # From here on, any failure stops whatever we started.
  trap 'rc=$?; if ((rc != 0)); then log "startup failed; stopping what was started (logs kept in $LOGS)"; stop_all; fi' EXIT
  trap 'exit 130' INT TERM

  make_pki
  t0=$EPOCHREALTIME
  mkdir -p "$STATE_DIR/etcd"
  chmod 700 "$STATE_DIR/etcd"
  log "starting etcd on $HOST:$ETCD_CLIENT_PORT"
  start_one etcd "$etcd_bin" \
    --name=denv \
    --data-dir="$STATE_DIR/etcd" \
    --listen-client-urls="https://$HOST:$ETCD_CLIENT_PORT" \
    --advertise-client-urls="https://$HOST:$ETCD_CLIENT_PORT" \
    --listen-peer-urls="https://$HOST:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="https://$HOST:$ETCD_PEER_PORT" \
    --initial-cluster="denv=https://$HOST:$ETCD_PEER_PORT" \
    --initial-cluster-state=new \
    --cert-file="$PKI/etcd.crt" --key-file="$PKI/etcd.key" \
    --trusted-ca-file="$PKI/ca.crt" --client-cert-auth \
    --peer-cert-file="$PKI/etcd.crt" --peer-key-file="$PKI/etcd.key" \
    --peer-trusted-ca-file="$PKI/ca.crt" --peer-client-cert-auth \
    --quota-backend-bytes=$((2 * 1024 * 1024 * 1024)) \
    --unsafe-no-fsync="$ETCD_UNSAFE_NO_FSYNC" \
    --log-level=warn
  wait_for etcd "https://$HOST:$ETCD_CLIENT_PORT/health" "$PKI/apiserver-etcd-client.crt" "$PKI/apiserver-etcd-client.key" ||
    die "etcd did not become healthy"

  log "starting kube-apiserver on $HOST:$APISERVER_PORT"
  start_one kube-apiserver "$apiserver_bin" \
    --bind-address="$HOST" \
    --advertise-address="$HOST" \
    --secure-port="$APISERVER_PORT" \
    --etcd-servers="https://$HOST:$ETCD_CLIENT_PORT" \
    --etcd-cafile="$PKI/ca.crt" \
    --etcd-certfile="$PKI/apiserver-etcd-client.crt" \
    --etcd-keyfile="$PKI/apiserver-etcd-client.key" \
    --tls-cert-file="$PKI/apiserver.crt" \
    --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --service-account-issuer="https://kubernetes.default.svc.cluster.local" \
    --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --authorization-mode=Node,RBAC \
    --disable-admission-plugins=ServiceAccount \
    --endpoint-reconciler-type=none \
    --allow-privileged=true \
    --profiling="$APISERVER_PROFILING" \
    --v=1
  write_kubeconfig
  wait_for kube-apiserver "https://$HOST:$APISERVER_PORT/readyz" "$PKI/admin.crt" "$PKI/admin.key" ||
    die "kube-apiserver did not become ready"
  log "ready in $(elapsed_since "$t0")s from starting etcd to /readyz ok (etcd pid $(pid_of etcd), kube-apiserver pid $(pid_of kube-apiserver))"
  install_crds || die "installing CRDs failed"
  trap - EXIT INT TERM
  print_usage_hint
}

cmd_down() {
  stop_all
  if [[ -f "$STATE_DIR/$MARKER" ]]; then
    rm -rf "${STATE_DIR:?}"
    log "stopped; removed $STATE_DIR"
  elif [[ -d "$STATE_DIR" ]]; then
    log "stopped; $STATE_DIR was not created by this script, left in place"
  else
    log "nothing to stop"
  fi
}

cmd_status() {
  local n
  for n in etcd kube-apiserver; do
    if is_ours "$n"; then echo "$n: running (pid $(pid_of "$n"))"; else echo "$n: not running"; fi
  done
  if is_ours kube-apiserver; then
    printf 'readyz: %s\n' "$(curl_tls --cert "$PKI/admin.crt" --key "$PKI/admin.key" "https://$HOST:$APISERVER_PORT/readyz" 2>&1 || true)"
    echo "export KUBECONFIG=$KUBECONFIG_PATH"
  fi
}

main() {
  local cmd="${1:-}"
  shift || true
  case "$cmd" in
    build) cmd_build "$@" ;;
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) echo "export KUBECONFIG=$KUBECONFIG_PATH" ;;
    bin)
      [[ $# -eq 1 ]] || die "usage: $0 bin NAME"
      cmd_build "$1" >&2
      binary_path "$1"
      echo
      ;;
    path)
      # For callers that must not build (test/helpers/kstatus.ts): they check it exists.
      [[ $# -eq 1 ]] || die "usage: $0 path NAME"
      binary_path "$1"
      echo
      ;;
    kubectl | helm)
      # Run the cached kubectl/helm against this cluster: hack/cluster.sh kubectl get denv -A
      cmd_build "$cmd" >&2
      exec "$(binary_path "$cmd")" --kubeconfig "$KUBECONFIG_PATH" "$@"
      ;;
    *) die "usage: $0 {build [NAME...]|up|down|status|env|bin NAME|path NAME|kubectl ARGS...|helm ARGS...}" ;;
  esac
}

main "$@"
