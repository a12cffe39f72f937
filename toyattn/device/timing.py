"""Timing work fairly on a CPU or a GPU: lesson 0's "when does a GPU help?" measurements.

Two traps make naive timings of a GPU wrong. A GPU runs asynchronously: a call returns as soon as
its work is queued, so the clock must be read only after waiting for the device
(``torch.cuda.synchronize``). And the first call on a device pays for start-up (loading kernels,
allocating memory), so each measurement is preceded by an untimed warm-up run. Every time here is
the median of a few repeats, which a busy shared machine disturbs less than the mean.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch

from toyattn.device import cpu_threads, get_device, seed_everything
from toyattn.models.one_head import OneHeadAttention
from toyattn.sentences.corpus import ToyCorpus
from toyattn.sentences.training import next_token_loss


def synchronize(device: torch.device) -> None:
    """Wait until ``device`` has finished its queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def median_seconds(work: Callable[[], object], device: torch.device, *, repeats: int = 5, warmup: int = 1) -> float:
    """The median wall time of ``work()`` on ``device`` over ``repeats`` runs, after ``warmup`` untimed runs."""
    _check_count("repeats", repeats, minimum=1)
    _check_count("warmup", warmup, minimum=0)
    for _ in range(warmup):
        work()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_seconds(size: int, device: str | torch.device, *, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Median time of one ``[size, size] @ [size, size]`` product on ``device`` (inputs already there)."""
    _check_count("size", size, minimum=1)
    dev = get_device(device)
    generator = torch.Generator().manual_seed(size)
    a = torch.randn(size, size, generator=generator, dtype=dtype).to(dev)
    b = torch.randn(size, size, generator=generator, dtype=dtype).to(dev)
    return median_seconds(lambda: a @ b, dev, repeats=repeats)


def matmul_times(sizes: Sequence[int], device: str | torch.device, *, repeats: int = 5) -> list[float]:
    """:func:`matmul_seconds` for each size, in order."""
    return [matmul_seconds(n, device, repeats=repeats) for n in sizes]


def first_win(sizes: Sequence[int], slower: Sequence[float], faster: Sequence[float]) -> int | None:
    """The smallest size from which ``faster`` takes less time than ``slower`` at that size and every larger one.

    ``None`` when it never does (or not at the largest size). "From which on" rather than "the first
    size where": a timing that wins once by noise at a small size and loses again is no crossover.
    """
    if not len(sizes) == len(slower) == len(faster):
        raise ValueError(f"sizes, slower and faster must have one entry each per size, got lengths "
                         f"{len(sizes)}, {len(slower)} and {len(faster)}.")
    crossover = None
    for n, slow, fast in zip(reversed(sizes), reversed(slower), reversed(faster), strict=True):
        if fast >= slow:
            break
        crossover = n
    return crossover


def toy_step_seconds(device: str | torch.device, *, steps: int = 30, seed: int = 0, threads: int = 1) -> float:
    """Median time of one full-batch Adam step of lesson 1's one-head model on ``device`` (``threads`` CPU threads on a CPU).

    One step is what lesson 1's training repeats 300 times: a forward pass on the two sentences, the
    loss, a backward pass and Adam's update. On a GPU each timed step ends by waiting for the device
    (:func:`median_seconds`), which the training loop itself does only once, at the end.
    """
    _check_count("steps", steps, minimum=1)
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

    _check_count("threads", threads, minimum=1)
    with cpu_threads(threads if dev.type == "cpu" else None):
        return median_seconds(step, dev, repeats=steps, warmup=3)


def toy_step_flops() -> int:
    """Floating-point operations in the matrix products of one training step of lesson 1's toy, counted by torch.

    ``torch.utils.flop_counter.FlopCounterMode`` counts matrix products (forward and backward) only; the
    softmax, the loss and Adam's update are elementwise work it does not count.
    """
    from torch.utils.flop_counter import FlopCounterMode

    corpus = ToyCorpus()
    seed_everything(0)
    model = OneHeadAttention.from_corpus(corpus, d_head=20)
    inputs, targets = corpus.tensors("cpu")
    with FlopCounterMode(display=False) as counter:
        next_token_loss(model, inputs, targets).backward()
    return counter.get_total_flops()


def _check_count(name: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
