"Every statistic and metric of stage 4 against a reference implementation (pROC, statsmodels, SciPy, scikit-learn, brute force), plus property tests; the comparison itself is in test_compare.py."
import json
import numpy as np, pandas as pd, pytest
from scipy import stats as sps
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn import metrics as skm
from hypothesis import given, settings, assume, strategies as st

from deepfake_nb.metrics import (classification_metrics, threshold_free_metrics, roc_curve_points, average_precision, eer, eer_threshold,
                                 tpr_at_fpr, reliability_table, expected_calibration_error, youden_threshold, evaluate_scores, bootstrap_indices,
                                 aggregate_frames, evaluate_frame_levels)
from deepfake_nb.stats import (_delong_cov, delong_test, delong_auc_ci, mcnemar_test, wilcoxon_test, wilcoxon_raw_probs, log_losses, holm,
                               paired_bootstrap_auc, _boot_reps)
from deepfake_nb.omnibus import cochran_q, friedman_test


def _data(seed, n, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n); y[:2], y[2:4] = 0, 1
    a = rng.normal(y*1.2, 1, n); b = a + rng.normal(0, 1, n)
    if ties: a, b = np.round(a), np.round(b)
    return y, a, b

# ---------------------------------------------------------------- DeLong
def test_delong_reproduces_proc_asah(shared):
    ref = json.loads((shared/'data'/'stats'/'delong_reference.json').read_text())
    d = pd.read_csv(shared/'data'/'stats'/'aSAH.csv'); y = (d.outcome == 'Poor').astype(int).to_numpy()
    r, exp = delong_test(y, d.s100b, d.ndka), ref['delong_paired_two_sided']['s100b_vs_ndka']
    assert abs(r.auc_a - ref['auc']['s100b']) < 1e-6 and abs(r.auc_b - ref['auc']['ndka']) < 1e-6
    assert abs(r.z - exp['Z']) < 1e-6 and abs(r.p_value - exp['p']) < 1e-6
    np.testing.assert_allclose(r.ci_diff, exp['ci95_diff'], atol=1e-6)
    ci = delong_auc_ci(y, d.s100b)                                      # pROC prints 95% CI: 0.6301-0.8326 (DeLong)
    np.testing.assert_allclose([ci.lo, ci.hi], [0.6301, 0.8326], atol=1e-4)
    # swapped: same p, opposite Z
    s = delong_test(y, d.ndka, d.s100b); assert abs(s.z + exp['Z']) < 1e-6 and abs(s.p_value - exp['p']) < 1e-6

def _brute_delong(y, *scores):
    X = [np.asarray(s)[y == 1] for s in scores]; Y = [np.asarray(s)[y == 0] for s in scores]
    psi = [(x[:, None] > yy[None, :]) + 0.5*(x[:, None] == yy[None, :]) for x, yy in zip(X, Y)]
    v10 = np.array([p.mean(1) for p in psi]); v01 = np.array([p.mean(0) for p in psi])
    return np.array([p.mean() for p in psi]), np.cov(v10)/v10.shape[1] + np.cov(v01)/v01.shape[1]

@pytest.mark.parametrize('seed,n,ties', [(0, 20, False), (1, 150, False), (2, 60, True), (3, 200, True)])
def test_delong_matches_brute_force(seed, n, ties):
    y, a, b = _data(seed, n, ties)
    auc, cov = _delong_cov(y, a, b); auc_bf, cov_bf = _brute_delong(y, a, b)
    np.testing.assert_allclose(auc, auc_bf, atol=1e-12); np.testing.assert_allclose(cov, cov_bf, atol=1e-12)
    r = delong_test(y, a, b); var = cov_bf[0, 0] + cov_bf[1, 1] - 2*cov_bf[0, 1]
    assert abs(r.z - (auc_bf[0] - auc_bf[1])/np.sqrt(var)) < 1e-9

