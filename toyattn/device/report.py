"""What a notebook runs on, as facts to print when it misbehaves (``describe``), and GPU memory upkeep.

Taught in ``notebooks/00_start_here`` (its first cell prints the report); ``toyattn doctor`` prints it too.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

import torch

from toyattn.device.choice import DEVICE_ENV_VAR, DeviceUnavailableError, _mps_available, get_device

#: SLURM variables worth printing when a notebook runs inside a batch or JupyterHub job.
SLURM_VARS = (
    "SLURM_JOB_ID",
    "SLURM_JOB_NAME",
    "SLURM_JOB_PARTITION",
    "SLURM_JOB_NODELIST",
    "SLURM_GPUS",
    "SLURM_GPUS_ON_NODE",
    "SLURM_JOB_GPUS",
    "SLURM_STEP_GPUS",
    "SLURM_CPUS_PER_TASK",
)


def describe(device: str | torch.device | None = None) -> dict[str, Any]:
    """Facts about this environment that matter when a notebook misbehaves.

    The keys: ``python``, ``executable``, ``platform``, ``torch``, ``torch_cuda_build``,
    ``device`` (or ``device_error``), ``cuda_available``, ``gpus`` (name and memory per visible GPU),
    ``CUDA_VISIBLE_DEVICES`` (``"<unset>"`` when it is not set), ``TOYATTN_DEVICE`` and ``slurm``
    (the SLURM job variables present).
    """
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda_build": torch.version.cuda or "none (CPU-only build)",
        "cuda_available": torch.cuda.is_available(),
        "mps_available": _mps_available(),
        # The original research notebook read os.environ["CUDA_VISIBLE_DEVICES"] and crashed when unset.
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"),
        DEVICE_ENV_VAR: os.environ.get(DEVICE_ENV_VAR, "<unset>"),
    }
    try:
        info["device"] = str(get_device(device))
    except (ValueError, DeviceUnavailableError) as err:
        info["device"] = None
        info["device_error"] = str(err)
    gpus = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            free, total = torch.cuda.mem_get_info(i)
            gpus.append(
                {
                    "index": i,
                    "name": props.name,
                    "memory_total_gib": round(total / 2**30, 2),
                    "memory_free_gib": round(free / 2**30, 2),
                }
            )
    info["gpus"] = gpus
    info["slurm"] = {k: os.environ[k] for k in SLURM_VARS if k in os.environ}
    return info


def format_description(info: dict[str, Any]) -> str:
    """:func:`describe`'s dictionary as aligned text, one fact a line."""
    lines = []
    for key, value in info.items():
        if key == "gpus":
            if not value:
                lines.append(f"{'gpus':<22}none visible")
            for gpu in value:
                lines.append(
                    f"{'gpu ' + str(gpu['index']):<22}{gpu['name']}, "
                    f"{gpu['memory_free_gib']} GiB free of {gpu['memory_total_gib']} GiB"
                )
        elif key == "slurm":
            if not value:
                lines.append(f"{'slurm':<22}not in a SLURM job")
            for k, v in value.items():
                lines.append(f"{k:<22}{v}")
        else:
            lines.append(f"{key:<22}{value}")
    return "\n".join(lines)


def free_gpu_memory() -> dict[str, float]:
    """Release PyTorch's cached GPU memory (useful on shared cluster nodes); a no-op on CPU.

    Returns:
        ``{"allocated_gib": ..., "reserved_gib": ...}`` after the release (zeros without CUDA).
        Memory still referenced by live tensors stays allocated: ``del`` them first.
    """
    import gc

    gc.collect()
    if not torch.cuda.is_available():
        return {"allocated_gib": 0.0, "reserved_gib": 0.0}
    torch.cuda.empty_cache()
    return {
        "allocated_gib": round(torch.cuda.memory_allocated() / 2**30, 3),
        "reserved_gib": round(torch.cuda.memory_reserved() / 2**30, 3),
    }
