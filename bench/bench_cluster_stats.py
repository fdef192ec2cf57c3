"""Type-I error and power of the paired tests in `deepfake_nb.stats`, independent against cluster-aware, when one identity appears in many videos (issue 18).

    .venv/bin/python bench/bench_cluster_stats.py        # every setting, 1000 null and 500 power datasets each
    .venv/bin/python bench/bench_cluster_stats.py --n 250 --n-power 100 --deltas 0.10 --taus 0 1   # reduced (the CSV's)
    .venv/bin/python bench/bench_cluster_stats.py --out /tmp/bench_cluster.md        # also write the tables as markdown

Writes bench/results/bench_cluster_stats.csv (--csv; '' for none): one row per table (type1 / power), setting, tau,
delta and test, with the rejection rate, the settings, the commit (git rev-parse --short HEAD, +dirty) and the machine;
nbs/lib/07_stats.ipynb reads it.

A simulation, not a test: nothing here asserts; it prints the share of datasets each test rejects at --alpha (p <= alpha).

Data model. Identities k = 1..K, each with its real (y=0) and fake (y=1) videos v. Model m in {a, b} scores video v of identity k as
    s_m = mu_m*(y - 1/2) + u_mk^(y) + e_mv,        P(fake) = sigmoid(s_m)
  u_mk^(y): the identity's effect on model m for its real (y=0) or fake (y=1) videos (how detectable that person's fakes are, how
            suspicious their real videos look), N(0, tau^2), independent across identities and between y=0 and y=1, correlated between
            the two models with corr --rho-u (0.3): the models find different identities hard, so loss(a) - loss(b) shares a
            per-identity component of variance 2 tau^2 (1 - rho_u), which is what the independent tests ignore.
  e_mv:     per-video noise, N(0, 1), correlated between the models with corr --rho-e (0.5).
  (The brief's s = mu*y + ... is centred here, mu*(y - 1/2), so that the threshold 0.5 (s = 0) is each model's balanced threshold.)
  Population AUC of a model: P(s of a fake > s of a real, independent identities) = Phi(mu / sqrt(2 (1 + tau^2))).
Null: mu_a = mu_b (same tau, rho symmetric), so (a, b) are exchangeable within every identity and the cluster permutation test is exact.
      mu is calibrated so that AUC = --auc-a (0.80) at each tau.
Power: mu_a as above, mu_b calibrated so that AUC(b) - AUC(a) = delta (0.05, 0.10). Calibration is numerical (brentq on one simulated
      sample of 200,000 fakes and 200,000 reals from independent identities, common random numbers); the achieved population difference
      is then measured on a fresh sample of the same size (column `dAUC pop`), and the mean empirical AUC(b) - AUC(a) over the power
      datasets is shown too (`dAUC emp`; it differs from the population one only by noise: real and fake effects are independent).
Settings (cluster shapes; `groups` = identity):
  ffpp        FF++-like: 40 identities x (1 real + 4 fake) = 200 videos
  celebdf     Celeb-DF-like: 60 identities x (10 real + 30 fake) = 2400 videos
  issue       the issue's shape: 40 identities x (2 real + 4 fake) = 240 videos
  singletons  200 videos (100 real, 100 fake), every video its own identity: tau only adds per-video noise there, so one row, tau = 0
  few         12 identities x (1 real + 4 fake) = 60 videos: the cluster permutation test is exact (all 2^12 sign patterns)
  mid         20 identities x (1 real + 4 fake) = 100 videos: the fewest identities at which the suite uses the asymptotic clustered tests
Tests (naive | clustered side by side): DeLong | Obuchowski (delong_test, groups), McNemar | clustered McNemar (mcnemar_test on
  predictions at 0.5, groups: Durkalski chi2, exact sign flips below 25 discordant clusters), Wilcoxon | Datta-Satten (wilcoxon_test on
  per-video log loss, groups), cluster permutation test of AUC, log loss and accuracy at 0.5 (Monte Carlo with --n-perm = 99 random sign
  patterns, p = (1 + hits)/(1 + n_perm), valid at any n_perm, only less powerful than with many; exact when <= 15 clusters), and the
  clustered paired bootstrap of the AUC difference, three ways from the same --n-boot (199) replicates (identities
  redrawn whole):
    boot pct (before)  the plain percentile bootstrap (p = twice the share of replicates beyond 0), what
                       paired_bootstrap_auc did;
    boot pct xK        the same with the replicates' spread about the observed difference inflated by sqrt(K/(K-1));
    cl. bootstrap      what paired_bootstrap_auc does now: the symmetric studentized (bootstrap-t) cluster bootstrap,
                       each replicate studentized by its own clustered DeLong se, p = (1 + #{|t*| >= |t|})/(B + 1).
  n_boot = 199 makes both p rules reject at the nominal rate from Monte Carlo resolution alone ((B + 1)*alpha/2 and
  (B + 1)*alpha are whole); at n_boot = 100 the percentile rule alone rejects 6% of true nulls (it rejects when <= 2 of
  100 replicates lie beyond 0).
  The bootstrap costs most (one clustered DeLong per replicate), then the Celeb-DF-like shape's AUC permutation.
  In `singletons` the clustered forms get groups = one per video.
  `suite AUC / errors / loss`: the p-values that compare_runs and the report decide with (stats.paired_tests, groups): the clustered
  tests from stats.FEW_CLUSTERS (16) identities up, the exact cluster permutation test below.
Monte Carlo standard error of a type-I rate near 0.05 from n datasets: sqrt(0.05*0.95/n) (0.0069 at n = 1000); a clustered test above
0.07 is marked '!'. Seeds: every dataset has its own numpy Generator seeded from (--seed, setting, tau, scenario, replicate); the
permutation and bootstrap seeds are the replicate number. Parallel over --procs processes (at most 2).
"""
import argparse, os, sys, time, platform, subprocess
from pathlib import Path
os.environ.setdefault('OMP_NUM_THREADS', '1'); os.environ.setdefault('OPENBLAS_NUM_THREADS', '1'); os.environ.setdefault('MKL_NUM_THREADS', '1')
import multiprocessing as mp
import numpy as np, pandas as pd
from scipy import stats, optimize
from deepfake_nb.stats import (delong_test, mcnemar_test, wilcoxon_test, cluster_permutation_test, paired_tests,
                               cluster_index)
