"""One attention layer's weights held per head: :class:`HeadWeights`, the course's one container (lessons 2-5).

Lesson 2 (``notebooks/02_head_permutation`` from section 3 on, ``solutions/02_head_permutation``
exercises 3 to 6) builds it from fused weights and matches heads with it; lesson 3 reads each
layer's queries and keys into it (:mod:`toyattn.weights.checkpoints`, with grouped-query keys and no
values); lesson 4 (``notebooks/04_qk_ov_matching``) reads a trained model's circuits from
:meth:`HeadWeights.from_model`.

Inside one head there is a second symmetry besides the order of heads: for any orthogonal ``R`` of
size ``d_head``, replacing ``W_q, W_k`` by ``W_q R, W_k R`` leaves every attention score unchanged,
and ``W_v, W_o`` by ``W_v S, S^T W_o`` leaves the output unchanged (:func:`rotate_within_heads`,
taught in lesson 2's section 7). Raw weights change under it; the products ``W_QK = W_q W_k^T``
and ``W_OV = W_v W_o`` do not (:func:`toyattn.heads.matching.invariant_features`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from toyattn.heads.fused_qkv import Layout, split_out_proj, split_qkv, split_qkv_bias
from toyattn.heads.permutations import as_permutation
from toyattn.validate import positive_int

__all__ = [
    "HeadWeights",
    "fold_norm",
    "kv_head_for_query",
    "linear_to_heads",
    "random_orthogonal",
    "repeat_kv_heads",
    "rotate_within_heads",
]

#: The tensor fields of :class:`HeadWeights`, in the order :meth:`HeadWeights.tensors` gives them.
TENSOR_NAMES: tuple[str, ...] = ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V")


@dataclass(frozen=True)
class HeadWeights:
    """One attention layer's weights, split per head (TransformerLens shapes; lessons 2-4).

    * ``W_Q``: ``[n_heads, d_in, d_head]``, head ``h``'s queries are ``x @ W_Q[h]``;
    * ``W_K``, ``W_V``: ``[n_kv_heads, d_in, d_head]``. Usually ``n_kv_heads = n_heads``; under
      grouped-query attention ``n_kv_heads`` divides ``n_heads`` and query head ``h`` reads key/value
      head ``h // (n_heads // n_kv_heads)``. ``W_V`` is ``None`` when only queries and keys were read;
    * ``W_O``: ``[n_heads, d_head, d_out]``, or ``None`` (only a fused QKV weight is known);
    * ``b_Q``: ``[n_heads, d_head]``, ``b_K``, ``b_V``: ``[n_kv_heads, d_head]``, or ``None``;
    * ``layer``: the layer's index in its model, when known.
    """

    W_Q: torch.Tensor
    W_K: torch.Tensor
    W_V: torch.Tensor | None = None
    W_O: torch.Tensor | None = None
    b_Q: torch.Tensor | None = None
    b_K: torch.Tensor | None = None
    b_V: torch.Tensor | None = None
    layer: int | None = None

    def __post_init__(self) -> None:
        _check_queries(self.W_Q)
        _check_keys_and_values(self.W_Q, self.W_K, self.W_V)
        n_heads, _, d_head = self.W_Q.shape
        if self.W_O is not None and tuple(self.W_O.shape[:2]) != (n_heads, d_head):
            raise ValueError(f"W_O must be [n_heads={n_heads}, d_head={d_head}, d_out], got {tuple(self.W_O.shape)}.")
        n_kv_heads = self.W_K.shape[0]
        kv_heads = "n_heads" if n_kv_heads == n_heads else "n_kv_heads"
        _check_bias("b_Q", self.b_Q, n_heads, d_head, "n_heads")
        _check_bias("b_K", self.b_K, n_kv_heads, d_head, kv_heads)
        _check_bias("b_V", self.b_V, n_kv_heads, d_head, kv_heads)

    @property
    def n_heads(self) -> int:
        return self.W_Q.shape[0]

    @property
    def n_kv_heads(self) -> int:
        """Key/value heads: ``n_heads``, or a divisor of it under grouped-query attention."""
        return self.W_K.shape[0]

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
    def from_attention(cls, attn: nn.Module, layer: int | None = None) -> HeadWeights:
        """From an attention module with TransformerLens-style parameters ``W_Q, W_K, W_V`` ``[n_heads,
        d_model, d_head]``, ``W_O`` ``[n_heads, d_head, d_model]`` and ``b_Q, b_K, b_V`` (for example
        ``toyattn.models.transformer.Transformer``'s ``model.blocks[l].attn``). The tensors are the
        module's own, detached (not copies)."""
        def get(name: str) -> torch.Tensor | None:
            t = getattr(attn, name, None)
            return None if t is None else t.detach()

        for name in ("W_Q", "W_K", "W_V"):
            if get(name) is None:
                raise ValueError(f"{type(attn).__name__} has no parameter {name}: expected a TransformerLens-style attention module.")
        return cls(*(get(name) for name in TENSOR_NAMES), layer=layer)

    @classmethod
    def from_model(cls, model: Any, layer: int, *, fold_norm: bool = False) -> HeadWeights:
        """Layer ``layer``'s attention of a hooked model (``model.blocks[layer].attn``; the toy
        Transformer or the Llama). ``fold_norm=True`` returns float64 copies with the gain of the norm
        before attention (``ln1``; LayerNorm's centring too) folded into ``W_Q``, ``W_K``, ``W_V``
        (:func:`fold_norm`), so the circuits read the residual stream itself (lesson 5).
        ``HeadWeights.from_model(model, 1).W_Q[0]`` is layer 2's head 0 query map ``[d_model, d_head]``."""
        n_layers = len(model.blocks)
        if not 0 <= layer < n_layers:
            raise ValueError(f"layer must be in [0, {n_layers}), got {layer}.")
        heads = cls.from_attention(model.blocks[layer].attn, layer=layer)
        norm = model.blocks[layer].ln1
        if not fold_norm:
            return heads
        heads = heads.map(lambda t: t.double())
        if not hasattr(norm, "weight"):
            return heads
        gain, center = norm.weight.detach(), isinstance(norm, nn.LayerNorm)
        return dataclasses.replace(heads, **{n: _fold(getattr(heads, n), gain, center) for n in ("W_Q", "W_K", "W_V")})

    def kv_head(self, head: int) -> int:
        """The key/value head that query head ``head`` reads (:func:`kv_head_for_query`)."""
        return int(kv_head_for_query(self.n_heads, self.n_kv_heads)[head])

    def head(self, head: int) -> HeadWeights:
        """Query head ``head`` alone, with the key/value head it reads: a one-head layer (lesson 5's
        circuits of one head). Biases are dropped: circuits are read from the weights."""
        if not 0 <= head < self.n_heads:
            raise IndexError(f"head {head} does not exist: this layer has {self.n_heads} heads.")
        kv = self.kv_head(head)
        one = lambda t, i: None if t is None else t[i : i + 1]  # noqa: E731
        return HeadWeights(one(self.W_Q, head), one(self.W_K, kv), one(self.W_V, kv), one(self.W_O, head), layer=self.layer)

    def qk(self, head: int = 0) -> torch.Tensor:
        """``W_Q[h] W_K[kv(h)]^T`` ``[d_in, d_in]``: the head's bilinear form (no rotary matrix, no
        ``1/sqrt(d_head)``; :mod:`toyattn.circuits.head_circuits` adds both)."""
        return self.W_Q[head] @ self.W_K[self.kv_head(head)].transpose(-1, -2)

    def ov(self, head: int = 0) -> torch.Tensor:
        """``W_V[kv(h)] W_O[h]`` ``[d_in, d_out]``: what the head writes for a source it attends to."""
        if self.W_V is None or self.W_O is None:
            raise ValueError("this layer was read without values or an output map (W_V/W_O are None); no OV circuit.")
        return self.W_V[self.kv_head(head)] @ self.W_O[head]

    def write_to(self, attn: nn.Module) -> nn.Module:
        """Copy these weights into a TransformerLens-style attention module, in place (the
        counterpart of :meth:`from_attention`); returns ``attn``. Every tensor present here must
        exist there with the same shape."""
        with torch.no_grad():
            for name, t in zip(TENSOR_NAMES, self.tensors(), strict=True):
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

    def permute(self, perm: torch.Tensor) -> HeadWeights:
        """The same layer with heads reordered: new head i = old head ``perm[i]``."""
        require_one_kv_head_per_head(self, "permute")
        p = as_permutation(perm, self.n_heads).to(self.W_Q.device)
        return self.map(lambda t: t[p])

    def tensors(self) -> tuple[torch.Tensor | None, ...]:
        """``W_Q, W_K, W_V, W_O, b_Q, b_K, b_V``, each a tensor or ``None``."""
        return tuple(getattr(self, name) for name in TENSOR_NAMES)

    def map(self, fn) -> HeadWeights:
        """Apply ``fn`` to every tensor that is present (e.g. ``lambda t: t.double()``); ``layer`` is kept."""
        mapped = {name: None if t is None else fn(t) for name, t in zip(TENSOR_NAMES, self.tensors(), strict=True)}
        return dataclasses.replace(self, **mapped)

    def add_noise(self, scale: float, generator: torch.Generator | None = None) -> HeadWeights:
        """Add Gaussian noise of std ``scale * (each tensor's own std)`` to every tensor."""
        def noisy(t: torch.Tensor) -> torch.Tensor:
            noise = torch.randn(t.shape, generator=generator, dtype=t.dtype).to(t.device)
            return t + scale * t.std() * noise

        return self.map(noisy)


def _check_queries(W_Q: torch.Tensor) -> None:
    if W_Q.dim() != 3:
        raise ValueError(f"W_Q must be [n_heads, d_in, d_head], got shape {tuple(W_Q.shape)}.")


def _check_keys_and_values(W_Q: torch.Tensor, W_K: torch.Tensor, W_V: torch.Tensor | None) -> None:
    """``W_K`` (and ``W_V``) share ``W_Q``'s ``d_in`` and ``d_head``, with a number of heads dividing ``n_heads``."""
    shape = tuple(W_Q.shape)
    for name, W in (("W_K", W_K), ("W_V", W_V)):
        if W is None:
            continue
        kv_shape = tuple(W.shape)
        if len(kv_shape) != 3 or kv_shape[1:] != shape[1:] or kv_shape[0] < 1 or shape[0] % kv_shape[0]:
            raise ValueError(
                f"{name} has shape {kv_shape}, W_Q has {shape}; they must match (under grouped-query "
                f"attention W_K and W_V may have fewer heads, a divisor of n_heads)."
            )
    if W_V is not None and W_V.shape[0] != W_K.shape[0]:
        raise ValueError(f"W_V has {W_V.shape[0]} heads and W_K {W_K.shape[0]}; keys and values come in pairs.")


def _check_bias(name: str, b: torch.Tensor | None, n: int, d_head: int, heads: str) -> None:
    if b is not None and tuple(b.shape) != (n, d_head):
        raise ValueError(f"{name} must be [{heads}={n}, d_head={d_head}], got {tuple(b.shape)}.")


def require_one_kv_head_per_head(heads: HeadWeights, what: str) -> None:
    """Refuse a grouped-query layer where ``what`` needs one key/value head per query head."""
    if heads.n_kv_heads != heads.n_heads:
        raise ValueError(
            f"{what} needs one key/value head per query head, but this layer groups its {heads.n_heads} query heads "
            f"over {heads.n_kv_heads} key/value heads (grouped-query attention): query heads that share a key head "
            f"cannot be moved or rotated one by one."
        )


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
    require_one_kv_head_per_head(heads, "rotate_within_heads")
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
        right(heads.b_Q, R), right(heads.b_K, R), right(heads.b_V, S), layer=heads.layer,
    )


