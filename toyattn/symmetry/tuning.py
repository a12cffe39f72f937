"""How many slices of ``d_model`` the batched Gram products use on a GPU: timed once per shape, then remembered (lesson 3).

A head's three Grams (:func:`toyattn.symmetry.traces.grams`) are ``[d_head, d_head]`` outputs of products with a
long inner dimension ``d_model``. At a 7B layer shape (32 heads, ``d_head = 128``, ``d_model = 4096``) one
product per head may be too little independent work for a large GPU: the one H100 run on record
(``benchmarks/results/h100_reference.md``) took 3.24x the time its matrix-multiply rate allows for one layer.
Cutting ``d_model`` into slices gives the GPU more products of the same total size. Whether that helps, and
which cut is fastest, depends on the GPU, the shape and the library, so, like ``torch.backends.cudnn.benchmark``,
the first call at a new shape times every candidate on the data it was given and keeps the fastest for that
shape. The scores depend on the choice only through rounding (the slices' Grams are added up; tested against
the unsliced products to 1e-12 in float64): a process that chose differently may differ in the last digits.

Only CUDA devices and heads of at least :data:`TUNE_MIN_SIZE` weights are timed; everything else uses one
slice (``parts = 1``), so CPU results and timings are as without this module.
"""

from __future__ import annotations

import torch

from toyattn.device.timing import median_seconds

__all__ = ["CANDIDATE_PARTS", "TUNE_MIN_SIZE", "best_parts", "candidate_parts", "clear_cache", "fastest_parts"]

#: Slices of ``d_model`` tried (those that divide ``d_model`` and leave slices of at least 256 columns).
CANDIDATE_PARTS = (1, 2, 4, 8, 16)

#: Heads with fewer weights (``d_model * d_head``) than this are not worth timing: one slice.
TUNE_MIN_SIZE = 2**17

_best: dict[tuple, int] = {}


def candidate_parts(d_model: int, *, min_columns: int = 256) -> list[int]:
    """The slice counts worth trying for ``d_model``: divisors in :data:`CANDIDATE_PARTS` with wide enough slices."""
    return [p for p in CANDIDATE_PARTS if d_model % p == 0 and (p == 1 or d_model // p >= min_columns)]


def best_parts(Q: torch.Tensor, K: torch.Tensor, group: int) -> int:
    """The number of slices for ``grams(Q, K, group, parts=...)``: timed once per shape on CUDA, else 1."""
    if Q.device.type != "cuda" or Q.shape[-2] * Q.shape[-1] < TUNE_MIN_SIZE:
        return 1
    # Everything that changes which kernels run: device, dtype, shapes, memory layout, float32 matmul precision.
    key = (str(Q.device), Q.dtype, tuple(Q.shape), tuple(K.shape), Q.stride(), K.stride(), group,
           torch.get_float32_matmul_precision())
    if key not in _best:
        _best[key] = fastest_parts(Q, K, group)
    return _best[key]


def fastest_parts(Q: torch.Tensor, K: torch.Tensor, group: int, *, repeats: int = 3) -> int:
    """Time :func:`~toyattn.symmetry.traces.grams` plus the traces for every candidate; return the fastest.

    Each candidate is timed as lesson 0 times work (:func:`toyattn.device.timing.median_seconds`: one
    warm-up run, then the median of ``repeats``), waiting before each reading of the clock for this thread's
    stream only: a layer that :func:`toyattn.weights.prefetch.read_ahead` copies meanwhile on its own stream
    is not counted.
    A candidate whose copy of the slices does not fit in the device's memory is left out.
    """
    from toyattn.symmetry.traces import grams, traces_from_grams

    times = {}
    for parts in candidate_parts(Q.shape[-1]):

        def run(parts: int = parts) -> None:
            traces_from_grams(*grams(Q, K, group, parts=parts))

        try:
            times[parts] = median_seconds(run, Q.device, repeats=repeats, sync=_this_stream(Q.device))
        except torch.cuda.OutOfMemoryError:  # a sliced copy of Q and K did not fit: not a candidate here
            continue
    return min(times, key=times.__getitem__) if times else 1


def _this_stream(device: torch.device):
    """What to wait for before reading the clock: the current CUDA stream (no wait elsewhere)."""
    if device.type != "cuda":
        return lambda: None
    stream = torch.cuda.current_stream(device)
    return stream.synchronize


def clear_cache() -> None:
    """Forget every timed choice (the next call at each shape times the candidates again)."""
    _best.clear()
