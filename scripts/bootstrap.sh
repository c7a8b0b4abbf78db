#!/usr/bin/env bash
# Set up a fresh machine for cascade-defect: a virtual environment in .venv with the package
# (editable) with every role (the all extra: gate, Ultralytics specialist, oracle, evaluation, HTTP services,
# scale-out with Redis and Ray). With --test, also the test tools: the test extra, Debian's chromium +
# chromium-driver (the evaluation report and the review page in a real browser), redis-server (queue tests) and
# Azurite (a local Azure Blob
# server for the az:// bundle tests), ffmpeg + rtsp-server-perl (camera ingestion) and podman with its helpers
# (the container smoke test). Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_TESTS=0
[ "${1:-}" = "--test" ] && WITH_TESTS=1
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch/torchvision first and exactly: on the project's machines they come from local disk.
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
if [ "$WITH_TESTS" = 1 ]; then
  .venv/bin/python -m pip install -q -e '.[test,all]'
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "bootstrap: installing Debian's chromium and chromium-driver for the report and review-page tests" >&2
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
        || echo "bootstrap: chromium install failed; the browser tests will skip and say why" >&2
    else
      echo "bootstrap: chromium/chromedriver missing and not root; the browser tests will skip and say why" >&2
    fi
  fi
  if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "bootstrap: installing Debian's redis-server for the queue tests" >&2
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
        || echo "bootstrap: redis-server install failed; the queue tests will skip and say why" >&2
    else
      echo "bootstrap: redis-server missing and not root; the queue tests will skip and say why" >&2
    fi
  fi
  # camera ingestion tests (ffmpeg + a real RTSP server) and the container smoke test (podman with runc,
  # a debootstrap'ed base image; see docs/deploy.md)
  missing=""
  for pair in ffmpeg:ffmpeg rtsp-server-perl:rtsp-server-perl podman:podman buildah:buildah runc:runc \
              debootstrap:debootstrap slirp4netns:slirp4netns newuidmap:uidmap fuse-overlayfs:fuse-overlayfs \
              skopeo:skopeo iptables:iptables; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || missing="$missing ${pair#*:}"
  done
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "bootstrap: installing Debian's$missing (camera ingestion and container tests)" >&2
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing netavark aardvark-dns \
         containernetworking-plugins golang-github-containers-common >/dev/null) \
        || echo "bootstrap: installing$missing failed; the RTSP and container tests will skip and say why" >&2
    else
      echo "bootstrap:$missing missing and not root; the RTSP and container tests will skip and say why" >&2
    fi
  fi
  if [ ! -x .tools/node_modules/.bin/azurite ] && command -v npm >/dev/null 2>&1; then
    echo "bootstrap: installing Azurite (local Azure Blob server) for the az:// bundle tests" >&2
    npm install --prefix .tools --no-audit --no-fund --silent azurite@3.37.0 >/dev/null \
      || echo "bootstrap: Azurite install failed; the az:// server tests will skip and say why" >&2
  fi
else
  .venv/bin/python -m pip install -q -e '.[all]'
fi
