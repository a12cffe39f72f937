"""toyattn.heads.fused_qkv: fused Q/K/V layouts, split/merge/permute, and nn.MultiheadAttention permuted jointly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from heads_helpers import fused, mha_and_input

from toyattn.heads.fused_qkv import (
    merge_out_proj,
    merge_qkv,
    permute_mha,
    permute_out_proj,
    permute_qkv,
    permute_qkv_bias,
    split_out_proj,
    split_qkv,
    split_qkv_bias,
)


def test_split_qkv_refuses_a_bool_head_count():
    with pytest.raises(TypeError, match="n_heads must be an integer, got True"):
        split_qkv(torch.zeros(4, 12), True, layout="in_out")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("layout", ["in_out", "out_in"])
@pytest.mark.parametrize(("d_in", "n_heads", "d_head"), [(12, 3, 4), (7, 2, 5), (20, 4, 3)])
def test_split_merge_round_trip_and_meaning(layout, d_in, n_heads, d_head):
    """d_in != n_heads * d_head is allowed; split heads reproduce the fused layer's q, k, v."""
    g = gen()
    w = fused(d_in, n_heads, d_head, layout, g)
    heads = split_qkv(w, n_heads, layout=layout)
    assert heads.shape == (3, n_heads, d_in, d_head)
    assert torch.equal(merge_qkv(heads, layout=layout), w)
    x = torch.randn(5, d_in, generator=g)
    full = x @ w if layout == "in_out" else x @ w.T  # [5, 3*H*dh]
    qkv = full.reshape(5, 3, n_heads, d_head)
    for which in range(3):
        for h in range(n_heads):
            torch.testing.assert_close(x @ heads[which, h], qkv[:, which, h])


def test_in_out_and_out_in_are_transposes_of_each_other():
    g = gen(1)
    w = fused(9, 3, 2, "in_out", g)
    torch.testing.assert_close(split_qkv(w, 3, layout="in_out"), split_qkv(w.T, 3, layout="out_in"))
    p = torch.tensor([2, 0, 1])
    torch.testing.assert_close(permute_qkv(w, p, 3, layout="in_out").T, permute_qkv(w.T, p, 3, layout="out_in"))


def test_the_seed_notebooks_expected_swap():
    """Two heads of width 2 with constant blocks Q0=10, Q1=20, K0=30, K1=40, V0=50, V1=60: swapping the
    heads gives [Q1 Q0 K1 K0 V1 V0]."""
    values = torch.tensor([10.0, 20, 30, 40, 50, 60]).repeat_interleave(2)
    w = values.expand(4, 12).clone()
    swapped = torch.tensor([20.0, 10, 40, 30, 60, 50]).repeat_interleave(2).expand(4, 12)
    assert torch.equal(permute_qkv(w, torch.tensor([1, 0]), 2, layout="in_out"), swapped)


@pytest.mark.parametrize("layout", ["in_out", "out_in"])
def test_out_proj_split_merge_and_permute(layout):
    g = gen(2)
    n_heads, d_head, d_out = 3, 4, 10
    w = torch.randn((n_heads * d_head, d_out) if layout == "in_out" else (d_out, n_heads * d_head), generator=g)
    blocks = split_out_proj(w, n_heads, layout=layout)
    assert blocks.shape == (n_heads, d_head, d_out)
    assert torch.equal(merge_out_proj(blocks, layout=layout), w)
    p = torch.tensor([1, 2, 0])
    permuted = split_out_proj(permute_out_proj(w, p, n_heads, layout=layout), n_heads, layout=layout)
    for i in range(n_heads):
        assert torch.equal(permuted[i], blocks[p[i]])


def test_bias_split_and_permute():
    b = torch.arange(3 * 2 * 3, dtype=torch.float32)  # Q: 0..5, K: 6..11, V: 12..17, heads of width 3
    parts = split_qkv_bias(b, 2)
    assert parts.shape == (3, 2, 3)
    assert parts[1, 1].tolist() == [9.0, 10.0, 11.0]
    assert permute_qkv_bias(b, torch.tensor([1, 0]), 2).tolist() == [3, 4, 5, 0, 1, 2, 9, 10, 11, 6, 7, 8, 15, 16, 17, 12, 13, 14]


def test_width_not_divisible_and_bad_layout():
    with pytest.raises(ValueError, match=r"not divisible by 3\*n_heads = 12"):
        split_qkv(torch.zeros(8, 30), 4, layout="in_out")
    # The head axis is dim 0 for out_in: a [8, 24] matrix fits in_out with 4 heads but not out_in.
    with pytest.raises(ValueError, match="not divisible by 3\\*n_heads"):
        split_qkv(torch.zeros(8, 24), 4, layout="out_in")
    with pytest.raises(ValueError, match="layout='in-out' is not one of"):
        split_qkv(torch.zeros(8, 24), 4, layout="in-out")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2-D matrix"):
        split_qkv(torch.zeros(2, 8, 24), 4, layout="in_out")
    with pytest.raises(ValueError, match="not divisible by n_heads = 5"):
        split_out_proj(torch.zeros(12, 8), 5, layout="in_out")
    with pytest.raises(ValueError, match="not divisible by 3\\*n_heads"):
        split_qkv_bias(torch.zeros(10), 2)
    with pytest.raises(TypeError, match="n_heads must be an integer, got 2.0"):
        split_qkv(torch.zeros(8, 24), 2.0, layout="in_out")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_heads must be a positive integer"):
        split_qkv(torch.zeros(8, 24), 0, layout="in_out")
    assert split_qkv(torch.zeros(8, 24), np.int64(4), layout="in_out").shape == (3, 4, 8, 2)  # type: ignore[arg-type]


@pytest.mark.parametrize("bias", [True, False])
def test_mha_output_is_invariant_under_the_joint_permutation(bias):
    mha, x = mha_and_input(bias)
    p = torch.tensor([2, 0, 3, 1])
    out, weights = mha(x, x, x, average_attn_weights=False)
    joint = permute_mha(mha, p)
    out_joint, weights_joint = joint(x, x, x, average_attn_weights=False)
    torch.testing.assert_close(out_joint, out, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weights_joint, weights[:, p])  # the per-head patterns move with the heads
    qkv_only = permute_mha(mha, p, out_proj=False)
    out_qkv, _ = qkv_only(x, x, x)
    assert (out_qkv - out).abs().max() > 1e-2
    # the original module is untouched
    torch.testing.assert_close(mha(x, x, x)[0], out)


def test_permute_mha_rejects_other_modules_and_bad_perm():
    mha, _ = mha_and_input()
    with pytest.raises(TypeError, match="MultiheadAttention"):
        permute_mha(torch.nn.Linear(2, 2), torch.tensor([0]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="has 3 entries but the layer has n_heads=4"):
        permute_mha(mha, torch.tensor([0, 1, 2]))
