"""Loading a Llama-family model's weights (a GGUF file, or a Hugging Face state dict) into the course's Llama, and transformers' reference.

Taught in lesson 5 (``notebooks/05_induction_circuits``, section 11), which reads SmolLM2-135M-Instruct
from the GGUF file the course ships. The model itself is :mod:`toyattn.models.llama`; what llama.cpp
does to the tensors is undone by :mod:`toyattn.weights.gguf`. Lesson 6 (``notebooks/06_real_model_induction``)
holds its own build of the model to ``transformers``' ``LlamaForCausalLM`` read from the same file
(:func:`load_transformers_llama`), and tokenizes with the tokenizer stored in it (:func:`load_tokenizer`),
both offline.
"""

from __future__ import annotations

import os
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


# ---------------------------------------------------------------------------------------------
# transformers' reading of the same file (lesson 6): the tokenizer and the reference model
# ---------------------------------------------------------------------------------------------


def _gguf(path: str | Path | None) -> Path:
    path = Path(path) if path is not None else smollm2_gguf_path()
    if not path.is_file():
        raise FileNotFoundError(f"No GGUF file at {path}; run `make pretrained` for the course's SmolLM2.")
    return path


def _offline() -> None:
    # The course runs without a network: never let transformers try the hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def load_tokenizer(path: str | Path | None = None):
    """The tokenizer stored in the GGUF file (default: the course's SmolLM2), built by ``transformers`` offline."""
    _offline()
    from transformers import AutoTokenizer  # optional (the models extra): imported only when asked for

    path = _gguf(path)
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)


def load_transformers_llama(path: str | Path | None = None):
    """``transformers``' ``LlamaForCausalLM`` built from the GGUF file, float32, in eval mode (about 10 s on a CPU).

    ``transformers`` dequantizes the file itself and undoes llama.cpp's q/k row order, independently of
    the course's loader: the reference that lesson 6 holds its logits to. Needs ``accelerate``.
    """
    _offline()
    from transformers import AutoModelForCausalLM  # optional (the models extra): imported only when asked for
    from transformers.utils import logging as hf_logging

    path = _gguf(path)
    # Its progress bars (one of them from a plain tqdm inside the GGUF reader) would fill a notebook's output.
    hf_logging.disable_progress_bar()
    reader = _gguf_reader_module()
    bar = getattr(reader, "tqdm", None) if reader is not None else None
    if bar is not None:
        reader.tqdm = lambda items, *args, **kwargs: items
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32,
                                                     local_files_only=True)
    except ValueError as err:
        if "accelerate" in str(err):
            raise ImportError("transformers needs `accelerate` to read a GGUF file: "
                              "pip install -e '.[models]' (or `make install`).") from None
        raise
    finally:
        hf_logging.enable_progress_bar()
        if bar is not None:
            reader.tqdm = bar
    return model.eval()


def _gguf_reader_module():
    """``transformers``' GGUF reading module, or None where a version keeps it elsewhere (then its bar shows)."""
    try:
        from transformers import modeling_gguf_pytorch_utils
    except ImportError:
        return None
    return modeling_gguf_pytorch_utils
