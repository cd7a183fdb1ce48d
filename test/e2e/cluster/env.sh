# Source this file (bash) to use the e2e cluster from tests, the Makefile or a shell:
#   source test/e2e/cluster/env.sh
# Exports (nothing is started, nothing needs root):
#   PODSECRETS_E2E_STATE, PODSECRETS_E2E_CACHE  state and cache dirs
#   KUBECONFIG           admin kubeconfig written by up.sh (O=system:masters)
#   KUBE_VERSION         e.g. v1.36.3;  KUBE_BIN: dir with the five binaries (also put first on PATH)
#   KUBECTL KUBELET KUBE_APISERVER KUBE_CONTROLLER_MANAGER KUBE_SCHEDULER   binary paths
#   NODE_NAME NODE_IP    the node (NODE_IP: an address up.sh adds to lo); API_SERVER=https://NODE_IP:6443
#   KUBELET_ROOT         /var/lib/kubelet (rshared);  E2E_LOGS: daemon logs dir
#   CONTAINERD_ADDRESS CONTAINERD_NAMESPACE=k8s.io  so plain `ctr images ls` talks to our containerd
#   E2E_IMAGES           dir with pause.tar and busybox.tar
#   E2E_PAUSE_IMAGE=docker.io/local/pause:e2e  E2E_BUSYBOX_IMAGE=docker.io/local/busybox:e2e
#   E2E_POD_CIDR E2E_SERVICE_CIDR E2E_REGION
# Does not change shell options of the caller.
# Only variables are imported: lib.sh is evaluated in a child bash.
__e2e_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
__e2e_vars="$(bash -c '
  set -eu
  source "$1/lib.sh"
  ip="$(node_ip)"
  e() { printf "export %s=%q\n" "$1" "$2"; }
  e PODSECRETS_E2E_STATE "$E2E_STATE"; e PODSECRETS_E2E_CACHE "$E2E_CACHE"
  e KUBECONFIG "$E2E_KUBECONFIG"
  e KUBE_VERSION "$E2E_KUBE_VERSION"; e KUBE_BIN "$E2E_BIN"
  e KUBECTL "$E2E_BIN/kubectl"; e KUBELET "$E2E_BIN/kubelet"; e KUBE_APISERVER "$E2E_BIN/kube-apiserver"
  e KUBE_CONTROLLER_MANAGER "$E2E_BIN/kube-controller-manager"; e KUBE_SCHEDULER "$E2E_BIN/kube-scheduler"
  e NODE_NAME "$E2E_NODE_NAME"; e NODE_IP "$ip"; e API_SERVER "https://$ip:$E2E_APISERVER_PORT"
  e KUBELET_ROOT "$E2E_KUBELET_ROOT"; e E2E_LOGS "$E2E_STATE/logs"
  e CONTAINERD_ADDRESS "$E2E_CONTAINERD_SOCK"; e CONTAINERD_NAMESPACE k8s.io
  e E2E_IMAGES "$E2E_IMAGES"; e E2E_PAUSE_IMAGE "$E2E_PAUSE_IMAGE"; e E2E_BUSYBOX_IMAGE "$E2E_BUSYBOX_IMAGE"
  e E2E_POD_CIDR "$E2E_POD_CIDR"; e E2E_SERVICE_CIDR "$E2E_SERVICE_CIDR"; e E2E_REGION "$E2E_REGION"
' env.sh "$__e2e_here")" && eval "$__e2e_vars" &&
  case ":$PATH:" in *":$KUBE_BIN:"*) ;; *) export PATH="$KUBE_BIN:$PATH" ;; esac
unset __e2e_here __e2e_vars
