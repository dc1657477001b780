"""Identify and show a student's value from the check log: a digest equal for equal answers, and a short preview.

Two students "gave the same wrong answer" when their values agree to about six significant digits, whatever the
numeric type (``1`` and ``1.0`` are one answer; float noise in the seventh digit does not split a cluster).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import numpy as np

from cml.check_log import UndecodableValue, decode, sampled_shape

__all__ = ["DIGEST_HEX_CHARS", "PREVIEW_CHARS", "describe_value"]

DIGEST_HEX_CHARS = 16
PREVIEW_CHARS = 300
SIGNIFICANT_DIGITS = 6


def _canonical(value: Any) -> Any:
    """A JSON-able form of a decoded value in which equal answers are equal."""
    if isinstance(value, dict):
        return {"dict": {key: _canonical(item) for key, item in sorted(value.items())}}
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "c":
            parts = [np.char.mod(f"%.{SIGNIFICANT_DIGITS}g", part.reshape(-1)).tolist() for part in (value.real, value.imag)]
            return {"complex": list(value.shape), "values": parts}
        flat = value.astype(np.float64, copy=False).reshape(-1)
        flat = np.where(flat == 0, 0.0, flat)  # -0.0 and 0.0 are one answer
        return {"array": list(value.shape), "values": np.char.mod(f"%.{SIGNIFICANT_DIGITS}g", flat).tolist()}
    if isinstance(value, str):  # a repr: object addresses differ between kernels, not between answers
        return {"text": re.sub(r" at 0x[0-9a-fA-F]+", "", value)}
    return {"json": value}


def _digest(value: Any, real_shape: list[int] | None) -> str:
    canonical = json.dumps({"value": _canonical(value), "sampled_from": real_shape}, sort_keys=True)
    return hashlib.blake2b(canonical.encode("utf-8"), digest_size=DIGEST_HEX_CHARS // 2).hexdigest()


def _short_preview(value: Any, real_shape: list[int] | None) -> str:
    text = _preview(value, real_shape)
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def _preview(value: Any, real_shape: list[int] | None = None) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key!r}: {_preview(item)}" for key, item in sorted(value.items())) + "}"
    if isinstance(value, np.ndarray):
        body = np.array2string(value, precision=4, threshold=12, edgeitems=3, max_line_width=100)
        if value.ndim == 0:
            return body
        shape = tuple(real_shape) if real_shape else value.shape
        return f"{value.dtype.name} array of shape {shape}{' (a sample)' if real_shape else ''}: {body}"
    return repr(value) if not isinstance(value, str) or type(value) is str else str(value)


def describe_value(description: Any) -> tuple[str | None, str | None]:
    """``(digest, preview)`` of a logged value, decoded once; ``(None, None)`` when it cannot be read."""
    try:
        value = decode(description)
    except UndecodableValue:
        return None, None
    real_shape = sampled_shape(description)
    return _digest(value, real_shape), _short_preview(value, real_shape)
