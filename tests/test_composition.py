"""toyattn.circuits.composition: composition scores, norm folding (the exact identities), the full OV circuit and
copying scores, and the positional QK circuit, each against a direct computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toyattn.circuits import composition, matching
from toyattn.circuits.head_circuits import (
    head_factors,
    key_directions,
    output_directions,
    ov_factors,
    qk_factors,
)
from toyattn.heads.weights import fold_norm
from toyattn.models.transformer import Transformer, TransformerConfig

rng = np.random.default_rng(0)


def test_composition_scores_follow_the_definition_and_differ_by_side():
    A, B = rng.standard_normal((6, 6)), rng.standard_normal((6, 6))
    assert composition.composition_score(A, B) == pytest.approx(np.linalg.norm(A @ B) / np.linalg.norm(A) / np.linalg.norm(B))
    # A writer whose output lies in the reader's key directions but not its query directions:
    u, v = np.eye(6)[0], np.eye(6)[1]
    W_ov = np.outer(rng.standard_normal(6), u)  # writes along u
    W_qk = np.outer(v, u)  # queries along v, keys along u
    assert composition.k_composition(W_ov, W_qk) == pytest.approx(1.0)
    assert composition.q_composition(W_ov, W_qk) == pytest.approx(0.0)
    assert composition.v_composition(W_ov, np.outer(u, v)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="do not chain"):
        composition.composition_score(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="all zeros"):
        composition.composition_score(np.zeros((2, 2)), np.ones((2, 2)))


def test_random_baseline_is_well_above_zero_and_shrinks_with_width():
    mean_small, std = composition.random_composition_baseline(16, 4, n_runs=100)
    mean_big, _ = composition.random_composition_baseline(64, 4, n_runs=100)
    assert 0.05 < mean_big < mean_small < 1 and std > 0


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


def test_full_ov_and_copying_scores():
    d, V = 6, 10
    W_E = rng.standard_normal((V, d))
    W_U = np.linalg.pinv(W_E)  # [d, V]: W_E W_U is a projection, its eigenvalues are 0 or 1
    copy, anti = np.eye(d), -np.eye(d)
    F = composition.full_ov_circuit(W_E, copy, W_U)
    np.testing.assert_allclose(F, W_E @ W_U)
    assert composition.copying_eigen_score(W_E, copy, W_U) == pytest.approx(1.0)
    assert composition.copying_eigen_score(W_E, anti, W_U) == pytest.approx(-1.0)
    eig = np.linalg.eigvals(F)
    assert composition.copying_eigen_score(W_E, copy, W_U) == pytest.approx(eig.sum().real / np.abs(eig).sum(), abs=1e-9)
    assert composition.copying_top1(np.eye(4) + 0.1) == 1.0 and composition.copying_top1(-np.eye(4)) == 0.0
    rot = rng.standard_normal((d, d))
    eig = np.linalg.eigvals(composition.full_ov_circuit(W_E, rot, W_U))
    assert composition.copying_eigen_score(W_E, rot, W_U) == pytest.approx(eig.sum().real / np.abs(eig).sum(), abs=1e-6)


def test_positional_qk_scores_match_the_model():
    cfg = TransformerConfig(vocab_size=5, max_len=12, d_model=8, n_layers=1, positions="rotary", layer_norm=False)
    model = Transformer(cfg)
    attn = model.blocks[0].attn
    x = torch.randn(8)
    tokens_in = x.expand(1, 12, 8)  # the same residual at every position
    with model.hooks([("hook_embed", lambda t, hook: tokens_in.to(t))]):
        _, cache = model.run_with_cache(torch.zeros(1, 12, dtype=torch.long), names_filter="blocks.0.attn.hook_attn_scores")
    scores = cache["blocks.0.attn.hook_attn_scores"][0, 0]  # [q, k]
    q = (x @ attn.W_Q[0] + attn.b_Q[0]).detach().numpy()
    k = (x @ attn.W_K[0] + attn.b_K[0]).detach().numpy()
    expect = composition.positional_qk_scores(q, k, None, None, range(12))
    np.testing.assert_allclose(scores[11, [11 - d for d in range(12)]].numpy(), expect, rtol=1e-4, atol=1e-5)


def test_factored_circuits_match_the_dense_ones():
    cfg = TransformerConfig(vocab_size=5, max_len=8, d_model=16, n_layers=2, n_heads=2)
    model = Transformer(cfg)
    w, r = head_factors(model, 0, 1, fold=False), head_factors(model, 1, 0, fold=False)
    W_ov = matching.ov_circuit(w.W_V[0], w.W_O[0])
    W_qk = matching.qk_circuit(r.W_Q[0], r.W_K[0])
    assert composition.k_composition(ov_factors(w), qk_factors(r)) == pytest.approx(composition.k_composition(W_ov, W_qk), rel=1e-9)
    for rank in (1, 3):
        for summary in ("largest", "rms"):
            assert matching.qk_ov_matching(qk_factors(r), ov_factors(w), rank, summary) == pytest.approx(matching.qk_ov_matching(W_qk, W_ov, rank, summary), abs=1e-8)
    # Singular directions are orthonormal and ordered: they reproduce the circuit's top singular value.
    assert np.linalg.norm(W_qk @ key_directions(r)[:, 0]) == pytest.approx(np.linalg.svd(W_qk, compute_uv=False)[0])
    assert np.linalg.norm(W_ov @ output_directions(w)[:, 0]) == pytest.approx(np.linalg.svd(W_ov, compute_uv=False)[0])
    with pytest.raises(ValueError, match="rank"):
        matching.qk_ov_matching(qk_factors(r), ov_factors(w), 9)


def test_folded_factors_read_the_layer_norm_gain():
    cfg = TransformerConfig(vocab_size=5, max_len=8, d_model=8, n_layers=1)
    model = Transformer(cfg)
    with torch.no_grad():
        model.blocks[0].ln1.weight.copy_(torch.arange(1.0, 9.0))
    raw, folded = head_factors(model, 0, 0, fold=False), head_factors(model, 0, 0)
    np.testing.assert_allclose(folded.W_K[0], fold_norm(raw.W_K[0], np.arange(1.0, 9.0), center=True))
