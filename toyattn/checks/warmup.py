"""Checks for the warm-up problem set (``solutions/00_warmup``): tensors, softmax, one-hot."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .core import assert_close, call_student, exercise_check


@exercise_check
def check_softmax(softmax_fn: Callable[[torch.Tensor], torch.Tensor]) -> int:
    """``softmax_fn(x)`` normalises the last axis, also for large scores (it must not overflow)."""
    g = torch.Generator().manual_seed(0)
    cases = {
        "a row vector": torch.tensor([1.0, 2.0, 3.0]),
        "a [3, 4] matrix": torch.randn(3, 4, generator=g),
        "a [2, 3, 5] batch": torch.randn(2, 3, 5, generator=g),
        "large scores [1000, 1001]": torch.tensor([[1000.0, 1001.0], [-1000.0, -1000.0]]),
        "a row of -inf except one": torch.tensor([0.5, float("-inf"), float("-inf")]),
    }
    for name, x in cases.items():
        got = call_student(softmax_fn, x.clone(), case=name)
        assert_close(got, torch.softmax(x, dim=-1), what=f"softmax of {name}")
    return len(cases)


@exercise_check
def check_one_hot(one_hot_fn: Callable[[torch.Tensor, int], torch.Tensor]) -> int:
    """``one_hot_fn(ids, n_classes)`` returns a float tensor ``[*ids.shape, n_classes]``."""
    cases = {
        "ids [0, 2, 1], 3 classes": (torch.tensor([0, 2, 1]), 3),
        "ids [[1, 3], [0, 0]], 5 classes": (torch.tensor([[1, 3], [0, 0]]), 5),
        "ids [4], 7 classes": (torch.tensor([4]), 7),
    }
    for name, (ids, n) in cases.items():
        got = call_student(one_hot_fn, ids.clone(), n, case=name)
        assert_close(got, torch.nn.functional.one_hot(ids, n).float(), what=f"one_hot of {name}")
        if not got.is_floating_point():
            raise AssertionError(f"one_hot of {name}: expected a float tensor (to multiply with weights), "
                                 f"got dtype {got.dtype}.")
    return len(cases)
