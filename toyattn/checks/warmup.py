"""Checks for the warm-up problem set (``solutions/00_warmup``): tensors, softmax, one-hot."""

from __future__ import annotations

import numpy as np
import torch

from toyattn.checks.answers import Returned
from toyattn.checks.core import Case, CheckFailed, assert_close, exercise_check, torch_generator
from toyattn.checks.guards import forbid_torch


def _softmax_cases(rng: np.random.Generator) -> list[Case]:
    g = torch_generator(rng)
    big = 1000.0 + 10 * torch.rand(2, generator=g)
    return [
        Case("a row vector", (torch.randn(3, generator=g),)),
        Case("a [3, 4] matrix", (torch.randn(3, 4, generator=g),)),
        Case("a [2, 3, 5] batch", (torch.randn(2, 3, 5, generator=g),)),
        Case("large scores (about 1000)", (torch.stack([big, -big]),)),
        Case("a row of -inf except one", (torch.tensor([float(rng.normal()), float("-inf"), float("-inf")]),)),
    ]


@exercise_check(
    cases=_softmax_cases,
    during=[forbid_torch("softmax", hint="The exercise is to build softmax from exp, max and sum yourself.")],
)
def check_softmax(case: Case, got: Returned) -> None:
    """``softmax_fn(x)`` normalises the last axis, also for large scores (it must not overflow)."""
    (x,) = case.args
    # rtol 1e-4: x - logsumexp(x) is a right way too, and loses a few float32 digits at scores near 1000.
    assert_close(got, torch.softmax(x, dim=-1), what=f"softmax of {case.name}", rtol=1e-4, mistakes={
        "e^x overflowed: e^1000 is inf in float32, and inf / inf is NaN. Subtract each row's maximum first "
        "(the result does not change, the exponentials stop overflowing)": lambda: _naive_softmax(x),
        "the maximum of the whole tensor was subtracted: subtract each row's own maximum, or a row far below "
        "it underflows to 0 / 0": lambda: _naive_softmax(x - x.max()),
        "the rows were not normalised: divide by each row's sum": lambda: (x - x.amax(-1, keepdim=True)).exp(),
        "the softmax ran over the first axis: use the last one (dim=-1)": lambda: torch.softmax(x, dim=0),
    })


def _naive_softmax(x: torch.Tensor) -> torch.Tensor:
    return x.exp() / x.exp().sum(dim=-1, keepdim=True)


def _one_hot_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    # Distinct ids (so a reversed order shows) and, in the last case, a largest id below n - 1
    # (so a one-hot that infers the number of classes from the ids shows).
    for shape, n, top in (((3,), 3, 3), ((2, 2), 5, 5), ((1,), 7, 6)):
        ids = torch.as_tensor(rng.choice(top, size=shape, replace=False))
        cases.append(Case(f"ids {ids.tolist()}, {n} classes", (ids, n)))
    return cases


@exercise_check(cases=_one_hot_cases)
def check_one_hot(case: Case, got: Returned) -> None:
    """``one_hot_fn(ids, n_classes)`` returns a float tensor ``[*ids.shape, n_classes]``."""
    ids, n = case.args
    assert_close(got, torch.nn.functional.one_hot(ids, n).float(), what=f"one_hot of {case.name}", mistakes={
        "the number of classes came from the ids (one_hot(ids) without n_classes): the largest id need not be "
        "n_classes - 1": lambda: torch.nn.functional.one_hot(ids).float(),
        "the classes are on the first axis: the one-hot axis goes last, [*ids.shape, n_classes]":
            lambda: torch.nn.functional.one_hot(ids, n).float().movedim(-1, 0),
    })
    if not got.torch_dtype() or not got.torch_dtype().startswith("torch.float"):
        raise CheckFailed(
            f"one_hot of {case.name}: expected a float tensor (to multiply with weights), got {got.kind}."
        )
