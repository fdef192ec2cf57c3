"""Live scoring speed (issue 19): `watch` on the DFDC 1080p clip, one window per second, Keras and TFLite, in real time and as fast as possible.

The run: a frozen MobileNetV2 + LSTM demo run with the ImageNet weights from ../shared, at the demo's crop settings (12 faces of 160x160, YuNet,
margin 1.3), so a window is 12 faces spread over the last 2 s (one face every 1/6 s: 6 detections per second of source).

    .venv/bin/python bench/bench_watch.py                  # about 2 minutes on 2 cores (training about a minute, then 4 x 10 s of clip)
    .venv/bin/python bench/bench_watch.py --run-dir reports/runs/demo/<run_id> --clip my.mp4

Columns: windows scored, frames read and dropped, mean and 95th-percentile latency per window (real time: from the arrival of the window's
newest frame at its presentation time to its score; as fast as possible: from the scorer taking it), and the real-time factor (seconds of
source per second of wall time, decoding included; in real time at most about 1). Then a breakdown of the scorer's work per call.
"""
import argparse, os, sys, tempfile, time
from pathlib import Path

ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
ap.add_argument('--clip', default=None, help='video to watch (default: ../shared DFDC fake abofeumbvv.mp4, 1920x1080 at 29.97 fps, 10 s)')
ap.add_argument('--run-dir', default='', help='a trained run (default: train the MobileNetV2 demo run described above)')
ap.add_argument('--frames', type=int, default=12)
ap.add_argument('--size', type=int, default=160)
ap.add_argument('--epochs', type=int, default=10)
ap.add_argument('--stride', type=float, default=1.0)
ap.add_argument('--home', default=None, help='DEEPFAKE_NB_HOME (default: a temporary folder)')
a = ap.parse_args()
os.environ.setdefault('DEEPFAKE_NB_HOME', a.home or tempfile.mkdtemp(prefix='bench_watch.'))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np, pandas as pd, cv2
from deepfake_nb.core import shared_dir
from deepfake_nb.predict import load_predictor
from deepfake_nb.watch import watch, tflite_path, FaceWindow, WindowScorer, Sample, summary_line
from deepfake_nb.preprocess import read_frames

sd = shared_dir()
if sd is None and not (a.clip and a.run_dir): sys.exit('../shared is absent: pass --clip and --run-dir')
clip = Path(a.clip) if a.clip else sd/'data'/'videos'/'dfdc'/'fake'/'abofeumbvv.mp4'
load0 = os.getloadavg()
t0 = time.time()
if a.run_dir: rdir = Path(a.run_dir)
else:
    from deepfake_nb.train import train_run
    rdir = train_run(dataset='demo', backbone='mobilenetv2', weights=str(sd/'weights'/'mobilenet_v2_imagenet_notop.weights.h5'),
                     frames=a.frames, size=a.size, epochs=a.epochs)
pred = load_predictor(rdir)
tflite_path(pred)                                          # exported here (once), not inside a measured run
print(f'run {pred.run_id} ({time.time()-t0:.0f} s to train or load and export): {pred}')
cap = cv2.VideoCapture(str(clip))
print(f'clip {clip.name}: {int(cap.get(3))}x{int(cap.get(4))} at {cap.get(5):.2f} fps, {int(cap.get(7))} frames; '
      f'{os.cpu_count()} CPUs, load average {load0[0]:.1f} before the run (the machine is shared)')
cap.release()

rows = []
for model in ('keras', 'tflite'):
    for realtime in (True, False):
        r = watch(clip, rdir, stride=a.stride, realtime=realtime, model=model, quiet=True).summary
        print(f'{model:6s} {r["mode"]:20s}: {summary_line(r)}', flush=True)
        rows.append(dict(mode=r['mode'].replace('_', ' '), model=model, windows=r['windows'], frames_read=r['frames_read'], dropped=r['frames_dropped'],
                         latency_mean_ms=round(1000*r['latency_mean_s']), latency_p95_ms=round(1000*r['latency_p95_s']),
                         realtime_factor=round(r['realtime_factor'], 2)))
table = pd.DataFrame(rows)

# the scorer's work per call, on the clip's own frames: decoding to RGB, detection + crop of one sample, one window's score
imgs, idx, _ = read_frames(clip, pred.frames + 6)
win = FaceWindow(pred.prep)
t = time.perf_counter(); [win.det(im) for im in imgs]; det_ms = 1000*(time.perf_counter() - t)/len(imgs)
win = FaceWindow(pred.prep)
t = time.perf_counter()
for i, (im, j) in enumerate(zip(imgs[:pred.frames], idx)): win.add(Sample(int(j), 0.0, 0.0, i, im))
add_ms = 1000*(time.perf_counter() - t)/pred.frames
work = dict(detect_ms=round(det_ms, 1), detect_and_crop_ms=round(add_ms, 1))
for model in ('keras', 'tflite'):
    sc = WindowScorer(pred, model); w = FaceWindow(pred.prep); sc.warm_up(w)
    for i, (im, j) in enumerate(zip(imgs[:pred.frames], idx)): w.add(Sample(int(j), 0.0, 0.0, i, im))
    t = time.perf_counter(); sc(w); work[f'{model}_window_all_new_ms'] = round(1000*(time.perf_counter() - t), 1)
    for i, im in enumerate(imgs[pred.frames:pred.frames + 6]): w.add(Sample(10**6 + i, 0.0, 0.0, 100 + i, im))
    t = time.perf_counter(); sc(w); work[f'{model}_window_6_new_ms'] = round(1000*(time.perf_counter() - t), 1)
cap = cv2.VideoCapture(str(clip)); t = time.perf_counter(); n = 0
while cap.grab(): n += 1
work['decode_ms_per_frame'] = round(1000*(time.perf_counter() - t)/max(n, 1), 1); cap.release()

load1 = os.getloadavg()
print(f'\nwatch on {clip.name}, stride {a.stride:g} s, {pred.frames} faces of {pred.size}x{pred.size} over the last {2*a.stride:g} s; '
      f'load average {load0[0]:.1f} before, {load1[0]:.1f} after\n')
cols = list(table.columns)
print('| ' + ' | '.join(cols) + ' |\n|' + '---|'*len(cols))
for r in table.itertuples(index=False): print('| ' + ' | '.join(map(str, r)) + ' |')
print('\nthe work per call (ms):', ', '.join(f'{k} {v}' for k, v in work.items()))
