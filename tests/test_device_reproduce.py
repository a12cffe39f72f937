"""toyattn.device.reproduce: seeding makes runs repeat; CPU thread settings are restored."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from device_helpers import clean_env  # noqa: F401 (a fixture)

from toyattn import device as dev


def test_seed_everything_makes_runs_repeat():
    dev.seed_everything(123)
    a = (torch.randn(5), np.random.rand(3))
    g = dev.seed_everything(123)
    b = (torch.randn(5), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert torch.equal(torch.randn(2, generator=g), torch.randn(2, generator=torch.Generator().manual_seed(123)))
    dev.seed_everything(124)
    assert not torch.equal(torch.randn(5), a[0])


def test_cpu_threads_is_restored():
    from toyattn.device import cpu_threads

    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with cpu_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="positive integer"):
        with cpu_threads(0):
            pass


def test_limit_blas_threads_sets_numpy_s_blas_threads_after_numpy_is_imported():
    from threadpoolctl import threadpool_info, threadpool_limits

    from toyattn.device import limit_blas_threads

    blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
    if not blas:
        pytest.skip("this NumPy reports no BLAS thread pool to threadpoolctl")
    before = max(p["num_threads"] for p in blas)
    try:
        limit_blas_threads(1)
        assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
        with pytest.raises(ValueError, match="positive integer"):
            limit_blas_threads(0)
    finally:
        threadpool_limits(before, user_api="blas")
