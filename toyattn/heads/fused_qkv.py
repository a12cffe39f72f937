"""Fused attention weights: the two layouts, and splitting, merging and permuting heads in them (lesson 2).

Taught in ``notebooks/02_head_permutation`` (sections 1, 2 and 4: what a fused QKV weight looks
like, permuting its heads, why the output projection must move too) and practised in
``solutions/02_head_permutation`` (exercises 1 and 7). Permutations follow :mod:`toyattn.heads.permutations`.

A multi-head attention layer stores its query, key and value projections for all heads in one
fused matrix. Two layouts are common, and every function here takes the layout **explicitly**
(it is never guessed from the shape, because a square matrix fits both):

* ``layout="in_out"``: ``[d_in, 3 * n_heads * d_head]``, the layer computes ``x @ W``.
  GPT-2's ``Conv1D`` (``c_attn.weight``) stores weights this way, as did the research notebook this
  lesson grew from (kept outside this repository).
* ``layout="out_in"``: ``[3 * n_heads * d_head, d_in]``, the layer computes ``x @ W.T``.
  ``torch.nn.Linear`` and ``torch.nn.MultiheadAttention.in_proj_weight`` store weights this way.

Along the ``3 * n_heads * d_head`` axis the order is always Q block, K block, V block, and inside
each block head 0's ``d_head`` columns come first, then head 1's, and so on. ``d_in`` need not equal
``n_heads * d_head``.

The output projection takes the concatenated head outputs ``[.., n_heads * d_head]`` back to
``d_out``: ``[n_heads * d_head, d_out]`` in ``in_out`` layout (GPT-2's ``c_proj``) and
``[d_out, n_heads * d_head]`` in ``out_in`` layout (``nn.MultiheadAttention.out_proj.weight``).
"""

from __future__ import annotations

import copy
import operator
from typing import Literal

import numpy as np
import torch
from torch import nn

from toyattn.heads.permutations import as_permutation

Layout = Literal["in_out", "out_in"]
LAYOUTS: tuple[str, ...] = ("in_out", "out_in")
QKV_NAMES: tuple[str, str, str] = ("Q", "K", "V")

__all__ = [
    "LAYOUTS",
    "QKV_NAMES",
    "merge_out_proj",
    "merge_qkv",
    "merge_qkv_bias",
    "permute_mha",
    "permute_out_proj",
    "permute_qkv",
    "permute_qkv_bias",
    "split_out_proj",
    "split_qkv",
    "split_qkv_bias",
]


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(
            f"layout={layout!r} is not one of {LAYOUTS}: use 'in_out' for [d_in, 3*n_heads*d_head] "
            f"(GPT-2 Conv1D, x @ W) or 'out_in' for [3*n_heads*d_head, d_in] (nn.Linear, "
            f"nn.MultiheadAttention.in_proj_weight, x @ W.T)."
        )


def _check_matrix(weight: torch.Tensor, what: str) -> None:
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(weight).__name__}.")
    if weight.dim() != 2:
        raise ValueError(f"{what} must be a 2-D matrix, got shape {tuple(weight.shape)}.")


def _head_count(n_heads: int) -> int:
    """``n_heads`` as an ``int``: ints, NumPy and 0-d torch integers; not floats, bools or counts below 1."""
    try:
        if isinstance(n_heads, bool | np.bool_):
            raise TypeError
        n_heads = operator.index(n_heads)
    except TypeError:
        raise TypeError(f"n_heads must be an integer, got {n_heads!r}.") from None
    if n_heads < 1:
        raise ValueError(f"n_heads must be a positive integer, got {n_heads!r}.")
    return n_heads


def _head_width(width: int, n_heads: int, n_blocks: int, what: str, hint: str) -> int:
    """``d_head`` from the width of the head axis, which ``n_blocks * n_heads`` must divide."""
    n_heads = _head_count(n_heads)
    if width % (n_blocks * n_heads) != 0:
        raise ValueError(
            f"{what} has width {width} along the head axis, which is not divisible by "
            f"{'3*' if n_blocks == 3 else ''}n_heads = {n_blocks * n_heads}. {hint}"
        )
    return width // (n_blocks * n_heads)