from deepfake_nb.stats import _boot_reps, _diff_se_one, _percentile_ci, _studentized_ci

REPO = Path(__file__).resolve().parent.parent
CSV = REPO/'bench'/'results'/'bench_cluster_stats.csv'

SHAPES = {   # name: (description, [(identities, real videos each, fake videos each), ...])
    'ffpp': ('FF++-like 40x(1r+4f)', [(40, 1, 4)]),
    'celebdf': ('Celeb-DF-like 60x(10r+30f)', [(60, 10, 30)]),
    'issue': ('issue 40x(2r+4f)', [(40, 2, 4)]),
    'singletons': ('singletons 100r+100f', [(100, 1, 0), (100, 0, 1)]),
    'few': ('few 12x(1r+4f)', [(12, 1, 4)]),
    'mid': ('mid 20x(1r+4f)', [(20, 1, 4)]),
}
BOOT = ['boot pct (before)', 'boot pct xK', 'cl. bootstrap']
TESTS = ['DeLong', 'Obuchowski', 'McNemar', 'cl. McNemar', 'Wilcoxon', 'Datta-Satten',
         'perm AUC', 'perm log loss', 'perm acc',
         *BOOT, 'suite AUC', 'suite errors', 'suite loss']
CLUSTERED = {'Obuchowski', 'cl. McNemar', 'Datta-Satten', 'perm AUC', 'perm log loss', 'perm acc', *BOOT,
             'suite AUC', 'suite errors', 'suite loss'}
SCEN = {'null': 0, 'd0.05': 1, 'd0.10': 2}

def layout(blocks):
    "Labels and identity of every video of a shape: (y, identity, K)"
    y, g, k0 = [], [], 0
    for n_id, n_r, n_f in blocks:
        for k in range(k0, k0 + n_id): y += [0]*n_r + [1]*n_f; g += [k]*(n_r + n_f)
        k0 += n_id
    return np.array(y), np.array(g), k0

def simulate(rng, y, g, K, mu_a, mu_b, tau, rho_u, rho_e):
    "P(fake) of models a and b for one dataset (see the module docstring)"
    z = rng.standard_normal((2, K, 2))                           # (model draw, identity, class)
    ua, ub = tau*z[0], tau*(rho_u*z[0] + np.sqrt(1 - rho_u**2)*z[1])
    e = rng.standard_normal((2, len(y)))
    ea, eb = e[0], rho_e*e[0] + np.sqrt(1 - rho_e**2)*e[1]
    sa = mu_a*(y - 0.5) + ua[g, y] + ea; sb = mu_b*(y - 0.5) + ub[g, y] + eb
    return 1/(1 + np.exp(-sa)), 1/(1 + np.exp(-sb))

