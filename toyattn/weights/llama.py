"""Loading a Llama-family model's weights (a GGUF file, or a Hugging Face state dict) into the course's Llama.

Taught in lesson 5 (``notebooks/05_induction_circuits``, section 11), which reads SmolLM2-135M-Instruct
from the GGUF file the course ships. The model itself is :mod:`toyattn.models.llama`; what llama.cpp
does to the tensors is undone by :mod:`toyattn.weights.gguf`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from toyattn.device import check_dtype
from toyattn.heads.weights import linear_to_heads
from toyattn.models.llama import Llama, LlamaConfig
from toyattn.weights.gguf import GGUFFile, llama_state_dict
from toyattn.weights.pretrained import smollm2_gguf_path


def _heads(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    return linear_to_heads(weight.float(), n_heads)


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
            block.attn.W_Q.copy_(_heads(get("self_attn.q_proj"), cfg.n_heads))
            block.attn.W_K.copy_(_heads(get("self_attn.k_proj"), cfg.n_kv_heads))
            block.attn.W_V.copy_(_heads(get("self_attn.v_proj"), cfg.n_kv_heads))
            block.attn.W_O.copy_(get("self_attn.o_proj").T.reshape(cfg.n_heads, cfg.d_head, cfg.d_model))
            block.mlp.gate.weight.copy_(get("mlp.gate_proj"))
            block.mlp.up.weight.copy_(get("mlp.up_proj"))
            block.mlp.down.weight.copy_(get("mlp.down_proj"))
    return model.eval()


def load_llama_gguf(path: str | Path | None = None, *, dtype: torch.dtype = torch.float32) -> Llama:
    """The Llama-family model in a GGUF file (default: the packaged SmolLM2-135M-Instruct), dequantized to float32. Lesson 5.

    ``dtype=torch.bfloat16`` casts the weights afterwards (half the memory; every product then runs in
    bfloat16), after :func:`toyattn.device.check_dtype` has made sure the CPU can compute in it; move
    the model to a GPU with ``.to("cuda")`` and check there with ``check_dtype(dtype, "cuda")``.

    The tensors are renamed to Hugging Face's names and loaded with :func:`llama_from_state_dict`.
    llama.cpp stores ``q``/``k`` rows with each head's rotary pairs interleaved; they are put back
    into the "rotate half" layout (:func:`toyattn.weights.gguf.unpermute_llama_cpp_rows`) that
    :func:`~toyattn.models.transformer.apply_rotary` and ``transformers`` use.
    """
    gg = GGUFFile(path if path is not None else smollm2_gguf_path())
    state = {name: torch.from_numpy(np.ascontiguousarray(w)).float() for name, w in llama_state_dict(gg).items()}
    meta = lambda key: gg.metadata[f"llama.{key}"]  # noqa: E731
    cfg = LlamaConfig(
        vocab_size=state["embed_tokens.weight"].shape[0], d_model=int(meta("embedding_length")),
        n_layers=int(meta("block_count")), n_heads=int(meta("attention.head_count")),
        n_kv_heads=int(meta("attention.head_count_kv")), d_mlp=int(meta("feed_forward_length")),
        rope_base=float(gg.metadata.get("llama.rope.freq_base", 10000.0)),
        eps=float(meta("attention.layer_norm_rms_epsilon")),
    )
    model = llama_from_state_dict(state, cfg)
    if dtype != torch.float32:
        model = model.to(check_dtype(dtype, "cpu"))
    return model