# ---------------------------------------------------------------- McNemar, Wilcoxon, Cochran, Friedman, Holm
@pytest.mark.parametrize('n_disc', [0, 5, 24, 25, 60])
def test_mcnemar_matches_statsmodels(n_disc):
    from statsmodels.stats.contingency_tables import mcnemar
    y = np.ones(100, int); pa = y.copy(); pb = y.copy(); pa[:n_disc//3] = 0; pb[n_disc//3:n_disc] = 0
    r = mcnemar_test(y, pa, pb)
    assert r.b + r.c == n_disc and r.method == ('exact' if n_disc < 25 else 'chi2 continuity-corrected')
    ref = mcnemar(np.array(r.table), exact=r.method == 'exact', correction=True)
    assert abs(r.statistic - ref.statistic) < 1e-12 and abs(r.p_value - ref.pvalue) < 1e-12
    # the table the right way round: rows model a (right, wrong), columns model b (right, wrong)
    assert r.table[0][1] == int(((pa == y) & (pb != y)).sum()) and r.table[1][0] == int(((pa != y) & (pb == y)).sum())
    assert sum(map(sum, r.table)) == 100

def test_wilcoxon_matches_scipy():
    rng = np.random.default_rng(4); y = rng.integers(0, 2, 120)
    pa = np.clip(.5 + .3*(2*y - 1) + rng.normal(0, .2, 120), 0, 1); pb = np.clip(pa + rng.normal(0, .1, 120), 0, 1)
    r, ref = wilcoxon_test(y, pa, pb), sps.wilcoxon(log_losses(y, pa), log_losses(y, pb))
    assert abs(r.statistic - ref.statistic) < 1e-9 and abs(r.p_value - ref.pvalue) < 1e-12
    raw, rref = wilcoxon_raw_probs(pa, pb), sps.wilcoxon(pa, pb)
    assert abs(raw.statistic - rref.statistic) < 1e-9 and abs(raw.p_value - rref.pvalue) < 1e-12
    assert wilcoxon_test(y, pa, pa).p_value == 1.0

@pytest.mark.parametrize('n,k', [(25, 3), (150, 4), (40, 6)])
def test_cochran_and_friedman_match_references(n, k):
    from statsmodels.stats.contingency_tables import cochrans_q
    rng = np.random.default_rng(n + k)
    X = (rng.random((n, k)) < rng.uniform(.5, .9, k)).astype(int)
    r, ref = cochran_q(X), cochrans_q(X)
    assert abs(r.statistic - ref.statistic) < 1e-10 and abs(r.p_value - ref.pvalue) < 1e-12 and r.df == ref.df
    L = np.round(rng.gamma(1, 1, (n, k)), 1)                            # ties in many rows
    f, fref = friedman_test(L), sps.friedmanchisquare(*L.T)
    assert abs(f.statistic - fref.statistic) < 1e-10 and abs(f.p_value - fref.pvalue) < 1e-12

def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests
    rng = np.random.default_rng(5)
    for p in [rng.random(8)**3, np.array([.01, .04, .03, .005]), np.array([.2])]:
        np.testing.assert_allclose(holm(p), multipletests(p, method='holm')[1], atol=1e-15)

# ---------------------------------------------------------------- point metrics
@pytest.mark.parametrize('seed,ties', [(0, False), (1, True)])
def test_point_metrics_match_sklearn(seed, ties):
    from sklearn.calibration import calibration_curve
    rng = np.random.default_rng(seed); n = 400; y = rng.integers(0, 2, n)
    p = 1/(1 + np.exp(-rng.normal(1.2*(2*y - 1), 1.5)))
    if ties: p = np.round(p, 1)
    for t in [0.2, 0.5, 0.8]:
        m, pred = classification_metrics(y, p, t), (p >= t).astype(int)
        assert m['confusion'] == skm.confusion_matrix(y, pred, labels=[0, 1]).tolist()
        for key, ref in [('accuracy', skm.accuracy_score(y, pred)), ('balanced_accuracy', skm.balanced_accuracy_score(y, pred)),
                         ('cohen_kappa', skm.cohen_kappa_score(y, pred)), ('mcc', skm.matthews_corrcoef(y, pred)),
                         ('youden_j', skm.balanced_accuracy_score(y, pred, adjusted=True)),
                         ('precision_fake', skm.precision_score(y, pred, zero_division=0)), ('recall_fake', skm.recall_score(y, pred)),
                         ('f1_fake', skm.f1_score(y, pred)), ('precision_real', skm.precision_score(y, pred, pos_label=0, zero_division=0)),
                         ('recall_real', skm.recall_score(y, pred, pos_label=0)), ('f1_real', skm.f1_score(y, pred, pos_label=0))]:
            assert abs(m[key] - ref) < 1e-12, key
    tf = threshold_free_metrics(y, p)
    assert abs(tf['roc_auc'] - skm.roc_auc_score(y, p)) < 1e-12
    assert abs(tf['average_precision'] - skm.average_precision_score(y, p)) < 1e-12 and abs(average_precision(y, p) - tf['average_precision']) < 1e-15
    assert abs(tf['brier'] - skm.brier_score_loss(y, p)) < 1e-12 and abs(tf['log_loss'] - skm.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7))) < 1e-12   # ours clips at 1e-7
    fpr, tpr, _ = roc_curve_points(y, p); f2, t2, _ = skm.roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose(fpr, f2); np.testing.assert_allclose(tpr, t2)
    t = reliability_table(y, p); ok = t.n > 0; pt, pp = calibration_curve(y, p, n_bins=10)
    np.testing.assert_allclose(t.frac_fake[ok], pt); np.testing.assert_allclose(t.mean_prob[ok], pp)
    assert abs(tf['ece'] - (t.n[ok]/n*(t.mean_prob[ok] - t.frac_fake[ok]).abs()).sum()) < 1e-12
    assert abs(expected_calibration_error(y, p) - tf['ece']) < 1e-15

