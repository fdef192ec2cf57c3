"""Preprocessing speed on the same videos, in one run: the original notebooks' way, this pipeline (each detector, 1 and 2 workers), and the decode floor.

    .venv/bin/python bench/bench_preprocess.py                 # ../shared videos (FF++ c23, DFDC) and the demo data
    .venv/bin/python bench/bench_preprocess.py --sets demo --detectors haar yunet
    .venv/bin/python bench/bench_preprocess.py --sets ffpp demo --detectors yunet --prep plain landmarks align   # what landmarks and alignment cost

(a) original: the first 12 frames of each video, a Haar cascade created anew for every frame and run at full resolution (OpenCV's default
    scaleFactor 1.1, and the tutorials' 1.3), the largest face cropped and resized; one process.
(b) pipeline: `preprocess_manifest` into an empty face cache (decode, detect, track, crop, write .npz) with `frames` sampled over the whole video.
(c) floor: `read_frames` alone (decoding the same sampled frames, nothing else), with the same number of processes.
`--prep`: the pipeline's crops as `plain` (landmarks=False), `landmarks` (the default: the 68 landmarks of every face cached) or `align`
(landmarks, each frame rotated so the eyes are level). A second table gives, per set and detector, the milliseconds per face of the
68-point predictor alone and of a plain and an aligned crop, on the tracked boxes of the sampled frames (one process, best of `--repeat`).
Ratios are to the floor with the same number of workers (the original way: to the 1-process floor). Worker runs include starting the processes
(and, for MTCNN, loading TensorFlow in each). Each configuration runs `--repeat` times, interleaved; the best time is reported.
"""
import argparse, os, sys, time, tempfile, multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
import numpy as np, pandas as pd, cv2
from deepfake_nb.core import home_at, shared_dir, data_dir
from deepfake_nb import preprocess as pp
from deepfake_nb.data import make_demo_dataset, MANIFEST_COLUMNS

def original_way(path, n=12, size=160, scale_factor=1.1):
    "The original notebooks: first `n` frames, a new cascade per frame, full-resolution detection, largest face"
    cap = cv2.VideoCapture(str(path)); crops = []
    for _ in range(n):
        ok, fr = cap.read()
        if not ok: break
        cascade = cv2.CascadeClassifier(cv2.data.haarcascades + 'haarcascade_frontalface_default.xml')
        gray = cv2.cvtColor(fr, cv2.COLOR_BGR2GRAY)
        faces = cascade.detectMultiScale(gray, scale_factor, 5)
        if len(faces):
            x, y, w, h = max(faces, key=lambda b: b[2]*b[3])
            crops.append(cv2.resize(fr[y:y+h, x:x+w], (size, size)))
    cap.release()
    return len(crops)

def _floor_one(args):
    path, frames, threads = args
    return len(pp.read_frames(path, frames, threads)[0])

def floor(paths, frames, workers):
    "Decode the sampled frames of every video and nothing else"
    if workers == 1: return sum(_floor_one((p, frames, 0)) for p in paths)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context('spawn'), initializer=pp._init_worker) as ex:
        return sum(ex.map(_floor_one, [(p, frames, 1) for p in paths]))

PREPS = {'plain': dict(landmarks=False), 'landmarks': dict(landmarks=True), 'align': dict(landmarks=True, align=True)}

def pipeline(paths, frames, detector, workers, options, prep='landmarks'):
    "preprocess_manifest on these videos into an empty cache; returns the face-found rate"
    with tempfile.TemporaryDirectory() as d, home_at(d):
        m = Path(d)/'bench.csv'
        pd.DataFrame(dict(video_id=[f'v{i:04d}' for i in range(len(paths))], path=[str(p) for p in paths], label=[i % 2 for i in range(len(paths))],
                          identity='', group=[f'v{i}' for i in range(len(paths))], method='', split='train'))[MANIFEST_COLUMNS].to_csv(m, index=False)
        s = pp.preprocess_manifest(m, frames=frames, detector=detector, num_workers=workers, detector_options=options, progress=False, **PREPS[prep])
        assert (s.error == '').all(), s.error[s.error != ''].tolist()
        return s.faces_found.sum()/s.frames.sum()

def landmark_cost(paths, frames, detector, options):
    "Milliseconds per face: the 68-point predictor, a plain crop and an aligned crop, on the tracked boxes of the sampled frames"
    det = pp.get_detector(detector, **options); pp.landmark_predictor()                         # loaded outside the timings
    t_lm = t_crop = t_rot = 0.0; n = 0
    for p in paths:
        imgs, _, _ = pp.read_frames(p, frames)
        boxes = pp.fill_missing_boxes(pp.track_faces([det(im) for im in imgs]), imgs[0].shape)
        for im, b in zip(imgs, boxes):
            t0 = time.perf_counter(); pts = pp.landmarks_68(im, b, detector)
            t1 = time.perf_counter(); pp.square_crop(im, b)
            t2 = time.perf_counter(); pp.square_crop(im, b, angle=pp.eye_angle(pts) or 1e-3)
            t3 = time.perf_counter()
            t_lm, t_crop, t_rot, n = t_lm+t1-t0, t_crop+t2-t1, t_rot+t3-t2, n+1
    return {'faces': n, 'landmarks ms/face': 1e3*t_lm/n, 'crop ms/face': 1e3*t_crop/n, 'aligned crop ms/face': 1e3*t_rot/n}

