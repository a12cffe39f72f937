"""A small, readable transformer whose weights are easy to read per layer and head.

Taught in lesson 4 (``notebooks/04_qk_ov_matching``, induction heads); lessons 2 and 3 train it too.

Design choices (nanoGPT-like, TransformerLens-style weights):

* Every attention layer stores its weights per head, so ``model.blocks[l].attn.W_Q[h]`` is the
  ``[d_model, d_head]`` query map of head ``h`` in layer ``l``. The convention is
  ``q = x @ W_Q[h] + b_Q[h]`` and ``out = sum_h z_h @ W_O[h] + b_O``, so the "QK circuit" of a head
  is ``W_Q[h] @ W_K[h].T`` and its "OV circuit" is ``W_V[h] @ W_O[h]`` (both ``[d_model, d_model]``).
* Positions: ``"rotary"`` (queries and keys rotated by an angle proportional to their position, so
  attention scores depend on relative distance only), ``"learned"`` (a position embedding added to
  the residual stream) or ``"none"``.
* Pre-layer-norm blocks: ``x + attn(ln1(x))`` then ``x + mlp(ln2(x))``; the MLP is optional
  (``mlp=False`` gives an attention-only model, the classic setting for induction heads).
* Named hook points everywhere worth looking (see :class:`Transformer`), so
  ``model.run_with_cache(tokens)`` returns queries, keys, patterns and residual streams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from toyattn.hooks import HookedModule, HookPoint
from toyattn.models.attention import attend
from toyattn.validate import positive_int

Positions = Literal["rotary", "learned", "none"]
_POSITIONS = ("rotary", "learned", "none")


@dataclass
class TransformerConfig:
    """Shape and options of a :class:`Transformer` (taught in lesson 4).

    Attributes:
        vocab_size: number of token ids (inputs are in ``[0, vocab_size)``).
        max_len: longest sequence the model accepts.
        d_model: width of the residual stream.
        n_layers: number of blocks.
        n_heads: attention heads per block.
        d_head: width of each head; ``None`` means ``d_model // n_heads``.
        positions: ``"rotary"``, ``"learned"`` or ``"none"``.
        rotary_base: the base ``theta`` of rotary frequencies (pair ``i`` turns by ``theta^(-2i/d_head)``
            radians per position).
        mlp: add a two-layer GELU MLP after attention in each block.
        d_mlp: hidden width of the MLP; ``None`` means ``4 * d_model``.
        layer_norm: pre-layer-norm in every block and before the unembedding (``False``: none).
        causal: ``True`` lets each position attend only to itself and earlier positions (language
            modelling); ``False`` is bidirectional (masked-token training, lesson 3).
        dropout: dropout on attention patterns and on each block's output (0 disables it).
    """

    vocab_size: int
    max_len: int
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 1
    d_head: int | None = None
    positions: Positions = "rotary"
    rotary_base: float = 10000.0
    mlp: bool = False
    d_mlp: int | None = None
    layer_norm: bool = True
    causal: bool = True
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_len", "d_model", "n_layers", "n_heads"):
            value = getattr(self, name)
            positive_int(value, f"TransformerConfig.{name}")
        if self.d_head is None:
            if self.d_model % self.n_heads != 0:
                raise ValueError(
                    f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                    "choose d_model as a multiple of n_heads or pass d_head explicitly."
                )
            self.d_head = self.d_model // self.n_heads
        positive_int(self.d_head, "TransformerConfig.d_head")
        if self.positions not in _POSITIONS:
            raise ValueError(f"positions must be one of {_POSITIONS}, got {self.positions!r}.")
        if self.positions == "rotary" and self.d_head % 2 != 0:
            raise ValueError(
                f"Rotary positions rotate pairs of coordinates, so d_head must be even (got {self.d_head}); "
                "use an even d_head or positions='learned'."
            )
        if self.rotary_base <= 0:
            raise ValueError(f"rotary_base must be positive, got {self.rotary_base!r}.")
        if self.d_mlp is None:
            self.d_mlp = 4 * self.d_model
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}.")


# ---------------------------------------------------------------------------------------------
# Rotary position embedding
# ---------------------------------------------------------------------------------------------


def rotary_frequencies(d_head: int, base: float = 10000.0, device: torch.device | str | None = None) -> torch.Tensor:
    """Angular speed (radians per position) of each of the ``d_head // 2`` rotated pairs, ``[d_head // 2]``.

    Pair ``i`` is coordinates ``(i, i + d_head // 2)`` (the "rotate half" layout), turning at
    ``base ** (-2 i / d_head)``: the first pairs spin fast (fine position), the last ones slowly.
    Taught in lesson 4.
    """
    if d_head % 2 != 0:
        raise ValueError(f"Rotary embedding needs an even d_head, got {d_head}.")
    exponents = torch.arange(0, d_head // 2, device=device, dtype=torch.float32) * 2.0 / d_head
    return base ** (-exponents)


def apply_rotary(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotate each pair of coordinates of ``x`` by ``position * frequency``.

    Args:
        x: ``[batch, pos, n_heads, d_head]`` queries or keys.
        positions: ``[pos]`` integer positions.

    Returns the rotated tensor, same shape. For a query at position ``p`` and a key at ``s`` the
    score ``rot(q, p) . rot(k, s)`` equals ``q @ rotary_matrix(d_head, p - s) @ k`` (see
    :func:`toyattn.circuits.matching.rotary_matrix`): it depends on the distance only. Taught in lesson 4.
    """
    d_head = x.shape[-1]
    freqs = rotary_frequencies(d_head, base, device=x.device)
    angles = positions.to(x.device, torch.float32)[:, None] * freqs[None, :]  # [pos, d_head/2]
    cos = torch.cos(angles).to(x.dtype)[None, :, None, :]
    sin = torch.sin(angles).to(x.dtype)[None, :, None, :]
    half = d_head // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


# ---------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------


class Embed(nn.Module):
    """Token embedding ``W_E [vocab, d_model]``: row ``t`` is the vector written for token ``t``."""

    def __init__(self, vocab_size: int, d_model: int) -> None:
        super().__init__()
        # Unit-variance entries, like nn.Embedding: the token signal starts as loud as what attention adds.
        self.W_E = nn.Parameter(torch.randn(vocab_size, d_model))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.W_E[tokens]


class PosEmbed(nn.Module):
    """Learned position embedding ``W_pos [max_len, d_model]``, added to the token embedding."""

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        self.W_pos = nn.Parameter(torch.randn(max_len, d_model))

    def forward(self, n_pos: int) -> torch.Tensor:
        return self.W_pos[:n_pos]


class Attention(nn.Module):
    """Multi-head attention with per-head weight tensors (TransformerLens layout). Lesson 4.

    Parameters: ``W_Q, W_K, W_V [n_heads, d_model, d_head]``, ``W_O [n_heads, d_head, d_model]``,
    ``b_Q, b_K, b_V [n_heads, d_head]``, ``b_O [d_model]``.
    """

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h, d, dh = cfg.n_heads, cfg.d_model, cfg.d_head
        assert dh is not None
        # Same spread as nn.Linear's default (uniform with bound 1/sqrt(fan_in)), drawn per head.
        bound_in, bound_out = 1.0 / math.sqrt(d), 1.0 / math.sqrt(h * dh)
        self.W_Q = nn.Parameter(torch.empty(h, d, dh).uniform_(-bound_in, bound_in))
        self.W_K = nn.Parameter(torch.empty(h, d, dh).uniform_(-bound_in, bound_in))
        self.W_V = nn.Parameter(torch.empty(h, d, dh).uniform_(-bound_in, bound_in))
        self.W_O = nn.Parameter(torch.empty(h, dh, d).uniform_(-bound_out, bound_out))
        self.b_Q = nn.Parameter(torch.zeros(h, dh))
        self.b_K = nn.Parameter(torch.zeros(h, dh))
        self.b_V = nn.Parameter(torch.zeros(h, dh))
        self.b_O = nn.Parameter(torch.zeros(d))
        self.dropout = nn.Dropout(cfg.dropout)
        self.hook_q = HookPoint()  # [batch, pos, n_heads, d_head], after rotary
        self.hook_k = HookPoint()  # [batch, pos, n_heads, d_head], after rotary
        self.hook_v = HookPoint()  # [batch, pos, n_heads, d_head]
        self.hook_attn_scores = HookPoint()  # [batch, n_heads, q_pos, k_pos], scaled and masked
        self.hook_pattern = HookPoint()  # [batch, n_heads, q_pos, k_pos], rows sum to 1
        self.hook_z = HookPoint()  # [batch, pos, n_heads, d_head], pattern-weighted values

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [batch, pos, d_model]`` -> attention output ``[batch, pos, d_model]``."""
        n_pos = x.shape[1]
        q = torch.einsum("bpd,hde->bphe", x, self.W_Q) + self.b_Q
        k = torch.einsum("bpd,hde->bphe", x, self.W_K) + self.b_K
        v = torch.einsum("bpd,hde->bphe", x, self.W_V) + self.b_V
        if self.cfg.positions == "rotary":
            pos = torch.arange(n_pos, device=x.device)
            q = apply_rotary(q, pos, self.cfg.rotary_base)
            k = apply_rotary(k, pos, self.cfg.rotary_base)
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        z = attend(self, q, k, v, causal=self.cfg.causal, dropout=self.dropout)
        return torch.einsum("bqhe,hed->bqd", z, self.W_O) + self.b_O


class MLP(nn.Module):
    """Two-layer GELU MLP: ``W_in [d_model, d_mlp]``, ``W_out [d_mlp, d_model]``."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        assert cfg.d_mlp is not None
        self.fc_in = nn.Linear(cfg.d_model, cfg.d_mlp)
        self.fc_out = nn.Linear(cfg.d_mlp, cfg.d_model)
        self.hook_post = HookPoint()  # [batch, pos, d_mlp], after the nonlinearity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(self.hook_post(torch.nn.functional.gelu(self.fc_in(x))))


class Block(nn.Module):
    """One pre-layer-norm block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))`` if the MLP is on."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model) if cfg.layer_norm else nn.Identity()
        self.attn = Attention(cfg)
        self.mlp: nn.Module | None = None
        if cfg.mlp:
            self.ln2 = nn.LayerNorm(cfg.d_model) if cfg.layer_norm else nn.Identity()
            self.mlp = MLP(cfg)
            self.hook_mlp_out = HookPoint()  # [batch, pos, d_model]
        self.dropout = nn.Dropout(cfg.dropout)
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.hook_attn_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_post = HookPoint()  # [batch, pos, d_model]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.hook_resid_pre(x)
        x = x + self.dropout(self.hook_attn_out(self.attn(self.ln1(x))))
        if self.mlp is not None:
            x = x + self.dropout(self.hook_mlp_out(self.mlp(self.ln2(x))))
        return self.hook_resid_post(x)



def _check_token_ids(tokens: torch.Tensor) -> None:
    """Refuse what is not a ``[batch, pos]`` tensor of integer token ids, saying how to fix it."""
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"tokens must be a torch.Tensor of token ids, got {type(tokens).__name__}.")
    if tokens.dim() == 1:
        raise ValueError(
            f"tokens must be 2-D [batch, pos], got shape {tuple(tokens.shape)}; "
            "add a batch dimension with tokens[None]."
        )
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be 2-D [batch, pos], got shape {tuple(tokens.shape)}.")
    if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        raise TypeError(f"tokens must be integer ids (torch.long), got dtype {tokens.dtype}; use tokens.long().")


class Transformer(HookedModule):
    """A decoder (or, with ``causal=False``, encoder) transformer for the course. Lessons 2-4.

    ``forward(tokens [batch, pos]) -> logits [batch, pos, vocab_size]``.

    Weights: ``embed.W_E [vocab, d_model]``, ``pos_embed.W_pos [max_len, d_model]`` (learned
    positions only), ``blocks[l].attn.W_Q/W_K/W_V [n_heads, d_model, d_head]``,
    ``blocks[l].attn.W_O [n_heads, d_head, d_model]``, ``unembed.weight [vocab, d_model]``.

    Hook points: ``hook_embed``, ``hook_pos_embed`` (learned positions only),
    ``blocks.{l}.hook_resid_pre``, ``blocks.{l}.attn.hook_q/hook_k/hook_v`` (q, k after rotary),
    ``blocks.{l}.attn.hook_attn_scores``, ``blocks.{l}.attn.hook_pattern``, ``blocks.{l}.attn.hook_z``,
    ``blocks.{l}.hook_attn_out``, ``blocks.{l}.hook_mlp_out`` (MLP only), ``blocks.{l}.hook_resid_post``.

    Example::

        >>> cfg = TransformerConfig(vocab_size=16, max_len=32, d_model=32)
        >>> model = Transformer(cfg)
        >>> logits, cache = model.run_with_cache(torch.zeros(1, 8, dtype=torch.long))
        >>> cache["blocks.1.attn.hook_pattern"].shape
        torch.Size([1, 1, 8, 8])
    """

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        if not isinstance(cfg, TransformerConfig):
            raise TypeError(
                f"Transformer expects a TransformerConfig, got {type(cfg).__name__}; "
                "build one with TransformerConfig(vocab_size=..., max_len=...)."
            )
        self.cfg = cfg
        self.embed = Embed(cfg.vocab_size, cfg.d_model)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self.pos_embed: PosEmbed | None = None
        if cfg.positions == "learned":
            self.pos_embed = PosEmbed(cfg.max_len, cfg.d_model)
            self.hook_pos_embed = HookPoint()  # [pos, d_model]
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.ln_final = nn.LayerNorm(cfg.d_model) if cfg.layer_norm else nn.Identity()
        self.unembed = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.setup_hooks()

    @property
    def device(self) -> torch.device:
        """Where the parameters live."""
        return self.embed.W_E.device

    def forward(self, tokens: torch.Tensor, *, check: bool = True) -> torch.Tensor:
        """``tokens [batch, pos]`` (integer ids) -> ``logits [batch, pos, vocab_size]``.

        ``check=False`` skips the input checks, for callers whose tokens are valid by construction and
        cannot be read (runs stacked with ``torch.func.vmap``, :mod:`toyattn.stacked`).
        """
        if check:
            _check_token_ids(tokens)
            self._check_fits(tokens)
        n_pos = tokens.shape[1]
        x = self.hook_embed(self.embed(tokens))
        if self.pos_embed is not None:
            x = x + self.hook_pos_embed(self.pos_embed(n_pos))
        for block in self.blocks:
            x = block(x)
        return self.unembed(self.ln_final(x))

    def _check_fits(self, tokens: torch.Tensor) -> None:
        """Refuse token ids this model cannot read: too many positions, ids outside the vocabulary,
        or tensors on another device."""
        n_pos = tokens.shape[1]
        if n_pos > self.cfg.max_len:
            raise ValueError(
                f"The sequence has {n_pos} positions but the model was built with max_len={self.cfg.max_len}; "
                "shorten the input or build the model with a larger max_len."
            )
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.cfg.vocab_size):
            raise ValueError(
                f"Token ids must be in [0, {self.cfg.vocab_size}), got values from {int(tokens.min())} "
                f"to {int(tokens.max())}."
            )
        if tokens.device != self.device:
            raise ValueError(
                f"tokens are on {tokens.device} but the model is on {self.device}; "
                f"move them with tokens.to(model.device)."
            )
