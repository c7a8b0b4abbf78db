#!/usr/bin/env bash
# Train the NEU-DET specialist on the project's lent GPU machine and bring the model back.
#
# The GPU machine has PyTorch, OpenCV, ONNX Runtime, matplotlib, PyYAML ... but no Ultralytics,
# no internet, and none of ../shared/data. So, in three steps:
#
#   1. here (dev machine, package registry reachable):
#        scripts/train_neu_gpu.sh prepare
#      copies ../shared/data/neu-det to .devdata/neu-det and downloads the Ultralytics wheels to
#      .whl/ (both folders are git-ignored: the data is NEVER committed, it only travels to the
#      GPU machine for this run; about 31 MB together).
#   2. on the GPU machine, through the session's device tool:
#        run(command="bash scripts/train_neu_gpu.sh train", carry=[".devdata", ".whl"], timeout_s=600)
#      trains with the `neu` recipe capped at TIME_H hours (default 0.13 h = 7.8 min, so the
#      whole command ends inside the 10-minute limit), evaluates on the held-out test split and
#      writes $OUT/neu-model/{weights.pt,specialist.json,metrics.json,MODEL_CARD.md,results.csv}
#      and $OUT/train.log. Extra arguments go to scripts/train_neu.py (e.g. --epochs 300 without
#      a time cap when a longer command is allowed; --recipe none --epochs 50 for the baseline).
#   3. here again, with the folder the tool returned:
#        scripts/train_neu_gpu.sh install /work/.device/<...>/neu-model
#      copies the model into src/cascade_defect/models/specialist-neu/ (shipped with the
#      package; `cascade_defect.specialist.model_card.packaged_model("neu")` finds it), then
#      commit that folder and `rm -rf .devdata/neu-det .whl` .
set -euo pipefail
cd "$(dirname "$0")/.."

cmd="${1:-}"
shift || true

case "$cmd" in
  prepare)
    src="${CASCADE_DATA_ROOT:-../shared/data}/neu-det"
    [ -d "$src" ] || { echo "error: $src not found (set CASCADE_DATA_ROOT)" >&2; exit 2; }
    git check-ignore -q .devdata/x && git check-ignore -q .whl/x \
      || { echo "error: .devdata/ and .whl/ must be git-ignored" >&2; exit 2; }
    mkdir -p .devdata .whl
    rm -rf .devdata/neu-det
    cp -r "$src" .devdata/neu-det
    py="${PYTHON:-.venv/bin/python}"
    ul=$("$py" -c "import ultralytics; print(ultralytics.__version__)")
    thop=$("$py" -c "import importlib.metadata as m; print(m.version('ultralytics-thop'))")
    "$py" -m pip download -q --no-deps --only-binary=:all: -d .whl "ultralytics==$ul" "ultralytics-thop==$thop"
    du -sh .devdata/neu-det .whl
    echo "ready: run 'bash scripts/train_neu_gpu.sh train' on the GPU machine with carry=[\".devdata\", \".whl\"]"
    ;;
  train)
    out="${OUT:-runs/neu-gpu}"
    mkdir -p "$out"
    py="${PY:-python3}"   # PY: another interpreter (e.g. .venv/bin/python for a dry run on a CPU machine)
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 YOLO_CONFIG_DIR=/tmp/ultralytics-config
    nvidia-smi -L || true
    "$py" -c "import torch, ultralytics; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'ultralytics', ultralytics.__version__)"
    set -o pipefail
    "$py" scripts/train_neu.py --data-root .devdata --device 0 --time "${TIME_H:-0.13}" \
      --out "$out/neu-model" --work /tmp/neu-work "$@" 2>&1 | tee "$out/train.log" | grep -v "━" || exit 1
    if [ "${BENCH:-0}" = "1" ]; then
      CASCADE_DATA_ROOT=.devdata "$py" benchmarks/bench_specialist.py --weights "$out/neu-model" \
        --out "$out/bench_specialist.json" 2>>"$out/train.log"
    fi
    ls -la "$out" "$out/neu-model"
    ;;
  install)
    from="${1:?usage: scripts/train_neu_gpu.sh install <returned neu-model folder>}"
    dest=src/cascade_defect/models/specialist-neu
    for f in weights.pt specialist.json metrics.json MODEL_CARD.md; do
      [ -f "$from/$f" ] || { echo "error: $from/$f missing" >&2; exit 2; }
    done
    mkdir -p "$dest"
    cp "$from"/weights.pt "$from"/specialist.json "$from"/metrics.json "$from"/MODEL_CARD.md "$dest"/
    [ -f "$from/results.csv" ] && cp "$from/results.csv" "$dest"/
    du -sh "$dest"
    echo "now: git add $dest && git commit -m 'NEU-DET specialist model' -- $dest; rm -rf .devdata/neu-det .whl"
    ;;
  *)
    sed -n '2,30p' "$0"
    exit 2
    ;;
esac
