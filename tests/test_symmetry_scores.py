"""Symmetry and directionality scores (toyattn.symmetry.scores, lesson 3): definition vs trace form,
constructions, GQA, input scaling, bad input, and the row/column norms of the packaged checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pretrained_helpers import pretrained

from toyattn.symmetry.scores import (
    directionality_score,
    from_signed,
    kv_head_for_query,
    layer_bilinear,
    layer_symmetry_score,
    matrix_symmetry_score,
    median,
    random_head,
    repeat_kv_heads,
    skew_symmetric_key,
    symmetric_key,
    symmetry_score,
    symmetry_score_definition,
    to_signed,
)
from toyattn.weights.checkpoints import iter_qk_layers
from toyattn.weights.pretrained import gemma3_gguf_path, minilm_path, smollm2_gguf_path


def test_kv_head_for_query_takes_numpy_integers():
    assert kv_head_for_query(np.int64(4), 2).tolist() == [0, 0, 1, 1]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape", [(8, 2), (33, 5), (3, 7, 20, 4), (2, 2, 2, 64, 16), (1, 1)])
def test_trace_form_equals_definition_on_random_shapes(shape):
    g = gen(sum(shape))
    W_q = torch.randn(*shape, generator=g, dtype=torch.float64)
    W_k = torch.randn(*shape, generator=g, dtype=torch.float64)
    fast, slow = symmetry_score(W_q, W_k), symmetry_score_definition(W_q, W_k)
    assert fast.shape == shape[:-2]
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-6)


def test_float32_input_keeps_six_digits_at_a_realistic_size():
    g = gen(1)
    W_q = torch.randn(4, 768, 64, generator=g)
    W_k = W_q + torch.randn(4, 768, 64, generator=g)  # a correlated head, r well above 0.5
    fast = symmetry_score(W_q, W_k)  # float32 Grams, float64 traces
    exact = symmetry_score_definition(W_q.double(), W_k.double())
    assert fast.dtype == torch.float64
    torch.testing.assert_close(fast, exact, rtol=0, atol=1e-6)
    assert float(exact.min()) > 0.6


def test_constructions_score_one_and_zero():
    g = gen(2)
    for d_model, d_head in [(6, 2), (16, 3), (64, 8)]:
        W_q = torch.randn(d_model, d_head, generator=g, dtype=torch.float64)
        assert float(symmetry_score(W_q, W_q)) == pytest.approx(1.0, abs=1e-12)
        assert float(symmetry_score(W_q, symmetric_key(W_q, generator=g))) == pytest.approx(1.0, abs=1e-10)
        W_k = skew_symmetric_key(W_q, generator=g)
        assert float(symmetry_score(W_q, W_k)) == pytest.approx(0.0, abs=1e-10)
        assert float(symmetry_score(W_q, W_k, convention="s")) == pytest.approx(-1.0, abs=1e-10)
        M = W_q @ W_k.T
        assert float((M + M.T).abs().max()) < 1e-10 < float(M.abs().max())


def test_random_heads_concentrate_near_one_half():
    W_q, W_k = random_head(256, 64, generator=gen(3), n=40)
    r = symmetry_score(W_q, W_k)
    assert abs(float(r.mean()) - 0.5) < 0.01
    assert float(r.std()) < 0.03
    assert 0.0 < float(r.min()) and float(r.max()) < 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_heads_have_the_stated_spread_and_offset(seed):
    """Lesson 3, section 2 and random_head's docstring: std about 0.7 / d, mean about 0.5 + 1 / (2 d),
    and the head width d_head hardly changes the spread."""
    d = 256
    r = symmetry_score(*random_head(d, 4, generator=gen(100 + seed), n=4000)).double()
    assert abs(float(r.std()) / (0.7 / d) - 1) < 0.1, float(r.std())
    assert abs(float(r.mean() - 0.5) / (1 / (2 * d)) - 1) < 0.25, float(r.mean() - 0.5)
    stds = [float(symmetry_score(*random_head(64, dh, generator=gen(200 + seed + dh), n=2000)).double().std())
            for dh in (1, 4, 16, 64)]
    assert all(abs(s / (0.7 / 64) - 1) < 0.15 for s in stds), stds


def test_d4_random_heads_reach_down_to_about_0_2():
    """Lesson 3, section 2: at d = 4 random heads land anywhere from about 0.2 to 1."""
    r = symmetry_score(*random_head(4, 4, generator=gen(7), n=20000)).double()
    assert 0.2 < float(torch.quantile(r, 0.01)) < 0.3 and float(r.max()) > 0.99, (float(torch.quantile(r, 0.01)), float(r.max()))


def test_a_shared_input_scaling_moves_independent_heads_off_one_half():
    """Lesson 3, section 2's caveat: independent W_q, W_k whose rows share a scaling (8 of 384 input
    dimensions 8 times larger) score about 0.52, with nothing reciprocal in them."""
    g = gen(11)
    scale = torch.ones(384, 1)
    scale[:8] = 8.0
    W_q, W_k = (scale * w for w in random_head(384, 32, generator=g, n=200))
    assert 0.51 < float(symmetry_score(W_q, W_k).mean()) < 0.54


def test_signed_convention_is_trace_of_m_squared_over_norm():
    g = gen(4)
    W_q, W_k = torch.randn(2, 12, 3, generator=g, dtype=torch.float64), torch.randn(2, 12, 3, generator=g, dtype=torch.float64)
    M = W_q @ W_k.transpose(-1, -2)
    s_direct = torch.einsum("hij,hji->h", M, M) / M.pow(2).sum(dim=(-1, -2))
    s = symmetry_score(W_q, W_k, convention="s")
    torch.testing.assert_close(s, s_direct)
    torch.testing.assert_close(to_signed(symmetry_score(W_q, W_k)), s)
    torch.testing.assert_close(from_signed(s), symmetry_score(W_q, W_k))


def test_gqa_mapping_and_scores():
    assert kv_head_for_query(8, 2).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert kv_head_for_query(9, 3).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert kv_head_for_query(4, 4).tolist() == [0, 1, 2, 3]
    g = gen(5)
    W_Q = torch.randn(3, 6, 20, 4, generator=g, dtype=torch.float64)  # 3 layers, 6 query heads
    W_K = torch.randn(3, 2, 20, 4, generator=g, dtype=torch.float64)  # 2 key heads
    got = symmetry_score(W_Q, W_K)
    assert got.shape == (3, 6)
    for layer in range(3):
        for h in range(6):
            expected = symmetry_score_definition(W_Q[layer, h], W_K[layer, h // 3])
            assert float(got[layer, h]) == pytest.approx(float(expected), abs=1e-10)
    torch.testing.assert_close(got, symmetry_score(W_Q, repeat_kv_heads(W_K, 6)))
    torch.testing.assert_close(symmetry_score_definition(W_Q, W_K), got)


def test_batched_equals_loop_over_layers_and_heads():
    g = gen(6)
    W_Q = torch.randn(4, 3, 30, 5, generator=g)
    W_K = torch.randn(4, 3, 30, 5, generator=g)
    batched = symmetry_score(W_Q, W_K)
    loop = torch.tensor([[float(symmetry_score(W_Q[i, j], W_K[i, j])) for j in range(3)] for i in range(4)])
    torch.testing.assert_close(batched, loop.double())


def test_layer_bilinear_is_the_linear_weights_product_and_scores_it():
    g = gen(7)
    n_heads, n_kv, d, dh = 4, 2, 16, 3
    Wq_lin = torch.randn(n_heads * dh, d, generator=g, dtype=torch.float64)  # nn.Linear layout [out, in]
    Wk_lin = torch.randn(n_kv * dh, d, generator=g, dtype=torch.float64)
    W_Q = Wq_lin.reshape(n_heads, dh, d).transpose(1, 2)
    W_K = Wk_lin.reshape(n_kv, dh, d).transpose(1, 2)
    Wk_rep = Wk_lin.reshape(n_kv, 1, dh, d).expand(n_kv, n_heads // n_kv, dh, d).reshape(n_heads * dh, d)
    M = layer_bilinear(W_Q, W_K)
    torch.testing.assert_close(M, Wq_lin.T @ Wk_rep)
    torch.testing.assert_close(layer_symmetry_score(W_Q, W_K), matrix_symmetry_score(M))
    # A layer whose every head is symmetric is symmetric as a whole.
    assert float(layer_symmetry_score(W_Q, W_Q)) == pytest.approx(1.0)


def test_directionality_sign_follows_the_published_convention():
    g = gen(8)
    base = torch.randn(50, 50, generator=g, dtype=torch.float64)
    col_heavy = base.clone()
    col_heavy[:, 3] *= 20  # one key-side direction every query looks at
    row_heavy = base.clone()
    row_heavy[7, :] *= 20
    assert float(directionality_score(col_heavy)) < -0.5
    assert float(directionality_score(row_heavy)) > 0.5
    sym = base + base.T  # row norms == column norms
    assert float(directionality_score(sym)) == pytest.approx(0.0, abs=1e-12)
    assert float(directionality_score(torch.ones(5, 5))) == 0.0  # no norm above threshold: 0, not 0/0
    batch = directionality_score(torch.stack([col_heavy, row_heavy]))
    assert batch.shape == (2,) and float(batch[0]) < 0 < float(batch[1])


def test_bad_inputs_get_clear_errors():
    W = torch.randn(10, 4)
    with pytest.raises(ValueError, match="last two axes"):
        symmetry_score(W, torch.randn(10, 5))
    with pytest.raises(ValueError, match="last two axes"):
        symmetry_score(W, W.T)
    with pytest.raises(ValueError, match="multiple of the number of key heads"):
        symmetry_score(torch.randn(6, 10, 4), torch.randn(4, 10, 4))
    with pytest.raises(ValueError, match="all zeros.*0/0"):
        symmetry_score(torch.zeros(10, 4), W)
    with pytest.raises(ValueError, match=r"index \(1, 0\).*0/0"):
        W_Q = torch.randn(2, 2, 10, 4)
        W_Q[1, 0] = 0
        symmetry_score(W_Q, torch.randn(2, 2, 10, 4))
    with pytest.raises(ValueError, match="non-finite"):
        symmetry_score(torch.full((10, 4), float("nan")), W)
    with pytest.raises(ValueError, match="non-finite"):
        symmetry_score_definition(W, torch.full((10, 4), float("inf")))
    with pytest.raises(TypeError, match="floating-point"):
        symmetry_score(torch.ones(10, 4, dtype=torch.long), W)
    with pytest.raises(TypeError, match="torch.Tensor or NumPy"):
        symmetry_score([[1.0]], W)
    with pytest.raises(ValueError, match="convention"):
        symmetry_score(W, W, convention="signed")
    with pytest.raises(ValueError, match="square"):
        matrix_symmetry_score(torch.randn(3, 4))
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        kv_head_for_query(6, 4)
    with pytest.raises(ValueError, match="different numbers of axes"):
        symmetry_score(torch.randn(2, 10, 4), W)


def test_numpy_input_works():
    W_q, W_k = random_head(12, 3, generator=gen(9))
    assert float(symmetry_score(W_q.numpy(), W_k.numpy())) == pytest.approx(float(symmetry_score(W_q, W_k)))


def test_layer_score_is_the_norm_weighted_mean_of_head_scores_without_cross_terms():
    # Lesson 3, section 4: heads in separate directions -> layer s = sum ||M_h||^2 s_h / sum ||M_h||^2.
    g = gen(4)
    W_Q, W_K = torch.zeros(3, 60, 5, dtype=torch.float64), torch.zeros(3, 60, 5, dtype=torch.float64)
    for h, scale in enumerate((1.0, 2.0, 0.5)):
        W_Q[h, 20 * h : 20 * h + 20] = scale * torch.randn(20, 5, generator=g, dtype=torch.float64)
        W_K[h, 20 * h : 20 * h + 20] = scale * torch.randn(20, 5, generator=g, dtype=torch.float64)
    W_K[2, 40:] = W_Q[2, 40:]  # one symmetric head, so the head scores differ clearly
    s_heads = to_signed(symmetry_score(W_Q, W_K))
    norms2 = (W_Q @ W_K.transpose(-1, -2)).pow(2).sum(dim=(-2, -1))
    expected = float((norms2 * s_heads).sum() / norms2.sum())
    assert float(to_signed(layer_symmetry_score(W_Q, W_K))) == pytest.approx(expected, abs=1e-12)
    assert abs(expected - float(s_heads.mean())) > 0.05  # and that is not the plain mean


def test_heads_m_and_m_transposed_make_a_symmetric_layer():
    # Lesson 3, section 4: cross-head structure can make a layer symmetric when no head is.
    W_q, W_k = random_head(64, 8, generator=gen(5))
    W_Q, W_K = torch.stack([W_q, W_k]), torch.stack([W_k, W_q])  # M_2 = M_1^T
    assert float(to_signed(layer_symmetry_score(W_Q, W_K))) == pytest.approx(1.0, abs=1e-6)
    assert to_signed(symmetry_score(W_Q, W_K)).abs().max() < 0.2  # each head near s = 0


def test_median_is_the_ordinary_median():
    # Even count: the mean of the two middle values (the published convention), not torch.median's lower one.
    six = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7, 0.2], dtype=torch.float64)
    assert median(six) == pytest.approx(0.4)
    assert float(six.median()) == pytest.approx(0.3)  # what torch.median would have said
    assert median(torch.tensor([3.0, 1.0, 2.0])) == 2.0
    assert median([[1.0, 2.0], [3.0, 4.0]]) == 2.5  # all values, any shape
    with pytest.raises(ValueError, match="at least one"):
        median(torch.tensor([]))


@pytest.mark.gpu
def test_scores_on_gpu_match_cpu():
    W_Q, W_K = random_head(64, 8, generator=gen(10), n=6)
    gpu = symmetry_score(W_Q.cuda(), W_K.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), symmetry_score(W_Q, W_K), rtol=0, atol=1e-6)


def test_bfloat16_scores_stay_close_to_float32_on_random_heads():
    """bfloat16 Gram products (8 significant bits) with float64 sums: random heads' r within 1e-2 of float32."""
    g = torch.Generator().manual_seed(0)
    W_q, W_k = torch.randn(2, 6, 96, 16, generator=g)
    exact = symmetry_score(W_q, W_k)
    low = symmetry_score(W_q, W_k, dtype=torch.bfloat16)
    assert low.dtype == torch.float64 and (low - exact).abs().max() < 1e-2
    assert not torch.equal(low, exact)  # the products really ran in bfloat16


