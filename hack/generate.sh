#!/usr/bin/env bash
# Regenerates the checked-in Go code of every .proto file of the module with
# protoc (Debian's protobuf-compiler) and the Go plugins at the versions
# pinned here, so that `make generate` on any machine reproduces the
# committed files byte for byte. The protobuf plugin's version follows the
# runtime in go.mod: generated code must not be newer than the library that
# runs it.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
GRPC_GEN_VERSION=v1.6.0
PROTOBUF_VERSION="$(go list -m -f '{{.Version}}' google.golang.org/protobuf)"

if ! command -v protoc >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null
fi
bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
GOBIN="$bin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOBUF_VERSION"
GOBIN="$bin" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$GRPC_GEN_VERSION"

for proto in $(git ls-files '*.proto'); do
  dir="$(dirname "$proto")"
  PATH="$bin:$PATH" protoc -I "$dir" \
    --go_out="$dir" --go_opt=paths=source_relative \
    --go-grpc_out="$dir" --go-grpc_opt=paths=source_relative \
    "$(basename "$proto")"
done
