"""Checks for lesson 3 (``solutions/03_symmetry_scores``): symmetry scores of attention heads and layers.

Every check draws fresh heads from its seed, including heads built to score exactly 1 and exactly 0,
and refuses answers that call :mod:`toyattn.symmetry.scores` (the course's own answer). The trace-form and
batched checks also watch the method: they stay in torch, make no intermediate as large as a
``d_model x d_model`` matrix, do no more floating-point work in matrix products than a few times the
trace form's ``d_model * d_head^2`` per head (counted below einsum, so a four-operand einsum that
builds ``M`` internally is seen), return no more tensor entries in all than about 50 times that (so ``M``
built block by block by broadcast products and sums is seen), and run no Python loop over the query
heads (batched; a loop over layers or key-head groups is allowed) or rows (one head).
"""

from __future__ import annotations

import numpy as np
import torch

from toyattn.checks.answers import Returned
from toyattn.checks.core import Case, CheckFailed, as_scalar, assert_close, exercise_check, torch_generator
from toyattn.checks.guards import (
    forbid_calls_into,
    forbid_large_intermediates,
    forbid_loops,
    limit_float_work,
)
from toyattn.symmetry import scores
from toyattn.symmetry import traces as symmetry_traces

__all__ = [
    "check_batched_symmetry_scores",
    "check_layer_symmetry_score",
    "check_key_with_score",
    "check_symmetry_score_definition",
    "check_symmetry_score_trace",
]

_NO_LIBRARY = forbid_calls_into(
    scores, symmetry_traces, hint="toyattn.symmetry.scores holds the course's answer; the exercise is to compute it yourself."
)
_NO_M = forbid_large_intermediates(
    lambda case: case.expect.get("max_entries") if isinstance(case.expect, dict) else None,
    what="the d_model x d_model matrix M",
    hint="The point of this exercise is never to form M: work with d_head x d_head matrices only.",
)
_TRACE_WORK = limit_float_work(
    lambda case: case.expect.get("max_flops") if isinstance(case.expect, dict) else None,
    what="a few times the trace form's 6 d_model d_head^2 per head",
    hint="Form only d_head x d_head products of the thin maps, and choose the order of an einsum's operands "
    "yourself (one product at a time).",
    entry_limit=lambda case: case.expect.get("max_touched") if isinstance(case.expect, dict) else None,
    entries_what="about 50 times the trace form's d_model d_head^2 per head",
)
_NO_ROW_LOOP = forbid_loops(
    lambda case: case.expect.get("max_lines") if isinstance(case.expect, dict) else None,
    items="rows of W_q",
    hint="A loop over d_model rows does d_model^2 d_head work in the end; work with whole matrices.",
)


def _work_limit(d: int, dh: int, heads: int = 1) -> int:
    """4x the trace form's flops (three [d_h, d] x [d, d_h] products: 6 d d_h^2 per head)."""
    return 24 * d * dh * dh * heads


def _entry_limit(d: int, dh: int, heads: int = 1) -> int:
    """The entries all torch results of one call may add up to: 50 d d_h^2 per head. The trace form's
    results add up to a few d d_h (views and copies of the maps) plus d_h^2 per product; M built in
    blocks by broadcasting makes at least 2 d_h d^2 (d_h d^2 for M, as much for M^T), over 8 times more
    for d_model over 1000 and d_head 4. For d_model >= 50 d_head this is also under d^2: no piecewise M fits."""
    return 50 * d * dh * dh * heads


# --------------------------------------------------------------------------------------------------
# Shared: cases, one number per answer, recognisable mistakes
# --------------------------------------------------------------------------------------------------


