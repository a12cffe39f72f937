"""Grading a class's exercise notebooks, and running any notebook headless (``toyattn grade`` / ``toyattn run``).

Not taught in a lesson: this is the instructor's side of the course (see ``docs/instructors.md``).

How a submission is graded
--------------------------
1. The submission (an ``.ipynb``, or a paired py:percent ``.py`` read with jupytext) is **copied** into
   a fresh temporary folder, and its kernel starts there. The original file is only read; the
   student's code runs with that scratch folder as its working directory, so relative paths it writes
   land in the scratch folder, which is deleted afterwards.
2. Before the student's first cell, the grader runs one hidden cell in the same kernel that wraps every
   registered exercise check (``toyattn.checks.core.REGISTRY``) so that each call records its outcome
   (passed, failed, not implemented, error, interrupted) in a file outside the working folder. The
   student sees exactly the same output as in class; a hand-printed "✅ PASSED" line counts for nothing.
3. Every cell runs with ``allow_errors`` (an error in one exercise does not stop the next), a per-cell
   time limit and an overall time limit for the notebook. A cell over its limit is interrupted (as the
   stop button does) and the notebook goes on with the next cell while time is left; a kernel that
   dies (a crash, ``os._exit``, running out of memory) ends that notebook only.
4. The exercises expected in a problem set are the ``checks.check_xxx(...)`` calls in
   ``solutions/NN_name.py``. For each student and each of them the grader reports one status
   (:data:`STATUSES`), plus the notebook-level problems (unreadable file, syntax errors, time-outs,
   a dead kernel, a deleted check cell, errors in other cells).

Where submissions are looked for (``SUBMISSIONS`` is the folder given on the command line):

* ``SUBMISSIONS/<student>/<NN_name>.ipynb`` (or ``.py``), at any depth below the student's folder;
  so nbgrader's exchange layout ``submitted/<student>/<assignment>/<NN_name>.ipynb`` works as is
  (when ``SUBMISSIONS/submitted/`` exists it is used);
* ``SUBMISSIONS/<student>__<NN_name>.ipynb`` (two underscores), for a flat folder of files.

A file name matches problem set ``NN_name`` when its name starts with ``NN_name`` (so
``00_warmup-Copy1.ipynb`` and ``00_warmup (2).ipynb`` count) or, failing that, with the same ``NN_``
number. When a student hands in both twins of a pair, the ``.ipynb`` is graded.

Results (in ``--out``, default ``./grading``): ``grades.csv`` (one row per student and exercise),
``scores.csv`` (one row per student), ``notebooks.csv`` (one row per graded notebook, with its
problems and time), ``summary.md`` (the readable report, also printed), ``feedback/<student>.md``
(one page per student) and ``executed/<student>/<NN_name>.ipynb`` (each notebook with its outputs).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

# Per exercise, best first. "not run": the notebook stopped (time limit, dead kernel) before its check.
STATUSES = ("passed", "failed", "not implemented", "error", "timeout", "missing", "not run", "not submitted")
NOTEBOOK_SUFFIXES = (".ipynb", ".py")
FLAT_SEPARATOR = "__"
DEFAULT_TIMEOUT = 600.0
DEFAULT_CELL_TIMEOUT = 300.0

_CHECK_CALL = re.compile(r"\bchecks\.(check_\w+)\s*\(")
_NN_PREFIX = re.compile(r"^(\d+)_")


class GradingError(ValueError):
    """A problem with the grading run itself (no solutions, no submissions, a bad output folder)."""


# --------------------------------------------------------------------------------------------------
# What a problem set asks: read from solutions/NN_name.py
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exercise:
    """One graded exercise: the check that grades it and the heading it sits under in the solution."""

    check: str
    title: str


@dataclass(frozen=True)
class ProblemSet:
    name: str
    exercises: tuple[Exercise, ...]
    solution: str


def _read_notebook_file(path: Path):
    """An nbformat v4 notebook from an ``.ipynb`` or a (py:percent) ``.py`` file."""
    import nbformat

    if path.suffix == ".py":
        import jupytext

        return jupytext.read(path, fmt="py:percent")
    return nbformat.read(path, as_version=4)


def problem_set_from_solution(path: Path) -> ProblemSet:
    """The exercises of one problem set: every ``checks.check_xxx(`` call in its solution, in order.

    Each exercise is titled by the nearest markdown heading above its check (e.g. "Exercise 1: ...").
    """
    nb = _read_notebook_file(path)
    exercises: dict[str, Exercise] = {}
    title = ""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            headings = [ln.lstrip("#").strip() for ln in cell.source.splitlines() if ln.startswith("#")]
            if headings:
                title = headings[-1]
        elif cell.cell_type == "code":
            for name in _CHECK_CALL.findall(cell.source):
                exercises.setdefault(name, Exercise(name, title))
    return ProblemSet(path.stem, tuple(exercises.values()), str(path))


def load_problem_sets(root: Path, only: Sequence[str] | None = None) -> dict[str, ProblemSet]:
    """Every problem set in ``root/solutions`` (or those named in ``only``) that has at least one check."""
    sol_dir = Path(root) / "solutions"
    if not sol_dir.is_dir():
        raise GradingError(f"No solutions/ folder in {root}: pass the course checkout with --root.")
    sets = {}
    for py in sorted(sol_dir.glob("*.py")):
        if py.name.startswith("_"):
            continue
        ps = problem_set_from_solution(py)
        if ps.exercises:
            sets[ps.name] = ps
    if only:
        unknown = [name for name in only if name not in sets]
        if unknown:
            raise GradingError(
                f"Unknown problem set(s) {unknown}; the solutions with checks are {sorted(sets)}."
            )
        sets = {name: sets[name] for name in only}
    if not sets:
        raise GradingError(f"No solution in {sol_dir} calls a `checks.check_...(` function, so nothing can be graded.")
    return sets


# --------------------------------------------------------------------------------------------------
# Which files are whose
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    student: str
    problem_set: str
    path: str


def match_problem_set(stem: str, names: Iterable[str]) -> str | None:
    """The problem set a file stem belongs to: ``00_warmup-Copy1`` -> ``00_warmup``; None if none fits."""
    names = sorted(names, key=len, reverse=True)
    for name in names:
        if stem == name or stem.startswith(name):
            return name
    m = _NN_PREFIX.match(stem)
    if m:
        same_number = [n for n in names if _NN_PREFIX.match(n) and _NN_PREFIX.match(n).group(1) == m.group(1)]
        if len(same_number) == 1:
            return same_number[0]
    return None


def _is_hidden(path: Path, base: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(base).parts)


def find_submissions(folder: Path, problem_sets: Iterable[str]) -> tuple[list[Submission], list[str]]:
    """The submissions under ``folder`` (layouts in the module docstring) and warnings about skipped files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GradingError(f"{folder} is not a folder; give the folder that holds the students' submissions.")
    names = list(problem_sets)
    base = folder / "submitted" if (folder / "submitted").is_dir() else folder
    candidates: dict[tuple[str, str], list[Path]] = {}
    warnings: list[str] = []

    def add(student: str, path: Path, stem: str) -> None:
        ps = match_problem_set(stem, names)
        if ps is None:
            warnings.append(f"skipped {path}: its name matches no problem set ({', '.join(names)})")
            return
        candidates.setdefault((student, ps), []).append(path)

    for entry in sorted(base.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix in NOTEBOOK_SUFFIXES:
            student, sep, rest = entry.stem.partition(FLAT_SEPARATOR)
            if not sep or not student or not rest:
                warnings.append(
                    f"skipped {entry}: a file directly in the submissions folder must be named "
                    f"<student>{FLAT_SEPARATOR}<NN_name>{entry.suffix}"
                )
                continue
            add(student, entry, rest)
        elif entry.is_dir():
            for path in sorted(entry.rglob("*")):
                if path.is_file() and path.suffix in NOTEBOOK_SUFFIXES and not _is_hidden(path, entry):
                    add(entry.name, path, path.stem)

    submissions = []
    for (student, ps), paths in sorted(candidates.items()):
        # Exact name first, then the .ipynb of a pair (what JupyterLab shows), then the newest file.
        paths.sort(key=lambda p: (p.stem != ps, p.suffix != ".ipynb", -p.stat().st_mtime, str(p)))
        chosen = paths[0]
        others = [p for p in paths[1:] if not (p.stem == chosen.stem and p.parent == chosen.parent)]
        if others:
            warnings.append(
                f"{student}: several files for {ps}; graded {chosen}, ignored {', '.join(map(str, others))}"
            )
        submissions.append(Submission(student, ps, str(chosen)))
    return submissions, warnings


# --------------------------------------------------------------------------------------------------
# Running one notebook in its own kernel
# --------------------------------------------------------------------------------------------------


@dataclass
class CellError:
    cell: int  # 1-based position among all cells, as a student counts them
    ename: str
    evalue: str
    first_line: str

    def describe(self) -> str:
        where = f"cell {self.cell}" + (f" ({self.first_line!r})" if self.first_line else "")
        return f"{self.ename} in {where}: {self.evalue}".rstrip(": ")


@dataclass
class Execution:
    """What happened when a notebook ran: errors per cell, interrupted cells, and where it stopped."""

    seconds: float = 0.0
    errors: list[CellError] = field(default_factory=list)
    timed_out_cells: list[int] = field(default_factory=list)
    stopped_at: int | None = None  # 1-based cell that did not finish (later cells never ran)
    stop_reason: str | None = None  # "time limit" | "kernel died" | "kernel unresponsive" | "kernel failed to start"
    notes: list[str] = field(default_factory=list)


def _current_env_kernel_manager(kernel_name: str | None):
    """An async kernel manager; with no name, a kernel running this very Python (like nbval's current env)."""
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    current = "toyattn-grade-current-env"

    class _Specs(KernelSpecManager):
        def get_kernel_spec(self, name):  # noqa: D401 - jupyter_client API
            if name == current:
                return self.kernel_spec_class(
                    resource_dir=ipykernel.kernelspec.RESOURCES, **ipykernel.kernelspec.get_kernel_dict()
                )
            return super().get_kernel_spec(name)

    return AsyncKernelManager(kernel_name=kernel_name or current, kernel_spec_manager=_Specs())


def _first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip():
            return line.strip()[:48]
    return ""


def _timeout_output(seconds: float, reason: str) -> dict[str, Any]:
    import nbformat

    text = f"this cell ran longer than {seconds:.0f} s ({reason}) and was interrupted"
    return nbformat.v4.new_output("error", ename="TimeoutError", evalue=text, traceback=[f"TimeoutError: {text}"])


async def _wait_idle(kc, msg_id: str, timeout: float) -> bool:
    """Wait for the shell reply to ``msg_id``; False if the kernel does not answer in time."""
    from queue import Empty

    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            msg = await kc.shell_channel.get_msg(timeout=left)
        except Empty:
            return False
        if msg["parent_header"].get("msg_id") == msg_id:
            return True


async def _execute(
    nb,
    *,
    cwd: Path,
    timeout: float,
    cell_timeout: float,
    kernel_name: str | None,
    env: Mapping[str, str] | None,
    setup_code: str | None,
    startup_timeout: float,
) -> Execution:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    result = Execution()
    # Outputs saved with the submission are the student's old run: never judge (or keep) them.
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    offset = 0
    if setup_code:
        nb.cells.insert(0, nbformat.v4.new_code_cell(setup_code))
        offset = 1
    km = _current_env_kernel_manager(kernel_name)
    client = NotebookClient(
        nb,
        km=km,
        allow_errors=True,
        timeout=int(cell_timeout),
        startup_timeout=int(startup_timeout),
        shutdown_kernel="immediate",
        record_timing=False,
        resources={"metadata": {"path": str(cwd)}},
    )
    kernel_env = dict(os.environ if env is None else env)
    started = False
    try:
        # The kernel's own stderr (start-up warnings, C-level crash text) would interleave between
        # parallel kernels on the terminal; what a student's code prints reaches the notebook anyway.
        async with client.async_setup_kernel(
            cwd=str(cwd), env=kernel_env, cleanup_kc=True, stderr=subprocess.DEVNULL
        ):
            started = True
            start = time.monotonic()
            deadline = start + timeout
            count = 0
            for index, cell in enumerate(list(nb.cells)):
                if cell.cell_type != "code" or not cell.source.strip():
                    continue
                is_setup = index < offset
                student_cell = index - offset + 1
                left = deadline - time.monotonic()
                if left <= 0 and not is_setup:
                    result.stopped_at, result.stop_reason = student_cell, "time limit"
                    break
                limit = max(1.0, min(cell_timeout, left)) if not is_setup else max(cell_timeout, 60.0)
                client.timeout = int(limit + 0.999)
                try:
                    count += 1
                    await client.async_execute_cell(cell, index, execution_count=count)
                except CellTimeoutError:
                    over_total = time.monotonic() >= deadline - 0.5
                    reason = f"the notebook's {timeout:.0f} s limit" if over_total else "the per-cell limit"
                    cell.outputs.append(_timeout_output(limit, reason))
                    result.timed_out_cells.append(student_cell)
                    await client.km.interrupt_kernel()
                    # Interrupted like the stop button: go on if the kernel is responsive and time is left.
                    probe = client.kc.execute("pass", store_history=False)
                    if not await _wait_idle(client.kc, probe, timeout=10.0):
                        result.stopped_at, result.stop_reason = student_cell, "kernel unresponsive"
                        break
                    if over_total:
                        result.stopped_at, result.stop_reason = student_cell, "time limit"
                        break
                except DeadKernelError:
                    cell.outputs.append(
                        nbformat.v4.new_output(
                            "error",
                            ename="DeadKernelError",
                            evalue="the kernel died while running this cell (a crash, os._exit, or out of memory)",
                            traceback=["DeadKernelError: the kernel died while running this cell"],
                        )
                    )
                    result.stopped_at, result.stop_reason = student_cell, "kernel died"
                    break
            result.seconds = time.monotonic() - start
    except (RuntimeError, TimeoutError) as err:  # the kernel never started, or broke beyond a dead kernel
        result.stop_reason = "kernel error" if started else "kernel failed to start"
        result.notes.append(f"{result.stop_reason}: {type(err).__name__}: {err}")
    finally:
        if setup_code and nb.cells:
            setup_cell = nb.cells.pop(0)
            for out in setup_cell.get("outputs", []):
                if out.get("output_type") == "error":
                    result.notes.append(f"grader setup failed: {out.get('ename')}: {out.get('evalue')}")
    for i, cell in enumerate(nb.cells, start=1):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "error":
                result.errors.append(CellError(i, out.get("ename", ""), out.get("evalue", ""), _first_line(cell.source)))
    return result


def execute_notebook(
    nb,
    *,
    cwd: Path,
    timeout: float = DEFAULT_TIMEOUT,
    cell_timeout: float = DEFAULT_CELL_TIMEOUT,
    kernel_name: str | None = None,
    env: Mapping[str, str] | None = None,
    setup_code: str | None = None,
    startup_timeout: float = 60.0,
) -> Execution:
    """Run every code cell of ``nb`` (an nbformat notebook, changed in place to hold the outputs).

    Errors in cells are recorded and do not stop the run; a cell over ``cell_timeout`` seconds is
    interrupted; the whole run stops after ``timeout`` seconds or when the kernel dies. ``kernel_name``
    None means a kernel in this very Python environment (what ``toyattn`` is installed in).
    """
    from jupyter_core.utils import run_sync

    if timeout <= 0 or cell_timeout <= 0:
        raise ValueError(f"timeouts must be positive seconds, got timeout={timeout}, cell_timeout={cell_timeout}.")
    return run_sync(_execute)(
        nb,
        cwd=Path(cwd),
        timeout=float(timeout),
        cell_timeout=float(cell_timeout),
        kernel_name=kernel_name,
        env=env,
        setup_code=setup_code,
        startup_timeout=startup_timeout,
    )


# --------------------------------------------------------------------------------------------------
# Grading one submission
# --------------------------------------------------------------------------------------------------

# Runs first, hidden, in the student's kernel: every registered check records each call's outcome.
_SETUP = r'''
def _toyattn_grading_setup(record_path):
    import functools, json, sys
    import toyattn.checks  # noqa: F401  (imports every lesson's checks)
    from toyattn.checks import core

    def classify(err):
        if isinstance(err, (core.NotImplementedYet, NotImplementedError)):
            return "not implemented"
        if isinstance(err, KeyboardInterrupt):
            return "timeout"
        if isinstance(err, AssertionError):
            return "failed"
        return "error"

    def record(entry):
        with open(record_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def wrap(name, check):
        @functools.wraps(check)
        def recorded(*args, **kwargs):
            try:
                result = check(*args, **kwargs)
            except BaseException as err:
                status = classify(err)
                if status == "timeout":
                    message = "interrupted: it ran over the time limit (an endless loop, or far too slow)"
                elif status in ("failed", "not implemented"):
                    message = str(err)
                else:
                    message = f"{type(err).__name__}: {err}"
                record({"check": name, "status": status, "message": message[:500]})
                raise
            record({"check": name, "status": "passed", "message": ""})
            return result
        return recorded

    by_id = {id(fn): name for name, fn in core.REGISTRY.items()}
    wrapped = {}
    for module_name, module in list(sys.modules.items()):
        if module is None or not (module_name == "toyattn.checks" or module_name.startswith("toyattn.checks.")):
            continue
        for attr, value in list(vars(module).items()):
            name = by_id.get(id(value))
            if name is not None:
                wrapped.setdefault(name, wrap(name, value))
                setattr(module, attr, wrapped[name])

_toyattn_grading_setup(RECORD_PATH)
del _toyattn_grading_setup
'''


@dataclass
class ExerciseResult:
    check: str
    title: str
    status: str
    message: str = ""


@dataclass
class NotebookResult:
    student: str
    problem_set: str
    path: str
    outcome: str  # "ok" | "errors" | "syntax error" | "timeout" | "kernel died" | "unreadable" | "not submitted" | ...
    seconds: float
    problems: list[str]
    exercises: list[ExerciseResult]

    @property
    def n_passed(self) -> int:
        return sum(e.status == "passed" for e in self.exercises)


def _exercise_statuses(
    ps: ProblemSet, nb, records: list[dict[str, str]], run: Execution
) -> tuple[list[ExerciseResult], list[str]]:
    """One status per exercise from the recorded check calls, and the 'missing cell' problems."""
    by_check: dict[str, list[dict[str, str]]] = {}
    for rec in records:
        by_check.setdefault(rec["check"], []).append(rec)
    # 1-based cell number of each check call in the student's notebook.
    call_cells: dict[str, list[int]] = {}
    for i, cell in enumerate(nb.cells, start=1):
        if cell.cell_type == "code":
            for name in _CHECK_CALL.findall(cell.source):
                call_cells.setdefault(name, []).append(i)
    errors_by_cell: dict[int, CellError] = {}
    for err in run.errors:
        errors_by_cell.setdefault(err.cell, err)

    results, problems = [], []
    for ex in ps.exercises:
        recs = by_check.get(ex.check, [])
        cells = call_cells.get(ex.check, [])
        if recs:
            bad = next((r for r in recs if r["status"] != "passed"), None)
            status, message = ("passed", "") if bad is None else (bad["status"], bad["message"])
        elif not cells:
            status = "missing"
            message = f"no cell calls checks.{ex.check}(...): the exercise cell was deleted or its check removed"
            problems.append(f"missing cell: {message}")
        elif run.stopped_at is not None and run.stopped_at in cells:
            status = "timeout" if run.stop_reason in ("time limit", "kernel unresponsive") else "error"
            message = f"{run.stop_reason} in cell {run.stopped_at}, the cell of this check"
        elif run.stopped_at is not None and max(cells) > run.stopped_at:
            status, message = "not run", f"the notebook stopped at cell {run.stopped_at} ({run.stop_reason})"
        elif any(c in errors_by_cell for c in cells):
            err = errors_by_cell[next(c for c in cells if c in errors_by_cell)]
            status, message = "error", f"the check never ran: {err.describe()}"
        else:
            status, message = "not run", f"the call in cell {cells[0]} never reached the check"
        results.append(ExerciseResult(ex.check, ex.title, status, message))
    return results, problems


_SYNTAX_ERRORS = ("SyntaxError", "IndentationError", "TabError")
_REPORTED_ELSEWHERE = ("NotImplementedYet", "CheckFailed", "KeyboardInterrupt", "DeadKernelError", "TimeoutError")


def _notebook_problems(run: Execution) -> tuple[str, list[str]]:
    problems = list(run.notes)
    for err in run.errors:
        if err.ename in _SYNTAX_ERRORS:
            problems.append(f"syntax error: {err.describe()}")
    for cell in run.timed_out_cells:
        problems.append(f"timeout: cell {cell} ran over its time limit and was interrupted (an endless loop?)")
    if run.stop_reason:
        where = f" at cell {run.stopped_at}" if run.stopped_at else ""
        problems.append(f"stopped{where}: {run.stop_reason}; later cells did not run")
    # Failing and unfinished checks are reported per exercise; here only the other errors. Cells that
    # merely use a function the student has not written yet are the stub's consequence, not a bug.
    unfinished = [e.cell for e in run.errors if e.ename == "NotImplementedError"]
    if unfinished:
        problems.append(
            f"unfinished: cell{'s' if len(unfinished) > 1 else ''} {', '.join(map(str, unfinished))} "
            f"used a function that still raises NotImplementedError"
        )
    other = [e for e in run.errors if e.ename not in _SYNTAX_ERRORS + _REPORTED_ELSEWHERE + ("NotImplementedError",)]
    for err in other:
        problems.append(f"error: {err.describe()}")
    if run.stop_reason == "kernel died":
        outcome = "kernel died"
    elif run.stop_reason in ("time limit", "kernel unresponsive") or run.timed_out_cells:
        outcome = "timeout"
    elif run.stop_reason:
        outcome = run.stop_reason
    elif any(p.startswith("syntax error") for p in problems):
        outcome = "syntax error"
    elif other:
        outcome = "errors"
    else:
        outcome = "ok"
    return outcome, problems


@dataclass(frozen=True)
class GradeOptions:
    timeout: float = DEFAULT_TIMEOUT
    cell_timeout: float = DEFAULT_CELL_TIMEOUT
    kernel_name: str | None = None
    executed_dir: str | None = None  # where to save each executed notebook (None: don't)


def grade_submission(sub: Submission, ps: ProblemSet, options: GradeOptions | None = None) -> NotebookResult:
    """Run one student's notebook in a scratch copy and grade each exercise of ``ps``.

    Never raises for anything the student did: every problem ends up in the result.
    """
    import nbformat

    options = options or GradeOptions()
    source = Path(sub.path)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="toyattn-grade-") as tmp:
        work, grader = Path(tmp) / "work", Path(tmp) / "grader"
        work.mkdir()
        grader.mkdir()
        copy = work / source.name
        shutil.copyfile(source, copy)  # the student's file is only ever read
        try:
            nb = _read_notebook_file(copy)
        except Exception as err:  # noqa: BLE001 - any unreadable file is the student's problem, reported
            msg = f"unreadable notebook: {type(err).__name__}: {str(err)[:200]}"
            exercises = [ExerciseResult(e.check, e.title, "error", msg) for e in ps.exercises]
            return NotebookResult(sub.student, sub.problem_set, sub.path, "unreadable", 0.0, [msg], exercises)
        record_path = grader / "checks.jsonl"
        env = dict(os.environ, MPLBACKEND="Agg", TOYATTN_PROGRESS="0", PYTHONDONTWRITEBYTECODE="1")
        run = execute_notebook(
            nb,
            cwd=work,
            timeout=options.timeout,
            cell_timeout=options.cell_timeout,
            kernel_name=options.kernel_name,
            env=env,
            setup_code=_SETUP.replace("RECORD_PATH", repr(str(record_path))),
        )
        records = []
        if record_path.exists():
            for line in record_path.read_text(encoding="utf-8").splitlines():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        if options.executed_dir:
            out = Path(options.executed_dir) / _safe(sub.student) / f"{sub.problem_set}.ipynb"
            out.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, out)
    exercises, missing = _exercise_statuses(ps, nb, records, run)
    outcome, problems = _notebook_problems(run)
    return NotebookResult(
        sub.student, sub.problem_set, sub.path, outcome, round(time.monotonic() - start, 2), problems + missing, exercises
    )


