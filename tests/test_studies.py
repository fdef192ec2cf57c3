"Generalisation studies: grouped k-fold never splits an identity, self-blended training fakes are the published SBI, the cv headline."
import numpy as np, pandas as pd, pytest
from pathlib import Path
from hypothesis import given, settings, strategies as st
from deepfake_nb import data, demo, studies
from deepfake_nb.core import DeepfakeNBError


@settings(max_examples=60, deadline=None)
@given(n_groups=st.integers(2, 30), k=st.integers(2, 8), seed=st.integers(0, 10_000), data_=st.data())
def test_grouped_kfold_keeps_identities_whole(n_groups, k, seed, data_):
    sizes = data_.draw(st.lists(st.integers(1, 6), min_size=n_groups, max_size=n_groups))
    groups = np.repeat([f'id{i}' for i in range(n_groups)], sizes)
    labels = data_.draw(st.lists(st.integers(0, 1), min_size=len(groups), max_size=len(groups)))
    df = pd.DataFrame(dict(video_id=[f'v{i}' for i in range(len(groups))], group=groups, label=labels))
    if k > n_groups:
        with pytest.raises(DeepfakeNBError, match='cv_folds'): data.grouped_kfold(df, k, seed)
        return
    fold = data.grouped_kfold(df, k, seed)
    assert len(fold) == len(df) and fold.between(0, k-1).all()                 # every video in exactly one fold
    assert (df.assign(fold=fold).groupby('group').fold.nunique() == 1).all()   # no identity in two folds
    assert fold.nunique() == k                                                 # no empty fold
    assert fold.tolist() == data.grouped_kfold(df, k, seed).tolist()        # deterministic


def test_training_fakes_are_the_published_sbi_not_the_demo_blend(tmp_path, monkeypatch):
    "`--fakes sbi` and the self_blend study blend with deepfake_nb.sbi (landmark masks, SBI pairs), never the demo generator's blend_face"
    from deepfake_nb import examples, sbi, preprocess
    calls, real = [], sbi.self_blend_video
    monkeypatch.setattr(sbi, 'self_blend_video', lambda *a, **k: calls.append(k.get('seed')) or real(*a, **k))
    root = demo.make_demo_dataset(tmp_path/'demo', n_identities=1, videos_per_class=1, n_frames=8)   # (its fakes: the demo blend)
    monkeypatch.setattr(demo, 'blend_face', lambda *a, **k: pytest.fail('the demo blend made a training fake'))
    rec = preprocess.preprocess_video(root/'real'/'id0_0000.mp4', frames=3, size=96)
    np.savez(tmp_path/'v.npz', faces=rec['faces'], landmarks=rec['landmarks'])
    pair = examples.load_sbi_pair(tmp_path/'v.npz', 7, 1)
    assert pair.shape == (2, 3, 96, 96, 3) and pair.dtype == np.uint8 and calls == [[7, 1]]
    assert np.abs(pair[1].astype(int) - pair[0]).mean() > 0.5                           # the self-blend differs from its target
    np.testing.assert_array_equal(examples.load_sbi_pair(tmp_path/'v.npz', 7, 1), pair)       # one draw per (video, draw): frozen copies are stable
    assert not np.array_equal(examples.load_sbi_pair(tmp_path/'v.npz', 7, 2)[1], pair[1])  # a new draw (fine-tuning: every epoch) blends anew
    np.savez(tmp_path/'old.npz', faces=rec['faces'])                                    # a cache entry made before landmarks were cached
    with pytest.raises(DeepfakeNBError, match='re-run preprocessing'): examples.load_sbi_pair(tmp_path/'old.npz', 7, 1)


