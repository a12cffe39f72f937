"""Attention heads inside fused weights: split, permute, compare and match them (lesson 2).

Taught in ``notebooks/02_head_permutation`` and practised in ``solutions/02_head_permutation``.

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

**The permutation convention** (one, everywhere): a permutation is a 1-D integer tensor ``perm`` of
length ``n_heads`` holding each of ``0 .. n_heads-1`` once, and applying it means

    new head i = old head perm[i]          (a gather: ``heads[perm]``)

So ``recover_permutation(ref, permute(ref, perm)) == perm``, applying ``perm`` and then
``invert_permutation(perm)`` gives the original back, and applying ``p1`` then ``p2`` equals applying
``compose_permutations(p1, p2) == p1[p2]`` once.

Inside one head there is a second symmetry: for any orthogonal ``R`` of size ``d_head``, replacing
``W_q, W_k`` by ``W_q R, W_k R`` leaves every attention score unchanged, and ``W_v, W_o`` by
``W_v S, S^T W_o`` leaves the output unchanged. Raw weights change under it; the products
``W_QK = W_q W_k^T`` and ``W_OV = W_v W_o`` do not (:func:`invariant_features`).
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

Layout = Literal["in_out", "out_in"]
LAYOUTS: tuple[str, ...] = ("in_out", "out_in")
Metric = Literal["l2", "cosine"]
METRICS: tuple[str, ...] = ("l2", "cosine")
QKV_NAMES: tuple[str, str, str] = ("Q", "K", "V")

__all__ = [
    "LAYOUTS",
    "METRICS",
    "HeadWeights",
    "as_permutation",
    "bert_attention_as_mha",
    "compose_permutations",
    "cost_heatmap",
    "cost_matrix",
    "discrete_colorscale",
    "greedy_match",
    "head_blocks_figure",
    "hungarian_match",
    "invariant_cost_matrix",
    "invariant_features",
    "invert_permutation",
    "match",
    "merge_out_proj",
    "merge_qkv",
    "merge_qkv_bias",
    "permute_mha",
    "permute_out_proj",
    "permute_qkv",
    "permute_qkv_bias",
    "qkv_column_labels",
    "qkv_heatmap",
    "random_orthogonal",
    "random_permutation",
    "raw_features",
    "recover_permutation",
    "recovery_accuracy",
    "rotate_within_heads",
    "singular_value_features",
    "split_out_proj",
    "split_qkv",
    "split_qkv_bias",
]


# ----------------------------------------------------------------------------------------------
# Permutations
# ----------------------------------------------------------------------------------------------


def as_permutation(perm: torch.Tensor | np.ndarray | list[int] | tuple[int, ...], n_heads: int) -> torch.Tensor:
    """Validate ``perm`` as a permutation of ``n_heads`` heads and return it as a CPU ``int64`` tensor.

    Taught in lesson 2. Raises ``TypeError`` for a float (or bool) dtype and ``ValueError`` for a wrong
    length, a repeated head, or a head index out of range; each message says how to fix it.
    """
    if isinstance(perm, torch.Tensor):
        t = perm.detach().cpu()
    else:
        arr = np.asarray(perm)
        if arr.dtype == object:
            raise TypeError(f"perm must be a list or tensor of integers, got {perm!r}.")
        t = torch.from_numpy(arr.copy()) if arr.size else torch.empty(0, dtype=torch.long)
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise TypeError(
            f"perm must hold integer head indices, got dtype {t.dtype}. "
            f"Use e.g. torch.randperm({n_heads}) or torch.tensor([...], dtype=torch.long); "
            f"a float permutation usually means it was built with torch.tensor of floats or argsort of noise."
        )
    if t.dim() != 1:
        raise ValueError(f"perm must be 1-D (one entry per head), got shape {tuple(t.shape)}.")
    if len(t) != n_heads:
        raise ValueError(
            f"perm has {len(t)} entries but the layer has n_heads={n_heads}: "
            f"give exactly one entry per head (a permutation of 0..{n_heads - 1})."
        )
    t = t.long()
    out_of_range = (t < 0) | (t >= n_heads)
    if out_of_range.any():
        bad = int(t[out_of_range][0])
        raise ValueError(f"perm contains {bad}, outside the head range 0..{n_heads - 1}.")
    counts = torch.bincount(t, minlength=n_heads)
    if (counts != 1).any():
        repeated = torch.nonzero(counts > 1).flatten().tolist()
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(
            f"perm is not a permutation: head(s) {repeated} appear more than once and {missing} never. "
            f"Each of 0..{n_heads - 1} must appear exactly once."
        )
    return t


def random_permutation(n_heads: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A uniformly random permutation of ``n_heads`` heads, ``int64`` on the CPU (lesson 2)."""
    return torch.randperm(n_heads, generator=generator)