def _grade_or_report(sub: Submission, ps: ProblemSet, options: GradeOptions) -> NotebookResult:
    """:func:`grade_submission`, turning a failure of the grader itself into that notebook's result."""
    try:
        return grade_submission(sub, ps, options)
    except Exception as err:  # noqa: BLE001 - one notebook's grader failure must not stop the class
        msg = f"grader error: {type(err).__name__}: {err}"
        return NotebookResult(
            sub.student, sub.problem_set, sub.path, "grader error", 0.0, [msg],
            [ExerciseResult(e.check, e.title, "error", msg) for e in ps.exercises],
        )


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


def _safe(name: str) -> str:
    return re.sub(r"[^\w.@+-]", "_", name) or "_"


# --------------------------------------------------------------------------------------------------
# A whole class
# --------------------------------------------------------------------------------------------------


def grade_all(
    submissions: Sequence[Submission],
    problem_sets: Mapping[str, ProblemSet],
    options: GradeOptions | None = None,
    *,
    jobs: int = 1,
    on_result=None,
) -> list[NotebookResult]:
    """Grade every submission (``jobs`` kernels at a time), adding "not submitted" rows for the gaps.

    ``on_result(result)`` is called as each notebook finishes (the command prints progress with it).
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}.")
    options = options or GradeOptions()
    results: list[NotebookResult] = []
    todo = [(s, problem_sets[s.problem_set]) for s in submissions if s.problem_set in problem_sets]
    if jobs == 1 or len(todo) <= 1:
        for sub, ps in todo:
            results.append(_grade_or_report(sub, ps, options))
            if on_result:
                on_result(results[-1])
    else:
        # Separate processes: each drives its own kernel; "spawn" keeps no state from this process.
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_grade_or_report, sub, ps, options): sub for sub, ps in todo}
            for fut in as_completed(futures):
                sub = futures[fut]
                try:
                    res = fut.result()
                except Exception as err:  # noqa: BLE001 - e.g. a worker process killed by the OS
                    ps = problem_sets[sub.problem_set]
                    msg = f"grader error: {type(err).__name__}: {err}"
                    res = NotebookResult(
                        sub.student, sub.problem_set, sub.path, "grader error", 0.0, [msg],
                        [ExerciseResult(e.check, e.title, "error", msg) for e in ps.exercises],
                    )
                results.append(res)
                if on_result:
                    on_result(res)
    students = sorted({s.student for s in submissions})
    done = {(r.student, r.problem_set) for r in results}
    for student in students:
        for name, ps in problem_sets.items():
            if (student, name) not in done:
                results.append(
                    NotebookResult(
                        student, name, "", "not submitted", 0.0, [],
                        [ExerciseResult(e.check, e.title, "not submitted") for e in ps.exercises],
                    )
                )
    results.sort(key=lambda r: (r.student, r.problem_set))
    return results


# --------------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------------


def write_reports(
    results: Sequence[NotebookResult],
    problem_sets: Mapping[str, ProblemSet],
    out: Path,
    *,
    warnings: Sequence[str] = (),
    seconds: float | None = None,
) -> str:
    """Write grades.csv, scores.csv, notebooks.csv, summary.md, results.json and feedback/ into ``out``.

    Returns the summary text.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "grades.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", "problem_set", "exercise", "title", "status", "message", "file"])
        for r in results:
            for e in r.exercises:
                w.writerow([r.student, r.problem_set, e.check, e.title, e.status, e.message, r.path])
    with open(out / "notebooks.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", "problem_set", "outcome", "passed", "exercises", "seconds", "problems", "file"])
        for r in results:
            w.writerow([r.student, r.problem_set, r.outcome, r.n_passed, len(r.exercises), r.seconds,
                        " | ".join(r.problems), r.path])
    students = sorted({r.student for r in results})
    by_key = {(r.student, r.problem_set): r for r in results}
    names = list(problem_sets)
    with open(out / "scores.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", *names, "passed", "exercises"])
        for s in students:
            row = [by_key[(s, n)].n_passed if (s, n) in by_key else 0 for n in names]
            total = sum(len(problem_sets[n].exercises) for n in names)
            w.writerow([s, *row, sum(row), total])
    text = format_summary(results, problem_sets, warnings=warnings, seconds=seconds)
    (out / "summary.md").write_text(text, encoding="utf-8")
    feedback = out / "feedback"
    feedback.mkdir(exist_ok=True)
    for s in students:
        (feedback / f"{_safe(s)}.md").write_text(
            format_feedback(s, [r for r in results if r.student == s]), encoding="utf-8"
        )
    (out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=1), encoding="utf-8")
    return text


