"""Tests for toyattn.circuits.copy_task: the copying task, training with checkpoints, and the lesson-4 story.

Training outcomes differ between seeds, CPUs, thread counts, dtypes and GPUs, so the story is checked on
several short runs (seed 0 with 1 and 2 threads and in float32 and float64, and seed 1): every run that
learned the rule (low OOD error) shows the circuit; not every run learns it within the steps given, and the
tests say how many must (on the machines measured so far seed 0 learns in 450 steps and seed 1 does not, so
the circuit checks run on seed 0 only). A tiny pool memorises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toyattn.circuits import matching
from toyattn.circuits.copy_task import (
    CopyTaskConfig,
    TrainConfig,
    copy_error,
    make_pool,
    make_test_sets,
    sample_copy_batch,
    train_copy_model,
    zipf_probs,
)
from toyattn.heads.weights import HeadWeights

TASK = CopyTaskConfig()


def _fresh(seed: int = 0, threads: int = 1, dtype: torch.dtype = torch.float32, checkpoint_every: int = 50):
    config = TrainConfig(steps=450, checkpoint_every=checkpoint_every, n_test=256, seed=seed, cpu_threads=threads)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # the model's parameters are created in this dtype
    try:
        return train_copy_model(TASK, pool_size=None, train=config, device="cpu")
    finally:
        torch.set_default_dtype(previous)


@pytest.fixture(scope="module")
def fresh_run():
    return _fresh()


@pytest.fixture(scope="module")
def fresh_runs(fresh_run):
    """Seed 0 under three settings (float32 with 1 and 2 threads, float64) and seed 1: label -> run."""
    runs = {"seed 0, float32, 1 thread": fresh_run}
    runs["seed 0, float32, 2 threads"] = _fresh(threads=2, checkpoint_every=150)
    runs["seed 0, float64, 1 thread"] = _fresh(dtype=torch.float64, checkpoint_every=150)
    runs["seed 1, float32, 1 thread"] = _fresh(seed=1, checkpoint_every=150)
    return runs


def _learned(run) -> bool:
    return run.history["ood_error"][-1] < 0.2


@pytest.fixture(scope="module")
def tiny_pool_run(tmp_path_factory):
    ckpt_dir = tmp_path_factory.mktemp("ckpts")
    return train_copy_model(
        TASK, pool_size=10, train=TrainConfig(steps=250, checkpoint_every=50, n_test=256),
        checkpoint_dir=ckpt_dir, device="cpu",
    )


def test_batch_holds_two_copies_of_one_pattern():
    g = torch.Generator().manual_seed(0)
    b = sample_copy_batch(TASK, 200, g)
    assert b.tokens.shape == (200, TASK.seq_len) and b.scored.shape == (200, TASK.seq_len)
    for i in range(200):
        f, s, n = int(b.first[i]), int(b.second[i]), int(b.length[i])
        assert TASK.pattern_len[0] <= n <= TASK.pattern_len[1]
        assert f + n <= s and s + n <= TASK.seq_len  # no overlap, fits
        first, second = b.tokens[i, f : f + n], b.tokens[i, s : s + n]
        assert torch.equal(first, second)
        assert len(set(first.tolist())) == n  # distinct tokens
        assert b.scored[i].sum() == n - TASK.skip
        assert b.scored[i, s + TASK.skip : s + n].all()
    # Placement varies: copies are not always at the same spot.
    assert len(set(b.first.tolist())) > 5


def test_background_follows_the_zipf_law_and_ood_is_uniform():
    g = torch.Generator().manual_seed(1)
    b = sample_copy_batch(TASK, 4000, g)
    outside = ~((torch.arange(TASK.seq_len) >= b.first[:, None]) & (torch.arange(TASK.seq_len) < b.second[:, None] + b.length[:, None]))
    counts = torch.bincount(b.tokens[outside], minlength=TASK.vocab_size).float()
    freq = counts / counts.sum()
    p = zipf_probs(TASK.vocab_size)
    assert p[0] / p[-1] == pytest.approx((TASK.vocab_size - 1 + 2.7) / 2.7, rel=1e-5)
    assert torch.allclose(freq, p, atol=0.01)
    ood = sample_copy_batch(TASK, 4000, g, ood=True)
    assert (ood.length == TASK.ood_pattern_len).all()
    ood_freq = torch.bincount(ood.tokens.flatten(), minlength=TASK.vocab_size).float()
    ood_freq /= ood_freq.sum()
    assert torch.allclose(ood_freq, torch.full_like(ood_freq, 1 / TASK.vocab_size), atol=0.01)


def test_pool_limits_the_patterns_and_is_seeded():
    pool = make_pool(TASK, 5, torch.Generator().manual_seed(3))
    again = make_pool(TASK, 5, torch.Generator().manual_seed(3))
    assert torch.equal(pool.patterns, again.patterns)
    b = sample_copy_batch(TASK, 300, torch.Generator().manual_seed(4), pool=pool)
    seen = {tuple(b.tokens[i, int(b.first[i]) : int(b.first[i] + b.length[i])].tolist()) for i in range(300)}
    allowed = {tuple(p[: int(n)].tolist()) for p, n in zip(pool.patterns, pool.lengths, strict=True)}
    assert seen == allowed
    with pytest.raises(ValueError, match="ood=True"):
        sample_copy_batch(TASK, 2, torch.Generator(), pool=pool, ood=True)


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="do not fit"):
        CopyTaskConfig(seq_len=20)
    with pytest.raises(ValueError, match="distinct tokens"):
        CopyTaskConfig(vocab_size=10)
    with pytest.raises(ValueError, match="pool_size"):
        make_pool(TASK, 0, torch.Generator())
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)


def test_a_perfect_copier_scores_zero_error_and_a_constant_one_does_not():
    tests = make_test_sets(TASK, 64)

    class Oracle(torch.nn.Module):
        """Predicts the token that followed the most recent earlier occurrence of the current token."""

        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def forward(self, tokens):
            B, T = tokens.shape
            logits = torch.zeros(B, T, TASK.vocab_size)
            for b in range(B):
                for t in range(T):
                    for s in range(t - 1, -1, -1):
                        if tokens[b, s] == tokens[b, t] and s + 1 < T:
                            logits[b, t, tokens[b, s + 1]] = 1.0
                            break
            return logits

    class Constant(Oracle):
        def forward(self, tokens):
            return torch.zeros(*tokens.shape, TASK.vocab_size)

    # Second-copy tokens are distinct within the pattern, but the background may repeat the
    # current token later than the first copy: the oracle is then misled, so the error is small, not 0.
    assert copy_error(Oracle(), tests["ood"]) < 0.2
    assert copy_error(Constant(), tests["ood"]) > 0.9


def test_some_runs_learn_the_rule_within_450_steps(fresh_runs):
    # Lesson 4, section 3: when the transition comes depends on the seed and the machine.
    for label, run in fresh_runs.items():
        assert run.history["ood_error"][0] > 0.8, label  # untrained
    learned = [label for label, run in fresh_runs.items() if _learned(run)]
    assert len(learned) >= len(fresh_runs) // 2, {k: r.history["ood_error"][-1] for k, r in fresh_runs.items()}


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


def test_induction_distance_is_pattern_length_plus_gap_minus_one():
    # Lesson 4, sections 6 and 8: the query at second + t reads the key at first + t + 1.
    batch = make_test_sets(TASK, 64, seed=3)["ood"]
    gap = batch.second - (batch.first + batch.length)
    distance = (batch.second + 5) - (batch.first + 6)
    assert torch.equal(distance, batch.length + gap - 1)
    assert (distance > 0).all()  # never 0: the headline metrics' distance is one the head does not use


def test_tiny_pool_memorises_but_does_not_generalise(tiny_pool_run):
    run = tiny_pool_run
    assert run.history["id_error"][-1] < 0.2  # learned its ten patterns
    assert run.history["ood_error"][-1] > 0.7  # fails on fresh ones
    m = matching.circuit_metrics(run.load(-1), ranks=(4,))
    assert m["mismatch"] > 0.5


def test_checkpoints_on_disk_reload_with_the_same_weights(tiny_pool_run):
    run = tiny_pool_run
    assert all(p.exists() for p in run.checkpoints)
    assert run.steps == [0, 50, 100, 150, 200, 250]
    final = run.load(-1)
    for k, v in final.state_dict().items():
        torch.testing.assert_close(v, run.model.state_dict()[k])
    assert not torch.equal(run.load(0).embed.W_E, final.embed.W_E)


def test_training_is_seeded():
    cfg = TrainConfig(steps=20, checkpoint_every=10, n_test=32)
    a = train_copy_model(TASK, train=cfg, device="cpu")
    b = train_copy_model(TASK, train=cfg, device="cpu")
    assert a.history["ood_error"] == b.history["ood_error"]
    assert a.history["train_loss"][1:] == b.history["train_loss"][1:]  # [0] is NaN: no steps yet
    torch.testing.assert_close(a.model.embed.W_E, b.model.embed.W_E)
    assert torch.get_num_threads() >= 1


def test_rejects_mismatched_model():
    from toyattn.circuits.copy_task import default_model_config

    with pytest.raises(ValueError, match="does not fit the task"):
        train_copy_model(TASK, model_config=default_model_config(CopyTaskConfig(vocab_size=30)), device="cpu")


@pytest.mark.gpu
def test_trains_on_gpu():
    run = train_copy_model(TASK, train=TrainConfig(steps=10, checkpoint_every=5, n_test=16), device="cuda")
    assert run.model.device.type == "cuda"
    assert run.state_dict(-1)["embed.W_E"].device.type == "cpu"
