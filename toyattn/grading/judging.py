"""Deciding each exercise in the grader's own process: the answers a notebook left, read as untrusted data and judged.

A check's verdict is :meth:`toyattn.checks.core.Check.judge_answers` on the arrays read back with
:func:`toyattn.checks.answers.read_answers`, for the seed this grader chose for that notebook. Nothing
the student's code did in its own process (a patched check, a printed pass line, a hand-written file)
can say "passed": only arrays that match that run's cases can. Answers that are not what a check
writes make that exercise a ``grader error``, never a crash.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

GRADER_ERROR = "grader error"


def answers_folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot hold a notebook's answers (replaced by a symlink or a file), or None."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return None  # no check ran: nothing to read
    if not stat.S_ISDIR(st.st_mode):
        return "the answers folder was replaced by something that is not a folder"
    return None


def judge_exercise(folder: Path, check_name: str, seed: int) -> tuple[str, str] | None:
    """``(status, message)`` for one exercise from the answers in ``folder``; None when it left none."""
    # Imported here: the sandbox's runner imports this package without torch; only the grader judges.
    from toyattn.checks.answers import AnswersInvalid, read_answers
    from toyattn.checks.core import REGISTRY, Check

    check = REGISTRY.get(check_name)
    if not isinstance(check, Check):
        return GRADER_ERROR, (f"{check_name} is not gradable yet: it is not an @exercise_check on plain answers, "
                              f"so its verdict could only come from the student's own process")
    problem = answers_folder_problem(folder)
    if problem:
        return GRADER_ERROR, problem
    try:
        answers = read_answers(folder, check_name)
    except (AnswersInvalid, OSError) as err:
        return GRADER_ERROR, f"the answers the notebook left for {check_name} are not what a check writes: {err}"
    except Exception as err:  # noqa: BLE001 - any other surprise in an answers file is that exercise's error
        return GRADER_ERROR, (f"the answers the notebook left for {check_name} could not be read: "
                              f"{type(err).__name__}: {str(err)[:200]}")
    if answers is None:
        return None
    try:
        return check.judge_answers(answers, seed)
    except Exception as err:  # noqa: BLE001 - a judge that breaks on odd data is reported, never fatal
        return GRADER_ERROR, f"judging {check_name} failed: {type(err).__name__}: {str(err)[:300]}"
