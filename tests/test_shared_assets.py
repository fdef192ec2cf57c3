"Checks against real material in ../shared (skipped, with the reason, where it is absent)."
import json
import numpy as np, pandas as pd, pytest
from conftest import shared_clips

def test_delong_reproduces_proc(shared):
    from deepfake_nb.stats import delong_test
    ref = json.loads((shared/'data'/'stats'/'delong_reference.json').read_text())
    d = pd.read_csv(shared/'data'/'stats'/'aSAH.csv')
    y = (d.outcome == 'Poor').astype(int).to_numpy()
    r = delong_test(y, d.s100b.to_numpy(), d.ndka.to_numpy())
    exp = ref['delong_paired_two_sided']['s100b_vs_ndka']
    assert abs(r.auc_a - ref['auc']['s100b']) < 1e-6 and abs(r.auc_b - ref['auc']['ndka']) < 1e-6
    assert abs(r.z - exp['Z']) < 1e-6 and abs(r.p_value - exp['p']) < 1e-6
    assert np.allclose(r.ci_diff, exp['ci95_diff'], atol=1e-6)

def test_preprocessing_finds_faces_in_real_clips(shared):
    from deepfake_nb.preprocess import preprocess_video
    clips = shared_clips(shared)
    assert len(clips) >= 10
    rates = {}
    for p in clips:
        rec = preprocess_video(p, frames=12)
        assert rec['faces'].shape == (12, 160, 160, 3) and rec['faces'].dtype == np.uint8
        assert rec['indices'][0] == 0 and rec['indices'][-1] >= rec['n_frames'] - 2   # sampled over the whole video
        rates[p.name] = rec['found'].mean()
    assert all(r > 0 for r in rates.values()), rates
    assert np.mean(list(rates.values())) >= 0.85, rates

def test_packaged_yunet_is_opencv_zoos_file():
    "The YuNet model the package ships (the default detector's) is OpenCV Zoo's face_detection_yunet_2023mar.onnx, byte for byte, with its licence beside it"
    import hashlib
    from deepfake_nb.preprocess import packaged_yunet, YUNET_SHA256
    p = packaged_yunet()
    assert hashlib.sha256(p.read_bytes()).hexdigest() == YUNET_SHA256 == '8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4'
    assert 'Apache License' in (p.parent/'LICENSE.yunet').read_text() and YUNET_SHA256 in (p.parent/'README.md').read_text()

def test_packaged_yunet_matches_shared_copy(shared):
    from deepfake_nb.preprocess import packaged_yunet
    assert packaged_yunet().read_bytes() == (shared/'weights'/'yunet'/'yunet_s_640_640.onnx').read_bytes()

def test_aligned_crops_of_real_clips_have_level_eyes(shared):
    "Landmarks measured anew on the aligned crops of every real clip: the eye line is level, and the cached landmarks are where the predictor finds them"
    from deepfake_nb.preprocess import preprocess_video, get_detector, landmarks_68, eye_angle
    clips = shared_clips(shared)
    before, after, moved = [], [], []
    for p in clips:
        plain, rec = preprocess_video(p, frames=4), preprocess_video(p, frames=4, align=True)
        assert rec['landmarks'].shape == (4, 68, 2) and rec['landmarks'].dtype == np.float32
        for crop, lm, lm0, found in zip(rec['faces'], rec['landmarks'], plain['landmarks'], rec['found']):
            boxes = get_detector()(crop)
            if not found or not boxes: continue
            again = landmarks_68(crop, boxes[0], 'yunet')
            before.append(abs(eye_angle(lm0))); after.append(abs(eye_angle(again)))
            moved.append(np.linalg.norm(again - lm, axis=1).mean())
    print(f'{len(after)} faces: |eye angle| median {np.median(before):.1f} -> {np.median(after):.1f} degrees (max {max(before):.1f} -> {max(after):.1f}); '
          f'cached vs re-measured landmarks {np.median(moved):.1f} px median')
    assert len(after) >= 0.8*4*len(clips)
    assert np.median(after) < 1.5 and np.percentile(after, 90) < 3, sorted(after)
    assert np.median(moved) < 3, sorted(moved)
