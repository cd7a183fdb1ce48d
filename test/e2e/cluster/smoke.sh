#!/usr/bin/env bash
# Smoke test of a running e2e cluster (after up.sh): a busybox pod on the pod network with
# an emptyDir, a busybox DaemonSet, kubectl logs/exec, the kubernetes Service from a pod,
# Bidirectional mount propagation under /var/lib/kubelet, and a ServiceAccount token.
# (busybox nc has no -z and busybox wget cannot complete a TLS handshake with Go's TLS:
# reachability is checked with a plain TCP connect.)
# Leaves nothing behind (namespace podsecrets-smoke is deleted). Prints timings.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_root
ns=podsecrets-smoke
timeout="${PODSECRETS_E2E_TIMEOUT:-120}"
kctl get --raw /readyz >/dev/null || die "cluster is not up (run up.sh)"
kn() { kctl -n "$ns" "$@"; }
cleanup() { kctl delete namespace "$ns" --ignore-not-found --wait=true --timeout=90s >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup
kctl create namespace "$ns" >/dev/null
wait_for "ServiceAccount $ns/default" 30 kn get serviceaccount default

t0=$(date +%s.%N)
kn apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: emptydir
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: $E2E_BUSYBOX_IMAGE
    imagePullPolicy: Never
    command: ["sh", "-c", "echo hello-from-emptydir > /data/f && cat /data/f && id && stat -c '%a %U' /data/f && sleep 3600"]
    volumeMounts:
    - {name: data, mountPath: /data}
  volumes:
  - name: data
    emptyDir: {}
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: ds
spec:
  selector:
    matchLabels: {app: smoke-ds}
  template:
    metadata:
      labels: {app: smoke-ds}
    spec:
      terminationGracePeriodSeconds: 1
      automountServiceAccountToken: false
      containers:
      - name: main
        image: $E2E_BUSYBOX_IMAGE
        imagePullPolicy: Never
        command: ["sh", "-c", "echo ds-running on \$NODE; sleep 3600"]
        env:
        - name: NODE
          valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
---
apiVersion: v1
kind: Pod
metadata:
  name: propagation
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  automountServiceAccountToken: false
  containers:
  - name: main
    image: $E2E_BUSYBOX_IMAGE
    imagePullPolicy: Never
    securityContext: {privileged: true}
    command: ["sh", "-c", "mkdir -p /kubelet/smoke-propagation && mount -t tmpfs smoke /kubelet/smoke-propagation && echo mounted > /kubelet/smoke-propagation/x && sleep 3600"]
    volumeMounts:
    - {name: kubelet, mountPath: /kubelet, mountPropagation: Bidirectional}
  volumes:
  - name: kubelet
    hostPath: {path: $E2E_KUBELET_ROOT, type: Directory}
EOF
kn wait --for=condition=Ready pod/emptydir --timeout="${timeout}s" >/dev/null
t1=$(date +%s.%N)
log "pod emptydir Running in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')s (pod IP $(kn get pod emptydir -o jsonpath='{.status.podIP}'))"
wait_for "DaemonSet pod scheduled" "$timeout" bash -c "[[ \$('$E2E_BIN/kubectl' --kubeconfig '$E2E_KUBECONFIG' -n $ns get pods -l app=smoke-ds -o name | wc -l) -ge 1 ]]"
kn wait --for=condition=Ready pod -l app=smoke-ds --timeout="${timeout}s" >/dev/null
kn wait --for=condition=Ready pod/propagation --timeout="${timeout}s" >/dev/null
log "DaemonSet and propagation pods Running"

fail=0
check() { # description, command...
  local what="$1"; shift
  if "$@"; then log "ok: $what"; else warn "FAILED: $what"; fail=1; fi
}
logs="$(kn logs emptydir)"
check "kubectl logs shows the emptyDir file" grep -q '^hello-from-emptydir$' <<<"$logs"
check "container runs as root" grep -q 'uid=0(root)' <<<"$logs"
dslogs="$(kn logs -l app=smoke-ds)"
check "kubectl logs of the DaemonSet pod" grep -q "ds-running on $E2E_NODE_NAME" <<<"$dslogs"
check "kubectl exec" bash -c "[[ \$('$E2E_BIN/kubectl' --kubeconfig '$E2E_KUBECONFIG' -n $ns exec emptydir -- cat /data/f) == hello-from-emptydir ]]"
podip="$(kn get pod emptydir -o jsonpath='{.status.podIP}')"
check "pod IP $podip in $E2E_POD_CIDR" bash -c "[[ $podip == ${E2E_POD_CIDR%.*}.* ]]"
check "service account token mounted" kn exec emptydir -- test -s /var/run/secrets/kubernetes.io/serviceaccount/token
check "kube-root-ca.crt mounted" kn exec emptydir -- grep -q 'BEGIN CERTIFICATE' /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
check "pod reaches the API server at $(node_ip):$E2E_APISERVER_PORT" kn exec emptydir -- sh -c "</dev/null nc -w 5 $(node_ip) $E2E_APISERVER_PORT"
check "pod reaches the kubernetes Service $E2E_KUBERNETES_SVC_IP:443" kn exec emptydir -- sh -c "</dev/null nc -w 5 $E2E_KUBERNETES_SVC_IP 443"
check "Bidirectional mount visible on the host" bash -c "[[ \$(cat $E2E_KUBELET_ROOT/smoke-propagation/x 2>/dev/null) == mounted ]]"
check "node label topology.kubernetes.io/region=$E2E_REGION" bash -c "[[ \$('$E2E_BIN/kubectl' --kubeconfig '$E2E_KUBECONFIG' get node $E2E_NODE_NAME -o jsonpath='{.metadata.labels.topology\.kubernetes\.io/region}') == $E2E_REGION ]]"

# the mount made by the privileged pod has to go before its pod does
kn exec propagation -- umount /kubelet/smoke-propagation || true
kn exec propagation -- rmdir /kubelet/smoke-propagation || true
t2=$(date +%s.%N)
cleanup
log "namespace deleted in $(awk -v a="$t2" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s"
[[ $fail == 0 ]] || die "smoke test failed"
log "smoke test passed"
