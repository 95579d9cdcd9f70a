"""Offline early-stop simulation on full-run reverse-engineering histories (`detect --exhaustive` writes
reverse-dense/ and reverse-ticket/history.jsonl). A stopped label keeps its last successful epoch, so its
result under any stop rule can be read off the full history. For each rule: the fraction of label-epochs
run and the verdicts (consensus rule, log scale) that change against the full run.
  python3 tools/sim_early_stop.py RUN_DIR...   (README, "Faster detect")"""
import json, sys, math, statistics
from collections import defaultdict

def hist(path):
    h = defaultdict(list)
    for line in open(path):
        d = json.loads(line); h[d['label']].append((d['epoch'], d['attack_success'], d['l1']))
    return dict(sorted(h.items()))

def simulate(h, patience, min_delta, far, chunk):
    """The early stop of src/reverse/mod.rs replayed: labels in chunks of `chunk`; the far cut compares
    a label at epoch e with the smallest kept l1 any label had reached by epoch e (its own chunk's
    running minimum, and the finished chunks' per-epoch minimum)."""
    labels = list(h); out = {}; work = 0
    E = max(len(v) for v in h.values())
    floors = [math.inf] * E
    for c0 in range(0, len(labels), chunk):
        ch = labels[c0:c0+chunk]
        st = {l: dict(best=math.inf, since=0, kept=None, stop=None) for l in ch}
        floor = math.inf
        for e in range(E):
            live = [l for l in ch if st[l]['stop'] is None]
            if not live: break
            for l in live:
                _, acc, l1 = h[l][e]; s = st[l]; work += 1
                if acc >= 0.99:
                    s['kept'] = l1
                    if l1 < s['best'] * (1 - min_delta): s['best'] = l1; s['since'] = 0
                    else: s['since'] += 1
                elif s['best'] < math.inf: s['since'] += 1
            if patience is None: continue
            for l in live:
                if st[l]['kept'] is not None: floor = min(floor, st[l]['kept'])
            cut = min(floor, floors[e])
            for l in live:
                s = st[l]
                if s['kept'] is None: continue
                if s['since'] >= patience or (far and s['kept'] > far * cut): s['stop'] = e + 1
        for l in ch:
            s = st[l]
            reached = s['kept'] is not None
            out[l] = (s['kept'] if reached else h[l][(s['stop'] or E) - 1][2], reached, s['stop'] or E)
            low = math.inf
            for e in range(E):
                if e < (s['stop'] or E) and h[l][e][1] >= 0.99: low = min(low, h[l][e][2])
                floors[e] = min(floors[e], low)
    return out, work

def mad(x):
    m = statistics.median(x); return m, statistics.median([abs(v - m) for v in x])

def anomaly(x, i):
    m, d = mad(x); b = m - x[i]
    return 0 if b <= 0 else (math.inf if d == 0 else b / (1.4826 * d))

def verdict(res):
    labels = list(res); l1 = [res[l][0] for l in labels]; x = [math.log(v) for v in l1]
    cand = [i for i, l in enumerate(labels) if res[l][1]]
    if not cand: return None, None, x
    i = min(cand, key=lambda i: l1[i]); return labels[i], anomaly(x, i), x

def decide(dres, tres):
    dt, da, dx = verdict(dres); tt, ta, tx = verdict(tres)
    if dt is None or dt != tt: return ('clean', dt, tt, None)
    pooled = [(a + b) / 2 for a, b in zip(dx, tx)]
    ai = anomaly(pooled, list(dres).index(dt))
    return ('T%d' % dt if ai > 2 else 'clean', dt, tt, ai)

runs = sys.argv[1:]
rules = [(None, 0, None)] + [(p, 0.01, f) for p in (5, 10) for f in (None, 2.5, 3.0)]
chunkf = lambda r: 2 if 'r20' in r else 10
base = {}
for rule in rules:
    p, d, f = rule; tw = 0; tfull = 0; changes = []
    for r in runs:
        hd = hist(r + '/reverse-dense/history.jsonl'); ht = hist(r + '/reverse-ticket/history.jsonl')
        dres, w1 = simulate(hd, p, d, f, chunkf(r)); tres, w2 = simulate(ht, p, d, f, chunkf(r))
        full = sum(len(v) for v in hd.values()) + sum(len(v) for v in ht.values())
        tw += w1 + w2; tfull += full
        dec = decide(dres, tres)
        if rule == rules[0]: base[r] = dec
        if dec[0] != base[r][0] or dec[1:3] != base[r][1:3]:
            changes.append(f"{r.split('/')[-1]}: {base[r][0]}({base[r][1]},{base[r][2]}) -> {dec[0]}({dec[1]},{dec[2]})")
        elif dec[3] is not None and base[r][3] is not None and abs(dec[3]-base[r][3]) > 0.5:
            changes.append(f"{r.split('/')[-1]}: pooled {base[r][3]:.2f}->{dec[3]:.2f}")
    print(f"patience {p} delta {d} far {f}: work {tw/tfull:.2f}  {'; '.join(changes)}")
if len(sys.argv) and '--show' in sys.argv: pass
for r in runs: print(r.split('/')[-1], base[r])
