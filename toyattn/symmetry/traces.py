"""The two traces behind the fast symmetry score, ``tr(A B) = ||W_q W_k^T||_F^2`` and ``tr(C C)``, per head (lesson 3).

:func:`toyattn.symmetry.scores.symmetry_score` turns them into ``r = (1 + tr(C C) / tr(A B)) / 2``; this module
only computes them fast, with ``A = W_q^T W_q``, ``B = W_k^T W_k``, ``C = W_k^T W_q`` (each
``[d_head, d_head]``, never the ``d_model x d_model`` matrix ``M``):

* small heads, or any device but the CPU: three batched matmuls (:func:`_grams_batched`);
* large heads on the CPU: one head at a time, skipping a Gram block (:func:`_traces_head_by_head`).

``benchmarks/bench_symmetry.py`` times both paths side by side. Inputs are in row layout
``Q: [..., H, d_head, d_model]``, ``K: [..., H_kv, d_head, d_model]`` (``H`` a multiple of ``H_kv``
under grouped-query attention, ``group = H // H_kv``), already validated by :mod:`toyattn.symmetry.scores`.
"""

from __future__ import annotations

import numpy as np
import torch

from toyattn.device import wide_dtype

__all__ = ["PER_HEAD_LOOP_MIN_SIZE", "traces"]


def traces(Q: torch.Tensor, K: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``tr(A B) = ||M||_F^2`` and ``tr(C C)`` per head, accumulated in float64 where the device has it."""
    if Q.device.type == "cpu" and Q.shape[-2] * Q.shape[-1] >= PER_HEAD_LOOP_MIN_SIZE:
        return _traces_head_by_head(Q, K, group)
    A, B, C_t = _grams_batched(Q, K, group)
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


def _grams_batched(Q: torch.Tensor, K: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``A = W_q^T W_q``, ``B = W_k^T W_k`` (repeated per query head) and ``C^T = W_q^T W_k``, in three
    batched matmuls. ``Q: [..., H, d_h, d]``, ``K: [..., H_kv, d_h, d]`` (row layout); all ``[..., H, d_h, d_h]``."""
    d_head = Q.shape[-2]
    A = Q @ Q.transpose(-1, -2)
    B = K @ K.transpose(-1, -2)  # once per key head even under GQA
    if group == 1:
        C_t = Q @ K.transpose(-1, -2)  # C^T = W_q^T W_k; tr(C C) = tr(C^T C^T), so the transpose is harmless
    else:
        # Stack each group's query heads into one [group * d_h, d] block: one matmul per key head.
        lead = Q.shape[:-3]
        n_kv = K.shape[-3]
        Q_grouped = Q.reshape(*lead, n_kv, group * d_head, Q.shape[-1])
        C_t = (Q_grouped @ K.transpose(-1, -2)).reshape(*lead, n_kv * group, d_head, d_head)
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
