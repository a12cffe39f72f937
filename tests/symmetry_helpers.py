"""Lesson 3's helpers shared by several test files: students' ways to score heads, and a small model."""

from __future__ import annotations

import torch

from toyattn.device import seed_everything
from toyattn.models.transformer import Transformer, TransformerConfig


def score_by_trace_linear(W_q, W_k):  # nn.Linear layout [d_head, d_model]: M = W_q^T W_k
    A, B, C = W_q @ W_q.T, W_k @ W_k.T, W_k @ W_q.T
    return 0.5 * (1 + torch.einsum("ij,ji->", C, C) / torch.einsum("ij,ji->", A, B))


def batched_scores(W_Q, W_K):
    W_K = W_K.repeat_interleave(W_Q.shape[1] // W_K.shape[1], dim=1)  # key head of each query head
    A = torch.einsum("lhdi,lhdj->lhij", W_Q, W_Q)
    B = torch.einsum("lhdi,lhdj->lhij", W_K, W_K)
    C = torch.einsum("lhdi,lhdj->lhij", W_K, W_Q)
    return 0.5 * (1 + torch.einsum("lhij,lhji->lh", C, C) / torch.einsum("lhij,lhji->lh", A, B))


def small_model(causal: bool, seed: int = 0, positions: str = "learned") -> Transformer:
    seed_everything(seed)
    cfg = TransformerConfig(vocab_size=13, max_len=8, d_model=16, n_layers=2, n_heads=2, mlp=True,
                            positions=positions, causal=causal)
    return Transformer(cfg)
