"""Where a scan's time went: per architecture, the mean seconds of each detect phase (seed
synthesis, pruning path, score, reverse engineering of the dense model and of the ticket, warp
inversion; 0 in records before it) and the
throughput in models per hour per core, from the `models/<id>/detect.json` of a scan output and the
zoo's `config.json` files (for the architecture).

Run: python3 tools/scan_timings.py SCAN_OUT ZOO_DIR [THREADS]
THREADS: the --threads each scan process ran with (cores per model), default 2.
"""
import glob
import json
import os
import sys
from collections import defaultdict


def main():
    scan, zoo = sys.argv[1], sys.argv[2]
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    phases = ["seeds", "prune", "score", "reverse_dense", "reverse_ticket", "warp", "total"]
    by_arch = defaultdict(list)
    for f in sorted(glob.glob(f"{scan}/models/*/detect.json")):
        mid = os.path.basename(os.path.dirname(f))
        t = json.load(open(f)).get("timings")
        cfg = os.path.join(zoo, mid, "config.json")
        if not t or not os.path.exists(cfg):
            continue
        by_arch[json.load(open(cfg))["arch"]].append(t)
    print("| arch | models | " + " | ".join(f"{p} (s)" for p in phases) + " | models / hour / core |")
    print("|---|---|" + "---|" * (len(phases) + 1))
    for arch, ts in sorted(by_arch.items()):
        mean = {p: sum(t.get(p, 0.0) for t in ts) / len(ts) for p in phases}
        rate = 3600 / (mean["total"] * threads)
        print(f"| {arch} | {len(ts)} | " + " | ".join(f"{mean[p]:.0f}" for p in phases) + f" | {rate:.1f} |")


if __name__ == "__main__":
    main()
