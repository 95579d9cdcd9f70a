"""Markdown table of detection results (README "Detection on the built-in data"), laid out like the
paper's Table: per model, the true target, the mask l1 of the detected label on the dense model and on
the winning Trojan ticket, their recovered-trigger ASR, the decision and whether it was right.
Reads `quarantine demo` folders (demo.json + detect-*/detect.json).
Run: python3 tools/detection_table.py runs/demo-* > table.md
"""
import json, os, sys


def row(name, truth, took, asr, det):
    d, t, dec = det["dense"], det["ticket"], det.get("decision", {})
    fmt = lambda v, n=1: "–" if v is None else f"{v:.{n}f}"
    verdict = f"Trojaned, {det['target']}" if det["trojaned"] else "clean"
    right = (det["trojaned"] and det["target"] == truth) if truth is not None else not det["trojaned"]
    return (f"| {name} | {'clean' if truth is None else truth} | {fmt(asr, 2)}{'' if took else ' (did not take)'} "
            f"| {d['detected_target']}: {fmt(d['l1'])} / {fmt(d.get('recovered_asr'), 2)} "
            f"| {t['detected_target']}: {fmt(t['l1'])} / {fmt(t.get('recovered_asr'), 2)} "
            f"| {det['winning_ticket']['density']:.4f} | {fmt(dec.get('pooled_anomaly_index'), 2)} | {verdict} | {'yes' if right else '**no**'} |")


def main(dirs):
    print("| model | true target | attack success | dense: argmin label: l1 / recovered ASR | ticket: argmin label: l1 / recovered ASR | ticket density | pooled anomaly index | verdict | right |")
    print("|---|---|---|---|---|---|---|---|---|")
    seen_clean = set()
    for d in dirs:
        demo = json.load(open(os.path.join(d, "demo.json")))
        for m in demo["models"]:
            if m["true_target"] is None:
                if demo["seed"] in seen_clean:
                    continue  # the clean control depends on the seed only
                seen_clean.add(demo["seed"])
            det = json.load(open(os.path.join(d, m["detect_dir"], "detect.json")))
            name = f"{demo['trigger'] if m['true_target'] is not None else 'clean'}, seed {demo['seed']}"
            print(row(name, m["true_target"], m.get("attack_took", True), m.get("attack_success"), det))


if __name__ == "__main__":
    main(sys.argv[1:])