def _randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def _head_cases(rng: np.random.Generator) -> list[Case]:
    g = torch_generator(rng)
    d4, d3 = int(rng.integers(6, 10)), int(rng.integers(5, 9))
    W4, W3, W8 = _randn(g, d4, 4), _randn(g, d3, 3), _randn(g, 8, 4)
    return [
        Case("a random head, d_model=6, d_head=2", (_randn(g, 6, 2), _randn(g, 6, 2))),
        Case(f"a symmetric head (score 1), d_model={d4}, d_head=4", (W4, scores.symmetric_key(W4, generator=g))),
        Case(f"a skew-symmetric head (score 0), d_model={d3}, d_head=3", (W3, scores.skew_symmetric_key(W3, generator=g))),
        Case("a random head, d_model=16, d_head=1", (_randn(g, 16, 1), _randn(g, 16, 1))),
        Case("W_k = 3 W_q + noise (mostly symmetric), d_model=8, d_head=4", (W8, 3 * W8 + _randn(g, 8, 4))),
    ]


def _judge_number(got: float, expected: float, what: str, mistakes: dict[str, float], atol: float = 1e-6) -> None:
    """Fail unless ``got`` is ``expected``; name the first mistake whose value ``got`` matches instead."""
    if np.isclose(got, expected, rtol=1e-5, atol=atol):
        return
    msg = f"{what}: expected {expected:.6g}, got {got:.6g}."
    for mistake, value in mistakes.items():
        if np.isclose(got, value, rtol=1e-5, atol=atol) and not np.isclose(value, expected, rtol=1e-5, atol=atol):
            msg += f" That is {mistake}."
            break
    raise CheckFailed(msg)


def _score_mistakes(W_q: torch.Tensor, W_k: torch.Tensor, r: float) -> dict[str, float]:
    """Values that common wrong answers give for one head whose right score is ``r``."""
    A, B, C = W_q.T @ W_q, W_k.T @ W_k, W_k.T @ W_q
    return {
        "s = 2r - 1, the signed convention of published tables; this problem set uses r in [0, 1]": 2 * r - 1,
        "the share of the skew-symmetric part (M - M^T)/2, not of the symmetric part": 1 - r,
        "a ratio of norms; the score is a ratio of *squared* Frobenius norms": float(np.sqrt(max(r, 0.0))),
        "4r: the symmetric part is (M + M^T)/2, with the 1/2": 4 * r,
        "2r: the 1/2 in front of (1 + tr(CC)/tr(AB)) is missing": 2 * r,
        "what tr(C^T C) = ||C||_F^2 gives in place of tr(C C)":
            float(0.5 * (1 + (C * C).sum() / (A * B).sum())),
        "the score of W_q^T W_k (d_head x d_head), not of M = W_q W_k^T (d_model x d_model)":
            float(scores.matrix_symmetry_score(W_q.T @ W_k)) if W_q.shape[1] > 1 else float("nan"),
        "1, the score of a symmetric matrix: is the symmetric part built from M and M^T (not from M twice)?": 1.0,
    }


def _signed_mistakes(W_q: torch.Tensor, W_k: torch.Tensor, s: float) -> dict[str, float]:
    """Values that common wrong answers give when the signed score ``s = 2r - 1`` is asked for."""
    r = (1 + s) / 2
    return {
        "r = (1 + s)/2, the course's [0, 1] convention; this exercise asks for the signed s in [-1, 1]": r,
        "-s: the skew part's share minus the symmetric part's, the wrong way round": -s,
        "1 - r, the skew part's share": 1 - r,
        "(||S|| - ||K||)/||M|| = sqrt(r) - sqrt(1 - r): a ratio of norms, not of squared norms":
            float(np.sqrt(max(r, 0.0)) - np.sqrt(max(1 - r, 0.0))),
        "tr(M^T M)/||M||^2 = 1: the numerator of s is tr(M M), without a transpose": 1.0,
        "s of W_q^T W_k (d_head x d_head), not of M = W_q W_k^T (d_model x d_model)":
            2 * float(scores.matrix_symmetry_score(W_q.T @ W_k)) - 1 if W_q.shape[1] > 1 else float("nan"),
    }