def _cv_fixture(monkeypatch, tmp_path, n=48):
    "cv_study on made-up runs (no backbone, no training): one run per fold whose scores sit on the fold's own scale, as different fold models' can"
    from deepfake_nb.core import save_json
    rng = np.random.default_rng(0)
    df = pd.DataFrame(dict(video_id=[f'v{i}' for i in range(n)], path='', label=np.tile([0, 1], n//2), identity=[f'id{i % 12}' for i in range(n)],
                           group=[f'id{i % 12}' for i in range(n)], method=np.where(np.tile([0, 1], n//2) == 1, 'Deepfakes', 'real'), split='train'))
    df.to_csv(tmp_path/'m.csv', index=False)
    asked = []
    def run(settings, force=False, **over):
        k, f = over['cv_folds'], over['cv_fold']; asked.append(dict(settings, **over))
        d = tmp_path/f'run{f}'; d.mkdir(exist_ok=True)
        sp = data.cv_split(df, k, f)
        prob = (1/(1 + np.exp(-(df.label*1.5 + rng.normal(0, 1, n)))) + f)/k      # fold f's scores in [f/k, (f+1)/k]
        df.assign(split=sp, prob=prob)[['video_id', 'split', 'label', 'prob']].to_csv(d/'predictions.csv', index=False)
        save_json(dict(manifest=str(tmp_path/'m.csv'), threshold=0.5, n_videos={s: int((sp == s).sum()) for s in ('train', 'val', 'test')},
                       seconds=dict(total=1.0)), d/'params.json')
        return d
    monkeypatch.setattr(studies, 'study_run', run)
    return df, asked


def test_cv_headline_is_the_mean_of_the_per_fold_aucs(monkeypatch, tmp_path):
    df, asked = _cv_fixture(monkeypatch, tmp_path)
    t, preds, s = studies.cv_study('x', 4, dict(head='linear'), n_boot=200)
    assert [(a['head'], a['dataset'], a['cv_folds'], a['cv_fold']) for a in asked] == [('linear', 'x', 4, f) for f in range(4)]   # one run per fold
    assert sorted(preds.video_id) == sorted(df.video_id)                        # every video tested once
    assert s['headline'] == 'fold_auc_mean' and s['headline_label'] == 'mean of per-fold AUCs'
    assert s[s['headline']] == pytest.approx(t.auc.mean()) and s['fold_auc_sd'] == pytest.approx(t.auc.std(ddof=1))
    assert (s['fold_auc_min'], s['fold_auc_max']) == (t.auc.min(), t.auc.max()) and s['n_folds_with_auc'] == 4
    # the pooled AUC ranks four models' scores together: kept, labelled, secondary (here far below every fold's AUC)
    assert s['pooled_auc'] < s['fold_auc_min'] and s['pooled_label'] == "pooled over 4 fold models: mixes different models' scores"
    assert s['pooled_auc_lo'] <= s['pooled_auc'] <= s['pooled_auc_hi'] and 'auc' not in s
    assert s['method_auc']['Deepfakes'] == pytest.approx(t.auc.mean())          # one method: its AUC is each fold's
    line = studies.cv_text(s)
    assert line.startswith(f"mean of per-fold AUCs {t.auc.mean():.3f} (sd ") and line.index('pooled over 4 fold models') > line.index('min-max')
    md = studies.cv_markdown(t, dict(cv=s))
    assert md.startswith('### Grouped 4-fold cross-validation') and f'**Mean of per-fold AUCs: {t.auc.mean():.3f}**' in md


def test_a_cv_fold_is_a_run_scaled_by_its_own_training_videos(tmp_path):
    "train_run with cv_folds/cv_fold: fold cv_fold is the test split, the features are divided by the RMS of that fold's training videos only"
    from deepfake_nb.core import home_at, load_json
    from deepfake_nb.train import train_run
    from deepfake_nb.models import feature_scale
    with home_at(tmp_path):
        root = demo.make_demo_dataset(tmp_path/'raw', n_identities=6, videos_per_class=2, n_frames=8)
        mpath = data.build_manifest('demo', root, name='tiny')
        kw = dict(dataset='tiny', frames=2, size=32, weights='random-highpass', head='linear', cv_folds=3)
        rdirs = [train_run(cv_fold=f, **kw) for f in range(3)]
        df = data.load_manifest(mpath)
        tested = []
        for f, rd in enumerate(rdirs):
            assert rd.parent.name == 'cv3-s0'                                   # beside the dataset's runs, not among them
            pr = pd.read_csv(rd/'predictions.csv', dtype={'video_id': str}).set_index('video_id')
            want = data.cv_split(df, 3, f).set_axis(df.video_id)
            assert (pr.split == want.reindex(pr.index)).all()
            p = load_json(rd/'params.json'); info = load_json(Path(p['features']).with_suffix('.json'))
            train_ids = pr.index[pr.split == 'train'].tolist()
            assert p['feature_scale'] == pytest.approx(feature_scale(dict(info, path=p['features']), train_ids))
            tested += pr.index[pr.split == 'test'].tolist()
        assert sorted(tested) == sorted(df.video_id)                            # every video tested once over the folds


def test_run_studies_saves_and_prints_the_cv_headline(monkeypatch, tmp_path, capsys):
    from deepfake_nb.core import home_at
    _cv_fixture(monkeypatch, tmp_path)
    with home_at(tmp_path):
        studies.run_studies('x', 'cv', cv_folds=4, head='linear', frames=8)
        t, info = studies.load_study('x', 'cv')
    assert 'pooled' not in info and info['cv']['fold_auc_mean'] == pytest.approx(t.auc.mean())
    assert info['settings']['run_settings']['head'] == 'linear' and 'head=linear, frames=8' in info['settings']['run_settings_text']
    assert 'mean of per-fold AUCs' in capsys.readouterr().out
    assert studies.cv_of(info, t) == info['cv']
    old = dict(pooled=dict(auc=0.7, auc_lo=0.6, auc_hi=0.8, n=48, n_groups=12, folds=4, fold_auc_mean=0.9, fold_auc_sd=0.1, bootstrap='b'))
    assert studies.cv_of(old, t)['fold_auc_mean'] == pytest.approx(t.auc.mean()) and studies.cv_of(old, t)['pooled_auc'] == 0.7   # older study.json
    with pytest.raises(DeepfakeNBError, match='unknown setting'): studies.run_studies('x', 'cv', cv_fold=2)
    with pytest.raises(DeepfakeNBError, match='unknown head'): studies.run_studies('x', 'cv', head='tree')


def test_study_dataset_named_as_its_own_eval_set(monkeypatch, capsys):
    "`deepfake-nb study --dataset D --studies self_blend --eval-datasets D ...`: D's test split is the in-domain row, not a second (duplicate) eval set"
    from pathlib import Path
    seen = {}
    monkeypatch.setattr(studies, 'eval_manifests', lambda names: seen.setdefault('names', list(names)))
    def fake_study(dataset, evals, settings=None):
        seen['evals'] = list(evals)
        t = pd.DataFrame(dict(training=['real fakes']*2, features=['final']*2, eval_dataset=[dataset, 'demo_b'], auc=[.6, .7], auc_lo=[.5]*2, auc_hi=[.8]*2))
        return t, pd.DataFrame(dict(video_id=['v'], label=[0], prob=[.5]))
    monkeypatch.setattr(studies, 'self_blend_study', fake_study)
    monkeypatch.setattr(studies, 'save_study', lambda *a, **k: Path('unused'))
    studies.run_studies(dataset='mine', studies='self_blend', eval_datasets='mine demo_b')
    assert seen['names'] == ['demo_b'] and seen['evals'] == ['demo_b'] and 'studied dataset' in capsys.readouterr().out


def test_sbi_cache_grows_and_never_extracts_a_video_twice(tmp_path, monkeypatch):
    "Asking the SBI feature cache for other videos (a run's train reals, then its val reals) adds them; the cached ones are kept, not extracted again"
    from deepfake_nb import examples
    seen = []
    monkeypatch.setattr(examples, 'backbone_for_features', lambda *a, **k: (None, '', ''))
    monkeypatch.setattr(examples, 'load_sbi_pair', lambda f, seed, copy: np.stack([np.full((2, 4, 4, 3), seed % 97, np.uint8), np.full((2, 4, 4, 3), seed % 89, np.uint8)]))
    def extract(faces, backbone, model, batch_size=64):
        seen.append(len(faces)); return faces.reshape(*faces.shape[:2], -1)[..., :3].astype(np.float32) + 1
    monkeypatch.setattr(examples, 'extract_features', extract)
    kw = dict(dataset='demo', prep_key='k', clean_info=dict(clean_path=str(tmp_path/'mobilenetv2-imagenet.npy'), storage_scale=2.0))
    t1, b1, _ = examples.sbi_features(video_ids=['a', 'b'], **kw)
    t2, b2, info = examples.sbi_features(video_ids=['c', 'a'], **kw)
    assert seen == [4, 2] and info['video_ids'] == ['a', 'b', 'c'] and info['shape'][0] == 3    # a, b (target and blend each), then c alone
    np.testing.assert_array_equal(t2[1], t1[0]); np.testing.assert_array_equal(b2[1], b1[0])    # a as it was cached
    X, y, infos = examples.sbi_pairs(['b', 'c'], [1], **kw)
    assert seen == [4, 2] and y.tolist() == [0, 0, 1, 1] and len(infos) == 1                   # all cached: nothing extracted
    np.testing.assert_array_equal(X[0], t1[1]); np.testing.assert_array_equal(X[3], b2[0])
