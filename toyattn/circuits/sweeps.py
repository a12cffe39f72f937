"""Lessons 4-5's copy task for many runs at once: seeds and pool sizes trained together as one stacked model.

:func:`train_copy_models` is :func:`toyattn.circuits.copy_task.train_copy_model` for a list of (seed, pool size)
runs, all taking the same batched steps (:class:`toyattn.stacked.StackedModels`). Each run keeps its
own initial weights, its own pool, its own batches and its own test sets, drawn from its seed exactly
as the run alone draws them, so each run ends where it would end alone, up to floating-point rounding
(``tests/test_circuits_sweeps.py`` compares them in float64). ``benchmarks/bench_pool_size.py`` trains
its sweep this way and ``benchmarks/bench_stacked_runs.py`` times both ways side by side.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from toyattn.circuits.copy_task import (
    CopyTaskConfig,
    CopyTaskRun,
    TrainConfig,
    _check_model_fits,
    _check_settings,
    _save_checkpoint,
    copy_error,
    default_model_config,
    make_pool,
    make_test_sets,
    sample_copy_batch,
)
from toyattn.device import get_device, seed_everything
from toyattn.models.transformer import Transformer, TransformerConfig
from toyattn.stacked import StackedModels
from toyattn.training import fit


def train_copy_models(
    task: CopyTaskConfig | None = None,
    *,
    runs: Sequence[tuple[int, int | None]],
    train: TrainConfig | None = None,
    model_config: TransformerConfig | None = None,
    device: torch.device | str | None = None,
    progress: bool | None = None,
) -> list[CopyTaskRun]:
    """Train one copy-task model per ``(seed, pool_size)`` in ``runs``, all together; one :class:`CopyTaskRun` each.

    ``train`` holds the shared schedule (its ``seed`` is replaced by each run's). Checkpoints are kept
    in memory. Every run's ``seconds`` is the wall time of the whole batch (training, checkpoints and
    error measurements of all runs).
    """
    task = task or CopyTaskConfig()
    train = train or TrainConfig()
    _check_settings(task, train)
    runs = _check_runs(runs)
    model_config = model_config or default_model_config(task)
    _check_model_fits(model_config, task)
    dev = get_device(device)

    results, generators, tests, models = [], [], [], []
    for seed, pool_size in runs:  # the same draws, in the same order, as train_copy_model makes
        seed_everything(seed)
        generators.append(torch.Generator().manual_seed(seed + 1))
        pool = make_pool(task, pool_size, torch.Generator().manual_seed(seed + 2)) if pool_size is not None else None
        tests.append(make_test_sets(task, train.n_test, pool=pool, seed=seed + 3))
        models.append(Transformer(model_config).to(dev))
        results.append(CopyTaskRun(models[-1], model_config, task, dataclasses.replace(train, seed=seed), pool_size, pool))
    stacked = StackedModels(models)
    opt = torch.optim.AdamW(stacked.parameters(), lr=train.lr, weight_decay=train.weight_decay, betas=train.betas)

    def next_token_loss(model, tokens: torch.Tensor) -> torch.Tensor:
        logits = model(tokens[:, :-1], check=False)  # tokens are sampled valid; vmap cannot read them
        return F.cross_entropy(logits.reshape(-1, task.vocab_size), tokens[:, 1:].reshape(-1))

    def loss_at(step: int) -> torch.Tensor:  # [n_runs]: each run on its own fresh batch
        tokens = torch.stack([sample_copy_batch(task, train.batch_size, g, pool=r.pool).tokens
                              for g, r in zip(generators, results, strict=True)]).to(dev)
        return stacked.map(next_token_loss, tokens)

    def record(step: int, losses: Sequence[torch.Tensor]) -> None:
        stacked.write_back(models)  # each run's model holds its current weights
        start = results[0].steps[-1] if results[0].steps else 0
        for i, (run, model, test) in enumerate(zip(results, models, tests, strict=True)):
            since_last = [float(loss[i]) for loss in losses[start:]]
            _save_checkpoint(run, model, step, None)
            run.history["train_loss"].append(sum(since_last) / len(since_last) if since_last else float("nan"))
            run.history["id_error"].append(copy_error(model, test["id"]))
            run.history["ood_error"].append(copy_error(model, test["ood"]))

    start = time.perf_counter()
    fit(loss_at, opt, train.steps, device=dev, threads=train.cpu_threads, progress=progress,
        desc=f"{len(runs)} copy-task runs together", record=record, record_every=train.checkpoint_every)
    seconds = time.perf_counter() - start
    for run, model in zip(results, models, strict=True):
        run.seconds = seconds
        model.eval()
    return results


def _check_runs(runs: object) -> list[tuple[int, int | None]]:
    try:
        out = [(seed, pool) for seed, pool in runs]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise TypeError("runs must be a list of (seed, pool_size) pairs, e.g. [(0, 100), (1, None)].") from None
    if not out:
        raise ValueError("runs must name at least one (seed, pool_size) pair.")
    for seed, pool in out:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"a run's seed must be an integer >= 0, got {seed!r}.")
        if pool is not None and (isinstance(pool, bool) or not isinstance(pool, int) or pool < 1):
            raise ValueError(f"a run's pool_size must be a positive integer or None (fresh patterns), got {pool!r}.")
    return out