def invert_permutation(perm: torch.Tensor) -> torch.Tensor:
    """The permutation that undoes ``perm``: ``inv[perm[i]] = i`` (lesson 2).

    Applying ``perm`` and then ``inv`` (or the other way round) leaves the heads where they were.
    """
    p = as_permutation(perm, len(perm))
    inv = torch.empty_like(p)
    inv[p] = torch.arange(len(p))
    return inv


def compose_permutations(first: torch.Tensor, then: torch.Tensor) -> torch.Tensor:
    """One permutation equal to applying ``first`` and then ``then`` (lesson 2).

    With "new head i = old head perm[i]", two steps give head ``first[then[i]]``, so the result is
    ``first[then]``.
    """
    p1 = as_permutation(first, len(first))
    p2 = as_permutation(then, len(p1))
    return p1[p2]


def recovery_accuracy(found: torch.Tensor, true: torch.Tensor) -> float:
    """Fraction of heads a recovered permutation puts in the right place (lesson 2)."""
    f = as_permutation(found, len(found))
    t = as_permutation(true, len(f))
    return float((f == t).float().mean())


# ----------------------------------------------------------------------------------------------
# Split / merge fused weights
# ----------------------------------------------------------------------------------------------


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


def _head_width(width: int, n_heads: int, n_blocks: int, what: str, hint: str) -> int:
    try:
        if isinstance(n_heads, bool | np.bool_):
            raise TypeError
        n_heads = operator.index(n_heads)  # ints, NumPy and 0-d torch integers; not floats or bools
    except TypeError:
        raise TypeError(f"n_heads must be an integer, got {n_heads!r}.") from None
    if n_heads < 1:
        raise ValueError(f"n_heads must be a positive integer, got {n_heads!r}.")
    if width % (n_blocks * n_heads) != 0:
        raise ValueError(
            f"{what} has width {width} along the head axis, which is not divisible by "
            f"{'3*' if n_blocks == 3 else ''}n_heads = {n_blocks * n_heads}. {hint}"
        )
    return width // (n_blocks * n_heads)


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
    _check_layout(layout)
    _check_matrix(weight, "the fused QKV weight")
    axis = 1 if layout == "in_out" else 0
    hint = (
        "Check n_heads, and the layout: with layout='in_out' the head axis is dim 1 "
        "(shape [d_in, 3*n_heads*d_head]); with 'out_in' it is dim 0."
    )
    d_head = _head_width(weight.shape[axis], n_heads, 3, "the fused QKV weight", hint)
    w = weight if layout == "in_out" else weight.T  # [d_in, 3*H*dh]
    d_in = w.shape[0]
    # [d_in, 3, H, dh] -> [3, H, d_in, dh]
    return w.reshape(d_in, 3, n_heads, d_head).permute(1, 2, 0, 3)


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
    _check_layout(layout)
    _check_matrix(weight, "the output projection")
    axis = 0 if layout == "in_out" else 1
    hint = (
        "Check n_heads, and the layout: the output projection's head axis is dim 0 with "
        "layout='in_out' ([n_heads*d_head, d_out]) and dim 1 with 'out_in' ([d_out, n_heads*d_head])."
    )
    d_head = _head_width(weight.shape[axis], n_heads, 1, "the output projection", hint)
    w = weight if layout == "in_out" else weight.T  # [H*dh, d_out]
    return w.reshape(n_heads, d_head, w.shape[1])