def _auc(sf, sr):
    "AUC of fakes' scores `sf` against reals' `sr` (midranks)"
    r = stats.rankdata(np.r_[sf, sr]); m, n = len(sf), len(sr)
    return (r[:m].sum() - m*(m + 1)/2)/(m*n)

def pop_sample(tau, N, seed):
    "Noise of N fakes and N reals, each from its own identity: (fake noise, real noise); score = +-mu/2 + noise"
    rng = np.random.default_rng(seed)
    return tau*rng.standard_normal(N) + rng.standard_normal(N), tau*rng.standard_normal(N) + rng.standard_normal(N)

def calibrate(tau, target, N=200_000, seed=12345):
    "mu whose population AUC is `target` at this tau (numerical, common random numbers)"
    nf, nr = pop_sample(tau, N, seed)
    return optimize.brentq(lambda mu: _auc(mu/2 + nf, -mu/2 + nr) - target, 0.0, 20.0, xtol=1e-6)

def pop_auc(mu, tau, N=200_000, seed=54321):
    nf, nr = pop_sample(tau, N, seed)
    return _auc(mu/2 + nf, -mu/2 + nr)

def boot_pvalues(y, g, pa, pb, n_boot, seed):
    "p of the clustered bootstrap from one set of replicates: percentile (before), x sqrt(K/(K-1)), studentized"
    d, se, K, _ = _boot_reps(y, pa, pb, g, n_boot, seed)
    diff, se0 = _diff_se_one(y, *cluster_index(g, len(y)), pa, pb)
    stud = _studentized_ci(d, se, diff, se0, 0.95)[2] if se0 > 0 and np.isfinite(se).all() else np.nan
    return [_percentile_ci(d, diff, 0.95)[2], _percentile_ci(d, diff, 0.95, np.sqrt(K/(K - 1)))[2], stud]

def pvalues(y, g, pa, pb, n_perm, n_boot, seed):
    "p of every test in TESTS on one dataset (NaN where a test is undefined)"
    qa, qb = (pa >= 0.5).astype(int), (pb >= 0.5).astype(int)
    out = [delong_test(y, pa, pb).p_value, delong_test(y, pa, pb, groups=g).p_value,
           mcnemar_test(y, qa, qb).p_value, mcnemar_test(y, qa, qb, groups=g).p_value,
           wilcoxon_test(y, pa, pb).p_value, wilcoxon_test(y, pa, pb, groups=g).p_value]
    out += [cluster_permutation_test(y, pa, pb, g, metric, (0.5, 0.5), n_perm=n_perm, seed=seed).p_value
            for metric in ('auc', 'log_loss', 'accuracy')]
    out += boot_pvalues(y, g, pa, pb, n_boot, seed) if n_boot else [np.nan]*3
    t = paired_tests(y, pa, pb, 0.5, 0.5, groups=g, seed=seed)       # what compare_runs and the report decide with
    return out + [t['delong']['p_value'], t['mcnemar']['p_value'], t['wilcoxon']['p_value']]

def run_chunk(job):
    "p-values (reps, tests) and empirical AUC differences of replicates `reps` of one (setting, tau, scenario)"
    (si, setting, ti, tau, scen, mu_a, mu_b, reps, a) = job
    y, g, K = layout(SHAPES[setting][1])
    P, D = [], []
    for r in reps:
        rng = np.random.default_rng([a['seed'], si, ti, SCEN[scen], r])
        pa, pb = simulate(rng, y, g, K, mu_a, mu_b, tau, a['rho_u'], a['rho_e'])
        P.append(pvalues(y, g, pa, pb, a['n_perm'], a['n_boot'], r))
        D.append(_auc(pb[y == 1], pb[y == 0]) - _auc(pa[y == 1], pa[y == 0]))
    return job[:5], np.array(P, float), np.array(D)

def fmt(v, name, mark):
    s = f'{v:.3f}'
    return s + ('!' if mark and name in CLUSTERED and v > 0.07 else '')

def md_table(df):
    cols = list(df.columns)
    lines = ['| ' + ' | '.join(cols) + ' |', '|' + '|'.join('---' for _ in cols) + '|']
    lines += ['| ' + ' | '.join(str(v) for v in row) + ' |' for row in df.itertuples(index=False)]
    return '\n'.join(lines)

