"""Detection on real deepfakes: identity-grouped k-fold cross-validation on the FaceForensics++ c23 development set of ../shared.

The set (`../shared/data/videos/ffpp_c23_dev`: 38 real YouTube originals, 68 fakes made from them: 38 Deepfakes, 15 Face2Face, 15 FaceSwap)
gets its manifest from the FF++ adapter (20 identity groups: a fake goes with its target and its source). Each setting below is
cross-validated by `deepfake_nb.studies.cv_study`: one `train_run` per fold (the function `deepfake-nb train` calls), fold i the test split,
the other folds' identities split into train and 15% val (early stopping, the threshold). Faces and features are cached once per crop and
feature setting and shared by every fold and every setting that uses them; complete runs are reused (`--force` trains them again).

    .venv/bin/python bench/bench_real.py                 # every setting, 5 folds (about 40 minutes on 2 cores, most of it the fine-tuned row)
    .venv/bin/python bench/bench_real.py --quick         # 2 folds, the suite's old default and the recommended setting (a few minutes)
    .venv/bin/python bench/bench_real.py --readme        # also rewrite README.md's "On real deepfakes" section from this run's table

It prints one table (fold-mean AUC with sd and min-max, the pooled AUC with its identity-bootstrap CI, the fold-mean AUC per manipulation
method, accuracy at each fold's val-chosen threshold, seconds) and writes bench/results/bench_real.csv (with the commit and the machine)
and bench_real_folds.csv (every fold). 106 videos in 20 identity groups cannot settle differences of a few hundredths: the folds' AUCs
spread by about 0.05-0.10, and choosing the best of several settings on this set flatters it.
"""
import argparse, os, sys, time, platform, subprocess, json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LM = dict(frames=16, size=256, margin=1.4, framing='landmarks')   # the real preset's crops
SETTINGS = {   # name: (what it is, the run settings); every setting uses MobileNetV2 with the ImageNet weights given by --weights
    'demo defaults (before)': ("what `deepfake-nb train` did on real data before: 12 faces of 160 px (detector box x 1.3), pooled final features, "
                               "LSTM head", dict(preset=None)),
    'blocks, LSTM': ("the same with pooled intermediate blocks (feature_layers='blocks')", dict(preset=None, feature_layers='blocks')),
    'final, linear': ("16 faces of 256 px (detector box x 1.3), pooled final features, the linear head",
                      dict(preset=None, frames=16, size=256, head='linear')),
    'mid, whole crop, linear': ("16 x 256 px (box x 1.3), the 'mid' layers pooled over the whole crop, linear head",
                                dict(preset=None, frames=16, size=256, feature_layers='mid', head='linear')),
    'mid, inner face (box), linear': ("16 x 256 px (box x 1.5), 'mid' layers, mean and sd over the inner face, linear head",
                                      dict(preset=None, frames=16, size=256, margin=1.5, feature_layers='mid', pool='face', head='linear')),
    'real preset': ("the default on real data (preset 'real'): 16 x 256 px framed on the landmarks (x 1.4), 'mid' layers, mean and sd over "
                    "the inner face, linear head", dict(preset='real')),
    'real preset, LSTM head': ("the same features, LSTM head", dict(preset=None, feature_layers='mid', pool='face', head='lstm', **LM)),
    'real preset, real + SBI fakes': ("the real preset with self-blended pairs of the training reals added (fakes='both')",
                                      dict(preset='real', fakes='both')),
    'real preset, fine-tuned': ("the real preset, then its last 20 layers (blocks 13-14) and the linear head trained end to end on the faces "
                                "for 3 epochs (lr 1e-5)", dict(preset='real', mode='finetune', epochs=3)),
    'real preset, fine-tuned (lr 1e-4)': ("the same with a ten times larger fine-tuning learning rate", dict(preset='real', mode='finetune', epochs=3,
                                                                                                          finetune_lr=1e-4)),
    'fine-tuned, LSTM (before)': ("mode='finetune' as before: 12 faces of 160 px, the LSTM head first on frozen features, then the last 20 "
                                  "layers of MobileNetV2 and the head end to end (lr 1e-5, early stopping on val)", dict(preset=None, mode='finetune')),
}
RECOMMENDED = 'real preset'
QUICK = ['demo defaults (before)', RECOMMENDED]
MARK = ('<!-- bench_real: start (written by bench/bench_real.py --readme; do not edit by hand) -->', '<!-- bench_real: end -->')


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--quick', action='store_true', help='2 folds and two settings: a check of a change in minutes')
    ap.add_argument('--folds', type=int, default=None, help='folds (default 5; 2 with --quick)')
    ap.add_argument('--settings', nargs='+', default=None, help=f'names of settings to run (default: all; with --quick: {QUICK})')
    ap.add_argument('--split-seed', type=int, default=0, help='seed of the folds (another seed: another assignment of identities to folds)')
    ap.add_argument('--root', default=None, help='the development set (default ../shared/data/videos/ffpp_c23_dev)')
    ap.add_argument('--weights', default=None, help='MobileNetV2 weights (default ../shared ImageNet file; "imagenet" downloads)')
    ap.add_argument('--home', default=None, help='DEEPFAKE_NB_HOME for caches and runs (default: the project)')
    ap.add_argument('--force', action='store_true', help='train the runs again even when complete')
    ap.add_argument('--readme', action='store_true', help="rewrite README.md's 'On real deepfakes' section from this run")
    ap.add_argument('--list', action='store_true', help='list the settings and exit')
    a = ap.parse_args(argv)
    if a.list:
        for k, (doc, kw) in SETTINGS.items(): print(f'{k}: {doc}\n    {kw}')
        return 0
    if a.home: os.environ['DEEPFAKE_NB_HOME'] = str(Path(a.home).resolve())
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    from deepfake_nb.core import shared_dir, git_commit, save_json
    from deepfake_nb.data import build_manifest
    from deepfake_nb.studies import cv_study
    from deepfake_nb.metrics import fmt_ci
    import pandas as pd, numpy as np
    sd = shared_dir()
    root = Path(a.root) if a.root else (Path(sd)/'data'/'videos'/'ffpp_c23_dev' if sd else None)
    if root is None or not root.is_dir(): sys.exit(f'the development set is not at {root}: pass --root (FaceForensics++ layout)')
    weights = a.weights or (str(Path(sd)/'weights'/'mobilenet_v2_imagenet_notop.weights.h5') if sd else 'imagenet')
    folds = a.folds or (2 if a.quick else 5)
    names = a.settings or (QUICK if a.quick else list(SETTINGS))
    bad = [n for n in names if n not in SETTINGS]
    if bad: sys.exit(f'unknown setting(s) {bad}; --list shows them')
    dataset = 'ffpp_c23_dev'
    build_manifest('ffpp', root, compression='c23', name=dataset)
    rows, fold_rows = [], []
    for name in names:
        doc, kw = SETTINGS[name]
        settings = dict(dict(weights=weights, split_seed=a.split_seed), **kw)
        t0 = time.time()
        t, preds, s = cv_study(dataset, folds, settings) if not a.force else _forced(cv_study, dataset, folds, settings)
        wall = time.time() - t0
        once, per_fold = _seconds(t)
        m = s['method_auc']
        rows.append(dict(setting=name, folds=folds, fold_auc_mean=s['fold_auc_mean'], fold_auc_sd=s['fold_auc_sd'], fold_auc_min=s['fold_auc_min'],
                         fold_auc_max=s['fold_auc_max'], pooled_auc=s['pooled_auc'], pooled_auc_lo=s['pooled_auc_lo'], pooled_auc_hi=s['pooled_auc_hi'],
                         auc_deepfakes=m.get('Deepfakes', np.nan), auc_face2face=m.get('Face2Face', np.nan), auc_faceswap=m.get('FaceSwap', np.nan),
                         accuracy=s['accuracy'], s_once=once, s_per_fold=per_fold, s_wall=wall, n_videos=s['n'], n_groups=s['n_groups'],
                         settings=json.dumps(kw, sort_keys=True)))
        fold_rows += [dict(setting=name, **r) for r in t.to_dict('records')]
        r = rows[-1]
        print(f"{name}: fold-mean AUC {r['fold_auc_mean']:.3f} (sd {r['fold_auc_sd']:.3f}); {wall:.0f} s", flush=True)
    res = pd.DataFrame(rows)
    commit, machine = git_commit(REPO) or 'unknown', f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores)"
    out = REPO/'bench'/'results'; out.mkdir(parents=True, exist_ok=True)
    stamp = dict(commit=commit, machine=machine, date=time.strftime('%Y-%m-%d %H:%M'), weights=Path(weights).name, root=str(root), split_seed=a.split_seed)
    tag = ('' if folds == 5 and not a.settings and not a.quick else '_quick' if a.quick else '_partial') + (f'_seed{a.split_seed}' if a.split_seed else '')
    res.assign(**stamp).to_csv(out/f'bench_real{tag}.csv', index=False)
    pd.DataFrame(fold_rows).assign(**stamp).to_csv(out/f'bench_real{tag}_folds.csv', index=False)
    table = markdown_table(res, fmt_ci)
    print(f"\n{len(res)} settings, {folds}-fold identity-grouped CV on {res.n_videos.iloc[0]} videos ({res.n_groups.iloc[0]} groups); "
          f"commit {commit[:10]}, {machine}\n")
    print(table)
    if a.readme:
        if tag: sys.exit('--readme takes the full run (5 folds, every setting, split seed 0): the README reports that table only')
        write_readme(res, table, stamp, folds)
        print(f"\nREADME.md's 'On real deepfakes' section rewritten")
    return 0


