"""Lesson 1's task on the course's loop: training the one-head model on the two sentences, with two recipes.

Taught in lesson 1 (``notebooks/01_attention_toy``); each epoch is one or two steps of
:func:`toyattn.training.fit`. The two recipes:

* :data:`ORIGINAL_RECIPE`: that of the research notebook lesson 1 grew from (kept outside this
  repository; Adam, lr 1e-4, 5000 epochs, one optimizer step per sentence: 10,000 small steps);
* :data:`DEFAULT_RECIPE`: the course's (Adam, lr 0.03, both sentences in one batch, 300 steps).
  With two sentences "the whole data set" fits in one batch, so there is no reason to take a
  step per sentence, and a model this small tolerates a learning rate 300 times larger.
  ``benchmarks/bench_attention_toy.py`` measures how much sooner it reaches the same loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from toyattn.device import cpu_threads, get_device, seed_everything
from toyattn.device.timing import median_seconds
from toyattn.models.one_head import OneHeadAttention
from toyattn.sentences.corpus import ToyCorpus
from toyattn.stacked import StackedModels
from toyattn.training import History, fit
from toyattn.validate import positive_int


@dataclass(frozen=True)
class Recipe:
    """How to train: optimizer settings and whether each step sees the whole batch.

    Args:
        lr: Adam's learning rate.
        epochs: passes over the data. ``full_batch=True``: one step per epoch; ``False``: one step
            per sentence per epoch (the way of the research notebook lesson 1 grew from).
        full_batch: all sentences in every step.
        name: a short label for tables and plots.
    """

    lr: float
    epochs: int
    full_batch: bool = True
    name: str = "custom"

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"The learning rate must be positive, got {self.lr}.")
        positive_int(self.epochs, "epochs")


ORIGINAL_RECIPE = Recipe(lr=1e-4, epochs=5000, full_batch=False, name="original: per-sentence Adam, lr 1e-4, 5000 epochs")
DEFAULT_RECIPE = Recipe(lr=3e-2, epochs=300, full_batch=True, name="default: full-batch Adam, lr 0.03, 300 steps")


def next_token_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over every position of every sentence in ``inputs``."""
    logits = model(inputs)
    # Cross-entropy on logits (log-softmax inside) rather than log(softmax): no log(0) = -inf.
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def full_batch_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean next-token cross-entropy over every position of every sentence (no gradient)."""
    with torch.no_grad():
        return float(next_token_loss(model, inputs, targets))


def train(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    recipe: Recipe = DEFAULT_RECIPE,
    *,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    stop_below: float | None = None,
    threads: int | None = 1,
) -> list[float]:
    """Train ``model`` in place with Adam and return the loss history, one float per epoch.

    Each epoch is one step of :func:`fit` on the whole batch, or one step per sentence.

    Args:
        model: maps ``[batch, pos]`` token ids to logits ``[batch, pos, vocab]``.
        inputs, targets: ``[batch, pos]`` int64 ids (``ToyCorpus.tensors()``).
        recipe: :data:`DEFAULT_RECIPE`, :data:`ORIGINAL_RECIPE` or your own :class:`Recipe`.
        device: where to train (default :func:`toyattn.device.get_device`); the model and the
            data are moved there.
        progress: show a progress bar (default: only inside a notebook).
        stop_below: stop early once an epoch's loss is below this value (used by the benchmark
            to time "reaching a loss"); ``None`` trains for ``recipe.epochs``.
        threads: CPU threads while training on the CPU (default 1: for tiny models as fast as several
            threads or faster, and less disturbed by other programs; see
            :func:`toyattn.device.cpu_threads`); ``None`` keeps PyTorch's setting. Ignored on a GPU.

    Returns:
        Loss per epoch: the mean cross-entropy over all positions, measured before that epoch's
        update(s); for the per-sentence recipe, the mean of the sentences' losses in that epoch.

    The result is deterministic for a given model initialisation: seed before building the model
    (:func:`toyattn.device.seed_everything`), or use :func:`train_one_head`.
    """
    epoch_losses, _ = _train(model, inputs, targets, recipe, get_device(device), progress, stop_below, threads)
    return epoch_losses


def _train(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, recipe: Recipe, dev: torch.device,
    progress: bool | None, stop_below: float | None, threads: int | None,
) -> tuple[list[float], History]:
    """:func:`train` on a device already chosen; also returns :func:`fit`'s history (its ``seconds``)."""
    _check_token_tensors(inputs, targets)
    model.to(dev)
    inputs, targets = inputs.to(dev), targets.to(dev)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    batches = _batches(recipe, inputs)
    per_epoch = len(batches)

    def loss_at(step: int) -> torch.Tensor:
        batch = batches[step % per_epoch]
        return next_token_loss(model, inputs[batch], targets[batch])

    def epoch_below(losses: Sequence[torch.Tensor]) -> bool:  # stop_below judges whole epochs only
        return len(losses) % per_epoch == 0 and float(_epoch_means(losses[-per_epoch:], per_epoch)) < stop_below

    history = fit(
        loss_at, optimizer, recipe.epochs * per_epoch, device=dev, threads=threads, progress=progress,
        stop=None if stop_below is None else epoch_below,
    )
    model.eval()
    return _epoch_means(history.losses, per_epoch).tolist(), history


