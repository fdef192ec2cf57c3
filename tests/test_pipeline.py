"The README's main job, the grid runner (kill, resume, skip), the report in a browser, the papermill entry points, and a quiet console, on a fresh home."
import os, sys, signal, subprocess, json, time, shutil
from pathlib import Path
import pytest
from conftest import REPO, launch_chromium

BIN = Path(sys.executable).parent
GRID = [str(BIN/'deepfake-nb'), 'run', '--dataset', 'demo', '--backbones', 'mobilenetv2', 'resnet50', '--seeds', '0', '1', '--frames', '4', '--size', '96',
        '--epochs', '4']   # small faces: the grid's mechanics, not its accuracy

# start-up lines of TensorFlow/absl/oneDNN, Jupyter's kernel warning, ffmpeg on a broken file: the logs get them, the terminal must not
NOISE = ('absl::InitializeLog', 'oneDNN custom operations', 'cpu_feature_guard', 'Kernel is running over TCP', 'moov atom not found',
         'TF_ENABLE_ONEDNN_OPTS', 'This TensorFlow binary is optimized')

def _env(home): return dict(os.environ, DEEPFAKE_NB_HOME=str(home))

def _run(args, home, timeout=1500):
    return subprocess.run(args, env=_env(home), cwd=REPO, capture_output=True, text=True, timeout=timeout)

@pytest.fixture(scope='module')
def fresh_home(tmp_path_factory): return tmp_path_factory.mktemp('pipeline_home')

def _complete_runs(home): return sorted((home/'reports'/'runs'/'demo').glob('*/complete.json'))

