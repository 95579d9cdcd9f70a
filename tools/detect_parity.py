"""`detect --exhaustive` (whose verdicts the default reproduces) vs `detect --fast`, per model: README "Faster detect" table.
  python3 tools/detect_parity.py   (reads /tmp/z/base/NAME and /tmp/z/new/NAME, as written by the runs in README)"""
import json, os
truth={'paper-gray-102':2,'paper-gray-103':9,'paper-gray-104':4,'paper-rgb-102':2,'paper-rgb-104':4,'paper-rgb-105':6,'clean-102':None,'clean-103':None,'clean-104':None,'r20-gray-7':3,'r20-clean-7':None}
def v(d):
    r=d['decision']
    s='Trojaned, %d'%r['target'] if r['trojaned'] else 'clean'
    pooled=r.get('pooled_anomaly_index')
    return s, r['dense_target'], r['ticket_target'], pooled, d['winning_ticket']['step'], d.get('timings') or {}
def fmt(x): return '–' if x is None else '%.2f'%x
print("| model | truth | exhaustive (= default): dense / ticket target, pooled index, winning step | verdict | s | `--fast`: dense / ticket target, pooled index, winning step | verdict | s | same verdict |")
print('|---|---|---|---|---|---|---|---|---|')
for name in truth:
    b='/tmp/z/base/%s/detect.json'%name; n='/tmp/z/new/%s/detect.json'%name
    if not (os.path.exists(b) and os.path.exists(n)): continue
    B=v(json.load(open(b))); N=v(json.load(open(n)))
    t=truth[name]; ts='clean' if t is None else str(t)
    ok=lambda x: ('yes' if (x[0]=='clean')==(t is None) and (t is None or x[0]=='Trojaned, %d'%t) else '**no**')
    print(f"| {name} | {ts} | {B[1]} / {B[2]}, {fmt(B[3])}, {B[4]} | {B[0]} ({ok(B)}) | {B[5].get('total',0):.0f} | {N[1]} / {N[2]}, {fmt(N[3])}, {N[4]} | {N[0]} ({ok(N)}) | {N[5].get('total',0):.0f} | {'yes' if B[0]==N[0] else '**no**'} |")
