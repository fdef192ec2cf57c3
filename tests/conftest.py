"Every test runs with the suite's home in a temporary folder, so a clean clone's data/ and reports/ stay untouched."
import os, pytest
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

@pytest.fixture(scope='session', autouse=True)
def suite_home(tmp_path_factory):
    home = tmp_path_factory.mktemp('home')
    old = os.environ.get('DEEPFAKE_NB_HOME')
    os.environ['DEEPFAKE_NB_HOME'] = str(home)
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    yield home
    if old is None: os.environ.pop('DEEPFAKE_NB_HOME', None)
    else: os.environ['DEEPFAKE_NB_HOME'] = old

def train_demo_run(backbone='mobilenetv2'):
    """The default frozen demo run of `backbone`, trained here in the open (`train_run`; a complete one is reused):
    the library never trains on its own (`deepfake_nb.predict.demo_run` only finds one)"""
    from deepfake_nb.train import train_run
    return train_run(dataset='demo', backbone=backbone)

@pytest.fixture(scope='session')
def demo_run_dir(suite_home):
    "The default MobileNetV2 demo run, in the suite home (trained once per session)"
    return train_demo_run('mobilenetv2')

@pytest.fixture(scope='session')
def shared():
    from deepfake_nb.core import shared_dir
    d = shared_dir()
    if d is None: pytest.skip('../shared (real test assets) is absent beside the repository')
    return d

def shared_clips(shared) -> list:
    "The short real and fake clips of ../shared/data/videos; the 106-clip development set (ffpp_c23_dev) has its own benchmark (bench/bench_real.py)"
    return sorted(p for p in (shared/'data'/'videos').rglob('*.mp4') if 'ffpp_c23_dev' not in p.relative_to(shared).parts)

# Debian's Chromium, headless, without the background connections this closed network refuses (report and JupyterLab tests)
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync']

def launch_chromium(pw, executable):
    "A headless Chromium browser from Playwright's `pw`, the given executable (never a downloaded browser)"
    return pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
