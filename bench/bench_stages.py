"""What a stage run costs beyond its own work, on the demo, in one run on one machine: (a) `papermill nbs/03_train.ipynb` against the
library call it wraps, (b) `deepfake-nb predict` on the ../shared FF++ c23 clips against its own per-video reading, detecting and scoring time.

    .venv/bin/python bench/bench_stages.py                              # this checkout
    .venv/bin/python bench/bench_stages.py --repo /tmp/old --repeats 3  # another checkout, e.g. an older commit cloned to /tmp/old

Code: every measurement is a subprocess with PYTHONPATH=<repo> and cwd <repo>, so that checkout's `deepfake_nb` imports, in the process
and in the papermill kernel (which inherits the environment); the header prints the `deepfake_nb` that imported and the commit.
Home: a temporary DEEPFAKE_NB_HOME (or --home), warmed before anything is timed: demo videos, face cache, MobileNetV2 features, and one
trained run (seed 0), which (b) scores with.
(a) Every repeat trains seed S (100) twice, the same work (force=True retrains it; epochs shown), in alternating order:
      papermill: `python -m papermill <repo>/nbs/03_train.ipynb out.ipynb -k python3 -p backbone mobilenetv2 -p seed S -p force True`
      library:   `python -c "...train_run(dataset='demo', backbone='mobilenetv2', seed=S, force=True)"`, a fresh process (start-up and
                 imports included, as a process the user starts would); the call alone, after the imports, is shown too.
    papermill overhead = papermill wall - library process wall (min of each over the repeats; each repeat's difference shown too).
(b) `deepfake-nb predict --inputs <clips> --run-dir <the seed-0 run> --out-csv <tmp>` wall time, process start to exit, against the sum of
    the CSV's per-video `seconds` (reading, detecting and scoring each video): share = sum / wall. The verdict column is `verdict`
    (or `label` in older checkouts).
Timings are the min over --repeats (default 2), all values shown. Floors (issue 17): overhead <= 5 s per run on 2 cores; share >= 80%.
"""
import argparse, os, sys, json, time, shutil, subprocess, tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
OVERHEAD_FLOOR_S, SHARE_FLOOR = 5.0, 0.80

