"""One settings schema (deepfake_nb.settings): the parameters cells, run_params, run_studies, the CLI options, the grid YAML keys and params.json
agree with it; every training setting reaches a run from `deepfake-nb run --config`, `deepfake-nb run` and `deepfake-nb train`; and a short real
`deepfake-nb run --config grid.yaml` on the demo trains with what the file says, compares and reports its single run, and keeps the console quiet."""
import os, sys, json, inspect, subprocess, time
from pathlib import Path
import pytest
from conftest import REPO
from deepfake_nb.core import nbs_dir
from deepfake_nb.settings import *
from deepfake_nb.pipeline import parse_command, grid_params, run_pipeline, COMMANDS

BIN = Path(sys.executable).parent
NOISE = ('absl::InitializeLog', 'oneDNN custom operations', 'cpu_feature_guard', 'Kernel is running over TCP', 'moov atom not found',
         'TF_ENABLE_ONEDNN_OPTS', 'This TensorFlow binary is optimized')

# a non-default, valid value of each of the 38 training settings, and how `deepfake-nb run` spells it (backbone -> backbones, ...)
NON_DEFAULT = dict(dataset='celebdf', backbone='resnet50', head='gru', weights=None, frames=8, size=128, detector='haar', margin=1.5, framing='landmarks', epochs=3,
                   batch_size=8, lr=0.01, units=32, dropout=0.1, patience=2, class_weight={0: 1.15, 1: 1.05}, seed=3, preset='seed-resnet50-lstm',
                   mode='finetune', augment='flip,rotate', aug_passes=1, lr_schedule='cosine', finetune_layers=5, finetune_lr=1e-4,
                   finetune_from='scratch', deterministic=True, mixed_precision=False, distribute='none', norm_floor=0.5,
                   fakes='sbi', sbi_per_video=3, feature_layers='blocks', pool='face', linear_c=0.1, align=True, split_seed=2, cv_folds=3, cv_fold=1)
COMPANION = dict(cv_fold=dict(cv_folds=3))   # a setting that is valid only with another one set
GRID_KEY = dict(backbone='backbones', head='heads', seed='seeds')

def test_non_default_values_cover_run_params():
    assert list(NON_DEFAULT) == list(RUN_SETTINGS)
    d = defaults('train')
    for k, v in NON_DEFAULT.items(): assert v != d[k], k

def test_run_params_signature_is_the_schema():
    from deepfake_nb.train import run_params
    sig = inspect.signature(run_params).parameters
    assert list(sig) == list(RUN_SETTINGS), 'run_params arguments differ from the train settings of deepfake_nb.settings'
    for k, p in sig.items(): assert p.default == setting('train', k).default, (k, p.default, setting('train', k).default)

def test_run_studies_signature_is_the_schema():
    from deepfake_nb.studies import run_studies
    sig = inspect.signature(run_studies).parameters
    named = [k for k in sig if k != 'run_settings']
    assert sorted(named + list(STUDY_RUN_SETTINGS)) == sorted(STUDY_SETTINGS)      # its own settings by name, every run setting through **run_settings
    assert set(STUDY_RUN_SETTINGS) == set(RUN_SETTINGS) - {'dataset', 'cv_folds', 'cv_fold'}
    for k in named: assert sig[k].default == default_value(setting('studies', k)), k

def test_run_pipeline_takes_every_run_setting():
    sig = inspect.signature(run_pipeline).parameters
    named = [k for k in sig if k != 'train_kw']
    run = [s.name for s in stage_settings('run', cli=True)]
    assert set(named) <= set(run), set(named) - set(run)
    assert set(run) - set(named) == {k for k in run if k in RUN_SETTINGS} - set(named)   # the rest are training settings (**train_kw)
    for k in named: assert sig[k].default == default_value(setting('run', k)), k