def linear_to_heads(weight: torch.Tensor, n_heads: int, what: str = "the weight") -> torch.Tensor:
    """``nn.Linear`` weight ``[n_heads * d_head, d_model]`` -> ``[n_heads, d_model, d_head]`` (a view).

    The one conversion from a checkpoint's stacked rows to the course's per-head layout (lessons 3, 5).
    """
    rows, d_model = weight.shape
    if rows % n_heads != 0:
        raise ValueError(
            f"{what} has {rows} output rows, not a multiple of n_heads={n_heads}; is n_heads (or n_kv_heads) right?"
        )
    return weight.reshape(n_heads, rows // n_heads, d_model).transpose(1, 2)


def kv_head_for_query(n_heads: int, n_kv_heads: int) -> torch.Tensor:
    """Which key head each query head reads under grouped-query attention, ``[n_heads]`` (lessons 3 and 5).

    Query heads are split into ``n_kv_heads`` consecutive groups of ``n_heads // n_kv_heads``
    (Hugging Face's ``repeat_kv``, Llama-3, Mistral, SmolLM2): query head ``h`` uses key head
    ``h // (n_heads // n_kv_heads)``. ``n_kv_heads == n_heads`` is ordinary multi-head attention.
    """
    n_heads, n_kv_heads = positive_int(n_heads, "n_heads"), positive_int(n_kv_heads, "n_kv_heads")
    if n_heads % n_kv_heads != 0:
        raise ValueError(
            f"{n_heads} query heads cannot share {n_kv_heads} key heads evenly: grouped-query attention "
            "needs n_heads to be a multiple of n_kv_heads."
        )
    return torch.arange(n_heads) // (n_heads // n_kv_heads)


def repeat_kv_heads(W_k: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Repeat key heads so each query head has its own copy: ``[..., H_kv, d, d_h] -> [..., n_heads, d, d_h]``.

    The mapping is :func:`kv_head_for_query` (consecutive groups). Lessons 3 and 5.
    """
    if W_k.dim() < 3:
        raise ValueError(f"W_k must have a heads axis [..., n_kv_heads, d_model, d_head], got {tuple(W_k.shape)}.")
    index = kv_head_for_query(n_heads, W_k.shape[-3]).to(W_k.device)
    return W_k.index_select(-3, index)


def fold_norm(W: Any, gain: Any, *, center: bool) -> Any:
    """Fold a pre-norm's gain (lesson 5) (and, for LayerNorm, its centring) into the matrix that reads it.

    For LayerNorm, ``LN(x) @ W = (x / std(x)) @ (C diag(gain) W) + bias @ W`` exactly, with
    ``C = I - 11^T / d`` the centring matrix (``x - mean(x) = x C``); ``center=True`` returns
    ``C diag(gain) W``. For RMSNorm (no centring, no bias), ``RMSNorm(x) @ W = (x / rms(x)) @ (diag(gain) W)``;
    ``center=False`` returns ``diag(gain) W``. Either way what is left between the residual stream
    and the folded matrix is one positive number per token (``1 / std`` or ``1 / rms``): it rescales
    a score but does not change which directions are read.
    """
    as_numpy = not isinstance(W, torch.Tensor)  # NumPy in, NumPy out (lesson 5's circuits); torch in, torch out
    W, gain = torch.as_tensor(W, dtype=torch.float64), torch.as_tensor(gain, dtype=torch.float64)
    if tuple(gain.shape) != (W.shape[-2],):
        raise ValueError(f"gain must be [d_model] = [{W.shape[-2]}] to match W's rows, got shape {tuple(gain.shape)}.")
    folded = gain[:, None] * W  # W may carry a heads axis in front: [..., d_model, d_head]
    if center:
        folded = folded - folded.mean(dim=-2, keepdim=True)  # C @ M subtracts the column means
    return folded.numpy() if as_numpy else folded


def _fold(W: torch.Tensor, gain: torch.Tensor, center: bool) -> torch.Tensor:
    return fold_norm(W, gain, center=center).to(W.dtype)
