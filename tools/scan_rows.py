"""One Markdown line per model of a scan (README "Populations"): ground truth, then what the dense
model and the winning ticket point at (label and log-scale anomaly index), the pooled index where
they agree, and each rule's verdict at threshold 2 (T = flagged Trojaned with that target, - = clean).

Run: python3 tools/scan_rows.py SCAN_OUT
"""
import glob
import json
import sys


def verdict(flag, target):
    return f"T {target}" if flag else "-"


def main():
    print("| id | arch | truth | dense: label (index) | ticket: label (index) | pooled | consensus | ticket rule | dense, log | NC (linear) | ticket phenomenon |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for f in sorted(glob.glob(f"{sys.argv[1]}/rows/*.json")):
        r = json.load(open(f))
        if r["status"] != "ok":
            print(f"| {r['id']} | | error: {r['error']} |" + " |" * 8)
            continue
        th = r.get("threshold") or 2.0
        if r.get("truth_poisoned"):
            took = "" if r.get("truth_backdoor_took") is not False else ", did not take"
            truth = f"{r.get('truth_attack')} to {r.get('truth_target')}{took}"
        elif r.get("truth_poisoned") is False:
            truth = "clean"
        else:
            truth = "?"
        ai = lambda v: "-" if v is None else f"{v:.2f}"
        agree = r.get("agree")
        pooled = r.get("pooled_ai") if agree else None
        cons = verdict(bool(agree) and pooled is not None and pooled > th, r["dense_target"])
        tick = verdict((r.get("ticket_ai") or -1) > th, r["ticket_target"])
        dense = verdict((r.get("dense_ai") or -1) > th, r["dense_target"])
        nc = verdict((r.get("dense_ai_linear") or -1) > th, r["dense_target"])
        ph = {True: "yes", False: "no", None: "-"}[r.get("ticket_phenomenon")]
        print(f"| {r['id']} | {r.get('truth_arch') or '?'} | {truth} | {r['dense_target']} ({ai(r.get('dense_ai'))}) | "
              f"{r['ticket_target']} ({ai(r.get('ticket_ai'))}) | {ai(pooled)} | {cons} | {tick} | {dense} | {nc} | {ph} |")


if __name__ == "__main__":
    main()
