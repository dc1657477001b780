"""The values behind each check, written where the grader can judge them outside the student's kernel.

When the grader sets ``CML_CHECK_LOG`` in the kernel's environment, every check of :mod:`cml.checks`
appends one JSON line per observation and per verdict to that file: the check's id and kind, the value
the student's code produced (``actual``), the test's oracle value (``expected``) and the tolerances.
The grader runs the instructor's notebook with the same grading seed, and compares the student's values
with the reference run's oracle values in its own process (:mod:`cml.instructor.preprocessors.verdicts`), where no
monkeypatching of the student's reaches.

Nothing in the file is trusted: student code can write to it as well. :func:`decode` therefore accepts
only plain numeric arrays, JSON scalars and strings, never pickles or objects.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import numpy as np

__all__ = ["LOG_VARIABLE", "MAX_LOGGED_VALUES", "SEED_VARIABLE", "decode", "enabled", "encode", "grading_seed",
           "sampled_shape", "write"]

LOG_VARIABLE = "CML_CHECK_LOG"
"""Environment variable naming the file that check records are appended to (unset: nothing is written)."""
SEED_VARIABLE = "CML_GRADING_SEED"
"""Environment variable holding the seed the grader drew for this grading run."""

_NUMERIC_KINDS = "biufc"
_MAX_TEXT = 2000
MAX_LOGGED_VALUES = 50_000
"""Arrays with more values are logged as an evenly spaced sample of at most this many (a whole training set
would cost tens of MB per submission); ``sampled_from`` keeps their real shape."""
suspended = False
"""Set by the grader while it re-runs checks in its own process, so that it writes no records."""


def grading_seed(default: int) -> int:
    """The seed a hidden test draws its inputs from: ``default`` when practising, and a value drawn at
    grading time (the same in the reference run and every student's run) when graded.

    Tests that call it get inputs no one could know before grading, so no answer can be precomputed.
    """
    drawn = os.environ.get(SEED_VARIABLE, "")
    return (default + int(drawn)) % 2**32 if drawn.isdigit() else default


def _host_array(value: Any) -> Any:
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return value


def encode(value: Any) -> Any:
    """A JSON-able description of ``value``: numeric arrays (and NumPy/torch/JAX values) as raw bytes,
    dicts of them by key, JSON scalars as they are, anything else as its ``repr``."""
    if isinstance(value, dict):
        return {"dict": {str(key): encode(item) for key, item in value.items()}}
    if value is None or isinstance(value, (bool, str)):
        return {"json": value if not isinstance(value, str) else value[:_MAX_TEXT]}
    try:
        array = np.asarray(_host_array(value))
    except Exception:  # noqa: BLE001 - an object that will not become an array is described by its repr
        array = None
    if array is not None and array.dtype.kind in _NUMERIC_KINDS:
        extra = {}
        if array.size > MAX_LOGGED_VALUES:
            extra = {"sampled_from": list(array.shape)}
            array = array.reshape(-1)[:: -(-array.size // MAX_LOGGED_VALUES)]
        return {"dtype": array.dtype.str, "shape": list(array.shape),
                "data": base64.b64encode(array.tobytes()).decode("ascii"), **extra}
    return {"repr": repr(value)[:_MAX_TEXT]}


class UndecodableValue(ValueError):
    """A record holds something :func:`decode` does not accept (hand-made or corrupt)."""


def sampled_shape(description: Any) -> list[int] | None:
    """The real shape of an array that :func:`encode` logged as a sample; ``None`` for anything else."""
    return description.get("sampled_from") if isinstance(description, dict) else None


def decode(description: Any) -> Any:
    """The value :func:`encode` described, as a NumPy array, a dict, a JSON scalar or a repr string
    (of a sampled array, the sample: see :func:`sampled_shape`)."""
    if not isinstance(description, dict):
        raise UndecodableValue("not a value description")
    if "dict" in description and isinstance(description["dict"], dict):
        return {key: decode(item) for key, item in description["dict"].items()}
    if "json" in description and (description["json"] is None or isinstance(description["json"], (bool, str))):
        return description["json"]
    if "repr" in description and isinstance(description["repr"], str):
        return _Repr(description["repr"])
    try:
        dtype = np.dtype(description["dtype"])
        shape = tuple(int(size) for size in description["shape"])
        data = base64.b64decode(description["data"], validate=True)
    except (KeyError, TypeError, ValueError) as error:
        raise UndecodableValue(f"malformed array: {error}") from None
    if dtype.kind not in _NUMERIC_KINDS or dtype.hasobject or any(size < 0 for size in shape):
        raise UndecodableValue(f"refused array type {dtype}")
    if len(data) != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
        raise UndecodableValue("array data and shape disagree")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


class _Repr(str):
    """A value that was neither numeric nor JSON: only its ``repr`` travelled, and equality compares that."""


def enabled() -> bool:
    """Whether checks are to log their values (the grader asked for it, and is not judging in its own process)."""
    return bool(os.environ.get(LOG_VARIABLE)) and not suspended


def write(record: dict[str, Any]) -> None:
    """Append ``record`` (plain JSON-able values) to the check log, when the grader asked for one."""
    if not enabled():
        return
    path = os.environ[LOG_VARIABLE]
    try:
        with open(path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(record) + "\n")
    except OSError:  # the student's code may have removed the folder: the grader sees no record, and says so
        pass
