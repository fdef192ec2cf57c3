"""The package's shape (issue 28's floors): no module over 600 lines, no function over 60, at most 1% of lines over 120
columns (nbdev writes `__all__` and the module docstring itself; every other line comes from a notebook cell that
ruff checks at 120 columns, `make lint`)."""
import ast
from pathlib import Path
import deepfake_nb

MODULES = sorted(p for p in Path(deepfake_nb.__file__).parent.glob('*.py') if p.name != '_modidx.py')

def test_modules_are_at_most_600_lines():
    long = {p.name: n for p in MODULES if (n := len(p.read_text().splitlines())) > 600}
    assert not long, f"modules over 600 lines (split them by job): {long}"

def test_functions_are_at_most_60_lines():
    long = {}
    for p in MODULES:
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60:
                long[f'{p.stem}.{n.name}'] = n.end_lineno - n.lineno + 1
    assert not long, f"functions over 60 lines (split them into steps): {long}"

def test_at_most_one_percent_of_lines_over_120_columns():
    lines = [l for p in MODULES for l in p.read_text().splitlines()]
    over = [l for l in lines if len(l) > 120]
    assert len(over) <= 0.01 * len(lines), f"{len(over)} of {len(lines)} package lines are over 120 columns"
