# syntax=docker/dockerfile:1
# The e2e harness builds the same binary the same way (make image) and packs
# it into an OCI image without Docker; keep the two in step.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -tags grpcnotrace -ldflags "-s -w -X main.version=${VERSION}" -o /out/podsecrets ./cmd/podsecrets

# Static binary, no shell, no mount(8): the driver calls mount(2) itself.
# It runs as root because mounting needs it; the DaemonSet makes it privileged.
FROM gcr.io/distroless/static-debian12
COPY --from=build /out/podsecrets /podsecrets
ENTRYPOINT ["/podsecrets"]
CMD ["driver"]
