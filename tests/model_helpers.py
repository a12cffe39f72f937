"""Small models with random weights for tests: a tiny Llama whose norm gains are away from 1, so a gain left out shows."""

from __future__ import annotations

import numpy as np
import torch

from toyattn.models.llama import Llama, LlamaConfig


def tiny_llama(n_kv_heads: int = 2, seed: int = 0, n_layers: int = 3) -> Llama:
    torch.manual_seed(seed)
    model = Llama(LlamaConfig(vocab_size=40, d_model=16, n_layers=n_layers, n_heads=4, n_kv_heads=n_kv_heads, d_mlp=24,
                              rope_base=500.0))
    for p in model.parameters():  # gains away from 1, so a gain left out shows
        p.data.normal_(0.0, 0.5)
    return model.eval()


def llama_cpp_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """What llama.cpp's converter does to q_proj/k_proj rows (rotate-half pairs -> interleaved pairs)."""
    rows, cols = w.shape
    return w.reshape(n_heads, 2, rows // n_heads // 2, cols).swapaxes(1, 2).reshape(rows, cols)
