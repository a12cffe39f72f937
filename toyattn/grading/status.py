"""One status per exercise and one outcome per notebook, from the judged answers and what happened in the run.

Per exercise (:data:`STATUSES`, best first): a judged verdict when the notebook left answers for
that check; otherwise what the run says about the check's cell (deleted: ``missing``; its cell
timed out, crashed or raised: ``timeout`` / ``error``; the notebook stopped before it: ``not run``).
Per notebook: ``ok``, ``errors``, ``syntax error``, ``timeout``, ``kernel died``, ``unreadable``,
``rejected``, ``grader error`` ..., with a list of readable problems.
"""

from __future__ import annotations

from dataclasses import dataclass

from toyattn.grading.discovery import ProblemSet, check_calls
from toyattn.grading.execute import CellError, Execution
from toyattn.grading.judging import GRADER_ERROR

# Per exercise, best first. "not run": the notebook stopped (time limit, dead kernel) before its check.
STATUSES = ("passed", "failed", "not implemented", "error", "timeout", "missing", "not run", "not submitted",
            GRADER_ERROR)


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


def whole_notebook(sub_student: str, ps: ProblemSet, path: str, outcome: str, status: str, message: str,
                   seconds: float = 0.0) -> NotebookResult:
    """A result where every exercise shares one status (unreadable, rejected, grader error, not submitted)."""
    return NotebookResult(sub_student, ps.name, path, outcome, seconds, [message] if message else [],
                          [ExerciseResult(e.check, e.title, status, message) for e in ps.exercises])


def _unjudged_status(check: str, cells: list[int], run: Execution, errors_by_cell: dict[int, CellError]) -> tuple[str, str]:
    """Status of an exercise whose check left no answers: why it never answered."""
    if not cells:
        return "missing", f"no cell calls checks.{check}(...): the exercise cell was deleted or its check removed"
    if run.stopped_at is not None and run.stopped_at in cells:
        status = "timeout" if run.stop_reason in ("time limit", "kernel unresponsive") else "error"
        return status, f"{run.stop_reason} in cell {run.stopped_at}, the cell of this check"
    if run.stopped_at is not None and max(cells) > run.stopped_at:
        return "not run", f"the notebook stopped at cell {run.stopped_at} ({run.stop_reason})"
    if run.stop_reason and run.stopped_at is None:
        return "not run", f"the notebook did not run to the end ({run.stop_reason})"
    if any(c in errors_by_cell for c in cells):
        err = errors_by_cell[next(c for c in cells if c in errors_by_cell)]
        return "error", f"the check never ran: {err.describe()}"
    return "not run", f"the call in cell {cells[0]} never reached the check"


def exercise_statuses(ps: ProblemSet, nb, judged: dict[str, tuple[str, str] | None],
                      run: Execution) -> tuple[list[ExerciseResult], list[str]]:
    """One status per exercise (a judged verdict first), and the 'missing cell' problems."""
    call_cells: dict[str, list[int]] = {}  # 1-based cell number of each check call in the student's notebook
    for i, cell in enumerate(nb.cells, start=1):
        if cell.cell_type == "code":
            for name in check_calls(cell.source):
                call_cells.setdefault(name, []).append(i)
    errors_by_cell: dict[int, CellError] = {}
    for err in run.errors:
        errors_by_cell.setdefault(err.cell, err)
    results, problems = [], []
    for ex in ps.exercises:
        verdict = judged.get(ex.check)
        if verdict is not None:
            status, message = verdict
        else:
            status, message = _unjudged_status(ex.check, call_cells.get(ex.check, []), run, errors_by_cell)
            if status == "missing":
                problems.append(f"missing cell: {message}")
        results.append(ExerciseResult(ex.check, ex.title, status, message))
    return results, problems


_SYNTAX_ERRORS = ("SyntaxError", "IndentationError", "TabError")
_REPORTED_ELSEWHERE = ("NotImplementedYet", "CheckFailed", "KeyboardInterrupt", "DeadKernelError", "TimeoutError")


def notebook_problems(run: Execution) -> tuple[str, list[str]]:
    """The notebook's outcome and its problems, from what happened in the run."""
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