@pytest.mark.parametrize('seed', range(6))
def test_eer_and_tpr_at_fpr_match_direct_roc(seed):
    rng = np.random.default_rng(seed); n = int(rng.integers(10, 300)); y = rng.integers(0, 2, n); y[:2], y[2:4] = 0, 1
    s = rng.normal(y*rng.uniform(0, 2), 1, n)
    if seed % 2: s = np.round(s*2)/2
    f, t, _ = skm.roc_curve(y, s, drop_intermediate=False)
    direct = brentq(lambda x: 1. - x - interp1d(f, t)(x), 0., 1., xtol=1e-14)
    assert abs(eer(y, s) - direct) < 1e-9 and abs(threshold_free_metrics(y, s)['eer'] - direct) < 1e-9
    for max_fpr in (0.01, 0.05, 0.3):
        brute = max([(s >= c)[y == 1].mean() for c in np.r_[np.unique(s), np.inf] if (s >= c)[y == 0].mean() <= max_fpr])
        assert abs(tpr_at_fpr(y, s, max_fpr) - brute) < 1e-12
    # the EER threshold, chosen on this (val) data, brings FPR and FNR as close as any threshold can
    m = classification_metrics(y, s, eer_threshold(y, s))
    assert abs((1 - m['recall_real']) - (1 - m['recall_fake'])) <= np.abs(f - (1 - t))[1:].min() + 1e-12

# ---------------------------------------------------------------- properties
rows3 = st.lists(st.tuples(st.integers(0, 1), st.integers(0, 10), st.integers(0, 10)), min_size=6, max_size=50)

@settings(max_examples=30, deadline=None)
@given(rows3)
def test_auc_invariant_to_monotone_transforms(rows):
    y, a, _ = map(np.array, zip(*rows)); assume(2 <= y.sum() <= len(y) - 2)
    b = np.exp(a/3.) + a**3                                            # strictly increasing
    c1, c2 = delong_auc_ci(y, a), delong_auc_ci(y, b)
    assert abs(c1.auc - c2.auc) < 1e-12 and abs(c1.se - c2.se) < 1e-12
    t1, t2 = threshold_free_metrics(y, a/10), threshold_free_metrics(y, b/b.max())
    for k in ['roc_auc', 'average_precision', 'eer', 'tpr_at_fpr_1pct', 'tpr_at_fpr_5pct']: assert abs(t1[k] - t2[k]) < 1e-12, k