def middle_layer_norms(locate):
    layers = iter_qk_layers(pretrained(locate))
    layer = layers[layers.n_layers // 2]
    M = layer_bilinear(layer.W_Q.double(), layer.W_K.double())
    return M.norm(dim=1), M.norm(dim=0), float(directionality_score(M))


def spread(norms: torch.Tensor) -> tuple[float, float]:
    return float(norms.std() / norms.mean()), float(norms.max() / norms.mean())


@pytest.mark.pretrained
@pytest.mark.parametrize("locate", [smollm2_gguf_path, gemma3_gguf_path])
def test_decoder_middle_layers_have_heavier_column_tails(locate):
    """Section 5b: in a decoder's middle layer the column norms spread wider, with a longer tail, than the rows."""
    rows, cols, direction = middle_layer_norms(locate)
    (row_std, row_max), (col_std, col_max) = spread(rows), spread(cols)
    assert col_std > row_std and col_max > row_max, (row_std, row_max, col_std, col_max)
    assert direction < -0.2


@pytest.mark.pretrained
def test_encoder_middle_layer_is_nearly_balanced():
    """Section 5b: MiniLM's middle layer: columns only a little wider than rows, directionality near 0."""
    rows, cols, direction = middle_layer_norms(minilm_path)
    (row_std, _), (col_std, _) = spread(rows), spread(cols)
    assert abs(direction) < 0.15
    assert row_std < col_std < 1.5 * row_std


@pytest.fixture
def heads():
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 64, 8, generator=g), torch.randn(4, 64, 8, generator=g)


