"""How symmetric is an attention head? Symmetry and directionality scores of the bilinear form ``W_q W_k^T``.

Taught in lesson 3 (``notebooks/03_symmetry_scores``).

A head scores a query token ``x`` against a key token ``y`` with the bilinear form
``x^T M y``, ``M = W_q W_k^T`` (``W_q, W_k`` of shape ``[d_model, d_head]``, TransformerLens layout:
``q = x @ W_q``). Split ``M`` into its symmetric and skew-symmetric parts,
``M = (M + M^T)/2 + (M - M^T)/2``; the two parts are orthogonal, so their squared Frobenius norms add
up to ``||M||_F^2``. The **symmetry score** is the symmetric part's share::

    r = ||(M + M^T)/2||_F^2 / ||M||_F^2          in [0, 1]  (the course's default convention)
    s = 2 r - 1 = tr(M M) / ||M||_F^2             in [-1, 1] (the convention of published tables)

``r = 1`` (``s = 1``): ``M`` symmetric, token ``x`` *scores* ``y`` (before the softmax) exactly as ``y`` scores ``x``
(the attention weights need not be reciprocal: each query normalises over its own keys);
``r = 0`` (``s = -1``): skew-symmetric; random Gaussian heads score ``r ~ 0.5`` (``s ~ 0``).

Computing ``M`` costs ``O(d_model^2 d_head)``. With ``A = W_q^T W_q``, ``B = W_k^T W_k`` and
``C = W_k^T W_q`` (all ``[d_head, d_head]``) the cyclic property of the trace gives
``||M||_F^2 = tr(A B)`` and ``tr(M M) = tr(C C)``, so ``r = (1 + tr(C C) / tr(A B)) / 2`` in
``O(d_model d_head^2)``. :func:`symmetry_score` does this batched over any leading axes
(``[layers, heads]``), on any device, with grouped-query attention (several query heads sharing one
key head).

Two granularities (say which one a number is):

* **per head** (this module's :func:`symmetry_score`, the course's seed notebooks): one ``M`` per head;
* **per layer** (:func:`layer_symmetry_score`, what Saponati et al. 2025 publish): one ``d x d`` form
  ``M = sum_h W_q[h] W_k[h]^T`` per layer (key heads repeated for grouped-query attention).

The directionality score (:func:`directionality_score`) follows the code of the same research line
(github.com/matteosaponati/attention-geometry, ``utils/scores.py``), with the sign of their published
tables: negative when a few *columns* of ``M`` (key-side directions) carry unusually large norms.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from toyattn.arrays import as_float_tensor
from toyattn.device import check_dtype, wide_dtype
from toyattn.heads.weights import kv_head_for_query, repeat_kv_heads
from toyattn.symmetry.traces import traces

Convention = Literal["r", "s"]

__all__ = [
    "directionality_score",
    "from_signed",
    "kv_head_for_query",
    "layer_bilinear",
    "layer_symmetry_score",
    "matrix_symmetry_score",
    "median",
    "random_head",
    "repeat_kv_heads",
    "skew_symmetric_key",
    "skew_symmetric_matrix",
    "symmetric_key",
    "symmetry_score",
    "symmetry_score_definition",
    "to_signed",
]


# ---------------------------------------------------------------------------------------------
# Input checks (every public function goes through these, so bad input gets one clear sentence)
# ---------------------------------------------------------------------------------------------


def _check_all_finite(x: torch.Tensor, name: str) -> None:
    # Fast path: NaN and inf propagate into the sum, so a finite sum means finite entries (an overflowing
    # sum of huge but finite weights falls through to the exact test below).
    if bool(torch.isfinite(x.sum())):
        return
    if not bool(torch.isfinite(x).all()):
        bad = (~torch.isfinite(x)).nonzero()[0].tolist()
        raise ValueError(
            f"{name} contains non-finite values (NaN or inf), first at index {tuple(bad)}; "
            "a diverged training run or a failed dequantization? Scores need finite weights."
        )


def _check_qk_pair(W_q: Any, W_k: Any, check_finite: bool = True) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Validate ``W_q [..., H, d, d_h]`` and ``W_k [..., H_kv, d, d_h]``; return them and the group size.

    ``check_finite=False`` leaves the (full-size, so not free) finiteness test to the caller.
    """
    W_q, W_k = as_float_tensor(W_q, "W_q"), as_float_tensor(W_k, "W_k")
    if W_q.dim() < 2 or W_k.dim() < 2:
        raise ValueError(
            f"W_q and W_k must be at least 2-D [d_model, d_head], got shapes {tuple(W_q.shape)} and "
            f"{tuple(W_k.shape)}."
        )
    if W_q.shape[-2:] != W_k.shape[-2:]:
        raise ValueError(
            f"W_q {tuple(W_q.shape)} and W_k {tuple(W_k.shape)} disagree in their last two axes "
            "[d_model, d_head]; both must map the same d_model to the same d_head. (Passing Linear "
            "weights [out, in]? Transpose them, or use toyattn.weights.checkpoints to read a model.)"
        )
    if W_q.dim() != W_k.dim():
        raise ValueError(
            f"W_q {tuple(W_q.shape)} and W_k {tuple(W_k.shape)} have different numbers of axes; "
            "give both the same leading axes, e.g. [layers, heads, d_model, d_head]."
        )
    if W_q.device != W_k.device:
        raise ValueError(f"W_q is on {W_q.device} but W_k is on {W_k.device}; move them to one device.")
    group = 1
    if W_q.shape != W_k.shape:
        if W_q.dim() < 3 or W_q.shape[:-3] != W_k.shape[:-3]:
            raise ValueError(
                f"W_q {tuple(W_q.shape)} and W_k {tuple(W_k.shape)} differ in their leading axes; "
                "only the heads axis (third from the end) may differ, for grouped-query attention."
            )
        n_heads, n_kv = W_q.shape[-3], W_k.shape[-3]
        if n_heads % n_kv != 0:
            raise ValueError(
                f"W_q has {n_heads} heads and W_k has {n_kv}: grouped-query attention needs the number "
                "of query heads to be a multiple of the number of key heads."
            )
        group = n_heads // n_kv
    if check_finite:
        _check_all_finite(W_q, "W_q")
        _check_all_finite(W_k, "W_k")
    return W_q, W_k, group


