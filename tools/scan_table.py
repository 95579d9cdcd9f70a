"""README table of one or more scans' metrics.json: every rule's ROC-AUC, TPR at 5% FPR, accuracy
and FPR at its threshold, and target accuracy, with bootstrap 95% intervals.

Run: python3 tools/scan_table.py LABEL=SCAN_OUT [LABEL=SCAN_OUT ...]
"""
import json
import sys


def est(e):
    return "-" if e is None else f"{e['value']:.3f} [{e['low']:.3f}, {e['high']:.3f}]"


def main():
    print("| scan | rule | ROC-AUC | TPR at 5% FPR | accuracy | FPR | target accuracy | Trojaned / clean |")
    print("|---|---|---|---|---|---|---|---|")
    for arg in sys.argv[1:]:
        label, path = arg.split("=", 1)
        m = json.load(open(f"{path}/metrics.json"))
        for r in m["rules"]:
            print(f"| {label} | {r['rule']} | {est(r['auc'])} | {est(r['tpr_at_5_fpr'])} | {est(r['accuracy'])} | "
                  f"{est(r['fpr'])} | {est(r['target_accuracy'])} | {m['trojaned']} / {m['clean']} |")


if __name__ == "__main__":
    main()
