# podsecrets — see README.md. Every target runs as root on a fresh Linux
# machine; hack/ensure-go.sh provides Go when it is missing.
SHELL := /bin/bash
GO_ENV := source hack/ensure-go.sh >/dev/null &&
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
# grpcnotrace drops gRPC's x/net/trace (unused here); its html/template use
# keeps every exported method of every type alive, a third of the binary and
# of the driver's resident memory.
BUILDFLAGS := -trimpath -tags grpcnotrace
# `make build` is the one recipe of the driver binary: the Dockerfile, e2e.sh
# and test/bench call it with their own BIN (and VERSION). podsecrets-exec,
# the small binary an init container copies into pods, goes beside BIN.
BIN := bin/podsecrets
EXEC_BIN = $(dir $(BIN))podsecrets-exec
# Fuzz targets run briefly on every `make test`; FUZZTIME=1m for a longer run.
# The default is a count of inputs, not a duration: Go 1.26's fuzz
# coordinator can fail a target with "context deadline exceeded" when a
# -fuzztime duration ends while a worker is busy (go.dev/issue/75804, fixed
# in Go 1.27), which a loaded machine hits; a count has no deadline to race.
FUZZTIME ?= 10000x

.PHONY: build test unit fuzz e2e demo demo-down bench clean generate

build:
	$(GO_ENV) CGO_ENABLED=0 go build $(BUILDFLAGS) -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/podsecrets && \
	  CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o $(EXEC_BIN) ./cmd/podsecrets-exec

## test: everything CI runs: vet, unit and csi-sanity tests (race detector), generated code, fuzzers, real-node e2e.
test: unit fuzz e2e

# Tests build with the failpoints tag, which compiles in the named kill and
# error steps the crash tests use (internal/failpoint); `make build` never
# does.
unit:
	$(GO_ENV) go vet ./... && go vet -tags failpoints ./... && go test -race -count=1 -tags failpoints ./...
	@# The Helm chart's check is a module of its own (Helm's dependencies stay out of the driver's).
	$(GO_ENV) cd test/helmchart && go vet ./... && go test -count=1 ./...
	@# The checked-in generated code is what its .proto files and the pinned generators make.
	$(GO_ENV) hack/generate.sh && git diff --exit-code -- '*.pb.go'

fuzz:
	$(GO_ENV) set -e; for spec in $$(go run ./hack/fuzzlist); do \
	  pkg=$${spec%%:*}; fn=$${spec##*:}; echo "==> fuzz $$pkg $$fn ($(FUZZTIME))"; \
	  go test -run='^$$' -fuzz="^$$fn\$$" -fuzztime=$(FUZZTIME) "$$pkg"; done

## e2e: bring up a real one-node cluster, run test/e2e against it, always tear it down.
e2e:
	$(GO_ENV) test/e2e/e2e.sh up && test/e2e/e2e.sh test; rc=$$?; test/e2e/e2e.sh down; exit $$rc

demo:
	$(GO_ENV) test/e2e/demo.sh

demo-down:
	$(GO_ENV) test/e2e/e2e.sh down

## bench: the real-node startup and memory rows on a fresh cluster (torn down again), then the in-process rows with
## the machine quiet; writes docs/benchmarks.md. Never part of `make test`.
bench:
	$(GO_ENV) mkdir -p _output && rm -f _output/realnode.json _output/memory.json; \
	if test/e2e/e2e.sh up; then \
	  PODSECRETS_REALNODE_OUT=$(CURDIR)/_output/realnode.json test/e2e/e2e.sh test -run TestRealNodeStartup || true; \
	  PODSECRETS_E2E_MEMORY_OUT=$(CURDIR)/_output/memory.json test/e2e/e2e.sh test -run TestManyLargeVolumes || true; \
	fi; test/e2e/e2e.sh down; \
	go run ./test/bench -out docs/benchmarks.md $$(test -s _output/realnode.json && echo -realnode _output/realnode.json) \
	  $$(test -s _output/memory.json && echo -memory _output/memory.json)

## generate: the checked-in Go code of the .proto files (protoc from Debian, Go plugins at pinned versions).
generate:
	$(GO_ENV) hack/generate.sh

clean:
	rm -rf bin _output