def test_choices_match_the_library():
    from deepfake_nb.models import HEADS
    from deepfake_nb.train import MODES
    from deepfake_nb.fit import LR_SCHEDULES
    from deepfake_nb.preprocess import DETECTORS
    from deepfake_nb.studies import STUDIES
    assert setting('train', 'head').choices == tuple(HEADS) and setting('run', 'heads').choices == tuple(HEADS)
    assert setting('train', 'mode').choices == tuple(MODES) and setting('train', 'lr_schedule').choices == tuple(LR_SCHEDULES)
    assert setting('train', 'detector').choices == tuple(DETECTORS)
    assert setting('studies', 'studies').choices == tuple(STUDIES)

@pytest.mark.parametrize('stage', [s for s, nb in STAGES.items() if nb])
def test_parameters_cell_is_the_schema(stage):
    "Names, defaults, comments (the help) and layout of each experiment notebook's parameters cell: `write_parameters()` rewrites them"
    assert parameters_drift(stage) == [], 'run deepfake_nb.settings.write_parameters() and commit the notebooks'

def test_drift_is_found(tmp_path):
    "An old-style 03_train parameters cell (a default, a comment and a setting changed) is reported, setting by setting"
    import shutil
    nb = tmp_path/'03_train.ipynb'; shutil.copy(nbs_dir()/'03_train.ipynb', nb)
    j = json.loads(nb.read_text())
    cell = next(c for c in j['cells'] if 'parameters' in c['metadata'].get('tags', []))
    src = ''.join(cell['source']).replace('epochs = 30 ', 'epochs = 20 ').replace('# LSTM/GRU/attention units', '# units').replace('norm_floor = 1.0', 'floor = 1.0')
    cell['source'] = src; nb.write_text(json.dumps(j))
    msgs = parameters_drift('train', nb)
    assert '03_train.ipynb: epochs = 20 in the notebook, 30 in deepfake_nb.settings' in msgs
    assert '03_train.ipynb: units\'s comment "units" differs from its help "LSTM/GRU/attention units"' in msgs
    assert '03_train.ipynb: floor is not a setting of train in deepfake_nb.settings' in msgs
    assert '03_train.ipynb: setting norm_floor is missing from the parameters cell' in msgs

def test_papermill_sees_the_schema():
    import papermill as pm
    for stage, nb in STAGES.items():
        if nb: assert list(pm.inspect_notebook(str(nbs_dir()/f'{nb}.ipynb'))) == [s.name for s in stage_settings(stage)], stage

@pytest.mark.parametrize('cmd', list(COMMANDS))
def test_cli_options_are_the_schema(cmd):
    "Each subcommand's options are its stage's settings, one spelling each in --help, help text from the table"
    from deepfake_nb.pipeline import _parser
    stage = COMMANDS[cmd][0]
    sub = _parser().subcommands[cmd]
    opts = {a.dest: a for a in sub._actions if a.option_strings}
    extra = {'help', 'verbose', 'config', 'params'}
    assert set(opts) - extra == {s.name for s in stage_settings(stage, cli=True)}
    text = sub.format_help()
    for s in stage_settings(stage, cli=True):
        assert opts[s.name].option_strings[0] == '--' + s.name.replace('_', '-') and s.help.split()[0] in opts[s.name].help
        if '_' in s.name: assert '--' + s.name + ' ' not in text     # the underscore form is accepted, not listed

def test_dash_and_underscore_forms():
    a = parse_command(['train', '--batch-size', '8', '--finetune-lr', '1e-4', '--mixed-precision', 'false'])[1]
    b = parse_command(['train', '--batch_size', '8', '--finetune_lr=1e-4', '--mixed_precision', 'false'])[1]
    assert a == b and (a['batch_size'], a['finetune_lr'], a['mixed_precision']) == (8, 1e-4, False)

def _refused(argv, capsys):
    with pytest.raises(SystemExit) as e: parse_command(argv)
    assert e.value.code == 2
    return capsys.readouterr().err

def test_unknown_option_refused_naming_the_valid_ones(capsys):
    err = _refused(['run', '--epoch', '3'], capsys)
    assert 'unknown option(s) --epoch (did you mean --epochs' in err and 'valid options:' in err
    for s in stage_settings('run', cli=True): assert '--' + s.name.replace('_', '-') in err, s.name
    err = _refused(['predict', '--annotations'], capsys)
    assert '--annotate' in err

