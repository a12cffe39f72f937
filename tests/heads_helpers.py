"""Lesson 2's helpers shared by several test files: fused weights, and students' ways to match heads (right and wrong)."""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment


def invert_permutation(perm):
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(len(perm))
    return inv


def head_features(qkv, n_heads):
    d_in = qkv.shape[0]
    d_head = qkv.shape[1] // (3 * n_heads)
    return qkv.reshape(d_in, 3, n_heads, d_head).permute(2, 1, 0, 3).reshape(n_heads, -1)


def optimal_match(cost):
    rows, cols = linear_sum_assignment(cost.numpy())
    return torch.as_tensor(cols)


def greedy(cost):
    taken, out = set(), []
    for row in cost:
        j = min((j for j in range(len(row)) if j not in taken), key=lambda j: float(row[j]))
        taken.add(j)
        out.append(j)
    return torch.tensor(out)


def recover_permutation(ref_qkv, client_qkv, n_heads):
    cost = torch.cdist(head_features(client_qkv, n_heads), head_features(ref_qkv, n_heads))
    return optimal_match(cost)


def global_greedy_recover(ref_qkv, client_qkv, n_heads):
    cost = torch.cdist(head_features(client_qkv, n_heads), head_features(ref_qkv, n_heads))
    out = torch.full((n_heads,), -1)
    for flat in cost.flatten().argsort():
        i, j = divmod(int(flat), n_heads)
        if out[i] < 0 and j not in out:
            out[i] = j
    return out


def exact_lookup(ref_qkv, client_qkv, n_heads):  # finds exact copies; 0 where there is none
    fr, fc = head_features(ref_qkv, n_heads), head_features(client_qkv, n_heads)
    return (fc[:, None] == fr[None]).all(-1).long().argmax(dim=1)


def q_only(ref_qkv, client_qkv, n_heads):
    w = ref_qkv.shape[1] // 3
    return recover_permutation(ref_qkv[:, :w].repeat(1, 3), client_qkv[:, :w].repeat(1, 3), n_heads)


def qk_only(ref_qkv, client_qkv, n_heads):
    w = ref_qkv.shape[1] // 3
    return recover_permutation(torch.cat([ref_qkv[:, : 2 * w], ref_qkv[:, :w]], 1),
                               torch.cat([client_qkv[:, : 2 * w], client_qkv[:, :w]], 1), n_heads)


def fused(d_in: int, n_heads: int, d_head: int, layout: str, g: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    shape = (d_in, 3 * n_heads * d_head) if layout == "in_out" else (3 * n_heads * d_head, d_in)
    return torch.randn(shape, generator=g, dtype=dtype)


def mha_and_input(bias: bool = True):
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(embed_dim=12, num_heads=4, bias=bias, batch_first=True)
    with torch.no_grad():  # nn.MultiheadAttention starts with zero biases; make them matter
        if bias:
            mha.in_proj_bias.normal_()
    x = torch.randn(2, 5, 12)
    return mha, x
