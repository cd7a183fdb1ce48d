# syntax=docker/dockerfile:1
# The binary comes from `make build`, the recipe the e2e harness and the
# benchmarks use too; the e2e harness packs it without Docker.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN make build VERSION=${VERSION} BIN=/out/podsecrets

# Static binary, no shell, no mount(8): the driver calls mount(2) itself.
# It runs as root because mounting needs it; the DaemonSet makes it privileged.
# /podsecrets-exec is for pods: an init container copies it into an emptyDir
# (see deploy/examples/exec.yaml).
FROM gcr.io/distroless/static-debian12
COPY --from=build /out/podsecrets /podsecrets
COPY --from=build /out/podsecrets-exec /podsecrets-exec
ENTRYPOINT ["/podsecrets"]
CMD ["driver"]
