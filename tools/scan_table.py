"""README tables of one or more scans' metrics.json: every rule's ROC-AUC, TPR at 5% FPR, accuracy
and FPR at its threshold, and target accuracy, with bootstrap 95% intervals; then, per group of
models (Trojaned per attack kind, clean per architecture), how many each rule flagged (with the
right target).

Run: python3 tools/scan_table.py LABEL=SCAN_OUT [LABEL=SCAN_OUT ...]
"""
import json
import sys


def est(e):
    return "-" if e is None else f"{e['value']:.3f} [{e['low']:.3f}, {e['high']:.3f}]"


def main():
    scans = [(a.split("=", 1)[0], json.load(open(f"{a.split('=', 1)[1]}/metrics.json"))) for a in sys.argv[1:]]
    print("| scan | rule | ROC-AUC | TPR at 5% FPR | accuracy | FPR | target accuracy | Trojaned / clean |")
    print("|---|---|---|---|---|---|---|---|")
    for label, m in scans:
        for r in m["rules"]:
            print(f"| {label} | {r['rule']} | {est(r['auc'])} | {est(r['tpr_at_5_fpr'])} | {est(r['accuracy'])} | "
                  f"{est(r['fpr'])} | {est(r['target_accuracy'])} | {m['trojaned']} / {m['clean']} |")
    for label, m in scans:
        rules = m["rules"]
        if not rules or not rules[0].get("groups"):
            continue
        print()
        print(f"{label}: flagged (right target) of models, at the threshold")
        print()
        print("| group | " + " | ".join(r["rule"] for r in rules) + " |")
        print("|---|" + "---|" * len(rules))
        for k, g in enumerate(rules[0]["groups"]):
            cells = []
            for r in rules:
                x = r["groups"][k]
                cells.append(f"{x['flagged']} of {x['models']}" if x["group"].startswith("clean")
                             else f"{x['flagged']} ({x['right_target']}) of {x['models']}")
            print(f"| {g['group']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
