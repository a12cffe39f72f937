"""Small models with random weights for tests: a tiny Llama whose norm gains are away from 1, so a gain left out shows."""

from __future__ import annotations

import torch

from toyattn.models.llama import Llama, LlamaConfig


def tiny_llama(n_kv_heads: int = 2, seed: int = 0, n_layers: int = 3) -> Llama:
    torch.manual_seed(seed)
    model = Llama(LlamaConfig(vocab_size=40, d_model=16, n_layers=n_layers, n_heads=4, n_kv_heads=n_kv_heads, d_mlp=24,
                              rope_base=500.0))
    for p in model.parameters():  # gains away from 1, so a gain left out shows
        p.data.normal_(0.0, 0.5)
    return model.eval()
