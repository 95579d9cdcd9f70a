"""detect dynamics.json -> docs/dynamics/detect-NAME.csv with the columns of score's dynamics.csv:
  python3 tools/dynamics_csv.py docs/dynamics RUN_DIR..."""
import json,sys,os
# dyn2csv.py OUTDIR RUN... : detect dynamics.json -> docs/dynamics/detect-NAME.csv (dynamics_csv's columns)
out=sys.argv[1]
f=lambda v: '' if v is None else '%.6f'%v
for run in sys.argv[2:]:
    d=json.load(open(run+'/dynamics.json'))
    rows=d['steps']
    s='step,density,sparsity,score_error,score_loss,ticket_clean_accuracy,ticket_asr,ticket_asr_nontarget,finetuned_clean_accuracy,finetuned_asr,trained_clean_accuracy,trained_asr\n'
    for r in rows:
        t=r['ticket'];ft=r['finetuned'];tr=r.get('trained') or {}
        s+='%d,%.6f,%.4f,%.6f,%.6f,%s,%s,%s,%s,%s,%s,%s\n'%(r['step'],r['density'],r['sparsity'],r['score_error'],r['score_loss'],f(t['clean_accuracy']),f(t['attack_success_rate']),f(t['attack_success_rate_nontarget']),f(ft['clean_accuracy']),f(ft['attack_success_rate']),f(tr.get('clean_accuracy')),f(tr.get('attack_success_rate')))
    name=os.path.basename(run.rstrip('/'))
    open(os.path.join(out,'detect-'+name+'.csv'),'w').write(s)
    print(name,len(rows))
