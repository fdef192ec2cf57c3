"""Someone stepping through `nbs/03_train.ipynb` in JupyterLab: a headless JupyterLab server, the notebook opened in Debian's Chromium
(Playwright, as the report test does), Run > Run All Cells on the demo defaults, then every code cell has run and none shows an error.

The server's home (`DEEPFAKE_NB_HOME`), Jupyter's runtime/data folders and JupyterLab's settings and workspaces are temporary; autosave is
off and the test checks that the repository's notebook file is unchanged afterwards."""
import os, sys, re, json, time, socket, shutil, hashlib, subprocess, urllib.request
from pathlib import Path
import pytest
from conftest import REPO, launch_chromium

CHROMIUM = '/usr/bin/chromium' if Path('/usr/bin/chromium').exists() else shutil.which('chromium')
NOTEBOOK = 'nbs/03_train.ipynb'
RUN_TIMEOUT = 900        # s for Run All on the demo in a fresh home (demo generation, faces, features, training) on 2 cores

def _free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _lab_settings(d: Path):
    "JupyterLab user settings: no autosave (the repository's notebook is never written), every cell in the DOM, no news fetching"
    for plugin, value in {'@jupyterlab/docmanager-extension/plugin': {'autosave': False},
                          '@jupyterlab/notebook-extension/tracker': {'windowingMode': 'none'},
                          '@jupyterlab/apputils-extension/notification': {'fetchNews': 'false', 'checkForUpdates': False}}.items():
        f = d/f'{plugin}.jupyterlab-settings'; f.parent.mkdir(parents=True, exist_ok=True); f.write_text(json.dumps(value))

def _api(url, method='GET'):
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as r: return r.read()

