"""Training speed and test AUC on the same data and machine, in one run: the original notebooks' loop against this suite's `frozen` path.

    .venv/bin/python bench/bench_train.py                                   # demo data, MobileNetV2 and ResNet50, 12x160x160, 10 epochs
    .venv/bin/python bench/bench_train.py --backbones mobilenetv2 --epochs 3 --train-videos 8   # a reduced run

(a) original: a `keras.utils.PyDataset` that, for every batch of every epoch (and for val and test), decodes the videos and re-detects and crops
    the faces, feeding `TimeDistributed(backbone)` + LSTM 64 trained end to end (every layer trainable, Adam 1e-4, batch 2).
    To compare the loops rather than the science fixes it gets this suite's uniform frame sampling, Haar detector and the backbone's own
    `preprocess_input` (the original notebooks took the first 12 frames and fed x/255), which only makes it faster or better.
(b) frozen: `train_run` into an empty face and feature cache (emptied again for each backbone): faces detected once, backbone features extracted once, the LSTM head trained on them
    (the suite's defaults: Adam 1e-3, batch 16), predictions for every split.
Both run the same number of epochs (early stopping's patience set to the epoch count, the best val epoch restored), on the same manifest and split.
Weights: ImageNet where Keras can download it, else the ImageNet MobileNetV2 file in ../shared/weights, else random initialisation (printed).
Time: seconds from the demo videos on disk (made before timing, not counted) to test predictions, wall-clock and CPU (this process, all
threads: robust to other jobs on a shared machine). The ratio is original / frozen.
"""
import argparse, os, sys, time, math, tempfile, json, shutil
from pathlib import Path
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
import numpy as np, pandas as pd
from sklearn.metrics import roc_auc_score
from deepfake_nb.core import home_at, shared_dir, load_json, data_dir
from deepfake_nb.data import build_manifest, load_manifest
from deepfake_nb import preprocess as pp
from deepfake_nb.models import get_backbone, build_backbone
from deepfake_nb.train import train_run
from deepfake_nb.fit import balanced_class_weight
import keras

class OriginalSequence(keras.utils.PyDataset):
    "The original notebooks' loader: decode and detect faces of every video of every batch, every time"
    def __init__(self, paths, labels, backbone, batch_size=2, frames=12, size=160, shuffle=False, seed=0):
        super().__init__()
        self.paths, self.labels, self.bb = list(paths), np.asarray(labels, np.float32), get_backbone(backbone)
        self.batch_size, self.frames, self.size, self.shuffle = batch_size, frames, size, shuffle
        self.rng = np.random.default_rng(seed); self.order = np.arange(len(self.paths))
        if shuffle: self.rng.shuffle(self.order)
    def __len__(self): return math.ceil(len(self.paths) / self.batch_size)
    def __getitem__(self, i):
        idx = self.order[i*self.batch_size:(i+1)*self.batch_size]
        x = np.stack([pp.preprocess_video(self.paths[j], self.frames, self.size)['faces'] for j in idx])
        return self.bb.preprocess(x), self.labels[idx]
    def on_epoch_end(self):
        if self.shuffle: self.rng.shuffle(self.order)

class EpochTimes(keras.callbacks.Callback):
    def on_train_begin(self, logs=None): self.times = []
    def on_epoch_begin(self, epoch, logs=None): self.t = time.time()
    def on_epoch_end(self, epoch, logs=None): self.times.append(time.time() - self.t)

def original_loop(df, backbone, weights, frames, size, epochs, batch_size=2, lr=1e-4, seed=0):
    "Train the original way; return (seconds, test AUC, seconds per epoch)"
    keras.utils.set_random_seed(seed)
    t0, c0 = time.time(), time.process_time()
    bm, used, _ = build_backbone(backbone, weights, size)
    bm.trainable = True
    inp = keras.Input((frames, size, size, 3))
    x = keras.layers.TimeDistributed(bm)(inp)
    x = keras.layers.Dropout(0.3)(keras.layers.LSTM(64)(x))
    model = keras.Model(inp, keras.layers.Dense(1, activation='sigmoid')(x))
    model.compile(keras.optimizers.Adam(lr), 'binary_crossentropy', metrics=[keras.metrics.AUC(name='auc')])
    split = {s: df[df.split == s] for s in ('train', 'val', 'test')}
    seq = {s: OriginalSequence(d.path, d.label, backbone, batch_size, frames, size, shuffle=(s == 'train'), seed=seed) for s, d in split.items()}
    et = EpochTimes()
    model.fit(seq['train'], validation_data=seq['val'], epochs=epochs, class_weight=balanced_class_weight(split['train'].label), verbose=0,
              callbacks=[keras.callbacks.EarlyStopping('val_loss', patience=epochs, restore_best_weights=True), et])
    prob = model.predict(seq['test'], verbose=0).ravel()
    return time.time() - t0, time.process_time() - c0, roc_auc_score(split['test'].label, prob), et.times, used