def _qkv_d_head(weight: torch.Tensor, n_heads: int, layout: str) -> int:
    """``d_head`` of a fused QKV weight, after checking the layout, the matrix and ``n_heads``."""
    _check_layout(layout)
    _check_matrix(weight, "the fused QKV weight")
    hint = (
        "Check n_heads, and the layout: with layout='in_out' the head axis is dim 1 "
        "(shape [d_in, 3*n_heads*d_head]); with 'out_in' it is dim 0."
    )
    axis = 1 if layout == "in_out" else 0
    return _head_width(weight.shape[axis], n_heads, 3, "the fused QKV weight", hint)


def _out_proj_d_head(weight: torch.Tensor, n_heads: int, layout: str) -> int:
    """``d_head`` of an output projection, after checking the layout, the matrix and ``n_heads``."""
    _check_layout(layout)
    _check_matrix(weight, "the output projection")
    hint = (
        "Check n_heads, and the layout: the output projection's head axis is dim 0 with "
        "layout='in_out' ([n_heads*d_head, d_out]) and dim 1 with 'out_in' ([d_out, n_heads*d_head])."
    )
    axis = 0 if layout == "in_out" else 1
    return _head_width(weight.shape[axis], n_heads, 1, "the output projection", hint)


def split_qkv(weight: torch.Tensor, n_heads: int, *, layout: Layout) -> torch.Tensor:
    """Split a fused QKV weight into per-head blocks (lesson 2).

    Args:
        weight: ``[d_in, 3*n_heads*d_head]`` (``layout="in_out"``) or ``[3*n_heads*d_head, d_in]``
            (``layout="out_in"``).
        n_heads: number of heads.
        layout: see the module docstring; never guessed.

    Returns:
        ``[3, n_heads, d_in, d_head]``: index 0/1/2 is Q/K/V, and head ``h``'s query is
        ``x @ out[0, h]`` in both layouts (the TransformerLens convention).
    """
    d_head = _qkv_d_head(weight, n_heads, layout)
    w = weight if layout == "in_out" else weight.T  # [d_in, 3*H*dh]
    # [d_in, 3, H, dh] -> [3, H, d_in, dh]
    return w.reshape(w.shape[0], 3, n_heads, d_head).permute(1, 2, 0, 3)


def merge_qkv(heads: torch.Tensor, *, layout: Layout) -> torch.Tensor:
    """Inverse of :func:`split_qkv`: ``[3, n_heads, d_in, d_head]`` back to one fused matrix (lesson 2)."""
    _check_layout(layout)
    if heads.dim() != 4 or heads.shape[0] != 3:
        raise ValueError(f"expected per-head QKV blocks of shape [3, n_heads, d_in, d_head], got {tuple(heads.shape)}.")
    _, n_heads, d_in, d_head = heads.shape
    w = heads.permute(2, 0, 1, 3).reshape(d_in, 3 * n_heads * d_head)
    return w.contiguous() if layout == "in_out" else w.T.contiguous()


def split_qkv_bias(bias: torch.Tensor, n_heads: int) -> torch.Tensor:
    """A fused QKV bias ``[3*n_heads*d_head]`` as ``[3, n_heads, d_head]`` (same in both layouts; lesson 2)."""
    if not isinstance(bias, torch.Tensor) or bias.dim() != 1:
        raise ValueError(f"the fused QKV bias must be a 1-D tensor [3*n_heads*d_head], got {getattr(bias, 'shape', bias)!r}.")
    d_head = _head_width(len(bias), n_heads, 3, "the fused QKV bias", "Check n_heads.")
    return bias.reshape(3, n_heads, d_head)


