"""toyattn.heads.matching: features, cost matrices and matching (greedy vs Hungarian), invariance to rotation."""

from __future__ import annotations

import pytest
import torch
from heads_helpers import fused

from toyattn.heads.fused_qkv import (
    permute_qkv,
    permute_qkv_bias,
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
    invert_permutation,
    random_permutation,
    recovery_accuracy,
)
from toyattn.heads.weights import HeadWeights, random_orthogonal, rotate_within_heads


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


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
