"""toyattn.grading.execute: the record of a run read back from the sandbox is validated."""

from __future__ import annotations

import pytest

from toyattn.grading.execute import execution_from_json


def test_the_runs_record_is_validated():
    run = execution_from_json({"seconds": 2, "errors": [{"cell": 3, "ename": "E", "evalue": "x" * 10_000,
                                                         "first_line": "f()"}], "stop_reason": "kernel died"})
    assert run.stop_reason == "kernel died" and len(run.errors[0].evalue) == 500
    for bad in ([], {"stop_reason": "passed"}, {"errors": [{"cell": "3"}]}, {"seconds": "fast"}, {"notes": [1]}):
        with pytest.raises(ValueError):
            execution_from_json(bad)
