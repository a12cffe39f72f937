"""toyattn.heads.weights: HeadWeights read from modules and models, validated, permuted and rotated; norm folding."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from heads_helpers import mha_and_input

from toyattn.heads.matching import (
    invariant_features,
    raw_features,
    recover_permutation,
    singular_value_features,
)
from toyattn.heads.permutations import (
    random_permutation,
)
from toyattn.heads.weights import HeadWeights, fold_norm, rotate_within_heads
from toyattn.models.transformer import Transformer, TransformerConfig

rng = np.random.default_rng(0)


def test_layer_norm_folding_is_exact():
    ln = torch.nn.LayerNorm(8)
    with torch.no_grad():
        ln.weight.copy_(torch.randn(8))
        ln.bias.copy_(torch.randn(8))
    x = torch.randn(5, 8, dtype=torch.float64)
    W = rng.standard_normal((8, 3))
    lhs = ln.double()(x).detach().numpy() @ W
    std = torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + ln.eps)  # what LayerNorm divides by
    rhs = (x / std).numpy() @ fold_norm(W, ln.weight.detach().numpy(), center=True) + ln.bias.detach().numpy() @ W
    np.testing.assert_allclose(lhs, rhs, atol=1e-10)
    # Without the centring it is not the same map:
    wrong = (x / std).numpy() @ fold_norm(W, ln.weight.detach().numpy(), center=False) + ln.bias.detach().numpy() @ W
    assert not np.allclose(lhs, wrong)
    with pytest.raises(ValueError, match="gain"):
        fold_norm(W, np.ones(3), center=True)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_head_weights_validates_shapes():
    with pytest.raises(ValueError, match="W_K has shape"):
        HeadWeights(torch.zeros(2, 4, 3), torch.zeros(2, 4, 2), torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="W_O must be"):
        HeadWeights(torch.zeros(2, 4, 3), torch.zeros(2, 4, 3), torch.zeros(2, 4, 3), W_O=torch.zeros(3, 2, 4))


def test_head_weights_from_mha_match_the_module():
    mha, x = mha_and_input()
    heads = HeadWeights.from_mha(mha)
    q = x @ heads.W_Q[1] + heads.b_Q[1]
    expected = (x @ mha.in_proj_weight.T + mha.in_proj_bias)[..., 3:6]  # Q block, head 1 (d_head 3)
    torch.testing.assert_close(q, expected)


def test_course_transformer_is_invariant_under_permutation_and_rotation():

    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=11, max_len=8, d_model=24, n_layers=2, n_heads=4, positions="learned")
    model = Transformer(cfg).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))  # non-zero biases everywhere
    tokens = torch.randint(0, 11, (3, 8))
    g = gen(9)
    heads = HeadWeights.from_attention(model.blocks[1].attn)
    p = random_permutation(4, g)
    shuffled = copy.deepcopy(model)
    rotate_within_heads(heads.permute(p), g).write_to(shuffled.blocks[1].attn)
    with torch.no_grad():
        torch.testing.assert_close(shuffled(tokens), model(tokens), atol=1e-5, rtol=1e-5)
        # Q/K/V without W_O changes the function.
        broken = copy.deepcopy(model)
        HeadWeights(*(t[p] for t in (heads.W_Q, heads.W_K, heads.W_V)), W_O=heads.W_O,
                    b_Q=heads.b_Q[p], b_K=heads.b_K[p], b_V=heads.b_V[p]).write_to(broken.blocks[1].attn)
        assert (broken(tokens) - model(tokens)).abs().max() > 1e-3
    found = recover_permutation(heads, HeadWeights.from_attention(shuffled.blocks[1].attn), features="invariant")
    assert torch.equal(found, p)


def test_head_weights_from_model_reads_one_layer():

    model = Transformer(TransformerConfig(vocab_size=7, max_len=8, d_model=8, n_layers=2))
    w = HeadWeights.from_model(model, 1)
    assert w.layer == 1 and torch.equal(w.W_Q, model.blocks[1].attn.W_Q) and torch.equal(w.W_O, model.blocks[1].attn.W_O)
    assert w.map(torch.Tensor.double).layer == 1 and w.permute(torch.arange(w.n_heads)).layer == 1
    with pytest.raises(ValueError, match=r"layer must be in \[0, 2\), got 2"):
        HeadWeights.from_model(model, 2)


def test_head_weights_hold_grouped_query_layers_and_queries_and_keys_alone():
    g = gen(3)
    W_Q, W_K = torch.randn(4, 6, 2, generator=g), torch.randn(2, 6, 2, generator=g)
    grouped = HeadWeights(W_Q, W_K, layer=5)  # 4 query heads over 2 key heads, no values
    assert (grouped.n_heads, grouped.n_kv_heads, grouped.layer, grouped.W_V) == (4, 2, 5, None)
    HeadWeights(W_Q, W_K, W_K.clone(), b_Q=torch.zeros(4, 2), b_K=torch.zeros(2, 2), b_V=torch.zeros(2, 2))
    for refused in (lambda: grouped.permute(torch.tensor([1, 0, 2, 3])), lambda: rotate_within_heads(grouped),
                    lambda: raw_features(grouped)):
        with pytest.raises(ValueError, match="grouped-query attention"):
            refused()
    with pytest.raises(ValueError, match="W_K has shape"):
        HeadWeights(W_Q, torch.randn(3, 6, 2, generator=g))  # 3 key heads do not divide 4 query heads
    with pytest.raises(ValueError, match="W_V has 4 heads and W_K 2"):
        HeadWeights(W_Q, W_K, W_Q.clone())
    with pytest.raises(ValueError, match=r"b_K must be \[n_kv_heads=2"):
        HeadWeights(W_Q, W_K, b_K=torch.zeros(4, 2))
    queries_and_keys = HeadWeights(W_Q, W_Q.flip(0))
    assert raw_features(queries_and_keys).shape == (4, 24)
    assert singular_value_features(queries_and_keys).shape == (4, 4)
    with pytest.raises(ValueError, match=r"needs each head's values \(W_V\)"):
        invariant_features(queries_and_keys)
