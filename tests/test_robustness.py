"""Nothing lost, nothing silent: bad inputs, interruptions (SIGKILL), resuming, concurrent runs, stale caches and the dataset's source folders.

Each test builds its own bad input or home in a temporary folder; kills happen in `python -c` subprocesses at points found by polling files."""
import os, sys, json, signal, shutil, subprocess, time, hashlib, textwrap
from pathlib import Path
import numpy as np, pandas as pd, cv2, pytest
from conftest import REPO
from deepfake_nb.core import DeepfakeNBError, home_at, load_json, save_json, data_dir
from deepfake_nb.data import build_manifest, load_manifest, MANIFEST_COLUMNS
from deepfake_nb.demo import make_demo_dataset, make_demo_video, write_video, _identity_look
from deepfake_nb.preprocess import preprocess_manifest, preprocess_video, read_frames, count_frames, video_frame_count, face_cache_dir, prep_key, load_faces

PY = sys.executable
FR, SZ = 4, 64                                          # frames and crop size of the tiny runs
RUN = dict(dataset='tiny', frames=FR, size=SZ, weights=None, epochs=4, patience=10, batch_size=4)   # mobilenetv2, random init

# ---------------------------------------------------------------- helpers

def _noise_video(path, n=8, size=96, seed=0, **kw):
    rng = np.random.default_rng(seed)
    return write_video(path, [rng.integers(0, 255, (size, size, 3), np.uint8) for _ in range(n)], **kw)

def _face_video(path, n=8, size=160, seed=0, fake=False):
    return make_demo_video(path, _identity_look(np.random.default_rng(seed)), fake, seed, n, size)

def _avi(path, frames, is_color=True):
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 15, frames[0].shape[1::-1], isColor=is_color)
    for f in frames: vw.write(f)
    vw.release(); return Path(path)

def _manifest(path, rows):
    df = pd.DataFrame([dict(video_id=v, path=str(p), label=l, identity='', group=v, method='fake' if l else 'real', split=s) for v, p, l, s in rows])
    df[MANIFEST_COLUMNS].to_csv(path, index=False); return Path(path)

def _tree_digest(root) -> dict:
    "Every path under `root` with its bytes' sha256 (folders too), and the folder's own listing"
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else 'dir') for p in sorted(Path(root).rglob('*'))}

def _env(home): return dict(os.environ, DEEPFAKE_NB_HOME=str(home), TF_CPP_MIN_LOG_LEVEL='3')

def _spawn(home, code, log):
    return subprocess.Popen([PY, '-c', textwrap.dedent(code)], env=_env(home), cwd=REPO, stdout=open(log, 'w'), stderr=subprocess.STDOUT,
                            start_new_session=True)

def _kill_when(p, cond, log, timeout=240):
    "SIGKILL process `p` as soon as `cond()` holds (polled); fail if it ends or times out first"
    t0 = time.time()
    while not cond():
        assert p.poll() is None, f'the process ended before the kill point:\n{Path(log).read_text()[-3000:]}'
        assert time.time()-t0 < timeout, f'kill point not reached in {timeout}s:\n{Path(log).read_text()[-3000:]}'
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL); p.wait()

def _npz_equal(a, b):
    with np.load(a) as x, np.load(b) as y:
        for k in ('faces', 'indices', 'boxes', 'found', 'n_frames'): np.testing.assert_array_equal(x[k], y[k], err_msg=f'{a.name}: {k}')

def _faces(home): return Path(home)/'data'/'faces'/'tiny'/prep_key(frames=FR, size=SZ)

def _same_faces(home_a, home_b):
    a, b = _faces(home_a), _faces(home_b)
    na, nb = sorted(p.relative_to(a) for p in a.rglob('*.npz')), sorted(p.relative_to(b) for p in b.rglob('*.npz'))
    assert na == nb and len(na) == 12, (na, nb)
    for rel in na: _npz_equal(a/rel, b/rel)
    assert not list(b.rglob('*.tmp'))
    sa, sb = [pd.read_csv(h/'summary.csv', keep_default_na=False).drop(columns='cached').sort_values('video_id').reset_index(drop=True) for h in (a, b)]
    pd.testing.assert_frame_equal(sa, sb)

