"""toyattn.checks.guards: the guards a check runs the student's code under leave tracing and profiling as they were."""

from __future__ import annotations

import sys

from symmetry_helpers import batched_scores, score_by_trace_linear

from toyattn import checks


def test_guards_leave_profiling_and_tracing_as_they_were():
    def tracer(frame, event, arg):
        return None

    sys.settrace(tracer)
    try:
        checks.check_batched_symmetry_scores(batched_scores)
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(None)
    assert sys.getprofile() is None


def test_guards_step_aside_for_a_running_profiler(capsys):
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        checks.check_symmetry_score_trace(score_by_trace_linear)  # must neither fail nor switch the profiler off
        still_profiling = sys.getprofile() is profiler
    finally:
        profiler.disable()
    assert still_profiling
    assert "PASSED" in capsys.readouterr().out
