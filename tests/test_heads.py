"""Lesson 2's heads (toyattn.heads.permutations, fused_qkv, head_weights, head_matching and the figures):
layouts, the permutation convention, matching, invariance, bad input."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from toyattn.heads.figures import cost_heatmap, head_blocks_figure, qkv_column_labels, qkv_heatmap
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
from toyattn.heads.matching import (
    cost_matrix,
    greedy_match,
    hungarian_match,
    invariant_cost_matrix,
    invariant_features,
    raw_features,
    recover_permutation,
    singular_value_features,
)
from toyattn.heads.permutations import (
    as_permutation,
    compose_permutations,
    invert_permutation,
    random_permutation,
    recovery_accuracy,
)
from toyattn.heads.weights import HeadWeights, random_orthogonal, rotate_within_heads
from toyattn.plotting import discrete_colorscale


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def fused(d_in: int, n_heads: int, d_head: int, layout: str, g: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    shape = (d_in, 3 * n_heads * d_head) if layout == "in_out" else (3 * n_heads * d_head, d_in)
    return torch.randn(shape, generator=g, dtype=dtype)


# ---------------------------------------------------------------- layouts


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


# ---------------------------------------------------------------- permutations


def test_convention_inverse_and_compose():
    g = gen(3)
    w = fused(8, 5, 2, "in_out", g)
    p1, p2 = random_permutation(5, g), random_permutation(5, g)
    heads = split_qkv(w, 5, layout="in_out")
    moved = split_qkv(permute_qkv(w, p1, 5, layout="in_out"), 5, layout="in_out")
    for i in range(5):
        assert torch.equal(moved[:, i], heads[:, p1[i]])  # new head i = old head perm[i]
    back = permute_qkv(permute_qkv(w, p1, 5, layout="in_out"), invert_permutation(p1), 5, layout="in_out")
    assert torch.equal(back, w)
    two_steps = permute_qkv(permute_qkv(w, p1, 5, layout="in_out"), p2, 5, layout="in_out")
    assert torch.equal(two_steps, permute_qkv(w, compose_permutations(p1, p2), 5, layout="in_out"))
    assert torch.equal(compose_permutations(p1, invert_permutation(p1)), torch.arange(5))


def test_invert_is_not_the_identity_on_a_three_cycle():
    assert invert_permutation(torch.tensor([1, 2, 0])).tolist() == [2, 0, 1]


@pytest.mark.parametrize(
    ("perm", "n_heads", "error", "match"),
    [
        ([0, 0, 1], 3, ValueError, "appear more than once"),
        ([0, 1], 3, ValueError, "has 2 entries but the layer has n_heads=3"),
        ([0, 1, 2, 3], 3, ValueError, "has 4 entries"),
        ([0, 1, 3], 3, ValueError, "outside the head range 0..2"),
        ([0, -1, 1], 3, ValueError, "outside the head range"),
        (torch.tensor([0.0, 2.0, 1.0]), 3, TypeError, "integer head indices"),
        (np.array([0.0, 2.0, 1.0]), 3, TypeError, "integer head indices"),
        (torch.tensor([True, False, True]), 3, TypeError, "integer head indices"),
        (torch.tensor([[0, 1, 2]]), 3, ValueError, "must be 1-D"),
    ],
)
def test_bad_permutations_are_rejected_clearly(perm, n_heads, error, match):
    with pytest.raises(error, match=match):
        as_permutation(perm, n_heads)
    w = fused(6, n_heads, 2, "in_out", gen())
    with pytest.raises(error, match=match):
        permute_qkv(w, perm, n_heads, layout="in_out")


def test_good_permutations_in_any_integer_container():
    for perm in ([2, 0, 1], (2, 0, 1), np.array([2, 0, 1]), torch.tensor([2, 0, 1], dtype=torch.int32)):
        out = as_permutation(perm, 3)
        assert out.dtype == torch.int64 and out.tolist() == [2, 0, 1]


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


def test_reference_client_shape_mismatch():
    g = gen(4)
    a = HeadWeights.from_fused(fused(8, 4, 2, "in_out", g), 4, layout="in_out")
    b = HeadWeights.from_fused(fused(8, 2, 4, "in_out", g), 2, layout="in_out")
    c = HeadWeights.from_fused(fused(9, 4, 2, "in_out", g), 4, layout="in_out")
    for other in (b, c):
        with pytest.raises(ValueError, match="do not match"):
            recover_permutation(a, other)
        with pytest.raises(ValueError, match="do not match"):
            recover_permutation(a, other, features="invariant")
    with pytest.raises(ValueError, match="do not match"):
        cost_matrix(torch.zeros(4, 6), torch.zeros(4, 7))


def test_head_weights_validates_shapes():
    with pytest.raises(ValueError, match="W_K has shape"):
        HeadWeights(torch.zeros(2, 4, 3), torch.zeros(2, 4, 2), torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="W_O must be"):
        HeadWeights(torch.zeros(2, 4, 3), torch.zeros(2, 4, 3), torch.zeros(2, 4, 3), W_O=torch.zeros(3, 2, 4))


# ---------------------------------------------------------------- matching


@pytest.mark.parametrize("n_heads", [1, 2, 7, 32, 128])
@pytest.mark.parametrize("layout", ["in_out", "out_in"])
def test_exact_recovery_on_random_permutations(n_heads, layout):
    g = gen(n_heads)
    d_head, d_in = 4, 24
    w = fused(d_in, n_heads, d_head, layout, g)
    b = torch.randn(3 * n_heads * d_head, generator=g)
    ref = HeadWeights.from_fused(w, n_heads, layout=layout, qkv_bias=b)
    for _ in range(3):
        p = random_permutation(n_heads, g)
        client = HeadWeights.from_fused(
            permute_qkv(w, p, n_heads, layout=layout), n_heads, layout=layout, qkv_bias=permute_qkv_bias(b, p, n_heads)
        )
        for features in ("raw", "invariant"):
            for method in ("hungarian", "greedy"):
                assert torch.equal(recover_permutation(ref, client, features=features, method=method), p)
        aligned = client.permute(invert_permutation(p))
        assert torch.equal(aligned.W_Q, ref.W_Q) and torch.equal(aligned.b_V, ref.b_V)


def test_greedy_fails_where_hungarian_succeeds():
    cost = torch.tensor([[1.0, 2.0], [0.0, 10.0]])
    assert greedy_match(cost).tolist() == [0, 1]  # total 11
    assert hungarian_match(cost).tolist() == [1, 0]  # total 2
    with pytest.raises(ValueError, match="square"):
        hungarian_match(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="NaN or inf"):
        greedy_match(torch.tensor([[0.0, float("nan")], [1.0, 0.0]]))


def test_hungarian_is_optimal_on_random_costs():
    g = gen(5)
    for _ in range(20):
        cost = torch.rand(6, 6, generator=g)
        total = cost[torch.arange(6), hungarian_match(cost)].sum()
        greedy_total = cost[torch.arange(6), greedy_match(cost)].sum()
        assert total <= greedy_total + 1e-12
        # Brute force over all 720 permutations of 6.
        import itertools

        best = min(cost[torch.arange(6), torch.tensor(q)].sum() for q in itertools.permutations(range(6)))
        assert torch.isclose(total, best)


def test_cost_matrix_metrics():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(cost_matrix(a, b, "l2"), torch.tensor([[2.0, 2**0.5], [13**0.5, 1.0]]))
    torch.testing.assert_close(cost_matrix(a, b, "cosine"), torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="metric='l1'"):
        cost_matrix(a, b, "l1")  # type: ignore[arg-type]


def test_recovery_accuracy():
    assert recovery_accuracy(torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 3, 2])) == 0.5


# ---------------------------------------------------------------- invariant features


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("with_out", [False, True])
def test_invariant_features_survive_rotation_raw_do_not(with_bias, with_out):
    g = gen(6)
    n_heads, d_in, d_head = 6, 10, 4
    w = fused(d_in, n_heads, d_head, "out_in", g, dtype=torch.float64)
    b = torch.randn(3 * n_heads * d_head, generator=g, dtype=torch.float64) if with_bias else None
    o = torch.randn(d_in, n_heads * d_head, generator=g, dtype=torch.float64) if with_out else None
    ref = HeadWeights.from_fused(w, n_heads, layout="out_in", qkv_bias=b, out_weight=o)
    rotated = rotate_within_heads(ref, g)
    assert not torch.allclose(raw_features(rotated), raw_features(ref))
    torch.testing.assert_close(invariant_features(rotated), invariant_features(ref))
    p = random_permutation(n_heads, g)
    client = rotate_within_heads(ref.permute(p), g)
    assert torch.equal(recover_permutation(ref, client, features="invariant"), p)
    for metric in ("l2", "cosine"):
        explicit = cost_matrix(invariant_features(client), invariant_features(ref), metric)
        # The Gram route subtracts large inner products: agreement up to a tiny fraction of the scale.
        torch.testing.assert_close(invariant_cost_matrix(client, ref, metric), explicit, rtol=1e-6, atol=1e-6 * float(explicit.max()))


def test_singular_values_survive_rotation_but_not_see_input_directions():
    g = gen(11)
    ref = HeadWeights(*(torch.randn(5, 12, 3, generator=g, dtype=torch.float64) for _ in range(3)),
                      W_O=torch.randn(5, 3, 12, generator=g, dtype=torch.float64))
    torch.testing.assert_close(singular_value_features(rotate_within_heads(ref, g)), singular_value_features(ref))
    P = random_orthogonal(12, 1, g, dtype=torch.float64)[0]
    moved = HeadWeights(P @ ref.W_Q, P @ ref.W_K, P @ ref.W_V, W_O=ref.W_O @ P)  # reads other input directions
    torch.testing.assert_close(singular_value_features(moved), singular_value_features(ref))
    assert torch.diagonal(invariant_cost_matrix(moved, ref)).min() > 1.0  # W_QK / W_OV see the difference


def test_raw_matching_breaks_under_rotation():
    g = gen(7)
    n_heads = 16
    ref = HeadWeights.from_fused(fused(32, n_heads, 8, "in_out", g), n_heads, layout="in_out")
    p = random_permutation(n_heads, g)
    client = rotate_within_heads(ref.permute(p), g)
    assert recovery_accuracy(recover_permutation(ref, client, features="raw"), p) < 0.5
    assert recovery_accuracy(recover_permutation(ref, client, features="invariant"), p) == 1.0


def test_noise_hurts_greedy_at_least_as_much_as_hungarian():
    g = gen(8)
    n_heads, trials = 24, 6
    greedy_acc, hung_acc = 0.0, 0.0
    for _ in range(trials):
        ref = HeadWeights.from_fused(fused(8, n_heads, 2, "in_out", g), n_heads, layout="in_out")
        p = random_permutation(n_heads, g)
        client = ref.permute(p).add_noise(2.0, g)  # noise twice the weights' std: still far fewer errors with Hungarian
        greedy_acc += recovery_accuracy(recover_permutation(ref, client, method="greedy"), p) / trials
        hung_acc += recovery_accuracy(recover_permutation(ref, client, method="hungarian"), p) / trials
    assert hung_acc > greedy_acc
    assert 0.1 < greedy_acc < 1.0  # the noise level is in the interesting range


# ---------------------------------------------------------------- function invariance


def mha_and_input(bias: bool = True):
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(embed_dim=12, num_heads=4, bias=bias, batch_first=True)
    with torch.no_grad():  # nn.MultiheadAttention starts with zero biases; make them matter
        if bias:
            mha.in_proj_bias.normal_()
    x = torch.randn(2, 5, 12)
    return mha, x


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


def test_head_weights_from_mha_match_the_module():
    mha, x = mha_and_input()
    heads = HeadWeights.from_mha(mha)
    q = x @ heads.W_Q[1] + heads.b_Q[1]
    expected = (x @ mha.in_proj_weight.T + mha.in_proj_bias)[..., 3:6]  # Q block, head 1 (d_head 3)
    torch.testing.assert_close(q, expected)


def test_course_transformer_is_invariant_under_permutation_and_rotation():
    from toyattn.models.transformer import Transformer, TransformerConfig

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
    from toyattn.models.transformer import Transformer, TransformerConfig

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


# ---------------------------------------------------------------- plots


def test_plots_have_labels_and_discrete_colours():
    scale = discrete_colorscale(3)
    assert len(scale) == 6 and scale[0][1] == scale[1][1] and scale[1][1] != scale[2][1]
    assert qkv_column_labels(2, 2)[:3] == ["Q h0.0", "Q h0.1", "Q h1.0"]
    w = torch.arange(3 * 2 * 2, dtype=torch.float32).repeat(4, 1) % 4
    fig = qkv_heatmap(w, 2, layout="in_out", title="fused")
    assert fig.layout.title.text == "fused"
    assert list(fig.data[0].x)[-1].startswith("V h1.1")
    fig_out_in = qkv_heatmap(w.T, 2, layout="out_in", title="same")  # drawn the same way whatever the layout
    np.testing.assert_array_equal(np.asarray(fig_out_in.data[0].z), np.asarray(fig.data[0].z))
    heads = HeadWeights.from_fused(w, 2, layout="in_out")
    grid = head_blocks_figure(heads, title="blocks")
    assert len(grid.data) == 6
    cost = torch.rand(3, 3)
    fig_cost = cost_heatmap(cost, title="cost", matched=torch.tensor([2, 0, 1]))
    assert len(fig_cost.layout.shapes) == 3


# ---------------------------------------------------------------- a real pretrained layer (if installed)


@pytest.mark.pretrained
def test_minilm_layer_as_mha_matches_transformers_and_recovers_its_heads():
    from pretrained_helpers import pretrained

    from toyattn.weights.bert import bert_attention_as_mha
    from toyattn.weights.pretrained import minilm_path

    path = pretrained(minilm_path)
    mha = bert_attention_as_mha(path, 2, n_heads=12)
    g = gen(10)
    x = torch.randn(2, 6, 384, generator=g)
    transformers = pytest.importorskip("transformers")
    bert = transformers.AutoModel.from_pretrained(str(path.parent)).eval()
    attention = bert.encoder.layer[2].attention
    with torch.no_grad():
        expected = attention.output.dense(attention.self(x)[0])
        out, _ = mha(x, x, x)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
        p = random_permutation(12, g)
        torch.testing.assert_close(permute_mha(mha, p)(x, x, x)[0], out, atol=1e-5, rtol=1e-4)
    ref = HeadWeights.from_mha(mha)
    client = rotate_within_heads(ref.permute(p), g)
    assert torch.equal(recover_permutation(ref, client, features="invariant"), p)
    assert recovery_accuracy(recover_permutation(ref, client, features="raw"), p) < 1.0
    with pytest.raises(ValueError, match="layer 9 is out of range"):
        bert_attention_as_mha(path, 9, n_heads=12)


def test_benchmark_quick_mode_prints_one_table(capsys):
    import runpy
    from pathlib import Path

    bench = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "bench_heads.py"))
    bench["main"](["--quick", "--device", "cpu"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.strip().startswith(("12 ", "32 ", "128 "))]
    assert len(rows) == 6, out  # 3 head counts x (raw, invariant)
    assert "invariant cost matrix takes" in out and "Gram blocks" in out