def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--n', type=int, default=1000, help='null datasets per setting and tau (type-I error)')
    ap.add_argument('--n-power', type=int, default=500, help='datasets per setting, tau and delta (power); 0: skip power')
    ap.add_argument('--settings', nargs='+', default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument('--taus', nargs='+', type=float, default=[0.0, 0.5, 1.0], help='identity-effect sd tau (singletons: 0 only)')
    ap.add_argument('--deltas', nargs='+', type=float, default=[0.05, 0.10], help='AUC(b) - AUC(a) for power (0.05 and/or 0.10)')
    ap.add_argument('--auc-a', type=float, default=0.80, help="population AUC of model a (and of b under the null)")
    ap.add_argument('--rho-u', type=float, default=0.3, help='corr of the identity effects between the models')
    ap.add_argument('--rho-e', type=float, default=0.5, help='corr of the per-video noise between the models')
    ap.add_argument('--n-perm', type=int, default=99, help='random sign patterns of the Monte Carlo permutation test')
    ap.add_argument('--n-boot', type=int, default=199, help='cluster bootstrap replicates (0: skip the bootstrap)')
    ap.add_argument('--alpha', type=float, default=0.05)
    ap.add_argument('--procs', type=int, default=2, help='worker processes (at most 2)')
    ap.add_argument('--chunk', type=int, default=25, help='datasets per job')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--out', default='', help='also write the tables as markdown here')
    ap.add_argument('--csv', default=str(CSV), help="results: a row per table, setting, tau, delta, test ('': none)")
    a = ap.parse_args(argv)
    for d in a.deltas:
        if f'd{d:.2f}' not in SCEN: ap.error(f'--deltas: {d} is not one of 0.05, 0.10')
    if not a.n_power: a.deltas = []
    return a

def run_all(a, rows, taus, mus, procs, t0):
    "{(setting, tau, scenario): (p-values (datasets, tests), empirical AUC differences)}"
    cfg = dict(seed=a.seed, rho_u=a.rho_u, rho_e=a.rho_e, n_perm=a.n_perm, n_boot=a.n_boot)
    jobs = []
    for (s, t) in rows:
        si, ti = list(SHAPES).index(s), taus.index(t)
        for scen, n in [('null', a.n)] + [(f'd{d:.2f}', a.n_power) for d in a.deltas]:
            jobs += [(si, s, ti, t, scen, mus[t]['null'], mus[t][scen], range(i, min(n, i + a.chunk)), cfg)
                     for i in range(0, n, a.chunk)]
    res = {}
    with mp.get_context('fork').Pool(procs) as pool:
        for i, (key, P, D) in enumerate(pool.imap_unordered(run_chunk, jobs)):
            k = (key[1], key[3], key[4])
            Po, Do = res.get(k, (np.empty((0, len(TESTS))), np.empty(0)))
            res[k] = (np.vstack([Po, P]), np.r_[Do, D])
            if (i + 1) % max(1, len(jobs)//20) == 0: print(f'  {i + 1}/{len(jobs)} jobs, {time.time() - t0:.0f}s', flush=True)
    return res

def long_rows(a, rows, res, dpop):
    "One dict per (table, setting, tau, delta, test): the share of datasets with p <= alpha"
    out = []
    for (s, t) in rows:
        y, g, K = layout(SHAPES[s][1])
        for scen in ['null'] + [f'd{d:.2f}' for d in a.deltas]:
            P, D = res[(s, t, scen)]
            base = dict(table='type1' if scen == 'null' else 'power', setting=s, shape=SHAPES[s][0], tau=t,
                        delta=0.0 if scen == 'null' else float(scen[1:]), videos=len(y), K=K, n_datasets=len(P),
                        dauc_pop=dpop.get((t, scen), 0.0), dauc_emp=float(D.mean()))
            for c, rej, nn in zip(TESTS, (np.nan_to_num(P, nan=1.0) <= a.alpha).mean(0), np.isnan(P).sum(0)):
                if c in BOOT and not a.n_boot: continue
                out.append(dict(base, test=c, clustered=c in CLUSTERED, rate=float(rej), nan_p=int(nn)))
    return out

def git_short():
    "`git rev-parse --short HEAD` of this repository, with +dirty when tracked files differ from it"
    def git(*args):
        return subprocess.run(['git', *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
    try:
        dirty = '+dirty' if git('status', '--porcelain', '-uno') else ''
        return (git('rev-parse', '--short', 'HEAD') or 'unknown') + dirty
    except Exception:
        return 'unknown'

def tables(a, long, secs, procs):
    "The markdown tables of type-I error and power, with their notes"
    df = pd.DataFrame(long)
    if df.empty: return ''
    df['cell'] = [fmt(v, c, tb == 'type1') for v, c, tb in zip(df.rate, df.test, df.table)]
    df['dauc_pop'], df['dauc_emp'] = df.dauc_pop.map('{:.4f}'.format), df.dauc_emp.map('{:.4f}'.format)
    cols = [c for c in TESTS if c in set(df.test)]
    def wide(tb, idx):
        w = df[df.table == tb].pivot_table(index=idx, columns='test', values='cell', aggfunc='first', sort=False)
        return w[cols].reset_index()
    se1 = np.sqrt(a.alpha*(1 - a.alpha)/a.n)
    txt = [f"## Type-I error at alpha = {a.alpha} ({a.n} null datasets per row; Monte Carlo SE "
           f"sqrt({a.alpha}*{1 - a.alpha:.2f}/{a.n}) = {se1:.4f}; '!' = clustered test above 0.07)", '',
           md_table(wide('type1', ['shape', 'tau', 'videos', 'K']))]
    if a.n_power:
        txt += ['', f"## Power at alpha = {a.alpha} ({a.n_power} datasets per row; Monte Carlo SE <= "
                f"{np.sqrt(0.25/a.n_power):.4f}; AUC(a) = {a.auc_a}; naive tests' power is not comparable where "
                "their type-I error is inflated)", '',
                md_table(wide('power', ['shape', 'tau', 'delta', 'dauc_pop', 'dauc_emp']))]
    txt += ['', f"Naive: DeLong, McNemar, Wilcoxon (groups=None). Clustered: the rest (groups = identity). "
            f"Permutation: n_perm = {a.n_perm} (exact when <= 15 clusters); bootstrap n_boot = {a.n_boot} (the three "
            f"boot columns share replicates; 'cl. bootstrap' is paired_bootstrap_auc). rho_u = {a.rho_u}, "
            f"rho_e = {a.rho_e}, seed {a.seed}. Runtime {secs:.0f} s on {procs} process(es)."]
    nans = df[df.nan_p > 0]
    if len(nans): txt.append('NaN p-values (counted as not rejecting): ' + '; '.join(
        f'{r.setting} tau {r.tau} delta {r.delta} {r.test}: {r.nan_p}' for r in nans.itertuples()))
    return '\n'.join(txt)

def main(argv=None):
    a = parse(argv)
    t0 = time.time()
    procs = max(1, min(2, a.procs))
    rows = [(s, t) for s in a.settings for t in (a.taus if s != 'singletons' else [0.0])]
    taus = sorted({t for _, t in rows})
    mus = {t: {'null': calibrate(t, a.auc_a), **{f'd{d:.2f}': calibrate(t, a.auc_a + d) for d in a.deltas}}
           for t in taus}
    dpop = {(t, sc): pop_auc(mus[t][sc], t) - pop_auc(mus[t]['null'], t) for t in taus for sc in mus[t] if sc != 'null'}
    print(f"{len(rows)} setting x tau rows; {a.n} null datasets each, {a.n_power} per power delta {a.deltas}; "
          f"AUC(a) = {a.auc_a}, rho_u = {a.rho_u}, rho_e = {a.rho_e}; n_perm = {a.n_perm}, n_boot = {a.n_boot}; "
          f"alpha = {a.alpha}; {procs} process(es)", flush=True)
    for t in taus: print(f"  tau {t}: mu " + ', '.join(f'{k} {v:.4f}' for k, v in mus[t].items()), flush=True)
    res = run_all(a, rows, taus, mus, procs, t0)
    secs = time.time() - t0
    long = long_rows(a, rows, res, dpop)
    out = tables(a, long, secs, procs)
    print('\n' + out, flush=True)
    if a.out: Path(a.out).write_text(out + '\n')
    if a.csv:
        stamp = dict(commit=git_short(), machine=f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores)",
                     date=time.strftime('%Y-%m-%d %H:%M'), alpha=a.alpha, n_boot=a.n_boot, n_perm=a.n_perm,
                     auc_a=a.auc_a, rho_u=a.rho_u, rho_e=a.rho_e, seed=a.seed, runtime_s=round(secs), procs=procs,
                     command='python bench/bench_cluster_stats.py ' + ' '.join(sys.argv[1:] if argv is None else argv))
        Path(a.csv).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(long).assign(**stamp).to_csv(a.csv, index=False)
        print(f'\nwrote {a.csv} ({len(long)} rows; commit {stamp["commit"]}, {stamp["machine"]})', flush=True)
    return long

if __name__ == '__main__':
    main()
