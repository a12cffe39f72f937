"""How much parallel kernels speed up `toyattn grade`: the same warm-up class graded with 1 and with N jobs.

Each submission costs a kernel start plus importing torch and running the notebook, mostly CPU,
so the speed-up is bounded by the cores that are free. Prints one table; about a minute on 2 cores.

    .venv/bin/python benchmarks/bench_grading.py [--students 8] [--jobs 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from toyattn import course, grading

ROOT = Path(__file__).resolve().parents[1]
PS = "00_warmup"


def make_class(folder: Path, n: int) -> None:
    """n students: alternately the solution (all pass) and the untouched exercise (all stubs)."""
    solved = (ROOT / "solutions" / f"{PS}.ipynb").read_text(encoding="utf-8")
    stubs = (ROOT / "exercises" / f"{PS}.ipynb").read_text(encoding="utf-8")
    for i in range(n):
        (folder / f"s{i:02d}").mkdir(parents=True)
        (folder / f"s{i:02d}" / f"{PS}.ipynb").write_text(solved if i % 2 == 0 else stubs, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=max(2, min(4, os.cpu_count() or 2)))
    args = parser.parse_args()
    sets = grading.load_problem_sets(course.find_root(ROOT), [PS])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        make_class(Path(tmp), args.students)
        subs, _ = grading.find_submissions(Path(tmp), sets)
        for jobs in (1, args.jobs):
            start = time.perf_counter()
            results = grading.grade_all(subs, sets, grading.GradeOptions(timeout=120, cell_timeout=60), jobs=jobs)
            seconds = time.perf_counter() - start
            passed = sum(r.n_passed for r in results)
            rows.append((jobs, seconds, passed))
    base = rows[0][1]
    print(f"grading {args.students} warm-up submissions ({os.cpu_count()} CPU cores visible)")
    print(f"{'jobs':>5} {'seconds':>9} {'s/notebook':>11} {'speed-up':>9} {'checks passed':>14}")
    for jobs, seconds, passed in rows:
        print(f"{jobs:>5} {seconds:>9.1f} {seconds / args.students:>11.2f} {base / seconds:>8.2f}x {passed:>14}")
    assert rows[0][2] == rows[1][2], "parallel grading changed the results"


if __name__ == "__main__":
    main()
