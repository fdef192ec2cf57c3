"""How each stage's time and peak memory grow with the number of videos (issue 29), on synthetic demo-generator datasets.

    .venv/bin/python bench/bench_scale.py                          # 250 and 1,000 videos
    .venv/bin/python bench/bench_scale.py --sizes 100 250 --epochs 3
    .venv/bin/python bench/bench_scale.py --sizes 250 1000 3000    # the issue's sizes (hours on 2 cores)
    .venv/bin/python bench/bench_scale.py --sizes 6000 --stages data "preprocess, default" "maps extracted" \
        --out bench/results/bench_scale_6000.csv                  # the Celeb-DF-sized dry run

Every stage is the command a user runs (`deepfake-nb data|preprocess|train|compare|report`), in its own process under
`/usr/bin/time -v` (wall time and the peak RSS of the process and its children, the papermill kernel included), in one
temporary DEEPFAKE_NB_HOME per size (or --home). A dataset of n videos is `make_demo_dataset(n_identities=n/10,
videos_per_class=5)` (real and fake, 32 frames of 160 px). Training: MobileNetV2 (the offline default weights), 12
faces of 160 px, no preset (a folder of videos would get the `real` preset), `--epochs` epochs: an LSTM head with its
features extracted in the run, again with them cached (seed 1), and the same two for the `spacetime` map head (feature
maps). Preprocessing runs twice from an empty face cache: one process (`--num-workers 1`), then the default (one per core). The slope of each stage is log(t2/t1)/log(n2/n1)
between consecutive sizes (1: linear). Writes bench/results/bench_scale.csv (commit, machine, command per row).
Not part of CI.
"""
import argparse, math, os, platform, re, shutil, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def timed(args, env) -> dict:
    "Run `args` under /usr/bin/time -v; (wall s, peak RSS GB); a failure stops the benchmark with its output"
    if not Path('/usr/bin/time').exists():
        sys.exit("bench_scale: GNU time (/usr/bin/time) measures each stage's peak memory and is not installed: "
                 "apt-get install time (Debian/Ubuntu)")
    t0 = time.perf_counter()
    r = subprocess.run(['/usr/bin/time', '-v', *map(str, args)], env=env, cwd=HERE, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        sys.exit(f"bench_scale: {' '.join(map(str, args))[:300]} failed (exit {r.returncode}):\n{(r.stdout + r.stderr)[-3000:]}")
    rss = re.search(r'Maximum resident set size \(kbytes\): (\d+)', r.stderr)
    return dict(seconds=round(wall, 1), peak_rss_gb=round(int(rss.group(1)) / 2**20, 2) if rss else float('nan'))


def stages(name: str, root: Path, epochs: int) -> list[tuple[str, list]]:
    cli = [BIN/'deepfake-nb']
    train = [*cli, 'train', '--dataset', name, '--preset', 'none', '--epochs', str(epochs), '--frames', '12', '--size', '160']
    prep = [*cli, 'preprocess', '--dataset', name, '--frames', '12', '--size', '160']
    return [('data', [*cli, 'data', '--dataset', str(root), '--name', name]),
            ('preprocess, 1 process', [*prep, '--num-workers', '1']),
            ('preprocess, default (all cores)', prep),
            ('train lstm, features extracted', [*train, '--head', 'lstm', '--seed', '0']),
            ('train lstm, features cached', [*train, '--head', 'lstm', '--seed', '1']),
            ('train spacetime, maps extracted', [*train, '--head', 'spacetime', '--seed', '0']),
            ('train spacetime, maps cached', [*train, '--head', 'spacetime', '--seed', '1']),
            ('compare', [*cli, 'compare', '--dataset', name]),
            ('report', [*cli, 'report', '--dataset', name])]


README_MARKS = ('<!-- bench_scale:begin -->', '<!-- bench_scale:end -->')


def readme_table(csv) -> str:
    "The README's scale table, from a bench_scale CSV: seconds and peak GB per stage and size, and the last slope"
    import pandas as pd
    t = pd.read_csv(csv)
    sizes = sorted(t.videos.unique())
    head = ['stage'] + [f'{n:,} videos' for n in sizes] + ([f'slope {sizes[-2]:,}-{sizes[-1]:,}'] if len(sizes) > 1 else [])
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for stage, g in t.groupby('stage', sort=False):
        g = g.set_index('videos')
        cells = [f"{g.seconds[n]:,.0f} s, {g.peak_rss_gb[n]:.2f} GB" if n in g.index else '' for n in sizes]
        if len(sizes) > 1: cells.append('' if pd.isna(g.slope.get(sizes[-1])) else f"{g.slope[sizes[-1]]:.2f}")
        lines.append('| ' + ' | '.join([stage] + cells) + ' |')
    r = t.iloc[0]
    return '\n'.join(lines) + f"\n\nMeasured at commit {r.commit} on {r.machine}, {r.epochs} epochs (`{r.command}`)."


def write_readme(csv, readme=HERE/'README.md'):
    "Put `readme_table(csv)` between the README's bench_scale marks"
    text = Path(readme).read_text()
    a, b = text.index(README_MARKS[0]) + len(README_MARKS[0]), text.index(README_MARKS[1])
    Path(readme).write_text(text[:a] + '\n' + readme_table(csv) + '\n' + text[b:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--sizes', type=int, nargs='+', default=[250, 1000], help='numbers of videos (multiples of 10)')
    ap.add_argument('--epochs', type=int, default=3, help='training epochs of every run')
    ap.add_argument('--home', default=None, help='DEEPFAKE_NB_HOME root (one folder per size; default: a temporary one)')
    ap.add_argument('--stages', nargs='*', default=[], help='only the stages whose names contain one of these words '
                    '(e.g. --sizes 6000 --stages data "preprocess, default" "maps extracted": the Celeb-DF-sized dry run)')
    ap.add_argument('--out', default=str(HERE/'bench'/'results'/'bench_scale.csv'))
    ap.add_argument('--readme', action='store_true', help="only rewrite the README's scale table from --out")
    a = ap.parse_args()
    if a.readme: return write_readme(a.out)
    import pandas as pd
    commit = subprocess.run(['git', 'rev-parse', '--short=10', 'HEAD'], cwd=HERE, capture_output=True, text=True).stdout.strip()
    machine = f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores)"
    base = Path(a.home) if a.home else Path(tempfile.mkdtemp(prefix='bench_scale_'))
    rows = []
    for n in a.sizes:
        home = base/f'n{n}'
        env = dict(os.environ, DEEPFAKE_NB_HOME=str(home), TF_CPP_MIN_LOG_LEVEL='2')
        root = home/'raw'/f'scale{n}'
        code = (f"from deepfake_nb.demo import make_demo_dataset; "
                f"make_demo_dataset({str(root)!r}, n_identities={n // 10}, videos_per_class=5)")
        rows.append(dict(videos=n, stage='generate videos', **timed([sys.executable, '-c', code], env)))
        for stage, args in stages(f'scale{n}', root, a.epochs):
            if a.stages and not any(k in stage for k in a.stages): continue
            # the default run preprocesses the same videos again, from nothing
            if stage.startswith('preprocess, default'): shutil.rmtree(home/'data'/'faces'/f'scale{n}', ignore_errors=True)
            rows.append(dict(videos=n, stage=stage, **timed(args, env)))
            print(f"{n:>6} videos  {stage:<34} {rows[-1]['seconds']:>8.1f} s  {rows[-1]['peak_rss_gb']:>6.2f} GB", flush=True)
        if not a.home: shutil.rmtree(home, ignore_errors=True)
    t = pd.DataFrame(rows)
    t['slope'] = float('nan')
    for stage, g in t.groupby('stage', sort=False):
        g = g.sort_values('videos')
        for (i0, r0), (i1, r1) in zip(g.iloc[:-1].iterrows(), g.iloc[1:].iterrows()):
            t.loc[i1, 'slope'] = round(math.log(r1.seconds / r0.seconds) / math.log(r1.videos / r0.videos), 2)
    t = t.assign(epochs=a.epochs, commit=commit, machine=machine, date=time.strftime('%Y-%m-%d %H:%M'),
                 command='python bench/bench_scale.py ' + ' '.join(sys.argv[1:]))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    t.to_csv(a.out, index=False)
    wide = t.pivot_table(index='stage', columns='videos', values=['seconds', 'peak_rss_gb'], sort=False)
    print(f"\n{commit}, {machine}, {a.epochs} epochs\n")
    print(wide.to_string())
    print('\nslope of log(time) against log(videos) between consecutive sizes:')
    print(t.dropna(subset=['slope'])[['stage', 'videos', 'slope']].to_string(index=False))
    print(f'\nwritten {a.out}')


if __name__ == '__main__':
    main()
