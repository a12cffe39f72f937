"""Choosing the device a lesson's tensors live on (and a dtype it can compute in).

Taught in ``notebooks/00_start_here`` and used by every lesson.

The rule for choosing a device (:func:`get_device`), first match wins:

1. an explicit argument (``get_device("cpu")``, ``get_device("cuda:1")``);
2. the ``TOYATTN_DEVICE`` environment variable (same spellings, or ``auto``);
3. CUDA, if PyTorch sees a GPU;
4. Apple's MPS, if available;
5. the CPU.

An explicit request for a device that is not there is an error with a message that says
what is available; automatic choice never fails (it falls back to the CPU).
"""


from __future__ import annotations

import os

import torch

DEVICE_ENV_VAR = "TOYATTN_DEVICE"
#: Device types :func:`get_device` accepts (an index may follow cuda, e.g. ``cuda:1``).
VALID_DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


class DeviceUnavailableError(RuntimeError):
    """A device was asked for explicitly (argument or ``TOYATTN_DEVICE``) but is not available."""


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """Names of the devices this machine can use right now, e.g. ``['cpu', 'cuda:0']``."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return names


def _parse(spec: str, source: str) -> torch.device:
    """Turn a user's spelling into a ``torch.device``, with an error that lists valid spellings."""
    text = spec.strip().lower()
    try:
        dev = torch.device(text)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(
            f"{source} is {spec!r}, which is not a device toyattn knows. "
            f"Valid values: {', '.join(VALID_DEVICES)} (N a GPU index). "
            f"Available on this machine: {', '.join(available_devices())}."
        )
    return dev


def _check_available(dev: torch.device, source: str) -> torch.device:
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"{source} asks for {str(dev)!r} but PyTorch sees no CUDA GPU "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no, a CPU-only build'}). "
                f"Available: {', '.join(available_devices())}. On a cluster, run inside a GPU job "
                f"and install a CUDA build of torch (`make install TORCH=cuda`); otherwise use 'cpu'."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"{source} asks for {str(dev)!r} but only {torch.cuda.device_count()} GPU(s) are visible "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}). "
                f"Available: {', '.join(available_devices())}."
            )
    if dev.type == "mps" and not _mps_available():
        raise DeviceUnavailableError(
            f"{source} asks for 'mps' but Apple's Metal backend is not available here. "
            f"Available: {', '.join(available_devices())}."
        )
    return dev


def get_device(device: str | torch.device | None = None) -> torch.device:
    """The device the course should compute on.

    Args:
        device: ``None`` (decide automatically), a string such as ``"cpu"``, ``"cuda"``,
            ``"cuda:1"``, ``"mps"``, ``"auto"``, or a ``torch.device``.

    Returns:
        A ``torch.device``. Explicit requests are checked; ``auto`` falls back to the CPU.

    Raises:
        ValueError: the spelling is not a device (the message lists valid ones).
        DeviceUnavailableError: an explicitly requested device is not available.
    """
    if isinstance(device, torch.device):
        return _check_available(device, "The device argument")
    if device is not None and str(device).strip().lower() != "auto":
        return _check_available(_parse(str(device), "The device argument"), "The device argument")
    env = os.environ.get(DEVICE_ENV_VAR, "").strip()
    if env and env.lower() != "auto":
        return _check_available(_parse(env, f"{DEVICE_ENV_VAR}"), f"{DEVICE_ENV_VAR}={env}")
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_dtype(dtype: torch.dtype, device: str | torch.device | None = None) -> torch.dtype:
    """Refuse a floating-point ``dtype`` that ``device`` cannot multiply matrices in, saying what to use instead.

    Lessons 3 and 5 run in ``torch.bfloat16`` when asked (half the memory, the precision of many GPU
    runs). A GPU older than NVIDIA's Ampere generation has no bfloat16 arithmetic, and some MPS
    versions have none either; there a bfloat16 run would fail deep inside a product or crawl, so it
    is refused here with a message. Returns ``dtype`` when it works.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch dtype such as torch.bfloat16, got {dtype!r}.")
    dev = get_device(device)
    supported = True
    if dev.type == "cuda" and dtype == torch.bfloat16:
        supported = torch.cuda.is_bf16_supported()
    else:
        try:
            x = torch.ones(2, 2, dtype=dtype, device=dev)
            supported = bool(torch.isfinite(x @ x).all())
        except (RuntimeError, TypeError):
            supported = False
    if not supported:
        raise RuntimeError(
            f"{dev} cannot compute matrix products in {dtype} with this PyTorch ({torch.__version__}); "
            "use dtype=torch.float32 here, or a GPU with bfloat16 (NVIDIA Ampere, e.g. A100, or newer)."
        )
    return dtype


def wide_dtype(device: torch.device) -> torch.dtype:
    """The widest float a device computes in, for sums that must not lose digits: float64, but float32 on MPS (no float64). Lesson 3."""
    return torch.float32 if device.type == "mps" else torch.float64