def _zero_error(where: torch.Tensor, what: str) -> ValueError:
    idx = tuple(where.nonzero()[0].tolist()) if where.dim() else ()
    return ValueError(
        f"{what} at index {idx} is all zeros (W_q W_k^T = 0), so its score is 0/0 and undefined. "
        "Is that head pruned or never initialised? Drop it before scoring."
    )


# ---------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------


def matrix_symmetry_score(M: Any, *, convention: Convention = "r") -> torch.Tensor:
    """Symmetry score of square matrices ``M [..., n, n]`` by the definition, ``[...]`` (lesson 3).

    ``r = ||(M + M^T)/2||_F^2 / ||M||_F^2`` (``convention="r"``, in [0, 1]) or ``s = 2r - 1``
    (``convention="s"``, in [-1, 1]). Sums are taken in float64.
    """
    M = as_float_tensor(M, "M")
    if M.dim() < 2 or M.shape[-1] != M.shape[-2]:
        raise ValueError(f"M must be square [..., n, n], got shape {tuple(M.shape)}.")
    _check_all_finite(M, "M")
    M = M.to(wide_dtype(M.device))
    total = M.pow(2).sum(dim=(-2, -1))
    if bool((total == 0).any()):
        raise _zero_error(total == 0, "M")
    sym = (0.5 * (M + M.transpose(-1, -2))).pow(2).sum(dim=(-2, -1))
    return _convert(sym / total, convention)


def symmetry_score_definition(W_q: Any, W_k: Any, *, convention: Convention = "r") -> torch.Tensor:
    """Symmetry score of heads by the definition: build ``M = W_q W_k^T`` and compare norms (lesson 3).

    Args:
        W_q: ``[..., d_model, d_head]`` query weights (``q = x @ W_q``).
        W_k: same shape (or fewer heads on axis -3, for grouped-query attention).
        convention: ``"r"`` (in [0, 1]) or ``"s"`` (``2r - 1``, in [-1, 1]).

    Returns ``[...]`` scores in float64. Costs ``O(d_model^2 d_head)`` per head: the slow, obvious way,
    kept as the reference :func:`symmetry_score` is tested against.
    """
    W_q, W_k, group = _check_qk_pair(W_q, W_k)
    if group > 1:
        W_k = repeat_kv_heads(W_k, W_q.shape[-3])
    wide = wide_dtype(W_q.device)
    M = W_q.to(wide) @ W_k.to(wide).transpose(-1, -2)
    return matrix_symmetry_score(M, convention=convention)


