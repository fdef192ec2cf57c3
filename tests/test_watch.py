"""Live scoring (`deepfake_nb.watch`, `deepfake-nb watch`): the FF++ and DFDC clips played as live sources (a file, and a file served over
HTTP) get the same P(fake) as the predict path on the same frames; a scorer slower than the source drops frames, keeps its latency
bounded and keeps pace; the TFLite export (made on first use) agrees with Keras; the command writes the timeline; bad input is refused.
About 50 s on 2 CPU cores, most of it training the tiny run."""
import os, re, io, inspect, threading, functools, http.server
from pathlib import Path
import numpy as np, pandas as pd, pytest, cv2

CLIPS = {'ffpp': 'ffpp_c23/fake/Deepfakes_519_515.mp4',   # 640x480, 25 fps
         'dfdc': 'dfdc/fake/abofeumbvv.mp4'}              # 1920x1080, 29.97 fps


@pytest.fixture(scope='module')
def tiny_run(shared, suite_home, tmp_path_factory):
    """A frozen MobileNetV2 + LSTM demo run with the shared ImageNet weights, 4 faces of 96x96, 2 epochs (about 15 s on 2 cores), in a home of
    its own reports/ sharing the suite's demo data (so no other test's demo run is this one)"""
    from deepfake_nb.train import train_run
    from deepfake_nb.core import home_at
    h = tmp_path_factory.mktemp('watch_home'); (suite_home/'data').mkdir(exist_ok=True); (h/'data').symlink_to(suite_home/'data')
    with home_at(h):
        return train_run(dataset='demo', backbone='mobilenetv2', weights=str(shared/'weights'/'mobilenet_v2_imagenet_notop.weights.h5'),
                         size=96, frames=4, epochs=2)


def _frames_at(path, indices) -> list:
    "RGB frames `indices` of `path`, decoded in order"
    cap, out, i = cv2.VideoCapture(str(path)), {}, 0
    while i <= max(indices) and cap.grab():
        if i in indices: out[i] = cv2.cvtColor(cap.retrieve()[1], cv2.COLOR_BGR2RGB)
        i += 1
    cap.release()
    return [out[j] for j in indices]


def _predict_path_prob(pred, path, indices) -> float:
    "P(fake) of frames `indices` of `path` the way predict scores frames: the run's detector, `track_faces`, `fill_missing_boxes`, `square_crop`, `Predictor.score`"
    from deepfake_nb.preprocess import get_detector, track_faces, fill_missing_boxes, square_crop, landmarks_68, eye_angle
    imgs = _frames_at(path, indices)
    det = get_detector(pred.prep['detector'], **pred.prep.get('detector_options', {}))
    found = track_faces([det(im) for im in imgs])
    boxes = fill_missing_boxes(found, imgs[0].shape)
    angles = [eye_angle(landmarks_68(im, b, det)) if pred.prep.get('align') and any(found) else 0.0 for im, b in zip(imgs, boxes)]
    return pred.score(np.stack([square_crop(im, b, pred.prep['margin'], pred.prep['size'], a) for im, b, a in zip(imgs, boxes, angles)]))


def _check_same_as_predict(res, tiny_run, path):
    from deepfake_nb.predict import load_predictor
    pred = load_predictor(tiny_run)
    for r in res.timeline.itertuples():
        want = _predict_path_prob(pred, path, [int(i) for i in r.frames.split()])
        print(f'{Path(path).name} window {r.window} (t {r.t_start:.2f}-{r.t_end:.2f} s, frames {r.frames}): watch {r.prob:.6f}, predict path {want:.6f}')
        assert abs(r.prob - want) <= 1e-5, (r.window, r.prob, want)