def _forced(cv_study, dataset, folds, settings):
    "cv_study with every fold's run trained again"
    import deepfake_nb.studies as st
    orig = st.study_run
    st.study_run = lambda s, force=False, **over: orig(s, force=True, **over)
    try: return cv_study(dataset, folds, settings)
    finally: st.study_run = orig


def _seconds(t):
    "(faces and features, once per cache: what these runs recorded; training and scoring per fold) from the runs' params.json"
    from deepfake_nb.core import load_json
    once, per = 0.0, []
    for rd in map(Path, t.run_dir):
        s = load_json(rd/'params.json')['seconds']
        o = s['preprocess'] + s['features'] + s.get('augment_features', 0.0)
        once += o; per.append(s['total'] - o)
    return once, float(sum(per)/max(1, len(per)))


def markdown_table(res, fmt_ci) -> str:
    head = ('| setting | fold-mean AUC (sd, min-max) | pooled AUC [95% CI] | Deepfakes | Face2Face | FaceSwap | accuracy at val threshold '
            '| faces + features (s, once) | train + score (s per fold) |\n|---|---|---|---|---|---|---|---|---|')
    lines = [f"| {r.setting} | **{r.fold_auc_mean:.3f}** ({r.fold_auc_sd:.3f}, {r.fold_auc_min:.2f}-{r.fold_auc_max:.2f}) | "
             f"{fmt_ci(r.pooled_auc, r.pooled_auc_lo, r.pooled_auc_hi)} | {r.auc_deepfakes:.2f} | {r.auc_face2face:.2f} | {r.auc_faceswap:.2f} | "
             f"{r.accuracy:.2f} | {r.s_once:.0f} | {r.s_per_fold:.0f} |" for r in res.itertuples()]
    return '\n'.join([head, *lines])


