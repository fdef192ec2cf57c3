"""`nbdev_test`, one pytest test per notebook.

Library notebooks (`nbs/lib/`) run their tests (cells flagged slow/gpu skipped). Experiment notebooks (`nbs/01_data` ... `nbs/08_studies`) run
end to end on their demo defaults, in stage order and in one suite home, so each stage reads what the one before wrote; the checks that follow
each one read the files the stage wrote (the experiment notebooks themselves hold no tests)."""
import io, contextlib, pytest
from pathlib import Path
import pandas as pd
from conftest import REPO

LIB = sorted((REPO/'nbs'/'lib').glob('[0-9]*.ipynb'))
DOCS = LIB + [REPO/'nbs'/'index.ipynb']
STAGES = sorted((REPO/'nbs').glob('0[1-8]_*.ipynb'))

def _run(nb):
    from nbdev.test import test_nb
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        ok, secs = test_nb(nb, skip_flags=['slow', 'gpu'])
    assert ok, f'{nb.relative_to(REPO)} failed:\n{err.getvalue()[-6000:]}'

@pytest.mark.parametrize('nb', DOCS, ids=[p.stem for p in DOCS])
def test_library_notebook(nb): _run(nb)

def test_layout():
    "Experiment notebooks have their parameters cell among the first five cells and define nothing; library notebooks export a module"
    import nbformat
    assert [p.stem[:2] for p in STAGES] == [f'0{i}' for i in range(1, 9)], [p.name for p in STAGES]
    for p in STAGES:
        cells = nbformat.read(p, as_version=4).cells
        tagged = [i for i, c in enumerate(cells) if 'parameters' in c.metadata.get('tags', [])]
        assert len(tagged) == 1 and tagged[0] < 5, f'{p.name}: parameters cell at {tagged} (must be one, among the first five cells)'
        assert cells[0].cell_type == 'markdown' and cells[0].source.startswith('# '), f'{p.name}: no title cell'
        for c in cells:
            if c.cell_type != 'code': continue
            assert '#| export' not in c.source and 'default_exp' not in c.source, f'{p.name}: exports code (belongs in nbs/lib/)'
            assert not any(l.startswith(('def ', 'class ', 'assert ', 'test_eq', 'test_fail')) for l in c.source.splitlines()), \
                f'{p.name}: definitions or tests in an experiment notebook:\n{c.source[:300]}'
    for p in LIB:
        assert any('#| default_exp' in c.source for c in nbformat.read(p, as_version=4).cells), f'{p.name}: library notebook without default_exp'

# What each stage's demo run must have written (read from the suite home after the notebook ran)
def _check_01_data():
    from deepfake_nb.core import data_dir
    from deepfake_nb.data import load_manifest, split_leaks
    m = load_manifest(data_dir('manifests', 'demo.csv'))
    assert len(m) >= 60 and set(m.label) == {0, 1} and not len(split_leaks(m))

def _check_02_preprocess():
    from deepfake_nb.core import data_dir
    from deepfake_nb.preprocess import preprocess_manifest
    s = preprocess_manifest(data_dir('manifests', 'demo.csv'), 12, 160, 'yunet', 1.3, dataset='demo')   # all cached by the notebook (its defaults)
    assert s.cached.all(), 'the notebook did not fill the face cache'
    assert s.faces_found.sum()/s.frames.sum() >= 0.9 and (s.error == '').all()

def _demo_runs():
    from deepfake_nb.core import reports_dir
    return sorted(p for p in reports_dir('runs', 'demo').iterdir() if (p/'complete.json').exists())

def _check_03_train():
    from deepfake_nb.core import load_json
    runs = _demo_runs(); assert runs, 'no complete demo run'
    for r in runs:
        assert len(pd.read_csv(r/'predictions.csv')) == sum(load_json(r/'params.json')['n_videos'].values())

