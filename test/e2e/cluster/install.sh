#!/usr/bin/env bash
# Installs the host packages the e2e cluster needs (Debian 12), skipping what is present.
# Idempotent; needs root. Go must already be installed (/usr/local/go on our machines).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_root

# package -> a file it provides (used to skip already-installed packages cheaply)
pkgs=(
  etcd-server:/usr/bin/etcd
  containerd:/usr/bin/containerd
  runc:/usr/sbin/runc
  containernetworking-plugins:/usr/lib/cni/bridge
  busybox-static:/bin/busybox
  openssl:/usr/bin/openssl
  iproute2:/sbin/ip
  iptables:/usr/sbin/iptables
  util-linux:/usr/bin/nsenter
  procps:/usr/bin/pgrep
  kmod:/sbin/modprobe
  conntrack:/usr/sbin/conntrack
  nftables:/usr/sbin/nft
  curl:/usr/bin/curl
)

missing=()
for entry in "${pkgs[@]}"; do
  pkg="${entry%%:*}" file="${entry#*:}"
  if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" == "install ok installed" && -e "$file" ]]; then
    continue
  fi
  missing+=("$pkg")
done

if [[ ${#missing[@]} -gt 0 ]]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps sysvinit-style postinst scripts from starting etcd/containerd.
  policy=/usr/sbin/policy-rc.d created_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
  fi
  rc=0
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  [[ $created_policy == 1 ]] && rm -f "$policy"
  [[ $rc == 0 ]] || die "apt-get install failed ($rc)"
else
  log "host packages already installed"
fi

# Our scripts start etcd and containerd themselves: make sure no package-started copy runs.
if [[ "$(ps -p 1 -o comm= 2>/dev/null)" == systemd ]]; then
  for unit in etcd.service containerd.service; do
    if systemctl list-unit-files "$unit" >/dev/null 2>&1; then
      log "disabling and stopping $unit (systemd)"
      systemctl disable --now "$unit" >/dev/null 2>&1 || true
    fi
  done
else
  log "PID 1 is $(ps -p 1 -o comm= 2>/dev/null || echo '?'), not systemd: no units to disable"
fi
# A package postinst may have started daemons directly (no systemd, no policy-rc.d honoured).
for exe in /usr/bin/etcd /usr/bin/containerd; do
  for pid in $(pgrep -x "$(basename "$exe")" 2>/dev/null || true); do
    # Only kill instances that were not started by our up.sh (those carry our state dir).
    if [[ "$(cmdline "$pid")" != *"$E2E_STATE"* ]]; then
      log "stopping package-started $(basename "$exe") (pid $pid)"
      kill "$pid" 2>/dev/null || true
    fi
  done
done

# Go (from /usr/local/go); Debian's golang is too old for k8s.io/kubernetes.
if ! command -v go >/dev/null 2>&1; then
  die "go not found in PATH (and not at /usr/local/go/bin). Install Go (the version in test/e2e/kube/go.mod or newer) under /usr/local/go; Debian's golang package is too old."
fi
have="$(go env GOVERSION)"
log "go: $have ($(command -v go))"
for b in etcd containerd runc ctr openssl iptables ip; do
  command -v "$b" >/dev/null 2>&1 || die "$b missing after install"
done
log "install done"
