"""toyattn.circuits.composition: composition scores, the full OV circuit and copying scores, and the positional
QK circuit, each against a direct computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import tiny_llama

from toyattn.circuits import composition
from toyattn.circuits.head_circuits import head_factors, ov_matrix, qk_matrix
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


def test_factored_composition_equals_the_dense_formulas():
    model = tiny_llama(n_layers=3)
    heads = [(0, 1), (1, 2), (2, 0)]
    dense = {"Q": composition.q_composition, "K": composition.k_composition,
             "V": lambda ov, qk_or_ov: composition.v_composition(ov, qk_or_ov)}
    for kind in composition.KINDS:
        M = composition.composition_scores(model, heads, kind)
        assert np.isnan(M[1, 0]) and np.isnan(M[0, 0]), "a writer must sit in an earlier layer"
        for i, w in enumerate(heads):
            for j, r in enumerate(heads):
                if w[0] < r[0]:
                    fw, fr = head_factors(model, *w), head_factors(model, *r)
                    reader = ov_matrix(fr) if kind == "V" else qk_matrix(fr)
                    assert M[i, j] == pytest.approx(dense[kind](ov_matrix(fw), reader), rel=1e-9)
    assert composition.random_pair_composition(model, "K", n_pairs=5).shape == (5,)
    with pytest.raises(ValueError, match="Q-, K- or V-composition"):
        composition.composition_scores(model, heads, "O")
