"""The `#| gpu` cells' logic exercised on a CPU (issue 21): the choice of precision and strategy, mixed precision forced, `MirroredStrategy`
over one CPU device in this process and over two logical CPU devices in a child process, where the global batch must be the per-replica
batch times the replicas. Training goes through the code `train_run` uses (`compute_setup`, `fit_head`, `fit_finetune`, `train_run`)."""
import json, os, subprocess, sys, textwrap
import numpy as np, pytest
import keras
import tensorflow as tf
from deepfake_nb import compute
from deepfake_nb.models import precision_policy, make_strategy, compute_setup
from deepfake_nb.fit import fit_head

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def test_precision_choice(monkeypatch):
    "'auto' gives mixed_float16 only when every visible GPU has compute capability >= 7.0; True forces it (on a CPU too)"
    for gpus, want in [([], 'float32'), ([[7, 5]], 'mixed_float16'), ([[8, 0], [7, 0]], 'mixed_float16'), ([[7, 5], [6, 1]], 'float32'),
                       ([[6, 0]], 'float32')]:
        monkeypatch.setattr(compute, 'gpu_details', lambda g=gpus: [dict(device=f'/GPU:{i}', name='t', compute_capability=c) for i, c in enumerate(g)])
        assert precision_policy('auto') == want, gpus
    assert precision_policy(True) == 'mixed_float16' and precision_policy('float32') == 'float32'

class _Fake:
    "Stands for a strategy that cannot be built in this process"
    def __init__(self, *a, **k): self.num_replicas_in_sync = 2

def test_strategy_choice(monkeypatch):
    "'auto': MultiWorkerMirrored with TF_CONFIG naming >1 workers, Mirrored with >1 GPU, else the default strategy"
    monkeypatch.setattr(compute, '_STRATEGIES', {})
    monkeypatch.delenv('TF_CONFIG', raising=False)
    real = tf.config.list_physical_devices
    monkeypatch.setattr(tf.distribute, 'MirroredStrategy', _Fake)
    monkeypatch.setattr(tf.distribute, 'MultiWorkerMirroredStrategy', _Fake)
    assert make_strategy('auto')[1] == 'default' and make_strategy('none')[1] == 'default'
    monkeypatch.setattr(tf.config, 'list_physical_devices', lambda kind=None: ['g0', 'g1'] if kind == 'GPU' else real(kind))
    assert make_strategy('auto')[1] == 'MirroredStrategy'
    monkeypatch.setenv('TF_CONFIG', json.dumps({'cluster': {'worker': ['localhost:1', 'localhost:2']}, 'task': {'type': 'worker', 'index': 0}}))
    assert make_strategy('auto')[1] == 'MultiWorkerMirroredStrategy'
    with pytest.raises(compute.DeepfakeNBError, match="use 'auto'"): make_strategy('tpu')

class _Steps(keras.callbacks.Callback):
    def __init__(self): super().__init__(); self.n = 0
    def on_train_batch_end(self, batch, logs=None): self.n += 1

def _data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0., 1.], n // 2).astype(np.float32); X = rng.normal(size=(n, 3, 8)).astype(np.float32); X[y == 1, :, 0] += 1.0
    return X, y

def test_mirrored_one_cpu_mixed():
    "MirroredStrategy over the CPU, mixed_float16 forced: the head trains through fit_head with mirrored variables and loss scaling"
    X, y = _data()
    for distribute in ('mirrored', tf.distribute.MirroredStrategy(['/cpu:0'])):   # the setting, and a strategy passed as it is
        with compute_setup(True, distribute) as cs:
            assert (cs['strategy_name'], cs['replicas'], cs['policy']) == ('MirroredStrategy', 1, 'mixed_float16')
            assert keras.mixed_precision.global_policy().name == 'mixed_float16'
            steps = _Steps()
            m, hist = fit_head(X, y, X[:8], y[:8], head='lstm', units=8, epochs=2, batch_size=4, patience=5, strategy=cs['strategy'], callbacks=[steps])
            assert steps.n == 2 * 16 // (4 * cs['replicas'])                 # steps per epoch follow the global batch
            assert isinstance(m.optimizer, keras.optimizers.LossScaleOptimizer)
            assert type(m.trainable_variables[0].value).__name__ == 'MirroredVariable'
            assert np.isfinite(hist[['loss', 'val_loss']].values).all() and np.isfinite(m.predict(X, verbose=0)).all()
        assert keras.mixed_precision.global_policy().name == 'float32'

_CHILD = textwrap.dedent('''
    import json, os, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)   # before TensorFlow starts
    import numpy as np, keras, pandas as pd
    from deepfake_nb.models import compute_setup
    from deepfake_nb.fit import fit_head
    from deepfake_nb.train import train_run
    from deepfake_nb.core import load_json
    out = {}
    class Steps(keras.callbacks.Callback):
        n = 0
        def on_train_batch_end(self, batch, logs=None): Steps.n += 1
    rng = np.random.default_rng(0); y = np.repeat([0., 1.], 8).astype('float32'); X = rng.normal(size=(16, 3, 8)).astype('float32')
    with compute_setup(True, 'mirrored') as cs:
        m, hist = fit_head(X, y, X[:8], y[:8], head='mean', units=8, epochs=1, batch_size=4, patience=5, strategy=cs['strategy'], callbacks=[Steps()])
        out['head'] = dict(replicas=cs['replicas'], policy=cs['policy'], steps=Steps.n, devices=list(cs['strategy'].extended.worker_devices),
                           finite=bool(np.isfinite(hist[['loss', 'val_loss']].values).all() and np.isfinite(m.predict(X, verbose=0)).all()))
    # the 06_train #| gpu cell, with the CPU standing in for two GPUs: fine-tuning random-init MobileNetV2 under mixed precision
    r = train_run(dataset='demo', backbone='mobilenetv2', weights=None, mode='finetune', mixed_precision=True, distribute='mirrored',
                  epochs=1, frames=2, size=32, batch_size=4, force=True)
    p = load_json(r/'params.json'); prob = pd.read_csv(r/'predictions.csv').prob
    out['run'] = dict(compute=p['compute'], batch_size=p['batch_size'], finite=bool(np.isfinite(prob).all()), n=len(prob))
    print('RESULT ' + json.dumps(out))
''')

def test_mirrored_two_cpu_replicas(tmp_path):
    "Two replicas (two logical CPU devices): per-replica batch x 2 = global batch, in fit_head's steps and in a train_run's record"
    env = dict(os.environ, DEEPFAKE_NB_HOME=str(tmp_path), TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=REPO)
    env.pop('TF_CONFIG', None)
    res = subprocess.run([sys.executable, '-c', _CHILD], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    line = [l for l in res.stdout.splitlines() if l.startswith('RESULT ')]
    assert res.returncode == 0 and line, res.stdout[-3000:] + res.stderr[-3000:]
    out = json.loads(line[0][7:])
    h = out['head']
    assert (h['replicas'], h['policy'], h['finite']) == (2, 'mixed_float16', True), h
    assert len(h['devices']) == 2 and all('CPU' in d for d in h['devices']), h
    assert h['steps'] == 16 // (4 * 2), h                             # 16 examples, 4 per replica, 2 replicas: 2 steps
    c = out['run']['compute']
    assert (c['strategy'], c['replicas'], c['policy']) == ('MirroredStrategy', 2, 'mixed_float16'), c
    assert c['global_batch_size'] == out['run']['batch_size'] * 2 and out['run']['finite'], out['run']
