"""One attention layer's weights held per head: :class:`HeadWeights`, the course's one container (lesson 2).

Taught in ``notebooks/02_head_permutation`` (from section 3 on, where heads are compared, and
section 7, "The second symmetry: rotations inside a head") and practised in
``solutions/02_head_permutation`` (exercises 3 to 6). Lesson 4 reads its circuits from it too.

Inside one head there is a second symmetry besides the order of heads: for any orthogonal ``R`` of
size ``d_head``, replacing ``W_q, W_k`` by ``W_q R, W_k R`` leaves every attention score unchanged,
and ``W_v, W_o`` by ``W_v S, S^T W_o`` leaves the output unchanged (:func:`rotate_within_heads`).
Raw weights change under it; the products ``W_QK = W_q W_k^T`` and ``W_OV = W_v W_o`` do not
(:func:`toyattn.head_matching.invariant_features`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .fused_qkv import Layout, split_out_proj, split_qkv, split_qkv_bias
from .permutations import as_permutation

__all__ = ["HeadWeights", "random_orthogonal", "rotate_within_heads"]


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