@pytest.fixture
def lab(tmp_path):
    "A headless JupyterLab on a free port serving the repository, its kernels' home a temporary folder; yields its base URL and token"
    port, token = _free_port(), hashlib.sha256(os.urandom(16)).hexdigest()[:32]
    home, jdata = tmp_path/'home', tmp_path/'jupyter_data'
    _lab_settings(tmp_path/'lab_settings')
    env = dict(os.environ, DEEPFAKE_NB_HOME=str(home), TF_CPP_MIN_LOG_LEVEL='2', JUPYTER_RUNTIME_DIR=str(tmp_path/'runtime'),
               JUPYTER_DATA_DIR=str(jdata), JUPYTER_PREFER_ENV_PATH='1')
    jupyter = Path(sys.executable).parent/'jupyter'
    log = open(tmp_path/'jupyterlab.log', 'w')
    srv = subprocess.Popen([str(jupyter), 'lab', '--no-browser', f'--port={port}', '--ip=127.0.0.1', f'--IdentityProvider.token={token}',
                            f'--ServerApp.root_dir={REPO}', f'--LabApp.user_settings_dir={tmp_path/"lab_settings"}',
                            f'--LabApp.workspaces_dir={tmp_path/"workspaces"}', '--LabApp.news_url=',
                            '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate', '--LabApp.extension_manager=readonly']
                           + (['--allow-root'] if os.geteuid() == 0 else []),
                           env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    base = f'http://127.0.0.1:{port}'
    try:
        t0 = time.time()
        while True:
            try: _api(f'{base}/api/status?token={token}'); break
            except OSError:
                assert srv.poll() is None and time.time()-t0 < 120, (tmp_path/'jupyterlab.log').read_text()[-3000:]
                time.sleep(0.5)
        yield base, token, home
    finally:
        try:
            for k in json.loads(_api(f'{base}/api/kernels?token={token}')): _api(f"{base}/api/kernels/{k['id']}?token={token}", 'DELETE')
        except OSError: pass
        srv.terminate()
        try: srv.wait(30)
        except subprocess.TimeoutExpired: srv.kill(); srv.wait()
        log.close()

PROMPTS = "[...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')].map(p => p.innerText.trim())"
STDERR = "[...document.querySelectorAll('.jp-OutputArea-output[data-mime-type=\"application/vnd.jupyter.stderr\"]')].map(o => o.innerText)"

def _run_all(page, tries=3) -> int:
    "Run > Run All Cells, as a person would; the number of tries until the first cell started (a click before the kernel is connected is lost)"
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    page.locator('.jp-Notebook .jp-Cell').first.click()                        # the notebook is the current widget
    for i in range(1, tries+1):
        page.locator('.lm-MenuBar-item', has_text=re.compile(r'^Run$')).click()
        page.locator('.lm-Menu-itemLabel', has_text=re.compile(r'^Run All Cells$')).click()
        try: page.wait_for_function(f"{PROMPTS}.some(t => t !== '[ ]:')", timeout=30_000, polling=500); return i
        except PlaywrightTimeout: pass
    raise AssertionError(f'Run > Run All Cells started no cell in {tries} tries')

@pytest.mark.skipif(CHROMIUM is None, reason='Debian Chromium is not installed (/usr/bin/chromium; .ci/run installs it with apt-get install chromium)')
def test_train_notebook_run_all_in_jupyterlab(lab, tmp_path):
    base, token, home = lab
    before = (REPO/NOTEBOOK).read_bytes()
    n_code = sum(c['cell_type'] == 'code' for c in json.loads(before)['cells'])
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = launch_chromium(pw, CHROMIUM)
        page = b.new_page(viewport={'width': 1400, 'height': 1000})
        page_errors = []
        page.on('pageerror', lambda e: page_errors.append(str(e)))
        try:
            page.goto(f'{base}/lab/tree/{NOTEBOOK}?token={token}')
            page.wait_for_selector('.jp-Notebook .jp-CodeCell', timeout=120_000)
            page.wait_for_function("document.querySelector('.jp-Notebook-ExecutionIndicator')?.getAttribute('data-status') === 'idle'", timeout=120_000)
            page.wait_for_function(f'{PROMPTS}.length === {n_code}', timeout=60_000)     # every code cell is on the page
            t0, tries = time.time(), _run_all(page)
            page.wait_for_function(f"""(() => {{ const p = {PROMPTS}, idle = document.querySelector('.jp-Notebook-ExecutionIndicator')?.getAttribute('data-status') === 'idle';
                                       return idle && (p.every(t => /^\\[\\d+\\]:?$/.test(t)) || {STDERR}.some(o => o.includes('Traceback'))); }})()""",
                                   timeout=RUN_TIMEOUT*1000, polling=2000)   # every cell ran, or one failed (Run All stops there)
            took = time.time() - t0
            prompts, stderr = page.evaluate(PROMPTS), page.evaluate(STDERR)
            outputs = page.evaluate("[...document.querySelectorAll('.jp-Notebook .jp-OutputArea-output')].map(o => o.innerText)")
            page.locator('.jp-Notebook .jp-Cell').last.scroll_into_view_if_needed()
            page.screenshot(path=str(tmp_path/'03_train.png'))
        except Exception:
            page.screenshot(path=str(tmp_path/'03_train_failed.png')); raise
        finally: b.close()
    print(f'Run All ({tries} click(s)): {n_code} code cells in {took:.0f}s; prompts {prompts}; screenshot {tmp_path/"03_train.png"}')
    for s in stderr: print('stderr output:', s[:500])
    errors = [s for s in stderr if re.search(r'Traceback|^\w*(Error|Exception)\b', s, re.M)]
    assert not errors, errors
    assert len(prompts) == n_code and all(re.fullmatch(r'\[\d+\]:?', t) for t in prompts), prompts   # every code cell ran
    assert not page_errors, page_errors
    assert any('roc_auc' in o or 'AUC' in o for o in outputs), outputs      # the run's results are shown
    assert list((home/'reports'/'runs'/'demo').glob('mobilenetv2-lstm-s0-*/complete.json'))   # the run was made, in the temporary home
    assert (REPO/NOTEBOOK).read_bytes() == before, f'{NOTEBOOK} was written by JupyterLab'
