"""Summary of a zoo (README "Populations"): per architecture and attack kind, how many models, how
many backdoors took (non-target attack success >= 0.5), clean accuracy and attack success (means).

Run: python3 tools/zoo_summary.py ZOO_DIR [ZOO_DIR ...]   (prints a Markdown table)
A ZOO_DIR is a zoo (`id-*/config.json`) or a folder of its records as committed
(`docs/zoos/NAME/id-*.json`).
"""
import json
import os
import sys
from collections import defaultdict


def main():
    groups = defaultdict(list)
    for zoo in sys.argv[1:]:
        for d in sorted(os.listdir(zoo)):
            p = os.path.join(zoo, d) if d.endswith(".json") else os.path.join(zoo, d, "config.json")
            if not d.startswith("id-") or not os.path.exists(p):
                continue
            r = json.load(open(p))
            groups[(r.get("zoo", zoo), r["arch"], r.get("attack_kind") or "clean")].append(r)
    print("| zoo | arch | attack | models | backdoor took | clean accuracy (mean) | attack success, non-target (mean) |")
    print("|---|---|---|---|---|---|---|")
    for (zoo, arch, kind), rs in sorted(groups.items()):
        acc = [r["clean_accuracy"] for r in rs if r.get("clean_accuracy") is not None]
        asr = [r["attack_success_rate_nontarget"] for r in rs if r.get("attack_success_rate_nontarget") is not None]
        took = sum(1 for r in rs if r.get("backdoor_took"))
        mean = lambda v: f"{sum(v) / len(v):.3f}" if v else "-"
        print(f"| {zoo} | {arch} | {kind} | {len(rs)} | {took if kind != 'clean' else '-'} | {mean(acc)} | {mean(asr)} |")


if __name__ == "__main__":
    main()
