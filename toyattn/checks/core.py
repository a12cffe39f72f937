"""The machinery behind every exercise check (ARENA-style: a check sits right below the exercise cell).

A check takes the student's function (or value), runs it on several cases against the reference
implementation in ``toyattn``, and either prints one pass line or raises :class:`CheckFailed`
(an ``AssertionError``) saying what was expected and what came back. A function whose body still
raises ``NotImplementedError`` gets a friendly "not implemented yet" message instead of a traceback.

The pass line has a fixed form that ``toyattn grade`` reads from executed notebooks::

    ✅ PASSED check_softmax: 4 cases match the reference.

Writing a new check::

    @exercise_check
    def check_softmax(softmax_fn):
        for name, x in cases:
            got = call_student(softmax_fn, x, case=name)
            assert_close(got, reference_softmax(x), what=f"softmax({name})")
        return len(cases)          # number of cases, for the pass line
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

PASS_PREFIX = "✅ PASSED"
#: Every check defined with :func:`exercise_check`, by name (``toyattn grade`` and the tests use it).
REGISTRY: dict[str, Callable[..., None]] = {}


class CheckFailed(AssertionError):
    """The student's answer disagrees with the reference; the message says where."""


class NotImplementedYet(CheckFailed):
    """The student's function still raises ``NotImplementedError``."""


def exercise_check(fn: Callable[..., int | str | None]) -> Callable[..., None]:
    """Register ``fn`` as a check and give it the common behaviour.

    ``fn`` raises :class:`CheckFailed` (or any ``AssertionError``) on a wrong answer and returns
    the number of cases it ran (or a short description) on success. The wrapper prints the pass
    line and turns a bare ``AssertionError`` into a ``CheckFailed`` that names the check.
    """
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            result = fn(*args, **kwargs)
        except NotImplementedYet:
            raise
        except AssertionError as err:
            msg = str(err)
            if not msg.startswith(name):
                msg = f"{name}: {msg}"
            raise CheckFailed(msg) from None
        if isinstance(result, int):
            detail = f"{result} case{'s' if result != 1 else ''} match the reference."
        else:
            detail = result or "matches the reference."
        print(f"{PASS_PREFIX} {name}: {detail}")

    REGISTRY[name] = wrapper
    return wrapper


def call_student(fn: Callable[..., Any], *args: Any, case: str = "", **kwargs: Any) -> Any:
    """Call the student's function, turning ``NotImplementedError`` into a friendly failure.

    Any other exception propagates unchanged, so the student sees their own bug's traceback.
    """
    if not callable(fn):
        raise CheckFailed(
            f"expected a function, got {type(fn).__name__}. Pass the function itself, without calling it "
            f"(e.g. `check(my_fn)`, not `check(my_fn())`)."
        )
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        fname = getattr(fn, "__name__", "your function")
        raise NotImplementedYet(
            f"`{fname}` is not implemented yet: replace `raise NotImplementedError()` under "
            f"'# YOUR CODE HERE' with your code, run that cell, then run this check again."
        ) from None


def _as_array(x: Any) -> np.ndarray | None:
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.cpu().numpy()
    if isinstance(x, np.ndarray | np.generic | list | tuple | int | float | bool):
        try:
            return np.asarray(x)
        except ValueError:
            return None
    return None


def assert_close(
    actual: Any,
    expected: Any,
    *,
    what: str = "result",
    rtol: float = 1e-5,
    atol: float = 1e-6,
    check_dtype: bool = False,
    check_type: bool = True,
) -> None:
    """Assert two tensors/arrays/scalars agree, with a message a student can act on.

    Reports, in this order: a wrong type (tensor vs array), a wrong shape, a wrong dtype (if
    ``check_dtype``), NaNs, and the first differing entry with both values and the largest error.
    """
    if check_type and isinstance(expected, torch.Tensor) and not isinstance(actual, torch.Tensor):
        raise CheckFailed(f"{what}: expected a torch.Tensor, got {type(actual).__name__}.")
    a, e = _as_array(actual), _as_array(expected)
    if a is None:
        raise CheckFailed(f"{what}: expected a number, array or tensor, got {type(actual).__name__}.")
    if a.shape != e.shape:
        raise CheckFailed(f"{what}: expected shape {tuple(e.shape)}, got {tuple(a.shape)}.")
    if check_dtype and isinstance(expected, torch.Tensor) and actual.dtype != expected.dtype:
        raise CheckFailed(f"{what}: expected dtype {expected.dtype}, got {actual.dtype}.")
    if e.dtype == bool or a.dtype == bool:
        bad = a != e
    else:
        a_f, e_f = a.astype(np.float64), e.astype(np.float64)
        if np.isnan(a_f).any() and not np.isnan(e_f).any():
            idx = tuple(int(i) for i in np.argwhere(np.isnan(a_f))[0])
            raise CheckFailed(f"{what}: contains NaN, first at index {idx}.")
        bad = ~np.isclose(a_f, e_f, rtol=rtol, atol=atol, equal_nan=True)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0]) if bad.ndim else ()
        n_bad = int(bad.sum())
        msg = (
            f"{what}: {n_bad} of {bad.size} entries differ; first at index {idx}: "
            f"expected {e[idx].tolist()!r}, got {a[idx].tolist()!r}."
        )
        if e.dtype != bool and a.dtype != bool:
            msg += f" Largest absolute error {float(np.nanmax(np.abs(a_f - e_f))):.3g}."
        raise CheckFailed(msg)


def assert_equal(actual: Any, expected: Any, *, what: str = "result") -> None:
    """Assert exact equality of plain values (ints, strings, tuples), with both shown."""
    if actual != expected:
        raise CheckFailed(f"{what}: expected {expected!r}, got {actual!r}.")
