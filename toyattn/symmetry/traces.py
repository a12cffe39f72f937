"""The two traces behind the fast symmetry score, ``tr(A B) = ||W_q W_k^T||_F^2`` and ``tr(C C)``, per head (lesson 3).

:func:`toyattn.symmetry.scores.symmetry_score` turns them into ``r = (1 + tr(C C) / tr(A B)) / 2``; this module
only computes them fast, with ``A = W_q^T W_q``, ``B = W_k^T W_k``, ``C = W_k^T W_q`` (each
``[d_head, d_head]``, never the ``d_model x d_model`` matrix ``M``):

* small heads, or any device but the CPU: three batched matmuls over every head (and layer) at once
  (:func:`grams`); on a GPU, large heads also split ``d_model`` into parts, so that the small
  ``[d_head, d_head]`` outputs still give the GPU enough independent work (how many parts:
  :mod:`toyattn.symmetry.tuning`, by timing each choice once per shape);
* large heads on the CPU: one head at a time, skipping a Gram block (:func:`_traces_head_by_head`).

``benchmarks/bench_symmetry.py`` times the paths side by side. Inputs are in row layout
``Q: [..., H, d_head, d_model]``, ``K: [..., H_kv, d_head, d_model]`` (``H`` a multiple of ``H_kv``
under grouped-query attention, ``group = H // H_kv``), already validated by :mod:`toyattn.symmetry.scores`.
"""

from __future__ import annotations

import numpy as np
import torch

from toyattn.device import wide_dtype

__all__ = ["PER_HEAD_LOOP_MIN_SIZE", "grams", "traces", "traces_from_grams"]


