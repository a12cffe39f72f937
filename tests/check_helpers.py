"""Shared helper for testing exercise checks: each check must reject the stub and plausible wrong
answers, and accept the solution. ``test_checks_registry`` makes sure every registered check is
verified this way somewhere in tests/."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from toyattn.checks.core import PASS_PREFIX, CheckFailed, NotImplementedYet


def stub(*args, **kwargs):
    # YOUR CODE HERE
    raise NotImplementedError()


def verify_check(
    check: Callable[..., None],
    solution: object,
    wrong_answers: Sequence[object],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Assert ``check`` accepts ``solution``, rejects the stub as "not implemented", and rejects each wrong answer."""
    assert wrong_answers, "give at least one plausible wrong answer"
    check(solution)
    out = capsys.readouterr().out
    assert f"{PASS_PREFIX} {check.__name__}" in out, out

    with pytest.raises(NotImplementedYet, match="not implemented yet"):
        check(stub)
    assert PASS_PREFIX not in capsys.readouterr().out

    for i, wrong in enumerate(wrong_answers):
        with pytest.raises(CheckFailed) as info:
            check(wrong)
        assert str(info.value).startswith(check.__name__), f"wrong answer {i}: message must name the check"
        assert PASS_PREFIX not in capsys.readouterr().out, f"wrong answer {i} was accepted"
