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

from toyattn.device import get_device
from toyattn.validate import positive_int


def synchronize(device: torch.device) -> None:
    """Wait until ``device`` has finished its queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def median_seconds(
    work: Callable[[], object],
    device: torch.device,
    *,
    repeats: int = 5,
    warmup: int = 1,
    sync: Callable[[], object] | None = None,
) -> float:
    """The median wall time of ``work()`` on ``device`` over ``repeats`` runs, after ``warmup`` untimed runs.

    ``sync`` is what to wait for before reading the clock: by default the whole device (:func:`synchronize`).
    """
    positive_int(repeats, "repeats")
    positive_int(warmup, "warmup", minimum=0)
    wait = sync if sync is not None else (lambda: synchronize(device))
    for _ in range(warmup):
        work()
    wait()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        wait()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_seconds(size: int, device: str | torch.device, *, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Median time of one ``[size, size] @ [size, size]`` product on ``device`` (inputs already there)."""
    positive_int(size, "size")
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
