"""What the sandbox costs `toyattn grade`: the same warm-up notebooks graded sandboxed and unsandboxed, side by side.

Each notebook is graded once per round in each mode, the two modes alternating (so a busy
machine slows both alike); one notebook at a time, so the time per notebook is the cost of one
sandbox (bwrap start, runner start, kernel start, importing torch, running the cells, judging).
Prints one table with the median seconds per notebook and the ratio; target: at most 1.2x.

    .venv/bin/python benchmarks/bench_grading.py [--students 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from toyattn import grading

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
    parser.add_argument("--students", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    why = grading.sandbox_problem()
    if why:
        raise SystemExit(f"cannot compare: notebooks cannot be sandboxed here ({why})")
    sets = grading.load_problem_sets(ROOT, [PS])
    seconds: dict[bool, list[float]] = {True: [], False: []}
    passed: dict[bool, int] = {True: 0, False: 0}
    with tempfile.TemporaryDirectory() as tmp:
        make_class(Path(tmp), args.students)
        subs, _ = grading.find_submissions(Path(tmp), sets)
        for r in range(args.rounds):
            for sandbox in ((True, False) if r % 2 == 0 else (False, True)):
                options = grading.GradeOptions(timeout=120, cell_timeout=60, sandbox=sandbox)
                for sub in subs:
                    result = grading.grade_submission(sub, sets[PS], options)
                    seconds[sandbox].append(result.seconds)
                    passed[sandbox] += result.n_passed
    n = args.students * args.rounds
    plain, boxed = statistics.median(seconds[False]), statistics.median(seconds[True])
    print(f"grading {args.students} warm-up notebooks x {args.rounds} rounds per mode, one at a time "
          f"({os.cpu_count()} CPU cores visible, load {os.getloadavg()[0]:.1f})")
    print(f"{'mode':>12} {'notebooks':>10} {'median s/notebook':>18} {'min':>7} {'max':>7} {'checks passed':>14}")
    for label, key in (("unsandboxed", False), ("sandboxed", True)):
        xs = seconds[key]
        print(f"{label:>12} {n:>10} {statistics.median(xs):>18.2f} {min(xs):>7.2f} {max(xs):>7.2f} {passed[key]:>14}")
    print(f"sandboxed / unsandboxed: {boxed / plain:.2f}x (median per notebook)")
    assert passed[True] == passed[False], "the sandbox changed the results"


if __name__ == "__main__":
    main()
