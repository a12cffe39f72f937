"""The copy task's runs trained together end where each run alone ends (float64), and bad settings are refused."""

from __future__ import annotations

import pytest
import torch

from toyattn.circuits.copy_task import TrainConfig, train_copy_model
from toyattn.circuits.sweeps import train_copy_models

RUNS = [(0, 10), (1, None), (2, 100)]  # a memorising pool, fresh patterns, a middle pool


@pytest.fixture
def float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


@pytest.mark.slow
def test_runs_trained_together_match_runs_trained_alone_in_float64(float64):
    schedule = dict(steps=60, checkpoint_every=20, n_test=64)
    alone = [train_copy_model(pool_size=pool, train=TrainConfig(seed=seed, **schedule), device="cpu", progress=False)
             for seed, pool in RUNS]
    together = train_copy_models(runs=RUNS, train=TrainConfig(**schedule), device="cpu", progress=False)
    for a, b in zip(alone, together, strict=True):
        assert a.model.embed.W_E.dtype == torch.float64
        assert (a.train.seed, a.pool_size) == (b.train.seed, b.pool_size) and a.steps == b.steps
        for (name, pa), pb in zip(a.model.named_parameters(), b.model.parameters(), strict=True):
            assert torch.allclose(pa, pb, rtol=0, atol=1e-8), f"{name}: max |diff| {(pa - pb).abs().max():.1e}"
        for key in ("id_error", "ood_error"):
            # Weights agree to ~1e-13 here, so predictions agree; a tie broken the other way by rounding on
            # another machine would move an error by one token in a few hundred, hence the tolerance.
            assert a.history[key] == pytest.approx(b.history[key], abs=0.01), key
        assert a.history["train_loss"][1:] == pytest.approx(b.history["train_loss"][1:], abs=1e-8)
        for ca, cb in zip(a.checkpoints, b.checkpoints, strict=True):
            assert all(torch.allclose(ca[k], cb[k], rtol=0, atol=1e-8) for k in ca)


def test_one_run_together_is_that_run():
    schedule = TrainConfig(steps=5, checkpoint_every=5, n_test=16, seed=3)
    alone = train_copy_model(pool_size=20, train=schedule, device="cpu", progress=False)
    (together,) = train_copy_models(runs=[(3, 20)], train=schedule, device="cpu", progress=False)
    for pa, pb in zip(alone.model.parameters(), together.model.parameters(), strict=True):
        assert torch.allclose(pa, pb, rtol=0, atol=1e-6)


@pytest.mark.parametrize("runs, match", [
    ([], "at least one"),
    ([(0, 0)], "pool_size must be a positive integer or None"),
    ([(-1, None)], "seed must be an integer >= 0"),
    ([0, 1], "pairs"),
])
def test_bad_runs_are_refused_with_the_fix(runs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        train_copy_models(runs=runs, train=TrainConfig(steps=1, n_test=4), device="cpu", progress=False)