def _features(home):
    return sorted((Path(home)/'data'/'features'/'tiny'/prep_key(frames=FR, size=SZ)).glob('mobilenetv2-*.npy'))

def _same_features(home_a, home_b):
    fa, fb = _features(home_a), _features(home_b)
    assert [p.name for p in fa] == [p.name for p in fb] and len(fa) == 1, (fa, fb)
    np.testing.assert_array_equal(np.load(fa[0]), np.load(fb[0]))
    ia, ib = load_json(fa[0].with_suffix('.json')), load_json(fb[0].with_suffix('.json'))
    assert ia['video_ids'] == ib['video_ids'] and ia['scale'] == ib['scale']

def _copy_data(src_home, dst_home, parts=('manifests', 'faces', 'features')):
    for part in parts: shutil.copytree(Path(src_home)/'data'/part, Path(dst_home)/'data'/part)

# ---------------------------------------------------------------- the reference: an uninterrupted run on a tiny dataset

@pytest.fixture(scope='module')
def ref(tmp_path_factory):
    "A home with the tiny dataset's manifest, faces, features and one uninterrupted run (built in this process)"
    from deepfake_nb.models import cached_features
    from deepfake_nb.train import train_run
    base = tmp_path_factory.mktemp('robust')
    src = make_demo_dataset(base/'src'/'tiny', n_identities=3, videos_per_class=2, n_frames=8, size=160)
    home = base/'ref'
    with home_at(home):
        m = build_manifest('demo', root=src, name='tiny', val_frac=0.33, test_frac=0.34)
        summ = preprocess_manifest(m, frames=FR, size=SZ, dataset='tiny', progress=False)
        assert (summ.error == '').all()
        cached_features('tiny', prep_key(frames=FR, size=SZ), summ.video_id.tolist(), 'mobilenetv2', None, SZ)
        rdir = train_run(**RUN)
    return dict(base=base, src=src, home=home, manifest=m, rdir=rdir)

# ---------------------------------------------------------------- bad inputs

