#!/usr/bin/env bash
# Tears the e2e cluster down completely; safe to run when nothing is up.
#  1. deletes workloads and pods while kubelet still runs (so CSI NodeUnpublishVolume happens):
#     first pods not owned by a DaemonSet and not labelled podsecrets.dev/e2e-delete-last
#     (volume consumers), then everything else
#  2. stops scheduler, controller-manager, kubelet; kills containers via ctr, then shims by PID
#  3. stops containerd, kube-apiserver, etcd
#     (and any other process registered in $PODSECRETS_E2E_STATE/pids/NAME.pid)
#  4. unmounts everything under /var/lib/kubelet and the state dir (deepest first)
#  5. removes the CNI bridge/veths, our iptables chains and kubelet's canary chains,
#     restores the sysctls, removes the kubepods cgroups, state dir and the dirs up.sh created
# Environment: PODSECRETS_E2E_STATE, PODSECRETS_E2E_KEEP_LOGS=DIR (copy daemon logs there first),
#   PODSECRETS_E2E_DOWN_TIMEOUT (seconds for pod deletion, default 90),
#   PODSECRETS_E2E_DOWN_GRACE (termination grace seconds for the pods, default 2; empty = the pods' own).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_root
lock_cluster
start_time=$SECONDS
S="$E2E_STATE"
C="$S/containerd"
del_timeout="${PODSECRETS_E2E_DOWN_TIMEOUT:-90}"
# termination grace for pods deleted here ("" = each pod's own terminationGracePeriodSeconds)
grace=()
[[ -n "${PODSECRETS_E2E_DOWN_GRACE-2}" ]] && grace=(--grace-period="${PODSECRETS_E2E_DOWN_GRACE-2}")

# ---------------------------------------------------------------------------
# 1. pods, while the API server and kubelet still run
if [[ -x "$E2E_BIN/kubectl" && -f "$E2E_KUBECONFIG" ]] && pid_alive kube-apiserver &&
  kctl get --raw /readyz >/dev/null 2>&1; then
  if kubelet_healthy; then
    log "deleting workloads and pods (kubelet unmounts their volumes)"
    kctl delete deployments,replicasets,statefulsets,jobs,cronjobs,replicationcontrollers --all -A \
      --wait=false >/dev/null 2>&1 || true
    consumers="$(kctl get pods -A -o go-template='{{range .items}}{{$ds := false}}{{range .metadata.ownerReferences}}{{if eq .kind "DaemonSet"}}{{$ds = true}}{{end}}{{end}}{{if not $ds}}{{.metadata.namespace}}/{{.metadata.name}}{{"\n"}}{{end}}{{end}}' 2>/dev/null || true)"
    # pods labelled podsecrets.dev/e2e-delete-last (e.g. a CSI driver run as a bare pod) go last
    last="$(kctl get pods -A -l podsecrets.dev/e2e-delete-last -o go-template='{{range .items}}{{.metadata.namespace}}/{{.metadata.name}}{{"\n"}}{{end}}' 2>/dev/null || true)"
    if [[ -n $last && -n $consumers ]]; then
      consumers="$(grep -vxF -f <(printf '%s\n' "$last") <<<"$consumers" || true)"
    fi
    if [[ -n $consumers ]]; then
      while IFS=/ read -r ns name; do
        kctl -n "$ns" delete pod "$name" "${grace[@]}" --wait=false >/dev/null 2>&1 || true
      done <<<"$consumers"
      # one deadline for all of them
      deadline=$((SECONDS + del_timeout))
      while IFS=/ read -r ns name; do
        left=$((deadline - SECONDS))
        ((left > 0)) || left=1
        kctl -n "$ns" wait --for=delete "pod/$name" --timeout="${left}s" >/dev/null 2>&1 ||
          warn "pod $ns/$name still there after ${del_timeout}s"
      done <<<"$consumers"
    fi
    kctl delete daemonsets --all -A --wait=false >/dev/null 2>&1 || true
    kctl delete pods --all -A "${grace[@]}" --timeout="${del_timeout}s" >/dev/null 2>&1 || warn "some pods did not go away"
  else
    log "kubelet is not healthy: pods are not deleted through the API (containers are killed below)"
  fi
fi

# ---------------------------------------------------------------------------
# 2. control loops and kubelet, then containers
stop_daemons 30 kube-scheduler kube-controller-manager kubelet

