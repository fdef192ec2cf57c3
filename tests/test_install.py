"""`pip install .` (not editable) into a fresh virtual environment, then `deepfake-nb data --dataset demo` from an empty folder.

How the dependencies are provided (nothing is downloaded): the new environment gets the package alone, `pip install --no-deps
--no-build-isolation .` from a copy of the working tree (git's tracked and unignored files, so a stale `build/` cannot leak into the
wheel), plus a `.pth` file listing this (dev) environment's site-packages, where TensorFlow, papermill, ipykernel, ... are installed.
A `.pth` line is only appended to `sys.path`: the `.pth` files inside that folder, such as the dev environment's editable hook, are
not processed, so `deepfake_nb` imports from the new install. The test asserts that, and that the `python3` kernel papermill starts
is the new environment's (installed there with `ipykernel install --sys-prefix`), so the notebooks run the installed code too.
"""
import os, sys, site, json, shutil, subprocess, tarfile
from pathlib import Path
import pytest
from conftest import REPO

def _sh(args, **kw):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, **kw)
    assert r.returncode == 0, f'{" ".join(map(str, args))} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}'
    return r

def _copy_tree(dst: Path) -> Path:
    "The working tree's files (tracked and untracked-but-not-ignored) copied to `dst`"
    r = subprocess.run(['git', '-C', str(REPO), 'ls-files', '-co', '--exclude-standard', '-z'], capture_output=True)
    if r.returncode == 0:
        for rel in filter(None, r.stdout.decode().split('\0')):
            src = REPO/rel
            if src.is_file(): (dst/rel).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(src, dst/rel)
    else: shutil.copytree(REPO, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
        '.git', '.venv', 'build', 'dist', '*.egg-info', '__pycache__', '.ipynb_checkpoints', '_proc', '_docs'))
    for d in ('data', 'reports'): shutil.rmtree(dst/d, ignore_errors=True)
    return dst

@pytest.fixture(scope='module')
def src_copy(tmp_path_factory): return _copy_tree(tmp_path_factory.mktemp('src'))

@pytest.fixture(scope='module')
def new_env(tmp_path_factory, src_copy):
    "A fresh venv with deepfake_nb installed non-editable from `src_copy`, the dev environment's packages on its path, and its own python3 kernel"
    env_dir = tmp_path_factory.mktemp('venv')/'env'
    _sh([sys.executable, '-m', 'venv', env_dir])
    py = env_dir/'bin'/'python'
    new_site = Path(_sh([py, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])']).stdout.strip())
    dev_sites = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (new_site/'_deepfake_nb_dev_deps.pth').write_text('\n'.join(dev_sites) + '\n')
    _sh([py, '-m', 'pip', 'install', '-q', '--no-deps', '--no-build-isolation', '--no-index', '.'], cwd=src_copy)
    _sh([py, '-m', 'ipykernel', 'install', '--sys-prefix', '--name', 'python3'])
    return env_dir, new_site

def _env_for(env_dir: Path) -> dict:
    "The environment of a user of the new install: its bin/ first, no home set, Jupyter looking in the venv first"
    env = {k: v for k, v in os.environ.items() if k not in ('DEEPFAKE_NB_HOME', 'PYTHONPATH', 'JUPYTER_PATH', 'JUPYTER_DATA_DIR', 'VIRTUAL_ENV')}
    return dict(env, PATH=f"{env_dir/'bin'}{os.pathsep}{env['PATH']}", JUPYTER_PREFER_ENV_PATH='1')

def test_installed_cli_from_empty_folder(new_env, tmp_path):
    env_dir, new_site = new_env
    env, py = _env_for(env_dir), env_dir/'bin'/'python'
    # the installed copy is what imports, with its experiment notebooks, and papermill's python3 kernel is the new environment's python
    probe = _sh([py, '-c', 'import deepfake_nb, json; from deepfake_nb.core import nbs_dir; from jupyter_client.kernelspec import KernelSpecManager; '
                 'print(json.dumps([deepfake_nb.__file__, str(nbs_dir()), KernelSpecManager().get_kernel_spec("python3").argv[0]]))'],
                env=env, cwd=tmp_path).stdout
    pkg_file, stages, kernel_py = json.loads(probe.strip().splitlines()[-1])
    assert Path(pkg_file).is_relative_to(new_site), pkg_file
    assert Path(stages) == new_site/'deepfake_nb'/'stages', stages
    assert sorted(p.name for p in Path(stages).glob('*.ipynb')) == sorted(p.name for p in (REPO/'nbs').glob('[0-9][0-9]_*.ipynb'))
    assert Path(kernel_py).parent == py.parent, kernel_py
    # the default face detector's model ships inside the installed package, byte for byte OpenCV Zoo's file
    from deepfake_nb.preprocess import YUNET_FILE, YUNET_SHA256
    from deepfake_nb.core import file_hash
    onnx = new_site/'deepfake_nb'/'assets'/YUNET_FILE
    assert onnx.is_file() and file_hash(onnx, 64) == YUNET_SHA256 and (onnx.parent/'LICENSE.yunet').is_file(), sorted(onnx.parent.glob('*'))
    # `deepfake-nb data` in an empty folder: that folder is the home
    empty = tmp_path/'empty'; empty.mkdir()
    r = subprocess.run([env_dir/'bin'/'deepfake-nb', 'data', '--dataset', 'demo'], env=env, cwd=empty, capture_output=True, text=True, timeout=300)
    print(r.stdout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    manifest = empty/'data'/'manifests'/'demo.csv'
    assert manifest.exists() and str(manifest) in r.stdout, (sorted(p.relative_to(empty) for p in empty.rglob('*'))[:20], r.stdout[-2000:])
    import pandas as pd
    m = pd.read_csv(manifest)
    assert len(m) > 0 and set(m.label) == {0, 1} and set(m.split) == {'train', 'val', 'test'}
    executed = json.loads((empty/'reports'/'pipeline'/'demo'/'01_data.ipynb').read_text())
    assert Path(executed['metadata']['papermill']['input_path']) == Path(stages)/'01_data.ipynb'   # the packaged notebook ran

def test_sdist_carries_setup_inputs_and_notebooks(src_copy, tmp_path):
    "MANIFEST.in: an sdist holds settings.ini, README.md and every experiment notebook, so a wheel built from it has `stages/`"
    _sh([sys.executable, 'setup.py', '-q', 'sdist', '-d', tmp_path], cwd=src_copy)
    (sdist,) = tmp_path.glob('*.tar.gz')
    with tarfile.open(sdist) as t: names = {n.split('/', 1)[1] for n in t.getnames() if '/' in n}
    want = {'settings.ini', 'README.md', 'setup.py', 'deepfake_nb/assets/face_detection_yunet_2023mar.onnx', 'deepfake_nb/assets/LICENSE.yunet',
            *(f'nbs/{p.name}' for p in (REPO/'nbs').glob('[0-9][0-9]_*.ipynb'))}
    assert len(want) > 8 and want <= names, sorted(want - names)
    assert not any(n.startswith('nbs/lib/') for n in names)            # library notebooks are the package's source, not its data