def merge_out_proj(heads: torch.Tensor, *, layout: Layout) -> torch.Tensor:
    """Inverse of :func:`split_out_proj` (lesson 2)."""
    _check_layout(layout)
    if heads.dim() != 3:
        raise ValueError(f"expected output-projection blocks of shape [n_heads, d_head, d_out], got {tuple(heads.shape)}.")
    w = heads.reshape(-1, heads.shape[-1])
    return w.contiguous() if layout == "in_out" else w.T.contiguous()


# ----------------------------------------------------------------------------------------------
# Permuting heads
# ----------------------------------------------------------------------------------------------


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


def permute_mha(mha: nn.MultiheadAttention, perm: torch.Tensor, *, out_proj: bool = True) -> nn.MultiheadAttention:
    """A copy of ``mha`` with its heads reordered (lesson 2); ``mha`` itself is not changed.

    Args:
        mha: a ``torch.nn.MultiheadAttention`` with a fused ``in_proj_weight`` (``kdim == vdim ==
            embed_dim``), stored ``out_in``.
        perm: new head i = old head ``perm[i]``.
        out_proj: also permute the output projection (``True``: same function, ``False``: QKV only,
            which breaks the layer; the notebook shows both).
    """
    if not isinstance(mha, nn.MultiheadAttention):
        raise TypeError(f"expected a torch.nn.MultiheadAttention, got {type(mha).__name__}.")
    if mha.in_proj_weight is None:
        raise ValueError(
            "this nn.MultiheadAttention has separate q/k/v projections (kdim or vdim != embed_dim); "
            "only the fused in_proj_weight is supported: build it with kdim = vdim = embed_dim."
        )
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


