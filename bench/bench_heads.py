"""The space-time heads against the pooled-feature LSTM on the demo, as the issue's command runs them:
`deepfake-nb run --dataset demo --heads lstm convlstm conv3d spacetime` (here with the ImageNet MobileNetV2 weights from ../shared, 12 frames
of 160 px), in a fresh home. Prints one row per head: test AUC (16 videos), feature cache size per video, head parameters, head training time,
and the report's efficiency columns (parameters, GFLOPs and latency per video on this machine, backbone included).

    .venv/bin/python bench/bench_heads.py            # about 3-4 minutes on 2 cores
"""
import os, sys, json, subprocess, tempfile, time, argparse
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument('--weights', default=str(REPO.parent/'shared'/'weights'/'mobilenet_v2_imagenet_notop.weights.h5'))
ap.add_argument('--heads', nargs='+', default=['lstm', 'convlstm', 'conv3d', 'spacetime'])
ap.add_argument('--frames', type=int, default=12)
ap.add_argument('--size', type=int, default=160)
ap.add_argument('--home', default='', help='a home whose runs to read again (no training)')
a = ap.parse_args()

home = Path(a.home or tempfile.mkdtemp(prefix='bench_heads'))
os.environ['DEEPFAKE_NB_HOME'] = str(home)
t0 = time.time()
r = subprocess.CompletedProcess([], 0) if a.home else subprocess.run([str(Path(sys.executable).parent/'deepfake-nb'), 'run', '--dataset', 'demo', '--backbones', 'mobilenetv2', '--heads', *a.heads,
                    '--weights', a.weights, '--frames', str(a.frames), '--size', str(a.size)], capture_output=True, text=True)
if r.returncode: sys.exit(r.stdout[-3000:] + r.stderr[-3000:])
print(f'deepfake-nb run: {time.time()-t0:.0f} s for {len(a.heads)} runs, the comparison and the report')

import pandas as pd
from deepfake_nb.report import report_data, efficiency_table
data = report_data('demo')
eff = efficiency_table(data)
rows = []
for run in data['runs']:
    p, d = run['params'], Path(run['dir'])
    cache = Path(p['features']); info = json.loads(cache.with_suffix('.json').read_text())
    m = json.loads((d/'metrics.json').read_text())
    rows.append({'head': p['head'], 'features': p['feature_layers'], 'feature shape per frame': 'x'.join(map(str, info['shape'][2:])),
                 'cache per video (KB)': round(cache.stat().st_size / len(info['video_ids']) / 1024), 'head params': p['head_params'],
                 'head training (s)': p['seconds']['fit'], 'test AUC': round(m['test']['roc_auc'], 3), 'val AUC': round(m['val']['roc_auc'], 3),
                 **eff.loc[run['label']].round(3).to_dict()})
pd.set_option('display.width', 250); pd.set_option('display.max_columns', 30)
print(pd.DataFrame(rows).sort_values('head').to_string(index=False))
print(f'home: {home}')
