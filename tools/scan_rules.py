"""Each decision rule's verdict and statistic read off one row of a `scan.csv`, in one place for
tools/scan_rows.py and tools/scan_compare.py. It mirrors `RuleName` in src/scan/mod.rs (the metrics
`scan` writes): consensus = the pooled index where dense model and ticket agree (else no statistic),
ticket = the ticket's log index, dense-log = the dense model's log index, nc-linear = Neural Cleanse
(the dense model's linear index), calibrated = calibrated consensus and size = the size rule (both
only in a scan made with `--calibration`), warp = the warp inversion's best attack success (flagged at
>= WARP_FLAG_ASR) and size-warp = size or warp, the target by the warp where it flags (src/detect/calibrate.rs
`size_warp`). A row's threshold is its own `threshold` column (2 when absent).
"""

WARP_FLAG_ASR = 0.5  # src/reverse/warp.rs

RULES = ("consensus", "ticket", "dense-log", "nc-linear")


def num(v):
    return None if v in ("", None) else float(v)


def threshold(r):
    return num(r.get("threshold")) or 2.0


def calibrated(rows):
    """Whether the scan carries the calibrated rule (made with `scan --calibration`)."""
    return any(r.get("calibrated_references") for r in rows)


def statistic(r, rule):
    """The rule's decision statistic; -1 when the rule names nothing (as `scan`'s ROC; the size rule's
    z can be any real number, so a row without it ranks below every row)."""
    if rule == "size":
        v = num(r.get("size_z"))
        return float("-inf") if v is None else v
    if rule == "warp":
        v = num(r.get("warp_asr"))
        return float("-inf") if v is None else v
    if rule == "size-warp":
        z, a = num(r.get("size_z")), num(r.get("warp_asr"))
        th = threshold(r)
        s = float("-inf") if z is None else (z / th if th > 0 else z)
        w = float("-inf") if a is None else a / WARP_FLAG_ASR
        return max(s, w)
    if rule == "consensus":
        v = num(r["pooled_ai"]) if r["agree"] == "true" else None
    else:
        col = {"ticket": "ticket_ai", "dense-log": "dense_ai", "nc-linear": "dense_ai_linear",
               "calibrated": "calibrated_ai"}[rule]
        v = num(r.get(col))
    return -1.0 if v is None else v


def warp_flags(r):
    a = num(r.get("warp_asr"))
    return a is not None and a >= WARP_FLAG_ASR


def target(r, rule):
    """The label the rule names."""
    if rule == "warp":
        return r.get("warp_target", "")
    if rule == "size-warp":
        return r.get("warp_target", "") if warp_flags(r) else r.get("size_target", "")
    return {"ticket": r["ticket_target"], "calibrated": r.get("calibrated_target", ""),
            "size": r.get("size_target", "")}.get(rule, r["dense_target"])


def verdict(r, rule):
    """(flagged at the row's threshold, named target)."""
    if rule == "warp":
        return warp_flags(r), target(r, rule)
    if rule == "size-warp":
        z = num(r.get("size_z"))
        return (z is not None and z > threshold(r)) or warp_flags(r), target(r, rule)
    return statistic(r, rule) > threshold(r), target(r, rule)


def verdicts(r):
    """Every rule the row carries: {rule: (flagged, target)}."""
    rules = RULES + (("calibrated",) if r.get("calibrated_references") else ()) + (("size",) if r.get("size_z") else ())
    rules += (("warp",) if r.get("warp_asr") else ()) + (("size-warp",) if r.get("size_z") and r.get("warp_asr") else ())
    return {rule: verdict(r, rule) for rule in rules}


def truth(r):
    """'T' (poisoned and the backdoor took), 'c' (clean) or None (did not take, or unknown: not scored)."""
    if r["truth_poisoned"] == "true":
        return "T" if r["truth_backdoor_took"] != "false" else None
    return "c" if r["truth_poisoned"] == "false" else None


def truth_text(r):
    """'clean', 'ATTACK to T' (', did not take'), or '?' where the ground truth is unknown."""
    if r["truth_poisoned"] == "true":
        took = "" if r["truth_backdoor_took"] != "false" else ", did not take"
        return f"{r['truth_attack']} to {r['truth_target']}{took}"
    return "clean" if r["truth_poisoned"] == "false" else "?"


def show(v):
    """A verdict as a table cell: 'T n' when flagged, '-' when not."""
    flag, t = v
    return f"T {t}" if flag else "-"


def auc(pos, neg):
    """Mann-Whitney ROC-AUC, ties counted half (None without both classes)."""
    if not pos or not neg:
        return None
    s = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return s / (len(pos) * len(neg))
