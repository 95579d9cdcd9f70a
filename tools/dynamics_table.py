"""Summarises `quarantine score` runs (dynamics.json) for the README's "Pruning dynamics" tables.

For every run: the loss-score and error-score peaks (density, clean accuracy, attack success of the
ticket; attack success over non-target images), whether the peak shows the paper's phenomenon
(attack success >= 0.8 with clean accuracy <= 0.3, a collapsed network excepted), and the sparsest step where it holds, if any.
With --steps RUN, the per-step rows of that run.
    python3 tools/dynamics_table.py LABEL=RUN_DIR [LABEL=RUN_DIR ...] [--steps LABEL]
"""
import json, sys


def load(path):
    with open(f"{path}/dynamics.json") as f:
        return json.load(f)["steps"]


def acc(m):
    return m.get("clean_accuracy")


def asr(m):
    return m.get("attack_success_rate_nontarget")


def phenomenon(r):
    """Attack >= 0.8 with clean accuracy <= 0.3, but above 0.11: a network that sends every image to
    the target (clean accuracy 0.100 on the balanced test set, attack 1.0) has collapsed, not kept a
    backdoor."""
    a, c = asr(r["ticket"]), acc(r["ticket"])
    return a is not None and c is not None and a >= 0.8 and 0.11 < c <= 0.3


def fmt(x, nd=3):
    return "–" if x is None else f"{x:.{nd}f}"


def main(argv):
    runs, detail = [], None
    i = 0
    while i < len(argv):
        if argv[i] == "--steps":
            detail = argv[i + 1]
            i += 2
            continue
        label, path = argv[i].split("=", 1)
        runs.append((label, load(path)))
        i += 1
    print("| run | loss-score peak: density / clean / attack | error-score peak: density / clean / attack | peak shows the phenomenon (attack >= 0.8, clean <= 0.3) | steps where it holds |")
    print("|---|---|---|---|---|")
    for label, rows in runs:
        cells = []
        for key in ("score_loss", "score_error"):
            r = max(rows, key=lambda r: r[key])
            cells.append((r, f"{r['density']:.4f} / {fmt(acc(r['ticket']))} / {fmt(asr(r['ticket']))}"))
        holds = [r for r in rows if phenomenon(r)]
        where = ", ".join(f"{r['density']:.4f} ({fmt(acc(r['ticket']), 2)}/{fmt(asr(r['ticket']), 2)})" for r in holds) or "none"
        peak = "/".join("yes" if phenomenon(r) else "no" for r, _ in cells)
        print(f"| {label} | {cells[0][1]} | {cells[1][1]} | {peak} (loss/error) | {where} |")
    if detail:
        rows = dict(runs)[detail]
        print(f"\n{detail}:\n")
        print("| step | density | ticket clean | ticket attack | finetuned clean | finetuned attack | score (error) | score (loss) |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['step']} | {r['density']:.4f} | {fmt(acc(r['ticket']))} | {fmt(asr(r['ticket']))} | {fmt(acc(r['finetuned']))} | {fmt(asr(r['finetuned']))} | {r['score_error']:.4f} | {r['score_loss']:.4f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
