"""Self-Blended Images measured honestly (issue 20): heads trained with no real fake at all, tested on real deepfakes.

Training reals: the demo's real videos, plus (cross-fitted) the ../shared real clips of the *other* source: the FF++ c23 clips are scored by
heads that also saw the DFDC real clip, the DFDC clips by heads that also saw the three FF++ real clips; no test clip is ever trained on.
Fakes: SBI pairs of every training real (target: real, self-blend: fake), `--copies` per video. For reference the same head is trained on the
demo's own fakes (`real fakes`) and on both. Each on final-layer and on intermediate-block features (MobileNetV2, ImageNet weights from
../shared, YuNet faces). Then one SBI fine-tuning run on the demo times its epochs.

    .venv/bin/python bench/bench_sbi.py                       # about 10 minutes on 2 cores
    .venv/bin/python bench/bench_sbi.py --no-finetune --frames 8

7 FF++ clips (3 real, 4 fake) and 6 DFDC clips (1 real, 5 fake) give 12 and 5 real-fake pairs: their CIs are wide and they cannot rank methods.
"""
import argparse, time, sys, tempfile, os
from pathlib import Path
import numpy as np, pandas as pd

ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
ap.add_argument('--weights', default=None, help='backbone weights file (default: ../shared MobileNetV2 ImageNet weights)')
ap.add_argument('--backbone', default='mobilenetv2')
ap.add_argument('--frames', type=int, default=12)
ap.add_argument('--size', type=int, default=160)
ap.add_argument('--copies', type=int, default=2, help='SBI pairs per training real video')
ap.add_argument('--epochs', type=int, default=30)
ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
ap.add_argument('--no-finetune', action='store_true')
ap.add_argument('--home', default=None, help='DEEPFAKE_NB_HOME (default: a temporary folder)')
a = ap.parse_args()
os.environ.setdefault('DEEPFAKE_NB_HOME', a.home or tempfile.mkdtemp(prefix='bench_sbi.'))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from deepfake_nb.core import shared_dir, data_dir, load_json
from deepfake_nb.data import load_manifest
from deepfake_nb.preprocess import preprocess_manifest, usable_videos, face_cache_dir, load_faces
from deepfake_nb.models import cached_features, backbone_for_features, extract_features
from deepfake_nb.studies import dataset_features, eval_manifests, fit_predict, auc_ci
from deepfake_nb.train import sbi_pairs, train_run
from deepfake_nb.metrics import fmt_ci

