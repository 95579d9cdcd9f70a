#!/usr/bin/env bash
# Data-free `detect` on the built-in demo-recipe models (README "Data-free detection on the built-in
# data"). Models: `quarantine train --data builtin --arch cnn --epochs 6 --seed S --attack badnets
# --trigger T --target TARGET --poison-ratio 0.05 --out MODELS/T-S/trojaned` (paper-gray 102/103/104
# with targets 2/9/4, paper-rgb 102/104/105 with targets 2/4/6; the demo's recipe and targets) and
# clean controls `quarantine train --data builtin --arch cnn --epochs 6 --seed S --out
# MODELS/clean-S` (S = 102, 103, 104). Runs one model at a time (2 cores).
#   bash tools/dfree_detect.sh MODELS synth:100 OUT_DIR     (EXTRA='--free-score-data noise' adds flags)
#   python3 tools/dfree_table.py OUT_SYNTH OUT_NOISE
set -u
models=$1; seeds=$2; outdir=$3
Q=${Q:-target/release/quarantine}
mkdir -p "$outdir"
for m in paper-gray-102:2 paper-gray-103:9 paper-gray-104:4 paper-rgb-102:2 paper-rgb-104:4 paper-rgb-105:6 clean-102:- clean-103:- clean-104:-; do
  name=${m%%:*}; truth=${m##*:}
  model=$models/$name/trojaned/model.safetensors
  [ "$truth" = - ] && model=$models/$name/model.safetensors
  out=$outdir/$name
  [ -f "$out/detect.json" ] && continue
  s=$(date +%s)
  "$Q" --threads 2 detect --model "$model" --out "$out" --steps 20 --score-from 8 --reverse-epochs 80 \
      --seeds "$seeds" --seed "${name##*-}" ${EXTRA:-} --force 2>"$out.err" >/dev/null
  echo "$name truth=$truth $(grep verdict: "$out.err") [$(( $(date +%s) - s )) s]"
done
