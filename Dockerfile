# syntax=docker/dockerfile:1
#
# idsync container image: a static binary on distroless, running as a
# non-root user. Build with the version baked in:
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t idsync .
#
# The image has no shell, package manager or curl: health is checked over
# HTTP from outside (Kubernetes probes, Prometheus), see docs/operations.md.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# CGO_ENABLED=0: a static binary that needs no libc in the final image.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/idsync ./cmd/idsync

# distroless/static: CA certificates, /etc/passwd with the nonroot user
# (uid and gid 65532), tzdata; nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/idsync /usr/local/bin/idsync
USER 65532:65532
# 9464: /metrics, /healthz, /readyz (ops.listen). 8088: admin API (admin.listen).
# Both default to 127.0.0.1; in a container set IDSYNC_OPS_LISTEN=0.0.0.0:9464
# and IDSYNC_ADMIN_LISTEN=0.0.0.0:8088 (or ops.listen/admin.listen in the file).
EXPOSE 9464 8088
ENTRYPOINT ["/usr/local/bin/idsync"]
CMD ["run"]
