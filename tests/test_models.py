"""Every backbone builds; every head and the light backbones train one epoch on demo data and write their run directory.
The heavy backbones, the fine-tuning of an ImageNet-style backbone and a papermill run with a preset are slow: set DEEPFAKE_NB_SLOW=1."""
import os, json, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest
from conftest import REPO

slow = pytest.mark.skipif(not os.environ.get('DEEPFAKE_NB_SLOW'), reason='slow (minutes on 2 cores): set DEEPFAKE_NB_SLOW=1 to run')
RUN_FILES = ('params.json', 'predictions.csv', 'metrics.json', 'history.csv', 'model.keras', 'env.json', 'complete.json')

def _small_size(name):
    from deepfake_nb.models import get_backbone
    return max(32, get_backbone(name).min_size)

@pytest.fixture(scope='module')
def tiny(suite_home):
    "A 12-video demo dataset (3 identities) named 'tiny' in the session's home; settings of a 1-epoch run on it"
    from deepfake_nb.data import build_manifest, make_demo_dataset
    build_manifest('demo', root=make_demo_dataset(suite_home/'raw_tiny', n_identities=3, videos_per_class=2), name='tiny',
                   test_frac=0.34, val_frac=0.33)
    return dict(dataset='tiny', frames=2, epochs=1, batch_size=4, weights=None)

def _check_run(rdir, **expect):
    from deepfake_nb.core import load_json
    for f in RUN_FILES: assert (rdir/f).exists(), f'{rdir} lacks {f}'
    info, metrics = load_json(rdir/'params.json'), load_json(rdir/'metrics.json')
    for k, v in expect.items(): assert info[k] == v, (k, info[k], v)
    assert info['epochs_run'] >= 1 and {'test', 'test_val_threshold', 'val', 'threshold'} <= set(metrics)
    preds = pd.read_csv(rdir/'predictions.csv')
    assert list(preds.columns) == ['video_id', 'split', 'label', 'prob'] and len(preds) == 12 and preds.prob.between(0, 1).all()
    return info

BLOCK_SIZE = dict(xception=96, inceptionv3=139)           # sizes whose maps still halve cleanly at each stride (64 for the others)

@pytest.fixture(scope='module')
def built():
    "Each registered backbone built once (random init, at its `BLOCK_SIZE`), shared by the tests that loop over the registry: {name: (model, size)}"
    from deepfake_nb.models import BACKBONES, build_backbone
    out = {}
    for name in BACKBONES:
        s = BLOCK_SIZE.get(name, 64)
        m, used, key = build_backbone(name, None, s)
        assert key == 'random-s0', (name, key)
        out[name] = (m, s)
    return out

def test_every_backbone_builds(built):
    "Each registered backbone builds at a small size with its registered feature size; the ones written here (and KerasHub's ViT) also run"
    from deepfake_nb.models import BACKBONES
    for name, bb in BACKBONES.items():
        m, s = built[name]
        assert m.output_shape == (None, bb.dim), (name, m.output_shape)
        if bb.source != 'keras.applications':
            x = bb.preprocess(np.random.default_rng(0).integers(0, 255, (2, s, s, 3)))
            f = np.asarray(m(x, training=False))
            assert f.shape == (2, bb.dim) and np.isfinite(f).all()


BLOCK_DIMS = dict(mobilenetv2=[192, 576, 1280], resnet50=[512, 1024, 2048], xception=[256, 728, 2048], efficientnetb0=[240, 672, 1280],
                  efficientnetb4=[336, 960, 1792], efficientnetv2b0=[192, 672, 1280], inceptionv3=[288, 768, 2048], densenet121=[256, 512, 1024],
                  convnext_tiny=[192, 384, 768], mobilenetv3large=[240, 672, 960], resnet18=[128, 256, 512], resnext50=[512, 1024, 2048], meso4=[16, 16])
BLOCK_NAMES = dict(mobilenetv2=['block_6_expand_relu', 'block_13_expand_relu'], resnet50=['conv3_block4_out', 'conv4_block6_out'],
                   inceptionv3=['mixed2', 'mixed7'], densenet121=['pool3_conv', 'pool4_conv'], resnet18=['layer2_1_out', 'layer3_1_out'],
                   resnext50=['layer2_3_out', 'layer3_5_out'], meso4=['bn4'], **{b: ['block4a_expand_activation', 'block6a_expand_activation']
                   for b in ('efficientnetb0', 'efficientnetb4', 'efficientnetv2b0')})

