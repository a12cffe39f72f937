"""Read the next layer of a checkpoint while this one is used: a one-layer read-ahead in a background thread (lesson 3).

Scoring a checkpoint layer by layer alternates two kinds of work: reading a layer (from disk or the page cache,
converting it to float32, and on a GPU copying it to the device) and computing with it. Done one after the other,
the GPU waits for every read and the reader for every score. :func:`read_ahead` hands over layer ``i`` and at the
same time reads layer ``i + 1`` in a background thread, so the total is about the larger of the two rather than
their sum. At most two layers are in memory at once (the one in use and the one being read), so a checkpoint
larger than memory still streams.

Torch's conversions and copies release Python's global lock, so the reader thread and the caller's tensor work
run at the same time (reading a GGUF file's quantized blocks is partly Python code and overlaps less). On CUDA the reader copies on its own stream and waits for the copy to finish
before handing a layer over; the caller's stream is then recorded on the tensors, so their memory is not reused
for the next layer while the caller's kernels may still read it.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

from toyattn.heads.weights import HeadWeights

__all__ = ["read_ahead"]


def read_ahead(layers: Any, device: str | torch.device = "cpu") -> Iterator[HeadWeights]:
    """Yield ``layers[0], layers[1], ...`` moved to ``device``, reading each next layer while the caller works.

    Args:
        layers: a sequence of layers with ``len()`` and ``layers[i]`` returning a
            :class:`~toyattn.heads.weights.HeadWeights` (a :class:`~toyattn.weights.checkpoints.QKLayers`).
        device: where the caller computes; each layer's tensors (``W_Q``, ``W_K``, ...) arrive there.

    An error while reading a layer is raised at the point where that layer would have been yielded (after every
    earlier layer was handed over). To stop early, ``close()`` the generator (or iterate it inside
``contextlib.closing``): that waits for the one layer in flight and ends the thread; a generator left
unclosed keeps its thread until it is garbage-collected.
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:  # fixed now, not by whatever is current later
        device = torch.device("cuda", torch.cuda.current_device())
    n = len(layers)
    if n == 0:
        return
    copy_stream = torch.cuda.Stream(device) if device.type == "cuda" else None
    if copy_stream is not None:
        # Work the caller queued before this point (a model just moved to the GPU, say) comes first.
        copy_stream.wait_stream(torch.cuda.current_stream(device))

    def load(i: int) -> HeadWeights:
        if copy_stream is None:
            return _moved(layers[i], device)
        with torch.cuda.stream(copy_stream):  # the reader's GPU work too (a model already on the GPU)
            moved = _moved(layers[i], device)
        copy_stream.synchronize()  # this thread waits for the copy; the caller never does
        return moved

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="toyattn-read-ahead") as pool:
        pending: Future[HeadWeights] = pool.submit(load, 0)
        for i in range(n):
            layer = pending.result()  # a reading error surfaces here, for layer i
            if i + 1 < n:
                pending = pool.submit(load, i + 1)
            if copy_stream is not None:
                _used_on_current_stream(layer, device)
            yield layer


def _moved(layer: HeadWeights, device: torch.device) -> HeadWeights:
    return layer.map(lambda t: t.to(device))  # a tensor already there is kept as it is


def _used_on_current_stream(layer: HeadWeights, device: torch.device) -> None:
    # Memory allocated on the copy stream belongs to it; without this, the allocator could hand it to the next
    # layer's copy while kernels queued on the caller's stream still read it.
    stream = torch.cuda.current_stream(device)
    for tensor in layer.tensors():
        if tensor is not None:
            tensor.record_stream(stream)