def _check_04_compare(every_run=True):
    from deepfake_nb.core import reports_dir, load_json
    s = load_json(reports_dir('compare', 'demo', 'stats.json'))
    for k in ['runs', 'pairs', 'test_set', 'ensembles', 'ensemble_pairs', 'multi', 'seeds', 'readings']: assert k in s, k
    if every_run: assert len(s['runs']) == len(_demo_runs()), 'every complete demo run is compared'
    assert len(s['pairs']) == len(s['runs'])*(len(s['runs'])-1)//2   # one run (03_train made one): no pair, and no run trained for it
    cl = s['test_set']['clusters']; assert cl['tests'].startswith('Verdicts come from'), cl   # the report says which tests decided
    for q in s['pairs']:
        for t in ['delong', 'mcnemar', 'wilcoxon']:
            assert 0 <= q[t]['p_value'] <= q[t]['p_holm'] <= 1 or (q[t]['p_value'] != q[t]['p_value'] and q[t]['message']), q[t]
        assert q['reading'] and ('independent' in q) == cl['clustered']
    for r in s['runs']: assert r['bootstrap']['n_boot'] == 1000 and set(r['ci']) == {'threshold_free', '0.5', 'val_threshold'}

def _check_06_predict():
    from deepfake_nb.core import reports_dir
    csvs = list(reports_dir('predict').glob('*/predictions.csv'))
    assert csvs, 'no predictions.csv under reports/predict/'
    v = pd.read_csv(csvs[0])
    ok = v[v.error.fillna('') == '']
    assert len(ok) >= 2 and ok.prob.between(0, 1).all()

def _check_07_pipeline():
    "The demo's default runs learn, offline too: best epoch > 0 and test AUC >= 0.9 for every default backbone"
    from deepfake_nb.core import reports_dir, load_json
    from deepfake_nb.settings import defaults
    assert reports_dir('report.html').stat().st_size > 100_000
    _check_04_compare(every_run=False)   # now on the grid's two default runs: paired tests
    assert len(load_json(reports_dir('compare', 'demo', 'stats.json'))['pairs']) >= 1
    from deepfake_nb.train import run_params, run_dir_for, is_complete
    for b in defaults('run')['backbones']:
        r = run_dir_for(run_params(dataset='demo', backbone=b))   # the run `deepfake-nb run` made with the defaults
        assert is_complete(r), f'no complete default demo run of {b} at {r}'
        p, m = load_json(r/'params.json'), load_json(r/'metrics.json')
        assert p['best_epoch'] > 0 and m['test']['roc_auc'] >= 0.9, (b, p['weights_used'], p['best_epoch'], m['test']['roc_auc'])

def _check_08_studies():
    from deepfake_nb.core import shared_dir
    from deepfake_nb.studies import STUDIES, study_dir, load_study
    for s in STUDIES:
        preds = pd.read_csv(study_dir('demo', s)/'predictions.csv')
        assert len(preds) and preds.prob.between(0, 1).all(), s
    if shared_dir():   # self-blended-only heads scored on the real FF++ and DFDC clips
        sb = load_study('demo', 'self_blend')[0]
        assert {'shared_ffpp_c23', 'shared_dfdc'} <= set(sb.eval_dataset) and sb.auc.notna().all()
    p = pd.read_csv(study_dir('demo', 'cv')/'predictions.csv')
    assert p.video_id.is_unique and (p.groupby('group').fold.nunique() == 1).all()   # one prediction per video; identities never in two folds
    sb, sb_info = load_study('demo', 'self_blend')                                    # three runs of the study's settings: fakes real, sbi, both
    assert set(sb.training) == {'real fakes', 'self-blended only', 'real + self-blended'} and set(sb.features) == {'final'}
    assert dict(zip(sb.training, sb.fakes)) == {'real fakes': 'real', 'self-blended only': 'sbi', 'real + self-blended': 'both'} and sb.run.nunique() == 3
    assert sb_info['settings']['run_settings']['head'] == 'lstm'
    deg = load_study('demo', 'degradations')[0]
    assert set(deg.run) == {'mobilenetv2+lstm', 'resnet50+lstm'}                      # the runs of 03_train and 07_pipeline
    # the report (05_report ran before the studies existed) renders every study's section
    from deepfake_nb.pipeline import render_report
    html = Path(render_report('demo')).read_text()
    for t in ('Generalisation and robustness', 'Cross-dataset', 'Degradations at test time', 'Frames per video', 'Grouped 4-fold cross-validation',
              'Training without fakes'): assert t in html, t
    assert 'Runs trained with: backbone=mobilenetv2, head=lstm' in html   # the study tables name their runs' settings
    assert 'shared_ffpp_c23' in html or not shared_dir()                  # and the real clips they were scored on

@pytest.mark.parametrize('nb', STAGES, ids=[p.stem for p in STAGES])
def test_experiment_notebook(nb):
    _run(nb)
    check = globals().get(f'_check_{nb.stem}')
    if check: check()