def train_together(
    models: Sequence[nn.Module],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    recipe: Recipe = DEFAULT_RECIPE,
    *,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    threads: int | None = 1,
) -> list[list[float]]:
    """Train several models of one architecture in place, all in the same batched steps; one loss history each.

    The same steps as calling :func:`train` on each model in turn (same recipe, same data, same order
    of batches, up to floating-point rounding), computed as one stacked model (:class:`toyattn.stacked.StackedModels`): each step is one
    batched call per operation for all runs instead of one call per run, which is what a GPU needs to
    pay off (lesson 0) and saves call overhead on a CPU too. Returns, per model, its loss per epoch
    as :func:`train` does. (No ``stop_below``: the runs would stop at different steps.)
    """
    per_run, _ = _train_together(models, inputs, targets, recipe, get_device(device), progress, threads)
    return per_run


def _train_together(
    models: Sequence[nn.Module], inputs: torch.Tensor, targets: torch.Tensor, recipe: Recipe, dev: torch.device,
    progress: bool | None, threads: int | None,
) -> tuple[list[list[float]], History]:
    """:func:`train_together` on a device already chosen; also returns :func:`fit`'s history."""
    _check_token_tensors(inputs, targets)
    models = [model.to(dev) for model in models]
    inputs, targets = inputs.to(dev), targets.to(dev)
    stacked = StackedModels(models)
    optimizer = torch.optim.Adam(stacked.parameters(), lr=recipe.lr)
    batches = _batches(recipe, inputs)
    per_epoch = len(batches)

    def loss_at(step: int) -> torch.Tensor:  # [n_runs]: one loss per run
        batch = batches[step % per_epoch]
        return stacked.map(lambda model: next_token_loss(model, inputs[batch], targets[batch]))

    history = fit(loss_at, optimizer, recipe.epochs * per_epoch, device=dev, threads=threads, progress=progress,
                  desc=f"{len(models)} runs together")
    stacked.write_back(models)
    for model in models:
        model.eval()
    return [_epoch_means(history.losses[:, i], per_epoch).tolist() for i in range(len(models))], history


def _batches(recipe: Recipe, inputs: torch.Tensor) -> list[slice]:
    """The slices of one epoch: full batch, one step on all sentences; per sentence, a [1, pos] slice at a time, in order."""
    return [slice(None)] if recipe.full_batch else [slice(i, i + 1) for i in range(inputs.shape[0])]


def _epoch_means(losses: Sequence[torch.Tensor] | torch.Tensor, per_epoch: int) -> torch.Tensor:
    """Mean loss of each epoch of ``per_epoch`` steps: ``[epochs * per_epoch] -> [epochs]``.

    The steps are added one after another, in order, as a running sum over the epoch would.
    """
    by_step = torch.stack(list(losses)) if not isinstance(losses, torch.Tensor) else losses
    return sum(by_step.view(-1, per_epoch).unbind(dim=1)) / per_epoch


def _check_token_tensors(inputs: torch.Tensor, targets: torch.Tensor) -> None:
    if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise TypeError("inputs and targets must be tensors of token ids; use corpus.tensors().")
    if inputs.shape != targets.shape or inputs.dim() != 2:
        raise ValueError(
            f"inputs and targets must both be [batch, pos] with the same shape, got "
            f"{tuple(inputs.shape)} and {tuple(targets.shape)}."
        )


