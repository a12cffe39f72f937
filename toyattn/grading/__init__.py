"""Grading a class's exercise notebooks (``toyattn grade``), and running any notebook headless (``toyattn run``).

Not taught in a lesson: this is the instructor's side of the course (see ``docs/instructors.md``).
Each notebook runs in its own bubblewrap sandbox with a fresh seed for the checks' cases; the
student's kernel only hands back plain arrays, and every verdict is made in the grader's process.
One job per module:

* :mod:`~toyattn.grading.discovery` - the exercises of each problem set, and which files are whose
* :mod:`~toyattn.grading.sandbox`   - the ``bwrap`` command, the notebook's environment and limits
* :mod:`~toyattn.grading.confine`   - no capability or new user namespace inside; a cgroup per sandbox
* :mod:`~toyattn.grading.runner`    - the first process inside the sandbox: runs one notebook
* :mod:`~toyattn.grading.execute`   - the kernel driver (nbclient) with cell and notebook time limits
* :mod:`~toyattn.grading.judging`   - reading a notebook's answers and judging them here
* :mod:`~toyattn.grading.executed`  - the executed copy kept for display: only data, size-capped
* :mod:`~toyattn.grading.status`    - one status per exercise, one outcome per notebook
* :mod:`~toyattn.grading.grade`     - one submission end to end, and a class in parallel
* :mod:`~toyattn.grading.reports`   - CSVs, summary, feedback pages (escaped, clipped, unique names)
* :mod:`~toyattn.grading.cli`       - the ``grade`` and ``run`` sub-commands
"""

from toyattn.grading.cli import check_kernel, default_jobs, register_commands
from toyattn.grading.discovery import (
    Exercise,
    GradingError,
    ProblemSet,
    Submission,
    find_submissions,
    load_problem_sets,
    match_problem_set,
    problem_set_from_solution,
)
from toyattn.grading.execute import CellError, Execution, execute_notebook
from toyattn.grading.grade import GradeOptions, grade_all, grade_submission
from toyattn.grading.judging import GRADER_ERROR
from toyattn.grading.reports import format_feedback, format_summary, unique_names, write_reports
from toyattn.grading.sandbox import Limits, sandbox_problem
from toyattn.grading.status import STATUSES, ExerciseResult, NotebookResult, notebook_problems

__all__ = [
    "GRADER_ERROR", "STATUSES", "CellError", "Execution", "Exercise", "ExerciseResult", "GradeOptions",
    "GradingError", "Limits", "NotebookResult", "ProblemSet", "Submission", "check_kernel", "default_jobs",
    "execute_notebook", "find_submissions", "format_feedback", "format_summary", "grade_all", "grade_submission",
    "load_problem_sets", "match_problem_set", "notebook_problems", "problem_set_from_solution",
    "register_commands", "sandbox_problem", "unique_names", "write_reports",
]