def _env(repo: Path, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH',)}
    return dict(env, PYTHONPATH=str(repo), DEEPFAKE_NB_HOME=str(home), TF_CPP_MIN_LOG_LEVEL='2')

def _timed(args, env, cwd, what: str) -> tuple[float, str]:
    "Run `args`; return (wall seconds, stdout); a failure stops the benchmark naming the command and its last output"
    t0 = time.perf_counter()
    r = subprocess.run([str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if r.returncode: sys.exit(f"bench_stages: {what} failed (exit {r.returncode}):\n  {' '.join(map(str, args))[:300]}\n{(r.stdout + r.stderr)[-3000:]}")
    return wall, r.stdout

def _py(python, code: str, *args) -> list: return [python, '-c', code, *args]

LIB_CALL = """import json, time, sys
t0 = time.perf_counter()
from deepfake_nb.train import train_run
t1 = time.perf_counter()
r = train_run(dataset='demo', backbone='mobilenetv2', seed=int(sys.argv[1]), force=sys.argv[2] == 'force')
print(json.dumps(dict(import_s=t1 - t0, call_s=time.perf_counter() - t1, run_dir=str(r))))"""

CLI = "import sys; sys.argv[0] = 'deepfake-nb'; from deepfake_nb.pipeline import main; sys.exit(main())"

def _run_info(run_dir) -> dict:
    p = json.loads((Path(run_dir)/'params.json').read_text())
    return dict(epochs=p.get('epochs_run'), weights=p.get('weights_used'))

def _notebook_times(nb_path) -> dict:
    "Where an executed notebook's time went: papermill's duration (kernel start to end) and its slowest code cells"
    nb = json.loads(Path(nb_path).read_text())
    cells = [(c['metadata'].get('papermill', {}).get('duration') or 0.0, ''.join(c['source']).strip().splitlines()[0][:40] if c['source'] else '')
             for c in nb['cells'] if c['cell_type'] == 'code']
    return dict(duration=nb['metadata'].get('papermill', {}).get('duration'), cells=sum(d for d, _ in cells),
                slowest=[(round(d, 1), first) for d, first in sorted(cells, reverse=True)[:3]])

def _load() -> str: return '/'.join(f'{x:.1f}' for x in os.getloadavg())

def bench(repo: Path, python: str, home: Path, clips: Path, repeats: int, seed: int = 100) -> dict:
    env, tmp = _env(repo, home), Path(tempfile.mkdtemp(prefix='bench_stages_'))
    who = json.loads(_timed(_py(python, "import deepfake_nb, json; print(json.dumps(deepfake_nb.__file__))"), env, repo, 'import deepfake_nb')[1])
    if not Path(who).resolve().is_relative_to(repo.resolve()): sys.exit(f"bench_stages: deepfake_nb imports from {who}, not from {repo}")
    commit = subprocess.run(['git', '-C', str(repo), 'describe', '--always', '--dirty'], capture_output=True, text=True).stdout.strip() or '?'
    print(f"repo {repo} (commit {commit}); deepfake_nb from {who}; home {home}; {os.cpu_count()} CPUs; load {_load()} at start", flush=True)
    # warm-up (not timed): demo, faces, features, and the seed-0 run that predict scores with
    t, out = _timed(_py(python, LIB_CALL, 0, 'reuse'), env, repo, 'warm-up train_run(seed=0)')
    run0 = json.loads(out.strip().splitlines()[-1])['run_dir']
    print(f"warm-up {t:.0f}s: {run0}", flush=True)
    res = dict(repo=str(repo), commit=commit, papermill=[], library=[], call=[], imports=[], epochs_pm=[], epochs_lib=[], predict_wall=[],
               predict_scoring=[], load=[])
    nb = repo/'nbs'/'03_train.ipynb'
    for i in range(repeats):
        def pm():
            t, _ = _timed([python, '-m', 'papermill', nb, tmp/f'03_train_s{seed}.ipynb', '-k', 'python3', '-p', 'backbone', 'mobilenetv2',
                           '-p', 'seed', seed, '-p', 'force', 'True', '--no-progress-bar'], env, repo, f'papermill 03_train seed {seed}')
            res['papermill'].append(t)
            rd = next(p.parent for p in (home/'reports'/'runs'/'demo').glob(f'mobilenetv2-lstm-s{seed}-*/complete.json'))
            res['epochs_pm'].append(_run_info(rd)['epochs'])
        def lib():
            t, out = _timed(_py(python, LIB_CALL, seed, 'force'), env, repo, f'train_run seed {seed}')
            o = json.loads(out.strip().splitlines()[-1])
            res['library'].append(t); res['call'].append(o['call_s']); res['imports'].append(o['import_s'])
            res['epochs_lib'].append(_run_info(o['run_dir'])['epochs'])
        for f in ((pm, lib) if i % 2 == 0 else (lib, pm)): f()
        res['load'].append(_load())
        print(f"(a) seed {seed}: papermill {res['papermill'][-1]:.1f}s, library process {res['library'][-1]:.1f}s "
              f"(call {res['call'][-1]:.1f}s); epochs {res['epochs_pm'][-1]}/{res['epochs_lib'][-1]}; load {res['load'][-1]}", flush=True)
    import pandas as pd
    for i in range(repeats):
        csv = tmp/f'predict_{i}.csv'
        t, _ = _timed(_py(python, CLI, 'predict', '--inputs', clips, '--run-dir', run0, '--out-csv', csv), env, repo, f'deepfake-nb predict #{i}')
        v = pd.read_csv(csv)
        verdict = 'verdict' if 'verdict' in v else 'label'
        res['predict_wall'].append(t); res['predict_scoring'].append(float(v.seconds.sum()))
        res['n_videos'], res['n_errors'] = len(v), int((v.error.notna() & v.error.astype(str).ne('')).sum())
        res['verdicts'] = v[verdict].fillna('').astype(str).value_counts().to_dict()
        res.setdefault('predict_notebook', []).append(_notebook_times(max((home/'reports'/'predict').glob('06_predict-*.ipynb'), key=os.path.getmtime)))
        print(f"(b) predict #{i}: wall {t:.1f}s, per-video seconds summed {res['predict_scoring'][-1]:.1f}s over {len(v)} videos "
              f"({res['n_errors']} errors; {verdict}: {res['verdicts']}); load {_load()}", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return res

def table(r: dict) -> str:
    pm, lib, call = min(r['papermill']), min(r['library']), min(r['call'])
    over = pm - lib
    wall, score = min(r['predict_wall']), min(r['predict_scoring'])
    k = r['predict_wall'].index(wall)
    share = score / wall                       # min scoring / min wall; each repeat's share shown too
    fmt = lambda xs: ', '.join(f'{x:.1f}' for x in xs)
    rows = [('(a) papermill nbs/03_train.ipynb', f'{pm:.1f} s', f"[{fmt(r['papermill'])}] epochs {r['epochs_pm']}"),
            ('    train_run, fresh process (baseline)', f'{lib:.1f} s', f"[{fmt(r['library'])}] epochs {r['epochs_lib']}"),
            ('    train_run call alone (after imports)', f'{call:.1f} s', f"[{fmt(r['call'])}]; imports [{fmt(r['imports'])}] s"),
            ('    papermill / baseline', f'{pm / lib:.2f}x', ''),
            ('    papermill overhead per run', f'{over:.1f} s', f"[{fmt(a - b for a, b in zip(r['papermill'], r['library']))}] floor <= {OVERHEAD_FLOOR_S:.0f} s: {'ok' if over <= OVERHEAD_FLOOR_S else 'NOT MET'}"),
            (f"(b) deepfake-nb predict, {r['n_videos']} clips, wall", f'{wall:.1f} s', f"[{fmt(r['predict_wall'])}]"),
            *([('    of which the 06_predict notebook ran', f"{r['predict_notebook'][k]['duration']:.1f} s",
                f"(that run; code cells {r['predict_notebook'][k]['cells']:.1f} s, slowest {r['predict_notebook'][k]['slowest']})")] if r.get('predict_notebook') else []),
            ('    per-video seconds, summed (baseline)', f'{score:.1f} s', f"[{fmt(r['predict_scoring'])}]"),
            ('    share of wall reading+detecting+scoring', f'{share:.0%}', f"[{', '.join(f'{a / b:.0%}' for a, b in zip(r['predict_scoring'], r['predict_wall']))}] floor >= {SHARE_FLOOR:.0%}: {'ok' if share >= SHARE_FLOOR else 'NOT MET'}")]
    w = max(len(a) for a, _, _ in rows)
    head = f"stage benchmark: {r['repo']} @ {r['commit']}, min of {len(r['papermill'])} repeats, load (1/5/15 min) after each (a) repeat: {r['load']}"
    return '\n'.join([head] + [f'{a:<{w}}  {b:>8}  {c}' for a, b, c in rows])

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument('--repo', type=Path, default=HERE, help='the checkout whose code and notebooks run (default: this one)')
    ap.add_argument('--python', default=sys.executable, help='the interpreter (its environment provides the dependencies and the python3 kernel)')
    ap.add_argument('--home', type=Path, default=None, help='DEEPFAKE_NB_HOME for the runs (default: a new temporary folder)')
    ap.add_argument('--clips', type=Path, default=None, help='videos for predict (default: ../shared/data/videos/ffpp_c23 beside this repo)')
    ap.add_argument('--repeats', type=int, default=2)
    ap.add_argument('--json', type=Path, default=None, help='also write the measurements here')
    a = ap.parse_args(argv)
    clips = a.clips or HERE.parent/'shared'/'data'/'videos'/'ffpp_c23'
    if not clips.is_dir(): sys.exit(f"bench_stages: no clips folder {clips}; give --clips a folder of videos")
    repo = a.repo.resolve()
    if not (repo/'nbs'/'03_train.ipynb').exists(): sys.exit(f"bench_stages: {repo} has no nbs/03_train.ipynb; give --repo a deepfake_nb checkout")
    home = a.home or Path(tempfile.mkdtemp(prefix='bench_stages_home_'))
    r = bench(repo, a.python, home.resolve(), clips.resolve(), a.repeats)
    if a.json: a.json.write_text(json.dumps(r, indent=2))
    print(table(r))

if __name__ == '__main__': main()