sd = shared_dir()
if sd is None: sys.exit('../shared is absent: this benchmark scores its real FF++ and DFDC clips')
weights = a.weights or str(Path(sd)/'weights'/'mobilenet_v2_imagenet_notop.weights.h5')
crop = dict(frames=a.frames, size=a.size, detector='yunet', margin=1.3)
evals = eval_manifests(['shared'])                       # shared_ffpp_c23, shared_dfdc: every clip in test
OTHER = {'shared_ffpp_c23': 'shared_dfdc', 'shared_dfdc': 'shared_ffpp_c23'}
rows, t0 = [], time.time()
for fl in ('final', 'blocks'):
    df, X, info = dataset_features('demo', a.backbone, weights, a.frames, a.size, 'yunet', 1.3, feature_layers=fl)
    scale, pkey = info['scale'], info['prep_key']
    y, sp = df.label.to_numpy(), df.split.to_numpy()
    sb = lambda ds, ci: dict(dataset=ds, prep_key=pkey, clean_info=ci, backbone=a.backbone, weights=weights, size=a.size, scale=scale)
    def pairs(ds, ci, ids, copies): return sbi_pairs(ids, copies, **sb(ds, ci))[:2]
    shared = {}
    for e in evals:                                      # the shared clips: features on the demo's scale; their real clips' SBI pairs
        edf = load_manifest(data_dir('manifests', f'{e}.csv'))
        summ = preprocess_manifest(data_dir('manifests', f'{e}.csv'), **crop, dataset=e, progress=False)
        edf = usable_videos(edf, summ, e)
        Xe, ei = cached_features(e, pkey, edf.video_id.tolist(), a.backbone, weights, a.size, feature_layers=fl)
        Xe = Xe * np.float32(ei['scale']/scale)
        reals = edf.video_id[edf.label == 0].tolist()
        shared[e] = dict(df=edf, X=Xe, y=edf.label.to_numpy(), real_X=Xe[(edf.label == 0).to_numpy()], sbi=pairs(e, ei, reals, range(1, a.copies+1)))
    rtr, rva, tr, va = (sp == 'train') & (y == 0), (sp == 'val') & (y == 0), sp == 'train', sp == 'val'
    sbi_tr, sbi_tr_y = pairs('demo', info, df.video_id[rtr].tolist(), range(1, a.copies+1))
    sbi_va, sbi_va_y = pairs('demo', info, df.video_id[rva].tolist(), [1])
    z = lambda n: np.zeros(n, int)
    for e in evals:
        o = shared[OTHER[e]]
        settings = {
            'real fakes (demo)': (X[tr], y[tr], X[va], y[va]),
            'SBI only, demo reals': (np.concatenate([X[rtr], sbi_tr]), np.r_[z(rtr.sum()), sbi_tr_y], np.concatenate([X[rva], sbi_va]), np.r_[z(rva.sum()), sbi_va_y]),
            'SBI only, demo + other source reals': (np.concatenate([X[rtr], sbi_tr, o['real_X'], o['sbi'][0]]), np.r_[z(rtr.sum()), sbi_tr_y, z(len(o['real_X'])), o['sbi'][1]],
                                                    np.concatenate([X[rva], sbi_va]), np.r_[z(rva.sum()), sbi_va_y]),
            'real fakes + SBI (demo)': (np.concatenate([X[tr], sbi_tr]), np.r_[y[tr], sbi_tr_y], X[va], y[va]),
        }
        for name, (Xt, yt, Xv, yv) in settings.items():
            probs = []
            for seed in a.seeds:                          # the mean score over seeds: less of one initialisation's luck
                _, pr = fit_predict(Xt, yt, Xv, yv, {'e': shared[e]['X'], 'demo': X[sp == 'test']}, seed=seed, epochs=a.epochs)
                probs.append(pr)
            for ev, yy in ((e, shared[e]['y']), ('demo test', y[sp == 'test'])):
                if ev == 'demo test' and e != evals[0]: continue   # once per setting
                p = np.mean([pr['e' if ev == e else 'demo'] for pr in probs], axis=0)
                r = auc_ci(yy, p)
                rows.append(dict(features=fl, training=name, eval=ev, n_real=int((yy == 0).sum()), n_fake=int(yy.sum()), auc=r['auc'],
                                 ci=fmt_ci(r['auc'], r['auc_lo'], r['auc_hi']), n_train=len(yt), n_train_fake=int(yt.sum())))
        print(f'{fl}, {e}: done ({time.time()-t0:.0f}s)', flush=True)
t = pd.DataFrame(rows)
pd.set_option('display.width', 200)
print(f'\nSBI benchmark: {a.backbone} ({Path(weights).name}), {a.frames} frames of {a.size}px, YuNet faces, {a.copies} SBI pairs per real video, '
      f'LSTM head, mean score over seeds {a.seeds}; AUC with DeLong 95% CI\n')
print(t.pivot_table(index=['training', 'features'], columns='eval', values='ci', aggfunc='first').to_string())
print(f'\nfeatures and heads: {time.time()-t0:.0f}s')

if not a.no_finetune:                                    # SBI fine-tuning: new blends every epoch
    t1 = time.time()
    r = train_run(dataset='demo', backbone=a.backbone, weights=weights, frames=a.frames, size=a.size, fakes='sbi', mode='finetune', epochs=2, patience=5,
                  batch_size=4, force=True)
    p, h = load_json(r/'params.json'), pd.read_csv(r/'history.csv')
    n_ft = int((h.stage == 'finetune').sum())
    n_real = int(((pd.read_csv(r/'predictions.csv').split == 'train') & (pd.read_csv(r/'predictions.csv').label == 0)).sum())
    print(f"\nSBI fine-tuning ({a.backbone}, last 20 layers, batch 4, {n_real} real training videos -> {2*n_real} examples per epoch, new blends each epoch): "
          f"{p['seconds']['fit']:.0f}s for the head and {n_ft} fine-tuning epochs; about {p['seconds']['fit']/max(1, n_ft):.0f}s per fine-tuning epoch "
          f"(head stage included); test AUC on the demo's real fakes {load_json(r/'metrics.json')['test']['roc_auc']:.3f}")
