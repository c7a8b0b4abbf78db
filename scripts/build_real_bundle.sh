#!/usr/bin/env bash
# One command builds the real-data bundle (docs/evaluation-real.md): domain `steel` from the Severstal frames
# (as 256 px tiles) and NEU-DET, domain `ksdd1` from KolektorSDD, each with a supervised gate learned from every
# labelled source of the domain, a Layer 2 per domain (steel: the package's NEU-DET detector; ksdd1: its own
# supervised gate's decision, docs/specialist.md), and τ and Layer-2 bars calibrated from the stated risk.
# Reads only $CASCADE_DATA_ROOT (ksdd1/, neu-det/, severstal/) and this package's own files.
# Usage: CASCADE_DATA_ROOT=/path/to/data bash scripts/build_real_bundle.sh OUT     (writes OUT/bundle, OUT/severstal-tiles)
set -euo pipefail
: "${CASCADE_DATA_ROOT:?set CASCADE_DATA_ROOT to the folder holding ksdd1/, neu-det/ and severstal/}"
OUT=${1:?usage: build_real_bundle.sh OUT}
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLI=${CLI:-$REPO/.venv/bin/cascade-defect}
SEED=${SEED:-0}
STEPS=${STEPS:-300}                          # steel supervised gate training steps
KSDD_STEPS=${KSDD_STEPS:-600}                # ksdd1 supervised gate training steps (few defectives: longer training)
STEEL_SYNTHETIC_SHARE=${STEEL_SYNTHETIC_SHARE:-0.2}   # steel has ~1,000 labelled defectives: fewer synthetic ones
OOF_FOLDS=${OOF_FOLDS:-5}                    # out-of-fold scores of the gate's training defectives inform τ
TARGET_RECALL=${TARGET_RECALL:-0.98}         # the stated risk: Layer-1 recall floor per domain
L2_PRECISION=${L2_PRECISION:-0.95}           # the stated risk: Layer-2 class precision
L2_FLOOR=${L2_FLOOR:-}                       # search the Layer-2 bars down to this detector confidence (default: calibrate's, 0.01)
MAX_NORMALS=${MAX_NORMALS:-2000}             # cap on a gate's normals (binds only on the full Kaggle Severstal set)
NEU_DETECTOR=${NEU_DETECTOR:-$REPO/src/cascade_defect/models/specialist-neu-cpu}
STEEL_SOURCES=${STEEL_SOURCES:-$REPO/docs/eval/sources-steel.yaml}

rm -rf "$OUT" && mkdir -p "$OUT"
B="$OUT/bundle"
export SEVERSTAL_TILES
SEVERSTAL_TILES="$(cd "$OUT" && pwd)/severstal-tiles"
step() { echo "[build_real_bundle $(date -u +%H:%M:%S)] $*" >&2; }

CALIBRATE=(--target-recall "$TARGET_RECALL" --l2-precision "$L2_PRECISION")   # calibrate's mode risk (default)
[ -z "$L2_FLOOR" ] || CALIBRATE+=(--l2-floor "$L2_FLOOR")

step "tiles of the Severstal frames -> $SEVERSTAL_TILES"
$CLI data tile --format severstal --root "$CASCADE_DATA_ROOT/severstal" --out "$SEVERSTAL_TILES" --tile 256

step "gate steel (supervised) from every steel source: $STEEL_SOURCES"
$CLI gate fit --sources "$STEEL_SOURCES" --domain steel --bundle "$B" --gate supervised --seed "$SEED" \
  --steps "$STEPS" --synthetic-share "$STEEL_SYNTHETIC_SHARE" --max-normals "$MAX_NORMALS" --oof-folds "$OOF_FOLDS"
step "gate ksdd1 (supervised) from KolektorSDD"
$CLI gate fit --format ksdd1 --root "$CASCADE_DATA_ROOT/ksdd1" --domain ksdd1 --bundle "$B" --gate supervised \
  --seed "$SEED" --steps "$KSDD_STEPS" --max-normals "$MAX_NORMALS" --oof-folds "$OOF_FOLDS"

step "Layer 2 steel: the package's NEU-DET detector ($NEU_DETECTOR)"
$CLI specialist export-onnx --weights "$NEU_DETECTOR" --bundle "$B" --domain steel
step "Layer 2 ksdd1: its supervised gate's decision (single class)"
$CLI specialist from-gate --bundle "$B" --domain ksdd1

step "calibrate steel on the val part of every steel source: ${CALIBRATE[*]}"
$CLI calibrate --bundle "$B" --sources "$STEEL_SOURCES" --domain steel --seed "$SEED" "${CALIBRATE[@]}"
step "calibrate ksdd1: ${CALIBRATE[*]}"
$CLI calibrate --bundle "$B" --format ksdd1 --root "$CASCADE_DATA_ROOT/ksdd1" --domain ksdd1 --seed "$SEED" \
  "${CALIBRATE[@]}"
step "done: $B"
