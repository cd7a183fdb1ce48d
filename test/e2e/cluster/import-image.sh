#!/usr/bin/env bash
# Imports OCI/docker image tarballs into the e2e cluster's containerd (namespace k8s.io),
# e.g. one written by `go run ./test/e2e/ociimage -rootfs DIR -name docker.io/local/NAME:TAG -o x.tar`.
# Pods then use `image: docker.io/local/NAME:TAG` with `imagePullPolicy: Never`.
#   usage: import-image.sh IMAGE.tar [IMAGE.tar...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -ge 1 ]] || { echo "usage: $0 IMAGE.tar [IMAGE.tar...]" >&2; exit 2; }
need_root
pid_alive containerd || die "containerd of the e2e cluster is not running (run up.sh)"
for tar in "$@"; do
  [[ -f $tar ]] || die "$tar: no such file"
  log "importing $tar"
  ctr_k8s images import "$tar"
done
