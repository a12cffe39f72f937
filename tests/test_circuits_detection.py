"""toyattn.circuits.detection: the previous-token and induction scores on repeated random tokens, and top heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import tiny_llama

from toyattn.circuits import composition, detection
from toyattn.circuits.detection import head_scores, repeated_random_tokens, top_heads
from toyattn.circuits.head_circuits import head_factors, ov_matrix, token_matrices
from toyattn.models.transformer import Transformer, TransformerConfig


def planted_pattern(T, offset):
    """Every query t attends fully to t - offset (or to itself when that is before the start)."""
    p = torch.zeros(T, T)
    for t in range(T):
        p[t, t - offset if t - offset >= 0 else t] = 1.0
    return p


@pytest.mark.parametrize("prefix", [None, 0])
def test_planted_heads_score_one_and_others_score_what_they_do(prefix):
    L = 6
    tokens = repeated_random_tokens(3, L, (1, 20), torch.Generator().manual_seed(0), prefix=prefix)
    T = tokens.shape[1]
    assert T == 2 * L + (prefix is not None)
    assert torch.equal(tokens[:, T - L :], tokens[:, T - 2 * L : T - L])
    model = Transformer(TransformerConfig(vocab_size=20, max_len=T, d_model=8, n_layers=2, n_heads=2))
    prev, ind, dup = planted_pattern(T, 1), planted_pattern(T, L - 1), planted_pattern(T, L)

    def plant(layer_patterns):
        def hook(p, hook):
            return torch.stack(layer_patterns)[None].expand_as(p).clone()
        return hook

    hooks = [("blocks.0.attn.hook_pattern", plant([prev, dup])), ("blocks.1.attn.hook_pattern", plant([ind, dup]))]
    with model.hooks(hooks):
        s = head_scores(model, tokens, L)
    np.testing.assert_allclose(s["previous_token"], [[1, 0], [0, 0]], atol=1e-6)
    np.testing.assert_allclose(s["induction"], [[0, 0], [1, 0]], atol=1e-6)
    assert top_heads(s["induction"], 1) == [(1, 0, pytest.approx(1.0))]


def test_uniform_attention_scores_the_mean_of_one_over_position():
    L = 5
    tokens = repeated_random_tokens(2, L, (0, 9), torch.Generator().manual_seed(1))
    model = Transformer(TransformerConfig(vocab_size=9, max_len=10, d_model=8, n_layers=1, n_heads=1))
    uniform = torch.tril(torch.ones(10, 10)) / torch.arange(1, 11)[:, None]
    with model.hooks([("blocks.0.attn.hook_pattern", lambda p, hook: uniform.expand_as(p).clone())]):
        s = head_scores(model, tokens, L)
    assert s["induction"][0, 0] == pytest.approx(np.mean(1 / np.arange(6, 11)))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="token range"):
        repeated_random_tokens(1, 4, (5, 5), torch.Generator())
    model = Transformer(TransformerConfig(vocab_size=9, max_len=10, d_model=8, n_layers=1))
    with pytest.raises(ValueError, match="two copies"):
        head_scores(model, torch.zeros(1, 5, dtype=torch.long), 4)


def test_distinct_halves_have_no_repeated_token_and_are_repeated():
    tokens = repeated_random_tokens(50, 15, (0, 24), torch.Generator().manual_seed(2), distinct=True)
    assert tokens.shape == (50, 30)
    assert torch.equal(tokens[:, :15], tokens[:, 15:])
    assert all(len(set(row[:15].tolist())) == 15 for row in tokens)
    assert tokens.min() >= 0 and tokens.max() < 24
    # Every id is used: the draw is a uniform permutation's prefix, not a fixed subset.
    assert set(tokens.flatten().tolist()) == set(range(24))
    with pytest.raises(ValueError, match="distinct"):
        repeated_random_tokens(1, 10, (0, 5), torch.Generator(), distinct=True)


def test_head_scores_per_sequence_keep_the_batch_and_work_on_a_llama():
    model = tiny_llama()
    tokens = repeated_random_tokens(3, 6, (0, 40), torch.Generator().manual_seed(2), prefix=1)
    each_seq = detection.head_scores(model, tokens, 6, per_sequence=True)
    for key in ("previous_token", "induction"):
        np.testing.assert_allclose(each_seq[key].mean(0), head_scores(model, tokens, 6)[key], rtol=1e-6)
    each = detection.head_scores(model, tokens, 6, per_sequence=True)["induction"]
    np.testing.assert_allclose(each[1], head_scores(model, tokens[1:2], 6)["induction"], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="two copies"):
        detection.head_scores(model, tokens, 20)


def test_copying_scores_of_every_head_equal_lesson_5s_dense_score():
    model = tiny_llama()
    W_E, W_U = token_matrices(model)
    scores = detection.copying_scores(model)
    for layer, head in ((0, 0), (2, 3)):
        dense = composition.copying_eigen_score(W_E, ov_matrix(head_factors(model, layer, head)), W_U)
        assert scores[layer, head] == pytest.approx(dense, abs=1e-9)