def symmetry_score(
    W_q: Any,
    W_k: Any,
    *,
    convention: Convention = "r",
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Symmetry scores of many heads at once by the trace identity, ``[...]`` (lesson 3).

    ``r = (1 + tr(C C) / tr(A B)) / 2`` with ``A = W_q^T W_q``, ``B = W_k^T W_k``, ``C = W_k^T W_q``,
    costing ``6 d_model d_head^2`` flops per head instead of ``2 d_model^2 d_head`` for ``M``. On the CPU,
    large heads are done one at a time (cache reuse, see :mod:`toyattn.symmetry.traces`), small ones batched.

    Args:
        W_q: ``[..., n_heads, d_model, d_head]`` (any leading axes, e.g. ``[layers, heads, d, d_h]``;
            a single head ``[d_model, d_head]`` works too).
        W_k: the same shape, or ``[..., n_kv_heads, d_model, d_head]`` for grouped-query attention
            (query head ``h`` uses key head ``h // (n_heads // n_kv_heads)``, see :func:`kv_head_for_query`).
        convention: ``"r"`` (in [0, 1], default) or ``"s"`` (``2r - 1``, in [-1, 1]).
        dtype: precision of the three Gram products. ``None`` keeps float32/float64 inputs as they are
            (half precision is upcast to float32); ``torch.bfloat16`` computes them in bfloat16 where the
            device can (:func:`toyattn.device.check_dtype`), as a GPU run in that precision would. The traces and the ratio are always accumulated in
            float64 (on MPS, which has no float64, the small ``[d_head, d_head]`` Grams move to the CPU first).

    Returns:
        Scores ``[...]`` (the input's shape without the last two axes), float64 (float32 on MPS), on the
        input's device.

    Raises:
        ValueError: shapes disagree, weights are not finite, or a head has ``W_q W_k^T = 0`` (0/0).
        TypeError: not a tensor/array of floats, or ``dtype`` is not a floating-point ``torch.dtype``.
    """
    W_q, W_k, group = _check_qk_pair(W_q, W_k, check_finite=False)
    dtype = _gram_dtype(dtype, W_q.dtype)
    if dtype not in (torch.float32, torch.float64):
        check_dtype(dtype, W_q.device)  # bfloat16 on a device without it: a clear error, not a crash inside BLAS
    # Row layout [.., d_head, d_model]: a transposed view, no copy; matmul reads it with a transpose flag.
    Q = W_q.to(dtype).transpose(-1, -2)
    K = W_k.to(dtype).transpose(-1, -2)
    norm2, trace_cc = traces(Q, K, group)
    # One look at the small results (on a GPU, each look waits for the device): NaN or inf anywhere in a head's
    # weights reaches its traces, so there is no need to test every weight (a full pass costs ~10% of the
    # whole computation); a zero or (below float64) tiny ||M||^2 needs the careful path below.
    floor = 0.0 if dtype == torch.float64 else _TOO_SMALL
    if not bool(torch.isfinite(trace_cc).all() & (norm2 > floor).all() & torch.isfinite(norm2).all()):
        norm2, trace_cc = _careful_traces(W_q, W_k, Q, K, group, dtype, norm2, trace_cc)
    r = 0.5 * (1.0 + trace_cc / norm2)
    out = _convert(r, convention)
    # MPS has no float64: there the scores come back as float32 (computed in float64 on the CPU).
    return out.float().to(W_q.device) if W_q.device.type == "mps" else out.to(W_q.device)


def _careful_traces(
    W_q: torch.Tensor,
    W_k: torch.Tensor,
    Q: torch.Tensor,
    K: torch.Tensor,
    group: int,
    dtype: torch.dtype,
    norm2: torch.Tensor,
    trace_cc: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The traces again when the fast ones were not finite, zero or tiny: a clear error, or rescaled weights."""
    finite = bool(torch.isfinite(norm2).all() and torch.isfinite(trace_cc).all())
    if not finite:
        _check_all_finite(W_q, "W_q")
        _check_all_finite(W_k, "W_k")
    if not finite or (dtype != torch.float64 and bool((norm2 < _TOO_SMALL).any())):
        # ||M||^2 is a fourth power of the weights: it overflows for weights near 1e10 and underflows for
        # weights near 1e-10 in float32. A head's score does not change when its W_q or W_k is scaled, so
        # bring every head to a largest entry of 1 and compute again.
        norm2, trace_cc = traces(_to_unit_max(Q), _to_unit_max(K), group)
    if not bool(torch.isfinite(norm2).all() and torch.isfinite(trace_cc).all()):
        raise ValueError(f"The traces overflowed in {dtype} even after rescaling; pass dtype=torch.float64.")
    if bool((norm2 == 0).any()):
        raise _zero_error(norm2 == 0, "head")
    return norm2, trace_cc


def _gram_dtype(dtype: Any, weights_dtype: torch.dtype) -> torch.dtype:
    """The precision of the Gram products: ``dtype`` checked, or float32/float64 as the weights are."""
    if dtype is None:
        return weights_dtype if weights_dtype in (torch.float32, torch.float64) else torch.float32
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch dtype such as torch.float64, got {dtype!r} ({type(dtype).__name__}).")
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch dtype (torch.float32 or torch.float64), got {dtype}.")
    return dtype


#: Below this ``||M||^2`` (in float32 or lower), the Gram products have lost digits to underflow.
_TOO_SMALL = 1e-18


def _to_unit_max(X: torch.Tensor) -> torch.Tensor:
    """Each head (the last two axes) divided by its own largest entry, so that one tiny or huge head
    among ordinary ones is rescaled too (an all-zero head is left as it is, to be reported)."""
    peak = X.abs().amax(dim=(-2, -1), keepdim=True)
    return X / torch.where(peak > 0, peak, torch.ones_like(peak))


def _convert(r: torch.Tensor, convention: Convention) -> torch.Tensor:
    if convention == "r":
        return r
    if convention == "s":
        return 2.0 * r - 1.0
    raise ValueError(f"convention must be 'r' (scores in [0, 1]) or 's' (2r - 1, in [-1, 1]), got {convention!r}.")


def median(values: Any) -> float:
    """The ordinary median of all ``values``: the middle one, or the mean of the two middle ones for an even count.

    The published convention (Saponati et al.'s code). ``torch.median`` differs: for an even count it
    returns the *lower* middle value, so with 6 layers it reports the third smallest.
    """
    flat = torch.as_tensor(values).detach().reshape(-1)
    if flat.numel() == 0:
        raise ValueError("median of no values: pass at least one score.")
    return float(np.median(flat.cpu().double().numpy()))


def to_signed(r: Any) -> Any:
    """Convert ``r`` in [0, 1] to the published convention ``s = 2r - 1`` in [-1, 1] (lesson 3)."""
    return 2 * r - 1


def from_signed(s: Any) -> Any:
    """Convert ``s`` in [-1, 1] (published tables) back to ``r = (1 + s) / 2`` in [0, 1] (lesson 3)."""
    return (1 + s) / 2


def layer_bilinear(W_Q: Any, W_K: Any) -> torch.Tensor:
    """The per-layer bilinear form ``M = sum_h W_Q[h] W_K[kv(h)]^T``, ``[..., d_model, d_model]`` (lesson 3).

    ``W_Q [..., n_heads, d_model, d_head]``, ``W_K [..., n_kv_heads, d_model, d_head]``. This is
    ``W_q^T W_k`` of the layer's ``nn.Linear`` weights (``[n_heads * d_head, d_model]``), the matrix
    Saponati et al. score: all heads of a layer at once, key heads repeated under grouped-query attention.
    """
    W_Q, W_K, group = _check_qk_pair(W_Q, W_K)
    if W_Q.dim() < 3:
        raise ValueError(f"W_Q needs a heads axis [..., n_heads, d_model, d_head], got shape {tuple(W_Q.shape)}.")
    if group > 1:
        W_K = repeat_kv_heads(W_K, W_Q.shape[-3])
    # Concatenating the heads along d_head gives [.., d, H * d_h]; M is one matmul.
    Q = W_Q.transpose(-3, -2).flatten(-2)
    K = W_K.transpose(-3, -2).flatten(-2)
    return Q @ K.transpose(-1, -2)


def layer_symmetry_score(W_Q: Any, W_K: Any, *, convention: Convention = "r") -> torch.Tensor:
    """Per-layer symmetry score of ``M = sum_h W_Q[h] W_K[h]^T`` (the published granularity), ``[...]``.

    See :func:`layer_bilinear`; lesson 3. Published tables use ``convention="s"``.
    """
    return matrix_symmetry_score(layer_bilinear(W_Q, W_K), convention=convention)


def directionality_score(M: Any, *, num_std: float = 2.0) -> torch.Tensor:
    """Directionality of square bilinear forms ``M [..., n, n]``, in [-1, 1], ``[...]`` (lesson 3).

    Following the code of Saponati et al. (github.com/matteosaponati/attention-geometry,
    ``utils/scores.py``; the paper's own text was not checked here): take the L2 norm of every row and
    of every column of ``M``; in each set, the threshold is mean + ``num_std`` standard deviations
    (unbiased std, as ``torch.std``); add up how far the norms above it exceed it (``row_excess``,
    ``col_excess``). The score is ``(row_excess - col_excess) / (row_excess + col_excess)`` (0 when both
    are 0): the sign of their published tables, **negative when a few columns dominate**. Rows of ``M``
    index query-side directions and columns key-side ones (``score(x, y) = x^T M y``), so a negative score
    says a few key directions are "looked at" by almost every query.
    """
    M = as_float_tensor(M, "M")
    if M.dim() < 2 or M.shape[-1] != M.shape[-2]:
        raise ValueError(f"M must be square [..., n, n], got shape {tuple(M.shape)}.")
    _check_all_finite(M, "M")
    M = M.to(wide_dtype(M.device))

    def excess(norms: torch.Tensor) -> torch.Tensor:
        threshold = norms.mean(dim=-1, keepdim=True) + num_std * norms.std(dim=-1, keepdim=True)
        return (norms - threshold).clamp(min=0).sum(dim=-1)

    row_excess = excess(M.norm(dim=-1))  # one norm per row
    col_excess = excess(M.norm(dim=-2))  # one norm per column
    total = row_excess + col_excess
    score = (row_excess - col_excess) / torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total > 0, score, torch.zeros_like(score))


# ---------------------------------------------------------------------------------------------
# Constructions: heads with a known score
# ---------------------------------------------------------------------------------------------


def random_head(
    d_model: int, d_head: int, *, generator: torch.Generator | None = None, n: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian ``(W_q, W_k)``, each ``[d_model, d_head]`` (or ``[n, d_model, d_head]``): ``r`` close to 0.5.

    Lesson 3: ``tr(C C)`` is a sum of products of independent entries, positive and negative alike,
    so it is small next to ``tr(A B)``. The score concentrates at 0.5 as ``d_model`` grows (standard
    deviation about ``0.7 / d_model``, mean about ``0.5 + 1 / (2 d_model)``), whatever ``d_head``.
    """
    shape = (d_model, d_head) if n is None else (n, d_model, d_head)
    return torch.randn(*shape, generator=generator), torch.randn(*shape, generator=generator)


def skew_symmetric_matrix(n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random skew-symmetric ``[n, n]`` matrix ``S`` (``S^T = -S``, zero diagonal). Lesson 3."""
    X = torch.randn(n, n, generator=generator)
    return X - X.T


def symmetric_key(W_q: Any, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """A key map with ``W_q W_k^T`` symmetric: ``W_k = W_q P`` with ``P`` symmetric positive definite. Lesson 3.

    Then ``M = W_q P W_q^T`` and ``M^T = W_q P^T W_q^T = M``: score ``r = 1``. ``P = I`` (``W_k = W_q``,
    the symmetric initialisation of Saponati et al.) is the simplest case.
    """
    W_q = as_float_tensor(W_q, "W_q")
    d_head = W_q.shape[-1]
    X = torch.randn(d_head, d_head, generator=generator).to(W_q)
    P = X @ X.T + d_head * torch.eye(d_head, dtype=W_q.dtype, device=W_q.device)
    return W_q @ P


def skew_symmetric_key(W_q: Any, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """A key map with ``W_q W_k^T`` skew-symmetric: ``W_k = W_q S^T`` with ``S`` skew-symmetric. Lesson 3.

    Then ``M = W_q S W_q^T`` and ``M^T = W_q S^T W_q^T = -M``: score ``r = 0`` exactly (up to rounding).
    With ``d_head`` odd, ``S`` is singular but ``M`` is still skew and nonzero.
    """
    W_q = as_float_tensor(W_q, "W_q")
    S = skew_symmetric_matrix(W_q.shape[-1], generator=generator).to(W_q)
    return W_q @ S.T
