#!/usr/bin/env bash
# Test images for the testcontainers suite, built from Debian's packages
# because no image registry is reachable from this machine or CI:
#   docker.sh up     install docker.io and debootstrap if missing, start dockerd
#                    if none runs, build the images that are missing
#   docker.sh down   stop the dockerd that `up` started, if it started one
# Images: local/debian:bookworm (debootstrap), local/clickhouse-server:18.16
# (Debian's package), local/hindsight-broker:dev (the hindsight binary's
# embedded broker), local/golang:go (this machine's Go on the Debian base)
# and local/hindsight:dev (the repository's Dockerfile on those two).
set -euo pipefail
cd "$(dirname "$0")/../.."
state=.cache/docker
mkdir -p "$state"
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo

up() {
	if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
		echo "docker.sh: installing docker.io and debootstrap with apt"
		$sudo apt-get update -qq
		$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
	fi
	if ! $sudo docker info >/dev/null 2>&1; then
		echo "docker.sh: starting dockerd"
		$sudo setsid dockerd >"$state/dockerd.log" 2>&1 &
		echo $! >"$state/dockerd.pid"
		for _ in $(seq 60); do $sudo docker info >/dev/null 2>&1 && break; sleep 1; done
		$sudo docker info >/dev/null 2>&1 || { echo "docker.sh: dockerd did not start; see $state/dockerd.log" >&2; exit 1; }
	fi
	if ! $sudo docker image inspect local/debian:bookworm >/dev/null 2>&1; then
		echo "docker.sh: building local/debian:bookworm with debootstrap (about a minute)"
		mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
		mirror=${mirror:-http://deb.debian.org/debian}
		rootfs=$(mktemp -d)
		$sudo debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$state/debootstrap.log" 2>&1
		$sudo tar -C "$rootfs" -c . | $sudo docker import - local/debian:bookworm >/dev/null
		$sudo rm -rf "$rootfs"
	fi
	if ! $sudo docker image inspect local/clickhouse-server:18.16 >/dev/null 2>&1; then
		echo "docker.sh: building local/clickhouse-server:18.16"
		$sudo docker build -q --network host -t local/clickhouse-server:18.16 internal/testimages/clickhouse >/dev/null
	fi
	if ! $sudo docker image inspect local/golang:go >/dev/null 2>&1; then
		echo "docker.sh: building local/golang:go from $(go env GOROOT)"
		ctx=$(mktemp -d)
		cp -a "$(go env GOROOT)" "$ctx/go"
		cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
		cp internal/testimages/golang/Dockerfile "$ctx/"
		$sudo docker build -q --network host -t local/golang:go "$ctx" >/dev/null
		rm -rf "$ctx"
	fi
	echo "docker.sh: building local/hindsight:dev from the Dockerfile"
	$sudo docker build -q --network host -t local/hindsight:dev \
		--build-arg GO_IMAGE=local/golang:go --build-arg BASE_IMAGE=local/debian:bookworm \
		--build-arg GOPROXY="$(go env GOPROXY)" --build-arg VERSION="$(git describe --always --dirty 2>/dev/null || echo dev)" . >/dev/null
	echo "docker.sh: building local/hindsight-broker:dev"
	ctx=$(mktemp -d)
	CGO_ENABLED=0 go build -o "$ctx/hindsight" ./cmd/hindsight
	cp internal/testimages/broker/Dockerfile "$ctx/"
	$sudo docker build -q -t local/hindsight-broker:dev "$ctx" >/dev/null
	rm -rf "$ctx"
}

down() {
	if [ -f "$state/dockerd.pid" ]; then
		echo "docker.sh: stopping the dockerd it started"
		$sudo kill "$(cat "$state/dockerd.pid")" 2>/dev/null || true
		for _ in $(seq 30); do $sudo docker info >/dev/null 2>&1 || break; sleep 1; done
		rm -f "$state/dockerd.pid"
	fi
}

case "${1:-}" in
up) up ;;
down) down ;;
*) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