def _judge_signed_head_score(case: Case, got: Returned) -> None:
    W_q, W_k, gamma = case.args
    Wq_g, Wk_g = gamma[:, None] * W_q, gamma[:, None] * W_k  # the gain folded into both maps
    s = 2 * float(scores.symmetry_score(Wq_g, Wk_g)) - 1
    what = f"signed score s of {case.name}"
    mistakes = {
        "s of W_q W_k^T without the gain: the head scores diag(gamma) W_q W_k^T diag(gamma)":
            2 * float(scores.symmetry_score(W_q, W_k)) - 1,
        "s of diag(gamma) W_q W_k^T: the gain scales the key's input too, so it belongs on both sides":
            2 * float(scores.symmetry_score(Wq_g, W_k)) - 1,
        "s of diag(gamma^2) W_q W_k^T: the gain belongs once on each side, diag(gamma) M diag(gamma)":
            2 * float(scores.symmetry_score(gamma[:, None] * Wq_g, W_k)) - 1,
    }
    mistakes |= _signed_mistakes(Wq_g, Wk_g, s)
    _judge_number(as_scalar(got, what), s, what, mistakes)


def _judge_linear_layout_score(case: Case, got: Returned) -> None:
    Wq_lin, Wk_lin = case.args  # [d_head, d_model] each, as nn.Linear stores them
    W_q, W_k = Wq_lin.T, Wk_lin.T
    r = float(scores.symmetry_score(W_q, W_k))
    mistakes = _score_mistakes(W_q, W_k, r)
    mistakes = {
        "the score of the d_head x d_head matrix W_q W_k^T; in nn.Linear layout ([d_head, d_model]) the head's "
        "d_model x d_model form is M = W_q^T W_k" if key.startswith("the score of W_q^T W_k") else key: value
        for key, value in mistakes.items()
    }
    _judge_number(as_scalar(got, f"score of {case.name}"), r, f"score of {case.name}", mistakes)


# --------------------------------------------------------------------------------------------------
# Exercise 1 and 2: one head, by the definition and by the trace form
# --------------------------------------------------------------------------------------------------


def _definition_cases(rng: np.random.Generator) -> list[Case]:
    return _head_cases(rng)


def _gain_cases(rng: np.random.Generator) -> list[Case]:
    """The head cases with a norm's gain gamma [d_model] in front (positive, spread over about 0.3 to 3)."""
    g = torch_generator(rng)
    return [Case(case.name + ", after a norm with gain gamma",
                 (*case.args, torch.exp(0.6 * _randn(g, case.args[0].shape[0]))))
            for case in _definition_cases(rng)]


@exercise_check(cases=_gain_cases, during=[_NO_LIBRARY])
def check_symmetry_score_definition(case: Case, got: Returned) -> None:
    """``score_fn(W_q, W_k, gamma)``: the signed score ``s = 2r - 1`` (published convention) of the head's form
    on normalised inputs, ``diag(gamma) W_q W_k^T diag(gamma)``."""
    _judge_signed_head_score(case, got)


def _trace_cases(rng: np.random.Generator) -> list[Case]:
    # nn.Linear layout: each map stored as [d_head, d_model] (q = x @ W_q.T).
    cases = [Case(case.name.replace("head,", "head (nn.Linear layout),", 1),
                  tuple(W.T.contiguous() for W in case.args)) for case in _definition_cases(rng)]
    g = torch_generator(rng)
    d = int(rng.integers(1000, 1400))
    # A wide head: M has d^2 (millions of) entries, the inputs and the d_head x d_head products a few thousand.
    cases.append(Case(f"a wide head (nn.Linear layout), d_model={d}, d_head=4", (_randn(g, 4, d), _randn(g, 4, d)),
                      expect={"max_entries": d * d, "max_flops": _work_limit(d, 4), "max_lines": d,
                              "max_touched": _entry_limit(d, 4)}))
    return cases


