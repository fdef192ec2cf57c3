"The comparison of runs (`deepfake_nb.compare`: stats.json, Holm, ensembles fitted on val only, one run) and the report's tables and figures (`deepfake_nb.report`), on synthetic runs."
import numpy as np, pandas as pd, pytest

from deepfake_nb.core import DeepfakeNBError, home_at, load_json, reports_dir, find_runs, is_synthetic
from deepfake_nb.metrics import fmt_ci
from deepfake_nb.stats import RAW_PROB_LABEL
from deepfake_nb.compare import compare_runs
from deepfake_nb.testing import make_synthetic_runs
from deepfake_nb.report import (main_metrics_table, pairs_table, pair_tests_table, seeds_table, ensembles_table, mcnemar_tables, multi_table,
                                frame_level_table, fig_roc_pr, fig_reliability, fig_critical_difference)


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    home = tmp_path_factory.mktemp('stats_home')
    with home_at(home):
        dirs = make_synthetic_runs('synthetic', n_videos=400, frames=4)
        s = compare_runs(dirs, reports_dir('compare', 'synthetic'), n_boot=150)
        yield home, dirs, s

def test_find_runs_leaves_synthetic_runs_out_unless_allowed(tmp_path):
    "Made-up scores are never taken for trained runs: find_runs leaves them out (a warning names them) unless allowed"
    import json
    with home_at(tmp_path):
        dirs = make_synthetic_runs('mixed', n_videos=200)
        real = reports_dir('runs', 'mixed', 'trained-run')              # a run as training writes it: no synthetic flag
        real.mkdir()
        (real/'params.json').write_text(json.dumps(dict(backbone='mobilenetv2', mode='frozen')))
        (real/'complete.json').write_text(json.dumps(dict(params=dict(seed=0))))
        assert all(is_synthetic(d) and load_json(d/'complete.json')['synthetic'] for d in dirs)
        assert not is_synthetic(real)
        left_out = r'3 synthetic run\(s\) .* left out .*mobilenetv2-lstm-s0.*allow_synthetic=True'
        with pytest.warns(UserWarning, match=left_out):
            assert find_runs('mixed') == [real]
        assert find_runs('mixed', allow_synthetic=True) == sorted(dirs + [real])
        assert any('made-up scores' in w for w in compare_runs(dirs[:2], n_boot=20)['warnings'])


def test_compare_writes_stats_json_with_all_parts(synthetic):
    home, dirs, s = synthetic
    with home_at(home): saved = load_json(reports_dir('compare', 'synthetic', 'stats.json'))
    for key in ['runs', 'pairs', 'test_set', 'ensembles', 'ensemble_pairs', 'multi', 'seeds', 'readings', 'methods', 'n_boot', 'seed']: assert key in saved, key
    for q in saved['pairs']:
        for t in ['delong', 'mcnemar', 'wilcoxon']: assert 0 <= q[t]['p_value'] <= q[t]['p_holm'] <= 1
        assert {'bootstrap_auc_diff', 'wilcoxon_raw_prob', 'readings'} <= set(q) and q['wilcoxon_raw_prob']['label'] == RAW_PROB_LABEL
    r = saved['runs'][0]
    assert set(r['ci']) == {'threshold_free', '0.5', 'val_threshold'} and r['bootstrap']['n_boot'] == 150 and 'frame_level' in r
    assert saved['multi']['cochran_q'] and saved['multi']['friedman'] and len(saved['ensembles']) == 2
    assert len(saved['readings']) >= len(saved['runs']) + len(saved['pairs'])

def test_stack_is_fitted_on_val_only(synthetic):
    home, dirs, s = synthetic
    with home_at(home):
        for d in dirs:                                                  # scramble every test prediction
            pr = pd.read_csv(d/'predictions.csv'); te = pr.split == 'test'
            pr.loc[te, 'prob'] = np.random.default_rng(1).uniform(0, 1, te.sum()); pr.to_csv(d/'predictions.csv', index=False)
        s2 = compare_runs(dirs, n_boot=20)
    for e1, e2 in zip(s['ensembles'], s2['ensembles']):
        assert e1['threshold'] == e2['threshold'] and e1.get('coef') == e2.get('coef')

def test_compare_refuses_different_test_sets_by_name(tmp_path):
    with home_at(tmp_path):
        dirs = make_synthetic_runs('a', n_videos=200)[:2]
        other = make_synthetic_runs('b', [dict(backbone='xception', head='gru', seed=3, skill=1.)], n_videos=200, split_seed=7)[0]
        with pytest.raises(DeepfakeNBError, match='xception-gru-s3') as e: compare_runs(dirs + [other])
        assert 'do not share the test set' in str(e.value)

