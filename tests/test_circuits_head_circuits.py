"""toyattn.circuits.head_circuits: one head's QK/OV circuits read from a model, factored and folded, against the dense ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import tiny_llama

from toyattn.circuits import composition, head_circuits, matching
from toyattn.circuits.head_circuits import (
    head_factors,
    key_directions,
    output_directions,
    ov_factors,
    ov_matrix,
    qk_factors,
    qk_matrix,
)
from toyattn.circuits.matching import qk_ov_matching
from toyattn.heads.weights import fold_norm
from toyattn.models.transformer import Transformer, TransformerConfig


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


def test_token_matrices_fold_the_final_norm_and_the_circuits_are_the_products():
    from toyattn.circuits.head_circuits import head_factors, ov_matrix, qk_matrix, token_matrices
    from toyattn.circuits.matching import qk_circuit

    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=7, max_len=9, d_model=8, n_layers=2, n_heads=2))
    with torch.no_grad():
        model.ln_final.weight.add_(0.3 * torch.randn(8))
        model.ln_final.bias.add_(0.3 * torch.randn(8))
    W_E, W_U = token_matrices(model)
    np.testing.assert_allclose(W_E, model.embed.W_E.detach().double().numpy())
    x = torch.randn(5, 8, dtype=torch.float64)
    ln = model.ln_final.double()
    with torch.no_grad():
        logits = (ln(x) - ln.bias) @ model.unembed.weight.double().T
    sigma = torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + ln.eps)
    np.testing.assert_allclose((x / sigma).numpy() @ W_U, logits.numpy(), atol=1e-10)
    f = head_factors(model, 1, 1)
    np.testing.assert_allclose(ov_matrix(f), (f.W_V[0] @ f.W_O[0]).numpy())
    np.testing.assert_allclose(qk_matrix(f, 3, 100.0), qk_circuit(f.W_Q[0], f.W_K[0], 3, 100.0))


def test_bridge_matching_equals_qk_ov_matching_of_the_pairs_circuits_at_each_distance():
    model = tiny_llama()
    w, r = head_factors(model, 0, 1), head_factors(model, 2, 2)
    assert head_circuits.bridge_matching(model, [((0, 1), (2, 2))], 2, 0)[0] == pytest.approx(qk_ov_matching(qk_matrix(r), ov_matrix(w), 2), abs=1e-9)
    # at a distance, the key directions are those of the rotated QK circuit W_Q R W_K^T
    dense = qk_ov_matching(qk_matrix(r, 5, model.cfg.rope_base), ov_matrix(w), 2)
    both = head_circuits.bridge_matching(model, [((0, 1), (2, 2)), ((1, 0), (2, 2))], 2, 5)
    assert both[0] == pytest.approx(dense, abs=1e-6)
    assert both[1] == pytest.approx(qk_ov_matching(qk_matrix(r, 5, model.cfg.rope_base), ov_matrix(head_factors(model, 1, 0)), 2),
                                    abs=1e-6)
