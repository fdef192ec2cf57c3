"""Does the fine-tuning input pipeline keep up with the model? (issue 29)

    .venv/bin/python bench/bench_input.py                       # MobileNetV2, 12 faces of 160 px, batch 8
    .venv/bin/python bench/bench_input.py --batch-size 16 --steps 8

In one process, on the same demo-generator videos (preprocessed once):
(a) floor: `model.fit` of the fine-tuning model on one batch already in memory as tensors (repeated), frames per second;
(b) pipeline alone: `video_dataset` as fine-tuning builds it (decode the .npz, augment, self-blended pairs of the real
    videos), its batches drawn and discarded, frames per second;
(c) fit: `model.fit` on that pipeline, frames per second (what training gets).
Ratios are to (a); the issue's floor is (c)/(a) >= 0.90. Every figure is the steady rate: each timing starts a new
iterator (as an epoch does), runs `--skip` batches, then times `--steps` batches; the best of `--repeat` rounds, each
round timing (a), (b) and (c) in turn, so that a slow spell of the machine hits the floor and the fits alike.
Writes bench/results/bench_input.csv (commit, machine, command per row). Not part of CI.
"""
import argparse, gc, os, platform, subprocess, sys, tempfile, time
from pathlib import Path
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
import numpy as np, pandas as pd

HERE = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--batch-size', type=int, default=8)
    ap.add_argument('--steps', type=int, default=20, help='batches timed per repeat')
    ap.add_argument('--skip', type=int, default=5, help='batches run before the clock starts, each time')
    ap.add_argument('--repeat', type=int, default=3)
    ap.add_argument('--finetune-layers', type=int, default=20)
    ap.add_argument('--out', default=str(HERE/'bench'/'results'/'bench_input.csv'))
    a = ap.parse_args()
    import keras, tensorflow as tf
    from deepfake_nb.core import home_at
    from deepfake_nb.demo import make_demo_dataset
    from deepfake_nb.data import build_manifest, load_manifest
    from deepfake_nb.preprocess import preprocess_manifest, prep_key, face_cache_dir
    from deepfake_nb.models import build_backbone, build_head, build_finetune_model
    from deepfake_nb.examples import video_dataset, opencv_threads
    frames, size, bs = 12, 160, a.batch_size
    home = Path(tempfile.mkdtemp(prefix='bench_input_'))
    with home_at(home):
        m = build_manifest('demo', root=make_demo_dataset(home/'raw', n_identities=8, videos_per_class=4))
        preprocess_manifest(m, frames=frames, size=size, progress=False)
        df = load_manifest(m)
        fdir = face_cache_dir('demo', prep_key(frames=frames, size=size))
    ids, y = df.video_id.tolist(), df.label.to_numpy(np.float32)
    real = df.video_id[df.label == 0].tolist()
    bm, *_ = build_backbone('mobilenetv2', 'random-highpass', size)
    model = build_finetune_model('mobilenetv2', bm, build_head('lstm', frames, 1280, units=64), frames, size, 1.0,
                                 a.finetune_layers)
    model.compile(keras.optimizers.Adam(1e-5), 'binary_crossentropy')
    pipelines = {
        'plain (decode only)': dict(),
        'augment flip,rotate,zoom': dict(augment='flip,rotate,zoom'),
        'augment + self-blended pairs': dict(augment='flip,rotate,zoom', sbi_ids=real),
    }
    xb = np.random.default_rng(0).uniform(0, 255, (bs, frames, size, size, 3)).astype(np.float32)
    yb = (np.arange(bs) % 2).astype(np.float32)

    class StepTimes(keras.callbacks.Callback):
        "The clock at the end of every training step"
        def on_train_begin(self, logs=None): self.t = []
        def on_train_batch_end(self, batch, logs=None): self.t.append(time.perf_counter())

    def fit_secs(train):
        "Seconds a step of `fit` on `train` takes once `--skip` steps have run (a new iterator each call, as an epoch)"
        cb = StepTimes()
        with opencv_threads(1):                      # as fit_finetune runs it: OpenCV one thread per call
            model.fit(train, steps_per_epoch=a.skip + a.steps, epochs=1, verbose=0, callbacks=[cb])
        return (cb.t[-1] - cb.t[a.skip - 1]) / a.steps

    def draw_secs(ds):
        "Seconds a batch of `ds` takes to draw once `--skip` batches have been drawn"
        it = iter(ds)
        with opencv_threads(1):
            for _ in range(a.skip): next(it)
            t0 = time.perf_counter()
            for _ in range(a.steps): next(it)
        return (time.perf_counter() - t0) / a.steps
    in_memory = tf.data.Dataset.from_tensors((tf.constant(xb), tf.constant(yb))).repeat()
    timers = {'(a) model step, batch in memory': lambda: fit_secs(in_memory)}
    for name, kw in pipelines.items():
        def ds(kw=kw): return video_dataset(fdir, ids, y, bs, shuffle=True, seed=0, **kw).repeat()
        timers[f'(b) pipeline alone: {name}'] = lambda ds=ds: draw_secs(ds())
        timers[f'(c) fit on the pipeline: {name}'] = lambda train=ds(): fit_secs(train)
    for fn in timers.values(): fn()                  # warm-up: tracing, caches, the first file reads

    def alone(fn):
        gc.collect()                                 # the iterators of the timing before are gone
        return fn()
    # rounds interleave every timing, so that a slower spell of the machine hits the floor and the fits alike
    rounds = [[alone(fn) for fn in timers.values()] for _ in range(a.repeat)]
    secs = {k: min(r[i] for r in rounds) for i, k in enumerate(timers)}
    rows = [dict(what=k, frames_per_s=bs * frames / s) for k, s in secs.items()]
    t = pd.DataFrame(rows)
    t['ratio_to_model_step'] = (t.frames_per_s / t.frames_per_s.iloc[0]).round(2)
    t['frames_per_s'] = t.frames_per_s.round(1)
    commit = subprocess.run(['git', 'rev-parse', '--short=10', 'HEAD'], cwd=HERE, capture_output=True,
                            text=True).stdout.strip()
    machine = f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores)"
    t = t.assign(batch_size=bs, frames=frames, size=size, finetune_layers=a.finetune_layers, steps=a.steps, skip=a.skip,
                 commit=commit, machine=machine, date=time.strftime('%Y-%m-%d %H:%M'),
                 command='python bench/bench_input.py ' + ' '.join(sys.argv[1:]))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    t.to_csv(a.out, index=False)
    print(f"\n{commit}, {machine}; MobileNetV2, {frames} faces of {size} px, batch {bs}, "
          f"last {a.finetune_layers} layers training\n")
    print(t[['what', 'frames_per_s', 'ratio_to_model_step']].to_string(index=False))
    print(f'\nwritten {a.out}')


if __name__ == '__main__':
    main()
