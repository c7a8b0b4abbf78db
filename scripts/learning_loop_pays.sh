#!/usr/bin/env bash
# Does the learning loop pay because of its labels? For each seed: `learn simulate --from-bundle BUNDLE`
# (3 learned rounds + a measured final round) and its control (`scripts/learning_loop_control.py`: the same
# fine-tuning without production labels), then `scripts/loop_vs_control.py` pairs round 0, the loop's last
# serving bundle and the control's last version on the fixed hold-out.
#
# Usage: bash scripts/learning_loop_pays.sh BUNDLE OUT [SEED ...]       (default seeds: 0 1)
#   BUNDLE: a bundle whose detector trained on part of its train split (`specialist train --train-part F`)
#   L2_FLOOR=F: the per-class bars are searched down to detector confidence F (default 0.01, as `calibrate`).
#   L2_GUARD=0: loop and control keep every fine-tune (`--no-l2-guard`); by default both keep a candidate only when
#   it decides at least as many val frames rightly at the stated precision (learning/l2_guard.py).
#   CANDIDATES=K: loop and control fine-tune K seeds a round and the guard keeps the best on val (default 1).
#   BALANCE=1: loop and control fine-tune on class-balanced frames (learn --balance-classes).
#   Every loop and control runs at once, one torch thread each (JOBS=1 runs them one after another).
#   Writes OUT/seed-S/{loop.jsonl,control.jsonl,paired.json,paired.md} and logs beside them.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 BUNDLE OUT [SEED ...]" >&2; exit 2; }
BUNDLE=$1; OUT=$2; shift 2
SEEDS=${*:-0 1}
PY=${PYTHON:-python}
HERE=$(cd "$(dirname "$0")" && pwd)
ROUNDS=${ROUNDS:-3}; PER_ROUND=${PER_ROUND:-160}; EPOCHS=${EPOCHS:-5}; LR0=${LR0:-0.001}; MOSAIC=${MOSAIC:-0}
BATCH=${BATCH:-16}; L2_PRECISION=${L2_PRECISION:-0.95}; L2_FLOOR=${L2_FLOOR:-}; JOBS=${JOBS:-all}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
SCHEDULE=(--epochs "$EPOCHS" --lr0 "$LR0" --mosaic "$MOSAIC" --batch-size "$BATCH" --l2-precision "$L2_PRECISION")
FLOOR=(); [ -z "$L2_FLOOR" ] || FLOOR=(--l2-floor "$L2_FLOOR")   # bars searched down to this detector confidence
GUARD=(); [ "${L2_GUARD:-1}" != 0 ] || GUARD=(--no-l2-guard)
GUARD+=(--candidates "${CANDIDATES:-1}")   # fine-tunes per round; the guard keeps the best on val (learn --candidates)
[ "${BALANCE:-0}" = 0 ] || GUARD+=(--balance-classes)   # class-balanced fine-tunes (learn --balance-classes)

one_seed() {
  local s=$1 dir=$OUT/seed-$1
  mkdir -p "$dir"
  "$PY" -m cascade_defect learn simulate --from-bundle "$BUNDLE" --out "$dir/loop" --rounds "$ROUNDS" --measure-final \
      --per-round "$PER_ROUND" --seed "$s" "${SCHEDULE[@]}" "${FLOOR[@]}" "${GUARD[@]}" --json \
      > "$dir/loop.jsonl" 2> "$dir/loop.log" &
  local loop=$!
  [ "$JOBS" = all ] || wait "$loop"
  "$PY" "$HERE/learning_loop_control.py" "$BUNDLE" "$dir/control" --rounds "$ROUNDS" --seed "$s" "${SCHEDULE[@]}" \
      "${FLOOR[@]}" "${GUARD[@]}" \
      > "$dir/control.jsonl" 2> "$dir/control.log"
  wait "$loop"
  local last
  last=$(ls -d "$dir"/loop/bundle-* | sort -V | tail -1)
  "$PY" "$HERE/loop_vs_control.py" "round0=$dir/loop/bundle-0" "loop=$last" "control=$dir/control/control-$ROUNDS" \
      --l2-precision "$L2_PRECISION" "${FLOOR[@]}" --seed "$s" --json "$dir/paired.json" > "$dir/paired.md" 2> "$dir/paired.log"
  echo "seed $s done: $dir/paired.md"
}

pids=()
for s in $SEEDS; do
  if [ "$JOBS" = all ]; then one_seed "$s" & pids+=($!); else one_seed "$s"; fi
done
for p in "${pids[@]}"; do wait "$p"; done