@exercise_check(cases=_trace_cases, during=[_TRACE_WORK, _NO_LIBRARY, _NO_M, _NO_ROW_LOOP])
def check_symmetry_score_trace(case: Case, got: Returned) -> None:
    """``score_fn(W_q, W_k)``, maps in nn.Linear layout ``[d_head, d_model]``: ``r`` of the head's
    ``d_model x d_model`` form ``W_q^T W_k``, without anything of that size."""
    _judge_linear_layout_score(case, got)


# --------------------------------------------------------------------------------------------------
# Exercise 3: a head that scores exactly 0
# --------------------------------------------------------------------------------------------------


def _key_cases(rng: np.random.Generator) -> list[Case]:
    g = torch_generator(rng)
    cases = []
    for (d_model, d_head), target in zip(((6, 2), (10, 4), (8, 3), (32, 8), (12, 4)), (0.0, 0.3, 0.75, 0.5, 1.0),
                                         strict=True):
        seed = int(rng.integers(2**31))
        cases.append(Case(f"W_q of shape [{d_model}, {d_head}], target score r = {target}",
                          (_randn(g, d_model, d_head), target, torch.Generator().manual_seed(seed))))
    return cases


@exercise_check(cases=_key_cases, during=[_NO_LIBRARY])
def check_key_with_score(case: Case, got: Returned) -> None:
    """``make_key(W_q, r, generator)``: a ``W_k`` of ``W_q``'s shape whose head ``M = W_q W_k^T`` scores exactly ``r``."""
    W_q, target = case.args[0].numpy(), float(case.args[1])
    if got.is_tuple:
        raise CheckFailed(f"{case.name}: expected W_k (one tensor), got a tuple of {len(got.arrays)} values.")
    W_k = got.value
    if W_k.shape != W_q.shape:
        raise CheckFailed(f"{case.name}: W_k must have W_q's shape {W_q.shape}, got {W_k.shape}.")
    if not got.is_tensor():
        raise CheckFailed(f"{case.name}: expected W_k as a torch.Tensor, got {got.kind.split(':')[0]}.")
    M = W_q @ W_k.astype(np.float64).T
    size = float(np.linalg.norm(M))
    if not np.isfinite(size) or size < 1e-6 * float(np.linalg.norm(W_q)) ** 2:
        raise CheckFailed(f"{case.name}: M = W_q W_k^T is (almost) zero, and a zero head has no score.")
    r = float(np.linalg.norm((M + M.T) / 2) ** 2) / size**2
    if abs(r - target) <= 1e-6:
        return
    msg = f"{case.name}: your head scores r = {r:.6g}, expected {target:.6g}."
    squared_weights = target**2 / (target**2 + (1 - target) ** 2)  # parts of equal norm, weights r and 1 - r
    if abs(r - (1 - target)) <= 1e-6:
        msg += " That is 1 - r: the weights of the symmetric and the skew part are swapped."
    elif 0 < target < 1 and abs(r - squared_weights) <= 1e-6:
        msg += (" That is r^2 / (r^2 + (1 - r)^2): parts of equal norm with weights r and 1 - r. r is a share of "
                "squared norms: use weights sqrt(r) and sqrt(1 - r).")
    elif 0 < target < 1 and (r < 1e-9 or r > 1 - 1e-9):
        msg += " Your key ignores the target: it is purely symmetric or purely skew."
    elif 0 < target < 1:
        msg += (" Mixing a symmetric and a skew head with weights a and b does not give r = a^2 / (a^2 + b^2) unless "
                "the two parts have the same norm: r is a share of squared norms.")
    raise CheckFailed(msg)


# --------------------------------------------------------------------------------------------------
# Exercise 4: every head of a model at once
# --------------------------------------------------------------------------------------------------


