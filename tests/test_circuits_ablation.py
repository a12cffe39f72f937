"""toyattn.circuits.ablation: the interventions do what they say on small models, and on trained copying models
the robust causal claims of lesson 5 hold on every seed that learned the induction circuit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toyattn.circuits.ablation import ablate_head, orthonormal_basis, project_out, random_subspace
from toyattn.circuits.copy_scoring import (
    copy_accuracy,
    copy_loss,
    copy_positions,
    corrupt_first_copy,
    offset_parity_mask,
)
from toyattn.circuits.copy_task import CopyTaskConfig, TrainConfig, make_test_sets, train_copy_model
from toyattn.circuits.head_circuits import head_factors, key_directions
from toyattn.heads.weights import fold_norm
from toyattn.models.transformer import Transformer, TransformerConfig
from toyattn.sentences.interventions import patch_activation, patch_positions

TASK = CopyTaskConfig()


def small_model(n_heads=2):
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=7, max_len=9, d_model=8, n_layers=2, n_heads=n_heads))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))  # non-zero biases
    return model


def test_zero_ablation_silences_exactly_one_head():
    model = small_model()
    tokens = torch.randint(0, 7, (3, 9), generator=torch.Generator().manual_seed(0))
    _, cache = model.run_with_cache(tokens)
    attn = model.blocks[0].attn
    z = cache["blocks.0.attn.hook_z"].clone()
    z[:, :, 1] = 0
    out = torch.einsum("bqhe,hed->bqd", z, attn.W_O) + attn.b_O
    expect = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_attn_out", lambda t, hook: out)])
    torch.testing.assert_close(ablate_head(model, tokens, 0, 1, "zero"), expect)
    assert not torch.allclose(ablate_head(model, tokens, 0, 0, "zero"), expect)


def test_mean_ablation_uses_the_per_position_mean_of_the_reference():
    model = small_model()
    g = torch.Generator().manual_seed(1)
    tokens, ref = torch.randint(0, 7, (3, 9), generator=g), torch.randint(0, 7, (50, 9), generator=g)
    _, cache = model.run_with_cache(ref, names_filter="blocks.1.attn.hook_z")
    mean = cache["blocks.1.attn.hook_z"][:, :, 0].mean(0)

    def put(z, hook):
        z = z.clone()
        z[:, :, 0] = mean
        return z

    expect = model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_z", put)])
    torch.testing.assert_close(ablate_head(model, tokens, 1, 0, "mean", reference=ref), expect)
    # A batch that is its own reference: the ablated head's output no longer depends on the sequence.
    same = ablate_head(model, tokens[:1].expand(4, 9), 1, 0, "mean")
    assert same.shape == (4, 9, 7)


def test_bad_arguments_are_named():
    model = small_model()
    tokens = torch.zeros(1, 9, dtype=torch.long)
    with pytest.raises(ValueError, match="head must be in"):
        ablate_head(model, tokens, 0, 2)
    with pytest.raises(ValueError, match="no layer 5"):
        ablate_head(model, tokens, 5, 0)
    with pytest.raises(ValueError, match="mode"):
        ablate_head(model, tokens, 0, 0, "half")
    with pytest.raises(ValueError, match="orthonormal"):
        project_out(model, tokens, 0, torch.ones(8, 2))


def test_project_out_removes_the_subspace_and_nothing_else():
    model = small_model()
    tokens = torch.randint(0, 7, (2, 9), generator=torch.Generator().manual_seed(2))
    B = random_subspace(8, 3, torch.Generator().manual_seed(3))
    assert torch.allclose(B.T @ B, torch.eye(3, dtype=B.dtype), atol=1e-10)
    seen = {}
    with model.hooks([("blocks.1.hook_resid_pre", lambda t, hook: seen.__setitem__("x", t))]):
        project_out(model, tokens, 0, B)
    _, cache = model.run_with_cache(tokens)
    out = cache["blocks.0.hook_attn_out"].double()
    expect = cache["blocks.0.hook_resid_pre"].double() + out - (out @ B) @ B.T
    torch.testing.assert_close(seen["x"].double(), expect, rtol=1e-5, atol=1e-6)
    full = orthonormal_basis(torch.eye(8))
    torch.testing.assert_close(project_out(model, tokens, 0, full),
                               model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_attn_out", lambda t, hook: 0 * t)]))


# (pool size, seed, torch threads) of lesson-length runs: two seeds, fresh patterns seed 0 (the lecture's
# run, also trained with 2 threads) and a pool of 1000 patterns seed 2 (the problem set's run). On the
# machine this was written on, all of them learned the circuit in 600 steps (fresh seeds 1 and 2 had
# not yet: benchmarks/results/pool_size_sweep.json). Two threads change the floating-point sums, so the
# run itself can differ from the 1-thread one; the lesson names these runs where it cites the tests.
RUNS = ((None, 0, 1), (None, 0, 2), (1000, 2, 1))


# Whether a given seed learns in 600 steps depends on the machine; where fewer than two seeds of RUNS
# did, these are trained in turn until two have, so the claims are always tested on two learned seeds.
SPARE_RUNS = ((1000, 0, 1), (None, 3, 1), (1000, 4, 1))


def _train(pool, seed, threads):
    return train_copy_model(TASK, pool_size=pool, train=TrainConfig(seed=seed, n_test=256, cpu_threads=threads),
                            device="cpu")


@pytest.fixture(scope="module")
def trained():
    learned = {}  # (pool, seed, threads) -> model of each run that learned the rule
    for spec in RUNS:
        run = _train(*spec)
        if run.history["ood_error"][-1] < 0.2:
            learned[spec] = run.model
    for spec in SPARE_RUNS:
        if len({seed for _, seed, _ in learned}) >= 2:
            break
        run = _train(*spec)
        if run.history["ood_error"][-1] < 0.2:
            learned[spec] = run.model
    assert len({seed for _, seed, _ in learned}) >= 2, (
        f"only {sorted(learned)} learned the circuit in 600 steps; the lesson's claims need two learned seeds")
    return list(learned.values()), make_test_sets(TASK, 256, seed=99)["ood"]


def test_ablating_the_previous_token_head_collapses_induction_on_every_learned_seed(trained):
    models, batch = trained
    for model in models:
        clean = copy_accuracy(model(batch.tokens), batch)
        for mode in ("zero", "mean"):
            assert copy_accuracy(ablate_head(model, batch.tokens, 0, 0, mode), batch) < 0.5 * clean


def test_patching_the_previous_token_head_mends_where_and_not_what(trained):
    models, batch = trained
    bad = corrupt_first_copy(batch, TASK.vocab_size, torch.Generator().manual_seed(0))
    even, odd = offset_parity_mask(batch, 0), offset_parity_mask(batch, 1)
    first = copy_positions(batch, "first")
    for model in models:
        clean, corrupted = model(batch.tokens), model(bad)
        patched = patch_activation(model, bad, batch.tokens, "blocks.0.attn.hook_z")
        keys_only = patch_positions(model, bad, batch.tokens, "blocks.0.attn.hook_z", first)

        def share(metric, logits, clean=clean, corrupted=corrupted):  # 0: as corrupted, 1: as clean
            return (metric(logits, batch, even) - metric(corrupted, batch, even)) / (
                metric(clean, batch, even) - metric(corrupted, batch, even))

        assert share(copy_accuracy, patched) > 0.5 and share(copy_loss, patched) > 0.5
        assert share(copy_accuracy, keys_only) > 0.5  # the first copy is where the message is read
        assert copy_accuracy(patched, batch, odd) < 0.3  # the copied token itself was corrupted
        assert copy_accuracy(keys_only, batch, odd) < 0.3  # the first-copy patch does not mend what to copy either


def test_shared_subspace_projection_hurts_more_than_most_random_ones(trained):
    models, batch = trained
    g = torch.Generator().manual_seed(0)
    for model in models:
        keys = torch.tensor(key_directions(head_factors(model, 1, 0))[:, :4])
        shared = copy_accuracy(project_out(model, batch.tokens, 0, keys), batch)
        rand = [copy_accuracy(project_out(model, batch.tokens, 0, random_subspace(32, 4, g)), batch) for _ in range(10)]
        assert np.mean(shared < np.array(rand)) >= 0.8


def test_the_standard_circuit_tools_see_the_circuit_on_every_learned_seed(trained):
    from toyattn.circuits import composition, matching

    models, _ = trained
    k_base, k_std = composition.random_composition_baseline(32, 32, n_runs=100)
    m_base, m_std = matching.random_baseline(32, 4, n_runs=50)
    for model in models:
        w, r = head_factors(model, 0, 0), head_factors(model, 1, 0)
        W_ov, W_qk = w.ov().numpy(), matching.qk_circuit(r.W_Q[0], r.W_K[0])
        assert composition.k_composition(W_ov, W_qk) > k_base + 4 * k_std
        assert matching.qk_ov_matching(W_qk, W_ov, 4) > m_base + 2 * m_std
        # The induction head copies: its full OV circuit (norm gains folded in) has mostly positive eigenvalues.
        W_E = model.embed.W_E.detach().double().numpy()
        W_U = fold_norm(model.unembed.weight.detach().double().T, model.ln_final.weight.detach().double(), center=True).numpy()
        assert composition.copying_eigen_score(W_E, r.ov().numpy(), W_U) > 0.5
        assert composition.copying_top1(composition.full_ov_circuit(W_E, r.ov().numpy(), W_U)) > 0.5
        # The previous-token head's direct path anti-copies (lesson 5, section 7 prints it): only the sign is asserted.
        assert composition.copying_eigen_score(W_E, w.ov().numpy(), W_U) < 0
        # The previous-token head's positional QK circuit prefers distance 1.
        attn = model.blocks[0].attn
        with torch.no_grad():
            normed = model.blocks[0].ln1(model.embed.W_E)
            q = (normed @ attn.W_Q[0] + attn.b_Q[0]).mean(0).double().numpy()
            k = (normed @ attn.W_K[0] + attn.b_K[0]).mean(0).double().numpy()
        assert composition.positional_qk_scores(q, k, None, None, range(32)).argmax() == 1


def test_mean_ablation_with_a_precomputed_mean_equals_the_reference_run():
    model = small_model()
    tokens = torch.randint(0, 7, (5, 9), generator=torch.Generator().manual_seed(4))
    _, cache = model.run_with_cache(tokens, names_filter="blocks.0.attn.hook_z")
    mean = cache["blocks.0.attn.hook_z"][:, :, 1].mean(0)
    torch.testing.assert_close(ablate_head(model, tokens, 0, 1, "mean", mean_z=mean), ablate_head(model, tokens, 0, 1, "mean"))
    with pytest.raises(ValueError, match="mean_z"):
        ablate_head(model, tokens, 0, 1, "zero", mean_z=mean)
    with pytest.raises(ValueError, match="mean_z"):
        ablate_head(model, tokens, 0, 1, "mean", mean_z=mean[:3])
