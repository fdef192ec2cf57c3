"""Does the fine-tuning input pipeline keep up with the model? (issue 29)

    .venv/bin/python bench/bench_input.py                       # MobileNetV2, 12 faces of 160 px, batch 8
    .venv/bin/python bench/bench_input.py --batch-size 16 --steps 8

In one process, on the same demo-generator videos (preprocessed once):
(a) floor: the fine-tuning model's own training step (`train_on_batch`) on a batch already in memory, frames per second;
(b) pipeline alone: `video_dataset` as fine-tuning builds it (decode the .npz, augment, self-blended pairs of the real
    videos), its batches drawn and discarded, frames per second;
(c) fit: `model.fit` on that pipeline, frames per second (what training gets).
Ratios are to (a); the issue's floor is (c)/(a) >= 0.90. Each figure is the best of `--repeat` timings of `--steps`
batches after a warm-up; the repeats run in rounds, each timing (a), (b) and (c) in turn.
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
    ap.add_argument('--steps', type=int, default=6, help='batches timed per repeat')
    ap.add_argument('--repeat', type=int, default=2)
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

    def timed(fn):
        t0 = time.perf_counter()
        fn(a.steps)
        return time.perf_counter() - t0

    def step(k):
        for _ in range(k): model.train_on_batch(xb, yb)
    timers = {'(a) model step, batch in memory': step}
    for name, kw in pipelines.items():
        def ds(kw=kw): return video_dataset(fdir, ids, y, bs, shuffle=True, seed=0, **kw).repeat()
        def draw(k, ds=ds):                         # a new iterator each time, as fit makes one (none left running)
            it = iter(ds())
            with opencv_threads(1):
                for _ in range(k): next(it)
            del it
        train = ds()
        def fit(k, train=train):                     # as fit_finetune runs it: OpenCV one thread per call
            with opencv_threads(1): model.fit(train, steps_per_epoch=k, epochs=1, verbose=0)
        timers[f'(b) pipeline alone: {name}'] = draw
        timers[f'(c) fit on the pipeline: {name}'] = fit
    for fn in timers.values(): fn(1)                 # warm-up: tracing, caches, the first file reads
    # rounds interleave every timing, so that a slower spell of the machine hits the floor and the fits alike
    def timed_alone(fn):
        gc.collect()                                 # the iterators of the timing before are gone
        return timed(fn)
    rounds = [[timed_alone(fn) for fn in timers.values()] for _ in range(a.repeat)]
    secs = {k: min(r[i] for r in rounds) for i, k in enumerate(timers)}
    rows = [dict(what=k, frames_per_s=a.steps * bs * frames / s) for k, s in secs.items()]
    t = pd.DataFrame(rows)
    t['ratio_to_model_step'] = (t.frames_per_s / t.frames_per_s.iloc[0]).round(2)
    t['frames_per_s'] = t.frames_per_s.round(1)
    commit = subprocess.run(['git', 'rev-parse', '--short=10', 'HEAD'], cwd=HERE, capture_output=True,
                            text=True).stdout.strip()
    machine = f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores)"
    t = t.assign(batch_size=bs, frames=frames, size=size, finetune_layers=a.finetune_layers, steps=a.steps,
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