if pid_alive containerd; then
  tasks="$(ctr_k8s tasks ls -q 2>/dev/null || true)"
  if [[ -n $tasks ]]; then
    log "killing $(wc -l <<<"$tasks") containers through ctr"
    for t in $tasks; do ctr_k8s tasks kill --all -s SIGKILL "$t" >/dev/null 2>&1 || true; done
    for t in $tasks; do
      for _ in $(seq 50); do
        st="$(ctr_k8s tasks ls 2>/dev/null | awk -v id="$t" '$1 == id {print $3}')"
        [[ -z $st || $st == STOPPED ]] && break
        sleep 0.1
      done
      ctr_k8s tasks delete --force "$t" >/dev/null 2>&1 || true
    done
  fi
fi

# shims ignore SIGTERM: find ours (their -address is our containerd socket) and SIGKILL them by PID
shim_pids() {
  local p
  for p in $(pgrep -f '^/usr/bin/containerd-shim' 2>/dev/null || true); do
    [[ "$(cmdline "$p")" == *" -address $E2E_CONTAINERD_SOCK "* ]] && echo "$p"
  done
  return 0
}
stop_daemon containerd 20
pids="$(shim_pids)"
if [[ -n $pids ]]; then
  log "killing containerd shims: $(echo $pids)"
  kill -KILL $pids 2>/dev/null || true
