#!/usr/bin/env bash
# The service images and the line as one pod, with podman (docs/deploy.md).
#
#   scripts/containers.sh build [ROLE...]   build the images (router oracle gate specialist worker by default)
#   scripts/containers.sh up BUNDLE [--port P]  play deploy/k8s/secret.yaml (keys from CASCADE_API_KEYS, a fresh
#                                           service key) + pod.yaml with BUNDLE mounted; router on 127.0.0.1:P (18080)
#   scripts/containers.sh smoke             build (or reuse) the pod's images, up with a small bundle, >= 10 real frames through the
#                                           router vs `run` on the same frames, down; last line one JSON object
#   scripts/containers.sh down              stop and remove the pod and its secret
#
# Environment: BASE (base image; default python:3.11-slim where a registry answers, else the local Debian
# bookworm image localhost/debian-base made with debootstrap and cached), TAG (image tag, default dev),
# CASCADE_CONTAINER_CACHE (base tarball and podman settings; default ~/.cache/cascade-defect/containers),
# CASCADE_DATA_ROOT (smoke: real frames, read in place), SMOKE_FRAMES (default 12).
set -euo pipefail
cd "$(dirname "$0")/.."
ROLES_ALL="router oracle redis gate specialist worker"
TAG=${TAG:-dev}
CACHE=${CASCADE_CONTAINER_CACHE:-$HOME/.cache/cascade-defect/containers}
mkdir -p "$CACHE"

say() { echo "containers: $*" >&2; }

# Podman's defaults fail on hosts with hybrid cgroups and low ulimits: runc and explicit ulimits.
if [ -z "${CONTAINERS_CONF:-}" ]; then
  cat > "$CACHE/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
EOF
  export CONTAINERS_CONF="$CACHE/containers.conf"
fi

have_image() { podman image exists "$1" 2>/dev/null; }

apt_mirror() {  # the Debian mirror apt already uses
  local m
  m=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
      | grep -v security | head -1 | awk '{print $2}')
  echo "${m:-http://deb.debian.org/debian}"
}

ensure_base() {  # sets BASE
  if [ -n "${BASE:-}" ]; then return; fi
  if have_image docker.io/library/python:3.11-slim; then BASE=docker.io/library/python:3.11-slim; return; fi
  BASE=localhost/debian-base
  have_image "$BASE" && return
  if [ ! -s "$CACHE/debian-base.tar" ]; then
    command -v debootstrap >/dev/null || { say "debootstrap missing (scripts/bootstrap.sh --test installs it)"; exit 3; }
    say "making the base: debootstrap bookworm (python3.11) from $(apt_mirror) (once; cached in $CACHE)"
    rm -rf "$CACHE/rootfs"
    nice -n 10 debootstrap --variant=minbase --include=python3,python3-venv bookworm "$CACHE/rootfs" "$(apt_mirror)" \
      > "$CACHE/debootstrap.log" 2>&1 || { say "debootstrap failed: $CACHE/debootstrap.log"; exit 3; }
    rm -rf "$CACHE/rootfs/var/cache/apt/archives"/*.deb "$CACHE/rootfs/var/lib/apt/lists"/*
    tar -C "$CACHE/rootfs" -cf "$CACHE/debian-base.tar.tmp" . && mv "$CACHE/debian-base.tar.tmp" "$CACHE/debian-base.tar"
    rm -rf "$CACHE/rootfs"
  fi
  podman import "$CACHE/debian-base.tar" "$BASE" >/dev/null
}

pip_build_args() {  # mounts for pip's local wheels/indexes and CA bundle (build time only, never in a layer)
  local py=${PYTHON:-python3} conf="$CACHE/pip.conf" links index cert dir
  links=$("$py" -m pip config get global.find-links 2>/dev/null || true)
  [ -n "$links" ] || links=${PIP_FIND_LINKS:-}
  index=$("$py" -m pip config get global.extra-index-url 2>/dev/null || true)
  cert=$("$py" -m pip config get global.cert 2>/dev/null || true)
  [ -n "$cert" ] || cert=${PIP_CERT:-}
  { echo "[global]"
    [ -n "$links" ] && echo "find-links = $links"
    [ -n "$index" ] && echo "extra-index-url = $index"
    [ -n "$cert" ] && [ -f "$cert" ] && echo "cert = /run/pip-ca.crt"
  } > "$conf"
  BUILD_MOUNTS=(-v "$conf:/etc/pip.conf:ro")
  [ -n "$cert" ] && [ -f "$cert" ] && BUILD_MOUNTS+=(-v "$cert:/run/pip-ca.crt:ro")
  for dir in $links $index; do
    dir=${dir#file://}
    case "$dir" in /*) ;; *) continue ;; esac
    [ "$(basename "$dir")" = simple ] && dir=$(dirname "$dir")   # index pages link to ../../files
    [ -d "$dir" ] && BUILD_MOUNTS+=(-v "$dir:$dir:ro")
  done
}

build() {
  local roles=("$@") role t0
  [ ${#roles[@]} -gt 0 ] || read -r -a roles <<< "$ROLES_ALL"
  ensure_base
  pip_build_args
  for role in "${roles[@]}"; do
    [ -f "deploy/containers/$role.Containerfile" ] || { say "no deploy/containers/$role.Containerfile"; exit 2; }
    t0=$(date +%s)
    say "building localhost/cascade-$role:$TAG from $BASE"
    nice -n 10 podman build --quiet --layers --format docker --network host --build-arg "BASE=$BASE" "${BUILD_MOUNTS[@]}" \
      -f "deploy/containers/$role.Containerfile" -t "localhost/cascade-$role:$TAG" . >/dev/null 2>"$CACHE/build-$role.log" \
      || { tail -30 "$CACHE/build-$role.log" >&2; say "building $role failed (log: $CACHE/build-$role.log)"; exit 1; }
    say "built localhost/cascade-$role:$TAG in $(( $(date +%s) - t0 )) s, $(image_mb "$role") MB"
  done
}

image_mb() { podman image inspect --format '{{.Size}}' "localhost/cascade-$1:$TAG" | awk '{printf "%d", $1/1000000}'; }

SMOKE=(env PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" "${PYTHON:-.venv/bin/python}" scripts/container_smoke.py)

case "${1:-}" in
  build) shift; build "$@" ;;
  up) shift; exec "${SMOKE[@]}" up --tag "$TAG" "$@" ;;
  down) exec "${SMOKE[@]}" down ;;
  smoke) shift; t_start=$(date +%s); build router oracle redis gate specialist; export CONTAINERS_CONF
         exec "${SMOKE[@]}" smoke --tag "$TAG" --started "$t_start" "$@" ;;
  *) echo "usage: $0 build [ROLE...] | up BUNDLE_DIR [--port P] | smoke [--frames N] | down" >&2; exit 2 ;;
esac