def _batched_case(g: torch.Generator, name: str, shape: tuple[int, int, int, int], n_kv: int, **expect: int) -> Case:
    L, H, d, dh = shape
    W_Q, W_K = _randn(g, L, H, d, dh), _randn(g, L, n_kv, d, dh)
    W_K[0, 0] = scores.symmetric_key(W_Q[0, 0], generator=g)  # query head 0 scores 1 with key head 0 ...
    W_K[-1, -1] = scores.skew_symmetric_key(W_Q[-1, -1], generator=g)  # ... the last query head 0 with the last key head
    return Case(f"{L} layers x {H} query heads sharing {n_kv} key heads, d_model={d}, d_head={dh} ({name})",
                (W_Q, W_K), expect=expect)


def _batched_cases(rng: np.random.Generator) -> list[Case]:
    g = torch_generator(rng)
    d_wide = int(rng.integers(1000, 1400))
    return [
        _batched_case(g, "small", (2, 6, 12, 4), n_kv=2),
        _batched_case(g, "one layer, no sharing", (1, 5, 9, 3), n_kv=5),
        # M per head has d^2 entries, far more than all the inputs together.
        _batched_case(g, "wide heads", (3, 2, d_wide, 4), n_kv=1, max_entries=d_wide * d_wide,
                      max_flops=_work_limit(d_wide, 4, heads=6), max_touched=_entry_limit(d_wide, 4, heads=6)),
        # 64 query heads in one layer: a loop over them runs its body 64 times, a batched computation a few
        # lines once. A loop over the 4 key-head groups (or over the one layer) stays far below 64 lines.
        _batched_case(g, "many heads", (1, 64, 32, 4), n_kv=4, max_lines=64),
    ]


_NO_HEAD_LOOP = forbid_loops(
    lambda case: case.expect.get("max_lines"),
    items="heads",
    hint="The exercise asks for all heads in one batched computation: let torch broadcast over "
    "[layers, heads] (matmul and einsum both do).",
)


@exercise_check(cases=_batched_cases, during=[_TRACE_WORK, _NO_LIBRARY, _NO_M, _NO_HEAD_LOOP])
def check_batched_symmetry_scores(case: Case, got: Returned) -> None:
    """``scores_fn(W_Q, W_K)``: ``[layers, heads, d_model, d_head]`` to scores ``[layers, heads]``, batched."""
    W_Q, W_K = case.args
    expected = scores.symmetry_score(W_Q, W_K)  # grouped-query: query head h uses key head h // (H / H_kv)
    what = f"scores of {case.name}"
    if not got.is_tuple and got.value.shape != tuple(expected.shape) and got.value.shape == tuple(expected.shape)[::-1]:
        raise CheckFailed(f"{what}: expected shape {tuple(expected.shape)} [layers, heads], got "
                          f"{got.value.shape}: is it [heads, layers]?")
    if not got.is_tuple and got.value.shape == expected.shape and not np.allclose(got.value, expected.numpy()):
        if np.allclose(got.value, 2 * expected.numpy() - 1):
            raise CheckFailed(f"{what}: these are s = 2r - 1 (the signed convention); this problem set uses r in [0, 1].")
        if np.allclose(got.value, expected.mean(dim=1, keepdim=True).expand_as(expected).numpy()):
            raise CheckFailed(f"{what}: every head of a layer got the layer's mean head score; the exercise asks "
                              "for one score per head.")
        H, n_kv = W_Q.shape[1], W_K.shape[1]
        interleaved = scores.symmetry_score(W_Q, W_K[:, torch.arange(H) % n_kv]) if n_kv < H else None
        if interleaved is not None and np.allclose(got.value, interleaved.numpy()):
            raise CheckFailed(f"{what}: query head h got key head h % {n_kv} (interleaved); the groups are "
                              f"contiguous: query heads 0..{H // n_kv - 1} share key head 0, and so on.")
    assert_close(got, expected, what=what, atol=1e-6, check_type=False)


# --------------------------------------------------------------------------------------------------
# Exercise 5: one score per layer
# --------------------------------------------------------------------------------------------------


