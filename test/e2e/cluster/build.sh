#!/usr/bin/env bash
# Builds what the e2e cluster runs:
#   - kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl
#     (test/e2e/kube, cached in $PODSECRETS_E2E_CACHE/bin/<version>/, built only when missing)
#   - $PODSECRETS_E2E_CACHE/images/pause.tar    docker.io/local/pause:e2e    (test/e2e/pause)
#   - $PODSECRETS_E2E_CACHE/images/busybox.tar  docker.io/local/busybox:e2e  (Debian busybox-static)
# The images are OCI image-layout tarballs (test/e2e/ociimage); up.sh imports them.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v go >/dev/null 2>&1 || die "go not found (run install.sh; Go lives in /usr/local/go)"
[[ -x /bin/busybox ]] || die "/bin/busybox missing (run install.sh: busybox-static)"

start=$SECONDS
"$E2E_ROOT/test/e2e/kube/build.sh" >/dev/null

mkdir -p "$E2E_IMAGES" "$E2E_CACHE/tools"
work="$(mktemp -d "$E2E_CACHE/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

log "building ociimage and pause"
(cd "$E2E_ROOT" && CGO_ENABLED=0 go build -buildvcs=false -trimpath -o "$E2E_CACHE/tools/ociimage" ./test/e2e/ociimage)
ociimage="$E2E_CACHE/tools/ociimage"

# pause: a single static binary.
mkdir -p "$work/pause"
(cd "$E2E_ROOT" && CGO_ENABLED=0 go build -buildvcs=false -trimpath -ldflags "-s -w" -o "$work/pause/pause" ./test/e2e/pause)
"$ociimage" -rootfs "$work/pause" -name "$E2E_PAUSE_IMAGE" -o "$E2E_IMAGES/pause.tar" -entrypoint /pause >&2
log "image $E2E_PAUSE_IMAGE -> $E2E_IMAGES/pause.tar"

# busybox: /bin/busybox plus a symlink per applet, a minimal /etc.
bb="$work/busybox"
mkdir -p "$bb"/{bin,sbin,usr/bin,usr/sbin,etc,root,proc,sys,dev,var/run,var/tmp,tmp}
chmod 1777 "$bb/tmp" "$bb/var/tmp"
chmod 0700 "$bb/root"
cp /bin/busybox "$bb/bin/busybox"
chmod 0755 "$bb/bin/busybox"
for applet in $(/bin/busybox --list); do
  [[ $applet == busybox ]] && continue
  ln -sf busybox "$bb/bin/$applet"
done
for a in sh cat ls stat id sleep echo touch mount umount wc mkdir rm cp mv grep sed awk test true false env ps kill df find head tail tee chmod chown date dd hostname ln readlink realpath sync uname wget nc ip; do
  [[ -e "$bb/bin/$a" ]] || die "busybox has no applet $a"
done
cat >"$bb/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$bb/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
EOF
"$ociimage" -rootfs "$bb" -name "$E2E_BUSYBOX_IMAGE" -o "$E2E_IMAGES/busybox.tar" -cmd sh >&2
log "image $E2E_BUSYBOX_IMAGE -> $E2E_IMAGES/busybox.tar"

log "build done in $((SECONDS - start))s: binaries in $E2E_BIN, images in $E2E_IMAGES"
