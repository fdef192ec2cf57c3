"Prediction on real clips, error rows and true labels, the fine-tuned model format, and heads explained and converted (tests for `06_predict`; the exports are in test_export.py)."
from pathlib import Path
import numpy as np, pandas as pd, pytest
from conftest import shared_clips

T_TOL = 1e-3   # scoring from the file vs training's predictions.csv: training features went through the float16 cache


def test_demo_run_never_trains(tmp_path):
    "With no demo run, `demo_run` trains nothing: its error names the command that makes one"
    from deepfake_nb.core import DeepfakeNBError, home_at, reports_dir
    from deepfake_nb.predict import demo_run
    with home_at(tmp_path):
        with pytest.raises(DeepfakeNBError, match='make one with deepfake-nb train --dataset demo --backbone resnet50'):
            demo_run('resnet50')
        assert not reports_dir('runs').exists() and not (tmp_path/'data').exists()


def test_demo_run_finds_the_trained_run_and_no_synthetic_one(demo_run_dir, tmp_path):
    "`demo_run` returns the complete demo run training wrote; a synthetic run (made-up scores) is never it"
    import shutil
    from deepfake_nb.core import DeepfakeNBError, home_at, reports_dir, save_json, load_json
    from deepfake_nb.predict import demo_run
    assert demo_run('mobilenetv2') == demo_run_dir
    with home_at(tmp_path):
        fake = reports_dir('runs', 'demo', demo_run_dir.name)
        shutil.copytree(demo_run_dir, fake)
        save_json(dict(load_json(fake/'complete.json'), synthetic=True), fake/'complete.json')
        with pytest.raises(DeepfakeNBError, match='no complete frozen demo run of mobilenetv2'): demo_run('mobilenetv2')


def _test_videos(rdir, per_label=1):
    "A few test-split videos of a run, with their paths and the probabilities training wrote"
    from deepfake_nb.core import load_json
    params = load_json(Path(rdir)/'params.json')
    man = pd.read_csv(params['manifest'], dtype={'video_id': str}, keep_default_na=False)
    preds = pd.read_csv(Path(rdir)/'predictions.csv', dtype={'video_id': str})
    te = preds[preds.split == 'test'].groupby('label').head(per_label)
    return te.merge(man[['video_id', 'path']], on='video_id')


def test_scoring_reproduces_training(demo_run_dir):
    "Every complete demo run (up to 4): a test video scored from its file gets the probability training wrote"
    from deepfake_nb.core import reports_dir, load_json
    from deepfake_nb.predict import load_predictor
    runs = [demo_run_dir] + [d for d in sorted(reports_dir('runs', 'demo').glob('*'))
                             if (d/'complete.json').exists() and d.resolve() != Path(demo_run_dir).resolve()][:3]
    for rdir in runs:
        pred = load_predictor(rdir)
        for r in _test_videos(rdir).itertuples():
            got = pred.score(pred.preprocess(r.path)['faces'])
            print(f'{pred.run_id} {r.video_id}: training {r.prob:.5f}, from the file {got:.5f}, |diff| {abs(got - r.prob):.1e}')
            assert abs(got - r.prob) < T_TOL, (pred.run_id, r.video_id, r.prob, got)


