"""The package's one converter: what a user passes (tensor, NumPy array, list) as a checked array or tensor.

Every function that accepts "a matrix" goes through here, so a tensor on a GPU, one that requires
grad, a bfloat16 tensor, a NumPy array and a nested list all work the same way everywhere, and a
wrong input gets the same clear error naming the argument:

* :func:`to_numpy` - a NumPy copy of anything array-like (lesson 0 teaches it);
* :func:`try_numpy` - the same, or ``None`` for something that is not array-like (the exercise
  checks compare a student's return value without trusting it to be an array);
* :func:`as_matrix` - a float64 NumPy array of a given number of dimensions, real, finite unless
  asked otherwise (heatmaps in :mod:`toyattn.plotting`, circuits in lessons 4-5);
* :func:`as_float_tensor` - a detached real floating-point torch tensor (symmetry scores, lesson 3).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["as_float_tensor", "as_matrix", "to_numpy", "try_numpy"]

#: Values :func:`try_numpy` treats as array-like (anything else gives ``None``).
_ARRAY_LIKE = (torch.Tensor, np.ndarray, np.generic, list, tuple, int, float, bool)


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy copy of a tensor from any device, even one that requires grad; arrays pass through.

    ``tensor.numpy()`` fails on CUDA tensors and on tensors that require grad; this does not.
    bfloat16 (which NumPy lacks) becomes float32.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.cpu().numpy()
    return np.asarray(x)


def try_numpy(x: Any) -> np.ndarray | None:
    """:func:`to_numpy` of a tensor or array-like value, or ``None`` when ``x`` is not one (or is ragged)."""
    if not isinstance(x, _ARRAY_LIKE):
        return None
    try:
        return to_numpy(x)
    except ValueError:  # a ragged list
        return None


def _check_real(arr: np.ndarray, name: str, purpose: str) -> None:
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} holds complex numbers; {purpose} are defined for real weights (take .real?).")


def _numbers(x: Any, name: str) -> np.ndarray:
    """``x`` as a NumPy array of numbers (or booleans), or a TypeError naming ``name``."""
    try:
        arr = to_numpy(x)
    except Exception as err:  # noqa: BLE001 - re-raised with a sentence the user can act on
        raise TypeError(f"{name} must be a tensor or array of numbers, got {type(x).__name__} ({err}).") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype} (from {type(x).__name__}).")
    return arr


def _check_ndim(arr: np.ndarray, name: str, ndim: int, hint: str) -> None:
    if arr.ndim != ndim:
        axes = " [rows, cols]" if ndim == 2 else ""
        more = hint if arr.ndim > ndim else ""
        raise ValueError(f"{name} must be {ndim}-D{axes}, got shape {tuple(arr.shape)}.{more}")


def _check_finite(arr: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; check the weights (did training diverge?).")


def as_matrix(
    x: Any,
    name: str = "matrix",
    ndim: int = 2,
    *,
    finite: bool = True,
    hint: str = "",
    purpose: str = "these circuits",
) -> np.ndarray:
    """``x`` (a tensor on any device, possibly requiring grad, an array or a list) as a float64 NumPy array.

    Raises a TypeError naming ``name`` for complex numbers or something that is not numbers, and a
    ValueError when it does not have ``ndim`` dimensions (``hint``, e.g. how to select one matrix, is
    appended when it has more) or,
    with ``finite=True``, holds NaN/inf. Heatmaps pass ``finite=False``: masked scores are ``-inf``.
    """
    arr = _numbers(x, name)
    _check_real(arr, name, purpose)
    _check_ndim(arr, name, ndim, hint)
    arr = arr.astype(np.float64)
    if finite:
        _check_finite(arr, name)
    return arr


def as_float_tensor(x: Any, name: str, *, purpose: str = "symmetry scores") -> torch.Tensor:
    """``x`` (a torch tensor or NumPy array of real floating-point weights) as a detached tensor.

    The device and dtype are kept (the caller chooses where to compute); integer, boolean and complex
    inputs are refused with a TypeError naming ``name`` and the fix.
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or NumPy array, got {type(x).__name__}.")
    if x.is_complex():
        raise TypeError(f"{name} is complex ({x.dtype}); {purpose} are defined for real weights.")
    if not x.is_floating_point():
        raise TypeError(f"{name} must hold floating-point weights, got dtype {x.dtype}; convert with .float().")
    return x.detach()
