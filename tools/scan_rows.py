"""One Markdown line per model of a scan (README "Populations"): ground truth, then what the dense
model and the winning ticket point at (label and log-scale anomaly index), the pooled index where
they agree, and each rule's verdict at threshold 2 (T = flagged Trojaned with that target, - = clean);
with a calibrated scan (`scan --calibration`), also the calibrated consensus: agreed label (pooled
index after calibration) and its verdict.

Run: python3 tools/scan_rows.py SCAN_OUT      (reads SCAN_OUT/scan.csv)
"""
import csv
import sys


def verdict(flag, target):
    return f"T {target}" if flag else "-"


def main():
    rows = list(csv.DictReader(open(f"{sys.argv[1]}/scan.csv")))
    cal = any(r.get("calibrated_references") for r in rows)
    head = ["id", "arch", "truth", "dense: label (index)", "ticket: label (index)", "pooled", "consensus",
            "ticket rule", "dense, log", "NC (linear)"]
    head += ["calibrated: label (index)", "calibrated"] if cal else []
    head += ["ticket phenomenon"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    num = lambda v: None if v in ("", None) else float(v)
    for r in rows:
        if r["status"] != "ok":
            print(f"| {r['id']} | | error: {r['error']} |" + " |" * (len(head) - 3))
            continue
        th = num(r["threshold"]) or 2.0
        if r["truth_poisoned"] == "true":
            took = "" if r["truth_backdoor_took"] != "false" else ", did not take"
            truth = f"{r['truth_attack']} to {r['truth_target']}{took}"
        elif r["truth_poisoned"] == "false":
            truth = "clean"
        else:
            truth = "?"
        ai = lambda v: "-" if v is None else f"{v:.2f}"
        agree = r["agree"] == "true"
        pooled = num(r["pooled_ai"]) if agree else None
        cells = [r["id"], r["truth_arch"] or "?", truth, f"{r['dense_target']} ({ai(num(r['dense_ai']))})",
                 f"{r['ticket_target']} ({ai(num(r['ticket_ai']))})", ai(pooled),
                 verdict(agree and pooled is not None and pooled > th, r["dense_target"]),
                 verdict((num(r["ticket_ai"]) or -1) > th, r["ticket_target"]),
                 verdict((num(r["dense_ai"]) or -1) > th, r["dense_target"]),
                 verdict((num(r["dense_ai_linear"]) or -1) > th, r["dense_target"])]
        if cal:
            c, t = num(r["calibrated_ai"]), r["calibrated_target"]
            cells += [f"{t} ({ai(c)})" if t else "-", verdict(c is not None and c > th, t)]
        cells.append({"true": "yes", "false": "no"}.get(r["ticket_phenomenon"], "-"))
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
