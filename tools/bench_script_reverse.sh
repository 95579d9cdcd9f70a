#!/usr/bin/env bash
# The price of a foreign model (BENCHMARKS.md "TorchScript"): trigger reverse engineering on the same
# random-weight ResNet-20s as the built-in network and as a TorchScript export (torch.jit.script),
# interleaved, REPS times each. Needs the full PyTorch venv (QUARANTINE_TORCH=full bash scripts/setup-torch.sh).
#   bash tools/bench_script_reverse.sh [EPOCHS=10] [REPS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-10}
REPS=${2:-3}
PY=${PY:-$HOME/.cache/quarantine/venv-torch-2.13.0-full/bin/python}
Q=${Q:-target/release/quarantine}
T=${TMPDIR:-/tmp}/bench-script
mkdir -p "$T"
"$PY" tools/bench_reverse_torch.py --save "$T/r20.pt" >/dev/null
"$PY" tools/bench_reverse_torch.py --script "$T/r20.script.pt" >/dev/null
for rep in $(seq "$REPS"); do
    for kind in builtin torchscript; do
        if [ "$kind" = builtin ]; then m=(--model "$T/r20.pt" --arch resnet20s); else m=(--model "$T/r20.script.pt"); fi
        start=$(date +%s.%N)
        "$Q" --threads 2 reverse "${m[@]}" --normalize none --seeds noise:100 --epochs "$EPOCHS" --out "$T/out-$kind" --force --json >"$T/$kind-$rep.json" 2>/dev/null
        end=$(date +%s.%N)
        python3 - "$kind" "$rep" "$start" "$end" "$T/$kind-$rep.json" "$EPOCHS" <<'PY'
import json, sys
kind, rep, start, end, path, epochs = sys.argv[1:]
r = json.load(open(path))
l1 = [round(x["l1"], 2) for x in r.get("labels", r.get("results", []))] if isinstance(r, dict) else []
secs = float(end) - float(start)
print(json.dumps({"kind": kind, "rep": int(rep), "wall_s": round(secs, 2), "s_per_epoch": round(secs / int(epochs), 3), "l1": l1}))
PY
    done
done
