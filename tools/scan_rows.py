"""One Markdown line per model of a scan (README "Populations"): ground truth, then what the dense
model and the winning ticket point at (label and log-scale anomaly index), the pooled index where
they agree, and each rule's verdict at threshold 2 (T = flagged Trojaned with that target, - = clean);
with a calibrated scan (`scan --calibration`), also the calibrated consensus: agreed label (pooled
index after calibration) and its verdict, and the size rule: named label (z) and its verdict; with the
warp inversion, its label (attack success; the next label's) and the size-warp verdict.

Run: python3 tools/scan_rows.py SCAN_OUT      (reads SCAN_OUT/scan.csv)
"""
import csv
import sys

from scan_rules import calibrated, num, show, truth_text, verdicts


def main():
    rows = list(csv.DictReader(open(f"{sys.argv[1]}/scan.csv")))
    cal = calibrated(rows)
    head = ["id", "arch", "truth", "dense: label (index)", "ticket: label (index)", "pooled", "consensus",
            "ticket rule", "dense, log", "NC (linear)"]
    sized = any(r.get("size_z") for r in rows)
    head += ["calibrated: label (index)", "calibrated"] if cal else []
    head += ["size: label (z)", "size"] if sized else []
    warped = any(r.get("warp_asr") for r in rows)
    head += ["warp: label (attack success; next)", "size-warp"] if warped else []
    head += ["ticket phenomenon"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        if r["status"] != "ok":
            print(f"| {r['id']} | | error: {r['error']} |" + " |" * (len(head) - 3))
            continue
        v = verdicts(r)
        ai = lambda x: "-" if x is None else f"{x:.2f}"
        agree = r["agree"] == "true"
        pooled = num(r["pooled_ai"]) if agree else None
        cells = [r["id"], r["truth_arch"] or "?", truth_text(r), f"{r['dense_target']} ({ai(num(r['dense_ai']))})",
                 f"{r['ticket_target']} ({ai(num(r['ticket_ai']))})", ai(pooled),
                 show(v["consensus"]), show(v["ticket"]), show(v["dense-log"]), show(v["nc-linear"])]
        if cal:
            c, t = num(r["calibrated_ai"]), r["calibrated_target"]
            cells += [f"{t} ({ai(c)})" if t else "-", show(v["calibrated"]) if "calibrated" in v else "-"]
        if sized:
            z, t = num(r.get("size_z")), r.get("size_target")
            cells += [f"{t} ({ai(z)})" if t else "-", show(v["size"]) if "size" in v else "-"]
        if warped:
            a, t, nxt = num(r.get("warp_asr")), r.get("warp_target"), num(r.get("warp_runner_up"))
            cells += [f"{t} ({ai(a)}; {ai(nxt)})" if t else "-", show(v["size-warp"]) if "size-warp" in v else "-"]
        cells.append({"true": "yes", "false": "no"}.get(r["ticket_phenomenon"], "-"))
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