def _layer_cases(rng: np.random.Generator) -> list[Case]:
    g = torch_generator(rng)
    d = int(rng.integers(10, 16))
    W_a, W_b = _randn(g, d, 3), _randn(g, d, 3)
    mixed_q = torch.stack([_randn(g, 9, 2) * s for s in (1.0, 3.0, 0.5)])
    mixed_k = torch.stack([scores.symmetric_key(mixed_q[0], generator=g), _randn(g, 9, 2),
                           scores.skew_symmetric_key(mixed_q[2], generator=g)])
    d_wide = int(rng.integers(1000, 1400))
    return [
        Case("a random layer, 4 heads, d_model=10, d_head=3", (_randn(g, 4, 10, 3), _randn(g, 4, 10, 3))),
        Case(f"two heads M and M^T (W_Q = [W_a, W_b], W_K = [W_b, W_a]), d_model={d}, d_head=3",
             (torch.stack([W_a, W_b]), torch.stack([W_b, W_a]))),
        Case("one head, d_model=8, d_head=2", (_randn(g, 1, 8, 2), _randn(g, 1, 8, 2))),
        Case("3 heads of different sizes: symmetric, random, skew; d_model=9, d_head=2", (mixed_q, mixed_k)),
        # M_layer has d^2 (millions of) entries; the heads side by side give 12 x 12 products.
        Case(f"a wide layer, 3 heads, d_model={d_wide}, d_head=4", (_randn(g, 3, d_wide, 4), _randn(g, 3, d_wide, 4)),
             expect={"max_entries": d_wide * d_wide, "max_flops": _work_limit(d_wide, 12),
                     "max_touched": _entry_limit(d_wide, 12)}),
    ]


def _layer_mistakes(W_Q: torch.Tensor, W_K: torch.Tensor, r: float) -> dict[str, float]:
    heads = scores.symmetry_score(W_Q, W_K)
    weights = (W_Q @ W_K.transpose(-1, -2)).pow(2).sum((-1, -2))
    H, d, dh = W_Q.shape
    stacked = (W_Q.reshape(H * d, dh) @ W_K.reshape(H * d, dh).T if H * d <= 400  # heads stacked along d_model
               else None)
    mixed_rows = float(scores.symmetry_score(W_Q.reshape(d, H * dh), W_K.reshape(d, H * dh)))  # no transpose(0, 1)
    return {
        "the mean of the per-head scores; the layer's M = sum_h M_h has cross terms between heads": float(heads.mean()),
        "the ||M_h||^2-weighted mean of the head scores: right without cross terms between heads, but "
        "sum_h M_h has them": float((heads * weights).sum() / weights.sum()),
        "s = 2r - 1, the signed convention of published tables; this problem set uses r in [0, 1]": 2 * r - 1,
        "the score of the heads stacked along d_model ([heads * d_model] square), not of the d_model x d_model "
        "sum over heads": float(scores.matrix_symmetry_score(stacked)) if stacked is not None else float("nan"),
        "reshaped [heads, d_model, d_head] to [d_model, heads * d_head] without moving the head axis: rows of "
        "different heads are mixed; transpose(0, 1) first": mixed_rows,
        "the score of sum_h W_Q[h]^T W_K[h] (d_head x d_head), not of M_layer = sum_h W_Q[h] W_K[h]^T":
            float(scores.matrix_symmetry_score((W_Q.transpose(-1, -2) @ W_K).sum(0))),
    }


@exercise_check(cases=_layer_cases, during=[_TRACE_WORK, _NO_LIBRARY, _NO_M])
def check_layer_symmetry_score(case: Case, got: Returned) -> None:
    """``layer_fn(W_Q, W_K)``: ``[heads, d_model, d_head]`` to the score of the layer's ``M = sum_h W_Q[h] W_K[h]^T``,
    without anything of size ``d_model x d_model``."""
    W_Q, W_K = case.args
    r = float(scores.layer_symmetry_score(W_Q, W_K))
    what = f"layer score of {case.name}"
    _judge_number(as_scalar(got, what), r, what, _layer_mistakes(W_Q, W_K, r))
