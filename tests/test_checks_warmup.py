"""The warm-up checks (lesson 0): the solution passes, the mistakes are named, failures name the case."""

from __future__ import annotations

import pytest
import torch
from check_helpers import assert_failure_names_case, good_softmax, verify_check

from toyattn import checks
from toyattn.checks.core import CheckFailed

pytestmark = pytest.mark.usefixtures("single_thread")


def test_check_softmax(capsys, tmp_path_factory, monkeypatch):
    forbidden = "calls torch's `"
    verify_check(
        checks.check_softmax,
        good_softmax,
        [
            lambda x: x.exp() / x.exp().sum(dim=-1, keepdim=True),  # overflows on large scores
            lambda x: good_softmax(x.transpose(0, -1)).transpose(0, -1),  # wrong axis
            lambda x: (x - x.max(dim=-1, keepdim=True).values).exp(),  # forgot to normalise
            lambda x: (x - x.max()).exp() / (x - x.max()).exp().sum(dim=-1, keepdim=True),  # the global maximum
            # right numbers, but the prompt forbids torch's softmax, in any of its spellings:
            lambda x: torch.softmax(x, dim=-1),
            lambda x: torch.nn.functional.softmax(x, dim=-1),
            lambda x: x.softmax(-1),
            lambda x: torch.nn.Softmax(dim=-1)(x),
            lambda x: torch.special.softmax(x, dim=-1),
            lambda x: torch.log_softmax(x, dim=-1).exp(),
            lambda x: torch.nn.functional.log_softmax(x, dim=-1).exp(),
        ],
        capsys,
        messages=["e^x overflowed", None, "not normalised", "maximum of the whole tensor"] + [forbidden] * 7,
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
    )


def test_failures_name_the_case_what_was_expected_and_what_came_back():
    for wrong in (
        lambda x: x.exp() / x.exp().sum(dim=-1, keepdim=True),
        lambda x: (x - x.max(dim=-1, keepdim=True).values).exp(),
        lambda x: (x - x.max()).exp() / (x - x.max()).exp().sum(dim=-1, keepdim=True),
    ):
        assert_failure_names_case(checks.check_softmax, wrong)
    for wrong in (
        lambda ids, n: torch.nn.functional.one_hot(ids, n),
        lambda ids, n: torch.nn.functional.one_hot(ids).float(),
        lambda ids, n: torch.nn.functional.one_hot(ids, n).float().movedim(-1, 0),
    ):
        assert_failure_names_case(checks.check_one_hot, wrong)


def test_softmax_mistakes_are_named():
    with pytest.raises(CheckFailed, match="contains NaN.*e\\^x overflowed"):
        checks.check_softmax(lambda x: x.exp() / x.exp().sum(dim=-1, keepdim=True))
    with pytest.raises(CheckFailed, match="softmax ran over the first axis"):
        checks.check_softmax(lambda x: good_softmax(x.transpose(0, -1)).transpose(0, -1) if x.dim() == 2 else good_softmax(x))


def test_softmax_from_logsumexp_is_accepted(capsys):
    checks.check_softmax(lambda x: (x - x.logsumexp(dim=-1, keepdim=True)).exp())  # a right way without softmax
    assert "PASSED" in capsys.readouterr().out


def test_check_one_hot(capsys, tmp_path_factory, monkeypatch):
    def good(ids, n):
        return torch.nn.functional.one_hot(ids, n).float()

    verify_check(
        checks.check_one_hot,
        good,
        [
            lambda ids, n: torch.nn.functional.one_hot(ids, n),  # integer dtype
            lambda ids, n: torch.nn.functional.one_hot(ids).float(),  # too few classes
            lambda ids, n: torch.nn.functional.one_hot(ids.flip(-1), n).float(),  # wrong order
            lambda ids, n: torch.nn.functional.one_hot(ids, n).float().movedim(-1, 0),  # classes first
            lambda ids, n: torch.nn.functional.one_hot(ids, n).bool(),  # bool
        ],
        capsys,
        messages=["expected a float tensor", "classes came from the ids", None, "the classes are on the first axis",
                  "expected a float tensor"],
        tmp_path_factory=tmp_path_factory,
        monkeypatch=monkeypatch,
    )
    checks.check_one_hot(lambda ids, n: torch.eye(n)[ids])  # another right way


def test_check_rejects_a_value_instead_of_a_function():
    with pytest.raises(CheckFailed, match="expected a function"):
        checks.check_softmax(torch.zeros(3))


def test_a_bug_in_student_code_shows_the_students_own_error():
    def buggy(x):
        return x.exp() / x.exp().sum(dim=7)  # an out-of-range axis: an error inside the student code

    with pytest.raises(IndexError):
        checks.check_softmax(buggy)