def bert_attention_as_mha(path: str | Path, layer: int, *, n_heads: int) -> nn.MultiheadAttention:
    """One self-attention layer of a BERT-family ``model.safetensors`` as ``nn.MultiheadAttention`` (lesson 2).

    BERT keeps query, key and value as three ``nn.Linear`` weights ``[d_model, d_model]`` (``out_in``);
    stacked they are exactly the fused ``in_proj_weight`` ``[3*d_model, d_model]`` of
    ``nn.MultiheadAttention``, and ``attention.output.dense`` is its ``out_proj`` (BERT's dropout and
    the layer norm after it are not part of the module). Only these 8 tensors are read from disk.
    Returns a module with ``batch_first=True`` in eval mode.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: pass the path of a BERT-family model.safetensors.")
    with safe_open(str(path), framework="pt") as f:
        names = list(f.keys())
        stem = f"layer.{layer}.attention."
        matches = [n for n in names if n.endswith(stem + "self.query.weight")]
        if not matches:
            n_layers = len({n.split("layer.")[1].split(".")[0] for n in names if ".layer." in n or n.startswith("layer.")})
            raise ValueError(
                f"{path.name} has no '{stem}self.query.weight': not a BERT-family checkpoint, or layer {layer} is "
                f"out of range (it seems to have {n_layers} layers)."
            )
        prefix = matches[0][: -len("self.query.weight")]

        def get(name: str) -> torch.Tensor:
            return f.get_tensor(prefix + name)

        q, k, v = get("self.query.weight"), get("self.key.weight"), get("self.value.weight")
        d_model = q.shape[1]
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}: check n_heads in the model's config.json.")
        mha = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
        with torch.no_grad():
            mha.in_proj_weight.copy_(torch.cat([q, k, v]))
            mha.in_proj_bias.copy_(torch.cat([get("self.query.bias"), get("self.key.bias"), get("self.value.bias")]))
            mha.out_proj.weight.copy_(get("output.dense.weight"))
            mha.out_proj.bias.copy_(get("output.dense.bias"))
    return mha.eval()


# ----------------------------------------------------------------------------------------------
# One layer's heads as per-head tensors
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadWeights:
    """One attention layer's weights, split per head (TransformerLens shapes; lesson 2).

    ``W_Q, W_K, W_V``: ``[n_heads, d_in, d_head]``; ``W_O``: ``[n_heads, d_head, d_out]`` or ``None``
    (only a fused QKV weight is known); ``b_Q, b_K, b_V``: ``[n_heads, d_head]`` or ``None``.
    """

    W_Q: torch.Tensor
    W_K: torch.Tensor
    W_V: torch.Tensor
    W_O: torch.Tensor | None = None
    b_Q: torch.Tensor | None = None
    b_K: torch.Tensor | None = None
    b_V: torch.Tensor | None = None

    def __post_init__(self) -> None:
        shape = tuple(self.W_Q.shape)
        if self.W_Q.dim() != 3:
            raise ValueError(f"W_Q must be [n_heads, d_in, d_head], got shape {shape}.")
        for name in ("W_K", "W_V"):
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"{name} has shape {tuple(getattr(self, name).shape)}, W_Q has {shape}; they must match.")
        n_heads, _, d_head = shape
        if self.W_O is not None and tuple(self.W_O.shape[:2]) != (n_heads, d_head):
            raise ValueError(f"W_O must be [n_heads={n_heads}, d_head={d_head}, d_out], got {tuple(self.W_O.shape)}.")
        for name in ("b_Q", "b_K", "b_V"):
            b = getattr(self, name)
            if b is not None and tuple(b.shape) != (n_heads, d_head):
                raise ValueError(f"{name} must be [n_heads={n_heads}, d_head={d_head}], got {tuple(b.shape)}.")

    @property
    def n_heads(self) -> int:
        return self.W_Q.shape[0]

    @property
    def d_in(self) -> int:
        return self.W_Q.shape[1]

    @property
    def d_head(self) -> int:
        return self.W_Q.shape[2]

    @property
    def has_bias(self) -> bool:
        return self.b_Q is not None

    @classmethod
    def from_fused(
        cls,
        qkv_weight: torch.Tensor,
        n_heads: int,
        *,
        layout: Layout,
        qkv_bias: torch.Tensor | None = None,
        out_weight: torch.Tensor | None = None,
        out_layout: Layout | None = None,
    ) -> HeadWeights:
        """From a fused QKV weight (and optionally its bias and the output projection).

        ``out_layout`` defaults to ``layout`` (a model stores both the same way).
        """
        qkv = split_qkv(qkv_weight, n_heads, layout=layout)
        kwargs: dict[str, torch.Tensor | None] = {}
        if qkv_bias is not None:
            b = split_qkv_bias(qkv_bias, n_heads)
            if b.shape[-1] != qkv.shape[-1]:
                raise ValueError(f"the QKV bias gives d_head={b.shape[-1]} but the weight gives {qkv.shape[-1]}.")
            kwargs.update(b_Q=b[0], b_K=b[1], b_V=b[2])
        if out_weight is not None:
            kwargs["W_O"] = split_out_proj(out_weight, n_heads, layout=out_layout or layout)
        return cls(qkv[0], qkv[1], qkv[2], **kwargs)

    @classmethod
    def from_mha(cls, mha: nn.MultiheadAttention) -> HeadWeights:
        """From a ``torch.nn.MultiheadAttention`` with a fused ``in_proj_weight`` (detached copies)."""
        if mha.in_proj_weight is None:
            raise ValueError("only nn.MultiheadAttention with a fused in_proj_weight (kdim = vdim = embed_dim) is supported.")
        return cls.from_fused(
            mha.in_proj_weight.detach(),
            mha.num_heads,
            layout="out_in",
            qkv_bias=None if mha.in_proj_bias is None else mha.in_proj_bias.detach(),
            out_weight=mha.out_proj.weight.detach(),
        )

    @classmethod
    def from_attention(cls, attn: nn.Module) -> HeadWeights:
        """From an attention module with TransformerLens-style parameters ``W_Q, W_K, W_V`` ``[n_heads,
        d_model, d_head]``, ``W_O`` ``[n_heads, d_head, d_model]`` and ``b_Q, b_K, b_V`` (for example
        ``toyattn.models.transformer.Transformer``'s ``model.blocks[l].attn``)."""
        def get(name: str) -> torch.Tensor | None:
            t = getattr(attn, name, None)
            return None if t is None else t.detach()

        for name in ("W_Q", "W_K", "W_V"):
            if get(name) is None:
                raise ValueError(f"{type(attn).__name__} has no parameter {name}: expected a TransformerLens-style attention module.")
        return cls(get("W_Q"), get("W_K"), get("W_V"), get("W_O"), get("b_Q"), get("b_K"), get("b_V"))

    def write_to(self, attn: nn.Module) -> nn.Module:
        """Copy these weights into a TransformerLens-style attention module, in place (the
        counterpart of :meth:`from_attention`); returns ``attn``. Every tensor present here must
        exist there with the same shape."""
        names = ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V")
        with torch.no_grad():
            for name, t in zip(names, self._tensors(), strict=True):
                if t is None:
                    continue
                target = getattr(attn, name, None)
                if target is None or tuple(target.shape) != tuple(t.shape):
                    raise ValueError(
                        f"cannot write {name} {tuple(t.shape)} into {type(attn).__name__}: "
                        f"it has {None if target is None else tuple(target.shape)}."
                    )
                target.copy_(t)
        return attn

    def to_fused(self, *, layout: Layout) -> torch.Tensor:
        """The fused QKV weight in ``layout``."""
        return merge_qkv(torch.stack([self.W_Q, self.W_K, self.W_V]), layout=layout)

    def permute(self, perm: torch.Tensor) -> HeadWeights:
        """The same layer with heads reordered: new head i = old head ``perm[i]``."""
        p = as_permutation(perm, self.n_heads).to(self.W_Q.device)
        return HeadWeights(*(None if t is None else t[p] for t in self._tensors()))

    def _tensors(self) -> tuple[torch.Tensor | None, ...]:
        return (self.W_Q, self.W_K, self.W_V, self.W_O, self.b_Q, self.b_K, self.b_V)

    def map(self, fn) -> HeadWeights:
        """Apply ``fn`` to every tensor that is present (e.g. ``lambda t: t.double()``)."""
        return HeadWeights(*(None if t is None else fn(t) for t in self._tensors()))

    def add_noise(self, scale: float, generator: torch.Generator | None = None) -> HeadWeights:
        """Add Gaussian noise of std ``scale * (each tensor's own std)`` to every tensor."""
        def noisy(t: torch.Tensor) -> torch.Tensor:
            noise = torch.randn(t.shape, generator=generator, dtype=t.dtype).to(t.device)
            return t + scale * t.std() * noise

        return self.map(noisy)


def random_orthogonal(n: int, count: int = 1, generator: torch.Generator | None = None, dtype=torch.float32) -> torch.Tensor:
    """``count`` random orthogonal ``n x n`` matrices ``[count, n, n]`` (QR of a Gaussian; lesson 2)."""
    g = torch.randn(count, n, n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    # Fix the signs so the distribution is uniform (Haar), not biased by QR's sign convention.
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    return q.to(dtype)


def rotate_within_heads(heads: HeadWeights, generator: torch.Generator | None = None) -> HeadWeights:
    """Apply a random orthogonal change of basis inside every head (lesson 2).

    Head h's ``W_Q, W_K, b_Q, b_K`` are multiplied on the right by one rotation ``R_h`` and
    ``W_V, b_V`` by another ``S_h``, with ``W_O`` by ``S_h^T`` on the left. Attention scores and the
    layer's output are unchanged; the raw weights are not.
    """
    n, dh, dtype, dev = heads.n_heads, heads.d_head, heads.W_Q.dtype, heads.W_Q.device
    R = random_orthogonal(dh, n, generator, dtype).to(dev)
    S = random_orthogonal(dh, n, generator, dtype).to(dev)
    def right(t: torch.Tensor | None, M: torch.Tensor) -> torch.Tensor | None:
        if t is None:
            return None
        return t @ M if t.dim() == 3 else (t.unsqueeze(1) @ M).squeeze(1)

    W_O = None if heads.W_O is None else S.transpose(1, 2) @ heads.W_O
    return HeadWeights(
        right(heads.W_Q, R), right(heads.W_K, R), right(heads.W_V, S), W_O,
        right(heads.b_Q, R), right(heads.b_K, R), right(heads.b_V, S),
    )


# ----------------------------------------------------------------------------------------------
# Head features and cost matrices
# ----------------------------------------------------------------------------------------------


def raw_features(heads: HeadWeights) -> torch.Tensor:
    """Each head's raw weights flattened into one vector ``[n_heads, n_features]`` (lesson 2).

    The order per head: ``W_Q[h]``, ``W_K[h]``, ``W_V[h]`` (each ``[d_in, d_head]`` flattened row by row),
    then ``W_O[h]`` and the biases when present. Not invariant to rotations inside a head.
    """
    parts = [t.reshape(heads.n_heads, -1) for t in heads._tensors() if t is not None]
    return torch.cat(parts, dim=1)


def _augmented(heads: HeadWeights) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """W_Q, W_K, W_V with the bias as one more input row ``[n_heads, d_in(+1), d_head]``: a bias is
    the weight of a constant input 1, and it rotates with its head exactly like the weights do."""
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
    Q, K, V = _augmented(heads)
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
    mats = [heads.W_Q, heads.W_K, heads.W_V] + ([heads.W_O] if heads.W_O is not None else [])
    return torch.cat([torch.linalg.svdvals(m.to(torch.promote_types(m.dtype, torch.float32))) for m in mats], dim=1)


def _check_pair(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
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
    _check_pair(a, b, "cost_matrix")
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
    Qa, Ka, Va = (t.to(dtype) for t in _augmented(a))
    Qb, Kb, Vb = (t.to(dtype) for t in _augmented(b))
    if a.W_O is not None and b.W_O is not None:
        # <Va Oa, Vb Ob> = tr(Oa^T Va^T Vb Ob) = sum((Va^T Vb) * (Oa Ob^T)): the same form with K = O^T.
        Oa, Ob = a.W_O.to(dtype).transpose(1, 2), b.W_O.to(dtype).transpose(1, 2)  # [H, d_out, dh]
    else:
        Oa, Ob = Va, Vb  # no output projection: W_V W_V^T, the same form with K = V
    inner = inner_qk(Qa, Ka, Qb, Kb) + inner_qk(Va, Oa, Vb, Ob)
    sq_a = sq_norm_qk(Qa, Ka) + sq_norm_qk(Va, Oa)
    sq_b = sq_norm_qk(Qb, Kb) + sq_norm_qk(Vb, Ob)
    return _distances_from_inner(inner, sq_a, sq_b, metric)


# ----------------------------------------------------------------------------------------------
# Matching
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Plots (plotly, discrete colours)
# ----------------------------------------------------------------------------------------------


def discrete_colorscale(levels: int, name: str = "Viridis") -> list[list]:
    """A plotly colour scale with ``levels`` flat bands instead of a smooth gradient (lesson 2).

    With few distinct values (0, 1, 2, ...) each value gets its own clearly different colour.
    """
    import plotly.express as px

    if levels < 1:
        raise ValueError(f"levels must be at least 1, got {levels}.")
    colours = px.colors.sample_colorscale(name, list(np.linspace(0, 1, levels)))
    scale: list[list] = []
    for i, c in enumerate(colours):
        scale.append([i / levels, c])
        scale.append([(i + 1) / levels, c])
    return scale


def qkv_column_labels(n_heads: int, d_head: int) -> list[str]:
    """Labels for the ``3*n_heads*d_head`` columns of a fused QKV weight: ``"Q h0.0"``, ``"Q h0.1"``, ... (lesson 2)."""
    return [f"{name} h{h}.{d}" for name in QKV_NAMES for h in range(n_heads) for d in range(d_head)]


def _value_range(values: np.ndarray) -> tuple[float, float, int]:
    uniq = np.unique(values)
    lo, hi = float(uniq.min()), float(uniq.max())
    if len(uniq) <= 12 and np.allclose(uniq, np.round(uniq)):
        # One band per integer: centre each value in its band.
        return lo - 0.5, hi + 0.5, int(round(hi - lo)) + 1
    return lo, hi, 8


def qkv_heatmap(weight: torch.Tensor, n_heads: int, *, layout: Layout, title: str, levels: int | None = None):
    """Interactive heatmap of a fused QKV weight, drawn as ``[d_in, 3*n_heads*d_head]`` whatever its
    layout, columns labelled ``Q h0.0 .. V h{H-1}.{d_head-1}`` (lesson 2). Returns a plotly Figure."""
    from .plotting import heatmap_plotly

    heads = split_qkv(weight, n_heads, layout=layout)  # validates
    w = merge_qkv(heads, layout="in_out").detach().cpu().double().numpy()
    lo, hi, auto_levels = _value_range(w)
    fig = heatmap_plotly(
        w,
        [f"in {i}" for i in range(w.shape[0])],
        qkv_column_labels(n_heads, heads.shape[-1]),
        title=title,
        xlabel="column of the fused weight (block, head.dim)",
        ylabel="input dimension",
        colorscale=discrete_colorscale(levels or auto_levels),  # type: ignore[arg-type]
        zmin=lo,
        zmax=hi,
        fmt=".0f" if auto_levels < 13 and levels is None else ".2f",
    )
    # Lines between the Q, K and V blocks and between heads make the structure visible at a glance.
    n_cols = w.shape[1]
    block = n_cols // 3
    dh = heads.shape[-1]
    for c in range(dh, n_cols, dh):
        fig.add_vline(x=c - 0.5, line_width=3 if c % block == 0 else 1, line_color="white")
    return fig


def head_blocks_figure(heads: HeadWeights, *, title: str, levels: int | None = None):
    """A grid of heatmaps, one row per head and one column per Q / K / V block ``[d_in, d_head]``,
    with one shared discrete colour scale (lesson 2). Returns a plotly Figure."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    blocks = [[heads.W_Q[h], heads.W_K[h], heads.W_V[h]] for h in range(heads.n_heads)]
    all_values = torch.stack([heads.W_Q, heads.W_K, heads.W_V]).detach().cpu().double().numpy()
    lo, hi, auto_levels = _value_range(all_values)
    scale = discrete_colorscale(levels or auto_levels)
    fig = make_subplots(
        rows=heads.n_heads,
        cols=3,
        subplot_titles=[f"head {h}: {n}" for h in range(heads.n_heads) for n in QKV_NAMES],
        horizontal_spacing=0.06,
        vertical_spacing=0.12 / max(1, heads.n_heads - 1) if heads.n_heads > 1 else 0.1,
    )
    for h, row in enumerate(blocks):
        for c, m in enumerate(row):
            arr = m.detach().cpu().double().numpy()
            fig.add_trace(
                go.Heatmap(
                    z=arr,
                    x=[f"d{j}" for j in range(arr.shape[1])],
                    y=[f"in {i}" for i in range(arr.shape[0])],
                    zmin=lo,
                    zmax=hi,
                    colorscale=scale,
                    showscale=(h == 0 and c == 0),
                    texttemplate="%{z:.0f}" if arr.size <= 64 else None,
                    hovertemplate=f"head {h} {QKV_NAMES[c]}<br>%{{y}}, %{{x}}: %{{z:.2f}}<extra></extra>",
                ),
                row=h + 1,
                col=c + 1,
            )
            fig.update_yaxes(autorange="reversed", row=h + 1, col=c + 1)
    fig.update_layout(title=title, height=190 * heads.n_heads + 120, width=720)
    return fig


def cost_heatmap(cost: torch.Tensor, *, title: str, matched: torch.Tensor | None = None):
    """The cost matrix as an annotated plotly heatmap, rows = client heads, columns = reference heads;
    ``matched`` (a matching ``[n_heads]``) is marked with a box on each chosen cell (lesson 2)."""
    from .plotting import heatmap_plotly

    n = cost.shape[0]
    fig = heatmap_plotly(
        cost,
        [f"client {i}" for i in range(n)],
        [f"ref {j}" for j in range(n)],
        title=title,
        xlabel="reference head",
        ylabel="client head",
        colorscale="Plasma",
        annotate=n * n <= 144,
        fmt=".2f",
    )
    if matched is not None:
        for i, j in enumerate(matched.tolist()):
            fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5, line=dict(color="cyan", width=3))
    return fig