@pytest.mark.parametrize('clip', list(CLIPS))
def test_live_source_scores_as_predict(tiny_run, shared, clip, tmp_path):
    "As fast as possible (nothing dropped): each window's P(fake) equals the predict path's on the same frames; the frames are one every window/frames s"
    from deepfake_nb.watch import watch
    path = shared/'data'/'videos'/CLIPS[clip]
    res = watch(path, tiny_run, realtime=False, max_seconds=5, out_dir=tmp_path)
    s, tl = res.summary, res.timeline
    fps = cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FPS)
    assert (s['windows'], s['frames_dropped'], s['frames_read'], s['frames']) == (3, 0, int(np.ceil(5*fps)), 4), s
    assert tl.t_end.round(1).tolist() == [2.0, 3.0, 4.0] and (tl.faces_found == 4).all() and set(tl.verdict) <= {'FAKE', 'REAL'}
    for r in tl.itertuples():
        idx = np.array([int(i) for i in r.frames.split()])
        assert np.allclose(np.diff(idx), s['sample_every_s']*fps, atol=1), idx      # 4 faces spread over the 2 s window
    assert pd.read_csv(tmp_path/'timeline.csv').prob.tolist() == pytest.approx(tl.prob.tolist(), abs=1e-12)
    _check_same_as_predict(res, tiny_run, path)


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    "Python's file server with byte ranges (FFmpeg seeks in an MP4 over HTTP), quiet"
    def log_message(self, *a): pass
    def send_head(self):
        rng = self.headers.get('Range')
        if not rng: return super().send_head()
        path = self.translate_path(self.path); size = os.path.getsize(path)
        a, _, b = rng.split('=', 1)[1].partition('-'); a, b = int(a), min(int(b) if b else size - 1, size - 1)
        f = open(path, 'rb'); f.seek(a)
        self.send_response(206)
        for k, v in (('Content-Type', 'video/mp4'), ('Accept-Ranges', 'bytes'), ('Content-Range', f'bytes {a}-{b}/{size}'), ('Content-Length', str(b - a + 1))):
            self.send_header(k, v)
        self.end_headers()
        data = f.read(b - a + 1); f.close()
        return io.BytesIO(data)


def test_stream_url_scores_as_the_file(tiny_run, shared, tmp_path):
    "The FF++ clip served over HTTP is a stream source: timed by its frame rate, it gives the file's windows"
    from deepfake_nb.watch import watch, source_kind
    path = shared/'data'/'videos'/CLIPS['ffpp']
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_RangeHandler, directory=str(path.parent)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f'http://127.0.0.1:{srv.server_address[1]}/{path.name}'
        assert source_kind(url) == 'stream'
        res = watch(url, tiny_run, realtime=False, max_seconds=4, out_dir=tmp_path/'url')
    finally: srv.shutdown()
    ref = watch(path, tiny_run, realtime=False, max_seconds=4, out_dir=tmp_path/'file', quiet=True)
    assert res.summary['kind'] == 'stream' and len(res.timeline) == 2
    assert res.timeline.frames.tolist() == ref.timeline.frames.tolist()
    assert np.allclose(res.timeline.prob, ref.timeline.prob, atol=1e-6)


def test_slow_scorer_drops_frames_and_keeps_pace(tiny_run, shared, tmp_path):
    """Real time on the 1080p DFDC clip with every window made 0.8 s slower than its 0.5 s stride: frames are dropped, the latency stays
    bounded and the run ends with the source. Without dropping, each window would start (0.8 - 0.5) s later than the one before, so the
    latency would grow by 0.3 s per window, past 2 s by the last of 5 s; with it, a window's newest frame waited at most one sample
    period (0.25 s) in the mailbox, then the window's own work (0.8 s plus the scoring, well under 0.5 s here): p95 < 0.8 + 0.25 + 1.0 s."""
    from deepfake_nb.watch import watch
    D, delay, stride = 5.0, 0.8, 0.5
    res = watch(shared/'data'/'videos'/CLIPS['dfdc'], tiny_run, stride=stride, realtime=True, max_seconds=D, score_delay=delay, out_dir=tmp_path)
    s, tl = res.summary, res.timeline
    print(tl.to_string())
    assert s['mode'] == 'realtime' and s['frames_dropped'] > 0 and tl.dropped.is_monotonic_increasing, s
    assert s['latency_p95_s'] < delay + s['sample_every_s'] + 1.0, s
    assert tl.latency_s.iloc[-1] < delay + s['sample_every_s'] + 1.0, tl.latency_s.tolist()      # no backlog at the end either
    assert D <= s['wall_seconds'] < D + delay + 1.5, s                                            # kept pace with the source
    assert 3 <= s['windows'] <= 7 and (np.diff(tl.t_end) >= stride - 0.05).all(), tl.t_end.tolist()


def test_tflite_agrees_with_keras(tiny_run, shared, tmp_path, capsys):
    "`model='tflite'` exports the run on first use (a line says so), then scores the same windows as Keras within the export tolerance"
    from deepfake_nb.watch import watch
    from deepfake_nb.export import EXPORT_TOLERANCE
    path = shared/'data'/'videos'/CLIPS['dfdc']
    k = watch(path, tiny_run, realtime=False, max_seconds=4, out_dir=tmp_path/'keras', quiet=True)
    t = watch(path, tiny_run, realtime=False, max_seconds=4, model='tflite', out_dir=tmp_path/'tflite')
    out = capsys.readouterr().out
    assert 'has no TFLite export yet: exporting it once' in out and '(tflite)' in out, out
    assert t.summary['model'] == 'tflite' and t.timeline.frames.tolist() == k.timeline.frames.tolist()
    d = np.abs(t.timeline.prob.to_numpy() - k.timeline.prob.to_numpy())
    with capsys.disabled(): print(f'\nTFLite vs Keras on {len(d)} windows: largest |difference| in P(fake) {d.max():.2e}')
    assert len(d) == 2 and d.max() <= EXPORT_TOLERANCE['tflite'], d
    watch(path, tiny_run, realtime=False, max_seconds=2.5, model='tflite', out_dir=tmp_path/'again', quiet=True)
    assert 'exporting' not in capsys.readouterr().out                                             # exported once