def test_shared_clips_and_a_corrupt_file(demo_run_dir, shared, tmp_path):
    "The real and fake FF++/DFDC clips are scored, a truncated copy gets an error row, the CSVs and the GIFs are written"
    from deepfake_nb.predict import predict_videos, load_predictor
    clips = shared_clips(shared)
    assert any('/real/' in str(c) for c in clips) and any('/fake/' in str(c) for c in clips)
    src = shared/'data'/'videos'/'ffpp_c23'/'real'/'004.mp4'
    bad = tmp_path/'truncated_004.mp4'
    bad.write_bytes(src.read_bytes()[:src.stat().st_size//2])
    lst = tmp_path/'videos.txt'
    lst.write_text('\n'.join(map(str, clips + [bad])) + '\n')
    out = tmp_path/'out'/'predictions.csv'
    res = predict_videos(lst, demo_run_dir, out, per_frame=True, progress=False)
    v = pd.read_csv(out, dtype={'error': str, 'note': str}); v[['error', 'note']] = v[['error', 'note']].fillna('')
    print(v[['name', 'verdict', 'label', 'label_source', 'prob', 'threshold', 'faces_found', 'seconds', 'error']].to_string())
    assert len(v) == len(clips) + 1
    good, worst = v[v.path != str(bad)], v[v.path == str(bad)].iloc[0]
    assert (good.error == '').all() and (good.note == '').all(), good[['error', 'note']].values.tolist()
    assert good.prob.between(0, 1).all() and set(good.verdict) <= {'FAKE', 'REAL'}
    assert (good.verdict == np.where(good.prob >= good.threshold, 'FAKE', 'REAL')).all()
    # the true label, from the clips' real/ and fake/ folders, in its own column; unknown elsewhere (real_clips/) and for the truncated copy
    folder = good.path.map(lambda p: Path(p).parent.name); lab = good[folder.isin(['real', 'fake'])]
    assert len(lab) >= 4 and (lab.label == np.where(folder[lab.index] == 'fake', 1, 0)).all() and (lab.label_source == 'folder').all()
    assert good[~folder.isin(['real', 'fake'])].label.isna().all()
    assert pd.isna(worst.label) and pd.isna(worst.label_source)
    assert np.allclose(good.threshold, load_predictor(demo_run_dir).threshold)
    assert (good.faces_found > 0).all() and (good.frames == load_predictor(demo_run_dir).frames).all()
    assert worst.error and 'truncated_004.mp4' in worst.error and np.isnan(worst.prob)
    fr = pd.read_csv(out.with_name('predictions_frames.csv'))
    assert len(fr) == len(good)*load_predictor(demo_run_dir).frames
    assert {'running_prob', 'occlusion', 'face_found', 'frame'} <= set(fr.columns)
    # annotated GIFs and Grad-CAM images for a real and a fake clip
    pair = [shared/'data'/'videos'/'ffpp_c23'/'real'/'004.mp4', shared/'data'/'videos'/'ffpp_c23'/'fake'/'Deepfakes_519_515.mp4']
    res2 = predict_videos(pair, demo_run_dir, annotate_dir=tmp_path/'gifs', gradcam_dir=tmp_path/'cams', progress=False)
    from PIL import Image
    assert (res2.videos.note == '').all(), res2.videos.note.tolist()
    for r in res2.videos.itertuples():
        assert Image.open(r.gif).n_frames == load_predictor(demo_run_dir).frames
        assert Image.open(r.gradcam).size[0] > 300
    assert np.allclose(res2.videos.prob, res.videos.set_index('path').loc[[str(p) for p in pair], 'prob'], atol=1e-5)


def test_finetune_format_scores_like_frozen(demo_run_dir, tmp_path):
    "A run whose model.keras is the whole model (finetune: TimeDistributed(preprocess + backbone + scale) + head) scores as its frozen twin"
    import deepfake_nb.models as M
    from deepfake_nb.core import load_json, save_json
    from deepfake_nb.predict import Predictor, gradcam_maps, pipeline_cam_layer
    frozen = Predictor(demo_run_dir)
    p = load_json(Path(demo_run_dir)/'params.json')
    whole = M.build_finetune_model(p['backbone'], frozen.backbone, frozen.head, frozen.frames, frozen.size, frozen.scale, trainable_layers=0)
    ft = tmp_path/'ft-run'; ft.mkdir()
    whole.save(str(ft/'model.keras'))
    save_json(dict(p, mode='finetune'), ft/'params.json')
    pred = Predictor(ft)
    assert pred.backbone is None and pred.raw_input
    for r in _test_videos(demo_run_dir).itertuples():
        faces = frozen.preprocess(r.path)['faces']
        assert abs(pred.score(faces) - frozen.score(faces)) < 1e-4
        cams, prob = gradcam_maps(pred, faces)
        assert cams.shape == faces.shape[:3] and abs(prob - frozen.score(faces)) < 1e-4
    assert pipeline_cam_layer(pred).name == pipeline_cam_layer(frozen).name


@pytest.mark.parametrize('head', ['attention', 'image', 'bilstm'])
def test_heads_explain_and_export(demo_run_dir, tmp_path, head):
    "Heads other than the LSTM: per-frame outputs (attention weights, frame probabilities, prefix scores), Grad-CAM through them, TFLite float32 and int8 conversion"
    import keras
    from deepfake_nb.core import load_json, save_json
    from deepfake_nb.models import build_head
    from deepfake_nb.predict import Predictor, frame_scores, gradcam_maps, unrolled
    from deepfake_nb.export import export_model, check_exports, EXPORT_TOLERANCE
    base = Predictor(demo_run_dir)
    faces = base.preprocess(_test_videos(demo_run_dir).path.iloc[0])['faces']
    F = base.features(faces)
    rd = tmp_path/'run'; rd.mkdir()
    save_json(dict(load_json(Path(demo_run_dir)/'params.json'), head=head), rd/'params.json')
    build_head(head, base.frames, F.shape[1], units=16, norm_data=F[None]).save(str(rd/'model.keras'))
    pred = Predictor(rd)
    fs = frame_scores(pred, F)
    extra = {'attention': 'attention', 'image': 'frame_prob', 'bilstm': 'running_prob'}[head]
    assert fs[extra].notna().all() and fs.occlusion.abs().max() > 0
    if head == 'attention': assert abs(fs.attention.sum() - 1) < 1e-4 and fs.running_prob.isna().all()   # fixed positions: no prefix score
    if head == 'image': assert abs(fs.frame_prob.mean() - pred.score_features(F)[0]) < 1e-5               # the video = mean of its frames
    cams, prob = gradcam_maps(pred, faces)
    assert cams.shape == faces.shape[:3] and abs(prob - pred.score(faces)) < 1e-4
    inp = keras.Input((pred.frames, F.shape[1]), batch_size=1)
    model = keras.Model(inp, unrolled(pred.head)(inp))
    ex = export_model(model, tmp_path/'export', ('tflite', 'tflite_int8'))          # int8: each head's weights through DEQUANTIZE ops
    chk = check_exports(model, ex, [F[None]], repeats=1).set_index('format')
    assert chk.max_abs_diff['tflite'] <= 1e-4 and chk.max_abs_diff['tflite_int8'] <= EXPORT_TOLERANCE['tflite_int8'], chk


def test_loading_a_run_lives_in_predictor_and_predict_reexports_it():
    "`predictor` loads runs; `from deepfake_nb.predict import ...` (and `*`) still gives its names, the same objects"
    import deepfake_nb.predict as P, deepfake_nb.predictor as R
    for n in ('find_run', 'demo_run', 'preprocess_kwargs', 'load_run_backbone', 'Predictor', 'load_predictor'):
        assert n in P.__all__ and getattr(P, n) is getattr(R, n), n
    assert P.require_keras is R.require_keras and P.nested_model is R.nested_model


def test_predict_video_scores_faces_read_ahead(tmp_path):
    "Faces read ahead are scored as they are, never read again; the row's seconds count their reading, not the wait"
    import types
    from concurrent.futures import Future
    from deepfake_nb.predict import predict_video
    def read_again(path): raise AssertionError('read again')
    stub = types.SimpleNamespace(threshold=0.5, prep=dict(detector='yunet'), preprocess=read_again,
                                 features=lambda faces: np.zeros((2, 4)), score_features=lambda F: np.array([0.75]))
    (tmp_path/'v.mp4').write_bytes(b'x')
    ahead = Future()
    ahead.set_result((dict(found=np.array([True, False]), n_frames=9, faces=np.zeros((2, 8, 8, 3), np.uint8)), 2.0))
    row = predict_video(stub, tmp_path/'v.mp4', faces=ahead)['row']
    assert (row['verdict'], row['prob'], row['frames'], row['faces_found'], row['n_frames']) == ('FAKE', 0.75, 2, 1, 9)
    assert row['error'] == row['note'] == '' and 2.0 <= row['seconds'] < 3
    missing = predict_video(stub, tmp_path/'missing.mp4', faces=ahead)['row']
    assert 'does not exist' in missing['error'] and missing['verdict'] == '' and np.isnan(missing['prob'])


def test_degradation_study_scores_the_same_a_chunk_at_a_time(demo_run_dir):
    "The degradation study reads, degrades and scores the test faces in chunks: chunks of 5 give the table of one chunk"
    from deepfake_nb.studies import degradation_study
    spec = 'jpeg:50 h264:35 noise:10'
    (t5, p5), (t1, p1) = [degradation_study([demo_run_dir], spec, chunk=c) for c in (5, 1000)]
    assert len(p1) == 4 * (p1.degradation == 'none').sum() and (p1.degradation == 'none').sum() > 5
    pd.testing.assert_frame_equal(t5, t1)
    pd.testing.assert_frame_equal(p5, p1)