def test_unknown_yaml_key_and_wrong_type_refused(tmp_path, capsys):
    f = tmp_path/'grid.yaml'
    f.write_text('backbones: [mobilenetv2]\nlearning_rate: 0.01\n')
    err = _refused(['run', '--config', str(f)], capsys)
    assert 'unknown setting(s) learning_rate; valid: dataset, root' in err and 'norm_floor' in err and 'aug_passes' in err
    f.write_text('epochs: 2.5\n')
    assert "epochs=2.5 must be an integer (maximum epochs" in _refused(['run', '--config', str(f)], capsys)
    f.write_text('deterministic: maybe\n')
    assert "deterministic='maybe' must be true or false" in _refused(['run', '--config', str(f)], capsys)
    f.write_text('heads: [lstm, tcn]\n')
    assert "'tcn' is not one of lstm, gru" in _refused(['run', '--config', str(f)], capsys)

def _flags(name, v) -> list[str]:
    "How the command line spells setting `name` = `v`"
    opt = '--' + name.replace('_', '-')
    if setting('train' if name in RUN_SETTINGS else 'run', name).kind == 'bool': return [opt] if v else ['--no-' + name.replace('_', '-')]
    if isinstance(v, bool): return [opt, str(v).lower()]
    if v is None: return [opt, 'none']
    return [opt, *map(str, v)] if isinstance(v, list) else [opt, str(v)]

def _grid(argv, monkeypatch) -> list[dict]:
    "The grid `deepfake-nb <argv>` hands to the grid runner (main -> run_pipeline, with the notebooks and the runner stubbed)"
    import deepfake_nb.pipeline as P
    seen = []
    monkeypatch.setattr(P, 'run_notebook', lambda nb, out, log=None, **kw: Path(out))
    monkeypatch.setattr(P, 'run_section_output', lambda nb: '')
    monkeypatch.setattr(P, 'run_grid', lambda grid, **kw: seen.append(grid) or dict(done=[], skipped=[], failed=[]))
    assert P.main(argv) == 0
    return seen[0]

@pytest.mark.parametrize('key', RUN_SETTINGS)
def test_each_training_setting_reaches_the_grid(key, tmp_path, monkeypatch):
    "`deepfake-nb run --config grid.yaml`, `deepfake-nb run --<key>` and `deepfake-nb train --<key>` each give the run the value"
    import yaml
    from deepfake_nb.train import run_params
    v, gk = NON_DEFAULT[key], GRID_KEY.get(key, key)
    gv = [v] if gk != key else v
    extra = COMPANION.get(key, {})
    want = run_params(**{key: v}, **extra)[key]
    one = {} if key == 'backbone' else {'backbones': ['mobilenetv2']}
    f = tmp_path/'grid.yaml'; f.write_text(yaml.safe_dump({gk: gv, **one, **extra}))
    more = [a for k, x in extra.items() for a in _flags(k, x)]
    in_grid = key in {s.name for s in stage_settings('run')}          # cv_folds, cv_fold: one run's split, not a grid's (the cv study makes the folds)
    for argv in (['run', '--config', str(f)], ['run', *_flags(gk, gv), *_flags('backbones', one.get('backbones', gv)), *more])[:2 if in_grid else 0]:
        grid = _grid(argv, monkeypatch)
        assert len(grid) == 1 and grid[0][key] == want, (argv, grid[0][key], want)
    values = parse_command(['train', *_flags(key, v), *more])[1]
    assert run_params(**{k: values[k] for k in RUN_SETTINGS})[key] == want

