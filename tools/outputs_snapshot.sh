#!/usr/bin/env bash
# Runs detect, score, reverse, demo and run on tiny fixtures with the given binary and writes every
# JSON/CSV output into OUT (a fixed path, so that two binaries' outputs can be compared with
# tools/compare_outputs.py). Used to show that a refactor leaves the outputs unchanged.
#   bash tools/outputs_snapshot.sh path/to/quarantine /tmp/snap
set -euo pipefail
BIN=$(readlink -f "$1"); OUT=$2
rm -rf "$OUT"; mkdir -p "$OUT"; cd "$OUT"
q() { "$BIN" --threads 2 "$@" > /dev/null 2>> log.txt; }
q train --data builtin --arch cnn --epochs 1 --seed 1 --attack badnets --target 1 --poison-ratio 0.05 --out train
M=train/model.safetensors
q detect --model $M --steps 4 --score-from 2 --k 2 --score-samples 64 --seeds noise:8 --reverse-epochs 2 --seed 1 --out detect-noise
q detect --model $M --data builtin --steps 4 --score-from 2 --k 2 --score-samples 64 --seeds data:builtin:8 --reverse-epochs 2 --seed 2 --decide ticket --out detect-data
q detect --model $M --steps 3 --k 2 --score-samples 32 --seeds synth:10 --reverse-epochs 2 --seed 3 --out detect-synth
q prune --model $M --data builtin --method omp --steps 3 --seed 1 --attack badnets --target 1 --poison-ratio 0.05 --out prune
q score --run prune --k 2 --score-samples 64
q reverse --model $M --seeds noise:8 --epochs 2 --labels 0,1,2 --test-data builtin --true-trigger reference-upper-right:5 --out reverse
q demo --seed 5 --epochs 1 --steps 3 --reverse-epochs 2 --clean-images 8 --out demo
cat > exp.toml <<'TOML'
name = "tiny"
seed = 4
data = "builtin"
[attack]
attack = "badnets"
target = 2
poison-ratio = 0.05
[train]
arch = "cnn"
epochs = 1
[prune]
method = "omp"
steps = 3
[score]
k = 2
score-samples = 64
[reverse]
epochs = 2
seeds = "noise:8"
TOML
q run exp.toml --out run
echo "snapshot written to $OUT"