def _cell_text(r: NotebookResult | None) -> str:
    if r is None:
        return "-"
    if r.outcome == "not submitted":
        return "not submitted"
    counts = Counter(e.status for e in r.exercises if e.status != "passed")
    text = f"{r.n_passed}/{len(r.exercises)}"
    if counts:
        text += " (" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: STATUSES.index(kv[0]))) + ")"
    return text


def format_feedback(student: str, results: Sequence[NotebookResult]) -> str:
    """A short report for one student: each exercise's status and the check's own explanation."""
    lines = [f"# Feedback for {student}", ""]
    for r in results:
        lines += [f"## {r.problem_set}: {r.n_passed} of {len(r.exercises)} exercises pass", ""]
        if r.outcome == "not submitted":
            lines += ["Not handed in.", ""]
            continue
        for e in r.exercises:
            mark = "✅" if e.status == "passed" else "❌"
            lines.append(f"- {mark} **{e.title or e.check}** (`{e.check}`): {e.status}" + (f". {e.message}" if e.message else ""))
        if r.problems:
            lines += ["", "Problems with the notebook as a whole:"] + [f"- {p}" for p in r.problems]
        lines.append("")
    return "\n".join(lines)


def format_summary(
    results: Sequence[NotebookResult],
    problem_sets: Mapping[str, ProblemSet],
    *,
    warnings: Sequence[str] = (),
    seconds: float | None = None,
) -> str:
    """The readable report: per student, per exercise, and every notebook-level problem."""
    students = sorted({r.student for r in results})
    by_key = {(r.student, r.problem_set): r for r in results}
    names = list(problem_sets)
    n_exercises = sum(len(ps.exercises) for ps in problem_sets.values())
    graded = [r for r in results if r.outcome != "not submitted"]
    lines = [
        "# Grading summary",
        "",
        f"{len(students)} students, {len(graded)} notebooks graded, problem sets: {', '.join(names)}"
        + (f"; {seconds:.0f} s in all" if seconds is not None else "")
        + ".",
        "",
        "## Per student",
        "",
        "| student | " + " | ".join(names) + " | passed | notebook problems |",
        "| --- | " + " | ".join("---" for _ in names) + " | --- | --- |",
    ]
    for s in students:
        rs = [by_key.get((s, n)) for n in names]
        passed = sum(r.n_passed for r in rs if r)
        outcomes = sorted({r.outcome for r in rs if r and r.outcome not in ("ok", "not submitted")})
        lines.append(
            f"| {s} | " + " | ".join(_cell_text(r) for r in rs) + f" | {passed}/{n_exercises} | {', '.join(outcomes) or '-'} |"
        )
    lines += [
        "",
        "## Per exercise",
        "",
        "| problem set | exercise | title | " + " | ".join(STATUSES) + " |",
        "| --- | --- | --- | " + " | ".join("---:" for _ in STATUSES) + " |",
    ]
    for name, ps in problem_sets.items():
        for ex in ps.exercises:
            counts = Counter(
                e.status for r in results if r.problem_set == name for e in r.exercises if e.check == ex.check
            )
            lines.append(f"| {name} | {ex.check} | {ex.title} | " + " | ".join(str(counts.get(st, 0)) for st in STATUSES) + " |")
    problem_lines = [
        f"- **{r.student} / {r.problem_set}** ({r.outcome}): " + "; ".join(r.problems)
        for r in results
        if r.problems
    ]
    lines += ["", "## Notebook problems", ""] + (problem_lines or ["None."])
    failures = [
        f"- {r.student} / {r.problem_set} / {e.check}: {e.status}: {e.message}"
        for r in results
        for e in r.exercises
        if e.status not in ("passed", "not submitted") and e.message
    ]
    if failures:
        lines += ["", "## Why each exercise did not pass", ""] + failures
    if warnings:
        lines += ["", "## Files not graded", ""] + [f"- {w}" for w in warnings]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# Command line: `toyattn grade` and `toyattn run`