def test_params_json_from_the_grid_runner_is_accepted():
    "The grid runner passes each run's normalised parameters to `deepfake-nb train --params`: they check against the schema"
    p = grid_params('demo', ['mobilenetv2'], ['lstm'], [0], **{k: NON_DEFAULT[k] for k in ('class_weight', 'augment', 'mixed_precision', 'weights')})[0]
    values = parse_command(['train', '--params', json.dumps(p)])[1]
    from deepfake_nb.train import run_params
    assert run_params(**{k: values[k] for k in RUN_SETTINGS}) == p

# what train_run records in params.json besides the 38 settings (the run's identity, provenance and measurements)
RECORDED = {'run_id', 'weights_used', 'weights_key', 'threshold', 'prep_key', 'prep_settings', 'manifest', 'manifest_hash', 'test_hash',
            'split_file', 'split_file_hash', 'split_hash', 'split_settings', 'cache_keys', 'preset_doc', 'features', 'feature_scale', 'block_scales',
            'block_dims', 'face_region',
            'backbone_params', 'head_params', 'epochs_run', 'best_epoch', 'resumed', 'n_videos', 'n_train_examples', 'faces_found',
            'frames_sampled', 'compute', 'rerun', 'seconds'}

def test_run_config_end_to_end(tmp_path):
    "A real `deepfake-nb run --config grid.yaml` on the demo (one backbone, 2 epochs, non-default settings): the run has them, its single run is compared and reported, the console is quiet"
    home = tmp_path/'home'; home.mkdir()
    cfg = tmp_path/'grid.yaml'
    cfg.write_text('dataset: demo\nbackbones: [mobilenetv2]\nepochs: 2\nunits: 32\nlr_schedule: cosine\nnorm_floor: 0.5\nclass_weight: {0: 1.0, 1: 1.2}\nframes: 4\nsize: 96\n')
    t0 = time.time()
    r = subprocess.run([str(BIN/'deepfake-nb'), 'run', '--config', str(cfg)], env=dict(os.environ, DEEPFAKE_NB_HOME=str(home)), cwd=tmp_path,
                       capture_output=True, text=True, timeout=900)
    out = r.stdout + r.stderr
    print(f'deepfake-nb run --config: {time.time()-t0:.0f}s, {len(out.splitlines())} lines\n{out}')
    assert r.returncode == 0, out[-4000:]
    runs = sorted((home/'reports'/'runs'/'demo').glob('*/params.json'))
    assert len(runs) == 1
    p = json.loads(runs[0].read_text())
    assert (p['epochs'], p['units'], p['lr_schedule'], p['norm_floor'], p['class_weight'], p['frames'], p['size']) == (2, 32, 'cosine', 0.5, {'0': 1.0, '1': 1.2}, 4, 96)
    assert set(p) - RECORDED == set(RUN_SETTINGS), ('params.json keys that are neither settings nor recorded:', set(p) - RECORDED - set(RUN_SETTINGS),
                                                   'settings missing:', set(RUN_SETTINGS) - set(p))
    assert (home/'reports'/'compare'/'demo'/'stats.json').exists(), 'the single run was not compared'
    report = home/'reports'/'report.html'
    assert report.exists() and r.stdout.strip().splitlines()[-1] == str(report)
    for n in NOISE: assert n not in out, f'{n!r} reached the console:\n{out}'
    assert len(out.splitlines()) <= 25, out
    assert 'Kernel is running over TCP' in (runs[0].parent/'papermill.log').read_text() + (home/'reports'/'pipeline'/'demo'/'01_data.log').read_text()
    assert 'deepfake-nb run --config' in (home/'reports'/'deepfake-nb.log').read_text()   # this process's own stderr (TensorFlow's start-up lines) went there


