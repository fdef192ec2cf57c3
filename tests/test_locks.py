"""One run, one writer: the lock a process holds on a run directory, a cache entry or an executed notebook (`core.file_lock`).

A holder killed with SIGKILL is taken over (and said so); a process that will not wait gets the holder's host, pid and start time;
the lock excludes processes and threads; two `deepfake-nb run` grids started together on one home both finish and train each run once."""
import os, sys, json, signal, socket, subprocess, textwrap, threading, time
from pathlib import Path
import pytest
from conftest import REPO
from deepfake_nb.core import file_lock, lock_owner, LockBusy, home_at, save_json

PY = sys.executable
BIN = Path(PY).parent

def _hold(path, seconds=600, what='the test lock', env=None):
    "A subprocess holding `file_lock(path)` for `seconds` (it writes its record into the file once it holds the lock)"
    code = f"""
        import time
        from deepfake_nb.core import file_lock
        with file_lock({str(path)!r}, what={what!r}): time.sleep({seconds})
    """
    return subprocess.Popen([PY, '-c', textwrap.dedent(code)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

def _until_held_by(path, p, timeout=60):
    t0 = time.time()
    while (lock_owner(path) or {}).get('pid') != p.pid:
        assert p.poll() is None, p.stderr.read().decode()[-2000:]
        assert time.time() - t0 < timeout, 'the holder never took the lock'
        time.sleep(0.05)

def test_killed_holder_is_taken_over_and_named_while_alive(tmp_path):
    lock = tmp_path/'x.lock'
    p = _hold(lock)
    _until_held_by(lock, p)
    # the non-blocking side: LockBusy names the holder (host, pid, since when)
    with pytest.raises(LockBusy) as e:
        with file_lock(lock, timeout=0): pass
    owner = e.value.owner
    assert owner['pid'] == p.pid and owner['host'] == socket.gethostname() and owner['since'] and owner['what'] == 'the test lock'
    assert f'is in use by pid {p.pid} on host {socket.gethostname()} since {owner["since"]}' in str(e.value) and str(lock) in str(e.value)
    t0 = time.time()
    with pytest.raises(LockBusy):
        with file_lock(lock, timeout=0.5): pass
    assert time.time() - t0 >= 0.5
    # a waiter blocked on the lock gets it once the holder is SIGKILLed, and says whose lock it takes over
    said, got = [], []
    def waiter():
        with file_lock(lock, say=said.append) as lk: got.append(lk)
    t = threading.Thread(target=waiter); t.start()
    time.sleep(0.5); assert not got and said and 'waiting for' in said[0] and f'pid {p.pid}' in said[0]
    p.send_signal(signal.SIGKILL); p.wait()
    t.join(30); assert got, 'the waiter did not get the lock of the killed holder'
    assert got[0].took_over['pid'] == p.pid and got[0].owner['pid'] == p.pid
    assert 'taking over' in said[-1] and f'pid {p.pid}' in said[-1] and 'no longer running' in said[-1], said
    assert not lock.exists()                                               # a clean release removes the file
    # a lock file left by a killed holder, found later by a newcomer: taken over at once, and said so
    q = _hold(lock); _until_held_by(lock, q); q.send_signal(signal.SIGKILL); q.wait()
    said = []
    with file_lock(lock, timeout=0, say=said.append) as lk: assert lk.took_over['pid'] == q.pid and lk.waited < 1
    assert 'taking over' in said[0] and 'no longer running' in said[0]

def test_the_lock_excludes_processes_while_files_come_and_go(tmp_path):
    "4 processes x 30 read-modify-write increments under the lock (whose file is removed and re-created on every release) lose none"
    lock, counter = tmp_path/'c.lock', tmp_path/'counter'
    counter.write_text('0')
    code = f"""
        from pathlib import Path
        from deepfake_nb.core import file_lock
        c = Path({str(counter)!r})
        for _ in range(30):
            with file_lock({str(lock)!r}, say=None):
                n = int(c.read_text()); c.write_text(str(n + 1))
    """
    ps = [subprocess.Popen([PY, '-c', textwrap.dedent(code)], cwd=REPO) for _ in range(4)]
    assert [p.wait(120) for p in ps] == [0]*4
    assert counter.read_text() == '120' and not lock.exists()

def test_a_run_trained_elsewhere(tmp_path, capsys):
    "train_run without waiting names the process that trains the run; the grid leaves it for last, waits for it, then reuses it"
    from deepfake_nb.train import run_params, run_dir_for, run_lock_path, train_run, _run_settings
    from deepfake_nb.pipeline import run_grid
    home = tmp_path/'home'
    with home_at(home):
        p = run_params(dataset='demo', frames=2, size=32, epochs=1, weights=None)
        rdir = run_dir_for(p)
    lock = run_lock_path(rdir)
    env = dict(os.environ, DEEPFAKE_NB_HOME=str(home))
    h = _hold(lock, what=f'run demo/{rdir.name}', env=env); _until_held_by(lock, h)
    with home_at(home), pytest.raises(LockBusy) as e: train_run(wait=False, **_run_settings(p))
    assert f'run demo/{rdir.name} is in use by pid {h.pid} on host {socket.gethostname()} since' in str(e.value)
    h.kill(); h.wait()
    # another process holds the run's lock and completes the run 2 s later: the grid waits for it, trains nothing, counts it skipped
    code = f"""
        import time
        from deepfake_nb.core import file_lock, save_json
        from deepfake_nb.train import run_lock
        with run_lock({str(rdir)!r}):
            time.sleep(2); save_json(dict(params={p!r}, run_id={rdir.name!r}), {str(rdir/'complete.json')!r})
    """
    h = subprocess.Popen([PY, '-c', textwrap.dedent(code)], cwd=REPO, env=env, stderr=subprocess.PIPE)
    _until_held_by(lock, h)
    capsys.readouterr()
    with home_at(home): res = run_grid([p], progress=False)
    out = capsys.readouterr().out
    assert h.wait(60) == 0, h.stderr.read().decode()[-2000:]
    assert res == dict(done=[], skipped=[rdir], failed=[]), (res, out)
    assert f'being trained elsewhere, by pid {h.pid} on host {socket.gethostname()} since' in out, out
    assert 'trained by another process meanwhile; reused' in out, out
    assert not (rdir/'03_train.ipynb').exists() and not lock.exists()

def test_face_cache_entries_being_written_elsewhere_are_left_for_last(tmp_path):
    from deepfake_nb.data import make_demo_dataset, build_manifest, load_manifest
    from deepfake_nb.preprocess import preprocess_manifest, face_cache_dir, prep_key, _cache_file, _entry_lock
    with home_at(tmp_path/'home'):
        m = build_manifest('demo', root=make_demo_dataset(tmp_path/'src', n_identities=3, videos_per_class=1, n_frames=4, size=96),
                           name='tiny', val_frac=0.33, test_frac=0.34)
        ids = load_manifest(m).video_id.tolist()
        cache = face_cache_dir('tiny', prep_key(frames=2, size=32))
        first = _cache_file(cache, ids[0])
        held, release = threading.Event(), threading.Event()
        def other():                                  # another job writing the first video's entry: holds its lock for a while
            with file_lock(_entry_lock(first), say=None): held.set(); release.wait(30)
        t = threading.Thread(target=other); t.start(); held.wait(10)
        threading.Timer(1.0, release.set).start()
        s = preprocess_manifest(m, frames=2, size=32, dataset='tiny', progress=False)
        t.join()
    assert (s.error == '').all() and len(s) == len(ids) and not s.cached.any()
    mt = {v: _cache_file(cache, v).stat().st_mtime_ns for v in ids}
    assert mt[ids[0]] == max(mt.values())                                    # done last, after waiting for the other job
    assert not list(cache.rglob('*.lock')) and not list(cache.rglob('*.tmp'))

GRID = [str(BIN/'deepfake-nb'), 'run', '--dataset', 'demo', '--backbones', 'mobilenetv2', '--seeds', '0', '1', '--epochs', '2',
        '--frames', '2', '--size', '32', '--weights', 'none', '--no-report']

def test_two_grids_on_one_home_train_each_run_once(tmp_path):
    "The issue's case: two `deepfake-nb run` started together on one home; both exit 0, each run is trained by exactly one of them"
    home = tmp_path/'home'
    env = dict(os.environ, DEEPFAKE_NB_HOME=str(home))
    ps = [subprocess.Popen(GRID, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in ps]
    for p, (out, err) in zip(ps, outs): assert p.returncode == 0, out[-3000:] + err[-3000:]
    counts = []
    for out, _ in outs:
        line = next(l for l in out.splitlines() if ' trained, ' in l and ' skipped, ' in l)
        trained, skipped, failed = (int(line.split(f' {w}')[0].split()[-1]) for w in ('trained', 'skipped', 'failed'))
        assert failed == 0 and trained + skipped == 2, line
        counts.append(trained)
    assert sum(counts) == 2, [o[-1500:] for o, _ in outs]                  # each of the 2 runs trained once, by one grid or the other
    runs = sorted((home/'reports'/'runs'/'demo').iterdir())
    assert len(runs) == 2
    for r in runs:
        assert (r/'complete.json').exists() and (r/'history.csv').exists() and not (r/'checkpoint').exists()
        nb = json.loads((r/'03_train.ipynb').read_text())                 # one whole executed notebook, by the process that trained it
        text = json.dumps(nb['cells'])
        assert 'trained meanwhile' not in text and str(r) in text
    assert not list(home.rglob('*.lock')) and not list(home.rglob('*.tmp'))
