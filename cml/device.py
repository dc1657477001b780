"""The one place that picks where tensors live: CUDA when a GPU is present, else the CPU.

torch is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["cuda_available", "try_gpu", "resolve_device", "describe_device", "synchronize", "time_call"]

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
    threads = torch.get_num_threads()
    return f"cpu ({threads} thread{'s' if threads != 1 else ''})"


def synchronize(device: "str | torch.device | None" = None) -> None:
    """Wait until the work queued on ``device`` is done (CUDA kernels run asynchronously); no-op on the CPU."""
    import torch

    resolved = torch.device(device) if device is not None else try_gpu()
    if resolved.type == "cuda":
        torch.cuda.synchronize(resolved)


def time_call(
    function: Callable[[], Any],
    *,
    device: "str | torch.device | None" = None,
    warmup: int = 1,
    repeats: int = 5,
) -> float:
    """Median wall-clock seconds of one ``function()`` call on ``device``.

    The first ``warmup`` calls are not timed: they pay for one-off costs (CUDA context, kernel selection,
    memory allocation) that a long computation pays once. The device is synchronised before starting and
    after each call, since a CUDA call returns as soon as its kernel is queued, not when it is done.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for _ in range(warmup):
        function()
    synchronize(device)
    durations = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        synchronize(device)
        durations.append(time.perf_counter() - started)
    return statistics.median(durations)