def test_every_backbone_gives_blocks_at_strides_8_and_16(built):
    "feature_layers='blocks': every convolutional backbone's chosen outputs have spatial strides 8 and 16 (Meso-4: 8 only) and add dimensions to its final features"
    import math
    from deepfake_nb.core import DeepfakeNBError
    from deepfake_nb.models import BACKBONES, block_layer_names, feature_model
    assert set(BLOCK_DIMS) == set(BACKBONES) - {'vit_b16'}          # ViT-B/16 keeps 16-pixel patches in every layer: no blocks, a clear error
    with pytest.raises(DeepfakeNBError, match='no convolutional blocks'): feature_model('vit_b16', built['vit_b16'][0], 'blocks')
    for name, bb in BACKBONES.items():
        if name == 'vit_b16': continue
        m, s = built[name]
        names = block_layer_names(m)
        if name in BLOCK_NAMES: assert names == BLOCK_NAMES[name], (name, names)
        ops = {o.name: o for o in m.operations}
        measured = [2**round(math.log2(s/ops[n].output.shape[1])) for n in names]
        assert measured == ([8] if name == 'meso4' else [8, 16]), (name, names, measured)
        fm = feature_model(name, m, 'blocks', block_scales=[1.0]*(len(names) + 1))    # unit scales: no calibration pass here (the notebook tests it)
        assert fm.feature_blocks['block_dims'] == BLOCK_DIMS[name] and fm.feature_blocks['block_layers'][:-1] == names, name
        assert fm.output_shape == (None, sum(BLOCK_DIMS[name])) and sum(BLOCK_DIMS[name]) > bb.dim == BLOCK_DIMS[name][-1]
        f = np.asarray(fm(bb.preprocess(np.random.default_rng(0).integers(0, 255, (1, s, s, 3))), training=False))
        assert f.shape == (1, sum(BLOCK_DIMS[name])) and np.isfinite(f).all(), name


def test_every_backbone_feeds_the_map_heads(built):
    "feature_layers='maps': every backbone (ViT: its patch grid) gives its last feature map, whose mean is its pooled features where it pools by averaging, and each map head reads it"
    from deepfake_nb.models import BACKBONES, MAP_HEADS, feature_model, build_head
    for name, bb in BACKBONES.items():
        m, s = built[name]
        mm = feature_model(name, m, 'maps')
        x = bb.preprocess(np.random.default_rng(0).integers(0, 255, (2, s, s, 3)))
        maps = np.asarray(mm(x, training=False))
        assert maps.ndim == 4 and maps.shape[1] >= 1 and np.isfinite(maps).all(), (name, maps.shape)
        if name not in ('meso4', 'vit_b16', 'convnext_tiny'):      # Meso-4 pools by flatten + dense, ViT by its class token, ConvNeXt normalises after pooling
            np.testing.assert_allclose(maps.mean(axis=(1, 2)), np.asarray(m(x, training=False)), rtol=1e-3, atol=1e-5 * np.abs(maps).max(), err_msg=name)
        for h in MAP_HEADS:
            out = np.asarray(build_head(h, 2, maps.shape[1:], units=8)(np.stack([maps, maps], axis=1), training=False))
            assert out.shape == (2, 1) and np.isfinite(out).all(), (name, h)

def test_unknown_names_fail_with_valid_names():
    from deepfake_nb.core import DeepfakeNBError
    from deepfake_nb.train import run_params
    for kw, msg in [(dict(backbone='vgg16'), 'resnext50'), (dict(head='tcn'), 'attention'), (dict(preset='x'), 'seed-image-resnet18'),
                    (dict(mode='x'), 'finetune'), (dict(augment='cutmix'), 'jpeg')]:
        with pytest.raises(DeepfakeNBError, match=msg): run_params(**kw)

@pytest.mark.parametrize('head', ['lstm', 'gru', 'bilstm', 'attention', 'mean', 'image'])
def test_every_head_trains_one_epoch(tiny, head):
    from deepfake_nb.train import train_run
    rdir = train_run(backbone='mobilenetv2', head=head, size=32, **tiny)
    _check_run(rdir, head=head, backbone='mobilenetv2', mode='frozen')

@pytest.mark.parametrize('name', ['resnet18', 'meso4'])
def test_light_backbones_train_one_epoch(tiny, name):
    from deepfake_nb.train import train_run
    _check_run(train_run(backbone=name, size=32, **tiny), backbone=name)

def test_single_image_mode(tiny):
    from deepfake_nb.train import train_run
    info = _check_run(train_run(backbone='mobilenetv2', size=32, **dict(tiny, frames=1)), head='image', frames=1)
    assert info['preset'] is None

