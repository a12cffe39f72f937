"""A Llama-family decoder (SmolLM2) with the course's hook points; :mod:`toyattn.weights.llama` loads its weights.

Taught in lesson 5 (``notebooks/05_induction_circuits``): the real model whose attention
patterns show previous-token and induction heads. The forward pass is the standard Llama one
(RMSNorm, rotary positions in the "rotate half" layout, grouped-query attention, SwiGLU MLP, tied
embeddings); ``tests/test_models_llama.py`` checks it against ``transformers``' ``LlamaForCausalLM`` on the
same weights. It is written out here, small, so that it carries the same hook names as the toy
:class:`~toyattn.models.transformer.Transformer` (``blocks.{l}.attn.hook_pattern``, ``hook_z``,
``blocks.{l}.hook_attn_out``, ...) and so that loading it needs neither ``transformers`` nor
``accelerate`` (``transformers`` loads GGUF files only through ``accelerate``).

Weights, per layer (TransformerLens layout, row vectors: ``q = x @ W_Q[h]``)::

    attn.W_Q [n_heads, d_model, d_head]     attn.W_K, attn.W_V [n_kv_heads, d_model, d_head]
    attn.W_O [n_heads, d_head, d_model]     ln1.weight, ln2.weight [d_model]  (RMSNorm gains)

Query head ``h`` reads key/value head ``h // (n_heads // n_kv_heads)`` (as ``transformers``' ``repeat_kv``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from toyattn.heads.weights import kv_head_for_query
from toyattn.hooks import HookedModule, HookPoint
from toyattn.models.attention import attend
from toyattn.models.transformer import apply_rotary

__all__ = ["LlamaConfig", "Llama"]


@dataclass(frozen=True)
class LlamaConfig:
    """Shape of a Llama-family model (lesson 5); :func:`toyattn.weights.llama.load_llama_gguf` reads it from the file."""

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_mlp: int
    rope_base: float = 10000.0
    eps: float = 1e-5

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def kv_head(self, head: int) -> int:
        """The key/value head that query head ``head`` reads (:func:`~toyattn.heads.weights.kv_head_for_query`)."""
        return int(kv_head_for_query(self.n_heads, self.n_kv_heads)[head])


class RMSNorm(nn.Module):
    """``x / rms(x) * weight``: Llama's layer norm (no centring, no bias)."""

    def __init__(self, d: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class LlamaAttention(nn.Module):
    """Grouped-query causal self-attention with rotary positions and the toy model's hook points."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, dh, h, kv = cfg.d_model, cfg.d_head, cfg.n_heads, cfg.n_kv_heads
        self.W_Q = nn.Parameter(torch.zeros(h, d, dh))
        self.W_K = nn.Parameter(torch.zeros(kv, d, dh))
        self.W_V = nn.Parameter(torch.zeros(kv, d, dh))
        self.W_O = nn.Parameter(torch.zeros(h, dh, d))
        self.hook_q = HookPoint()  # [batch, pos, n_heads, d_head], after rotary
        self.hook_k = HookPoint()  # [batch, pos, n_kv_heads, d_head], after rotary
        self.hook_v = HookPoint()  # [batch, pos, n_kv_heads, d_head]
        self.hook_attn_scores = HookPoint()  # [batch, n_heads, q_pos, k_pos]
        self.hook_pattern = HookPoint()  # [batch, n_heads, q_pos, k_pos]
        self.hook_z = HookPoint()  # [batch, pos, n_heads, d_head]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n_pos = x.shape[1]
        pos = torch.arange(n_pos, device=x.device)
        q = apply_rotary(torch.einsum("bpd,hde->bphe", x, self.W_Q), pos, self.cfg.rope_base)
        k = apply_rotary(torch.einsum("bpd,hde->bphe", x, self.W_K), pos, self.cfg.rope_base)
        v = torch.einsum("bpd,hde->bphe", x, self.W_V)
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        z = attend(self, q, k, v, causal=True)
        return torch.einsum("bqhe,hed->bqd", z, self.W_O)


class LlamaMLP(nn.Module):
    """SwiGLU: ``down(silu(gate(x)) * up(x))``."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.gate = nn.Linear(cfg.d_model, cfg.d_mlp, bias=False)
        self.up = nn.Linear(cfg.d_model, cfg.d_mlp, bias=False)
        self.down = nn.Linear(cfg.d_mlp, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.nn.functional.silu(self.gate(x)) * self.up(x))


class LlamaBlock(nn.Module):
    """``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.ln1, self.ln2 = RMSNorm(cfg.d_model, cfg.eps), RMSNorm(cfg.d_model, cfg.eps)
        self.attn, self.mlp = LlamaAttention(cfg), LlamaMLP(cfg)
        self.hook_resid_pre = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.hook_resid_pre(x)
        x = x + self.hook_attn_out(self.attn(self.ln1(x)))
        return self.hook_resid_post(x + self.mlp(self.ln2(x)))


class Llama(HookedModule):
    """A Llama-family decoder: ``forward(tokens [batch, pos]) -> logits [batch, pos, vocab]``. Lesson 5."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        if cfg.n_heads % cfg.n_kv_heads or cfg.d_model % cfg.n_heads:
            raise ValueError(f"n_heads must be a multiple of n_kv_heads and divide d_model, got {cfg}.")
        self.cfg = cfg
        self.W_E = nn.Parameter(torch.zeros(cfg.vocab_size, cfg.d_model))
        self.hook_embed = HookPoint()
        self.blocks = nn.ModuleList([LlamaBlock(cfg) for _ in range(cfg.n_layers)])
        self.ln_final = RMSNorm(cfg.d_model, cfg.eps)
        self.W_U = nn.Parameter(torch.zeros(cfg.d_model, cfg.vocab_size))
        self.setup_hooks()

    @property
    def device(self) -> torch.device:
        return self.W_E.device

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.dtype.is_floating_point:
            raise ValueError("tokens must be an integer tensor [batch, pos]; add a batch axis with tokens[None].")
        if int(tokens.min()) < 0 or int(tokens.max()) >= self.cfg.vocab_size:
            raise ValueError(f"token ids must be in [0, {self.cfg.vocab_size}), got {int(tokens.min())}..{int(tokens.max())}.")
        x = self.hook_embed(self.W_E[tokens])
        for block in self.blocks:
            x = block(x)
        return self.ln_final(x) @ self.W_U