@pytest.fixture
def big_heads():  # large enough for the CPU's head-by-head path
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 1024, 128, generator=g), torch.randn(2, 1024, 128, generator=g)


@pytest.mark.parametrize("dtype", [torch.int32, torch.bool, "float64", float])
def test_non_float_dtype_is_a_type_error(heads, dtype):
    with pytest.raises(TypeError, match="dtype must be"):
        symmetry_score(*heads, dtype=dtype)


@pytest.mark.parametrize("fixture", ["heads", "big_heads"])
@pytest.mark.parametrize("scale", [1e-11, 1e-12, 1e-20, 1e15, 1e30])
def test_scale_does_not_change_float32_scores(request, fixture, scale):
    W_q, W_k = request.getfixturevalue(fixture)
    exact = symmetry_score(W_q.double(), W_k.double())
    got = symmetry_score(W_q * scale, W_k * scale)
    torch.testing.assert_close(got, exact, rtol=0, atol=1e-6)


@pytest.mark.parametrize("fixture", ["heads", "big_heads"])
@pytest.mark.parametrize("scale", [1e-12, 1e15])
def test_one_tiny_or_huge_head_among_ordinary_ones(request, fixture, scale):
    # The rescaling is per head: one shared factor for the whole layer would leave this head out of range.
    W_q, W_k = (w.clone() for w in request.getfixturevalue(fixture))
    exact = symmetry_score(W_q.double(), W_k.double())
    W_q[1] *= scale
    W_k[1] *= scale
    torch.testing.assert_close(symmetry_score(W_q, W_k), exact, rtol=0, atol=1e-6)


def test_each_side_scaled_differently(heads):
    W_q, W_k = heads
    torch.testing.assert_close(symmetry_score(W_q * 1e-9, W_k * 1e8), symmetry_score(W_q.double(), W_k.double()),
                               rtol=0, atol=1e-6)


def test_a_zero_head_is_still_reported(heads):
    W_q, W_k = heads
    W_q = W_q.clone()
    W_q[2] = 0
    with pytest.raises(ValueError, match="head"):
        symmetry_score(W_q, W_k)