@settings(max_examples=30, deadline=None)
@given(rows3)
def test_swapping_models_flips_z_and_keeps_p(rows):
    y, a, b = map(np.array, zip(*rows)); assume(2 <= y.sum() <= len(y) - 2)
    ab, ba = delong_test(y, a, b), delong_test(y, b, a)
    if np.isnan(ab.p_value):   # zero variance, different AUCs: no test, said in both directions
        assert np.isnan(ba.p_value) and ab.diff == -ba.diff and ab.message and ba.message
    else: assert abs(ab.z + ba.z) < 1e-9 and abs(ab.p_value - ba.p_value) < 1e-12
    m1, m2 = mcnemar_test(y, a >= 5, b >= 5), mcnemar_test(y, b >= 5, a >= 5)
    assert (m1.b, m1.c) == (m2.c, m2.b) and m1.p_value == m2.p_value

@settings(max_examples=20, deadline=None)
@given(rows3, st.booleans())
def test_bootstrap_cis_contain_the_point_estimate(rows, clustered):
    y, a, b = map(np.array, zip(*rows)); assume(2 <= y.sum() <= len(y) - 2)
    g = a % 4 if clustered else None
    ev = evaluate_scores(y, a/10, {'0.5': .5}, groups=g, n_boot=150, seed=3)
    lo, hi = ev['ci']['threshold_free']['roc_auc']; assert lo - 1e-12 <= ev['threshold_free']['roc_auc'] <= hi + 1e-12
    lo, hi = ev['ci']['0.5']['accuracy']; assert lo - 1e-12 <= ev['at']['0.5']['accuracy'] <= hi + 1e-12
    bd = paired_bootstrap_auc(y, a, b, groups=g, n_boot=150, seed=3); assert bd.lo - 1e-12 <= bd.diff <= bd.hi + 1e-12

@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 1), min_size=4, max_size=40), st.integers(0, 5))
def test_ties_are_handled(y, v):
    y = np.array(y); assume(2 <= y.sum() <= len(y) - 2)
    s = np.full(len(y), float(v))                                       # every score tied
    assert roc_auc_all_tied(y, s) == 0.5 and threshold_free_metrics(y, s/5)['eer'] == 0.5
    r = delong_test(y, s, s); assert (r.diff, r.p_value) == (0.0, 1.0)
    assert np.isfinite(youden_threshold(y, s)) and np.isfinite(eer_threshold(y, s))

def roc_auc_all_tied(y, s): return delong_auc_ci(y, s).auc

# ---------------------------------------------------------------- bootstrap, frames
def test_bootstrap_records_scheme_and_keeps_clusters_whole():
    y = np.array([0]*6 + [1]*4); g = np.array(list('aabbcdacee'))
    idx, meta = bootstrap_indices(y, g, n_boot=100, seed=2)
    assert meta['n_boot'] == 100 and meta['seed'] == 2 and meta['clustered'] and meta['n_clusters'] == 5
    sizes = pd.Series(g).value_counts()
    for i in idx:
        c = pd.Series(g[i]).value_counts(); assert ((c % sizes[c.index]) == 0).all() and 0 < y[i].sum() < len(i)
    ev = evaluate_scores(y, np.linspace(0, 1, 10), n_boot=77, seed=5)
    assert (ev['bootstrap']['n_boot'], ev['bootstrap']['seed']) == (77, 5)

def _clustered_pair(seed, K=12, shift=0.0):
    "FF++-like scores of two models, 1 real + 4 fakes per identity, identity effects of sd 1 on each"
    rng = np.random.default_rng(seed)
    g, y = np.repeat(np.arange(K), 5), np.tile([0, 1, 1, 1, 1], K)
    u = rng.normal(0, 1, (2, K))
    return y, g, y*(1 + shift) + u[0, g] + rng.normal(0, 1, 5*K), y + u[1, g] + rng.normal(0, 1, 5*K)

