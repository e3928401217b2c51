# authz-sidecar image: a static binary on distroless, running as non-root.
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t authz-sidecar .
#   docker run --rm -e DATABASE_URL=postgres://authz_reader@db/app -e BETTER_AUTH_SECRET=... \
#     -p 127.0.0.1:9191:9191 -p 127.0.0.1:9192:9192 authz-sidecar
#
# BETTER_AUTH_SECRET (or BETTER_AUTH_SECRETS, or --better-auth-secret-file
# on a mounted secret) is Better Auth's own: the default policy accepts
# session cookies, signed with it. docs/operations.md has the rest.
#
# The default policy is the repository's policies.yaml at
# /etc/authz-sidecar/policies.yaml; mount your own over it (the directory or
# the file, read-only). /httpprobe is the container healthcheck
# (docker-compose.yml); Kubernetes probes the ports directly.

FROM golang:1.26-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0
COPY go.mod go.sum ./
RUN go mod download
COPY cmd/ cmd/
COPY internal/ internal/
COPY deploy/httpprobe/ deploy/httpprobe/
COPY policies.yaml ./
# The build context has no .git, so the version comes from the builder:
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) .
ARG VERSION=dev
RUN go build -trimpath -ldflags "-s -w -X main.buildVersion=${VERSION}" -o /out/authz-sidecar ./cmd/authz-sidecar \
 && go build -trimpath -ldflags "-s -w" -o /out/httpprobe ./deploy/httpprobe \
 && /out/authz-sidecar validate policies.yaml

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/authz-sidecar /authz-sidecar
COPY --from=build /out/httpprobe /httpprobe
COPY policies.yaml /etc/authz-sidecar/policies.yaml
# distroless "nonroot": uid/gid 65532. The sidecar needs no capabilities and
# writes no files, so it also runs with a read-only root filesystem.
USER 65532:65532
# 9191: ext_authz gRPC (Envoy). 9192: /healthz, /readyz, /metrics.
EXPOSE 9191 9192
ENTRYPOINT ["/authz-sidecar"]
CMD ["serve", "--grpc-addr", "0.0.0.0:9191", "--http-addr", "0.0.0.0:9192", "--policies", "/etc/authz-sidecar/policies.yaml"]
