"""Shared helper for testing exercise checks: each check must reject the stub and plausible wrong
answers, and accept the solution, both in class (judged in the notebook) and in grading (answers
recorded by the kernel, judged from plain arrays by the grader). ``test_checks_registry`` makes sure
every registered check is verified this way somewhere in tests/."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from toyattn.checks.answers import ANSWERS_DIR_ENV, SEED_ENV, read_answers
from toyattn.checks.core import CLASS_SEED, PASS_PREFIX, Check, CheckFailed, NotImplementedYet

GRADING_SEEDS = (12345, 987654321)


def stub(*args, **kwargs):
    # YOUR CODE HERE
    raise NotImplementedError()


def graded(check: Check, answer: object, seed: int, folder: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """``(status, message)`` as ``toyattn grade`` decides it: the answer runs in "the kernel" (here),
    its arrays are written and read back, and the judge runs on them with the grader's seed."""
    with monkeypatch.context() as m:
        m.setenv(ANSWERS_DIR_ENV, str(folder))
        m.setenv(SEED_ENV, str(seed))
        try:
            check(answer)
        except (CheckFailed, NotImplementedYet):
            pass  # a failing check: the grader judges the recorded answers below; anything else is a bug
    answers = read_answers(folder, check.name)
    assert answers is not None, f"{check.name} wrote no answers in grading mode"
    return check.judge_answers(answers, seed)


def verify_check(
    check: Check,
    solution: object,
    wrong_answers: Sequence[object],
    capsys: pytest.CaptureFixture[str],
    *,
    messages: Sequence[str | None] | None = None,
    tmp_path_factory: pytest.TempPathFactory | None = None,
    monkeypatch: pytest.MonkeyPatch | None = None,
    names_case: bool = False,
) -> None:
    """Assert ``check`` accepts ``solution``, rejects the stub as "not implemented", and rejects each
    wrong answer with a message that names the check (and, where ``messages[i]`` is given, contains
    that text: the recognisable mistake). Needs at least two wrong answers.

    With ``tmp_path_factory`` and ``monkeypatch``, the same verdicts are also required from the
    grading path for two fresh seeds. With ``names_case``, each failure must also name the case and say
    what was expected and what came back (see :func:`assert_failure_names_case`).
    """
    assert len(wrong_answers) >= 2, "give at least two plausible wrong answers"
    assert messages is None or len(messages) == len(wrong_answers)
    check(solution)
    out = capsys.readouterr().out
    assert f"{PASS_PREFIX} {check.__name__}" in out, out

    with pytest.raises(NotImplementedYet, match="not implemented yet"):
        check(stub)
    assert PASS_PREFIX not in capsys.readouterr().out

    case_names = [case.name for case in check.cases(CLASS_SEED)] if names_case else []
    for i, wrong in enumerate(wrong_answers):
        with pytest.raises(CheckFailed) as info:
            check(wrong)
        assert str(info.value).startswith(check.__name__), f"wrong answer {i}: message must name the check"
        if messages is not None and messages[i] is not None:
            assert messages[i] in str(info.value), f"wrong answer {i}: {info.value}"
        assert PASS_PREFIX not in capsys.readouterr().out, f"wrong answer {i} was accepted"
        if names_case:
            assert_message_names_case(str(info.value), case_names)

    if tmp_path_factory is None or monkeypatch is None:
        return
    for seed in GRADING_SEEDS:
        status, message = graded(check, solution, seed, tmp_path_factory.mktemp("answers"), monkeypatch)
        assert status == "passed", f"solution, seed {seed}: {status}: {message}"
        status, _ = graded(check, stub, seed, tmp_path_factory.mktemp("answers"), monkeypatch)
        assert status == "not implemented"
        for i, wrong in enumerate(wrong_answers):
            status, message = graded(check, wrong, seed, tmp_path_factory.mktemp("answers"), monkeypatch)
            assert status == "failed", f"wrong answer {i}, seed {seed}: graded {status}"
            assert message.startswith(check.__name__)
    capsys.readouterr()


def assert_failure_names_case(check: Check, wrong: object) -> str:
    """The class-mode failure of ``wrong`` names one of the check's cases, what was expected and what came
    back (``expected ..., got ...``); returns the message."""
    with pytest.raises(CheckFailed) as info:
        check(wrong)
    return assert_message_names_case(str(info.value), [case.name for case in check.cases(CLASS_SEED)])


def assert_message_names_case(msg: str, case_names: Sequence[str]) -> str:
    assert any(name in msg for name in case_names), f"the message names no case: {msg}"
    assert "expected" in msg.lower() and "got" in msg, f"the message does not say what was expected and what came back: {msg}"
    return msg


def good_softmax(x):
    e = (x - x.max(dim=-1, keepdim=True).values).exp()
    return e / e.sum(dim=-1, keepdim=True)
