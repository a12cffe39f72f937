"""Matching heads: per-head features, cost matrices, and greedy / Hungarian matching (lesson 2).

Taught in ``notebooks/02_head_permutation`` (sections 3, 5, 6 and 7: features, a cost matrix and
a matching; greedy against Hungarian; noise; features that survive rotations inside a head) and
practised in ``solutions/02_head_permutation`` (exercises 3 to 6).

:func:`recover_permutation` finds the permutation (:mod:`toyattn.heads.permutations`) that lines up the
heads of two :class:`~toyattn.heads.weights.HeadWeights`: one feature vector per head (raw weights,
the rotation-invariant ``W_QK`` and ``W_OV``, or singular values), a cost matrix of distances
between the two layers' heads, and an assignment of minimal total cost.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from toyattn.heads.weights import HeadWeights, require_one_kv_head_per_head

Metric = Literal["l2", "cosine"]
METRICS: tuple[str, ...] = ("l2", "cosine")

__all__ = [
    "METRICS",
    "cost_matrix",
    "greedy_match",
    "hungarian_match",
    "invariant_cost_matrix",
    "invariant_features",
    "match",
    "raw_features",
    "recover_permutation",
    "singular_value_features",
]


def raw_features(heads: HeadWeights) -> torch.Tensor:
    """Each head's raw weights flattened into one vector ``[n_heads, n_features]`` (lesson 2).

    The order per head: ``W_Q[h]``, ``W_K[h]``, ``W_V[h]`` (each ``[d_in, d_head]`` flattened row by row),
    then ``W_O[h]`` and the biases when present. Not invariant to rotations inside a head.
    """
    require_one_kv_head_per_head(heads, "raw_features")
    parts = [t.reshape(heads.n_heads, -1) for t in heads.tensors() if t is not None]
    return torch.cat(parts, dim=1)


def _require_values(heads: HeadWeights, what: str) -> None:
    """``W_QK`` and ``W_OV`` need one key and one value head per query head."""
    require_one_kv_head_per_head(heads, what)
    if heads.W_V is None:
        raise ValueError(
            f"{what} needs each head's values (W_V) for W_OV, but this layer holds only queries and keys; "
            "read a whole attention layer (HeadWeights.from_fused, from_mha or from_attention)."
        )


def _augmented(heads: HeadWeights, what: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """W_Q, W_K, W_V with the bias as one more input row ``[n_heads, d_in(+1), d_head]``: a bias is
    the weight of a constant input 1, and it rotates with its head exactly like the weights do."""
    _require_values(heads, what)
    if not heads.has_bias:
        return heads.W_Q, heads.W_K, heads.W_V
    return tuple(
        torch.cat([W, b.unsqueeze(1)], dim=1)
        for W, b in ((heads.W_Q, heads.b_Q), (heads.W_K, heads.b_K), (heads.W_V, heads.b_V))
    )  # type: ignore[return-value]


def invariant_features(heads: HeadWeights) -> torch.Tensor:
    """Rotation-invariant head features ``[n_heads, n_features]``, formed explicitly (lesson 2).

    Per head: ``W_QK = W_Q W_K^T`` ``[d_in, d_in]`` (the bilinear form behind every attention score),
    then ``W_OV = W_V W_O`` ``[d_in, d_out]`` (what the head writes for what it reads), or
    ``W_V W_V^T`` when no output projection is known. With biases, each ``W`` gets the bias as an
    extra input row first. Memory grows like ``n_heads * d_in**2``: for large ``d_in`` use
    :func:`invariant_cost_matrix`, which never forms these matrices.
    """
    Q, K, V = _augmented(heads, "invariant_features")
    qk = Q @ K.transpose(1, 2)
    ov = V @ heads.W_O if heads.W_O is not None else V @ V.transpose(1, 2)
    return torch.cat([qk.reshape(heads.n_heads, -1), ov.reshape(heads.n_heads, -1)], dim=1)


def singular_value_features(heads: HeadWeights) -> torch.Tensor:
    """Singular values of each head's ``W_Q``, ``W_K`` and ``W_V`` (and ``W_O``), concatenated:
    ``[n_heads, 3 * d_head (+ d_head)]`` (lesson 2).

    In the spirit of TransFusion's head features: unchanged by any rotation inside a head, and tiny.
    But they forget *which* input directions a head reads: rotating a head's input side
    (``P @ W_Q[h]`` for an orthogonal ``P``) changes its function and not these features.
    """
    require_one_kv_head_per_head(heads, "singular_value_features")
    mats = [m for m in (heads.W_Q, heads.W_K, heads.W_V, heads.W_O) if m is not None]
    return torch.cat([torch.linalg.svdvals(m.to(torch.promote_types(m.dtype, torch.float32))) for m in mats], dim=1)


def _check_feature_pair(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"{what} must be 2-D [n_heads, n_features], got shapes {tuple(a.shape)} and {tuple(b.shape)}.")
    if a.shape != b.shape:
        raise ValueError(
            f"{what}: the reference and the client do not match, shapes {tuple(a.shape)} and {tuple(b.shape)}. "
            f"Both must come from layers with the same n_heads, d_in and d_head (and both with or without "
            f"biases / output projection)."
        )


def _distances_from_inner(inner: torch.Tensor, sq_a: torch.Tensor, sq_b: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "l2":
        return (sq_a[:, None] + sq_b[None, :] - 2 * inner).clamp_min(0).sqrt()
    if metric == "cosine":
        norms = (sq_a[:, None] * sq_b[None, :]).sqrt().clamp_min(1e-30)
        return 1 - inner / norms
    raise ValueError(f"metric={metric!r} is not one of {METRICS}.")


def cost_matrix(a: torch.Tensor, b: torch.Tensor, metric: Metric = "l2") -> torch.Tensor:
    """Pairwise distances ``cost[i, j] = distance(a[i], b[j])`` between head features (lesson 2).

    Args:
        a, b: ``[n_heads, n_features]`` each (e.g. client and reference).
        metric: ``"l2"`` (Euclidean distance) or ``"cosine"`` (1 - cosine similarity, which ignores
            each head's overall scale).

    Returns:
        ``[n_heads, n_heads]``, in the features' precision (at least float32).
    """
    _check_feature_pair(a, b, "cost_matrix")
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not one of {METRICS}.")
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    a, b = a.to(dtype), b.to(dtype)
    if metric == "l2":
        return torch.cdist(a, b)
    return _distances_from_inner(a @ b.T, (a * a).sum(1), (b * b).sum(1), metric)


def invariant_cost_matrix(a: HeadWeights, b: HeadWeights, metric: Metric = "l2") -> torch.Tensor:
    """:func:`cost_matrix` of :func:`invariant_features`, without forming ``d_in x d_in`` matrices (lesson 2).

    Uses ``<Q_a K_a^T, Q_b K_b^T>_F = tr((Q_a^T Q_b)(K_b^T K_a)) = sum((Q_a^T Q_b) * (K_a^T K_b))``:
    only ``d_head x d_head`` Gram blocks between heads are needed, so the cost is one
    ``[n_heads*d_head, d_in] @ [d_in, n_heads*d_head]`` product per weight instead of
    ``n_heads`` matrices of ``d_in**2`` entries. The same for ``W_OV = W_V W_O``.
    """
    if (a.n_heads, a.d_in, a.d_head, a.has_bias, a.W_O is None) != (b.n_heads, b.d_in, b.d_head, b.has_bias, b.W_O is None):
        raise ValueError(
            "invariant_cost_matrix: the reference and the client do not match (n_heads, d_in, d_head, "
            f"biases, output projection): {(a.n_heads, a.d_in, a.d_head, a.has_bias, a.W_O is not None)} vs "
            f"{(b.n_heads, b.d_in, b.d_head, b.has_bias, b.W_O is not None)}."
        )
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not one of {METRICS}.")

    def gram(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # x: [H, n, dh], y: [H, n, dh] -> [H_x, H_y, dh, dh] with G[i, j] = x[i]^T y[j]
        H, n, dh = x.shape
        g = x.permute(0, 2, 1).reshape(H * dh, n) @ y.permute(1, 0, 2).reshape(n, H * dh)
        return g.reshape(H, dh, H, dh).permute(0, 2, 1, 3)

    def inner_qk(Qx, Kx, Qy, Ky):  # <Qx[i] Kx[i]^T, Qy[j] Ky[j]^T> for all pairs -> [H, H]
        return (gram(Qx, Qy) * gram(Kx, Ky)).sum((-2, -1))

    def sq_norm_qk(Q, K):  # ||Q[i] K[i]^T||^2 per head -> [H], only H small Gram blocks
        return (torch.einsum("hnd,hne->hde", Q, Q) * torch.einsum("hnd,hne->hde", K, K)).sum((-2, -1))

    # Compute in the weights' precision (at least float32): float32 halves the time at d_in = 4096
    # and is ample for telling heads apart; pass float64 weights for exact comparisons.
    dtype = torch.promote_types(a.W_Q.dtype, torch.float32)
    Qa, Ka, Va = (t.to(dtype) for t in _augmented(a, "invariant_cost_matrix"))
    Qb, Kb, Vb = (t.to(dtype) for t in _augmented(b, "invariant_cost_matrix"))
    if a.W_O is not None and b.W_O is not None:
        # <Va Oa, Vb Ob> = tr(Oa^T Va^T Vb Ob) = sum((Va^T Vb) * (Oa Ob^T)): the same form with K = O^T.
        Oa, Ob = a.W_O.to(dtype).transpose(1, 2), b.W_O.to(dtype).transpose(1, 2)  # [H, d_out, dh]
    else:
        Oa, Ob = Va, Vb  # no output projection: W_V W_V^T, the same form with K = V
    inner = inner_qk(Qa, Ka, Qb, Kb) + inner_qk(Va, Oa, Vb, Ob)
    sq_a = sq_norm_qk(Qa, Ka) + sq_norm_qk(Va, Oa)
    sq_b = sq_norm_qk(Qb, Kb) + sq_norm_qk(Vb, Ob)
    return _distances_from_inner(inner, sq_a, sq_b, metric)


def _check_cost(cost: torch.Tensor | np.ndarray) -> np.ndarray:
    c = cost.detach().cpu().double().numpy() if isinstance(cost, torch.Tensor) else np.asarray(cost, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"the cost matrix must be square [n_heads, n_heads], got shape {c.shape}.")
    if not np.isfinite(c).all():
        raise ValueError("the cost matrix contains NaN or inf: check the features (a head of all zeros with metric='cosine'?).")
    return c


def greedy_match(cost: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Row by row, take the cheapest column not taken yet (lesson 2; the method of the research notebook the lesson grew from).

    Returns ``match`` with ``match[i]`` = the column given to row ``i``. Fast, but an early row can
    take the column a later row needed much more, so it can miss the cheapest total.
    """
    c = _check_cost(cost)
    n = c.shape[0]
    taken = np.zeros(n, dtype=bool)
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        row = np.where(taken, np.inf, c[i])
        j = int(np.argmin(row))
        out[i] = j
        taken[j] = True
    return torch.from_numpy(out)


def hungarian_match(cost: torch.Tensor | np.ndarray) -> torch.Tensor:
    """The assignment of rows to columns with the smallest total cost (lesson 2).

    ``scipy.optimize.linear_sum_assignment`` (the Hungarian / Jonker-Volgenant algorithm), as used
    by Git Re-Basin and TransFusion. Returns ``match`` with ``match[i]`` = the column given to row ``i``.
    """
    c = _check_cost(cost)
    rows, cols = linear_sum_assignment(c)
    out = np.empty(c.shape[0], dtype=np.int64)
    out[rows] = cols
    return torch.from_numpy(out)


def match(cost: torch.Tensor | np.ndarray, method: Literal["hungarian", "greedy"] = "hungarian") -> torch.Tensor:
    """:func:`hungarian_match` or :func:`greedy_match` by name (lesson 2)."""
    if method == "hungarian":
        return hungarian_match(cost)
    if method == "greedy":
        return greedy_match(cost)
    raise ValueError(f"method={method!r} is not 'hungarian' or 'greedy'.")


def recover_permutation(
    ref: HeadWeights,
    client: HeadWeights,
    *,
    features: Literal["raw", "invariant"] = "raw",
    method: Literal["hungarian", "greedy"] = "hungarian",
    metric: Metric = "l2",
) -> torch.Tensor:
    """Find ``perm`` with ``client ≈ ref.permute(perm)`` (lesson 2).

    Builds ``cost[i, j]`` = distance between **client** head ``i`` and **reference** head ``j``, so the
    reference head matched to client head ``i`` is exactly ``perm[i]`` (new head i = old head perm[i]).
    ``client.permute(invert_permutation(perm))`` then lines the client up with the reference.

    Args:
        features: ``"raw"`` (flattened weights) or ``"invariant"`` (``W_QK`` and ``W_OV``, which survive
            rotations inside a head; computed with Gram blocks, fine for ``d_in = 4096``).
        method: ``"hungarian"`` (optimal) or ``"greedy"``.
        metric: ``"l2"`` or ``"cosine"``.
    """
    if not isinstance(ref, HeadWeights) or not isinstance(client, HeadWeights):
        raise TypeError("recover_permutation takes two HeadWeights (e.g. HeadWeights.from_fused(...)).")
    if features == "raw":
        cost = cost_matrix(raw_features(client), raw_features(ref), metric)
    elif features == "invariant":
        cost = invariant_cost_matrix(client, ref, metric)
    else:
        raise ValueError(f"features={features!r} is not 'raw' or 'invariant'.")
    return match(cost, method)
