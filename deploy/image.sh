#!/usr/bin/env bash
# Build the serving image on a machine that can reach package registries but no container registry.
#
#   deploy/image.sh engine      start dockerd when it is installed but not running (root only)
#   deploy/image.sh base        a Debian bookworm base image made with debootstrap, once (cached by tag)
#   deploy/image.sh build       the image, FROM that base (or BASE_IMAGE=...), tagged $IMAGE
#   deploy/image.sh postgres    PostgreSQL 15 from Debian's package on the same base, tagged
#                               $POSTGRES_IMAGE (geovision-postgres:15), for deploy/compose.single.yml
#
# Settings (environment): IMAGE (default geovision:latest), BASE_IMAGE (default: the debootstrap
# base, geovision-base:bookworm), WHEELS (a local PEP 503 index served to the build, default
# /opt/pypi-more: the pinned torch wheel lies there) on 127.0.0.1:$WHEELS_PORT (18611), CA_BUNDLE (default
# /etc/ssl/certs/ca-certificates.crt, given to the build stage only), WITH_RAY (0/1).
# On a GPU instance with registry access, `docker build -t geovision .` is all it takes.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-geovision:latest}
BASE_TAG=geovision-base:bookworm
BASE_IMAGE=${BASE_IMAGE:-$BASE_TAG}
WHEELS=${WHEELS:-/opt/pypi-more}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

engine() {
  if docker info >/dev/null 2>&1; then return 0; fi
  command -v dockerd >/dev/null || { echo "no container engine: apt-get install docker.io" >&2; return 1; }
  [ "$(id -u)" = 0 ] || { echo "dockerd is not running and only root may start it" >&2; return 1; }
  nohup dockerd >/var/log/geovision-dockerd.log 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && return 0; sleep 1; done
  echo "dockerd did not start (see /var/log/geovision-dockerd.log)" >&2
  return 1
}

base() {
  if docker image inspect "$BASE_TAG" >/dev/null 2>&1; then echo "$BASE_TAG exists"; return 0; fi
  command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; return 1; }
  local root
  root=$(mktemp -d /var/tmp/geovision-rootfs.XXXXXX)
  debootstrap --variant=minbase bookworm "$root" "$MIRROR"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import --change 'CMD ["/bin/bash"]' - "$BASE_TAG"
  rm -rf "$root"
}

build() {
  [ "$BASE_IMAGE" != "$BASE_TAG" ] || base
  # a fixed port: the index URL is a build argument, part of the layer cache's key
  local port=${WHEELS_PORT:-18611} server status=0
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "$WHEELS" >/dev/null 2>&1 &
  server=$!
  sleep 1
  kill -0 "$server" 2>/dev/null || { echo "port $port is taken: set WHEELS_PORT" >&2; return 1; }
  [ ! -f "$CA_BUNDLE" ] || cp "$CA_BUNDLE" deploy/build-ca/ca-certificates.crt
  DOCKER_BUILDKIT=0 docker build --network host -t "$IMAGE" \
    --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg WITH_RAY="${WITH_RAY:-0}" \
    --build-arg PIP_EXTRA_INDEX_URL="http://127.0.0.1:$port/simple" \
    --build-arg VERSION="$(git describe --tags --always 2>/dev/null || echo dev)" \
    --build-arg VCS_REF="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    --build-arg SOURCE="$(git config --get remote.origin.url 2>/dev/null || echo unknown)" . || status=$?
  rm -f deploy/build-ca/ca-certificates.crt
  docker image prune -f >/dev/null 2>&1 || true   # the untagged image a rebuild replaced
  kill "$server" 2>/dev/null || true
  return $status
}

postgres() {
  [ "$BASE_IMAGE" != "$BASE_TAG" ] || base
  DOCKER_BUILDKIT=0 docker build --network host -t "${POSTGRES_IMAGE:-geovision-postgres:15}" \
    --build-arg BASE_IMAGE="$BASE_IMAGE" deploy/postgres
}

"${1:?usage: deploy/image.sh engine|base|build|postgres}"