def test_bad_videos_are_recorded_per_video_and_the_rest_goes_on(tmp_path):
    d = tmp_path/'vids'; d.mkdir()
    good = [_face_video(d/f'good{i}.mp4', seed=i) for i in range(2)]
    full = _face_video(d/'full.mp4', n=16, seed=5)
    trunc = d/'truncated.mp4'; trunc.write_bytes(full.read_bytes()[:full.stat().st_size//2])
    empty = d/'empty.mp4'; empty.touch()
    text = d/'not_a_video.mp4'; text.write_text('this is a text file, not a video\n' * 50)
    short = _face_video(d/'short.mp4', n=3, seed=6)                             # fewer frames than `frames`
    one = _face_video(d/'one.mp4', n=1, seed=7)
    rng = np.random.default_rng(0)
    gray = _avi(d/'gray.avi', [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in read_frames(good[0], 8)[0]], is_color=False)
    im = read_frames(good[1], 1)[0][0]
    rgba = d/'rgba.png'; cv2.imwrite(str(rgba), cv2.cvtColor(im, cv2.COLOR_RGB2BGRA))        # 4 channels
    gray_png = d/'gray.png'; cv2.imwrite(str(gray_png), cv2.cvtColor(im, cv2.COLOR_RGB2GRAY))
    tiny = _face_video(d/'tiny32.mp4', n=6, size=32, seed=8)
    big = write_video(d/'big4k.mp4', [cv2.copyMakeBorder(cv2.resize(f, (2160, 2160)), 0, 0, 840, 840, cv2.BORDER_REFLECT) for f in read_frames(good[0], 3)[0]])   # 3840x2160
    avi = _avi(d/'wrongcount.avi', [rng.integers(0, 255, (96, 96, 3), np.uint8) for _ in range(16)])
    wrong = d/'wrong count.avi'; wrong.write_bytes(avi.read_bytes()[:avi.stat().st_size//2])   # the header still says 16 frames
    noface = _noise_video(d/'noface.mp4', n=8)
    uni = d/'dätä set'/'vidéo con espacio ü.mp4'; uni.parent.mkdir(); shutil.copy(good[0], uni)
    vids = dict(good0=good[0], good1=good[1], truncated=trunc, empty=empty, text=text, short=short, one=one, gray=gray, rgba=rgba, gray_png=gray_png,
                tiny=tiny, big=big, wrong=wrong, noface=noface, unicode=uni)
    m = _manifest(tmp_path/'bad.csv', [(k, p, i % 2, 'train') for i, (k, p) in enumerate(vids.items())])
    with home_at(tmp_path/'home'):
        summ = preprocess_manifest(m, frames=6, size=SZ, dataset='bad', progress=False).set_index('video_id')
        cache = face_cache_dir('bad', prep_key(frames=6, size=SZ))
        on_disk = pd.read_csv(cache/'summary.csv', keep_default_na=False).set_index('video_id')
    failed = {'truncated', 'empty', 'text'}
    test_errs = summ.error[summ.error != '']
    assert set(test_errs.index) == failed, summ.error.to_dict()
    for v in failed:                                        # which video and why, in the per-video record on disk
        e = on_disk.error[v]
        assert str(vids[v]) in e and ('cannot open this file as a video' in e or 'no frame could be decoded' in e), e
        assert not (cache/f'{v}.npz').exists()
    ok = summ.drop(index=list(failed))
    assert (ok.frames == 6).all() and (on_disk.drop(index=list(failed)).error == '').all()
    for v in ok.index:
        with np.load(cache/f'{v}.npz') as z: assert z['faces'].shape == (6, SZ, SZ, 3) and z['faces'].dtype == np.uint8, v
    assert ok.n_frames['short'] == 3 and ok.n_frames['one'] == 1 and ok.n_frames['big'] == 3
    with np.load(cache/'one.npz') as z: assert (z['indices'] == 0).all()
    with np.load(cache/'short.npz') as z: assert set(z['indices']) == {0, 1, 2}
    assert video_frame_count(wrong) == 16 and ok.n_frames['wrong'] == count_frames(wrong) < 16          # the real count, not the header's
    assert ok.no_face_frames['noface'] == 6 and ok.no_face_fill['noface'] == 'centre' and ok.faces_found['noface'] == 0   # counted, not dropped
    assert ok.faces_found[['good0', 'good1', 'unicode', 'big']].min() >= 5                      # a face in 4K and under a non-ASCII path
    assert ok.faces_found['gray'] >= 5 and ok.faces_found['rgba'] == 6 and ok.faces_found['gray_png'] == 6


def test_reported_frame_count_wrong_either_way(monkeypatch, tmp_path):
    v = _face_video(tmp_path/'v.mp4', n=10, seed=3)
    truth, idx, n = read_frames(v, 5)
    import deepfake_nb.preprocess as pp
    for reported in (40, 4):                                # the container over- or under-reports the frames
        monkeypatch.setattr(pp, 'video_frame_count', lambda p, r=reported: r)
        frames, idx2, n2 = pp.read_frames(v, 5)
        assert n2 == 10 and list(idx2) == list(idx) and all((a == b).all() for a, b in zip(frames, truth)), reported


def test_dataset_folders_that_cannot_make_a_detector(tmp_path):
    from deepfake_nb.data import _touch
    empty = tmp_path/'empty'; empty.mkdir()
    with pytest.raises(DeepfakeNBError, match=r'has no real/ subfolder.*put the real files in'): build_manifest('folder', root=empty)
    one = _touch(tmp_path/'one_class', [f'real/id{i}_0.mp4' for i in range(6)])
    with pytest.raises(DeepfakeNBError, match=r'one_class has no fake/ subfolder'): build_manifest('folder', root=one)
    (one/'fake').mkdir()
    with pytest.raises(DeepfakeNBError, match=r'holds no files with extension .*both real and fake'): build_manifest('folder', root=one)
    with pytest.raises(DeepfakeNBError, match='does not exist'): build_manifest('folder', root=tmp_path/'missing')
    # two files that differ only by extension would get the same video id: stopped, naming both files and the fix
    dup = _touch(tmp_path/'dup', [f'{c}/id{i}_0.mp4' for c in ('real', 'fake') for i in range(8)] + ['real/id0_0.avi'])
    with pytest.raises(DeepfakeNBError, match=r"files \['real/id0_0.avi', 'real/id0_0.mp4'\] differ only by extension.*rename or remove"): build_manifest('folder', root=dup)


def test_hand_edited_manifest_is_refused_with_the_fix(tmp_path):
    v = _face_video(tmp_path/'v.mp4')
    rows = [(f'v{i}', v, i % 2, s) for i, s in enumerate(['train', 'train', 'val', 'val', 'test', 'test'])]
    m = _manifest(tmp_path/'m.csv', rows)
    df = pd.read_csv(m)
    df.drop(columns='label').to_csv(tmp_path/'nolabel.csv', index=False)
    with pytest.raises(DeepfakeNBError, match=r"nolabel.csv: missing column\(s\) \['label'\].*rebuild it"): load_manifest(tmp_path/'nolabel.csv')
    for bad in ('fake', 2, ''):
        df.assign(label=[0, 1, bad, 1, 0, 1]).to_csv(tmp_path/'badlabel.csv', index=False)
        with pytest.raises(DeepfakeNBError, match=r'label must be 0 \(real\) or 1 \(fake\); rows \[2\]'): load_manifest(tmp_path/'badlabel.csv')
        with pytest.raises(DeepfakeNBError, match='label must be 0'): preprocess_manifest(tmp_path/'badlabel.csv', progress=False)
    df.assign(split=['train', 'train', 'val', 'val', 'tset', 'test']).to_csv(tmp_path/'badsplit.csv', index=False)
    with pytest.raises(DeepfakeNBError, match='split must be train, val or test'): load_manifest(tmp_path/'badsplit.csv')
    pd.concat([df, df.iloc[:1]]).to_csv(tmp_path/'dupid.csv', index=False)
    with pytest.raises(DeepfakeNBError, match=r"video_id must be unique; duplicated: \['v0'\]"): load_manifest(tmp_path/'dupid.csv')


def test_unknown_names_and_wrong_types_stop_at_once():
    from deepfake_nb.train import run_params
    from deepfake_nb.preprocess import prep_settings
    for kw, msg in [(dict(backbone='vgg99'), "unknown backbone 'vgg99'; valid names: "), (dict(head='transformer'), "unknown head 'transformer'; valid heads: lstm"),
                    (dict(preset='seed-vgg'), "unknown preset 'seed-vgg'; valid presets: seed-mobilenetv2-lstm"), (dict(mode='half'), "mode='half': 'half' is not one of frozen, finetune"),
                    (dict(epochs='ten'), "epochs='ten' must be an integer"), (dict(lr='fast'), "lr='fast' must be a number"),
                    (dict(detector='dlib'), "detector='dlib': 'dlib' is not one of haar, yunet, mtcnn")]:
        with pytest.raises(DeepfakeNBError, match=msg.replace('(', r'\(').replace(')', r'\)')):
            p = run_params(**kw); prep_settings(p['frames'], p['size'], p['detector'], p['margin'])
    for kw, msg in [(dict(frames='ten'), "frames='ten' must be an integer"), (dict(size=2.5), 'size=2.5 must be an integer'),
                    (dict(margin='wide'), "margin='wide' must be a number"), (dict(frames=0), 'frames=0 must be an integer of at least 1')]:
        with pytest.raises(DeepfakeNBError, match=msg): prep_settings(**kw)


def test_papermill_preprocess_wrong_type_is_named(ref, tmp_path):
    # (03_train's `-p epochs ten` and unknown backbone are in tests/test_pipeline.py)
    r = subprocess.run([str(Path(PY).parent/'papermill'), 'nbs/02_preprocess.ipynb', str(tmp_path/'o.ipynb'), '-k', 'python3', '-p', 'frames', 'ten',
                        '-p', 'manifest', str(ref['manifest'])], env=_env(tmp_path/'home'), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "parameter frames='ten' must be an integer" in r.stdout + r.stderr, (r.stdout + r.stderr)[-2000:]
    assert not (tmp_path/'home'/'data'/'faces').exists()     # stopped before any work


def test_meaningless_runs_stop_before_training(ref, tmp_path, monkeypatch):
    import deepfake_nb.train as T
    monkeypatch.setattr(T, 'cached_features', lambda *a, **k: pytest.fail('reached feature extraction'))
    with home_at(tmp_path/'home'):
        data_dir('manifests').mkdir(parents=True)
        df = load_manifest(ref['manifest'])
        one = df.assign(label=np.where(df.split == 'test', 0, df.label))             # hand-edited: the test split holds real videos only
        one.to_csv(data_dir('manifests', 'oneclass.csv'), index=False)
        with pytest.raises(DeepfakeNBError, match=r"oneclass.csv: split 'test' has only real videos; training needs real and fake videos in train, val and test\. Add videos"):
            T.train_run(**dict(RUN, dataset='oneclass'))
        # the val split's fake videos are unreadable: after preprocessing val has one class left, which stops the run (naming the videos)
        bad = df.copy()
        for i in bad.index[(bad.split == 'val') & (bad.label == 1)]:
            p = tmp_path/f'broken{i}.mp4'; p.write_bytes(b'\0' * 1000); bad.loc[i, 'path'] = str(p)
        bad.to_csv(data_dir('manifests', 'brokenval.csv'), index=False)   # a hand-made manifest: preset 'auto' would mean 'real'; the demo's settings here
        with pytest.raises(DeepfakeNBError, match=r"after leaving out the \d video\(s\) that could not be preprocessed .*: split 'val' has only real videos.*Replace or remove"):
            T.train_run(**dict(RUN, dataset='brokenval', preset='none'))
        summ = pd.read_csv(face_cache_dir('brokenval', prep_key(frames=FR, size=SZ))/'summary.csv', keep_default_na=False)
        assert set(summ.video_id[summ.error != '']) == set(df.video_id[(df.split == 'val') & (df.label == 1)])
        assert not list(Path(data_dir()).parent.joinpath('reports', 'runs').rglob('complete.json'))


# ---------------------------------------------------------------- stale caches are detected and rebuilt

def test_stale_face_cache_is_rebuilt(ref, tmp_path):
    home = tmp_path/'home'
    _copy_data(ref['home'], home, ('manifests', 'faces'))
    cache = _faces(home); other = Path(ref['home'])/'data'/'faces'
    with home_at(home):
        preprocess_manifest(ref['manifest'], frames=3, size=SZ, dataset='tiny', progress=False)       # a cache made with other settings
        other3 = face_cache_dir('tiny', prep_key(frames=3, size=SZ))
        a, b, c = [cache/f'{v}.npz' for v in sorted(load_manifest(ref['manifest']).video_id)[:3]]
        shutil.copy(other3/a.relative_to(cache), a)                                  # written with other settings
        with np.load(b) as z: np.savez(b, **{k: z[k] for k in z.files if k not in ('prep_key', 'prep_version')})   # by an older version
        c.write_bytes(b'garbage')                                                    # unreadable
        s = preprocess_manifest(ref['manifest'], frames=FR, size=SZ, dataset='tiny', progress=False).set_index('video_id')
        rebuilt = {cache/f'{v}.npz' for v in s.index[~s.cached]}
        assert rebuilt == {a, b, c}, rebuilt
        _same_faces(ref['home'], home)
        pj = load_json(cache/'prep.json'); save_json(dict(pj, margin=1.5), cache/'prep.json')   # the record disagrees with the settings
        s2 = preprocess_manifest(ref['manifest'], frames=FR, size=SZ, dataset='tiny', progress=False)
        assert not s2.cached.any() and load_json(cache/'prep.json') == pj
        _same_faces(ref['home'], home)


def test_stale_feature_cache_is_rebuilt(ref, tmp_path):
    from deepfake_nb.models import cached_features
    home = tmp_path/'home'
    _copy_data(ref['home'], home)
    pk = prep_key(frames=FR, size=SZ)
    ids = load_manifest(ref['manifest']).video_id.tolist()
    f = _features(home)[0]; j = f.with_suffix('.json'); info = load_json(j)
    assert info['prep_key'] == pk and info['backbone'] == 'mobilenetv2' and info['weights_key'] == 'random-s0' and 'produced_by' in info
    with home_at(home):
        X, i0 = cached_features('tiny', pk, ids, 'mobilenetv2', None, SZ); assert i0['seconds'] == info['seconds']     # fresh: reused
        for change in (dict(prep_key='0123456789'), dict(version=1), dict(backbone='resnet50'), dict(size=SZ*2), 'short-array'):
            if change == 'short-array': np.save(f, np.load(f)[:5]); save_json(info, j)   # an array that does not fit its record
            else: save_json(dict(info, **change), j)
            mtime = f.stat().st_mtime_ns
            X2, i2 = cached_features('tiny', pk, ids, 'mobilenetv2', None, SZ)
            assert f.stat().st_mtime_ns != mtime, f'{change}: reused'
            np.testing.assert_array_equal(X2, X); assert load_json(j)['prep_key'] == pk and load_json(j)['version'] == info['version']
            info = load_json(j)


# ---------------------------------------------------------------- SIGKILL, then run again: identical results, nothing half-written

def test_preprocessing_killed_midway_resumes_identical(ref, tmp_path):
    home = tmp_path/'home'
    code = f'''
        import time, deepfake_nb.preprocess as pp
        slow = pp.preprocess_video
        def preprocess_video(*a, **k): time.sleep(0.4); return slow(*a, **k)      # slow enough to be killed midway
        pp.preprocess_video = preprocess_video
        pp.preprocess_manifest({str(ref['manifest'])!r}, frames={FR}, size={SZ}, dataset='tiny', progress=False)
    '''
    p = _spawn(home, code, tmp_path/'log')
    _kill_when(p, lambda: len(list(home.rglob('*.npz'))) >= 4, tmp_path/'log')
    n = len(list(_faces(home).rglob('*.npz')))
    assert 4 <= n < 12 and not (_faces(home)/'summary.csv').exists()
    for f in _faces(home).rglob('*.npz'): _npz_equal(f, _faces(ref['home'])/f.relative_to(_faces(home)))   # what exists is whole
    with home_at(home): s = preprocess_manifest(ref['manifest'], frames=FR, size=SZ, dataset='tiny', progress=False)
    assert s.cached.sum() == n and (s.error == '').all()
    _same_faces(ref['home'], home)


def test_feature_extraction_killed_at_two_points_resumes_identical(ref, tmp_path):
    from deepfake_nb.models import cached_features
    pk = prep_key(frames=FR, size=SZ)
    ids = load_manifest(ref['manifest']).video_id.tolist()
    for point in ('mid-extraction', 'array-written-record-not'):
        home = tmp_path/point
        _copy_data(ref['home'], home, ('manifests', 'faces'))
        marker = tmp_path/f'{point}.marker'
        code = f'''
            import time, pathlib, deepfake_nb.feature_cache as M
            point, marker = {point!r}, pathlib.Path({str(marker)!r})
            ext, sj, chunks = M.extract_features, M.save_json, []
            def extract_features(*a, **k):
                out = ext(*a, **k); chunks.append(1)
                if point == 'mid-extraction' and len(chunks) == 1: marker.touch(); time.sleep(600)   # one chunk of three done
                return out
            def save_json(obj, path):
                if point != 'mid-extraction' and str(path).endswith('.json'): marker.touch(); time.sleep(600)
                return sj(obj, path)
            M.extract_features, M.save_json = extract_features, save_json
            M.cached_features('tiny', {pk!r}, {ids!r}, 'mobilenetv2', None, {SZ}, chunk_videos=4)
        '''
        p = _spawn(home, code, tmp_path/f'{point}.log')
        _kill_when(p, marker.exists, tmp_path/f'{point}.log')
        fdir = home/'data'/'features'/'tiny'/pk
        assert not list(fdir.glob('*.json')), point                                 # no record: nothing looks done
        assert bool(list(fdir.glob('*.npy'))) == (point != 'mid-extraction'), point
        with home_at(home): cached_features('tiny', pk, ids, 'mobilenetv2', None, SZ)
        _same_features(ref['home'], home)


def test_training_killed_then_resumed_from_its_checkpoint(ref, tmp_path, monkeypatch):
    import keras, deepfake_nb.train as T
    home = tmp_path/'home'
    _copy_data(ref['home'], home)
    with home_at(home): rdir = T.run_dir_for(T.run_params(**RUN))
    assert rdir.name == ref['rdir'].name
    code = f'''
        import time, keras, deepfake_nb.train as T
        class Slow(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None): time.sleep(1.5)           # each epoch takes long enough to be killed in
        import deepfake_nb.fit as F
        cbs = F._callbacks
        F._callbacks = lambda *a, **k: cbs(*a, **k) + [Slow()]
        T.train_run(**{RUN!r})
    '''
    state = rdir/'checkpoint'/'head'/'state.json'
    p = _spawn(home, code, tmp_path/'log')
    _kill_when(p, lambda: state.exists() and load_json(state)['epoch'] >= 1, tmp_path/'log')
    k = load_json(state)['epoch']
    assert k < RUN['epochs'] - 1 and not (rdir/'complete.json').exists() and not T.is_complete(rdir)
    ran = []
    class Count(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None): ran.append(epoch)
    import deepfake_nb.fit as F
    cbs = F._callbacks
    monkeypatch.setattr(F, '_callbacks', lambda *a, **kw: cbs(*a, **kw) + [Count()])
    with home_at(home): out = T.train_run(resume=True, **RUN)
    assert out == rdir and T.is_complete(rdir) and not (rdir/'checkpoint').exists()
    assert ran == list(range(k+1, RUN['epochs'])), ran                            # went on from epoch k+1, not from 0
    info = load_json(rdir/'params.json')
    assert info['resumed'] == {'head': k+1} and info['epochs_run'] == RUN['epochs']
    h, h0 = pd.read_csv(rdir/'history.csv'), pd.read_csv(ref['rdir']/'history.csv')
    assert h.epoch.tolist() == list(range(RUN['epochs']))
    np.testing.assert_allclose(h.val_loss, h0.val_loss, rtol=1e-6)               # the same run an uninterrupted process makes
    p1, p0 = pd.read_csv(rdir/'predictions.csv'), pd.read_csv(ref['rdir']/'predictions.csv')
    assert p1.video_id.tolist() == p0.video_id.tolist(); np.testing.assert_allclose(p1.prob, p0.prob, rtol=1e-5, atol=1e-7)
    assert load_json(rdir/'metrics.json')['test']['roc_auc'] == pytest.approx(load_json(ref['rdir']/'metrics.json')['test']['roc_auc'])


def test_run_killed_while_another_process_waits_is_taken_over_and_resumed(ref, tmp_path):
    "Process A trains a run; B (the same run, resume=True) waits for its lock; A is SIGKILLed mid-training: B says it takes over and finishes the run"
    import deepfake_nb.train as T
    home = tmp_path/'home'
    _copy_data(ref['home'], home)
    with home_at(home): rdir = T.run_dir_for(T.run_params(**RUN))
    code_a = f'''
        import time, keras, deepfake_nb.train as T
        class Stall(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == 2: time.sleep(600)                  # stalls before epoch 2's checkpoint: the last one is epoch 1's
        import deepfake_nb.fit as F
        cbs = F._callbacks
        F._callbacks = lambda *a, **k: cbs(*a, **k) + [Stall()]
        T.train_run(**{RUN!r})
    '''
    state = rdir/'checkpoint'/'head'/'state.json'
    a = _spawn(home, code_a, tmp_path/'a.log')
    t0 = time.time()
    while not (state.exists() and load_json(state)['epoch'] >= 1):
        assert a.poll() is None and time.time()-t0 < 240, (tmp_path/'a.log').read_text()[-3000:]
        time.sleep(0.1)
    log_b = tmp_path/'b.log'
    b = subprocess.Popen([PY, '-u', '-c', f'import deepfake_nb.train as T; T.train_run(resume=True, **{RUN!r})'], env=_env(home), cwd=REPO,
                         stdout=open(log_b, 'w'), stderr=subprocess.STDOUT, start_new_session=True)
    _kill_when(a, lambda: 'waiting for run tiny/' in log_b.read_text(), tmp_path/'a.log')   # B is blocked on A's lock: now kill A
    assert b.wait(300) == 0, log_b.read_text()[-3000:]
    out = log_b.read_text()
    # the take-over note says A ended; ', no longer running' joins it once A's process is gone, which a loaded machine can delay past the note
    assert f'in use by pid {a.pid} on host' in out and f'taking over the lock left by pid {a.pid}' in out and 'which ended without releasing it' in out, out[-3000:]
    assert T.is_complete(rdir) and not (rdir/'checkpoint').exists() and not T.run_lock_path(rdir).exists()
    assert load_json(rdir/'params.json')['resumed'] == {'head': 2}                 # B went on from A's last checkpoint (epoch 1)
    h, h0 = pd.read_csv(rdir/'history.csv'), pd.read_csv(ref['rdir']/'history.csv')
    np.testing.assert_allclose(h.val_loss, h0.val_loss, rtol=1e-6)               # the same run an uninterrupted process makes


# ---------------------------------------------------------------- two processes at once

def test_two_processes_preprocess_and_extract_at_once(ref, tmp_path):
    home = tmp_path/'home'
    (home/'data').mkdir(parents=True)
    pk = prep_key(frames=FR, size=SZ)
    ids = load_manifest(ref['manifest']).video_id.tolist()
    code = f'''
        from deepfake_nb.preprocess import preprocess_manifest
        from deepfake_nb.models import cached_features
        s = preprocess_manifest({str(ref['manifest'])!r}, frames={FR}, size={SZ}, dataset='tiny', progress=False)
        assert (s.error == '').all()
        cached_features('tiny', {pk!r}, {ids!r}, 'mobilenetv2', None, {SZ})
    '''
    ps = [_spawn(home, code, tmp_path/f'log{i}') for i in range(2)]
    for i, p in enumerate(ps): assert p.wait(timeout=300) == 0, (tmp_path/f'log{i}').read_text()[-3000:]
    _same_faces(ref['home'], home)
    _same_features(ref['home'], home)
    assert not [f for f in (home/'data').rglob('*') if f.name.endswith('.tmp')]


# ---------------------------------------------------------------- the dataset's own folders are never written to

def test_source_tree_untouched_and_odd_paths_work(tmp_path):
    from deepfake_nb.train import train_run
    root = tmp_path/'mes données'/'jeu de test'                        # non-ASCII and spaces in every folder and file name
    for i in range(3):
        for label in ('real', 'fake'):
            for j in range(2): _face_video(root/label/f'id{i}_ vidéo {j}.mp4', n=8, seed=10*i+j+(label == 'fake'), fake=label == 'fake')
    before = _tree_digest(tmp_path/'mes données')
    with home_at(tmp_path/'home'):
        m = build_manifest('folder', root=root, name='odd', val_frac=0.33, test_frac=0.34)
        assert any('vidéo' in v for v in load_manifest(m).video_id)
        rdir = train_run(**dict(RUN, dataset='odd', epochs=1))
        assert load_json(rdir/'complete.json')
    assert _tree_digest(tmp_path/'mes données') == before
    outside = [p for p in tmp_path.iterdir() if p.name not in ('mes données', 'home')]
    assert not outside, outside                                                  # nothing written beside the dataset either


def test_resume_is_offered_by_every_entry_point():
    import inspect, papermill as pm
    from deepfake_nb.train import train_run, run_params
    from deepfake_nb.pipeline import run_pipeline, run_grid
    assert 'resume' in inspect.signature(train_run).parameters and 'resume' not in inspect.signature(run_params).parameters   # not in the run id
    assert 'resume' in inspect.signature(run_pipeline).parameters and 'resume' in inspect.signature(run_grid).parameters
    assert pm.inspect_notebook(str(REPO/'nbs'/'03_train.ipynb'))['resume']['default'] == 'False'
    for cmd in ('train', 'run'):
        r = subprocess.run([str(Path(PY).parent/'deepfake-nb'), cmd, '--help'], capture_output=True, text=True)
        assert r.returncode == 0 and '--resume' in r.stdout, cmd
