"""toyattn.circuits.matching: QK/OV circuits and their matching on constructed matrices, its random baseline, and
every copy-task run that learned the rule (conftest's ``fresh_runs``) showing the induction circuit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from toyattn.circuits import matching
from toyattn.circuits import matching as circuits
from toyattn.circuits.copy_task import (
    CopyTaskConfig,
    make_test_sets,
)
from toyattn.heads.weights import HeadWeights
from toyattn.models.transformer import Transformer, TransformerConfig, apply_rotary


def test_qk_ov_matching_refuses_non_square_factors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"must both be \[d_model, d_model\]"):
        circuits.qk_ov_matching(rng.standard_normal((8, 6)), rng.standard_normal((8, 6)), 2)
    with pytest.raises(ValueError, match=r"must both be \[d_model, d_model\]"):
        circuits.qk_ov_matching(rng.standard_normal((8, 8)), rng.standard_normal((6, 6)), 2)


@pytest.mark.parametrize("n_runs", [0, 1, 2.5, True])
def test_random_baseline_needs_two_runs(n_runs):
    with pytest.raises(ValueError, match="n_runs must be an integer >= 2"):
        circuits.random_baseline(8, 2, n_runs=n_runs)


def orthonormal(d: int, r: int, seed: int) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(seed).standard_normal((d, r)))[0]


def test_rotary_matrix_matches_the_model_rotation():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(8, generator=g), torch.randn(8, generator=g)
    for p, s in [(5, 2), (9, 9), (3, 0)]:
        rq = apply_rotary(q[None, None, None], torch.tensor([p]))[0, 0, 0]
        rk = apply_rotary(k[None, None, None], torch.tensor([s]))[0, 0, 0]
        expected = float(rq @ rk)
        got = float(q.double().numpy() @ matching.rotary_matrix(8, p - s) @ k.double().numpy())
        assert got == pytest.approx(expected, abs=1e-5)
    np.testing.assert_allclose(matching.rotary_matrix(6, 0), np.eye(6))
    R = matching.rotary_matrix(6, 7)
    np.testing.assert_allclose(R @ R.T, np.eye(6), atol=1e-12)
    assert not np.allclose(R, np.eye(6))
    with pytest.raises(ValueError, match="even"):
        matching.rotary_matrix(5, 1)


def test_qk_and_ov_circuits_reproduce_scores_and_outputs():
    rng = np.random.default_rng(0)
    W_Q, W_K, W_V = (rng.standard_normal((6, 4)) for _ in range(3))
    W_O = rng.standard_normal((4, 6))
    x_q, x_k = rng.standard_normal(6), rng.standard_normal(6)
    W_qk = matching.qk_circuit(W_Q, W_K)
    assert x_q @ W_qk @ x_k == pytest.approx((x_q @ W_Q) @ (x_k @ W_K) / 2.0)
    W_ov = matching.ov_circuit(W_V, W_O)
    np.testing.assert_allclose(x_k @ W_ov, (x_k @ W_V) @ W_O)
    # Composition: the score on a key that holds layer 1's output for x_src.
    x_src = rng.standard_normal(6)
    assert x_q @ matching.qkov_circuit(W_qk, W_ov) @ x_src == pytest.approx(x_q @ W_qk @ (x_src @ W_ov))
    with pytest.raises(ValueError, match="transposed"):
        matching.ov_circuit(W_V, W_O.T[:, :3])


def test_qk_circuit_with_rotary_distance_matches_the_model_scores():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=7, max_len=8, d_model=8, n_layers=1, layer_norm=False))
    tokens = torch.tensor([[1, 4, 2, 6, 0, 3]])
    _, cache = model.run_with_cache(tokens)
    w = HeadWeights.from_model(model, 0)
    x = cache["blocks.0.hook_resid_pre"][0].double().numpy()
    scores = cache["blocks.0.attn.hook_attn_scores"][0, 0].double().numpy()
    for p, s in [(5, 1), (3, 3), (4, 0)]:
        W_qk = matching.qk_circuit(w.W_Q[0], w.W_K[0], distance=p - s, base=model.cfg.rotary_base)
        assert x[p] @ W_qk @ x[s] == pytest.approx(scores[p, s], abs=1e-5)


def test_diagonal_zscore_and_mismatch_on_constructed_matrices():
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((10, 10))
    induction = noise + 10 * np.eye(10)
    assert matching.diagonal_zscore(induction) > 2.5
    assert abs(matching.diagonal_zscore(np.ones((4, 4)))) == 0.0
    M = np.arange(16.0).reshape(4, 4)
    expected = (np.diag(M).mean() - M.mean()) / M.std()
    assert matching.diagonal_zscore(M) == pytest.approx(expected)
    assert matching.token_mismatch_ratio(induction) == 0.0
    assert matching.token_mismatch_ratio(-induction) == 1.0
    shifted = np.roll(np.eye(4), 1, axis=1)
    shifted[0] = [1, 0, 0, 0]  # one row right, three wrong
    assert matching.token_mismatch_ratio(shifted) == 0.75
    with pytest.raises(ValueError, match="square"):
        matching.diagonal_zscore(np.ones((2, 3)))


def test_token_matrix_reads_the_circuit_token_by_token():
    rng = np.random.default_rng(2)
    W_E = rng.standard_normal((5, 3))
    W = rng.standard_normal((3, 3))
    T = matching.token_matrix(W_E, W)
    assert T[1, 3] == pytest.approx(W_E[1] @ W @ W_E[3])


def test_identical_subspaces_score_one_and_orthogonal_zero():
    A = orthonormal(12, 5, 0)
    for summary in ("largest", "rms"):
        assert matching.subspace_matching(A, A, 5, summary) == pytest.approx(1.0)
        # Same span, rotated basis: still 1.
        Q = np.linalg.qr(np.random.default_rng(3).standard_normal((5, 5)))[0]
        assert matching.subspace_matching(A, A @ Q, 5, summary) == pytest.approx(1.0)
    Q = orthonormal(12, 12, 1)
    assert matching.subspace_matching(Q[:, :4], Q[:, 4:8], 4, "largest") == pytest.approx(0.0, abs=1e-12)
    # Half shared: two common directions out of four.
    B = np.concatenate([Q[:, :2], Q[:, 8:10]], axis=1)
    assert matching.subspace_matching(Q[:, :4], B, 4, "largest") == pytest.approx(1.0)
    assert matching.subspace_matching(Q[:, :4], B, 4, "rms") == pytest.approx(math.sqrt(0.5))


def test_qk_ov_matching_finds_aligned_weights():
    rng = np.random.default_rng(4)
    d, r = 16, 3
    U = orthonormal(d, d, 5)
    # W_ov writes into span(U[:, :3]); W_qk reads keys from the same span -> score 1.
    W_ov = rng.standard_normal((d, r)) @ np.diag([5.0, 4.0, 3.0]) @ U[:, :r].T
    W_qk = rng.standard_normal((d, r)) @ np.diag([6.0, 2.0, 1.0]) @ U[:, :r].T
    assert matching.qk_ov_matching(W_qk, W_ov, r, "rms") == pytest.approx(1.0, abs=1e-8)
    # Reading from the orthogonal complement instead -> score 0.
    W_qk_off = rng.standard_normal((d, r)) @ np.diag([6.0, 2.0, 1.0]) @ U[:, r : 2 * r].T
    assert matching.qk_ov_matching(W_qk_off, W_ov, r, "largest") == pytest.approx(0.0, abs=1e-8)


def test_embedding_ov_matching_sides():
    d = 8
    U = orthonormal(d, d, 6)
    W_E = np.random.default_rng(7).standard_normal((20, 2)) @ U[:, :2].T  # embeddings in span(U[:, :2])
    reads_embedding_writes_elsewhere = U[:, :2] @ U[:, 4:6].T  # x @ W_ov: reads U[:, :2], writes U[:, 4:6]
    assert matching.embedding_ov_matching(W_E, reads_embedding_writes_elsewhere, 2, "rms", side="output") == pytest.approx(0.0, abs=1e-8)
    assert matching.embedding_ov_matching(W_E, reads_embedding_writes_elsewhere, 2, "rms", side="input") == pytest.approx(1.0)
    with pytest.raises(ValueError, match="side"):
        matching.embedding_ov_matching(W_E, reads_embedding_writes_elsewhere, 2, side="both")


def test_random_baseline_matches_its_analytic_expectation():
    # RMS: E[mean cos^2] = r / d exactly; the mean of the RMS sits just below sqrt(r / d).
    mean, std = matching.random_baseline(40, 8, n_runs=200, summary="rms", seed=0)
    assert mean == pytest.approx(matching.expected_random_matching(40, 8, "rms"), abs=0.02)
    assert 0 < std < 0.1
    # Largest: the Wachter edge is asymptotic; close for a large d.
    mean, _ = matching.random_baseline(240, 24, n_runs=10, summary="largest", seed=1)
    assert mean == pytest.approx(matching.expected_random_matching(240, 24, "largest"), abs=0.06)
    # The baseline grows with the rank: more directions, more chance overlap.
    assert matching.random_baseline(32, 4, 30)[0] < matching.random_baseline(32, 12, 30)[0]
    assert matching.expected_random_matching(10, 6, "largest") == 1.0


def test_rms_baseline_is_below_sqrt_r_over_d_and_mean_squared_cosine_is_r_over_d():
    # Lesson 4, section 6: E[mean cos^2] = r/d exactly; E[RMS] is smaller (Jensen), not equal to sqrt(r/d).
    rng = np.random.default_rng(5)
    d, r = 32, 4
    mean_sq, rms = [], []
    for _ in range(2000):
        A = np.linalg.qr(rng.standard_normal((d, r)))[0]
        B = np.linalg.qr(rng.standard_normal((d, r)))[0]
        cos = matching.principal_cosines(A, B)
        mean_sq.append(np.mean(cos**2))
        rms.append(matching.summarise(cos, "rms"))
    assert np.mean(mean_sq) == pytest.approx(r / d, abs=0.003)  # standard error about 0.0012
    assert np.mean(rms) < matching.expected_random_matching(d, r, "rms") - 0.002  # 0.349 against 0.354


def test_expected_projected_length_matches_a_simulation_and_sits_below_sqrt_r_over_d():
    # Lesson 4, section 9: the chance level of embedding_usage.
    rng = np.random.default_rng(6)
    for d, r in ((32, 4), (10, 7)):
        U = np.linalg.qr(rng.standard_normal((d, r)))[0]
        v = rng.standard_normal((20000, d))
        lengths = np.linalg.norm(v @ U, axis=1) / np.linalg.norm(v, axis=1)
        assert matching.expected_projected_length(d, r) == pytest.approx(lengths.mean(), abs=0.005)
        assert matching.expected_projected_length(d, r) < math.sqrt(r / d)
    assert matching.expected_projected_length(5, 5) == 1.0


def test_first_step_where_finds_the_first_crossing_in_either_direction():
    steps = [0, 25, 50, 75, 100]
    match = [0.5, 0.8, 0.6, 0.9, 0.95]  # crosses 0.74 at 25, dips, crosses again
    error = [0.96, 0.95, 0.7, 0.3, 0.1]
    assert matching.first_step_where(steps, match, 0.74) == 25  # not 75 (the last crossing), not 1 (the index)
    assert matching.first_step_where(steps, error, 0.5, below=True) == 75  # not 0 (a crossing upwards)
    assert matching.first_step_where(steps, error, 0.05, below=True) is None
    assert matching.first_step_where(steps, match, 0.5) == 25  # strictly above
    with pytest.raises(ValueError, match="one length"):
        matching.first_step_where(steps, match[:3], 0.5)


def test_estimate_rank_recovers_a_planted_rank():
    rng = np.random.default_rng(8)
    n = 60
    signal = orthonormal(n, 3, 9) @ np.diag([40.0, 30.0, 20.0]) @ orthonormal(n, 3, 10).T
    noisy = signal + rng.standard_normal((n, n)) / math.sqrt(n)
    assert matching.estimate_rank(noisy, k=10) == 3
    with pytest.raises(ValueError, match="k"):
        matching.estimate_rank(noisy, k=60)


@pytest.mark.parametrize(
    "call, err, match",
    [
        (lambda: matching.subspace_matching(np.eye(4), np.eye(4), 5), ValueError, "rank must be"),
        (lambda: matching.principal_cosines(2 * np.eye(3), np.eye(3)), ValueError, "orthonormal"),
        (lambda: matching.qk_circuit(np.ones((4, 2)), np.ones((4, 3))), ValueError, "same shape"),
        (lambda: matching.diagonal_zscore(np.full((2, 2), np.nan)), ValueError, "NaN"),
        (lambda: matching.summarise(np.ones(3), "mean"), ValueError, "largest"),
    ],
)
def test_bad_inputs_get_clear_errors(call, err, match):
    with pytest.raises(err, match=match):
        call()


def test_circuit_metrics_on_an_untrained_model_sit_near_chance():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=24, max_len=32, d_model=32))
    m = matching.circuit_metrics(model, ranks=(4,))
    base, std = matching.random_baseline(32, 4, 50, "rms")
    assert abs(m["match_rms_4"] - base) < 3 * std
    assert m["mismatch"] > 0.5
    assert abs(m["diag_zscore"]) < 1.0
    with pytest.raises(ValueError, match="2 layers"):
        matching.circuit_metrics(Transformer(TransformerConfig(vocab_size=4, max_len=4, d_model=8, n_layers=1)))


def test_embedding_usage_separates_shared_and_individual_parts():
    rng = np.random.default_rng(11)
    d = 10
    U = orthonormal(d, d, 12)
    mean_dir = U[:, 0]
    # Embeddings: a shared part along U[:, 0] plus individual parts in span(U[:, 1:4]).
    own = rng.standard_normal((30, 3))
    own -= own.mean(axis=0)  # so the mean embedding is exactly the shared part
    W_E = 3 * mean_dir[None, :] + own @ U[:, 1:4].T
    reads_mean = np.outer(U[:, 0], [1.0, 0.0])  # [d_model, d_head=2], reads only the shared direction
    individual, mean = matching.embedding_usage(W_E, reads_mean, 1)
    assert mean == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(individual, 0.0, atol=1e-8)
    reads_tokens = U[:, 1:4]  # [d_model, 3]
    individual, mean = matching.embedding_usage(W_E, reads_tokens, 3)
    np.testing.assert_allclose(individual, 1.0, atol=1e-8)
    assert mean == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError, match="share d_model"):
        matching.embedding_usage(W_E, np.ones((4, 2)), 1)


def test_ov_output_share_in_embedding_span_is_one_inside_zero_outside_and_dim_over_d_by_chance():
    rng = np.random.default_rng(0)
    d, vocab, rank = 32, 24, 4
    W_E = rng.standard_normal((vocab, d))
    basis = np.linalg.svd(W_E, full_matrices=False)[2]  # [24, 32]: the rows span W_E's row space
    rest = np.linalg.svd(W_E)[2][vocab:]  # [8, 32]: its orthogonal complement
    inside = rng.standard_normal((d, rank)) @ basis[:rank]  # writes only inside the span
    outside = rng.standard_normal((d, rank)) @ rest[:rank]
    assert matching.ov_output_share_in_embedding_span(W_E, inside, rank) == pytest.approx((1.0, vocab / d))
    assert matching.ov_output_share_in_embedding_span(W_E, outside, rank)[0] == pytest.approx(0.0, abs=1e-12)
    shares = [matching.ov_output_share_in_embedding_span(W_E, rng.standard_normal((d, d)), rank)[0] for _ in range(400)]
    assert np.mean(shares) == pytest.approx(vocab / d, abs=0.02)  # a random direction keeps dim/d on average


TASK = CopyTaskConfig()


def _learned(run) -> bool:
    return run.history["ood_error"][-1] < 0.2


def test_every_run_that_learned_the_rule_has_an_induction_circuit(fresh_runs):
    base_mean, base_std = matching.random_baseline(fresh_runs[next(iter(fresh_runs))].model_config.d_model, 4, n_runs=50)
    batch = make_test_sets(TASK, 32, seed=7)["ood"]
    for label, run in fresh_runs.items():
        if not _learned(run):
            continue
        assert run.history["id_error"][-1] < 0.2, label
        first, last = matching.circuit_metrics(run.load(0), ranks=(4,)), matching.circuit_metrics(run.load(-1), ranks=(4,))
        assert last["match_largest_4"] > base_mean + 2 * base_std, label  # clearly above chance
        assert last["match_largest_4"] > first["match_largest_4"] + 0.15, label  # and it rose
        assert last["diag_zscore"] > 1.5 and last["mismatch"] < 0.3, (label, last)
        # Layer 2 attends from the second copy to the token after the first occurrence.
        with torch.no_grad():
            _, cache = run.model.run_with_cache(batch.tokens)
        # Averaged as lesson 4 section 4 prints it: query second + t -> key first + t + 1, skip <= t < length - 1.
        pattern = cache["blocks.1.attn.hook_pattern"][:, 0]
        on_target = [pattern[b, int(batch.second[b]) + t, int(batch.first[b]) + t + 1]
                     for b in range(len(batch.tokens)) for t in range(TASK.skip, int(batch.length[b]) - 1)]
        assert torch.stack(on_target).mean() > 0.5, label
        # Layer 1 is a previous-token head: each position attends most to the one before.
        prev = cache["blocks.0.attn.hook_pattern"][:, 0].argmax(-1)[:, 1:]
        assert (prev == torch.arange(TASK.seq_len - 1)).float().mean() > 0.7, label


def test_layer_2_score_is_the_qk_circuit_on_layer_normed_inputs_plus_bias_terms(fresh_run):
    # Lesson 4, section 5: score_ij = x_hat_i W_qk(i - j) x_hat_j + bias terms, with x_hat = LN(x) (pre-LayerNorm).
    model = fresh_run.model
    tokens = make_test_sets(TASK, 2, seed=5)["ood"].tokens
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
        x_hat = model.blocks[1].ln1(cache["blocks.1.hook_resid_pre"][0]).double().numpy()
        resid = cache["blocks.1.hook_resid_pre"][0].double().numpy()
    d_head, base = model.cfg.d_head, model.cfg.rotary_base
    w = HeadWeights.from_model(model, 1).map(torch.Tensor.double)
    W_Q, W_K, b_Q, b_K = (t[0].numpy() for t in (w.W_Q, w.W_K, w.b_Q, w.b_K))  # head 0
    assert np.abs(b_Q).max() > 1e-3 and np.abs(b_K).max() > 1e-3  # trained biases: the bias terms matter
    scores = cache["blocks.1.attn.hook_attn_scores"][0, 0].double().numpy()
    raw_differs = 0
    for q, k in [(5, 5), (9, 8), (20, 3), (31, 0), (27, 14)]:
        R = matching.rotary_matrix(d_head, q - k, base)
        W_qk = matching.qk_circuit(W_Q, W_K, q - k, base)
        bias = (x_hat[q] @ W_Q @ R @ b_K + b_Q @ R @ W_K.T @ x_hat[k] + b_Q @ R @ b_K) / np.sqrt(d_head)
        assert x_hat[q] @ W_qk @ x_hat[k] + bias == pytest.approx(scores[q, k], abs=1e-4)
        raw_differs += abs(resid[q] @ W_qk @ resid[k] - scores[q, k]) > 1e-2
    assert raw_differs == 5  # on the residual before the layer norm, the bilinear form is not the score


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