def test_report_pieces(synthetic):
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    _, _, s = synthetic
    t = main_metrics_table(s); assert list(t.index) == [r['label'] for r in s['runs'] + s['ensembles']]
    r = s['runs'][0]; assert t.iloc[0]['AUC'] == fmt_ci(r['auc_ci']['auc'], r['auc_ci']['lo'], r['auc_ci']['hi'])
    p = pairs_table(s); assert {'DeLong p', 'DeLong p (Holm)', 'reading'} <= set(p.columns)
    assert RAW_PROB_LABEL in pair_tests_table(s).index.get_level_values('test')
    assert len(ensembles_table(s)) == 2 and len(seeds_table(s)) == 0
    for f in (fig_roc_pr(s), fig_reliability(s), fig_critical_difference(s)):
        assert isinstance(f, matplotlib.figure.Figure); plt.close(f)


def test_one_run(tmp_path):
    "One run: its metrics as in a comparison with others, no pairs, ensembles or tests between models; the report's tables stay well formed"
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    with home_at(tmp_path):
        dirs = make_synthetic_runs('one', n_videos=200, frames=3)
        every, one = compare_runs(dirs, n_boot=60), compare_runs(dirs[1:2], reports_dir('compare', 'one'), n_boot=60)
        assert load_json(reports_dir('compare', 'one', 'stats.json'))['runs'][0]['run_id'] == every['runs'][1]['run_id']
        with pytest.raises(DeepfakeNBError, match='got no run'): compare_runs([])
    r, ref = one['runs'][0], every['runs'][1]
    for k in ['auc_ci', 'ci', 'threshold_free', 'metrics_val_threshold', 'threshold']: assert r[k] == ref[k], k
    assert one['pairs'] == one['ensembles'] == one['ensemble_pairs'] == one['multi']['pairwise'] == []
    assert one['multi']['cochran_q'] is None and 'two or more' in one['readings'][-1]
    assert list(main_metrics_table(one).index) == [r['label']] and len(frame_level_table(one)) == 5
    assert len(pairs_table(one)) == len(pair_tests_table(one)) == len(mcnemar_tables(one)) == len(multi_table(one)) == len(ensembles_table(one)) == 0
    assert fig_critical_difference(one) is None
    for f in (fig_roc_pr(one), fig_reliability(one)): assert isinstance(f, matplotlib.figure.Figure); plt.close(f)


def test_clustered_synthetic_report_takes_verdicts_from_cluster_aware_tests(tmp_path):
    "Two equally skilled runs whose identity effects differ: the report's verdicts, Holm and sentences come from the clustered tests, and it says so"
    import re, html as H
    from deepfake_nb.pipeline import render_report
    with home_at(tmp_path):
        dirs = make_synthetic_runs('clustered', [dict(backbone='mobilenetv2', head='lstm', skill=1.2), dict(backbone='resnet50', head='lstm', skill=1.2)],
                                   n_videos=1800, identity_effect=1.0)
        s = compare_runs(dirs, reports_dir('compare', 'clustered'), n_boot=100)
        text = H.unescape(re.sub(r'<[^>]+>', ' ', render_report('clustered').read_text()))
    q = s['pairs'][0]
    assert [q[t]['test'] for t in ['delong', 'mcnemar', 'wilcoxon']] == ['clustered DeLong', 'clustered McNemar', 'clustered Wilcoxon']
    assert q['delong']['p_holm'] == q['delong']['p_value'] and q['independent']['delong']['test'] == 'DeLong'
    assert 'Verdicts come from cluster-aware tests over 36 identity clusters' in text and 'p (videos independent)' in text
    assert q['reading'] in text and 'clustered DeLong p =' in q['reading']
    assert "permuting the models within 36 identity clusters" in text       # Cochran's Q and Friedman, over the 2 runs and 2 ensembles


def test_sbi_run_keeps_its_threshold_chosen_without_real_fakes():
    "A run trained with fakes='sbi' chose its threshold on val's real videos and their self-blends: compare keeps it, and says so, without the mismatch warning"
    import pandas as pd
    from deepfake_nb.compare import _val_threshold
    val = pd.DataFrame(dict(label=[0, 0, 1, 1], prob=[0.1, 0.2, 0.8, 0.9]))
    warns = []
    thr, src, vt = _val_threshold(dict(run_id='r', threshold=0.35, fakes='sbi'), val, 'youden', warns)
    assert thr == 0.35 and 'self-blended' in src and not warns and vt['youden'] != 0.35
    thr, src, _ = _val_threshold(dict(run_id='r', threshold=0.35, fakes='real'), val, 'youden', warns)
    assert thr == 0.35 and len(warns) == 1 and 'differs' in warns[0]          # a real-fake run whose stored threshold disagrees: warned


def test_one_run_given_twice_is_compared_not_a_key_error(tmp_path):
    "The same run from two folders (a copy, or one trained in another home) gets a label of its own, #1 and #2"
    import shutil
    with home_at(tmp_path):
        dirs = make_synthetic_runs('twice', n_videos=200)
        copy = tmp_path/'elsewhere'/dirs[0].name
        shutil.copytree(dirs[0], copy)
        s = compare_runs([dirs[0], copy, dirs[1]], n_boot=20)
    labels = [r['label'] for r in s['runs']]
    assert len(set(labels)) == 3 and labels[0].endswith('#1') and labels[1].endswith('#2'), labels
    assert len(s['pairs']) == 3
