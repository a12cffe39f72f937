"""Checks for lesson 4 (``solutions/04_qk_ov_matching``): reading QK/OV circuits and matching subspaces."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from toyattn import circuits as C
from toyattn.models.transformer import Transformer, TransformerConfig

from .core import CheckFailed, assert_close, call_student, legacy_check

__all__ = [
    "check_qk_ov_from_model",
    "check_matching_score",
    "check_random_matching_baseline",
    "check_diagonal_zscore",
    "check_token_mismatch_ratio",
]


def _as_float(x: Any, what: str) -> float:
    if isinstance(x, torch.Tensor):
        if x.numel() != 1:
            raise CheckFailed(f"{what}: expected one number, got a tensor of shape {tuple(x.shape)}.")
        return float(x.detach().cpu())
    if isinstance(x, (np.ndarray, np.generic)) and np.size(x) == 1:
        return float(x)
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return float(x)
    raise CheckFailed(f"{what}: expected one number (a float), got {type(x).__name__}.")


def _models() -> dict[str, Transformer]:
    out = {}
    for name, kw in {
        "d_model 16, d_head 16": dict(d_model=16),
        "d_model 12, d_head 8": dict(d_model=12, d_head=8),
    }.items():
        torch.manual_seed(len(out))
        out[name] = Transformer(TransformerConfig(vocab_size=9, max_len=8, **kw))
    return out


@legacy_check
def check_qk_ov_from_model(fn: Callable[[Transformer], tuple[Any, Any]]) -> int:
    """``fn(model) -> (W_qk, W_ov)``: layer 2's QK circuit at distance 0 (scaled by 1/sqrt(d_head))
    and layer 1's OV circuit, both ``[d_model, d_model]``."""
    models = _models()
    for name, model in models.items():
        got = call_student(fn, model, case=name)
        if not isinstance(got, tuple) or len(got) != 2:
            raise CheckFailed(f"model with {name}: expected a pair (W_qk, W_ov), got {type(got).__name__}.")
        l1, l2 = C.head_weights(model, 0), C.head_weights(model, 1)
        assert_close(got[0], C.qk_circuit(l2["W_Q"], l2["W_K"]), what=f"W_qk of the model with {name}",
                     check_type=False, rtol=1e-4, atol=1e-5)
        assert_close(got[1], C.ov_circuit(l1["W_V"], l1["W_O"]), what=f"W_ov of the model with {name}",
                     check_type=False, rtol=1e-4, atol=1e-5)
    return len(models)


def _matching_cases() -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    rng = np.random.default_rng(0)
    d = 10
    U = np.linalg.qr(rng.standard_normal((d, d)))[0]
    W_ov = rng.standard_normal((d, 3)) @ np.diag([3.0, 2.0, 1.0]) @ U[:, :3].T
    return {
        "aligned circuits, rank 3": (rng.standard_normal((d, 3)) @ U[:, :3].T * 2, W_ov, 3),
        "unrelated circuits, rank 2": (rng.standard_normal((d, d)), rng.standard_normal((d, d)), 2),
        "unrelated circuits, rank 5": (rng.standard_normal((d, d)), rng.standard_normal((d, d)), 5),
        "partly aligned, rank 4": (rng.standard_normal((d, 4)) @ U[:, 2:6].T, W_ov, 4),
    }


@legacy_check
def check_matching_score(fn: Callable[[Any, Any, int], Any]) -> int:
    """``fn(W_qk, W_ov, rank) -> float``: largest cosine between the top-``rank`` key-side directions
    of ``W_qk`` and the top-``rank`` output directions of ``W_ov``."""
    cases = _matching_cases()
    for name, (W_qk, W_ov, r) in cases.items():
        got = _as_float(call_student(fn, W_qk.copy(), W_ov.copy(), r, case=name), f"matching score for {name}")
        assert_close(got, C.qk_ov_matching(W_qk, W_ov, r, "largest"), what=f"matching score for {name}", atol=1e-6)
    return len(cases)


@legacy_check
def check_random_matching_baseline(fn: Callable[[int, int, int], Any]) -> int:
    """``fn(d, rank, n_runs) -> float``: mean largest cosine between the top-``rank`` singular vectors of
    two independent ``d x d`` Gaussian matrices, over ``n_runs`` pairs. Random, so compared with the
    reference's mean within a statistical tolerance."""
    cases = {"d=16, rank 2": (16, 2), "d=32, rank 4": (32, 4), "d=24, rank 12": (24, 12)}
    for name, (d, r) in cases.items():
        got = _as_float(call_student(fn, d, r, 300, case=name), f"baseline for {name}")
        mean, std = C.random_baseline(d, r, n_runs=300, summary="largest", seed=123)
        tol = max(0.03, 4 * std / np.sqrt(300) * 2)
        if abs(got - mean) > tol:
            raise CheckFailed(
                f"baseline for {name}: expected about {mean:.3f} (within {tol:.3f}), got {got:.3f}. "
                "Compare the first `rank` singular vectors of two independent random matrices, take the largest "
                "singular value of U1[:, :rank].T @ U2[:, :rank], and average over runs."
            )
    return len(cases)


def _square_cases() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    noisy = rng.standard_normal((8, 8))
    return {
        "pure noise 8x8": noisy,
        "strong diagonal 8x8": noisy + 4 * np.eye(8),
        "shifted diagonal 6x6 (previous-token-like)": np.roll(np.eye(6), 1, axis=1) * 3 + rng.standard_normal((6, 6)) * 0.1,
        "growing values 5x5": np.arange(25.0).reshape(5, 5) ** 1.5,
    }


@legacy_check
def check_diagonal_zscore(fn: Callable[[Any], Any]) -> int:
    """``fn(M) -> float``: ``(mean of the diagonal - mean of all entries) / std of all entries``."""
    cases = _square_cases()
    for name, M in cases.items():
        got = _as_float(call_student(fn, M.copy(), case=name), f"z-score of {name}")
        assert_close(got, C.diagonal_zscore(M), what=f"z-score of {name}", rtol=1e-4, atol=1e-6)
    return len(cases)


@legacy_check
def check_token_mismatch_ratio(fn: Callable[[Any], Any]) -> int:
    """``fn(M) -> float``: share of rows whose largest entry is not on the diagonal."""
    cases = _square_cases()
    cases["rows differ from columns 3x3"] = np.array([[5.0, 0, 0], [9, 1, 0], [8, 0, 1]])
    for name, M in cases.items():
        got = _as_float(call_student(fn, M.copy(), case=name), f"mismatch ratio of {name}")
        assert_close(got, C.token_mismatch_ratio(M), what=f"mismatch ratio of {name}")
    return len(cases)
