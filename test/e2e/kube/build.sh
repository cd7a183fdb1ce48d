#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kubectl
# from the k8s.io/kubernetes version pinned in this directory's go.mod, into
#   ${PODSECRETS_E2E_CACHE:-/var/cache/podsecrets-e2e}/bin/<version>/
# Nothing is rebuilt when all five binaries are already there (FORCE=1 rebuilds).
# Prints the binary directory on the last line of stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${PODSECRETS_E2E_CACHE:-/var/cache/podsecrets-e2e}"
cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)

command -v go >/dev/null 2>&1 || { echo "build.sh: go not found in PATH (expected /usr/local/go/bin)" >&2; exit 1; }

version="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/go.mod")"
[[ "$version" =~ ^v([0-9]+)\.([0-9]+)\.([0-9]+)$ ]] || { echo "build.sh: cannot read k8s.io/kubernetes version from go.mod" >&2; exit 1; }
major="${BASH_REMATCH[1]}" minor="${BASH_REMATCH[2]}"
bindir="$cache/bin/$version"

missing=()
for c in "${cmds[@]}"; do [[ -x "$bindir/$c" ]] || missing+=("$c"); done
if [[ ${#missing[@]} -eq 0 && "${FORCE:-0}" != 1 ]]; then
  echo "==> kubernetes $version binaries cached in $bindir" >&2
  echo "$bindir"
  exit 0
fi

echo "==> building kubernetes $version (${cmds[*]}) into $bindir; a cold build takes ~8 min on 2 cores" >&2
mkdir -p "$cache/bin"
tmp="$(mktemp -d "$cache/bin/.build-$version.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

builddate="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$builddate"
done

start=$SECONDS
pkgs=()
for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
(cd "$here" && CGO_ENABLED=0 go build -buildvcs=false -trimpath -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}")

mkdir -p "$bindir"
for c in "${cmds[@]}"; do mv -f "$tmp/$c" "$bindir/$c"; done
echo "==> built kubernetes $version in $((SECONDS - start))s" >&2
"$bindir/kubectl" version --client >&2 || true
echo "$bindir"