def test_cli_watch_writes_the_timeline(tiny_run, shared, tmp_path, capsys):
    "`deepfake-nb watch --source CLIP --run-dir RUN --as-fast-as-possible --annotate ...` prints a line per window and the summary, and writes the CSV and the video"
    from deepfake_nb.pipeline import parse_command, main
    clip = shared/'data'/'videos'/CLIPS['ffpp']
    argv = ['watch', '--source', str(clip), '--run-dir', str(tiny_run), '--as-fast-as-possible', '--max-seconds', '3.5', '--stride', '0.5',
            '--annotate', '--out-dir', str(tmp_path/'w')]
    cmd, v, _ = parse_command(argv)
    assert cmd == 'watch' and (v['as_fast_as_possible'], v['realtime'], v['max_seconds'], v['stride'], v['model'], v['window']) == (True, True, 3.5, 0.5, 'keras', 0.0)
    assert main(argv) == 0
    out = capsys.readouterr().out
    tl = pd.read_csv(tmp_path/'w'/'timeline.csv')
    assert list(tl.columns) == ['window', 't_start', 't_end', 'frames', 'prob', 'verdict', 'faces_found', 'latency_s', 'dropped']
    assert len(tl) == 5 and (tl.dropped == 0).all() and 'as fast as possible' in out and out.count(' P(fake) ') == 5, out   # at 1, 1.5, ..., 3 s
    assert 'windows scored' in out and 'real-time factor' in out and (tmp_path/'w'/'summary.json').exists()
    cap = cv2.VideoCapture(str(tmp_path/'w'/'annotated.mp4'))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) > 0; cap.release()


def test_bad_input_is_refused(tiny_run, tmp_path, capfd):
    "Each bad input gets an error naming it, the problem and the fix; the command exits 2 with it"
    from deepfake_nb.core import DeepfakeNBError
    from deepfake_nb.watch import watch
    from deepfake_nb.pipeline import main
    (tmp_path/'empty.mp4').write_bytes(b'')
    for kw, msg in [(dict(source=tmp_path/'missing.mp4'), 'missing.mp4: no such file; pass a video file, a camera index'),
                    (dict(source='7'), 'camera 7 cannot be opened'),
                    (dict(source=tmp_path/'empty.mp4'), 'OpenCV cannot open this file as a video'),
                    (dict(source='rtsp://127.0.0.1:1/none'), 'cannot open this stream'),
                    (dict(source='x.mp4', run_dir=tmp_path), 'is not a run directory'),
                    (dict(source='x.mp4', stride=0), 'stride=0 must be a number of seconds > 0'),
                    (dict(source='x.mp4', stride=-1.0), 'stride=-1.0 must be a number of seconds > 0'),
                    (dict(source='x.mp4', window=-2), 'window=-2 must be a number of seconds >= 0'),
                    (dict(source='x.mp4', max_seconds='ten'), "max_seconds='ten' must be a number of seconds"),
                    (dict(source='x.mp4', model='onnx'), "model 'onnx' is not known; use one of keras, tflite")]:
        with pytest.raises(DeepfakeNBError, match=re.escape(msg)): watch(**dict(dict(run_dir=tiny_run), **kw))
    capfd.readouterr()
    assert main(['watch', '--source', str(tmp_path/'missing.mp4'), '--run-dir', str(tiny_run)]) == 2
    assert 'deepfake-nb watch: error: source' in capfd.readouterr().err
    with pytest.raises(SystemExit): main(['watch', '--model', 'onnx'])                           # refused by the option's choices
    assert "'onnx' is not one of keras, tflite" in capfd.readouterr().err


def test_watch_takes_the_schema():
    "watch's arguments are the watch settings of deepfake_nb.settings (as_fast_as_possible is the command line's spelling of realtime=False), with their defaults"
    from deepfake_nb.settings import stage_settings, default_value
    from deepfake_nb.watch import watch, WATCH_MODELS
    sig = inspect.signature(watch).parameters
    cli = {s.name: s for s in stage_settings('watch', cli=True)}
    assert set(cli) - set(sig) == {'as_fast_as_possible'} and set(sig) - set(cli) == {'score_delay', 'quiet'}
    for k in set(cli) & set(sig): assert sig[k].default == default_value(cli[k]), k
    assert cli['model'].choices == WATCH_MODELS
