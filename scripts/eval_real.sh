#!/usr/bin/env bash
# The documented real-data evaluation (docs/evaluation-real.md): the bundle scripts/build_real_bundle.sh builds
# (domains steel and ksdd1, supervised gates from every labelled source, a Layer 2 per domain, calibrated from the
# stated risk), evaluated on the project's own test splits (docs/eval/tracks-real.yaml) with the ground-truth stand-in.
# Usage: CASCADE_DATA_ROOT=/path/to/data bash scripts/eval_real.sh [OUT]   (default OUT: runs/eval-real)
# Settings of the build (STEPS, TARGET_RECALL, L2_PRECISION, OOF_FOLDS, ...) pass through the environment.
set -euo pipefail
: "${CASCADE_DATA_ROOT:?set CASCADE_DATA_ROOT to the folder holding ksdd1/, neu-det/ and severstal/}"
OUT=${1:-runs/eval-real}
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLI=${CLI:-$REPO/.venv/bin/cascade-defect}
export CLI
ENGINE=${SPECIALIST_ENGINE:-onnx}

bash "$REPO/scripts/build_real_bundle.sh" "$OUT"
SEVERSTAL_TILES="$(cd "$OUT" && pwd)/severstal-tiles" \
  $CLI evaluate --bundle "$OUT/bundle" --tracks "$REPO/docs/eval/tracks-real.yaml" --out "$OUT/eval" \
  --oracle ground-truth --specialist-engine "$ENGINE"