def write_readme(res, table, stamp, folds):
    readme = REPO/'README.md'
    text = readme.read_text()
    rec = res[res.setting == RECOMMENDED]
    best = res.loc[res.fold_auc_mean.idxmax()]
    body = [MARK[0], '',
            f"Measured by `bench/bench_real.py` ({folds}-fold identity-grouped cross-validation; commit `{stamp['commit'][:10]}`, {stamp['date']}, "
            f"{stamp['machine']}) on the FaceForensics++ c23 development set of `../shared`: {int(res.n_videos.iloc[0])} videos (38 real, 38 Deepfakes, "
            f"15 Face2Face, 15 FaceSwap) in {int(res.n_groups.iloc[0])} identity groups, MobileNetV2 with ImageNet weights. Every fold is a "
            "`deepfake-nb train` run: its test fold's identities never seen in training, 15% of the other videos as val. Per method: the fold-mean "
            "AUC of the real test videos against that method's fakes.", '', table, '',
            f"The best row here is **{best.setting}** ({best.fold_auc_mean:.3f})"
            + (f"; the `real` preset (what `deepfake-nb train` and `run` use on any dataset but the demo) scores "
               f"{rec.fold_auc_mean.iloc[0]:.3f}." if len(rec) else '.')
            + " Seconds are those the runs recorded on this machine; a row that reuses an earlier row's faces and features shows 0 for them."
            + " 106 videos in 20 identity groups cannot settle differences of a few hundredths: the folds' AUCs spread by about 0.05-0.10, and "
            "the best of several settings chosen on this one set is flattered by that choice. Run `.venv/bin/python bench/bench_real.py --quick` "
            "to check a change in minutes.", '', MARK[1]]
    new = '\n'.join(body)
    if MARK[0] in text:
        i, j = text.index(MARK[0]), text.index(MARK[1]) + len(MARK[1])
        text = text[:i] + new + text[j:]
    else:
        anchor = '## Statistics when one person appears in many videos'
        text = text.replace(anchor, '## On real deepfakes\n\n' + new + '\n\n' + anchor)
    readme.write_text(text)


if __name__ == '__main__': sys.exit(main())
