"""The one place that picks where tensors live: CUDA when a GPU is present, else the CPU.

torch is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["cuda_available", "try_gpu", "resolve_device", "describe_device"]

FORCE_CPU_VARIABLE = "CML_FORCE_CPU"
"""Set this environment variable to 1 to ignore any GPU (used when grading on mixed machines)."""


def cuda_available() -> bool:
    """Whether torch sees a usable CUDA device (and ``CML_FORCE_CPU`` is not set)."""
    if os.environ.get(FORCE_CPU_VARIABLE, "") not in ("", "0"):
        return False
    import torch

    return torch.cuda.is_available()


def try_gpu(index: int = 0) -> "torch.device":
    """``cuda:index`` when that GPU exists, else ``cpu``."""
    import torch

    if cuda_available() and index < torch.cuda.device_count():
        return torch.device(f"cuda:{index}")
    return torch.device("cpu")


def resolve_device(device: "str | torch.device | None" = None) -> "torch.device":
    """Turn ``None`` (meaning: the best available), ``"cuda"``, ``"cpu"`` or a device into a ``torch.device``.

    Asking for CUDA where there is none raises a clear error instead of failing deep inside torch.
    """
    import torch

    if device is None:
        return try_gpu()
    resolved = torch.device(device)
    if resolved.type == "cuda" and not cuda_available():
        raise RuntimeError(f"device {device!r} was requested but no CUDA GPU is available here")
    return resolved


def describe_device(device: "str | torch.device | None" = None) -> str:
    """A one-line description, such as ``cuda:0 (NVIDIA H100)`` or ``cpu (4 threads)``."""
    import torch

    resolved = resolve_device(device)
    if resolved.type == "cuda":
        return f"{resolved} ({torch.cuda.get_device_name(resolved)})"
    return f"cpu ({torch.get_num_threads()} threads)"
