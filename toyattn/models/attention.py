"""The attention computation every model of the course shares: scaled scores, the causal mask, softmax, and the weighted values.

Lesson 1 writes it for one head (``notebooks/01_attention_toy``); lesson 4's
:class:`~toyattn.models.transformer.Transformer` and lesson 5's :class:`~toyattn.models.llama.Llama`
run it here, through their hook points (``hook_attn_scores``, ``hook_pattern``, ``hook_z``), so a hook
sees the same tensors whichever model it is attached to.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from toyattn.heads.weights import kv_head_for_query

__all__ = ["attend", "causal_mask"]


def causal_mask(n_pos: int, device: str | torch.device | None = None) -> torch.Tensor:
    """``[n_pos, n_pos]`` bool mask, ``True`` where query ``i`` may attend to key ``j`` (``j <= i``).

    Lesson 1 (problem set 01's exercise 1, ``mask_scores``, applies such a mask). The mask is applied
    once, to the scores, before the softmax: masked scores become ``-inf`` and get weight exactly 0.
    (The research notebook this lesson grew from, kept outside this repository, multiplied the mask in
    a second time after the softmax, which changes nothing and hides where the masking happens.)
    """
    return torch.ones(n_pos, n_pos, dtype=torch.bool, device=device).tril()


def attend(
    attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = True, dropout: nn.Module | None = None
) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d_head), masked) v`` per head: ``z [batch, pos, n_heads, d_head]``.

    ``q [batch, q_pos, n_heads, d_head]``; ``k``, ``v`` ``[batch, k_pos, n_kv_heads, d_head]``, the queries
    being the last ``q_pos`` of the ``k_pos`` positions (usually all of them; lesson 6 runs only the last
    position against cached keys and values). Grouped-query
    attention when ``n_kv_heads < n_heads``: query head ``h`` reads key/value head
    :func:`~toyattn.heads.weights.kv_head_for_query`). ``attn`` carries the hook points
    ``hook_attn_scores`` (scaled, masked), ``hook_pattern`` (rows sum to 1) and ``hook_z``.
    ``dropout`` applies to the pattern after its hook (training only).
    """
    n_heads, n_kv = q.shape[2], k.shape[2]
    if n_kv != n_heads:
        index = kv_head_for_query(n_heads, n_kv).to(q.device)
        k, v = k.index_select(2, index), v.index_select(2, index)
    scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(q.shape[-1])
    if causal:  # the queries are the last q positions of the k keys (all of them, but in a cached step)
        n_q, n_k = q.shape[1], k.shape[1]
        scores = scores.masked_fill(~causal_mask(n_k, q.device)[n_k - n_q :], float("-inf"))
    pattern = attn.hook_pattern(torch.softmax(attn.hook_attn_scores(scores), dim=-1))
    if dropout is not None:
        pattern = dropout(pattern)
    return attn.hook_z(torch.einsum("bhqk,bkhe->bqhe", pattern, v))
