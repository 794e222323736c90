"""The README's Python examples run as written and print what their comments show."""

import math
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _shown(code: str) -> list[str]:
    """The comments of the example's ``print(...)`` lines: what each prints."""
    return [line.split("  # ", 1)[1].strip() for line in code.splitlines()
            if line.startswith("print(") and "  # " in line]


def _agrees(printed: str, shown: str) -> bool:
    """Token by token; ``~x`` shown stands for a number within 5 % of x."""
    got, want = printed.split(), shown.split()
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        if w.startswith("~"):
            if not math.isclose(float(g), float(w[1:]), rel_tol=0.05):
                return False
        elif g != w:
            return False
    return True


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        capsys.readouterr()
        exec(compile(code, str(README), "exec"), {})
        printed = capsys.readouterr().out.splitlines()
        shown = _shown(code)
        assert len(printed) == len(shown), (printed, shown)
        for got, want in zip(printed, shown):
            assert _agrees(got, want), f"README shows {want!r}, the example prints {got!r}"
    assert (tmp_path / "ivim_maps" / "D.nii.gz").exists()