def test_class_weight_dict_and_augmentation_recorded(tiny):
    from deepfake_nb.core import load_json
    from deepfake_nb.train import train_run, run_params, run_id
    rdir = train_run(backbone='mobilenetv2', size=32, class_weight={0: 1.15, 1: 1.05}, augment='rotate:5,brightness', aug_passes=1, **tiny)
    info = _check_run(rdir, class_weight={'0': 1.15, '1': 1.05})
    assert info['augment']['rotate'] == 5.0 and info['augment']['brightness'] == 0.1 and len(info['cache_keys']['augmented']) == 1
    settings = json.loads(info['rerun']['papermill'].split(" -y '")[1][:-1])
    assert run_id(run_params(**settings)) == rdir.name == info['run_id']
    # the features' scale is the RMS of the training videos' features (the augmented passes divided by the same number)
    from deepfake_nb.models import feature_scale
    preds = pd.read_csv(rdir/'predictions.csv', dtype={'video_id': str})
    clean = dict(load_json(Path(info['features']).with_suffix('.json')), path=info['features'])
    assert info['feature_scale'] == pytest.approx(feature_scale(clean, preds.video_id[preds.split == 'train']), rel=1e-9)
    assert info['cache_keys']['scale_from'] == 'train' and info['cache_keys']['n_scale_videos'] == info['n_videos']['train']

def test_feature_scale_comes_from_the_training_videos_only(tmp_path):
    "The number a run's features are divided by is the RMS of its training videos' features: darker test faces leave it, darker training faces move it"
    import shutil
    from deepfake_nb.core import home_at
    from deepfake_nb.data import build_manifest, make_demo_dataset, load_manifest
    from deepfake_nb.preprocess import preprocess_manifest, prep_key, face_cache_dir, save_faces, _cache_file
    from deepfake_nb.models import cached_features
    with home_at(tmp_path):
        m = build_manifest('demo', root=make_demo_dataset(tmp_path/'raw', n_identities=3, videos_per_class=2, n_frames=8), test_frac=0.34, val_frac=0.33)
        preprocess_manifest(m, frames=2, size=32, progress=False); pk = prep_key(frames=2, size=32)
        df = load_manifest(m); ids = df.video_id.tolist()
        train, test = [df.video_id[df.split == s].tolist() for s in ('train', 'test')]
        def extracted():
            shutil.rmtree(tmp_path/'data'/'features', ignore_errors=True)           # features extracted again from the faces as they are now
            X, info = cached_features('demo', pk, ids, 'mobilenetv2', None, 32, scale_ids=train)
            assert info['n_scale_videos'] == len(train) and np.sqrt(np.mean(np.asarray(X[df.split == 'train'])**2)) == pytest.approx(1, abs=0.01)
            return info
        def darken(vids):
            for v in vids:
                f = _cache_file(face_cache_dir('demo', pk), v); rec = dict(np.load(f)); rec['faces'] = rec['faces'] // 4; save_faces(f, rec)
        before = extracted()
        darken(test); after_test = extracted()
        assert after_test['storage_scale'] != before['storage_scale']              # the test videos' features did change
        assert after_test['scale'] == pytest.approx(before['scale'], rel=1e-5)     # the run's scale did not
        darken(train); after_train = extracted()
        assert abs(after_train['scale']/before['scale'] - 1) > 0.01

def test_feature_cache_names_come_from_the_models_facade():
    "The feature cache lives in `feature_cache`; the `models` facade gives its names"
    import deepfake_nb.feature_cache as FC
    from deepfake_nb.models import cached_features as from_facade
    assert FC.cached_features is from_facade

@slow
@pytest.mark.parametrize('name', ['resnet50', 'xception', 'efficientnetb0', 'efficientnetb4', 'efficientnetv2b0', 'inceptionv3',
                                  'densenet121', 'convnext_tiny', 'mobilenetv3large', 'resnext50'])
def test_heavy_backbones_train_one_epoch(tiny, name):
    from deepfake_nb.train import train_run
    _check_run(train_run(backbone=name, size=_small_size(name), **tiny), backbone=name)

@slow
def test_finetune_mobilenetv2_partial(tiny):
    "End to end through TimeDistributed(MobileNetV2), last 10 layers trainable, BatchNorm frozen, with on-the-fly augmentation"
    from deepfake_nb.train import train_run
    info = _check_run(train_run(backbone='mobilenetv2', size=32, mode='finetune', finetune_layers=10, augment='flip,jpeg,blur', **tiny),
                      mode='finetune')
    assert info['compute']['replicas'] >= 1

