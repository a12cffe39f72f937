"""The device a lesson runs on: choosing it, repeatable runs, an environment report, and when a GPU helps.

Every lesson imports from here (``from toyattn.device import get_device, seed_everything``):

* :mod:`~toyattn.device`: which device (argument, ``TOYATTN_DEVICE``, CUDA, MPS, CPU) and dtype;
* :mod:`~toyattn.device.reproduce`: seeding every generator, CPU threads (PyTorch's and NumPy's);
* :mod:`~toyattn.device.report`: ``describe()``, the facts to print when a notebook misbehaves;
* :mod:`~toyattn.device.timing`: timing a CPU against a GPU fairly (lesson 0: when a GPU helps).
"""

from toyattn.device.choice import (
    DEVICE_ENV_VAR,
    VALID_DEVICES,
    DeviceUnavailableError,
    available_devices,
    check_dtype,
    get_device,
    wide_dtype,
)
from toyattn.device.report import SLURM_VARS, describe, format_description, free_gpu_memory
from toyattn.device.reproduce import cpu_threads, limit_blas_threads, seed_everything

__all__ = [
    "DEVICE_ENV_VAR",
    "SLURM_VARS",
    "VALID_DEVICES",
    "DeviceUnavailableError",
    "available_devices",
    "check_dtype",
    "cpu_threads",
    "describe",
    "format_description",
    "free_gpu_memory",
    "get_device",
    "limit_blas_threads",
    "seed_everything",
    "wide_dtype",
]