def test_cluster_bootstrap_is_studentized_by_each_resamples_clustered_delong():
    y, g, a, b = _clustered_pair(0)
    idx, _ = bootstrap_indices(y, g, n_boot=199, seed=4)
    # brute force: each resample scored afresh, its redrawn copies of an identity numbered as clusters (5 videos each)
    reps = [delong_test(y[i], a[i], b[i], groups=np.arange(len(i))//5) for i in idx]
    d, se = np.array([r.diff for r in reps]), np.array([r.se for r in reps])
    np.testing.assert_allclose(_boot_reps(y, a, b, g, 199, 4)[:2], (d, se), atol=1e-12)
    ob, bd = delong_test(y, a, b, groups=g), paired_bootstrap_auc(y, a, b, g, n_boot=199, seed=4)
    t = np.sort(np.abs(d - ob.diff)/se)
    np.testing.assert_allclose([bd.lo, bd.hi], [ob.diff - t[189]*ob.se, ob.diff + t[189]*ob.se], atol=1e-12)
    assert abs(bd.p_value - (1 + (t >= abs(ob.z)).sum())/200) < 1e-12 and bd.method.startswith('studentized')
    assert abs(bd.se - d.std(ddof=1)) < 1e-12 and bd == paired_bootstrap_auc(y, a, b, g, n_boot=199, seed=4)
    assert paired_bootstrap_auc(y, a, b, g, n_boot=199, seed=5) != bd

@pytest.mark.parametrize('shift', [0.0, 0.5, 1.0, 2.0])
def test_cluster_bootstrap_ci_and_p_agree(shift):
    y, g, a, b = _clustered_pair(1, shift=shift)
    for seed in range(3):      # (B + 1)*level whole: 0 lies outside the CI exactly when p <= 1 - level
        r = paired_bootstrap_auc(y, a, b, g, n_boot=199, seed=seed)
        assert (r.lo > 0 or r.hi < 0) == (r.p_value <= 0.05 + 1e-12) and r.lo <= r.diff <= r.hi

def test_cluster_bootstrap_without_clustered_se_widens_the_percentile_spread_by_sqrt_k_over_k_minus_1():
    rng = np.random.default_rng(2)
    y, g = np.r_[np.ones(6, int), np.zeros(10, int)], np.r_[[0]*6, 1 + np.arange(10)//2]    # every fake from identity 0
    a, b = y + rng.normal(0, 1, 16), y + rng.normal(0, 1.5, 16)
    r = paired_bootstrap_auc(y, a, b, g, n_boot=400, seed=3)
    d = np.array([_clustered_diff(y[i], a[i], b[i]) for i in bootstrap_indices(y, g, 400, 3)[0]])
    lo, hi = np.quantile(d, [.025, .975])
    c = np.sqrt(6/5)                               # K = 6 identities
    assert hi - lo > 0 and abs((r.hi - r.lo) - c*(hi - lo)) < 1e-12 and 'sqrt(K/(K-1))' in r.method
    assert abs((r.lo - r.diff) - c*(lo - r.diff)) < 1e-12

def _clustered_diff(y, a, b): return skm.roc_auc_score(y, a) - skm.roc_auc_score(y, b)

def test_frame_levels_aggregate_and_cluster_by_video():
    rng = np.random.default_rng(0); nv = 60
    vids = [f'v{i}' for i in range(nv)]; lab = np.arange(nv) % 2; split = np.where(np.arange(nv) < 30, 'val', 'test')
    fr = pd.DataFrame([dict(video_id=v, frame=k, prob=float(rng.uniform(.3, 1) if l else rng.uniform(0, .7))) for v, l in zip(vids, lab) for k in range(4)])
    fl = evaluate_frame_levels(fr, pd.DataFrame(dict(video_id=vids, split=split, label=lab)), n_boot=50)
    agg = aggregate_frames(fr).join(pd.DataFrame(dict(video_id=vids, split=split, label=lab)).set_index('video_id'))
    te = agg[agg.split == 'test']
    for h in ['mean', 'max', 'median']:
        assert abs(fl['levels'][f'video_{h}']['threshold_free']['roc_auc'] - skm.roc_auc_score(te.label, te[f'prob_{h}'])) < 1e-12
    assert fl['levels']['frame']['n'] == 4*len(te) and fl['levels']['frame']['bootstrap']['n_clusters'] == len(te)
