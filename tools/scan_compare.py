"""Two scans of the same models side by side (issue 14's verdict parity over a population): one
Markdown line per model found in both `scan.csv` files (by id), then each rule's ROC-AUC, FPR at
threshold 2 and target accuracy on the shared models, and the mean seconds per model by
architecture. A pair of rows of the same id is the same model only when the zoo was retrained
bit-identically (same CPU kind and threads); check one model's dense anomaly index first.

Run: python3 tools/scan_compare.py OLD/scan.csv NEW/scan.csv [OLD_NAME NEW_NAME]
"""
import csv
import sys
from collections import defaultdict

from scan_rules import RULES, auc, num, show, statistic, truth, truth_text, verdicts


def called(v):
    """A verdict as the auditor reads it: the target when flagged, else only 'clean'."""
    flag, target = v
    return target if flag else None


def main():
    old_path, new_path = sys.argv[1], sys.argv[2]
    names = sys.argv[3:5] if len(sys.argv) >= 5 else ["old", "new"]
    old = {r["id"]: r for r in csv.DictReader(open(old_path)) if r["status"] == "ok"}
    new = {r["id"]: r for r in csv.DictReader(open(new_path)) if r["status"] == "ok"}
    ids = sorted(set(old) & set(new))
    print(f"| id | arch | truth | {names[0]}: dense / ticket, pooled | consensus | s | {names[1]}: dense / ticket, pooled | consensus | s | same |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for i in ids:
        a, b = old[i], new[i]
        t = truth_text(a)
        cells = []
        for r in (a, b):
            p = num(r["pooled_ai"]) if r["agree"] == "true" else None
            pooled = "-" if p is None else f"{p:.2f}"
            cells.append(f"{r['dense_target']} / {r['ticket_target']}, {pooled} | {show(verdicts(r)['consensus'])} | {float(r['seconds']):.0f}")
        same = "yes" if called(verdicts(a)["consensus"]) == called(verdicts(b)["consensus"]) else "**no**"
        print(f"| {i} | {a['truth_arch']} | {t} | {cells[0]} | {cells[1]} | {same} |")
    print()
    print(f"| rule | {names[0]}: AUC | FPR | target acc. | {names[1]}: AUC | FPR | target acc. | verdicts changed |")
    print("|---|---|---|---|---|---|---|---|")
    scored = [i for i in ids if truth(old[i])]
    for rule in RULES:
        cells = []
        for rows in (old, new):
            pos = [statistic(rows[i], rule) for i in scored if truth(rows[i]) == "T"]
            neg = [statistic(rows[i], rule) for i in scored if truth(rows[i]) == "c"]
            fp = sum(verdicts(rows[i])[rule][0] for i in scored if truth(rows[i]) == "c")
            tp = [i for i in scored if truth(rows[i]) == "T" and verdicts(rows[i])[rule][0]]
            hit = sum(verdicts(rows[i])[rule][1] == rows[i]["truth_target"] for i in tp)
            a = auc(pos, neg)
            cells.append(f"{'-' if a is None else f'{a:.3f}'} | {fp}/{len(neg)} | {hit}/{len(tp)}")
        changed = sum(called(verdicts(old[i])[rule]) != called(verdicts(new[i])[rule]) for i in ids)
        print(f"| {rule} | {cells[0]} | {cells[1]} | {changed} of {len(ids)} |")
    print()
    for name, rows in zip(names, (old, new)):
        by = defaultdict(list)
        for i in ids:
            by[rows[i]["truth_arch"]].append(float(rows[i]["seconds"]))
        print(name + ": " + ", ".join(f"{k} {sum(v) / len(v):.0f} s ({len(v)} models)" for k, v in sorted(by.items())))


if __name__ == "__main__":
    main()
