#!/usr/bin/env bash
# Lifecycle of the real-node environment that `make e2e` and `make demo` use:
#   e2e.sh up     install packages, build Kubernetes (cached) and podsecrets, start a one-node
#                 cluster, the fake AWS store on the host, and podsecrets from deploy/
#   e2e.sh test   run the Go e2e scenarios (test/e2e, build tag e2e) against it
#   e2e.sh down   stop everything and restore the host
# Progress lines start with "==>". Run as root.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cluster="$here/cluster"
source "$cluster/lib.sh"
AWS_PORT="${PODSECRETS_E2E_AWS_PORT:-4566}"
IMAGE=docker.io/local/podsecrets:e2e

aws_pidfile() { echo "$E2E_STATE/pids/awsfake.pid"; }

build_image() {
  log "building podsecrets (make build, as the Dockerfile does) and its OCI image"
  local work; work="$(mktemp -d)"
  mkdir -p "$work/rootfs"
  # Also builds rootfs/podsecrets-exec, which pods copy (deploy/examples/exec.yaml).
  make -s -C "$repo" build VERSION=e2e BIN="$work/rootfs/podsecrets"
  (cd "$repo" && go run ./test/e2e/ociimage -rootfs "$work/rootfs" -name "$IMAGE" -o "$work/podsecrets.tar" \
    -entrypoint /podsecrets -cmd driver)
  "$cluster/import-image.sh" "$work/podsecrets.tar"
  rm -rf "$work"
}

start_awsfake() {
  local ip; ip="$(node_ip)"
  local old
  if [[ -f "$(aws_pidfile)" ]] && old="$(cat "$(aws_pidfile)")" && kill "$old" 2>/dev/null; then
    # The new store needs the port the old one holds.
    wait_for "the previous fake store (pid $old) to exit" 10 bash -c "! kill -0 $old"
  fi
  log "starting the fake AWS store on $ip:$AWS_PORT (STS verifies tokens against the cluster's JWKS)"
  (cd "$repo" && go build -o "$E2E_STATE/awsfake" ./test/awsfake)
  (close_fds; exec nohup "$E2E_STATE/awsfake" -addr "$ip:$AWS_PORT" > "$E2E_STATE/logs/awsfake.log" 2>&1) &
  echo $! > "$(aws_pidfile)"
  wait_for "fake AWS store" 30 curl -fsS "http://$ip:$AWS_PORT/_fake/healthz"
  printf '{"jwks":%s}' "$(kctl get --raw /openid/v1/jwks)" |
    curl -fsS -X POST -H 'Content-Type: application/json' --data-binary @- "http://$ip:$AWS_PORT/_fake/seed" >/dev/null
}

deploy_podsecrets() {
  local ip; ip="$(node_ip)"
  log "applying deploy/ through test/e2e/overlay (local image, fake store endpoint)"
  kctl kustomize "$here/overlay" | sed "s#AWS_ENDPOINT_PLACEHOLDER#http://$ip:$AWS_PORT#g" > "$E2E_STATE/podsecrets.yaml"
  kctl apply -f "$E2E_STATE/podsecrets.yaml" >/dev/null
  kctl -n kube-system rollout restart daemonset/podsecrets >/dev/null 2>&1 || true
  kctl -n kube-system rollout status daemonset/podsecrets --timeout=120s
  wait_for "csi.podsecrets.dev registered on the node" 60 \
    bash -c "'$E2E_BIN/kubectl' --kubeconfig '$E2E_KUBECONFIG' get csinode '$E2E_NODE_NAME' -o jsonpath='{.spec.drivers[*].name}' | grep -q csi.podsecrets.dev"
}

cmd_up() {
  need_root
  "$cluster/install.sh"
  "$cluster/build.sh"
  "$cluster/up.sh"
  build_image
  start_awsfake
  deploy_podsecrets
  log "podsecrets is running; KUBECONFIG=$E2E_KUBECONFIG, fake AWS store at http://$(node_ip):$AWS_PORT"
}

cmd_test() {
  need_root
  kctl get --raw /readyz >/dev/null || die "the cluster is not up (run: $0 up)"
  log "running the e2e scenarios"
  (cd "$repo" && KUBECONFIG="$E2E_KUBECONFIG" PODSECRETS_E2E_AWS="http://$(node_ip):$AWS_PORT" \
    PODSECRETS_E2E_BUSYBOX="$E2E_BUSYBOX_IMAGE" PODSECRETS_E2E_STATE="$E2E_STATE" \
    go test -tags e2e -count=1 -timeout 30m -v ./test/e2e/ "$@")
}

cmd_down() {
  need_root
  if [[ -f "$(aws_pidfile)" ]]; then
    kill "$(cat "$(aws_pidfile)")" 2>/dev/null || true
  fi
  "$cluster/down.sh"
}

case "${1:-}" in
  up) cmd_up ;;
  test) shift; cmd_test "$@" ;;
  down) cmd_down ;;
  *) echo "usage: $0 up|test|down" >&2; exit 2 ;;
esac
