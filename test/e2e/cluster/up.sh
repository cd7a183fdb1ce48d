#!/usr/bin/env bash
# Starts a real single-node Kubernetes on this machine: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, containerd (+ bridge CNI) and kubelet.
# Waits until the node is Ready and the default ServiceAccount exists, then prints
# the admin kubeconfig path on stdout. Idempotent: running daemons are left alone.
#
# Needs: install.sh and build.sh done. Environment (all optional):
#   PODSECRETS_E2E_STATE      state dir (certs, kubeconfigs, logs/, pids/, etcd, containerd)
#                             default /var/run/podsecrets-e2e
#   PODSECRETS_E2E_CACHE      binaries and images from build.sh, default /var/cache/podsecrets-e2e
#   PODSECRETS_E2E_NODE_NAME  default podsecrets-node
#   PODSECRETS_E2E_NODE_IP    default 10.245.255.1, which up.sh adds to lo
#   PODSECRETS_E2E_REGION     value of the node's topology.kubernetes.io/region label, default us-east-1
#   PODSECRETS_E2E_TIMEOUT    seconds to wait for each step, default 120
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_root
lock_cluster
start_time=$SECONDS
timeout="${PODSECRETS_E2E_TIMEOUT:-120}"
ensure_node_ip
NODE_IP="$(node_ip)"
NODE="$E2E_NODE_NAME"

for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
  [[ -x "$E2E_BIN/$b" ]] || die "$E2E_BIN/$b missing: run test/e2e/cluster/build.sh"
done
for i in pause busybox; do
  [[ -f "$E2E_IMAGES/$i.tar" ]] || die "$E2E_IMAGES/$i.tar missing: run test/e2e/cluster/build.sh"
done
for b in etcd containerd containerd-shim-runc-v2 runc ctr openssl iptables; do
  command -v "$b" >/dev/null 2>&1 || die "$b missing: run test/e2e/cluster/install.sh"
done
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] ||
  die "CNI plugins missing in /usr/lib/cni: run test/e2e/cluster/install.sh"

log "node $NODE at $NODE_IP, kubernetes $E2E_KUBE_VERSION, state in $E2E_STATE"
S="$E2E_STATE"
PKI="$S/pki"
mkdir -p "$S"/{pki,logs,pids,etcd,cni/net.d,cni/ipam,containerd,kubelet} "$S/cni/cache"
chmod 0700 "$S/pki" "$S/etcd"

# ---------------------------------------------------------------------------
# What existed before the first up.sh: down.sh removes only what we created.
if [[ ! -f "$S/preexisting" ]]; then
  for d in "${E2E_HOST_DIRS[@]}"; do
    [[ -e $d ]] && echo "$d"
  done >"$S/preexisting.tmp" || true
  mv "$S/preexisting.tmp" "$S/preexisting"
fi
# nftables tables that exist before kubelet/iptables create filter/nat/mangle (down.sh drops new empty ones)
if [[ ! -f "$S/nft-tables.before" ]]; then
  { command -v nft >/dev/null 2>&1 && nft list tables 2>/dev/null || true; } >"$S/nft-tables.before"
fi
# Sysctls that kubelet (and the bridge CNI plugin) change; down.sh restores them.
if [[ ! -f "$S/sysctl.saved" ]]; then
  # ip_forward first: writing it resets every interface's forwarding and all.accept_redirects.
  for k in net.ipv4.ip_forward net.ipv4.conf.all.forwarding net.ipv4.conf.default.forwarding \
    net.ipv4.conf.all.accept_redirects net.ipv6.conf.all.forwarding \
    vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops \
    kernel.keys.root_maxkeys kernel.keys.root_maxbytes; do
    v="$(sysctl -n "$k" 2>/dev/null)" && echo "$k=$v"
  done >"$S/sysctl.saved.tmp" || true
  mv "$S/sysctl.saved.tmp" "$S/sysctl.saved"
fi

