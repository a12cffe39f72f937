"""Checks for lesson 3 (``solutions/03_symmetry_scores``): symmetry scores of attention heads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..symmetry import skew_symmetric_key, symmetric_key, symmetry_score_definition
from .core import CheckFailed, assert_close, call_student, legacy_check

__all__ = [
    "check_batched_symmetry_scores",
    "check_skew_symmetric_key",
    "check_symmetry_score_definition",
    "check_symmetry_score_trace",
]


def _head_cases() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    W4 = torch.randn(7, 4, generator=g, dtype=torch.float64)
    W3 = torch.randn(5, 3, generator=g, dtype=torch.float64)
    return {
        "a random head, d_model=6, d_head=2": (
            torch.randn(6, 2, generator=g, dtype=torch.float64),
            torch.randn(6, 2, generator=g, dtype=torch.float64),
        ),
        "a symmetric head (W_k = W_q P, P symmetric)": (W4, symmetric_key(W4, generator=g)),
        "a skew-symmetric head (W_k = W_q S^T)": (W3, skew_symmetric_key(W3, generator=g)),
        "a random head, d_model=16, d_head=1": (
            torch.randn(16, 1, generator=g, dtype=torch.float64),
            torch.randn(16, 1, generator=g, dtype=torch.float64),
        ),
        "W_k = 3 W_q + noise (mostly symmetric)": (W4, 3 * W4 + torch.randn(7, 4, generator=g, dtype=torch.float64)),
    }


def _as_float(value: Any, what: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise CheckFailed(f"{what}: expected one number per head, got a tensor of shape {tuple(value.shape)}.")
        return float(value.detach().cpu())
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CheckFailed(f"{what}: expected a number, got {type(value).__name__}.") from None


class _SizeWatch(torch.Tensor):
    """A tensor that remembers the largest result any torch operation on it produced.

    Lets a check notice that a "fast" answer still builds the ``d_model x d_model`` matrix ``M``.
    """

    largest = 0

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN206
        out = super().__torch_function__(func, types, args, kwargs or {})
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                _SizeWatch.largest = max(_SizeWatch.largest, t.numel())
        return out


def _watched(*tensors: torch.Tensor) -> list[torch.Tensor]:
    _SizeWatch.largest = 0
    return [t.clone().as_subclass(_SizeWatch) for t in tensors]


def _plain(x: Any) -> Any:
    return x.as_subclass(torch.Tensor) if isinstance(x, torch.Tensor) else x


@legacy_check
def check_symmetry_score_definition(score_fn: Callable[[torch.Tensor, torch.Tensor], Any]) -> int:
    """``score_fn(W_q, W_k)`` builds ``M = W_q W_k^T`` and returns ``||(M + M^T)/2||^2 / ||M||^2``."""
    cases = _head_cases()
    for name, (W_q, W_k) in cases.items():
        got = _as_float(call_student(score_fn, W_q.clone(), W_k.clone(), case=name), f"score of {name}")
        assert_close(got, float(symmetry_score_definition(W_q, W_k)), what=f"score of {name}", atol=1e-6)
    return len(cases)


@legacy_check
def check_symmetry_score_trace(score_fn: Callable[[torch.Tensor, torch.Tensor], Any]) -> int | str:
    """``score_fn(W_q, W_k)`` gives the same score through ``A, B, C`` without building the ``d x d`` matrix."""
    cases = _head_cases()
    g = torch.Generator().manual_seed(4)
    cases["a wide head, d_model=300, d_head=4"] = (
        torch.randn(300, 4, generator=g, dtype=torch.float64),
        torch.randn(300, 4, generator=g, dtype=torch.float64),
    )
    for name, (W_q, W_k) in cases.items():
        d_model = W_q.shape[0]
        watched_q, watched_k = _watched(W_q, W_k)
        got = _plain(call_student(score_fn, watched_q, watched_k, case=name))
        got = _as_float(got, f"score of {name}")
        assert_close(got, float(symmetry_score_definition(W_q, W_k)), what=f"score of {name}", atol=1e-6)
        if d_model > 2 * W_q.shape[1] and _SizeWatch.largest >= d_model * d_model:
            raise CheckFailed(
                f"score of {name}: the value is right, but a tensor with {_SizeWatch.largest} entries "
                f"(as many as the {d_model} x {d_model} matrix M) was built. The trace form only needs the "
                "d_head x d_head matrices A = W_q^T W_q, B = W_k^T W_k and C = W_k^T W_q."
            )
    return len(cases)


@legacy_check
def check_skew_symmetric_key(make_key: Callable[[torch.Tensor, torch.Generator], torch.Tensor]) -> int:
    """``make_key(W_q, generator)`` returns ``W_k`` (same shape) whose ``M = W_q W_k^T`` is skew-symmetric, not 0."""
    g = torch.Generator().manual_seed(5)
    shapes = [(4, 2), (6, 3), (10, 4), (32, 8)]
    for d_model, d_head in shapes:
        name = f"W_q of shape [{d_model}, {d_head}]"
        W_q = torch.randn(d_model, d_head, generator=g, dtype=torch.float64)
        W_k = call_student(make_key, W_q.clone(), torch.Generator().manual_seed(d_model), case=name)
        if not isinstance(W_k, torch.Tensor):
            raise CheckFailed(f"{name}: expected W_k as a torch.Tensor, got {type(W_k).__name__}.")
        if tuple(W_k.shape) != (d_model, d_head):
            raise CheckFailed(f"{name}: W_k must have W_q's shape {(d_model, d_head)}, got {tuple(W_k.shape)}.")
        M = W_q @ W_k.to(W_q).T
        size = float(M.norm())
        if size < 1e-6 * float(W_q.norm()) ** 2:
            raise CheckFailed(f"{name}: M = W_q W_k^T is (almost) zero; a skew-symmetric M must not be 0.")
        asym = float((M + M.T).norm()) / size
        if asym > 1e-6:
            raise CheckFailed(
                f"{name}: M + M^T should be 0 for a skew-symmetric M, but ||M + M^T|| / ||M|| = {asym:.3g}. "
                "Hint: with W_k = W_q S^T, M = W_q S W_q^T; what must S satisfy?"
            )
    return len(shapes)


@legacy_check
def check_batched_symmetry_scores(scores_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> int:
    """``scores_fn(W_Q, W_K)`` maps ``[layers, heads, d_model, d_head]`` to scores ``[layers, heads]``."""
    g = torch.Generator().manual_seed(6)
    cases = {
        "2 layers x 3 heads, d_model=12, d_head=4": (2, 3, 12, 4),
        "4 layers x 1 head, d_model=40, d_head=5": (4, 1, 40, 5),
        "1 layer x 5 heads, d_model=9, d_head=3": (1, 5, 9, 3),
    }
    for name, (L, H, d, dh) in cases.items():
        W_Q = torch.randn(L, H, d, dh, generator=g, dtype=torch.float64)
        W_K = torch.randn(L, H, d, dh, generator=g, dtype=torch.float64)
        W_K[0, 0] = symmetric_key(W_Q[0, 0], generator=g)  # one head with score 1, to tell heads apart
        W_K[-1, -1] = skew_symmetric_key(W_Q[-1, -1], generator=g)  # and one with score 0
        watched_q, watched_k = _watched(W_Q, W_K)
        got = _plain(call_student(scores_fn, watched_q, watched_k, case=name))
        assert_close(got, symmetry_score_definition(W_Q, W_K), what=f"scores of {name}", atol=1e-6, check_type=False)
        if d > 2 * dh and _SizeWatch.largest >= L * H * d * d:
            raise CheckFailed(
                f"scores of {name}: right values, but the d_model x d_model matrices M were built "
                f"({_SizeWatch.largest} entries); use the trace form with einsum over [layers, heads]."
            )
    return len(cases)
