"`nbdev_test`, one pytest test per notebook: every stage runs end to end on the demo defaults (cells flagged slow/gpu skipped)."
import sys, io, contextlib, pytest
from pathlib import Path
from conftest import REPO

NBS = sorted(p for p in (REPO/'nbs').glob('*.ipynb') if not p.name.startswith('_'))

@pytest.mark.parametrize('nb', NBS, ids=[p.stem for p in NBS])
def test_notebook(nb):
    from nbdev.test import test_nb
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        ok, secs = test_nb(nb, skip_flags=['slow', 'gpu'])
    assert ok, f'{nb.name} failed:\n{err.getvalue()[-6000:]}'
