# Shared settings and helpers for the e2e cluster scripts. Sourced, never run.
# shellcheck shell=bash

export PATH="/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}"

E2E_CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
E2E_ROOT="$(cd "$E2E_CLUSTER_DIR/../../.." && pwd)"
E2E_STATE="${PODSECRETS_E2E_STATE:-/var/run/podsecrets-e2e}"
E2E_CACHE="${PODSECRETS_E2E_CACHE:-/var/cache/podsecrets-e2e}"
E2E_NODE_NAME="${PODSECRETS_E2E_NODE_NAME:-podsecrets-node}"
E2E_REGION="${PODSECRETS_E2E_REGION:-us-east-1}"
E2E_KUBE_VERSION="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$E2E_ROOT/test/e2e/kube/go.mod")"
E2E_BIN="$E2E_CACHE/bin/$E2E_KUBE_VERSION"
E2E_IMAGES="$E2E_CACHE/images"
E2E_PAUSE_IMAGE="docker.io/local/pause:e2e"
E2E_BUSYBOX_IMAGE="docker.io/local/busybox:e2e"
E2E_KUBELET_ROOT=/var/lib/kubelet
E2E_POD_CIDR=10.244.0.0/24
E2E_SERVICE_CIDR=10.96.0.0/24
E2E_KUBERNETES_SVC_IP=10.96.0.1
E2E_BRIDGE=podsecrets0
E2E_APISERVER_PORT=6443
E2E_CONTAINERD_SOCK="$E2E_STATE/containerd/containerd.sock"
E2E_KUBECONFIG="$E2E_STATE/kubeconfig"
# Host directories the cluster may create: up.sh records which existed
# before, and down.sh removes the others. The plugin socket directories are
# the DaemonSet's hostPath volumes (DirectoryOrCreate), /etc/kubernetes with
# them.
E2E_HOST_DIRS=("$E2E_KUBELET_ROOT" /var/log/pods /var/log/containers /run/containerd /var/lib/cni /var/lib/containerd
  /opt/containerd /etc/cni /opt/cni /var/run/secrets-store-csi-providers /etc/kubernetes/secrets-store-csi-providers
  /etc/kubernetes)
# iptables chains owned by these scripts (removed by down.sh)
E2E_CHAIN=PODSECRETS-E2E

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf '==> WARNING: %s\n' "$*" >&2; }
die() { printf '==> ERROR: %s\n' "$*" >&2; exit 1; }
# lock_cluster: serialises up.sh and down.sh runs on this machine (waits up to 10 min).
lock_cluster() {
  mkdir -p "$E2E_CACHE"
  exec 9>"$E2E_CACHE/.cluster.lock"
  flock -w 600 9 || die "another up.sh/down.sh holds $E2E_CACHE/.cluster.lock"
}
need_root() { [[ $(id -u) == 0 ]] || die "must run as root"; }

# The node's address is one these scripts add to the loopback interface:
# the API server, kubelet and the fake store listen there (and on
# 127.0.0.1), never on the machine's external interface, and pods reach it
# through the bridge like any address of the host. 10.245.255.1 is outside
# the pod and service ranges; PODSECRETS_E2E_NODE_IP picks another (an
# address the caller made, which up.sh then only checks is local). A dummy
# interface would do as well, but not every kernel here has the module.
E2E_HOST_IP_DEFAULT=10.245.255.1

# node_ip prints the node's address.
node_ip() { echo "${PODSECRETS_E2E_NODE_IP:-$E2E_HOST_IP_DEFAULT}"; }

# ensure_node_ip makes the node's address.
ensure_node_ip() {
  local ip; ip="$(node_ip)"
  if [[ -n "${PODSECRETS_E2E_NODE_IP:-}" ]]; then
    ip -4 -o addr show | grep -q " inet $ip/" || die "PODSECRETS_E2E_NODE_IP=$ip is no address of this machine"
    return 0
  fi
  ip -4 -o addr show dev lo | grep -q " inet $ip/" || ip addr add "$ip/32" dev lo
}

# drop_node_ip removes the address ensure_node_ip made.
drop_node_ip() {
  [[ -n "${PODSECRETS_E2E_NODE_IP:-}" ]] && return 0
  ip addr del "$(node_ip)/32" dev lo 2>/dev/null || true
}

# pid_alive NAME: true when $E2E_STATE/pids/NAME.pid names a live process.
pid_alive() {
  local f="$E2E_STATE/pids/$1.pid" pid
  [[ -f $f ]] || return 1
  pid="$(cat "$f")"
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

# start_daemon NAME CMD...: starts CMD in the background (own session), logs to
# $E2E_STATE/logs/NAME.log, pid in $E2E_STATE/pids/NAME.pid. No-op when already running.
start_daemon() {
  local name="$1"; shift
  if pid_alive "$name"; then
    log "$name already running (pid $(cat "$E2E_STATE/pids/$name.pid"))"
    return 0
  fi
  mkdir -p "$E2E_STATE/logs" "$E2E_STATE/pids"
  log "starting $name"
  # Daemons outlive their caller: they must not keep its descriptors open,
  # the cluster lock (fd 9) or a lock the caller's caller holds (flock FILE
  # e2e.sh ...), which they would hold until the cluster goes down.
  (close_fds; exec setsid "$@" </dev/null >>"$E2E_STATE/logs/$name.log" 2>&1) &
  echo $! >"$E2E_STATE/pids/$name.pid"
}

# close_fds closes every descriptor of this shell above stderr.
close_fds() {
  local fd
  for fd in $(ls "/proc/$BASHPID/fd"); do
    if (( fd > 2 )); then eval "exec $fd>&-"; fi
  done
}

# stop_daemons TIMEOUT NAME...: SIGTERM to all of them at once, wait up to TIMEOUT
# seconds for all to exit, then SIGKILL the rest.
stop_daemons() {
  local timeout="$1" name pid i alive
  shift
  local -A pids=()
  for name in "$@"; do
    local f="$E2E_STATE/pids/$name.pid"
    [[ -f $f ]] || continue
    pid="$(cat "$f")"
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
      log "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      pids[$name]=$pid
    else
      rm -f "$f"
    fi
  done
  for ((i = 0; i < timeout * 10; i++)); do
    alive=0
    for name in "${!pids[@]}"; do kill -0 "${pids[$name]}" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for name in "${!pids[@]}"; do
    if kill -0 "${pids[$name]}" 2>/dev/null; then
      warn "$name did not stop in ${timeout}s, killing"
      kill -KILL "${pids[$name]}" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do kill -0 "${pids[$name]}" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$E2E_STATE/pids/$name.pid"
  done
}
stop_daemon() { stop_daemons "${2:-15}" "$1"; }

# wait_for DESCRIPTION TIMEOUT_SECONDS CMD...: retries CMD every 0.2s.
wait_for() {
  local what="$1" timeout="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      die "timed out after ${timeout}s waiting for $what"
    fi
    sleep 0.2
  done
}

# cmdline PID: the process's command line, arguments joined by spaces (plus a trailing space).
cmdline() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true; }
# (pipefail caveat: `cmd | grep -q` fails when cmd gets SIGPIPE; these scripts capture output first.)
# (busybox-static 1.35 wget segfaults with -T: use timeout(1) instead)
kubelet_healthy() { [[ "$(timeout 3 busybox wget -q -O- http://127.0.0.1:10248/healthz 2>/dev/null)" == ok ]]; }
kctl() { "$E2E_BIN/kubectl" --kubeconfig "$E2E_KUBECONFIG" "$@"; }
ctr_k8s() { ctr --address "$E2E_CONTAINERD_SOCK" -n k8s.io "$@"; }
