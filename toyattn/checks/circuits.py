"""Checks for lesson 4 (``solutions/04_qk_ov_matching``): reading QK/OV circuits and matching subspaces.

Every check draws fresh inputs from its seed, refuses answers that call :mod:`toyattn.circuits.matching`
(the course's own answer), and names the common mistakes (transposes, left vs right singular
vectors, the RMS instead of the largest cosine, the sample instead of the population standard
deviation, columns instead of rows).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from toyattn.checks.answers import Returned
from toyattn.checks.core import Case, CheckFailed, as_scalar, assert_close, exercise_check
from toyattn.checks.guards import forbid_calls_into
from toyattn.circuits import matching
from toyattn.heads.weights import HeadWeights
from toyattn.models.transformer import Transformer, TransformerConfig

__all__ = [
    "check_qk_ov_from_model",
    "check_matching_score",
    "check_random_matching_baseline",
    "check_diagonal_zscore",
    "check_token_mismatch_ratio",
]

_NO_LIBRARY = forbid_calls_into(
    matching, hint="toyattn.circuits.matching holds the course's answer; the exercise is to compute it yourself."
)


def _same(a: np.ndarray | torch.Tensor | float, b: np.ndarray | torch.Tensor | float, rtol: float, atol: float) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=atol))


def _name_the_mistake(got: np.ndarray | float, expected: np.ndarray | float, mistakes: dict[str, np.ndarray | torch.Tensor | float],
                      rtol: float, atol: float) -> str:
    """`` That is <mistake>.`` for the mistakes ``got`` matches (and the right answer does not)."""
    matched = [m for m, value in mistakes.items() if _same(got, value, rtol, atol) and not _same(value, expected, rtol, atol)]
    if len(matched) > 1:
        return " That is what several mistakes give: " + "; or ".join(matched) + "."
    return f" That is {matched[0]}." if matched else ""


def _judge_number(got: Returned, expected: float, what: str, mistakes: dict[str, float],
                  rtol: float = 1e-5, atol: float = 1e-6) -> None:
    value = as_scalar(got, what)
    if _same(value, expected, rtol, atol):
        return
    raise CheckFailed(f"{what}: expected {expected:.6g}, got {value:.6g}."
                      + _name_the_mistake(value, expected, mistakes, rtol, atol))


# --------------------------------------------------------------------------------------------------
# Exercise 1: the circuits of a model
# --------------------------------------------------------------------------------------------------


def _model(seed: int, **config: int) -> Transformer:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Transformer(TransformerConfig(vocab_size=9, max_len=8, **config))
        for p in model.parameters():  # biases and norms away from their 0/1 init, so nothing hides
            p.data.normal_(0.0, 0.5)
    return model.eval()


def _model_cases(rng: np.random.Generator) -> list[Case]:
    return [
        Case("a model with d_model 16, one head of 16", (_model(int(rng.integers(2**31)), d_model=16),)),
        Case("a model with d_model 12, two heads of 8",
             (_model(int(rng.integers(2**31)), d_model=12, n_heads=2, d_head=8),)),
    ]


def _circuit_mistakes(model: Transformer) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    # In float64, like the circuits they are told apart from.
    l1, l2 = (HeadWeights.from_model(model, layer).map(torch.Tensor.double) for layer in (0, 1))
    d_head = l2.d_head
    unscaled = l2.W_Q[0] @ l2.W_K[0].T
    qk = {
        "W_Q W_K^T without the 1/sqrt(d_head) scale": unscaled,
        "W_K W_Q^T: transposed (rows index queries, columns keys)": unscaled.T / math.sqrt(d_head),
        "scaled by 1/sqrt(d_model), not 1/sqrt(d_head)": unscaled / math.sqrt(model.cfg.d_model),
        "layer 1's QK circuit (blocks[0]); the induction head is in layer 2 (blocks[1])":
            l1.W_Q[0] @ l1.W_K[0].T / math.sqrt(d_head),
    }
    ov = {
        "W_O^T W_V^T: transposed (a source whose layer-normed residual is x writes x @ W_V @ W_O)": (l1.W_V[0] @ l1.W_O[0]).T,
        "layer 2's OV circuit (blocks[1]); the previous-token head is in layer 1 (blocks[0])": l2.W_V[0] @ l2.W_O[0],
    }
    if model.cfg.n_heads > 1:
        qk["head 1's; the exercise asks for head 0"] = l2.W_Q[1] @ l2.W_K[1].T / math.sqrt(d_head)
        ov["head 1's; the exercise asks for head 0"] = l1.W_V[1] @ l1.W_O[1]
    return qk, ov


@exercise_check(cases=_model_cases, during=[_NO_LIBRARY])
def check_qk_ov_from_model(case: Case, got: Returned) -> None:
    """``fn(model) -> (W_qk, W_ov)``: layer 2's QK circuit at distance 0 (scaled by 1/sqrt(d_head))
    and layer 1's OV circuit, head 0, both ``[d_model, d_model]``."""
    (model,) = case.args
    if not got.is_tuple or len(got.arrays) != 2:
        raise CheckFailed(f"{case.name}: expected a pair (W_qk, W_ov), got "
                          f"{'a tuple of ' + str(len(got.arrays)) if got.is_tuple else 'one value'}.")
    l1, l2 = HeadWeights.from_model(model, 0), HeadWeights.from_model(model, 1)
    expected = (matching.qk_circuit(l2.W_Q[0], l2.W_K[0]), matching.ov_circuit(l1.W_V[0], l1.W_O[0]))
    for name, value, right, mistakes in zip(("W_qk", "W_ov"), got.arrays, expected, _circuit_mistakes(model),
                                            strict=True):
        if value.shape == right.shape and not _same(value, right, 1e-4, 1e-5):
            hint = _name_the_mistake(value, right, mistakes, 1e-4, 1e-5)
            if hint:
                raise CheckFailed(f"{name} of {case.name}: wrong values.{hint}")
        assert_close(value, right, what=f"{name} of {case.name}", rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# Exercise 2: the subspace matching score
# --------------------------------------------------------------------------------------------------


def _orthonormal(rng: np.random.Generator, d: int) -> np.ndarray:
    return np.linalg.qr(rng.standard_normal((d, d)))[0]


def _with_spectrum(left: np.ndarray, right: np.ndarray, values: list[float]) -> np.ndarray:
    """``left[:, :k] diag(values) right[:, :k]^T``: a matrix whose top singular vectors are known."""
    k = len(values)
    return left[:, :k] @ np.diag(values) @ right[:, :k].T


def _matching_cases(rng: np.random.Generator) -> list[Case]:
    d = int(rng.integers(10, 14))
    U, V, X = _orthonormal(rng, d), _orthonormal(rng, d), _orthonormal(rng, d)
    noise = 0.01 * rng.standard_normal((d, d))
    ov = _with_spectrum(X, U, [5.0, 4.0, 3.0, 2.0, 1.5, 1.2]) + noise  # writes into span U[:, :6]
    return [
        Case("aligned: W_qk's keys read what W_ov writes, rank 3",
             (_with_spectrum(V, U, [4.0, 3.0, 2.0]) + noise, ov, 3)),
        # The query side (left) of W_qk is what W_ov writes; its key side (right) is unrelated.
        Case("a trap: W_qk's *query* side matches W_ov's output, rank 2",
             (_with_spectrum(U, V, [4.0, 3.0]) + noise, ov, 2)),
        Case("unrelated random circuits, rank 2", (rng.standard_normal((d, d)), rng.standard_normal((d, d)), 2)),
        Case("unrelated random circuits, rank 5", (rng.standard_normal((d, d)), rng.standard_normal((d, d)), 5)),
        Case("partly aligned, rank 4",
             (_with_spectrum(V, np.concatenate([U[:, 3:5], X[:, 6:8], U], axis=1), [4.0, 3.5, 3.0, 2.0]) + noise,
              ov, 4)),
    ]


def _top_right(W: np.ndarray, rank: int) -> np.ndarray:
    return np.linalg.svd(W)[2][:rank].T


def _cosines(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    return np.linalg.svd(A.T @ B, compute_uv=False)


@exercise_check(cases=_matching_cases, during=[_NO_LIBRARY])
def check_matching_score(case: Case, got: Returned) -> None:
    """``fn(W_qk, W_ov, rank) -> float``: largest cosine between the top-``rank`` key-side directions
    of ``W_qk`` and the top-``rank`` output directions of ``W_ov``."""
    W_qk, W_ov, r = case.args
    cos = _cosines(_top_right(W_qk, r), _top_right(W_ov, r))
    mistakes = {
        "W_qk's query side (its left singular vectors); layer 2's keys are read along its right singular vectors":
            _cosines(_top_right(W_qk.T, r), _top_right(W_ov, r))[0],
        "what W_ov reads (its left singular vectors); x @ W_ov lies in the row space of W_ov (its right ones)":
            _cosines(_top_right(W_qk, r), _top_right(W_ov.T, r))[0],
        "the left singular vectors of both matrices; both subspaces sit on the right in the row-vector "
        "convention": _cosines(_top_right(W_qk.T, r), _top_right(W_ov.T, r))[0],
        "the first `rank` columns of Vt; the singular vectors are its first `rank` rows":
            _cosines(np.linalg.svd(W_qk)[2][:, :r], np.linalg.svd(W_ov)[2][:, :r])[0],
        "the RMS of the cosines, not the largest": float(np.sqrt(np.mean(cos**2))),
        "the smallest cosine, not the largest": cos[-1],
        "the mean cosine, not the largest": float(cos.mean()),
    }
    _judge_number(got, float(cos[0]), f"matching score for {case.name}", mistakes)


# --------------------------------------------------------------------------------------------------
# Exercise 3: a random baseline
# --------------------------------------------------------------------------------------------------

_BASELINE_RUNS = 400  # the student's runs per case
_REFERENCE_RUNS = 4000


def _baseline_cases(rng: np.random.Generator) -> list[Case]:
    shapes = [(int(rng.integers(14, 20)), 2), (int(rng.integers(24, 32)), 4), (int(rng.integers(22, 28)), 6)]
    return [Case(f"d={d}, rank {r}, {_BASELINE_RUNS} runs", (d, r, _BASELINE_RUNS)) for d, r in shapes]


@functools.lru_cache(maxsize=64)
def _reference_cosines(d: int, rank: int) -> np.ndarray:
    """Principal cosines ``[runs, rank]`` of many pairs of random ``rank``-dim subspaces of R^d.

    The top singular vectors of a Gaussian matrix span a uniformly random subspace, and so does the QR
    basis of a Gaussian ``[d, rank]`` block: the same distribution as
    :func:`toyattn.circuits.matching.random_baseline`, batched and much cheaper.
    """
    rng = np.random.default_rng(d * 100 + rank)
    A = np.linalg.qr(rng.standard_normal((_REFERENCE_RUNS, d, rank)))[0]
    B = np.linalg.qr(rng.standard_normal((_REFERENCE_RUNS, d, rank)))[0]
    return np.linalg.svd(A.swapaxes(-1, -2) @ B, compute_uv=False)


def _reference_baseline(d: int, rank: int, summary: str) -> tuple[float, float]:
    """``(mean, std)`` of the score of two random subspaces, ``summary`` "largest" or "rms"."""
    cos = _reference_cosines(d, rank)
    scores = cos[:, 0] if summary == "largest" else np.sqrt(np.mean(cos**2, axis=1))
    return float(scores.mean()), float(scores.std())


@exercise_check(cases=_baseline_cases, during=[_NO_LIBRARY])
def check_random_matching_baseline(case: Case, got: Returned) -> None:
    """``fn(d, rank, n_runs) -> float``: mean largest cosine between the top-``rank`` singular subspaces of
    two independent ``d x d`` Gaussian matrices, over ``n_runs`` pairs. Random, so compared with the
    reference's mean within a statistical tolerance (4 standard errors of each)."""
    d, r, n = case.args
    what = f"baseline for {case.name}"
    value = as_scalar(got, what)
    mean, std = _reference_baseline(d, r, "largest")
    tol = 4 * std * (1 / math.sqrt(n) + 1 / math.sqrt(_REFERENCE_RUNS)) + 0.005
    if abs(value - mean) <= tol:
        return
    msg = f"{what}: expected about {mean:.3f} (within {tol:.3f}), got {value:.3f}."
    if value > 1 + 1e-9:
        msg += (" A cosine cannot exceed 1: are the directions orthonormal (singular vectors, not the raw "
                "Gaussian columns)?")
    else:
        for mistake, (m, s) in {
            "the RMS of the cosines, not the largest": _reference_baseline(d, r, "rms"),
            "what rank 1 gives (one direction each): is `rank` used?": _reference_baseline(d, 1, "largest"),
            "1, the score of a subspace with itself: are the two matrices independent?": (1.0, 0.0),
        }.items():
            if abs(value - m) <= 4 * s / math.sqrt(n) + 0.005:
                msg += f" That is about {mistake}."
                break
    raise CheckFailed(msg)


# --------------------------------------------------------------------------------------------------
# Exercises 4 and 5: a token-level circuit in one number
# --------------------------------------------------------------------------------------------------


def _square_cases(rng: np.random.Generator) -> list[Case]:
    n = int(rng.integers(6, 9))
    noise = rng.standard_normal((n, n))
    # Rows 1..k prefer key 0, and key 0's column peaks at row 1: rows and columns disagree.
    k = int(rng.integers(3, n - 1))
    lopsided = 3 * np.eye(n) + 0.1 * rng.standard_normal((n, n))
    lopsided[1 : k + 1, 0] = 5 + np.linspace(1, 0, k)
    return [
        Case(f"pure noise {n}x{n}", (noise,)),
        Case(f"strong diagonal {n}x{n}", (noise + 4 * np.eye(n),)),
        Case("permuted diagonal 6x6 (a head that prefers a different token)", (np.roll(np.eye(6), 1, axis=1) * 3 + 0.1 * noise[:6, :6],)),
        Case("growing values 5x5", ((np.arange(25.0).reshape(5, 5) + rng.random((5, 5))) ** 1.5,)),
        Case(f"rows differ from columns {n}x{n} ({k} rows prefer key 0)", (lopsided,)),
    ]


def _zscore_mistakes(M: np.ndarray) -> dict[str, float]:
    diag, off = np.diag(M), M[~np.eye(len(M), dtype=bool)]
    return {
        "the sample standard deviation (ddof=1, torch.std's default); the z-score uses the population std of "
        "all entries (np.std, or torch.std(..., correction=0))": (diag.mean() - M.mean()) / M.std(ddof=1),
        "the standard deviation of the diagonal only, not of all entries": (diag.mean() - M.mean()) / diag.std(),
        "the standard deviation of the off-diagonal entries only, not of all entries": (diag.mean() - M.mean()) / off.std(),
        "the diagonal's mean over the std, without subtracting the mean entry": diag.mean() / M.std(),
        "the off-diagonal mean subtracted, not the mean of all entries": (diag.mean() - off.mean()) / M.std(),
        "the diagonal's sum (the trace), not its mean": (diag.sum() - M.mean()) / M.std(),
    }


@exercise_check(cases=_square_cases, during=[_NO_LIBRARY])
def check_diagonal_zscore(case: Case, got: Returned) -> None:
    """``fn(M) -> float``: ``(mean of the diagonal - mean of all entries) / std of all entries`` (population std)."""
    (M,) = case.args
    _judge_number(got, matching.diagonal_zscore(M), f"z-score of {case.name}", _zscore_mistakes(M), rtol=1e-4)


def _mismatch_mistakes(M: np.ndarray) -> dict[str, float]:
    n = len(M)
    rows, cols = M.argmax(axis=1) != np.arange(n), M.argmax(axis=0) != np.arange(n)
    return {
        "the share of *columns* whose largest entry is off the diagonal; each row is one query token": cols.mean(),
        "the share of rows that match (the diagonal wins), not of those that do not": 1 - rows.mean(),
        "a count of rows, not a share": float(rows.sum()),
        "the share of rows whose *smallest* entry is off the diagonal (argmin)": np.mean(M.argmin(axis=1) != np.arange(n)),
    }


@exercise_check(cases=_square_cases, during=[_NO_LIBRARY])
def check_token_mismatch_ratio(case: Case, got: Returned) -> None:
    """``fn(M) -> float``: share of rows (query tokens) whose largest entry is not on the diagonal."""
    (M,) = case.args
    _judge_number(got, matching.token_mismatch_ratio(M), f"mismatch ratio of {case.name}", _mismatch_mistakes(M))
