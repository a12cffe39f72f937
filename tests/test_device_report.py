"""toyattn.device.report: describing the environment (CUDA_VISIBLE_DEVICES, SLURM) without crashing."""

from __future__ import annotations

import torch
from device_helpers import clean_env  # noqa: F401 (a fixture)

from toyattn import device as dev


def test_describe_reports_unset_cuda_visible_devices_instead_of_crashing():
    info = dev.describe()
    assert info["CUDA_VISIBLE_DEVICES"] == "<unset>"
    assert info["torch"] == torch.__version__
    assert info["device"] == str(dev.get_device())
    assert info["slurm"] == {}
    text = dev.format_description(info)
    assert "not in a SLURM job" in text and "CUDA_VISIBLE_DEVICES" in text


def test_describe_reports_visible_devices_and_slurm(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_JOB_PARTITION", "gpu")
    info = dev.describe()
    assert info["CUDA_VISIBLE_DEVICES"] == "3"
    assert info["slurm"] == {"SLURM_JOB_ID": "4242", "SLURM_JOB_PARTITION": "gpu"}
    assert "SLURM_JOB_ID          4242" in dev.format_description(info)


def test_describe_keeps_going_when_the_requested_device_is_bad(monkeypatch):
    monkeypatch.setenv("TOYATTN_DEVICE", "gpu")
    info = dev.describe()
    assert info["device"] is None
    assert "not a device" in info["device_error"]


def test_free_gpu_memory_is_safe_without_cuda():
    out = dev.free_gpu_memory()
    assert set(out) == {"allocated_gib", "reserved_gib"}