@slow
def test_papermill_preset_with_class_weight_dict(tiny, tmp_path):
    "papermill passes a preset and a dict of class weights into 03_train, and the run records them"
    from deepfake_nb.core import load_json
    out = tmp_path/'out.ipynb'
    r = subprocess.run([sys.executable, '-m', 'papermill', str(REPO/'nbs'/'03_train.ipynb'), str(out), '-k', 'python3',
                        '-p', 'dataset', 'tiny', '-p', 'preset', 'seed-resnet50-lstm-tuned', '-p', 'size', '32', '-p', 'frames', '2',
                        '-p', 'epochs', '1', '-p', 'weights', 'None', '-y', 'class_weight: {0: 2.0, 1: 1.0}', '-y', 'seeds: [0, 1]'],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = sorted(p for p in (Path(os.environ['DEEPFAKE_NB_HOME'])/'reports'/'runs'/'tiny').iterdir() if p.name.startswith('resnet50-lstm'))
    infos = [load_json(p/'params.json') for p in runs]
    infos = [i for i in infos if i['preset'] == 'seed-resnet50-lstm-tuned']
    assert sorted(i['seed'] for i in infos) == [0, 1]
    for i in infos: assert i['class_weight'] == {'0': 2.0, '1': 1.0} and i['lr'] == 5e-6 and i['augment']['flip'] == 0.5

def _test_video(rdir):
    "(faces of a test video read from its file with the run's settings, the P(fake) training wrote for it, the run's Predictor)"
    from deepfake_nb.predict import load_predictor
    pred = load_predictor(rdir)
    man = pd.read_csv(pred.params['manifest'], dtype=str, keep_default_na=False).set_index('video_id')
    row = pd.read_csv(Path(rdir)/'predictions.csv', dtype={'video_id': str}).query("split == 'test'").iloc[0]
    return pred.preprocess(man.path[row.video_id])['faces'], row.prob, pred

def test_vit_frozen_run_scores_explains_and_reports(tiny):
    """ViT-B/16 from KerasHub, frozen class-token features (random init, 64 px): the run trains; a test video scored from its file gets the P(fake)
    training wrote; Grad-CAM reads the patch tokens entering its last block (its efficiency row: the slow test below)"""
    from deepfake_nb.predict import gradcam_maps, pipeline_cam_layer
    from deepfake_nb.train import train_run
    rdir = train_run(backbone='vit_b16', size=64, **dict(tiny, epochs=2))
    info = _check_run(rdir, backbone='vit_b16', feature_layers='final', backbone_params=85_798_656 - (197 - 17)*768)   # 4x4 patches + class token
    faces, prob, pred = _test_video(rdir)
    assert pred.features(faces).shape == (2, 768)
    assert abs(pred.score(faces) - prob) < 2e-3, (pred.score(faces), prob)
    cams, p = gradcam_maps(pred, faces)
    assert pipeline_cam_layer(pred).name == 'transformer_block_11' and cams.shape == faces.shape[:3] and abs(p - prob) < 2e-3
    assert cams.max() == pytest.approx(1.0) and cams.std() > 0                    # the class token's gradient reaches the patches

@slow
def test_vit_exports_reads_maps_and_finetunes(tiny, tmp_path):
    """The frozen ViT run's pipeline in TFLite (a 327 MB file) gives Keras's P(fake); a ConvLSTM head reads its patch-token grid; fine-tuning its
    last transformer block and final norm trains, and its model.keras scores a file as training did"""
    from deepfake_nb.export import export_model, exported_runner
    from deepfake_nb.predict import pipeline_model, pipeline_cam_layer, gradcam_maps
    from deepfake_nb.train import train_run
    rdir = train_run(backbone='vit_b16', size=64, **dict(tiny, epochs=2))
    faces, prob, pred = _test_video(rdir)
    from deepfake_nb.report import load_run_dir, efficiency_table                 # its row of the report's efficiency table (12 s: profiling 86 M parameters)
    info = json.loads((rdir/'params.json').read_text())
    e = efficiency_table(dict(runs=[dict(load_run_dir(rdir), label='vit')]), repeats=1).loc['vit']
    assert e['parameters (M)'] == pytest.approx((info['backbone_params'] + info['head_params'])/1e6)
    assert e['GFLOPs per video'] > 5 and e['latency per video (s)'] > 0, e         # 2.9 GFLOPs per 64-px frame
    ex = export_model(pipeline_model(pred), tmp_path/'export', formats=('tflite',))
    assert abs(float(exported_runner('tflite', ex.path[0])(faces[None].astype(np.float32))[0]) - pred.score(faces)) < 1e-4, ex.to_string()
    faces, prob, pred = _test_video(train_run(backbone='vit_b16', head='convlstm', size=64, **tiny))
    assert pred.params['feature_layers'] == 'maps' and pred.features(faces).shape == (2, 4, 4, 768)
    assert abs(pred.score(faces) - prob) < 2e-3 and pipeline_cam_layer(pred).name == 'map_features'
    faces, prob, pred = _test_video(train_run(backbone='vit_b16', size=32, mode='finetune', finetune_layers=2, **tiny))
    assert pred.mode == 'finetune' and pred.frame_model is not None and abs(pred.score(faces) - prob) < 2e-3
    assert pipeline_cam_layer(pred).name == 'transformer_block_11' and gradcam_maps(pred, faces)[0].shape == faces.shape[:3]
