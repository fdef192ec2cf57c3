"Checks against real material in ../shared (skipped, with the reason, where it is absent)."
import json
import numpy as np, pandas as pd, pytest

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
    clips = sorted((shared/'data'/'videos').rglob('*.mp4'))
    assert len(clips) >= 10
    rates = {}
    for p in clips:
        rec = preprocess_video(p, frames=12)
        assert rec['faces'].shape == (12, 160, 160, 3) and rec['faces'].dtype == np.uint8
        assert rec['indices'][0] == 0 and rec['indices'][-1] >= rec['n_frames'] - 2   # sampled over the whole video
        rates[p.name] = rec['found'].mean()
    assert all(r > 0 for r in rates.values()), rates
    assert np.mean(list(rates.values())) >= 0.85, rates
