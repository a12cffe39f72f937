"""toyattn.circuits.detection: the previous-token and induction scores on repeated random tokens, and top heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toyattn.circuits.detection import head_scores, repeated_random_tokens, top_heads
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


def test_random_matching_baseline_has_the_distribution_of_the_svd_one():
    from toyattn.circuits import matching

    def svd_baseline(d, rank, n_runs, summary):  # the definition: top singular vectors of Gaussian d x d matrices
        rng = np.random.default_rng(1)
        scores = [matching.subspace_matching(np.linalg.svd(rng.standard_normal((d, d)))[0],
                                             np.linalg.svd(rng.standard_normal((d, d)))[0], rank, summary)
                  for _ in range(n_runs)]
        return np.mean(scores), np.std(scores)

    for summary in ("largest", "rms"):
        fast, fast_std = matching.random_baseline(24, 4, n_runs=400, summary=summary)
        slow, slow_std = svd_baseline(24, 4, 400, summary)
        assert abs(fast - slow) < 0.03 and abs(fast_std - slow_std) < 0.03
    assert matching.random_baseline(576, 10, n_runs=20)[0] == pytest.approx(matching.expected_random_matching(576, 10), abs=0.06)


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


def test_the_recorded_pool_sweeps_hold_the_counterexamples_lesson5_names():
    """Lesson 5, sections 5 and 10, call the distance-0 matching a noisy proxy because the recorded sweeps
    hold seeds where it is high while the OOD error is high, and seeds where it is below its baseline while
    the OOD error is partly down. If a re-recorded sweep loses these, the lesson's prose must change."""
    import json
    from pathlib import Path

    from toyattn.circuits.matching import random_baseline

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    runs = [r for name in ("pool_size_sweep.json", "pool_size_sweep_1500.json")
            for r in json.loads((results / name).read_text())["runs"]]
    base, std = random_baseline(32, 4, n_runs=50)
    assert any(r["ood_error"] > 0.5 and r["match_largest_4"] > base + 2 * std for r in runs)
    assert any(r["ood_error"] < 0.6 and r["match_largest_4"] < base for r in runs)
