#!/usr/bin/env bash
# Set up a fresh machine for cascade-defect: a virtual environment in .venv with the package
# (editable), its Ultralytics extra and the test tools. Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch/torchvision first and exactly: on the project's machines they come from local disk.
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e '.[test,yolo]'
