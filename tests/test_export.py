"Exported models against Keras: every format on the demo run, the int8 calibration on ImageNet MobileNetV2, ResNet50 (tests for `deepfake_nb.export`)."
import os, json
from pathlib import Path
import pytest
from test_predict import _test_videos
from conftest import train_demo_run


def _export_and_check(rdir, out_dir, per_label):
    import importlib.util
    from deepfake_nb.predict import load_predictor
    from deepfake_nb.export import export_run
    pred = load_predictor(rdir)
    faces = [pred.preprocess(r.path)['faces'] for r in _test_videos(rdir, per_label).itertuples()]
    table = export_run(rdir, out_dir, check_faces=faces)
    print(f'{pred.run_id} ({pred.params.get("weights_used")}), {len(faces)} test videos:')
    print(table[['format', 'size_mb', 'max_abs_diff', 'ms_per_video', 'tolerance', 'ok', 'note']].to_string())
    spec = json.loads((Path(out_dir)/'export.json').read_text())
    assert spec['input']['shape'] == [1, pred.frames, pred.size, pred.size, 3] and spec['threshold'] == pred.threshold
    rec = spec['agreement']                                          # export.json carries the same measured agreement
    assert rec['inputs'] == f'{len(faces)} given videos', rec
    for r in table[(table.format != 'keras') & table.ok.notna()].itertuples():
        assert rec['formats'][r.format]['max_abs_diff'] == r.max_abs_diff and rec['formats'][r.format]['ok'] == r.ok, (r, rec)
    done = table[(table.format != 'keras') & (table.path.fillna('') != '')].set_index('format')
    expect = {'savedmodel', 'tflite', 'tflite_int8'} | ({'onnx'} if importlib.util.find_spec('tf2onnx') else set())
    assert set(done.index) == expect, table
    assert (done.size_mb > 0).all() and (done.ms_per_video > 0).all()
    if 'onnx' not in expect: print('ONNX not checked: tf2onnx is not installed (pip install tf2onnx onnxruntime)')
    return done


def test_exports_agree_with_keras(demo_run_dir, tmp_path):
    "SavedModel, TFLite float32 (and ONNX when tf2onnx is installed) give the Keras pipeline's probabilities within 1e-4, the calibrated int8 TFLite model within 0.02"
    from deepfake_nb.export import EXPORT_TOLERANCE, INT8_COMPUTE
    done = _export_and_check(demo_run_dir, tmp_path/'export', per_label=1)
    for fmt in done.index: assert done.max_abs_diff[fmt] <= EXPORT_TOLERANCE[fmt], (fmt, done.max_abs_diff[fmt])
    assert done.size_mb['tflite_int8'] < done.size_mb['tflite']/3
    assert done.note['tflite_int8'] == INT8_COMPUTE['float'] + '; GPTQ-rounded and bias-corrected on 128 training faces', done.note['tflite_int8']
    spec = json.loads((tmp_path/'export'/'export.json').read_text())
    info = spec['int8_calibration']
    assert spec['int8_compute'] == INT8_COMPUTE['float'] and info['faces'] == 128 and info['rounding'] == 'gptq', spec
    assert info['gptq_layers'] == info['bias_corrected_layers'] == 48, info     # MobileNetV2: 48 1x1 and depthwise convolutions of 1024 weights or more


slow = pytest.mark.skipif(not os.environ.get('DEEPFAKE_NB_SLOW'), reason='slow (90 s to 2 minutes on 2 cores): set DEEPFAKE_NB_SLOW=1 to run')

@slow   # 90 s: a full ImageNet demo run and three int8 exports
def test_int8_calibration_on_imagenet_mobilenetv2(shared, suite_home, tmp_path):
    "MobileNetV2 with the shared ImageNet weights, trained on the demo, all 16 demo test videos: the calibrated int8 model (GPTQ rounding, bias correction, float compute) is within 0.02 of Keras; calibration beats plain int8 with either compute"
    from deepfake_nb.core import home_at
    from deepfake_nb.train import train_run
    from deepfake_nb.predict import load_predictor
    from deepfake_nb.export import export_run, EXPORT_TOLERANCE, INT8_COMPUTE
    from deepfake_nb.preprocess import load_faces, face_cache_dir
    (suite_home/'data').mkdir(exist_ok=True)
    (tmp_path/'home').mkdir(); (tmp_path/'home'/'data').symlink_to(suite_home/'data')    # the suite's demo data and caches; its own reports/
    with home_at(tmp_path/'home'):                                                        # (the other tests' run listings stay as they were)
        # Haar crops: the run this tolerance was established on (11_export's notes). With the default YuNet crops the same run's calibrated
        # int8 model differs from Keras by up to 0.044 (plain 0.047): export_run reports it as outside the 0.02 tolerance (ok=False)
        rd = train_run(dataset='demo', backbone='mobilenetv2', weights=str(shared/'weights'/'mobilenet_v2_imagenet_notop.weights.h5'), detector='haar')
        p = load_predictor(rd).params
        assert p['weights_used'].startswith('file mobilenet_v2_imagenet_notop'), p['weights_used']
        te = _test_videos(rd, per_label=100)
        faces = list(load_faces(face_cache_dir('demo', p['prep_key']), te.video_id.tolist()))
        run = lambda name, **kw: export_run(rd, tmp_path/name, formats=('tflite_int8',), check_faces=faces, **kw).set_index('format')
        plain, hybrid, calibrated = run('plain', int8_calibration=0), run('hybrid', int8_compute='hybrid'), run('calibrated')
    d0, d1, d2 = (t.max_abs_diff['tflite_int8'] for t in (plain, hybrid, calibrated))
    ms = [t.ms_per_video['tflite_int8'] for t in (plain, hybrid, calibrated)]
    print(f'{len(faces)} demo test videos, largest |P(fake) int8 - Keras|: plain {d0:.4f}, calibrated with hybrid kernels {d1:.4f}, '
          f'calibrated with float compute {d2:.4f}; ms per video {ms[0]:.0f} / {ms[1]:.0f} / {ms[2]:.0f}')
    assert len(faces) == 16 and 'no calibration' in plain.note['tflite_int8'] and plain.note['tflite_int8'].startswith(INT8_COMPUTE['float'])
    assert hybrid.note['tflite_int8'].startswith(INT8_COMPUTE['hybrid']) and calibrated.note['tflite_int8'].startswith(INT8_COMPUTE['float'])
    assert d1 < d0 and d2 < d0 and d2 <= EXPORT_TOLERANCE['tflite_int8'], (d0, d1, d2)



@slow
def test_resnet50_exports_within_tolerance(tmp_path):
    "ResNet50 demo run: every format within its tolerance (1e-4 float, 0.02 int8) on six test videos"
    from deepfake_nb.export import EXPORT_TOLERANCE
    done = _export_and_check(train_demo_run('resnet50'), tmp_path/'export', per_label=3)
    for fmt in done.index: assert done.max_abs_diff[fmt] <= EXPORT_TOLERANCE[fmt], (fmt, done.max_abs_diff[fmt])