@dataclass
class OneHeadRun:
    """What :func:`train_one_head` returns: the model, its data, its loss history and the time taken."""

    model: OneHeadAttention
    corpus: ToyCorpus
    inputs: torch.Tensor
    targets: torch.Tensor
    losses: list[float]
    seconds: float
    recipe: Recipe = field(default=DEFAULT_RECIPE)


def train_one_head(
    *,
    d_head: int = 20,
    positions: bool = True,
    skip: bool = True,
    recipe: Recipe = DEFAULT_RECIPE,
    seed: int = 77,
    corpus: ToyCorpus | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    threads: int | None = 1,
) -> OneHeadRun:
    """Seed, build lesson 1's :class:`OneHeadAttention` for ``corpus`` and train it (lesson 1).

    The same arguments give the same model every run on the same machine, PyTorch version and thread
    count (another CPU or a GPU rounds differently, and a run may then end elsewhere).
    """
    corpus = corpus or ToyCorpus()
    dev = get_device(device)
    seed_everything(seed)
    model = OneHeadAttention.from_corpus(corpus, d_head=d_head, positions=positions, skip=skip).to(dev)
    inputs, targets = corpus.tensors(dev)
    losses, history = _train(model, inputs, targets, recipe, dev, progress, None, threads)
    return OneHeadRun(model, corpus, inputs, targets, losses, history.seconds, recipe)


def train_one_heads(
    seeds: Sequence[int],
    *,
    d_head: int = 20,
    positions: bool = True,
    skip: bool = True,
    recipe: Recipe = DEFAULT_RECIPE,
    corpus: ToyCorpus | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    threads: int | None = 1,
) -> list[OneHeadRun]:
    """:func:`train_one_head` for every seed in ``seeds``, all trained together (:func:`train_together`); lesson 1's sweep.

    Each model starts from the weights ``train_one_head(seed=s)`` would build and takes the steps it
    would take, up to floating-point rounding; a seed whose training amplifies rounding can still end
    elsewhere (stuck instead of solved), as it can on another machine or thread count. Every result's
    ``seconds`` is the time of the whole batch.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one seed, e.g. range(12).")
    corpus = corpus or ToyCorpus()
    dev = get_device(device)
    models = []
    for seed in seeds:
        seed_everything(seed)
        models.append(OneHeadAttention.from_corpus(corpus, d_head=d_head, positions=positions, skip=skip).to(dev))
    inputs, targets = corpus.tensors(dev)
    losses, history = _train_together(models, inputs, targets, recipe, dev, progress, threads)
    return [OneHeadRun(m, corpus, inputs, targets, run_losses, history.seconds, recipe) for m, run_losses in zip(models, losses, strict=True)]


# ---------------------------------------------------------------------------------------------
# One step, timed and counted (lesson 0: when does a GPU help?)
# ---------------------------------------------------------------------------------------------


def toy_step_seconds(device: str | torch.device, *, steps: int = 30, seed: int = 0, threads: int = 1) -> float:
    """Median time of one full-batch Adam step of lesson 1's one-head model on ``device`` (``threads`` CPU threads on a CPU).

    One step is what lesson 1's training repeats 300 times: a forward pass on the two sentences, the
    loss, a backward pass and Adam's update. On a GPU each timed step ends by waiting for the device
    (:func:`median_seconds`), which the training loop itself does only once, at the end.
    """
    positive_int(steps, "steps")
    dev = get_device(device)
    corpus = ToyCorpus()
    seed_everything(seed)
    model = OneHeadAttention.from_corpus(corpus, d_head=20).to(dev)
    inputs, targets = corpus.tensors(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)

    def step() -> None:
        optimizer.zero_grad()
        next_token_loss(model, inputs, targets).backward()
        optimizer.step()

    positive_int(threads, "threads")
    with cpu_threads(threads if dev.type == "cpu" else None):
        return median_seconds(step, dev, repeats=steps, warmup=3)


def toy_step_flops() -> int:
    """Floating-point operations in the matrix products of one training step of lesson 1's toy, counted by torch.

    ``torch.utils.flop_counter.FlopCounterMode`` counts matrix products (forward and backward) only; the
    softmax, the loss and Adam's update are elementwise work it does not count.
    """
    corpus = ToyCorpus()
    seed_everything(0)
    model = OneHeadAttention.from_corpus(corpus, d_head=20)
    inputs, targets = corpus.tensors("cpu")
    with FlopCounterMode(display=False) as counter:
        next_token_loss(model, inputs, targets).backward()
    return counter.get_total_flops()
