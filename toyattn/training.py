"""The course's one training loop, :func:`fit`, and lesson 1's recipes that run on it.

Every lesson that trains (1, 3 and 4) calls :func:`fit`; what differs between them is data: the task
(a model, its batches and a loss function) and a few settings. As in nanoGPT, where ``model.py``
holds the model and ``train.py`` the loop, the models live in :mod:`toyattn.models`, each lesson's
task next to its lesson (lesson 3: :mod:`toyattn.symmetry_training`, lesson 4:
:mod:`toyattn.induction`) and the loop here.

Lesson 1 (``notebooks/01_attention_toy``) teaches the loop, with two recipes for its one-head model:

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .corpus import ToyCorpus
from .device import cpu_threads, get_device, seed_everything
from .models.one_head import OneHeadAttention
from .progress import progress as progress_bar

# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


@dataclass
class History:
    """What :func:`fit` returns: the loss of every step taken and the loop's wall time.

    Attributes:
        losses: ``[steps_taken]`` for one model, ``[steps_taken, n_runs]`` for stacked runs; on the CPU.
        seconds: wall time of the loop, the ``record`` calls included.
    """

    losses: torch.Tensor
    seconds: float

    def __len__(self) -> int:
        return len(self.losses)


def fit(
    loss_at: Callable[[int], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    steps: int,
    *,
    device: str | torch.device,
    threads: int | None = 1,
    progress: bool | None = None,
    desc: str = "training",
    record: Callable[[int, Sequence[torch.Tensor]], None] | None = None,
    record_every: int | None = None,
    stop: Callable[[Sequence[torch.Tensor]], bool] | None = None,
) -> History:
    """Take up to ``steps`` optimizer steps, each on the loss ``loss_at(step)``; return the loss history.

    Every step does the same four things in the same order: compute the loss (``loss_at(step)``,
    ``step`` counting from 0, picks the batch and runs the model), clear the gradients,
    backpropagate, update. ``loss_at`` returns a scalar, or one loss per run when independent runs
    are stacked into one batched model (lesson 3); then their sum is backpropagated, which gives each
    run its own gradient because the runs share no weights.

    Args:
        loss_at: the loss of step ``step``, with the graph to backpropagate through.
        optimizer: built on the model's parameters by the caller (each lesson picks its own).
        steps: the most steps to take.
        device: where the model lives; ``threads`` applies on the CPU only.
        threads: torch threads while training on the CPU, restored afterwards (default 1: for the
            course's tiny models synchronising threads costs more than the arithmetic; see
            :func:`toyattn.device.cpu_threads`); ``None`` keeps torch's setting.
        progress: show a progress bar (default: only inside a notebook).
        desc: the progress bar's label.
        record: called as ``record(steps_taken, losses)`` before the first step (``0``, no losses
            yet), after every ``record_every`` steps and after the last step taken, once per step
            count; this is where a lesson takes its checkpoints and scores. ``losses`` holds every
            step's detached loss so far (read it, do not change it).
        record_every: steps between records; ``None``: only before the first step and after the last.
        stop: asked after every step with the losses so far; ``True`` ends training after that
            step (and its record). Reading a loss waits for the GPU, so pass it only when needed.

    Returns:
        :class:`History`: every step's loss and the loop's wall time.

    The loop draws no random numbers itself: a run is deterministic when the caller seeds before
    building the model and the data (:func:`toyattn.device.seed_everything`) and ``loss_at`` takes
    its batches in order or from a seeded generator.
    """
    _check_schedule(steps, record_every)
    on_cpu = torch.device(device).type == "cpu"
    losses: list[torch.Tensor] = []
    start = time.perf_counter()
    with cpu_threads(threads if on_cpu else None):
        if record is not None:
            record(0, losses)
        for step in progress_bar(range(steps), total=steps, desc=desc, enabled=progress):
            loss = loss_at(step)
            optimizer.zero_grad(set_to_none=True)
            # Stacked runs share no weights: the gradient of their summed loss is each run's own.
            (loss if loss.dim() == 0 else loss.sum()).backward()
            optimizer.step()
            losses.append(loss.detach())
            taken = step + 1
            stopping = stop is not None and stop(losses)
            if record is not None and (taken == steps or stopping or _is_multiple(taken, record_every)):
                record(taken, losses)
            if stopping:
                break
    seconds = time.perf_counter() - start
    return History(torch.stack(losses).cpu(), seconds)


def _check_schedule(steps: int, record_every: int | None) -> None:
    for name, value in (("steps", steps), ("record_every", 1 if record_every is None else record_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def _is_multiple(taken: int, every: int | None) -> bool:
    return every is not None and taken % every == 0


# ---------------------------------------------------------------------------------------------
# Lesson 1: the one-head model on the toy corpus
# ---------------------------------------------------------------------------------------------


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
        threads: CPU threads while training on the CPU (default 1, fastest for tiny models; see
            :func:`cpu_threads`); ``None`` keeps PyTorch's setting. Ignored on a GPU.

    Returns:
        Loss per epoch: the mean cross-entropy over all positions, measured before that epoch's
        update(s); for the per-sentence recipe, the mean of the sentences' losses in that epoch.

    The result is deterministic for a given model initialisation: seed before building the model
    (:func:`toyattn.device.seed_everything`), or use :func:`train_one_head`.
    """
    _check_token_tensors(inputs, targets)
    dev = get_device(device)
    model.to(dev)
    inputs, targets = inputs.to(dev), targets.to(dev)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    # Full batch: one step on all sentences. Per sentence: a [1, pos] slice at a time, in order.
    batches = [slice(None)] if recipe.full_batch else [slice(i, i + 1) for i in range(inputs.shape[0])]
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
    return _epoch_means(history.losses, per_epoch).tolist()


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
