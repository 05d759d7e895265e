# Hindsight as an image: one static binary on a minimal base, run as a
# non-root user, with a HEALTHCHECK on the process' own /healthz (or
# /metrics for a role without the API: see `hindsight healthcheck`).
#   make image                          # upstream bases
#   docker run hindsight:dev serve ...  # any command; serve by default
# The base images are build arguments, their defaults the upstream ones;
# internal/testimages/docker.sh builds it on a local Debian base where no
# registry is reachable.
ARG GO_IMAGE=golang:1.26-bookworm
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${GO_IMAGE} AS build
ARG GOPROXY=https://proxy.golang.org,direct
ARG VERSION=dev
WORKDIR /src
COPY . .
RUN CGO_ENABLED=0 GOPROXY=${GOPROXY} GOFLAGS=-buildvcs=false \
	go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/hindsight ./cmd/hindsight

FROM ${BASE_IMAGE}
COPY --from=build /out/hindsight /usr/local/bin/hindsight
USER 65532:65532
# Inside a container the API must listen beyond loopback; compose and the
# platform decide who can reach it.
ENV HINDSIGHT_HTTP=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["/usr/local/bin/hindsight", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/hindsight"]
CMD ["serve"]
