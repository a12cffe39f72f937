"""The course's one training loop, :func:`fit`: optimizer steps on a loss, with threads, progress and a loss history.

Every lesson that trains (1, 3 and 4) calls :func:`fit`; what differs between them is data: the task
(a model, its batches and a loss function) and a few settings. As in nanoGPT, where ``model.py``
holds the model and ``train.py`` the loop, the models live in :mod:`toyattn.models`, each lesson's
task next to its lesson (lesson 1: :mod:`toyattn.sentences.training`, lesson 3:
:mod:`toyattn.symmetry.training`, lesson 4: :mod:`toyattn.circuits.copy_task`) and the loop here.
Lesson 1 (``notebooks/01_attention_toy``) is where students first meet it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from toyattn.device import cpu_threads
from toyattn.progress import progress as progress_bar
from toyattn.validate import positive_int

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
        positive_int(value, name)


def _is_multiple(taken: int, every: int | None) -> bool:
    return every is not None and taken % every == 0