def test_grid_killed_resumes_then_skips(fresh_home):
    # 1. start the 4-run grid and kill it (SIGKILL, whole process group) once the first run is complete
    p = subprocess.Popen(GRID, env=_env(fresh_home), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.time()
    while not _complete_runs(fresh_home) and p.poll() is None and time.time()-t0 < 900: time.sleep(1)
    os.killpg(p.pid, signal.SIGKILL); p.wait()
    n_before = len(_complete_runs(fresh_home))
    assert 1 <= n_before < 4, f'{n_before} runs complete when killed'
    # 2. the same call finishes the rest and ends with the report's path
    r = _run(GRID, fresh_home)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for n in NOISE: assert n not in r.stdout + r.stderr, f'{n!r} reached the console'
    assert f'{4-n_before} trained, {n_before} skipped, 0 failed' in r.stdout, r.stdout[-2000:]
    report = fresh_home/'reports'/'report.html'
    assert r.stdout.strip().splitlines()[-1] == str(report)
    runs = _complete_runs(fresh_home)
    assert len(runs) == 4 and all((d.parent/'03_train.ipynb').exists() for d in runs)
    html = report.read_text()
    for d in runs: assert json.loads(d.read_text())['run_id'] in html          # the report lists the 4 runs
    for needle in ('mobilenetv2+lstm', 'resnet50+lstm', 'DeLong', 'McNemar', 'Wilcoxon', 'ROC and precision-recall curves', 'Calibration', 'Efficiency', 'Example faces', 'Provenance'): assert needle in html, needle
    assert 'fig_roc(' not in html and 'report_data(' not in html and 'hl-ipython3' not in html   # no code cells
    assert 'src="http' not in html                                          # one self-contained file
    stats = json.loads((fresh_home/'reports'/'compare'/'demo'/'stats.json').read_text())
    assert len(stats['runs']) == 4 and len(stats['pairs']) == 6
    # 3. an identical call skips everything
    again = _run(GRID, fresh_home)
    assert again.returncode == 0 and '0 trained, 4 skipped, 0 failed' in again.stdout, again.stdout[-2000:]

GRID_STUDIES = ('degradations',)   # cross_dataset (a second dataset's faces) and every other study: in the stage suite (08_studies)
GRID_STUDY_TITLES = ('Generalisation and robustness', 'Degradations at test time')

def test_studies_papermill_then_report(fresh_home, tmp_path):
    "A study of trained runs (degradations) through papermill on the grid's runs, then the report shows its section. Every study, and the report's section of each, runs in the stage suite (tests/test_notebooks.py, 08_studies)"
    assert (fresh_home/'reports'/'report.html').exists(), 'needs the report of test_grid_killed_resumes_then_skips (run the module, not this test alone)'
    args = [str(BIN/'papermill'), 'nbs/08_studies.ipynb', str(tmp_path/'studies.ipynb'), '-k', 'python3', '-p', 'studies', ' '.join(GRID_STUDIES),
            '-p', 'degradations', 'jpeg:50 h264:40 noise:10', '-p', 'eval_datasets', 'demo_b']   # the ../shared clips: in 08_studies' own run
    r = _run(args, fresh_home)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    studies = fresh_home/'reports'/'studies'/'demo'
    assert sorted(p.name for p in studies.iterdir() if (p/'study.json').exists()) == sorted(GRID_STUDIES)
    import pandas as pd
    deg = pd.read_csv(studies/'degradations'/'table.csv')
    assert set(deg.run) == {'mobilenetv2+lstm', 'resnet50+lstm'} and set(deg.degradation) == {'none', 'jpeg', 'h264', 'noise'}   # one run per backbone
    r = _run([str(BIN/'deepfake-nb'), 'report', '--dataset', 'demo'], fresh_home)
    assert r.returncode == 0, r.stderr[-3000:]
    html = (fresh_home/'reports'/'report.html').read_text()
    for t in GRID_STUDY_TITLES: assert t in html, t

def test_report_in_headless_chromium(fresh_home, tmp_path):
    report = fresh_home/'reports'/'report.html'
    assert report.exists(), 'needs the report of test_grid_killed_resumes_then_skips (run the module, not this test alone)'
    chromium = shutil.which('chromium') or shutil.which('chromium-browser')
    assert chromium, 'chromium is not installed (.ci/run installs Debian chromium)'
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = launch_chromium(pw, chromium)
        page = b.new_page(viewport={'width': 1280, 'height': 900})
        errors = []
        page.on('pageerror', lambda e: errors.append(str(e)))
        page.on('console', lambda m: errors.append(m.text) if m.type == 'error' else None)
        page.on('requestfailed', lambda r: errors.append(f'request failed: {r.url[:100]}'))
        page.goto(report.as_uri()); page.wait_for_load_state('load')
        imgs = page.evaluate('[...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight])')
        tables = page.evaluate("[...document.querySelectorAll('table')].map(t => t.innerText)")
        headings = page.evaluate("[...document.querySelectorAll('h2, h3')].filter(h => h.offsetParent !== null).map(h => h.innerText)")
        main_visible = page.locator('table', has_text='AUC').first.is_visible()
        shot = tmp_path/'report.png'
        page.screenshot(path=str(shot), full_page=True)
        b.close()
    assert not errors, errors
    assert len(imgs) >= 3 and all(c and w > 100 and h > 100 for c, w, h in imgs), imgs     # the figures loaded
    assert main_visible and any('mobilenetv2+lstm' in t and 'resnet50+lstm' in t for t in tables)
    if (fresh_home/'reports'/'studies'/'demo').exists():                                 # the studies' sections are on the page
        for t in GRID_STUDY_TITLES: assert any(h.startswith(t) for h in headings), (t, headings)
    assert shot.stat().st_size > 50_000                                                  # a real page, not a blank one

def test_papermill_train_resnet50(fresh_home, tmp_path):
    out = tmp_path/'out.ipynb'
    r = _run([str(BIN/'papermill'), 'nbs/03_train.ipynb', str(out), '-k', 'python3', '-p', 'backbone', 'resnet50', '-p', 'seed', '2',
              '-p', 'frames', '4', '-p', 'size', '96'], fresh_home)          # the grid's faces and features: reused
    assert r.returncode == 0, r.stderr[-3000:]
    assert list((fresh_home/'reports'/'runs'/'demo').glob('resnet50-lstm-s2-*/complete.json'))

def test_papermill_unknown_backbone_fails_fast(fresh_home, tmp_path):
    r = _run([str(BIN/'papermill'), 'nbs/03_train.ipynb', str(tmp_path/'o.ipynb'), '-k', 'python3', '-p', 'backbone', 'vgg99'], fresh_home)
    assert r.returncode != 0
    assert "unknown backbone 'vgg99'; valid names: " in r.stderr + r.stdout

def test_papermill_wrong_type_is_named(fresh_home, tmp_path):
    r = _run([str(BIN/'papermill'), 'nbs/03_train.ipynb', str(tmp_path/'o.ipynb'), '-k', 'python3', '-p', 'epochs', 'ten'], fresh_home)
    assert r.returncode != 0 and "epochs='ten' must be an integer" in r.stderr + r.stdout

def test_cli_help_examples():
    for cmd in ('run', 'data', 'preprocess', 'train', 'compare', 'report', 'predict', 'study'):
        r = subprocess.run([str(BIN/'deepfake-nb'), cmd, '--help'], capture_output=True, text=True)
        assert r.returncode == 0 and 'example:' in r.stdout and 'deepfake-nb ' + cmd in r.stdout, cmd

def test_train_notebook_has_backbone_parameter():
    import papermill as pm
    assert 'backbone' in pm.inspect_notebook(str(REPO/'nbs'/'03_train.ipynb'))

def test_quiet_console_and_verbose(tmp_path):
    "A stage command prints what the stage printed and where it wrote; the kernel's start-up noise goes to the stage's log, and --verbose shows it"
    home = tmp_path/'home'
    r = _run([str(BIN/'deepfake-nb'), 'data', '--dataset', 'demo'], home, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    for n in NOISE: assert n not in out, f'{n!r} reached the console:\n{out}'
    assert out.splitlines()[0] == f"manifest: {home/'data'/'manifests'/'demo.csv'}" and len(out.splitlines()) <= 5, out
    assert 'Kernel is running over TCP' in (home/'reports'/'pipeline'/'demo'/'01_data.log').read_text()   # redirected, not absent
    v = _run([str(BIN/'deepfake-nb'), 'data', '--dataset', 'demo', '--verbose'], home, timeout=600)
    assert v.returncode == 0 and 'Kernel is running over TCP' in v.stdout + v.stderr, (v.stdout + v.stderr)[-3000:]

def test_data_warns_when_every_video_is_its_own_group(tmp_path):
    "`deepfake-nb data` on a folder whose file names carry no identity prints the warning; --identity-pattern groups the videos"
    for c in ('real', 'fake'):
        for p in ('alice', 'bob', 'carol', 'dave', 'erin'):
            for j in range(2): f = tmp_path/'people'/c/f'{p}_{j}.mp4'; f.parent.mkdir(parents=True, exist_ok=True); f.touch()
    base = [str(BIN/'deepfake-nb'), 'data', '--dataset', 'folder', '--root', str(tmp_path/'people')]
    r = _run(base, tmp_path/'home', timeout=600)
    assert r.returncode == 0 and 'warning: each of the 20 videos of people is its own group' in r.stdout and '--identity-pattern' in r.stdout, r.stdout + r.stderr[-2000:]
    r = _run(base + ['--name', 'people_ids', '--identity-pattern', '^([a-z]+)_'], tmp_path/'home', timeout=600)
    assert r.returncode == 0 and 'warning' not in r.stdout and '5 groups' in r.stdout, r.stdout + r.stderr[-2000:]
    r = _run(base + ['--name', 'x', '--identity-pattern', '^[a-z]+_'], tmp_path/'home', timeout=600)
    assert r.returncode == 2 and "identity_pattern='^[a-z]+_' has no group" in r.stderr, r.stderr[-2000:]

def test_stage_failure_is_one_line(tmp_path):
    "A stage that fails says which notebook and cell, the error, and where the executed notebook and the log are, without a traceback"
    r = _run([str(BIN/'deepfake-nb'), 'preprocess', '--manifest', str(tmp_path/'missing.csv')], tmp_path/'home', timeout=600)
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr[-3000:]
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('deepfake-nb preprocess: error: 02_preprocess failed in cell ') and 'missing.csv' in err[0], err
    assert 'executed notebook: ' in err[0] and '02_preprocess.log' in err[0]