fi
# containers whose shim is gone: runc still knows them
if [[ -d "$C/runc" ]]; then
  for ns in "$C/runc"/*/; do
    [[ -d $ns ]] || continue
    for id in $(runc --root "$ns" list -q 2>/dev/null || true); do
      runc --root "$ns" kill "$id" KILL >/dev/null 2>&1 || true
      runc --root "$ns" delete --force "$id" >/dev/null 2>&1 || true
    done
  done
fi

# ---------------------------------------------------------------------------
# 3. control plane
stop_daemon kube-apiserver 20
stop_daemon etcd 20
# any other process a test registered in $S/pids/NAME.pid (e.g. a fake AWS endpoint)
for f in "$S"/pids/*.pid; do
  [[ -f $f ]] || continue
  stop_daemon "$(basename "$f" .pid)" 10
done

# any process still running from our binaries (a daemon whose pid file was lost)
for exe in "$E2E_BIN/kubelet" "$E2E_BIN/kube-apiserver" "$E2E_BIN/kube-controller-manager" "$E2E_BIN/kube-scheduler"; do
  for p in $(pgrep -f "^$exe( |$)" 2>/dev/null || true); do
    warn "killing stray $(basename "$exe") pid $p"
    kill -KILL "$p" 2>/dev/null || true
  done
done
for p in $(pgrep -x etcd 2>/dev/null || true) $(pgrep -x containerd 2>/dev/null || true); do
  if [[ "$(cmdline "$p")" == *"$S/"* ]]; then
    warn "killing stray $(cat /proc/$p/comm 2>/dev/null) pid $p"
    kill -KILL "$p" 2>/dev/null || true
  fi
done
sleep 0.2

# ---------------------------------------------------------------------------
# 4. mounts, deepest first
mounts_under() { # prefixes... (symlinks resolved: /var/run is /run)
  local mp pfx canon=()
  for pfx in "$@"; do canon+=("$(realpath -m "$pfx")"); done
  set -- "${canon[@]}"
  while read -r _ _ _ _ mp _; do
    mp="$(printf '%b' "$mp")" # mountinfo escapes spaces etc. as \040
    for pfx in "$@"; do
      if [[ $mp == "$pfx" || $mp == "$pfx"/* ]]; then echo "$mp"; break; fi
    done
  done </proc/self/mountinfo | awk '{print length($0) " " $0}' | sort -rn | cut -d' ' -f2-
}
prefixes=("$E2E_KUBELET_ROOT" "$S")
grep -qx /run/containerd "$S/preexisting" 2>/dev/null || prefixes+=(/run/containerd)
for round in 1 2 3 4 5; do
  mps="$(mounts_under "${prefixes[@]}")"
  [[ -z $mps ]] && break
  ((round == 1)) && log "unmounting $(wc -l <<<"$mps") mounts"
  while IFS= read -r mp; do
    umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
  done <<<"$mps"
done
[[ -z "$(mounts_under "${prefixes[@]}")" ]] || warn "mounts left: $(mounts_under "${prefixes[@]}" | tr '\n' ' ')"

# ---------------------------------------------------------------------------
# 5. network
if ip link show "$E2E_BRIDGE" >/dev/null 2>&1; then
  for v in $(ip -o link show master "$E2E_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link delete "$v" 2>/dev/null || true
  done
  log "deleting bridge $E2E_BRIDGE"
  ip link delete "$E2E_BRIDGE" 2>/dev/null || true
fi
log "removing the node's address $(node_ip) from lo"
drop_node_ip
ipt_drop_chain() { # cmd table chain [hooked-from...]
  local cmd="$1" t="$2" ch="$3" h
  shift 3
  $cmd -w -t "$t" -S "$ch" >/dev/null 2>&1 || return 0
  for h in "$@"; do
    while $cmd -w -t "$t" -D "$h" -j "$ch" 2>/dev/null; do :; done
  done
  $cmd -w -t "$t" -F "$ch" 2>/dev/null || true
  $cmd -w -t "$t" -X "$ch" 2>/dev/null || warn "$cmd -t $t: chain $ch still referenced"
}
if command -v iptables >/dev/null 2>&1; then
  ipt_drop_chain iptables nat "$E2E_CHAIN" PREROUTING OUTPUT
  ipt_drop_chain iptables filter "$E2E_CHAIN" FORWARD OUTPUT
  # portmap plugin chains (only exist if a pod used hostPort)
  for t in nat filter; do
    for ch in $(iptables -w -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^CNI-(DN|HOSTPORT)-/ {print $2}'); do
      ipt_drop_chain iptables "$t" "$ch" PREROUTING OUTPUT POSTROUTING FORWARD CNI-HOSTPORT-DNAT CNI-HOSTPORT-MASQ
    done
  done
  for ch in $(iptables -w -t nat -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^CNI-/ {print $2}'); do
    ipt_drop_chain iptables nat "$ch" PREROUTING OUTPUT POSTROUTING
  done
  # kubelet's canary/hint chains (it owns no other iptables rules since 1.28)
  for cmd in iptables ip6tables; do
    command -v "$cmd" >/dev/null 2>&1 || continue
    for t in mangle nat filter; do
      ipt_drop_chain "$cmd" "$t" KUBE-KUBELET-CANARY
      ipt_drop_chain "$cmd" "$t" KUBE-IPTABLES-HINT
      ipt_drop_chain "$cmd" "$t" KUBE-FIREWALL INPUT OUTPUT
    done
  done
fi

# nftables tables that iptables-nft created for us (only when empty: nobody else uses them)
if command -v nft >/dev/null 2>&1 && [[ -f "$S/nft-tables.before" ]]; then
  while read -r _ fam tbl; do
    [[ -n $tbl ]] || continue
    grep -qxF "table $fam $tbl" "$S/nft-tables.before" && continue
    case $fam in ip) save=iptables-save ;; ip6) save=ip6tables-save ;; *) continue ;; esac
    # empty = no rule and no chain beyond the built-in ones
    rules="$($save -t "$tbl" 2>/dev/null)" || continue
    if ! grep -qE '^-A |^:[^ ]+ - ' <<<"$rules"; then
      nft delete table "$fam" "$tbl" 2>/dev/null || true
    fi
  done < <(nft list tables 2>/dev/null)
fi

# sysctls
if [[ -f "$S/sysctl.saved" ]]; then
  while IFS='=' read -r k v; do
    [[ -n $k ]] || continue
    if [[ "$(sysctl -n "$k" 2>/dev/null)" != "$v" ]]; then
      sysctl -q -w "$k=$v" >/dev/null 2>&1 || warn "cannot restore $k=$v"
    fi
  done <"$S/sysctl.saved"
  log "sysctls restored"
fi

# cgroups left by kubelet (cgroupfs driver): kubepods, deepest first
for base in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice /sys/fs/cgroup/kubepods /sys/fs/cgroup/kubepods.slice; do
  [[ -d $base ]] || continue
  find "$base" -depth -type d -exec rmdir {} + 2>/dev/null || true
  [[ -d $base ]] && warn "cgroup $base not removable (processes left?)"
done

# ---------------------------------------------------------------------------
# 6. files
if [[ -d $S ]]; then
  if [[ -n "${PODSECRETS_E2E_KEEP_LOGS:-}" && -d "$S/logs" ]]; then
    mkdir -p "$PODSECRETS_E2E_KEEP_LOGS"
    cp -a "$S/logs/." "$PODSECRETS_E2E_KEEP_LOGS/"
    log "daemon logs copied to $PODSECRETS_E2E_KEEP_LOGS"
  fi
  created=()
  for d in "${E2E_HOST_DIRS[@]}"; do
    grep -qxF "$d" "$S/preexisting" 2>/dev/null || created+=("$d")
  done
  if [[ ! -f "$S/preexisting" ]]; then
    created=("$E2E_KUBELET_ROOT" /var/log/pods /var/log/containers) # state from an interrupted up.sh
  fi
  for d in "${created[@]}"; do
    [[ -e $d ]] || continue
    if [[ -n "$(mounts_under "$d")" ]]; then warn "not removing $d: still has mounts"; continue; fi
    rm -rf --one-file-system "$d"
  done
  if [[ -z "$(mounts_under "$S")" ]]; then
    rm -rf --one-file-system "$S"
  else
    warn "not removing $S: still has mounts"
  fi
fi

log "cluster down in $((SECONDS - start_time))s"