def frozen_path(backbone, weights, frames, size, epochs, dataset):
    "This suite's frozen path on an empty cache; return (seconds, test AUC, params.json)"
    t0, c0 = time.time(), time.process_time()
    rdir = train_run(dataset=dataset, backbone=backbone, weights=weights, frames=frames, size=size, epochs=epochs, patience=epochs)
    secs, cpu = time.time() - t0, time.process_time() - c0
    preds = pd.read_csv(rdir/'predictions.csv'); te = preds[preds.split == 'test']
    return secs, cpu, roc_auc_score(te.label, te.prob), load_json(rdir/'params.json')

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--backbones', nargs='+', default=['mobilenetv2', 'resnet50'])
    ap.add_argument('--epochs', type=int, default=10)
    ap.add_argument('--frames', type=int, default=12)
    ap.add_argument('--size', type=int, default=160)
    ap.add_argument('--train-videos', type=int, default=0, help='use only this many training videos (0: all), for a reduced run')
    ap.add_argument('--weights', default='bench', help="'bench' (ImageNet, else the ../shared MobileNetV2 file, else random), or as train_run")
    ap.add_argument('--out', default='', help='write the table as CSV here')
    a = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as home, home_at(home):
        mpath = build_manifest('demo')                               # the demo videos: made before timing
        df = load_manifest(mpath)
        if a.train_videos:
            tr = pd.concat([g.head(a.train_videos // 2) for _, g in df[df.split == 'train'].groupby('label')])
            df = pd.concat([tr, df[df.split != 'train']]).reset_index(drop=True)
            df.to_csv(Path(home)/'data'/'manifests'/'bench.csv', index=False); dataset = 'bench'
        else: dataset = 'demo'
        print(f"data: {dataset}, {len(df)} videos ({', '.join(f'{s} {n}' for s, n in df.split.value_counts().items())}); "
              f"{a.frames}x{a.size}x{a.size}, {a.epochs} epochs; {os.cpu_count()} CPU(s); GPUs: {len(__import__('tensorflow').config.list_physical_devices('GPU'))}", flush=True)
        for b in a.backbones:
            w = a.weights
            if w == 'bench':
                wf = (shared_dir() or Path('/nonexistent'))/'weights'/'mobilenet_v2_imagenet_notop.weights.h5'
                w = 'auto'
                try: build_backbone(b, 'imagenet', 32)
                except Exception: w = str(wf) if b == 'mobilenetv2' and wf.exists() else None
            shutil.rmtree(data_dir('faces', dataset), ignore_errors=True)      # each backbone's frozen path pays for its own face detection
            fs, fc, fauc, info = frozen_path(b, w, a.frames, a.size, a.epochs, dataset)
            print(f"{b}: frozen {fs:.0f}s, CPU {fc:.0f}s (faces {info['seconds']['preprocess']}s, features {info['seconds']['features']}s, head {info['seconds']['fit']}s), "
                  f"test AUC {fauc:.3f}; weights: {info['weights_used']}", flush=True)
            os_, oc, oauc, ep, used = original_loop(df, b, w, a.frames, a.size, a.epochs)
            print(f"{b}: original {os_:.0f}s, CPU {oc:.0f}s ({np.mean(ep):.0f}s per epoch), test AUC {oauc:.3f}", flush=True)
            rows.append(dict(backbone=b, original_s=round(os_, 1), frozen_s=round(fs, 1), speedup=round(os_/fs, 1),
                             original_cpu_s=round(oc, 1), frozen_cpu_s=round(fc, 1), cpu_speedup=round(oc/fc, 1),
                             original_auc=round(oauc, 3), frozen_auc=round(fauc, 3), original_s_per_epoch=round(float(np.mean(ep)), 1), weights=used))
    t = pd.DataFrame(rows).set_index('backbone')
    with pd.option_context('display.width', 250, 'display.max_colwidth', 60): print('\n' + t.to_string())
    if a.out: t.to_csv(a.out)
    return t

if __name__ == '__main__':
    main()
