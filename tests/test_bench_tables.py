"The README's measured tables are read from the benchmarks' CSVs, not typed in"
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bench(name):
    spec = importlib.util.spec_from_file_location(name, ROOT/'bench'/f'{name}.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_scale_table_is_read_from_bench_scale_csv():
    m = _bench('bench_scale')
    text = (ROOT/'README.md').read_text()
    a, b = (text.index(k) for k in m.README_MARKS)
    want = m.readme_table(ROOT/'bench'/'results'/'bench_scale.csv')
    assert text[a + len(m.README_MARKS[0]):b].strip() == want.strip(), \
        "README's scale table differs from bench/results/bench_scale.csv: run python bench/bench_scale.py --readme"
