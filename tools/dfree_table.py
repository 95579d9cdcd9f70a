"""Markdown table of data-free `detect` runs made by tools/dfree_detect.sh, synthesized seeds next to
noise seeds (README "Data-free detection on the built-in data").
Run: python3 tools/dfree_table.py OUT_SYNTH OUT_NOISE
"""
import json, os, sys
rows = ["paper-gray-102:2", "paper-gray-103:9", "paper-gray-104:4", "paper-rgb-102:2", "paper-rgb-104:4", "paper-rgb-105:6", "clean-102:-", "clean-103:-", "clean-104:-"]
def cell(d, name, truth):
    p = os.path.join(d, name, "detect.json")
    if not os.path.exists(p):
        return "–", None
    j = json.load(open(p))
    def rv(r):
        x = json.load(open(os.path.join(d, name, f"reverse-{r}", "reverse.json")))
        t = x["detected_target"]; l1 = {l["label"]: l["l1"] for l in x["labels"]}
        return f"{t}: {l1[t]:.1f}"
    verdict = f"Trojaned, {j['target']}" if j["trojaned"] else "clean"
    ok = (j["trojaned"] and str(j["target"]) == truth) if truth != "-" else not j["trojaned"]
    ai = j["anomaly_index"]
    return f"{rv('dense')} | {rv('ticket')} | {j['winning_ticket']['density']:.4f} | {'–' if ai is None else f'{ai:.2f}'} | {verdict} | {'yes' if ok else '**no**'}", ok
print("| model | true target | seeds | dense: argmin: l1 | ticket: argmin: l1 | ticket density | pooled anomaly index | verdict | right |")
print("|---|---|---|---|---|---|---|---|---|")
tot = {}
for r in rows:
    name, truth = r.split(":")
    for tag, d in (("synth:100", sys.argv[1]), ("noise:100", sys.argv[2])):
        c, ok = cell(d, name, truth)
        if ok is not None:
            k = (tag, truth == "-"); tot.setdefault(k, [0, 0]); tot[k][0] += ok; tot[k][1] += 1
        print(f"| {name} | {truth if truth != '-' else 'clean'} | {tag} | {c} |")
for k, v in sorted(tot.items()):
    print(f"{k[0]} {'clean' if k[1] else 'trojaned'}: {v[0]}/{v[1]}")
