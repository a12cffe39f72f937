"""A Llama-family decoder (SmolLM2) run from its GGUF file, with the course's hook points.

Taught in lesson 5 (``notebooks/05_induction_circuits``): the real model whose attention
patterns show previous-token and induction heads. The forward pass is the standard Llama one
(RMSNorm, rotary positions in the "rotate half" layout, grouped-query attention, SwiGLU MLP, tied
embeddings); ``tests/test_llama.py`` checks it against ``transformers``' ``LlamaForCausalLM`` on the
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

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from toyattn.device import check_dtype
from toyattn.hooks import HookedModule, HookPoint
from toyattn.models.transformer import apply_rotary

__all__ = ["LlamaConfig", "Llama", "llama_from_state_dict", "load_llama_gguf"]


@dataclass(frozen=True)
class LlamaConfig:
    """Shape of a Llama-family model (lesson 5); :func:`load_llama_gguf` reads it from the file."""

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
        """The key/value head that query head ``head`` reads."""
        return head // (self.n_heads // self.n_kv_heads)


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
        group = self.cfg.n_heads // self.cfg.n_kv_heads
        k, v = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(self.cfg.d_head)
        future = torch.ones(n_pos, n_pos, dtype=torch.bool, device=x.device).triu(1)
        scores = self.hook_attn_scores(scores.masked_fill(future, float("-inf")))
        pattern = self.hook_pattern(torch.softmax(scores, dim=-1))
        z = self.hook_z(torch.einsum("bhqk,bkhe->bqhe", pattern, v))
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


def _per_head(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """``nn.Linear`` weight ``[n_heads * d_head, d_model]`` -> ``[n_heads, d_model, d_head]``."""
    rows, d_model = weight.shape
    return weight.float().reshape(n_heads, rows // n_heads, d_model).transpose(1, 2)


def llama_from_state_dict(state_dict: dict[str, torch.Tensor], cfg: LlamaConfig) -> Llama:
    """A :class:`Llama` holding a Hugging Face ``LlamaForCausalLM`` state dict (``model.layers.{i}.self_attn.q_proj.weight``, ...). Lesson 5."""
    model = Llama(cfg)
    sd = {k.removeprefix("model."): v for k, v in state_dict.items()}
    missing = [k for k in ("embed_tokens.weight", "norm.weight") if k not in sd]
    if missing:
        raise KeyError(f"The state dict lacks {missing}; is it a Llama-family model's?")
    with torch.no_grad():
        model.W_E.copy_(sd["embed_tokens.weight"])
        model.W_U.copy_(sd.get("lm_head.weight", sd["embed_tokens.weight"]).T)  # tied embeddings
        model.ln_final.weight.copy_(sd["norm.weight"])
        for i, block in enumerate(model.blocks):
            get = lambda name: sd[f"layers.{i}.{name}.weight"]  # noqa: E731, B023
            block.ln1.weight.copy_(get("input_layernorm"))
            block.ln2.weight.copy_(get("post_attention_layernorm"))
            block.attn.W_Q.copy_(_per_head(get("self_attn.q_proj"), cfg.n_heads))
            block.attn.W_K.copy_(_per_head(get("self_attn.k_proj"), cfg.n_kv_heads))
            block.attn.W_V.copy_(_per_head(get("self_attn.v_proj"), cfg.n_kv_heads))
            block.attn.W_O.copy_(get("self_attn.o_proj").T.reshape(cfg.n_heads, cfg.d_head, cfg.d_model))
            block.mlp.gate.weight.copy_(get("mlp.gate_proj"))
            block.mlp.up.weight.copy_(get("mlp.up_proj"))
            block.mlp.down.weight.copy_(get("mlp.down_proj"))
    return model.eval()


_GGUF_NAMES = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}


def load_llama_gguf(path: str | Path | None = None, *, dtype: torch.dtype = torch.float32) -> Llama:
    """The Llama-family model in a GGUF file (default: the packaged SmolLM2-135M-Instruct), dequantized to float32. Lesson 5.

    ``dtype=torch.bfloat16`` casts the weights afterwards (half the memory; every product then runs in
    bfloat16), after :func:`toyattn.device.check_dtype` has made sure the CPU can compute in it; move
    the model to a GPU with ``.to("cuda")`` and check there with ``check_dtype(dtype, "cuda")``.

    The tensors are renamed to Hugging Face's names and loaded with :func:`llama_from_state_dict`.
    llama.cpp stores ``q``/``k`` rows with each head's rotary pairs interleaved; they are put back
    into the "rotate half" layout (:func:`toyattn.weights.checkpoints.unpermute_llama_cpp_rows`) that
    :func:`~toyattn.models.transformer.apply_rotary` and ``transformers`` use.
    """
    from toyattn.weights.checkpoints import unpermute_llama_cpp_rows
    from toyattn.weights.gguf import GGUFFile
    from toyattn.weights.pretrained import smollm2_gguf_path

    gg = GGUFFile(path if path is not None else smollm2_gguf_path())
    arch = gg.metadata.get("general.architecture")
    if arch != "llama":
        raise ValueError(f"{gg.path} holds a {arch!r} model; load_llama_gguf reads Llama-family GGUF files only.")
    meta = lambda key: gg.metadata[f"llama.{key}"]  # noqa: E731
    tensor = lambda name: torch.from_numpy(np.ascontiguousarray(gg.dequantize(name))).float()  # noqa: E731
    emb = tensor("token_embd.weight")
    cfg = LlamaConfig(
        vocab_size=emb.shape[0], d_model=int(meta("embedding_length")), n_layers=int(meta("block_count")),
        n_heads=int(meta("attention.head_count")), n_kv_heads=int(meta("attention.head_count_kv")),
        d_mlp=int(meta("feed_forward_length")), rope_base=float(gg.metadata.get("llama.rope.freq_base", 10000.0)),
        eps=float(meta("attention.layer_norm_rms_epsilon")),
    )
    sd = {"embed_tokens.weight": emb, "norm.weight": tensor("output_norm.weight")}
    if "output.weight" in gg.tensors:
        sd["lm_head.weight"] = tensor("output.weight")
    for i in range(cfg.n_layers):
        for gguf_name, hf_name in _GGUF_NAMES.items():
            w = tensor(f"blk.{i}.{gguf_name}.weight")
            if gguf_name in ("attn_q", "attn_k"):
                w = unpermute_llama_cpp_rows(w, cfg.n_heads if gguf_name == "attn_q" else cfg.n_kv_heads)
            sd[f"layers.{i}.{hf_name}.weight"] = w
    model = llama_from_state_dict(sd, cfg)
    if dtype != torch.float32:
        model = model.to(check_dtype(dtype, "cpu"))
    return model