def merge_qkv_bias(heads: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`split_qkv_bias` (lesson 2)."""
    if heads.dim() != 3 or heads.shape[0] != 3:
        raise ValueError(f"expected a per-head bias of shape [3, n_heads, d_head], got {tuple(heads.shape)}.")
    return heads.reshape(-1).contiguous()


def split_out_proj(weight: torch.Tensor, n_heads: int, *, layout: Layout) -> torch.Tensor:
    """Split an output projection into per-head blocks ``[n_heads, d_head, d_out]`` (lesson 2).

    ``weight`` is ``[n_heads*d_head, d_out]`` (``in_out``, GPT-2 ``c_proj``) or ``[d_out, n_heads*d_head]``
    (``out_in``, ``nn.MultiheadAttention.out_proj.weight``). Head ``h`` contributes ``z_h @ out[h]``.
    """
    d_head = _out_proj_d_head(weight, n_heads, layout)
    w = weight if layout == "in_out" else weight.T  # [H*dh, d_out]
    return w.reshape(n_heads, d_head, w.shape[1])


def merge_out_proj(heads: torch.Tensor, *, layout: Layout) -> torch.Tensor:
    """Inverse of :func:`split_out_proj` (lesson 2)."""
    _check_layout(layout)
    if heads.dim() != 3:
        raise ValueError(f"expected output-projection blocks of shape [n_heads, d_head, d_out], got {tuple(heads.shape)}.")
    w = heads.reshape(-1, heads.shape[-1])
    return w.contiguous() if layout == "in_out" else w.T.contiguous()


def permute_qkv(weight: torch.Tensor, perm: torch.Tensor, n_heads: int, *, layout: Layout) -> torch.Tensor:
    """Reorder the heads of a fused QKV weight: new head i = old head ``perm[i]`` (lesson 2).

    Q, K and V move together (a head is a (Q, K, V) triple); the shape and layout are unchanged.
    """
    heads = split_qkv(weight, n_heads, layout=layout)
    p = as_permutation(perm, n_heads).to(weight.device)
    return merge_qkv(heads[:, p], layout=layout)


def permute_qkv_bias(bias: torch.Tensor, perm: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder the heads of a fused QKV bias ``[3*n_heads*d_head]`` like :func:`permute_qkv` (lesson 2)."""
    heads = split_qkv_bias(bias, n_heads)
    p = as_permutation(perm, n_heads).to(bias.device)
    return merge_qkv_bias(heads[:, p])


def permute_out_proj(weight: torch.Tensor, perm: torch.Tensor, n_heads: int, *, layout: Layout) -> torch.Tensor:
    """Reorder the output projection's head blocks to match a QKV permutation (lesson 2).

    Permuting QKV alone changes what the layer computes (head i's output is multiplied by the wrong
    block of the output projection). Permuting both with the same ``perm`` does not: the sum over
    heads just runs in another order. The output bias belongs to no head and stays as it is.
    """
    heads = split_out_proj(weight, n_heads, layout=layout)
    p = as_permutation(perm, n_heads).to(weight.device)
    return merge_out_proj(heads[p], layout=layout)


def _check_fused_mha(mha: nn.MultiheadAttention) -> None:
    if not isinstance(mha, nn.MultiheadAttention):
        raise TypeError(f"expected a torch.nn.MultiheadAttention, got {type(mha).__name__}.")
    if mha.in_proj_weight is None:
        raise ValueError(
            "this nn.MultiheadAttention has separate q/k/v projections (kdim or vdim != embed_dim); "
            "only the fused in_proj_weight is supported: build it with kdim = vdim = embed_dim."
        )


def permute_mha(mha: nn.MultiheadAttention, perm: torch.Tensor, *, out_proj: bool = True) -> nn.MultiheadAttention:
    """A copy of ``mha`` with its heads reordered (lesson 2); ``mha`` itself is not changed.

    Args:
        mha: a ``torch.nn.MultiheadAttention`` with a fused ``in_proj_weight`` (``kdim == vdim ==
            embed_dim``), stored ``out_in``.
        perm: new head i = old head ``perm[i]``.
        out_proj: also permute the output projection (``True``: same function, ``False``: QKV only,
            which breaks the layer; the notebook shows both).
    """
    _check_fused_mha(mha)
    n_heads = mha.num_heads
    p = as_permutation(perm, n_heads)
    new = copy.deepcopy(mha)
    with torch.no_grad():
        new.in_proj_weight.copy_(permute_qkv(mha.in_proj_weight, p, n_heads, layout="out_in"))
        if mha.in_proj_bias is not None:
            new.in_proj_bias.copy_(permute_qkv_bias(mha.in_proj_bias, p, n_heads))
        if out_proj:
            new.out_proj.weight.copy_(permute_out_proj(mha.out_proj.weight, p, n_heads, layout="out_in"))
    return new