# --------------------------------------------------------------------------------------------------


def _course_root(arg: str | None) -> Path:
    from . import course

    if arg:
        return Path(arg).resolve()
    try:
        return course.find_root()
    except FileNotFoundError:
        here = Path(__file__).resolve().parent.parent  # an editable install sits in the checkout
        if (here / "solutions").is_dir():
            return here
        raise


def _default_jobs() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _cmd_grade(args: argparse.Namespace) -> int:
    try:
        root = _course_root(args.root)
        sets = load_problem_sets(root, args.problem_set)
        submissions_dir = Path(args.submissions)
        out = Path(args.out)
        if _inside(out, submissions_dir):
            raise GradingError(
                f"--out {out} is inside the submissions folder {submissions_dir}; the executed copies would be "
                f"graded next time. Choose a folder outside it (the default is ./grading)."
            )
        if _inside(out, root / "solutions") or _inside(out, root / "toyattn"):
            raise GradingError(f"--out {out} is inside the course's own files; choose a separate folder.")
        check_kernel(args.kernel)
        if args.jobs < 1 or args.timeout <= 0 or args.cell_timeout <= 0:
            raise GradingError("--jobs must be at least 1 and --timeout / --cell-timeout positive seconds.")
        subs, warnings = find_submissions(submissions_dir, sets)
        if not subs:
            raise GradingError(
                f"No submissions found in {submissions_dir}. Expected <student>/<NN_name>.ipynb (any depth), "
                f"nbgrader's submitted/<student>/<assignment>/<NN_name>.ipynb, or <student>{FLAT_SEPARATOR}<NN_name>.ipynb; "
                f"problem sets: {', '.join(sets)}."
                + (f" Skipped: {warnings[0]}" if warnings else "")
            )
    except (GradingError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.problem_set:
        # Grade the problem sets that were handed in (this week's), not every one the course has.
        handed_in = {s.problem_set for s in subs}
        sets = {name: ps for name, ps in sets.items() if name in handed_in}
    options = GradeOptions(
        timeout=args.timeout,
        cell_timeout=min(args.cell_timeout, args.timeout),
        kernel_name=args.kernel,
        executed_dir=None if args.no_executed else str(out / "executed"),
    )
    n = len(subs)
    print(f"grading {n} notebook(s) from {len({s.student for s in subs})} student(s), {args.jobs} at a time "
          f"(limits: {options.timeout:.0f} s per notebook, {options.cell_timeout:.0f} s per cell)", file=sys.stderr)
    done = 0

    def progress(r: NotebookResult) -> None:
        nonlocal done
        done += 1
        print(f"[{done}/{n}] {r.student} / {r.problem_set}: {r.n_passed}/{len(r.exercises)} passed, "
              f"{r.outcome} ({r.seconds:.1f} s)", file=sys.stderr)

    start = time.monotonic()
    results = grade_all(subs, sets, options, jobs=args.jobs, on_result=progress)
    text = write_reports(results, sets, out, warnings=warnings, seconds=time.monotonic() - start)
    print(text)
    print(f"wrote {out}/summary.md, grades.csv, scores.csv, notebooks.csv, feedback/"
          + ("" if args.no_executed else f" and the executed notebooks in {out}/executed/"), file=sys.stderr)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
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
        nb = _read_notebook_file(src)
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
    outcome, problems = _notebook_problems(run)
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    if outcome == "ok":
        return 0
    return 0 if args.allow_errors and outcome == "errors" else 1


def register_commands(sub) -> None:
    """Add ``grade`` and ``run`` to the ``toyattn`` command's sub-parsers."""
    p = sub.add_parser(
        "grade",
        help="run every student's exercise notebook in its own kernel and report which checks pass",
        description="Grade submitted exercise notebooks. Layouts: SUBMISSIONS/<student>/<NN_name>.ipynb (any depth, "
        "so nbgrader's submitted/<student>/<assignment>/ works), or SUBMISSIONS/<student>__<NN_name>.ipynb. "
        "Writes summary.md, grades.csv, scores.csv, notebooks.csv and executed/ into --out.",
    )
    p.add_argument("submissions", help="folder holding the submissions")
    p.add_argument("--out", default="grading", help="folder for the reports (default: ./grading)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds each notebook may run in all (default {DEFAULT_TIMEOUT:.0f})")
    p.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT,
                   help=f"seconds one cell may run before it is interrupted (default {DEFAULT_CELL_TIMEOUT:.0f})")
    p.add_argument("--jobs", "-j", type=int, default=_default_jobs(),
                   help="notebooks run at the same time, one kernel each (default: CPU cores, at most 4)")
    p.add_argument("--problem-set", action="append", default=None, metavar="NN_name",
                   help="grade only this problem set (repeatable; default: every problem set someone handed in)")
    p.add_argument("--root", default=None, help="course checkout holding solutions/ (default: found from here)")
    p.add_argument("--kernel", default=None,
                   help="Jupyter kernel name to run the notebooks (default: this Python environment)")
    p.add_argument("--no-executed", action="store_true", help="do not save the executed notebooks")
    p.set_defaults(func=_cmd_grade)

    p = sub.add_parser(
        "run",
        help="execute a notebook headless (e.g. in a batch job) and save an executed copy",
        description="Execute every cell of a notebook (.ipynb or py:percent .py) in a fresh kernel and write an "
        "executed copy; exit 1 if a cell failed, timed out or the kernel died.",
    )
    p.add_argument("notebook")
    p.add_argument("--out", default=None, help="executed copy (default: NAME.executed.ipynb beside it)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds for the whole notebook (default 3600)")
    p.add_argument("--cell-timeout", type=float, default=1800.0, help="seconds per cell (default 1800)")
    p.add_argument("--cwd", default=None, help="working folder of the kernel (default: the notebook's folder)")
    p.add_argument("--kernel", default=None, help="Jupyter kernel name (default: this Python environment)")
    p.add_argument("--allow-errors", action="store_true", help="exit 0 even if some cells raised")
    p.set_defaults(func=_cmd_run)