def traces(Q: torch.Tensor, K: torch.Tensor, group: int, *, parts: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``tr(A B) = ||M||_F^2`` and ``tr(C C)`` per head, accumulated in float64 where the device has it.

    ``parts`` splits ``d_model`` for the batched Grams (see :func:`grams`); ``None`` lets
    :func:`toyattn.symmetry.tuning.best_parts` choose (1 everywhere but on a GPU).
    """
    if Q.device.type == "cpu" and parts is None and Q.shape[-2] * Q.shape[-1] >= PER_HEAD_LOOP_MIN_SIZE:
        return _traces_head_by_head(Q, K, group)
    if parts is None:
        from toyattn.symmetry.tuning import best_parts  # tuning times this module's grams

        parts = best_parts(Q, K, group)
        try:
            return traces_from_grams(*grams(Q, K, group, parts=parts))
        except torch.cuda.OutOfMemoryError:  # the sliced copy no longer fits (memory was freer when timed)
            if parts == 1:
                raise
            parts = 1
    return traces_from_grams(*grams(Q, K, group, parts=parts))


def traces_from_grams(A: torch.Tensor, B: torch.Tensor, C_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``tr(A B)`` and ``tr(C C)`` from the three Grams, summed in float64 (float32 Grams on MPS move to the CPU)."""
    wide = wide_dtype(A.device)
    if wide != torch.float64 and A.device.type == "mps":
        A, B, C_t = A.cpu(), B.cpu(), C_t.cpu()
        wide = torch.float64
    # tr(A B) = sum_ij A_ij B_ji = sum(A * B) because B is symmetric; tr(C C) = sum(C * C^T).
    # The products are in the Grams' precision (already rounded there); the sums accumulate in float64.
    norm2 = (A * B).sum(dim=(-2, -1), dtype=wide)
    trace_cc = (C_t * C_t.transpose(-1, -2)).sum(dim=(-2, -1), dtype=wide)
    return norm2, trace_cc


#: On the CPU, heads with at least this many weights (``d_model * d_head``) get their Gram products
#: one head at a time (see :func:`_traces_head_by_head`); smaller ones in one batched call.
PER_HEAD_LOOP_MIN_SIZE = 2**17


def grams(
    Q: torch.Tensor, K: torch.Tensor, group: int, *, parts: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``A = W_q^T W_q``, ``B = W_k^T W_k`` (repeated per query head) and ``C^T = W_q^T W_k``, in three
    batched matmuls. ``Q: [..., H, d_h, d]``, ``K: [..., H_kv, d_h, d]`` (row layout); all ``[..., H, d_h, d_h]``.

    ``parts > 1`` (it must divide ``d``) cuts ``d`` into that many slices, takes every slice's Grams in the
    same batched matmuls and adds them up (``W^T W = sum_s W_s^T W_s``): the same flops, ``parts`` times
    more independent products. A head's ``[d_h, d_h]`` output is small next to its long inner dimension,
    so one product per head may leave much of a GPU idle; the slices cost a copy of ``Q`` and ``K``.
    """
    d_head, d = Q.shape[-2], Q.shape[-1]
    if parts < 1 or d % parts:
        raise ValueError(f"parts={parts} must be a positive divisor of d_model={d}.")
    if Q.dim() == 2:  # a single head [d_h, d]
        return tuple(G[0] for G in grams(Q[None], K[None], group, parts=parts))  # type: ignore[return-value]
    lead, n_kv = Q.shape[:-3], K.shape[-3]
    # Each group's query heads stacked into one [group * d_h, d] block: one C product per key head. (A view
    # when group = 1; a copy under grouped-query attention when Q is the transposed view symmetry_score passes.)
    Q_grouped = Q.reshape(*lead, n_kv, group * d_head, d)
    if parts > 1:
        # [..., H_kv, group * d_h, d] -> [..., H_kv, parts, group * d_h, d / parts], copied so that the
        # batched matmuls read every slice as an ordinary matrix.
        Q_grouped = Q_grouped.unflatten(-1, (parts, d // parts)).transpose(-3, -2).contiguous()
        K = K.unflatten(-1, (parts, d // parts)).transpose(-3, -2).contiguous()
    # Per head again: [..., H_kv, (parts,) group, d_h, d / parts] (a view of the grouped block).
    Q_heads = Q_grouped.unflatten(-2, (group, d_head))
    A = Q_heads @ Q_heads.transpose(-1, -2)
    B = K @ K.transpose(-1, -2)  # once per key head even under GQA
    C_t = Q_grouped @ K.transpose(-1, -2)  # C^T = W_q^T W_k; tr(C C) = tr(C^T C^T), so the transpose is harmless
    if parts > 1:  # add up the slices: A is [..., H_kv, parts, group, d_h, d_h], B and C [..., H_kv, parts, ., d_h]
        A, B, C_t = A.sum(dim=-4), B.sum(dim=-3), C_t.sum(dim=-3)
    A = A.reshape(*lead, n_kv * group, d_head, d_head)
    C_t = C_t.reshape(*lead, n_kv * group, d_head, d_head)
    if group > 1:
        B = B.repeat_interleave(group, dim=-3)
    return A, B, C_t


def _traces_head_by_head(Q: torch.Tensor, K: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``tr(A B)`` and ``tr(C C)`` per head, computing the Gram products one head at a time (CPU, large heads).

    ``Q: [..., H, d_h, d]``, ``K: [..., H_kv, d_h, d]`` (row layout); returns two float64 ``[..., H]``.

    Two things make this faster than three batched matmuls at a 7B layer shape:

    * a head's ``W_q`` and ``W_k`` are 2 MB each; computing its ``A``, ``C`` and ``B`` back to back
      reads them from the cache for the later products, where batched calls stream all heads from
      memory once per product;
    * ``A`` and ``B`` are symmetric and only ``sum(A * B)`` is needed, so their lower-left block is
      never computed: ``sum(A*B) = sum(A11*B11) + 2 sum(A12*B12) + sum(A22*B22)`` with the rows split
      in two halves. That is 5 instead of 6 ``d d_h^2`` flops per head (BLAS's ``syrk`` does the same;
      torch has no binding for it).

    ``benchmarks/bench_symmetry.py`` times both paths side by side against the square-matmul rate.
    """
    if Q.dim() == 2:  # a single head [d_h, d]
        norm2, trace_cc = _traces_head_by_head(Q[None], K[None], group)
        return norm2[0], trace_cc[0]
    lead, (n_heads, d_head) = Q.shape[:-3], Q.shape[-3:-1]
    n_kv = K.shape[-3]
    half = d_head // 2
    # Rows [0, half) against all rows gives A11 and A12; rows [half, d_h) against themselves gives A22.
    A_top = Q.new_empty(*lead, n_heads, half, d_head)
    A_bottom = Q.new_empty(*lead, n_heads, d_head - half, d_head - half)
    B_top = Q.new_empty(*lead, n_kv, half, d_head)
    B_bottom = Q.new_empty(*lead, n_kv, d_head - half, d_head - half)
    C_t = Q.new_empty(*lead, n_heads, d_head, d_head)
    for idx in np.ndindex(*lead, n_kv):
        k = K[idx]
        torch.mm(k[:half], k.T, out=B_top[idx])
        torch.mm(k[half:], k[half:].T, out=B_bottom[idx])
        for h in range(idx[-1] * group, (idx[-1] + 1) * group):
            q, at = Q[(*idx[:-1], h)], (*idx[:-1], h)
            torch.mm(q[:half], q.T, out=A_top[at])
            torch.mm(q[half:], q[half:].T, out=A_bottom[at])
            torch.mm(q, k.T, out=C_t[at])
    if group > 1:
        B_top = B_top.repeat_interleave(group, dim=-3)
        B_bottom = B_bottom.repeat_interleave(group, dim=-3)
    f64 = torch.float64
    A_top[..., half:] *= 2  # A12 stands for itself and for the A21 block that was skipped (exact in floats)
    norm2 = (A_top * B_top).sum(dim=(-2, -1), dtype=f64) + (A_bottom * B_bottom).sum(dim=(-2, -1), dtype=f64)
    trace_cc = (C_t * C_t.transpose(-1, -2)).sum(dim=(-2, -1), dtype=f64)
    return norm2, trace_cc
