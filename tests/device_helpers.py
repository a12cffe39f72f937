"""Device tests' shared fixture: no TOYATTN_DEVICE, CUDA_VISIBLE_DEVICES or SLURM variable leaks in from the machine."""

from __future__ import annotations

import pytest

from toyattn import device as dev


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("TOYATTN_DEVICE", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    for k in dev.SLURM_VARS:
        monkeypatch.delenv(k, raising=False)