def timed(f, *a):
    t0 = time.perf_counter(); out = f(*a); return time.perf_counter()-t0, out

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--sets', nargs='+', default=['ffpp', 'dfdc', 'demo'])
    ap.add_argument('--detectors', nargs='+', default=['haar', 'yunet', 'mtcnn'])
    ap.add_argument('--workers', nargs='+', type=int, default=[1, 2])
    ap.add_argument('--frames', type=int, default=12)
    ap.add_argument('--demo-videos', type=int, default=32, help='demo clips to time (160x160, 32 frames each)')
    ap.add_argument('--repeat', type=int, default=2, help='interleaved rounds; the best time of each is reported')
    ap.add_argument('--prep', nargs='+', default=['landmarks'], choices=list(PREPS), help='pipeline crops: plain, landmarks (the default) or align')
    ap.add_argument('--yunet', default=None, help='YuNet ONNX file (default: the packaged face_detection_yunet_2023mar.onnx)')
    a = ap.parse_args()
    sh = shared_dir()
    sets = {}
    if 'ffpp' in a.sets or 'dfdc' in a.sets:
        if sh is None: print('../shared is absent: only the demo set is timed')
        else:
            if 'ffpp' in a.sets: sets['ffpp c23 (480p-1080p)'] = sorted((sh/'data/videos/ffpp_c23').rglob('*.mp4'))
            if 'dfdc' in a.sets: sets['dfdc (1080p)'] = sorted((sh/'data/videos/dfdc').rglob('*.mp4'))
    if 'demo' in a.sets:
        demo = make_demo_dataset(Path(tempfile.gettempdir())/'deepfake_nb_bench_demo', n_identities=max(1, a.demo_videos//8), videos_per_class=4)
        sets['demo (160x160)'] = sorted(demo.rglob('*.mp4'))[:a.demo_videos]
    dets = a.detectors
    opts = {d: dict(model=str(a.yunet)) if d == 'yunet' and a.yunet else {} for d in dets}
    for d in dets: pp.get_detector(d, **opts[d])                                       # load once (TensorFlow for MTCNN) outside the 1-worker timings
    pp.landmark_predictor()
    print(f'{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), OpenCV {cv2.__version__}, {a.frames} frames per video, best of {a.repeat}\n')
    rows, lm_rows = [], []
    for name, paths in sets.items():
        for p in paths: _floor_one((p, a.frames, 0))                      # warm the file cache
        cfgs = [(f'(c) floor: decode sampled frames', w, lambda w=w: (floor(paths, a.frames, w), np.nan)[1]) for w in a.workers]
        cfgs += [(f'(a) original: first 12, Haar per frame, sf {sf}', 1, lambda sf=sf: sum(original_way(p, 12, 160, sf) for p in paths)/(12*len(paths)))
                 for sf in (1.1, 1.3)]
        cfgs += [(f'(b) pipeline: {d}' + (f', {prep}' if a.prep != ['landmarks'] else ''), w, lambda d=d, w=w, prep=prep: pipeline(paths, a.frames, d, w, opts[d], prep))
                 for d in dets for prep in a.prep for w in a.workers]
        best = {}
        for r in range(a.repeat):                                            # interleaved rounds, the best time of each (a shared machine is noisy)
            for way, w, f in cfgs:
                t, found = timed(f)
                if (way, w) not in best or t < best[way, w][0]: best[way, w] = (t, found)
        fl = {w: best['(c) floor: decode sampled frames', w][0] for w in a.workers}
        for way, w, _ in cfgs:
            t, found = best[way, w]
            rows.append(dict(set=name, way=way, workers=w, videos=len(paths), s=t, **{'videos/s': len(paths)/t, 'x floor': t/fl[w] if w in fl else t/fl[min(fl)]}, found=found))
        print(pd.DataFrame([r for r in rows if r['set'] == name]).to_string(index=False, float_format=lambda v: f'{v:.2f}'), '\n', flush=True)
        for d in dets:
            costs = [landmark_cost(paths, a.frames, d, opts[d]) for _ in range(a.repeat)]
            lm_rows.append(dict(set=name, detector=d, **{k: min(c[k] for c in costs) for k in costs[0]}))
    print(pd.DataFrame(lm_rows).to_string(index=False, float_format=lambda v: f'{v:.2f}'), flush=True)
    return rows, lm_rows

if __name__ == '__main__': main()
