"""Markdown table of data-free `detect` runs made by tools/dfree_detect.sh, several variants side by side
(README "Data-free detection on the built-in data"): per model the dense model's and the ticket's
smallest mask (label: l1, anomaly index), the ticket density, the verdict of the consensus rule
(detect's default) and of the paper's ticket rule (`--decide ticket`: the ticket's own anomaly index),
then totals per variant.
Run: python3 tools/dfree_table.py LABEL=OUT_DIR [LABEL=OUT_DIR ...]
"""
import json, os, sys

ROWS = ["paper-gray-102:2", "paper-gray-103:9", "paper-gray-104:4", "paper-rgb-102:2", "paper-rgb-104:4", "paper-rgb-105:6", "clean-102:-", "clean-103:-", "clean-104:-"]


def find(d, name):
    for n in (name, f"{name}-trojaned"):
        p = os.path.join(d, n, "detect.json")
        if os.path.exists(p):
            return p
    return None


def side(s):
    t = s["detected_target"]
    l1 = {l["label"]: l["l1"] for l in s["labels"]}
    ai = s["anomaly_index"]
    return f"{t}: {l1[t]:.1f} ({'–' if ai is None else f'{ai:.2f}'})"


def right(flagged, target, truth):
    return (flagged and str(target) == truth) if truth != "-" else not flagged


def cells(path, truth, threshold=2.0):
    j = json.load(open(path))
    t = j["ticket"]
    ticket_flag = t["anomaly_index"] is not None and t["anomaly_index"] > threshold
    ok_c = right(j["trojaned"], j["target"], truth)
    ok_t = right(ticket_flag, t["detected_target"], truth)
    ai = j["anomaly_index"]
    consensus = f"Trojaned, {j['target']}" if j["trojaned"] else "clean"
    ticket = f"Trojaned, {t['detected_target']}" if ticket_flag else "clean"
    yes = lambda ok: "yes" if ok else "**no**"
    text = f"{side(j['dense'])} | {side(t)} | {j['winning_ticket']['density']:.4f} | {'–' if ai is None else f'{ai:.2f}'} | {consensus} {yes(ok_c)} | {ticket} {yes(ok_t)}"
    return text, ok_c, ok_t


def main(args):
    variants = [a.split("=", 1) for a in args]
    print("| model | true target | variant | dense: argmin: l1 (anomaly index) | ticket: argmin: l1 (anomaly index) | ticket density | pooled anomaly index | consensus rule (default) | ticket rule (the paper's) |")
    print("|---|---|---|---|---|---|---|---|---|")
    tot = {}
    for r in ROWS:
        name, truth = r.split(":")
        for tag, d in variants:
            p = find(d, name)
            if p is None:
                continue
            text, ok_c, ok_t = cells(p, truth)
            k = (tag, "clean" if truth == "-" else "Trojaned")
            c = tot.setdefault(k, [0, 0, 0])
            c[0] += ok_c
            c[1] += ok_t
            c[2] += 1
            print(f"| {name} | {truth if truth != '-' else 'clean'} | {tag} | {text} |")
    print()
    for (tag, kind), (c, t, n) in tot.items():
        print(f"{tag}, {kind}: right {c}/{n} (consensus), {t}/{n} (ticket rule)")


if __name__ == "__main__":
    main(sys.argv[1:])
