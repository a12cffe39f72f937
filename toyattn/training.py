"""Training the toy models: full-batch, seeded, device-aware, returning the loss history.

Taught in lesson 1 (``notebooks/01_attention_toy``); the pattern (seed, build, train, read the
losses) repeats in lessons 3 and 4.

Two recipes train lesson 1's one-head model:

* :data:`ORIGINAL_RECIPE`: that of the research notebook lesson 1 grew from (kept outside this
  repository; Adam, lr 1e-4, 5000 epochs, one
  optimizer step per sentence: 10,000 small steps);
* :data:`DEFAULT_RECIPE`: the course's (Adam, lr 0.03, both sentences in one batch, 300 steps).
  With two sentences "the whole data set" fits in one batch, so there is no reason to take a
  step per sentence, and a model this small tolerates a learning rate 300 times larger.
  ``benchmarks/bench_attention_toy.py`` measures how much sooner it reaches the same loss.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .corpus import ToyCorpus
from .device import cpu_threads, get_device, seed_everything
from .models.one_head import OneHeadAttention
from .progress import progress as progress_bar


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
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}.")


ORIGINAL_RECIPE = Recipe(lr=1e-4, epochs=5000, full_batch=False, name="original: per-sentence Adam, lr 1e-4, 5000 epochs")
DEFAULT_RECIPE = Recipe(lr=3e-2, epochs=300, full_batch=True, name="default: full-batch Adam, lr 0.03, 300 steps")


def full_batch_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean next-token cross-entropy over every position of every sentence (no gradient)."""
    with torch.no_grad():
        logits = model(inputs)
        return float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)))


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

    Args:
        model: maps ``[batch, pos]`` token ids to logits ``[batch, pos, vocab]``.
        inputs, targets: ``[batch, pos]`` int64 ids (``ToyCorpus.tensors()``).
        recipe: :data:`DEFAULT_RECIPE`, :data:`ORIGINAL_RECIPE` or your own :class:`Recipe`.
        device: where to train (default :func:`toyattn.device.get_device`); the model and the
            data are moved there.
        progress: show a progress bar (default: only inside a notebook).
        stop_below: stop early once an epoch's loss is below this value (used by the benchmark
            to time "reaching a loss"); ``None`` trains for ``recipe.epochs``.
        threads: CPU threads while training on the CPU (default 1, fastest for tiny models; see
            :func:`cpu_threads`); ``None`` keeps PyTorch's setting. Ignored on a GPU.

    Returns:
        Loss per epoch: the mean cross-entropy over all positions, measured before that epoch's
        update(s); for the per-sentence recipe, the mean of the sentences' losses in that epoch.

    The result is deterministic for a given model initialisation: seed before building the model
    (:func:`toyattn.device.seed_everything`), or use :func:`train_one_head`.
    """
    if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise TypeError("inputs and targets must be tensors of token ids; use corpus.tensors().")
    if inputs.shape != targets.shape or inputs.dim() != 2:
        raise ValueError(
            f"inputs and targets must both be [batch, pos] with the same shape, got "
            f"{tuple(inputs.shape)} and {tuple(targets.shape)}."
        )
    dev = get_device(device)
    model.to(dev)
    inputs, targets = inputs.to(dev), targets.to(dev)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    # Full batch: one step on all sentences. Per sentence: a [1, pos] slice at a time.
    batches = [slice(None)] if recipe.full_batch else [slice(i, i + 1) for i in range(inputs.shape[0])]
    losses: list[torch.Tensor] = []
    with cpu_threads(threads if dev.type == "cpu" else None):
        for _ in progress_bar(range(recipe.epochs), total=recipe.epochs, desc="training", enabled=progress):
            epoch_loss = torch.zeros((), device=dev)
            for batch in batches:
                logits = model(inputs[batch])
                # Cross-entropy on logits (log-softmax inside) rather than log(softmax): no log(0) = -inf.
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets[batch].reshape(-1))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                epoch_loss = epoch_loss + loss.detach()
            epoch_loss = epoch_loss / len(batches)
            losses.append(epoch_loss)
            # Reading a value forces a GPU sync, so only do it when asked to stop early.
            if stop_below is not None and float(epoch_loss) < stop_below:
                break
    model.eval()
    return torch.stack(losses).cpu().tolist()


@dataclass
class TrainedModel:
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
) -> TrainedModel:
    """Seed, build lesson 1's :class:`OneHeadAttention` for ``corpus`` and train it (lesson 1).

    The same arguments give the same model every run (on the same device type).
    """
    corpus = corpus or ToyCorpus()
    dev = get_device(device)
    seed_everything(seed)
    model = OneHeadAttention.from_corpus(corpus, d_head=d_head, positions=positions, skip=skip).to(dev)
    inputs, targets = corpus.tensors(dev)
    start = time.perf_counter()
    losses = train(model, inputs, targets, recipe, device=dev, progress=progress, threads=threads)
    seconds = time.perf_counter() - start
    return TrainedModel(model, corpus, inputs, targets, losses, seconds, recipe)
