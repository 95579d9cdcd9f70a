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

TH = 2.0


def num(v):
    return None if v in ("", None) else float(v)


def verdicts(r):
    """Each rule's (flagged, target) at threshold 2, as tools/scan_rows.py reads them."""
    agree = r["agree"] == "true"
    pooled = num(r["pooled_ai"]) if agree else None
    return {
        "consensus": (pooled is not None and pooled > TH, r["dense_target"]),
        "ticket": ((num(r["ticket_ai"]) or -1) > TH, r["ticket_target"]),
        "dense-log": ((num(r["dense_ai"]) or -1) > TH, r["dense_target"]),
        "nc-linear": ((num(r["dense_ai_linear"]) or -1) > TH, r["dense_target"]),
    }


def statistic(r, rule):
    """The rule's decision statistic (the consensus rule's is the pooled index where dense and
    ticket agree, else -1, as scan's metrics)."""
    if rule == "consensus":
        return num(r["pooled_ai"]) if r["agree"] == "true" and r["pooled_ai"] else -1.0
    col = {"ticket": "ticket_ai", "dense-log": "dense_ai", "nc-linear": "dense_ai_linear"}[rule]
    v = num(r[col])
    return -1.0 if v is None else v


def auc(pos, neg):
    """Mann-Whitney ROC-AUC, ties counted half."""
    if not pos or not neg:
        return None
    s = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return s / (len(pos) * len(neg))


def truth(r):
    """'T' (poisoned and the backdoor took), 'c' (clean) or None (did not take: not scored)."""
    if r["truth_poisoned"] == "true":
        return "T" if r["truth_backdoor_took"] != "false" else None
    return "c" if r["truth_poisoned"] == "false" else None


def called(v):
    """A verdict as the auditor reads it: the target when flagged, else only 'clean'."""
    flag, target = v
    return target if flag else None


def show(v):
    flag, target = v
    return f"T {target}" if flag else "-"


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
        if a["truth_poisoned"] == "true":
            t = f"{a['truth_attack']} to {a['truth_target']}" + (", did not take" if truth(a) is None else "")
        else:
            t = "clean"
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
    for rule in ("consensus", "ticket", "dense-log", "nc-linear"):
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
