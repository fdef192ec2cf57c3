"""Paths typed on the command line are the user's, not the notebooks' folder's; a command whose every input failed exits non-zero."""
import os, sys, subprocess
from pathlib import Path
import pandas as pd
from deepfake_nb.data import make_demo_dataset

BIN = Path(sys.executable).parent


def test_relative_paths_from_another_folder_and_failed_inputs(tmp_path):
    "data, train, predict and watch run from a folder outside the project with relative paths; predict on only unreadable inputs exits 2"
    work = tmp_path/'elsewhere'; work.mkdir()
    make_demo_dataset(work/'relds', n_identities=6, videos_per_class=2, n_frames=16)   # a folder of real/ and fake/ clips
    env = dict(os.environ, DEEPFAKE_NB_HOME=str(tmp_path/'home'))

    def run(*args):
        r = subprocess.run([str(BIN/'deepfake-nb'), *args], cwd=work, env=env, capture_output=True, text=True, timeout=900)
        return r, r.stdout + r.stderr

    r, out = run('data', '--dataset', 'relds', '--identity-pattern', r'^(id\d+)_')
    assert r.returncode == 0, out[-3000:]
    m = pd.read_csv(tmp_path/'home'/'data'/'manifests'/'relds.csv')
    assert len(m) == 24 and all(Path(p).is_absolute() and Path(p).exists() for p in m.path), m.path.head()

    r, out = run('train', '--dataset', 'relds', '--preset', 'none', '--frames', '4', '--size', '96', '--weights', 'none',
                 '--head', 'mean', '--epochs', '1', '--batch-size', '4')
    assert r.returncode == 0, out[-3000:]
    rdir = Path(r.stdout.strip().splitlines()[-1])
    assert (rdir/'complete.json').exists(), out[-3000:]
    rel_run = os.path.relpath(rdir, work)
    clip = sorted((work/'relds'/'fake').glob('*.mp4'))[0].relative_to(work)   # relds/fake/<clip>.mp4

    r, out = run('predict', '--inputs', str(clip), '--run-dir', rel_run, '--out-csv', 'preds.csv', '--no-per-frame')
    assert r.returncode == 0, out[-3000:]
    p = pd.read_csv(work/'preds.csv', keep_default_na=False)                 # written where the user stands
    assert len(p) == 1 and p.error.iloc[0] == '' and p.verdict.iloc[0] in ('REAL', 'FAKE'), p.T
    assert p.path.iloc[0] == str(work/clip), p.path.iloc[0]                  # the path recorded is the resolved one

    r, out = run('watch', '--source', str(clip), '--run-dir', rel_run, '--out-dir', 'watched', '--as-fast-as-possible', '--max-seconds', '1')
    assert r.returncode == 0, out[-3000:]
    assert (work/'watched'/'timeline.csv').exists() and (work/'watched'/'summary.json').exists(), sorted(work.rglob('*'))

    for name in ('broken1.mp4', 'broken2.mp4'): (work/name).write_bytes(b'\0' * 1000)
    (work/'broken.txt').write_text('broken1.mp4\nbroken2.mp4\n')
    r, out = run('predict', '--inputs', 'broken.txt', '--run-dir', rel_run, '--out-csv', 'bad.csv', '--no-per-frame')
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and 'every input failed (2 of 2)' in last and 'bad.csv' in last, out[-3000:]
    bad = pd.read_csv(work/'bad.csv', keep_default_na=False)
    assert len(bad) == 2 and (bad.error != '').all(), bad.T                   # each error kept in the CSV
