"""toyattn.checks.core: the check machinery's messages (assert_close says what differs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toyattn.checks.core import CheckFailed, assert_close

pytestmark = pytest.mark.usefixtures("single_thread")


def test_assert_close_messages_say_what_differs():
    with pytest.raises(CheckFailed, match=r"expected shape \(2, 3\), got \(3, 2\)"):
        assert_close(torch.zeros(3, 2), torch.zeros(2, 3))
    with pytest.raises(CheckFailed, match="expected a torch.Tensor, got ndarray"):
        assert_close(np.zeros(3), torch.zeros(3))
    with pytest.raises(CheckFailed, match="expected dtype torch.float32, got torch.float64"):
        assert_close(torch.zeros(3, dtype=torch.float64), torch.zeros(3), check_dtype=True)
    with pytest.raises(CheckFailed, match=r"1 of 4 entries differ; first at index \(1, 0\): expected 0\.0, got 5\.0"):
        assert_close(torch.tensor([[0.0, 0.0], [5.0, 0.0]]), torch.zeros(2, 2))
    with pytest.raises(CheckFailed, match="contains NaN"):
        assert_close(torch.tensor([1.0, float("nan")]), torch.ones(2))
    assert_close(torch.ones(3) + 1e-8, torch.ones(3))  # within tolerance: no error


def test_two_lessons_cannot_register_checks_of_one_name():
    """A lesson's check that took another lesson's name would replace it in ``checks.`` and in grading."""
    from toyattn.checks.core import REGISTRY, exercise_check

    def check_softmax(case, got):  # noqa: ARG001 - the name of lesson 0's check, from another module
        pass

    check_softmax.__module__ = "toyattn.checks.some_new_lesson"
    with pytest.raises(ValueError, match="two checks are named check_softmax"):
        exercise_check(cases=lambda rng: [])(check_softmax)
    assert REGISTRY["check_softmax"]._judge.__module__ == "toyattn.checks.warmup"
