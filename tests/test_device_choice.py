"""toyattn.device.choice: choosing a device (argument, environment, auto), clear errors, dtypes a device computes."""

from __future__ import annotations

import pytest
import torch
from device_helpers import clean_env  # noqa: F401 (a fixture)

from toyattn import device as dev
from toyattn.arrays import to_numpy
from toyattn.device import choice as device_choice

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def test_explicit_argument_wins_over_environment(monkeypatch):
    monkeypatch.setenv("TOYATTN_DEVICE", "cuda")
    assert dev.get_device("cpu") == torch.device("cpu")
    assert dev.get_device(torch.device("cpu")) == torch.device("cpu")


def test_environment_variable_is_used(monkeypatch):
    monkeypatch.setenv("TOYATTN_DEVICE", " CPU ")
    assert dev.get_device() == torch.device("cpu")


def test_auto_picks_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_choice, "_mps_available", lambda: False)
    assert dev.get_device() == torch.device("cpu")
    assert dev.get_device("auto") == torch.device("cpu")
    monkeypatch.setattr(device_choice, "_mps_available", lambda: True)
    assert dev.get_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert dev.get_device() == torch.device("cuda", 0)


@pytest.mark.parametrize("bad", ["gpu", "cuda0", "tpu", "xla", ""])
def test_bad_environment_value_lists_valid_ones(monkeypatch, bad):
    monkeypatch.setenv("TOYATTN_DEVICE", bad)
    if bad == "":
        assert dev.get_device() in (torch.device("cpu"), torch.device("mps")) or torch.cuda.is_available()
        return
    with pytest.raises(ValueError) as info:
        dev.get_device()
    msg = str(info.value)
    assert "TOYATTN_DEVICE" in msg and repr(bad) in msg
    for valid in ("cpu", "cuda", "mps", "auto"):
        assert valid in msg


@no_cuda
def test_requesting_missing_cuda_is_a_clear_error(monkeypatch):
    with pytest.raises(dev.DeviceUnavailableError, match="no CUDA GPU.*Available: cpu"):
        dev.get_device("cuda")
    monkeypatch.setenv("TOYATTN_DEVICE", "cuda:1")
    with pytest.raises(dev.DeviceUnavailableError, match="TOYATTN_DEVICE=cuda:1"):
        dev.get_device()


@pytest.mark.gpu
def test_cuda_is_chosen_and_to_numpy_reads_back_from_it():
    assert dev.get_device().type == "cuda"
    x = torch.arange(4.0, device="cuda", requires_grad=True)
    assert to_numpy(x * 2).tolist() == [0.0, 2.0, 4.0, 6.0]
    info = dev.describe()
    assert info["gpus"] and info["gpus"][0]["memory_total_gib"] > 0


def test_check_dtype_accepts_what_the_cpu_computes_and_names_the_fix_otherwise(monkeypatch):
    from toyattn.device import check_dtype

    assert check_dtype(torch.bfloat16, "cpu") is torch.bfloat16
    assert check_dtype(torch.float64, "cpu") is torch.float64
    with pytest.raises(TypeError, match="floating-point torch dtype"):
        check_dtype(torch.int32, "cpu")
    with pytest.raises(TypeError, match="floating-point torch dtype"):
        check_dtype("bfloat16", "cpu")
    # A device whose products fail in that dtype (as bfloat16 on a pre-Ampere GPU or an old MPS) is refused.
    real_matmul = torch.Tensor.__matmul__

    def no_bfloat16(a, b):
        if a.dtype == torch.bfloat16:
            raise RuntimeError("\"addmm_impl_cpu_\" not implemented for 'BFloat16'")
        return real_matmul(a, b)

    monkeypatch.setattr(torch.Tensor, "__matmul__", no_bfloat16)
    with pytest.raises(RuntimeError, match="use dtype=torch.float32 here"):
        check_dtype(torch.bfloat16, "cpu")
