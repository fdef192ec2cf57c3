"The README's main job and the papermill entry points, on a fresh home."
import os, sys, subprocess, json, re
from pathlib import Path
import pytest
from conftest import REPO

BIN = Path(sys.executable).parent

def _run(args, home, timeout=1500):
    env = dict(os.environ, DEEPFAKE_NB_HOME=str(home))
    return subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)

@pytest.fixture(scope='module')
def fresh_home(tmp_path_factory): return tmp_path_factory.mktemp('pipeline_home')

def test_run_demo_end_to_end(fresh_home):
    r = _run([str(BIN/'deepfake-nb'), 'run', '--dataset', 'demo', '--backbones', 'mobilenetv2', 'resnet50'], fresh_home)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = fresh_home/'reports'/'report.html'
    assert r.stdout.strip().splitlines()[-1] == str(report)          # the main job ends with the report's path
    html = report.read_text()
    for needle in ('mobilenetv2+lstm', 'resnet50+lstm', 'DeLong', 'McNemar', 'Wilcoxon', 'ROC'):
        assert needle in html, needle
    assert html.count('data:image/png;base64') >= 3                   # ROC, confusion matrices, training curves embedded
    assert 'fig_roc(' not in html and 'report_data(' not in html and 'hl-ipython3' not in html   # no code cells
    runs = sorted((fresh_home/'reports'/'runs'/'demo').iterdir())
    assert len(runs) == 2 and all((d/'03_train.ipynb').exists() and (d/'complete.json').exists() for d in runs)
    stats = json.loads((fresh_home/'reports'/'compare'/'demo'/'stats.json').read_text())
    assert len(stats['pairs']) == 1 and 0 <= stats['pairs'][0]['delong']['p_value'] <= 1

    again = _run([str(BIN/'deepfake-nb'), 'run', '--dataset', 'demo', '--backbones', 'mobilenetv2', 'resnet50'], fresh_home)
    assert again.returncode == 0 and '0 trained, 2 skipped, 0 failed' in again.stdout, again.stdout[-2000:]

def test_papermill_train_resnet50(fresh_home, tmp_path):
    out = tmp_path/'out.ipynb'
    r = _run([str(BIN/'papermill'), 'nbs/03_train.ipynb', str(out), '-k', 'python3', '-p', 'backbone', 'resnet50', '-p', 'seed', '1'], fresh_home)
    assert r.returncode == 0, r.stderr[-3000:]
    assert list((fresh_home/'reports'/'runs'/'demo').glob('resnet50-lstm-s1-*/complete.json'))

def test_papermill_unknown_backbone_fails_fast(fresh_home, tmp_path):
    r = _run([str(BIN/'papermill'), 'nbs/03_train.ipynb', str(tmp_path/'o.ipynb'), '-k', 'python3', '-p', 'backbone', 'vgg99'], fresh_home)
    assert r.returncode != 0
    assert "unknown backbone 'vgg99'; valid names: mobilenetv2, resnet50" in r.stderr + r.stdout

def test_papermill_wrong_type_is_named(fresh_home, tmp_path):
    r = _run([str(BIN/'papermill'), 'nbs/03_train.ipynb', str(tmp_path/'o.ipynb'), '-k', 'python3', '-p', 'epochs', 'ten'], fresh_home)
    assert r.returncode != 0 and "epochs='ten' must be a non-negative integer" in r.stderr + r.stdout

def test_train_notebook_has_backbone_parameter():
    import papermill as pm
    assert 'backbone' in pm.inspect_notebook(str(REPO/'nbs'/'03_train.ipynb'))
