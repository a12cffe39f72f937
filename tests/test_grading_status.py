"""toyattn.grading.status: a notebook's outcome separates real errors from unfinished exercises."""

from __future__ import annotations

from toyattn.grading.execute import CellError, Execution
from toyattn.grading.status import notebook_problems


def test_notebook_outcome_separates_real_errors_from_unfinished_exercises():
    err = CellError
    unfinished = Execution(errors=[err(6, "NotImplementedError", "", "heatmap(mask(5))"),
                                           err(9, "NotImplementedError", "", "probs = f(x)")])
    outcome, problems = notebook_problems(unfinished)
    assert outcome == "ok" and problems == ["unfinished: cells 6, 9 used a function that still raises NotImplementedError"]
    broken = Execution(errors=[err(3, "NameError", "name 'x' is not defined", "x + 1")])
    outcome, problems = notebook_problems(broken)
    assert outcome == "errors" and "NameError in cell 3" in problems[0]
    died = Execution(errors=[err(2, "SyntaxError", "invalid syntax", "def f(:")], stopped_at=5,
                             stop_reason="kernel died")
    outcome, problems = notebook_problems(died)
    assert outcome == "kernel died" and any(p.startswith("syntax error") for p in problems)
