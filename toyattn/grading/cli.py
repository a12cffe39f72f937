"""The command line of grading: ``toyattn grade`` (a class, each notebook sandboxed) and ``toyattn run`` (one notebook)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from toyattn.grading.discovery import (
    FLAT_SEPARATOR,
    GradingError,
    find_submissions,
    load_problem_sets,
    read_notebook_file,
)
from toyattn.grading.execute import DEFAULT_CELL_TIMEOUT, DEFAULT_TIMEOUT, execute_notebook
from toyattn.grading.grade import GradeOptions, grade_all
from toyattn.grading.reports import write_reports
from toyattn.grading.sandbox import Limits, confinement_notes, process_limit_note, sandbox_problem
from toyattn.grading.status import NotebookResult, notebook_problems


def _course_root(arg: str | None) -> Path:
    from toyattn import course

    if arg:
        return Path(arg).resolve()
    try:
        return course.find_root()
    except FileNotFoundError:
        here = Path(__file__).resolve().parents[2]  # an editable install sits in the checkout
        if (here / "solutions").is_dir():
            return here
        raise


def class_problem_sets(subs: list) -> set[str]:
    """The problem sets more than half of the students handed in (else those handed in by the most)."""
    from collections import Counter

    counts = Counter(name for name, _ in {(s.problem_set, s.student) for s in subs})
    students = len({s.student for s in subs})
    assigned = {name for name, k in counts.items() if 2 * k > students}
    return assigned or {name for name, k in counts.items() if k == max(counts.values())}


def default_jobs() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def check_kernel(kernel_name: str | None) -> None:
    """Raise GradingError naming the installed kernels when ``kernel_name`` is not one of them."""
    if kernel_name is None:
        return
    from jupyter_client.kernelspec import KernelSpecManager

    names = sorted(KernelSpecManager().find_kernel_specs())
    if kernel_name not in names:
        raise GradingError(
            f"No Jupyter kernel named {kernel_name!r}; installed: {', '.join(names) or 'none'}. "
            f"Leave --kernel out to use this Python, or install one with `python -m ipykernel install --user --name NAME`."
        )


def _limits(args: argparse.Namespace) -> Limits:
    if (min(args.memory, args.max_processes, args.max_file_size, args.scratch_size) <= 0
            or (args.cpu_time is not None and args.cpu_time <= 0)):
        raise GradingError("--memory, --max-processes, --max-file-size, --scratch-size and --cpu-time must be positive.")
    cpu = args.cpu_time if args.cpu_time is not None else 4 * args.timeout + 60
    return Limits(int(args.memory * 2**30), args.max_processes, int(args.max_file_size * 2**20), int(cpu),
                  int(args.scratch_size * 2**20))


def _isolation(options: GradeOptions) -> str:
    if not options.sandbox:
        return ("**Not sandboxed** (`--no-sandbox`): each notebook ran with the grader's own rights; a student's "
                "code could read other submissions and change files and grades.")
    notes = [n for n in (process_limit_note(), *confinement_notes()) if n]
    return ("Each notebook ran in its own sandbox (bubblewrap: no network, no capability, no view of other "
            f"submissions, `solutions/` or this folder; limits: {options.limits.describe()})."
            + ("" if any("cgroup" in n for n in notes) else " Memory and processes are also capped for each "
               "sandbox as a whole (a cgroup).")
            + "".join(f" Note: {n}." for n in notes))


def _validate(args: argparse.Namespace, root: Path, out: Path, submissions_dir: Path) -> None:
    if _inside(out, submissions_dir):
        raise GradingError(
            f"--out {out} is inside the submissions folder {submissions_dir}; the executed copies would be "
            f"graded next time. Choose a folder outside it (the default is ./grading)."
        )
    if _inside(out, root / "solutions") or _inside(out, root / "toyattn"):
        raise GradingError(f"--out {out} is inside the course's own files; choose a separate folder.")
    if args.jobs < 1 or args.timeout <= 0 or args.cell_timeout <= 0:
        raise GradingError("--jobs must be at least 1 and --timeout / --cell-timeout positive seconds.")
    if args.no_sandbox:
        check_kernel(args.kernel)
        return
    if args.kernel:
        raise GradingError("--kernel works only with --no-sandbox: the sandbox runs this Python environment only.")
    why = sandbox_problem()
    if why:
        raise GradingError(f"cannot sandbox the notebooks: {why}. Grading untrusted code unsandboxed is "
                           f"refused; pass --no-sandbox only for notebooks you trust (see docs/instructors.md).")


def cmd_grade(args: argparse.Namespace) -> int:
    try:
        root = _course_root(args.root)
        sets = load_problem_sets(root, args.problem_set)
        submissions_dir, out = Path(args.submissions), Path(args.out)
        _validate(args, root, out, submissions_dir)
        options = GradeOptions(
            timeout=args.timeout,
            cell_timeout=min(args.cell_timeout, args.timeout),
            kernel_name=args.kernel,
            executed_dir=None if args.no_executed else str(out / "executed"),
            sandbox=not args.no_sandbox,
            limits=_limits(args),
            hidden=(str(submissions_dir.resolve()), str((root / "solutions").resolve()), str(out.resolve())),
        )
        subs, warnings = find_submissions(submissions_dir, sets)
        if not subs:
            raise GradingError(
                f"No submissions found in {submissions_dir}. Expected <student>/<NN_name>.ipynb (any depth), "
                f"nbgrader's submitted/<student>/<assignment>/<NN_name>.ipynb, or <student>{FLAT_SEPARATOR}<NN_name>.ipynb; "
                f"problem sets: {', '.join(sets)}." + (f" Skipped: {warnings[0]}" if warnings else "")
            )
    except (GradingError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.problem_set:
        # Grade this week's problem sets (handed in by the class), not every one the course has, nor
        # those a few students handed in: totals would count them for everyone.
        assigned = class_problem_sets(subs)
        for name in sorted({s.problem_set for s in subs} - assigned):
            k = len({s.student for s in subs if s.problem_set == name})
            warnings.append(f"{name} not graded: handed in by only {k} of {len({s.student for s in subs})} "
                            f"students (pass --problem-set {name}, once per problem set, to grade it)")
        sets = {name: ps for name, ps in sets.items() if name in assigned}
    n = len(subs)
    print(f"grading {n} notebook(s) from {len({s.student for s in subs})} student(s), {args.jobs} at a time "
          f"({'sandboxed' if options.sandbox else 'NOT sandboxed'}; limits: {options.timeout:.0f} s per notebook, "
          f"{options.cell_timeout:.0f} s per cell)", file=sys.stderr)
    done = 0

    def progress(r: NotebookResult) -> None:
        nonlocal done
        done += 1
        print(f"[{done}/{n}] {r.student!r} / {r.problem_set}: {r.n_passed}/{len(r.exercises)} passed, "
              f"{r.outcome} ({r.seconds:.1f} s)", file=sys.stderr)

    start = time.monotonic()
    results = grade_all(subs, sets, options, jobs=args.jobs, on_result=progress)
    text = write_reports(results, sets, out, warnings=warnings, seconds=time.monotonic() - start,
                         isolation=_isolation(options))
    print(text)
    print(f"wrote {out}/summary.md, grades.csv, scores.csv, notebooks.csv, feedback/"
          + ("" if args.no_executed else f" and the executed notebooks in {out}/executed/"), file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import nbformat

    src = Path(args.notebook)
    if not src.is_file():
        print(f"error: {src} is not a file; give a notebook (.ipynb or py:percent .py).", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else src.with_name(f"{src.stem}.executed.ipynb")
    if out.resolve() == src.resolve():
        print("error: --out must differ from the notebook itself (the source stays without outputs).", file=sys.stderr)
        return 2
    try:
        check_kernel(args.kernel)
        nb = read_notebook_file(src)
    except Exception as err:  # noqa: BLE001 - an unknown kernel or an unreadable notebook: say which
        print(f"error: {err}", file=sys.stderr)
        return 2
    cwd = Path(args.cwd) if args.cwd else src.resolve().parent
    print(f"running {src} in {cwd} (limits: {args.timeout:.0f} s in all, {args.cell_timeout:.0f} s per cell)", file=sys.stderr)
    run = execute_notebook(nb, cwd=cwd, timeout=args.timeout, cell_timeout=min(args.cell_timeout, args.timeout),
                           kernel_name=args.kernel)
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    print(f"wrote {out} ({run.seconds:.1f} s)", file=sys.stderr)
    outcome, problems = notebook_problems(run)
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    if outcome == "ok":
        return 0
    return 0 if args.allow_errors and outcome == "errors" else 1


def register_commands(sub) -> None:
    """Add ``grade`` and ``run`` to the ``toyattn`` command's sub-parsers."""
    p = sub.add_parser(
        "grade",
        help="run every student's exercise notebook in its own sandbox and report which checks pass",
        description="Grade submitted exercise notebooks, each in a bubblewrap sandbox; the checks' answers are judged "
        "outside it. Layouts: SUBMISSIONS/<student>/<NN_name>.ipynb (any depth, so nbgrader's "
        "submitted/<student>/<assignment>/ works), or SUBMISSIONS/<student>__<NN_name>.ipynb. "
        "Writes summary.md, grades.csv, scores.csv, notebooks.csv, feedback/ and executed/ into --out.",
    )
    p.add_argument("submissions", help="folder holding the submissions")
    p.add_argument("--out", default="grading", help="folder for the reports (default: ./grading)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds each notebook may run in all (default {DEFAULT_TIMEOUT:.0f})")
    p.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT,
                   help=f"seconds one cell may run before it is interrupted (default {DEFAULT_CELL_TIMEOUT:.0f})")
    p.add_argument("--jobs", "-j", type=int, default=default_jobs(),
                   help="notebooks run at the same time, one sandbox each (default: CPU cores, at most 4)")
    p.add_argument("--problem-set", action="append", default=None, metavar="NN_name",
                   help="grade only this problem set (repeatable; default: every problem set someone handed in)")
    p.add_argument("--root", default=None, help="course checkout holding solutions/ (default: found from here)")
    p.add_argument("--memory", type=float, default=4.0, metavar="GiB",
                   help="address space each process in a sandbox may use, and the sandbox in all where a cgroup "
                   "can be made (default 4 GiB)")
    p.add_argument("--max-processes", type=int, default=512, metavar="N",
                   help="processes and threads in a sandbox (default 512; a root grader runs each notebook as an "
                   "unprivileged uid of its own so that Linux enforces it)")
    p.add_argument("--max-file-size", type=float, default=256.0, metavar="MiB",
                   help="largest file a notebook may write (default 256 MiB)")
    p.add_argument("--scratch-size", type=float, default=512.0, metavar="MiB",
                   help="total size of what a notebook may write, in its scratch folder and again in /tmp "
                   "(default 512 MiB; the scratch folder is capped when the grader runs as root)")
    p.add_argument("--cpu-time", type=float, default=None, metavar="S",
                   help="CPU seconds per process (default: 4 x --timeout + 60, so a few threads fit)")
    p.add_argument("--no-sandbox", action="store_true",
                   help="run notebooks WITHOUT the sandbox (only for trusted notebooks, or where bwrap cannot run); "
                   "the summary says so")
    p.add_argument("--kernel", default=None,
                   help="Jupyter kernel name (with --no-sandbox only; default: this Python environment)")
    p.add_argument("--no-executed", action="store_true", help="do not save the executed notebooks")
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser(
        "run",
        help="execute a notebook headless (e.g. in a batch job) and save an executed copy",
        description="Execute every cell of a notebook (.ipynb or py:percent .py) in a fresh kernel and write an "
        "executed copy; exit 1 if a cell failed, timed out or the kernel died. Not sandboxed: for your own notebooks.",
    )
    p.add_argument("notebook")
    p.add_argument("--out", default=None, help="executed copy (default: NAME.executed.ipynb beside it)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds for the whole notebook (default 3600)")
    p.add_argument("--cell-timeout", type=float, default=1800.0, help="seconds per cell (default 1800)")
    p.add_argument("--cwd", default=None, help="working folder of the kernel (default: the notebook's folder)")
    p.add_argument("--kernel", default=None, help="Jupyter kernel name (default: this Python environment)")
    p.add_argument("--allow-errors", action="store_true", help="exit 0 even if some cells raised")
    p.set_defaults(func=cmd_run)
