"""The scripts in benchmarks/: gpu_check.py runs each lesson and says how to get a GPU; bench_heads.py's quick mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _copy_of_lesson_0(folder: Path, name: str, extra_cell: str) -> Path:
    nb = nbformat.read(ROOT / "notebooks" / "00_start_here.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(extra_cell))
    path = folder / name
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_gpu_check_reports_each_notebook_and_fails_on_a_broken_one(tmp_path):
    good = _copy_of_lesson_0(tmp_path, "good.ipynb", "import os\nassert os.environ['TOYATTN_DEVICE'] == 'cpu'")
    broken = _copy_of_lesson_0(tmp_path, "broken.ipynb", "raise RuntimeError('deliberately broken')")
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--skip-tests", "--skip-benchmarks",
                           "--notebooks", str(good), str(broken), "--out", str(out), "--timeout", "300"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    results = {Path(n["notebook"]).name: n for n in json.loads((out / "gpu-check.json").read_text())["notebooks"]}
    assert results["good.ipynb"]["ok"], results["good.ipynb"]
    assert not results["broken.ipynb"]["ok"] and "deliberately broken" in results["broken.ipynb"]["error"]
    table = (out / "gpu-check.md").read_text()
    assert "| pass |" in table and "FAIL: " in table and "device: cpu" in table


def test_gpu_check_without_a_gpu_says_how_to_get_one(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cuda", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "torch.cuda.is_available() is False" in proc.stderr and "--device cpu" in proc.stderr


def test_benchmark_quick_mode_prints_one_table(capsys):
    import runpy
    from pathlib import Path

    bench = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "bench_heads.py"))
    bench["main"](["--quick", "--device", "cpu"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.strip().startswith(("12 ", "32 ", "128 "))]
    assert len(rows) == 6, out  # 3 head counts x (raw, invariant)
    assert "invariant cost matrix takes" in out and "Gram blocks" in out
