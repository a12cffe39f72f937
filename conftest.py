"""pytest settings for the whole course (unit tests and nbval notebooks): CPU determinism, GPU-marker skipping, a notebook timing summary."""

from __future__ import annotations

import os
import time

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOYATTN_PROGRESS", "0")
# Idle OpenMP threads sleep instead of spinning (read before torch is imported; notebook kernels inherit
# it). The tests train tiny models with 2 threads too: on a busy 2-core machine spinning threads made such
# a run 10-20x slower than one thread; sleeping ones do not. Results are the same, only waiting changes.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none visible)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


_notebook_seconds: dict[str, float] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    start = time.perf_counter()
    yield
    path = str(getattr(item, "path", item.fspath))
    if path.endswith(".ipynb"):
        _notebook_seconds[path] = _notebook_seconds.get(path, 0.0) + time.perf_counter() - start


def pytest_terminal_summary(terminalreporter):
    if not _notebook_seconds:
        return
    terminalreporter.write_sep("-", "notebook execution time (all cells, nbval)")
    for path, sec in sorted(_notebook_seconds.items()):
        rel = os.path.relpath(path)
        terminalreporter.write_line(f"{sec:7.1f} s  {rel}")
