"Generalisation studies: grouped k-fold never splits an identity, and self-blended fakes share the demo generator's blending function."
import numpy as np, pandas as pd, pytest
from hypothesis import given, settings, strategies as st
from deepfake_nb import data, studies
from deepfake_nb.core import DeepfakeNBError


@settings(max_examples=60, deadline=None)
@given(n_groups=st.integers(2, 30), k=st.integers(2, 8), seed=st.integers(0, 10_000), data_=st.data())
def test_grouped_kfold_keeps_identities_whole(n_groups, k, seed, data_):
    sizes = data_.draw(st.lists(st.integers(1, 6), min_size=n_groups, max_size=n_groups))
    groups = np.repeat([f'id{i}' for i in range(n_groups)], sizes)
    labels = data_.draw(st.lists(st.integers(0, 1), min_size=len(groups), max_size=len(groups)))
    df = pd.DataFrame(dict(video_id=[f'v{i}' for i in range(len(groups))], group=groups, label=labels))
    if k > n_groups:
        with pytest.raises(DeepfakeNBError, match='cv_folds'): studies.grouped_kfold(df, k, seed)
        return
    fold = studies.grouped_kfold(df, k, seed)
    assert len(fold) == len(df) and fold.between(0, k-1).all()                 # every video in exactly one fold
    assert (df.assign(fold=fold).groupby('group').fold.nunique() == 1).all()   # no identity in two folds
    assert fold.nunique() == k                                                 # no empty fold
    assert fold.tolist() == studies.grouped_kfold(df, k, seed).tolist()        # deterministic


def test_self_blend_uses_the_demo_generators_blend(tmp_path, monkeypatch):
    assert studies.blend_face is data.blend_face and studies.blend_params is data.blend_params
    calls = []
    real_blend = data.blend_face
    monkeypatch.setattr(data, 'blend_face', lambda *a, **k: calls.append(1) or real_blend(*a, **k))
    look = data._identity_look(np.random.default_rng(0))
    data.make_demo_video(tmp_path/'f.mp4', look, True, 1, n_frames=4)
    assert len(calls) == 4                                                     # one blend per frame of a demo fake
    data.make_demo_video(tmp_path/'r.mp4', look, False, 1, n_frames=4)
    assert len(calls) == 4                                                     # none for a real clip
