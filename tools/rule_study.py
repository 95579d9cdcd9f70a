#!/usr/bin/env python3
"""Replays decision rules offline over finished scans (issue 16: "use the zoo to improve the default
detector"), from each model's per-label mask l1 norms in SCAN/models/<id>/detect.json and the
ground truth in SCAN/rows/<id>.json. No detect is rerun, so any rule over the dense and ticket
reverse engineering can be compared on the same runs.

Rules (all on the log scale, anomaly index = (median - x_i) / (1.4826 MAD) of the smallest x_i):
- consensus, ticket, dense-log: as `detect` computes them (checked against the rows).
- calibrated-*: the same rules after subtracting, per architecture and per label, the mean offset
  (ln l1_label - median_labels ln l1) of that label over the *clean* reference models: a label
  that is small in every clean model of the data (a "natural backdoor", e.g. the built-in data's
  "bag") is not an outlier any more. Reference models are the clean models of --calibrate-from
  scans (default: the evaluated scans themselves, leaving out the model being judged).

    python3 tools/rule_study.py runs/scan-tune2 [--calibrate-from runs/scan-tune2] [--threshold 2]
"""
import argparse
import json
import math
import os
import statistics
from collections import defaultdict

MAD = 1.4826


def load(scan):
    out = []
    for f in sorted(os.listdir(os.path.join(scan, "rows"))):
        row = json.load(open(os.path.join(scan, "rows", f)))
        if row.get("status") != "ok":
            continue
        det = os.path.join(scan, "models", row["id"], "detect.json")
        if not os.path.exists(det):
            continue
        d = json.load(open(det))
        lab = lambda part: [math.log(l["l1"]) for l in sorted(d[part]["labels"], key=lambda l: l["label"])]
        out.append(dict(scan=scan, id=row["id"], arch=row.get("truth_arch") or d["model"]["meta"]["arch"],
                        poisoned=row.get("truth_poisoned"), took=row.get("truth_backdoor_took"),
                        target=row.get("truth_target"), attack=row.get("truth_attack"),
                        dense=lab("dense"), ticket=lab("ticket"), row=row))
    return out


def anomaly_of(x, i):
    """Anomaly index of entry i over x (values already on the anomaly scale), as reverse/eval.rs."""
    med = statistics.median(x)
    mad = statistics.median([abs(v - med) for v in x])
    below = med - x[i]
    return 0.0 if below <= 0 else math.inf if mad == 0 else below / (MAD * mad)


def index(x):
    """(argmin, its anomaly index)."""
    i = min(range(len(x)), key=lambda k: x[k])
    return i, anomaly_of(x, i)


def offsets(models):
    """Per (arch, part): per label mean of (x_label - median x) over the given models."""
    acc = defaultdict(list)
    for m in models:
        for part in ("dense", "ticket"):
            med = statistics.median(m[part])
            acc[(m["arch"], part)].append([v - med for v in m[part]])
    return {k: [statistics.mean(col) for col in zip(*v)] for k, v in acc.items()}


def rules(m, off):
    """Each rule's (statistic, named target); statistic -1 when the rule names nothing."""
    def parts(cal):
        xs = {}
        for part in ("dense", "ticket"):
            o = off.get((m["arch"], part)) if cal else None
            xs[part] = [v - (o[j] if o else 0.0) for j, v in enumerate(m[part])]
        return xs

    out = {}
    for cal in (False, True):
        xs = parts(cal)
        (di, da), (ti, ta) = index(xs["dense"]), index(xs["ticket"])
        pooled = [(a + b) / 2 for a, b in zip(xs["dense"], xs["ticket"])]
        pre = "calibrated-" if cal else ""
        out[pre + "consensus"] = (anomaly_of(pooled, di) if di == ti else -1.0, di)
        out[pre + "ticket"] = (ta, ti)
        out[pre + "dense-log"] = (da, di)
    return out


def size_rule(m, refs, parts=("dense", "ticket")):
    """(z, named label) of the size rule against `refs` (same architecture), or (-1, None) with
    fewer than 3 references. `parts=("dense",)`: the same on the dense model alone (size-dense, not
    pre-registered: is the ticket needed?)."""
    refs = [r for r in refs if r["arch"] == m["arch"]]
    if len(refs) < 3:
        return -1.0, None
    pooled = lambda x: [sum(v) / len(parts) for v in zip(*[x[p] for p in parts])]
    mean = lambda rs, f: [statistics.mean(col) for col in zip(*[f(r) for r in rs])]
    shift = lambda x, mu: [a - b for a, b in zip(x, mu)]
    s = shift(pooled(m), mean(refs, pooled))
    null = [min(shift(pooled(r), mean([q for q in refs if q is not r], pooled))) for r in refs]
    mu, sd, low = statistics.mean(null), statistics.stdev(null), min(s)
    z = (mu - low) / sd if sd > 0 else (math.inf if mu > low else 0.0)
    d = shift(m["dense"], mean(refs, lambda r: r["dense"]))
    return z, min(range(len(d)), key=lambda j: d[j])


def auc(pos, neg):
    if not pos or not neg:
        return float("nan")
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scans", nargs="+")
    ap.add_argument("--calibrate-from", nargs="*", default=None)
    ap.add_argument("--threshold", type=float, default=2.0)
    ap.add_argument("--per-model", action="store_true")
    a = ap.parse_args()
    models = [m for s in a.scans for m in load(s)]
    refs = [m for s in (a.calibrate_from or []) for m in load(s) if m["poisoned"] is False]
    measured = [m for m in models if m["poisoned"] is False or m["took"] is True]
    stats = defaultdict(list)
    for m in measured:
        if a.calibrate_from is None:  # leave-one-out over the evaluated scans' clean models
            ref = [r for r in models if r["poisoned"] is False and r is not m]
        else:
            ref = [r for r in refs if not (r["id"] == m["id"] and r["scan"] == m["scan"])]
        r = rules(m, offsets(ref))
        r["size"] = size_rule(m, ref)
        r["size-dense"] = size_rule(m, ref, ("dense",))
        # The uncalibrated rules must reproduce what detect recorded.
        row = m["row"]
        if row.get("dense_ai") is not None:
            assert abs(r["dense-log"][0] - row["dense_ai"]) < 1e-6, (m["id"], r["dense-log"], row["dense_ai"])
        for name, (s, t) in r.items():
            stats[name].append((m, s, t))
        if a.per_model:
            show = " ".join(f"{k}={v[0]:.2f}@{v[1]}" for k, v in r.items())
            print(f"{m['scan']}/{m['id']} {m['arch']} {'T' + str(m['target']) if m['poisoned'] else 'clean'}: {show}")
    npos = sum(1 for m in measured if m["poisoned"])
    print(f"{len(measured)} models ({npos} Trojaned that took, {len(measured) - npos} clean), threshold {a.threshold}")
    print("| rule | ROC-AUC | TPR | FPR | target accuracy (flagged Trojaned) |")
    print("|---|---|---|---|---|")
    for name, v in stats.items():
        pos = [s for m, s, t in v if m["poisoned"]]
        neg = [s for m, s, t in v if not m["poisoned"]]
        tp = [(m, t) for m, s, t in v if m["poisoned"] and s > a.threshold]
        fp = sum(1 for m, s, t in v if not m["poisoned"] and s > a.threshold)
        right = sum(1 for m, t in tp if t == m["target"])
        print(f"| {name} | {auc(pos, neg):.3f} | {len(tp)}/{len(pos)} | {fp}/{len(neg)} | {right}/{len(tp)} |")


if __name__ == "__main__":
    main()