# Public parameters named like a setting whose literal default is deliberate: another meaning of the word, or a library
# default that differs from the stage's on purpose. Every other such parameter takes its default from the schema
# (`DEFAULTS.<name>` or `setting(stage, name).default`), or None, or none at all.
OTHER_MEANINGS = {
    'backbones.load_images.size': "MesoNet's input size, not the face crop's",
    'data.check_manifest.name': 'what its error messages call the table',
    'metrics.check_binary.name': 'what its error messages call the scores',
    'sbi.as_uint8_image.name': 'what its error messages call the image',
    'sbi.check_landmarks.name': 'what its error messages call the landmarks',
    'stats.cluster_index.name': 'what its error messages call the groups',
    'features.extract_features.batch_size': 'images per forward pass of a frozen backbone, not videos per training batch',
    'feature_cache.cached_features.batch_size': 'images per forward pass of a frozen backbone',
    'feature_cache.extract_feature_shard.batch_size': 'images per forward pass of a frozen backbone',
    'examples.sbi_features.batch_size': 'images per forward pass of a frozen backbone',
    'predictor.run_model.batch_size': 'examples per forward pass when scoring',
    'fit.epoch_batches.epochs': 'how many epochs of batches to lay out (one unless asked)',
    'predict.gradcam_overlay.alpha': "the heat map's opacity, not a significance level",
    'predict.gradcam_figure.alpha': "the heat map's opacity, not a significance level",
    'predict.predict_video.per_frame': 'off in the library (an occlusion pass per video); the predict stage turns it on',
    'predict.predict_videos.per_frame': 'off in the library (an occlusion pass per video); the predict stage turns it on',
    'sbi.self_blend_video.per_frame': 'one blend draw per frame instead of per video, not per-frame scores',
    'report.main_metrics_table.ensembles': 'whether the table lists ensembles, not which ensembles compare builds',
    'report.threshold_metrics_table.ensembles': 'whether the table lists ensembles',
    'report.pairs_table.ensembles': 'whether the table lists ensemble pairs',
    'report.pair_tests_table.ensembles': 'whether the table lists ensemble pairs',
    'report.mcnemar_tables.ensembles': 'whether the tables list ensemble pairs',
    'report.fig_roc_pr.ensembles': 'whether the figure draws ensembles',
    'report.fig_reliability.ensembles': 'whether the figure draws ensembles',
    'studies.self_blend_study.eval_datasets': 'none unless named (run_studies passes the stage setting)',
    'testing.make_synthetic_runs.dataset': 'the synthetic runs live apart from real datasets',
    'testing.make_synthetic_runs.frames': 'synthetic runs have no frames unless asked',
    'watch.tflite_path.export': 'export the TFLite model when it is missing, not the predict stage export switch',
}

def _literal_setting_defaults():
    "{'module.function.param': literal} for every public function's parameter named like a setting with a literal non-None default"
    import ast, deepfake_nb
    from deepfake_nb.settings import SETTINGS
    names, found = {s.name for s in SETTINGS}, {}
    for f in sorted(Path(deepfake_nb.__file__).parent.glob('*.py')):
        if f.name.startswith('_'): continue
        for n in ast.walk(ast.parse(f.read_text())):
            if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) or n.name.startswith('_'): continue
            a = n.args
            pos = a.posonlyargs + a.args
            pairs = list(zip(pos[len(pos) - len(a.defaults):], a.defaults)) + list(zip(a.kwonlyargs, a.kw_defaults))
            for arg, d in pairs:
                if d is None or arg.arg not in names: continue
                try: v = ast.literal_eval(d)
                except ValueError: continue                    # an expression: the schema's DEFAULTS or setting(...)
                if v is not None: found[f'{f.stem}.{n.name}.{arg.arg}'] = v
    return found

def test_setting_defaults_come_from_the_schema():
    found = _literal_setting_defaults()
    repeated = {k: v for k, v in found.items() if k not in OTHER_MEANINGS}
    assert not repeated, ("literal defaults of settings in public signatures (take them from deepfake_nb.settings.DEFAULTS, "
                          f"or list another meaning in OTHER_MEANINGS): {repeated}")
    assert not set(OTHER_MEANINGS) - set(found), f"stale OTHER_MEANINGS entries: {set(OTHER_MEANINGS) - set(found)}"
    from deepfake_nb.preprocess import preprocess_video
    from deepfake_nb.settings import DEFAULTS
    import inspect
    assert inspect.signature(preprocess_video).parameters['size'].default == DEFAULTS.size   # read from the schema
