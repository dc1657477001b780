"""Helpers for the neural-networks course: data, plots, checks, devices and grading.

Submodules load on first use (``cml.data``, ``cml.audio``, ``cml.plot``, ``cml.checks``, ``cml.device``,
``cml.torch_checks``, ``cml.progress``, ``cml.tasks``, ``cml.gradcheck``, ``cml.selfcheck``), so ``import cml`` is
fast and pulls in neither torch nor jax.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__version__ = "0.1.0"

_SUBMODULES = ("audio", "checks", "data", "device", "gradcheck", "plot", "progress", "selfcheck", "tasks", "torch_checks", "instructor")

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str) -> ModuleType:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
