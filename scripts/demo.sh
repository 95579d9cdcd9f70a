#!/usr/bin/env bash
# The README's first command: sets up libtorch (once), builds, and runs the demo on the built-in data:
# a BadNets-Trojaned cnn (paper-gray trigger, 1% poison, target 0), its one-shot pruning path, and the
# Trojan score along it with the winning Trojan ticket. Results in runs/demo/ (replaced on each run).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo build --release --bin quarantine
Q=./target/release/quarantine
OUT=${1:-runs/demo}
ATTACK=(--attack badnets --trigger paper-gray --target 0 --seed 1)
$Q train --data builtin --arch cnn --epochs 12 --out "$OUT" --force "${ATTACK[@]}"
$Q prune --model "$OUT/model.safetensors" --data builtin --method omp --steps 27 --out "$OUT/omp" --force "${ATTACK[@]}"
$Q score --run "$OUT/omp" --force
echo "demo: model, tickets, dynamics.png and the winning Trojan ticket are in $OUT/" >&2
