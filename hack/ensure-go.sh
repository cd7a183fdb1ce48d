#!/usr/bin/env bash
# Makes a Go toolchain at least as new as go.mod's available on PATH.
# Sourced by .ci/run and the Makefile's entry points. On machines without Go
# it bootstraps Debian's Go and lets it fetch the toolchain go.mod names
# through the configured Go module proxy (no other download source is used).
set -euo pipefail
export PATH="/usr/local/go/bin:${HOME:-/root}/go/bin:$PATH"
want=$(awk '/^go /{print $2; exit}' "$(dirname "${BASH_SOURCE[0]}")/../go.mod")
if ! command -v go >/dev/null 2>&1; then
  echo "==> no Go on PATH: installing Debian's golang-go to bootstrap go$want"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null
  mod="golang.org/toolchain@v0.0.1-go${want}.linux-$(dpkg --print-architecture)"
  dir=$(cd /tmp && GOFLAGS=-mod=mod GO111MODULE=on go mod download -json "$mod" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  chmod +x "$dir"/bin/* "$dir"/pkg/tool/*/* 2>/dev/null || true
  export PATH="$dir/bin:$PATH"
fi
go version
