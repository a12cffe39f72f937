"""Making runs repeatable and steady: seeding every random generator, and how many CPU threads PyTorch and NumPy use.

Taught in ``notebooks/00_start_here`` and used by every lesson.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from toyattn.validate import positive_int


@contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Use ``n`` CPU threads for PyTorch inside the block, then restore the previous setting.

    A model with 5x5 attention matrices gains nothing from splitting each operation across cores:
    waking and synchronising the threads costs more than the arithmetic, and on a busy shared
    machine it can make training several times slower. ``n=None`` leaves the setting alone.
    """
    if n is None:
        yield
        return
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"cpu_threads must be a positive integer or None, got {n!r}.")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def seed_everything(seed: int = 0, *, deterministic: bool = True) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and every GPU) so a notebook tells the same story each run.

    Args:
        seed: the seed.
        deterministic: also ask cuDNN for deterministic kernels (slower on GPU, identical on CPU).

    Returns:
        A CPU ``torch.Generator`` seeded with ``seed``, for code that wants its own stream.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


def limit_blas_threads(n: int = 1) -> None:
    """Let NumPy's (and SciPy's) linear algebra use at most ``n`` threads from now on in this process.

    For small matrices on a busy shared machine (a hub node, CI) several BLAS threads can spin against
    each other and make a cell many times slower. Unlike the ``OPENBLAS_NUM_THREADS`` variable, this
    works after NumPy has been imported (``threadpoolctl`` changes the loaded library's setting).
    PyTorch's own threads are :func:`cpu_threads`'s business.
    """
    threadpool_limits(positive_int(n, "n"), user_api="blas")