# ---------------------------------------------------------------------------
# PKI (regenerated when the node IP or name changes)
gen_cert() { # name subject sans(comma list or "") ekus [ca]
  local name="$1" subj="$2" sans="$3" eku="$4"
  [[ -f "$PKI/$name.crt" ]] && return 0
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [[ -n $sans ]] && echo "subjectAltName=$sans"
  } >"$PKI/$name.ext"
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}
pki_id="$NODE $NODE_IP $(hostname)"
if [[ "$(cat "$PKI/identity" 2>/dev/null)" != "$pki_id" ]]; then
  pid_alive kube-apiserver && die "node identity changed ($pki_id) while the cluster runs: run down.sh first"
  log "generating certificates"
  rm -f "$PKI"/*
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=podsecrets-e2e-ca" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI/ca.crt" 2>/dev/null
  gen_cert apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,IP:$NODE_IP,IP:$E2E_KUBERNETES_SVC_IP,DNS:localhost,DNS:$NODE,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
    serverAuth
  gen_cert admin "/O=system:masters/CN=kubernetes-admin" "" clientAuth
  gen_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "" clientAuth
  gen_cert kubelet-client "/O=system:nodes/CN=system:node:$NODE" "" clientAuth
  gen_cert kubelet-serving "/CN=$NODE" "IP:$NODE_IP,IP:127.0.0.1,DNS:$NODE,DNS:$(hostname),DNS:localhost" serverAuth
  gen_cert controller-manager "/CN=system:kube-controller-manager" "" clientAuth
  gen_cert scheduler "/CN=system:kube-scheduler" "" clientAuth
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  chmod 0600 "$PKI"/*.key
  echo "$pki_id" >"$PKI/identity"
fi

write_kubeconfig() { # file cert-name
  local file="$1" name="$2"
  cat >"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: podsecrets-e2e
  cluster:
    server: https://$NODE_IP:$E2E_APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$name.crt")
    client-key-data: $(base64 -w0 "$PKI/$name.key")
contexts:
- name: podsecrets-e2e
  context:
    cluster: podsecrets-e2e
    user: $name
    namespace: default
current-context: podsecrets-e2e
EOF
  chmod 0600 "$file.tmp"
  mv "$file.tmp" "$file"
}
write_kubeconfig "$E2E_KUBECONFIG" admin
write_kubeconfig "$S/kubelet.kubeconfig" kubelet-client
write_kubeconfig "$S/controller-manager.kubeconfig" controller-manager
write_kubeconfig "$S/scheduler.kubeconfig" scheduler

# ---------------------------------------------------------------------------
# etcd
start_daemon etcd etcd --name podsecrets-e2e --data-dir "$S/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster podsecrets-e2e=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
  --quota-backend-bytes 2147483648 --log-level warn
etcd_healthy() { [[ "$(timeout 3 busybox wget -q -O- http://127.0.0.1:2379/health 2>/dev/null)" == *'"health":"true"'* ]]; }
wait_for "etcd health" "$timeout" etcd_healthy

# ---------------------------------------------------------------------------
# kube-apiserver
start_daemon kube-apiserver "$E2E_BIN/kube-apiserver" \
  --etcd-servers=http://127.0.0.1:2379 \
  --bind-address="$NODE_IP" --secure-port="$E2E_APISERVER_PORT" --advertise-address="$NODE_IP" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" \
  --requestheader-client-ca-file="$PKI/ca.crt" --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --service-cluster-ip-range="$E2E_SERVICE_CIDR" \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$PKI/ca.crt" \
  --kubelet-preferred-address-types=InternalIP \
  --allow-privileged=true --profiling=false -v=1
wait_for "kube-apiserver /readyz" "$timeout" kctl get --raw /readyz

# ---------------------------------------------------------------------------
# kube-controller-manager and kube-scheduler
start_daemon kube-controller-manager "$E2E_BIN/kube-controller-manager" \
  --kubeconfig="$S/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$S/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$S/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --cluster-name=podsecrets-e2e \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --use-service-account-credentials=true \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --service-cluster-ip-range="$E2E_SERVICE_CIDR" -v=1
start_daemon kube-scheduler "$E2E_BIN/kube-scheduler" \
  --kubeconfig="$S/scheduler.kubeconfig" \
  --authentication-kubeconfig="$S/scheduler.kubeconfig" \
  --authorization-kubeconfig="$S/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false -v=1

# ---------------------------------------------------------------------------
# iptables: the kubernetes Service (10.96.0.1:443) reaches the API server without
# kube-proxy, and pods can reach only the node and each other (no traffic leaves the machine).
ipt_hook() { # table chain-to-hook
  iptables -w -t "$1" -C "$2" -j "$E2E_CHAIN" 2>/dev/null || iptables -w -t "$1" -I "$2" 1 -j "$E2E_CHAIN"
}
ipt_chain() { # table: create (or flush) our chain
  iptables -w -t "$1" -N "$E2E_CHAIN" 2>/dev/null || iptables -w -t "$1" -F "$E2E_CHAIN"
}
log "iptables: $E2E_KUBERNETES_SVC_IP:443 -> $NODE_IP:$E2E_APISERVER_PORT, pod egress confined to the node"
ipt_chain nat
iptables -w -t nat -A "$E2E_CHAIN" -d "$E2E_KUBERNETES_SVC_IP/32" -p tcp --dport 443 \
  -j DNAT --to-destination "$NODE_IP:$E2E_APISERVER_PORT"
ipt_hook nat PREROUTING
ipt_hook nat OUTPUT
ipt_chain filter
iptables -w -A "$E2E_CHAIN" -d "$E2E_SERVICE_CIDR" -j REJECT
iptables -w -A "$E2E_CHAIN" -s "$E2E_POD_CIDR" ! -o "$E2E_BRIDGE" -j REJECT
ipt_hook filter FORWARD
ipt_hook filter OUTPUT

# ---------------------------------------------------------------------------
# CNI: one bridge, host-local IPAM; loopback is added by containerd itself.
cat >"$S/cni/net.d/10-podsecrets.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "podsecrets-e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$E2E_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$S/cni/ipam",
        "ranges": [[{"subnet": "$E2E_POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

# ---------------------------------------------------------------------------
# containerd, with its root, state, socket and runc root under the state dir.
C="$S/containerd"
mkdir -p "$C/root" "$C/state" "$C/runc" "$C/opt"
cat >"$C/config.toml" <<EOF
version = 2
root = "$C/root"
state = "$C/state"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$E2E_CONTAINERD_SOCK"

[plugins."io.containerd.internal.v1.opt"]
  path = "$C/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$E2E_PAUSE_IMAGE"
  # No CAP_SYS_RESOURCE on these VMs: negative oom_score_adj would make runc fail.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$S/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$C/runc"
        SystemdCgroup = false
EOF
start_daemon containerd containerd --config "$C/config.toml" --log-level warn
wait_for "containerd" "$timeout" ctr --address "$E2E_CONTAINERD_SOCK" version

# images (idempotent: same tarball, same digest)
for i in pause busybox; do
  log "importing $E2E_IMAGES/$i.tar"
  ctr_k8s images import "$E2E_IMAGES/$i.tar" >/dev/null
done
images="$(ctr_k8s images ls -q)"
for i in "$E2E_PAUSE_IMAGE" "$E2E_BUSYBOX_IMAGE"; do
  grep -qxF "$i" <<<"$images" || die "$i not in containerd after import"
done

# ---------------------------------------------------------------------------
# kubelet root: a shared mount, so mounts made by a CSI driver container with
# Bidirectional propagation show up on the host and in other pods.
mkdir -p "$E2E_KUBELET_ROOT"
if ! mountpoint -q "$E2E_KUBELET_ROOT"; then
  log "bind-mounting $E2E_KUBELET_ROOT on itself (rshared)"
  mount --bind "$E2E_KUBELET_ROOT" "$E2E_KUBELET_ROOT"
fi
mount --make-rshared "$E2E_KUBELET_ROOT"

# syncFrequency: kubelet re-syncs each pod every syncFrequency plus up to
# 50% jitter (pod_workers.go), and each sync marks the pod's volumes of a
# requiresRepublish CSI driver for remount (WaitForAttachAndMount ->
# ReprocessPod), which is what calls NodePublishVolume again. The default 1m
# makes a rotation e2e test wait 60-90 s per republish; 10s makes it 10-15 s.
# The cost: kubelet syncs every pod six times as often, nothing on a node of
# a few test pods. (It also sets the resync of kubelet's watching ConfigMap
# and Secret managers; its sync-loop health check keeps its 5 min floor.)
kubelet_config="$S/kubelet/config.yaml"
cat >"$kubelet_config.new" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
syncFrequency: 10s
containerRuntimeEndpoint: unix://$E2E_CONTAINERD_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $PKI/ca.crt
authorization:
  mode: Webhook
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
registerNode: true
EOF
# A kubelet left running by an earlier up.sh would keep its old config (the
# daemons are otherwise left alone): restart it when the config changed.
# Running pods and their mounts survive a kubelet restart.
if pid_alive kubelet && ! cmp -s "$kubelet_config.new" "$kubelet_config"; then
  log "kubelet config changed: restarting kubelet"
  stop_daemon kubelet 30
fi
mv "$kubelet_config.new" "$kubelet_config"
start_daemon kubelet "$E2E_BIN/kubelet" \
  --config="$kubelet_config" \
  --kubeconfig="$S/kubelet.kubeconfig" \
  --root-dir="$E2E_KUBELET_ROOT" --cert-dir="$S/kubelet/pki" \
  --hostname-override="$NODE" --node-ip="$NODE_IP" \
  --node-labels="topology.kubernetes.io/region=$E2E_REGION" \
  -v=2

# ---------------------------------------------------------------------------
log "waiting for node $NODE to be Ready"
node_ready() {
  [[ "$(kctl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}
if ! (wait_for "node $NODE Ready" "$timeout" node_ready); then
  tail -n 30 "$S/logs/kubelet.log" >&2 || true
  die "node $NODE not Ready (logs in $S/logs)"
fi
kctl label node "$NODE" --overwrite "topology.kubernetes.io/region=$E2E_REGION" >/dev/null
log "waiting for the default ServiceAccount and kube-root-ca.crt"
wait_for "ServiceAccount default/default" "$timeout" kctl -n default get serviceaccount default
wait_for "ConfigMap default/kube-root-ca.crt" "$timeout" kctl -n default get configmap kube-root-ca.crt

log "cluster up in $((SECONDS - start_time))s; kubeconfig: $E2E_KUBECONFIG (source test/e2e/cluster/env.sh)"
echo "$E2E_KUBECONFIG"
