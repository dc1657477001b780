"""Evidence of tampering with the tests' tools, gathered in a graded kernel for the grader.

Before the first answer cell runs, the grader asks the kernel to :func:`capture` the functions the tests rely on
(NumPy's and PyTorch's comparisons and random generators, the checks of :mod:`cml.checks`, the check log's
writer); after the last cell it asks which of them have been replaced since (:func:`replaced`). Both travel as
``user_expressions`` of silent execute requests, so nothing appears in the notebook.

This is evidence, not a defence: the verdicts never depend on it (the hidden checks are judged outside the kernel,
:mod:`cml.instructor.preprocessors.verdicts`), and code that knows of it can hide its traces. It makes the
ordinary attempts (``np.allclose = lambda *a, **k: True``, a stubbed ``check_close``, a fixed random generator)
visible to the instructor even where they no longer change a score.
"""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["WATCHED", "capture", "replaced"]

WATCHED = {
    "numpy": ("isclose", "allclose", "array_equal", "asarray", "sum", "mean", "all", "any", "abs"),
    "numpy.random": ("default_rng", "seed", "RandomState", "Generator"),
    "numpy.testing": ("assert_allclose", "assert_array_equal", "assert_equal"),
    # Not torch.manual_seed: importing torch._dynamo (an optimiser does) wraps it, in every honest notebook too.
    "torch": ("allclose", "equal", "isclose", "Generator", "randn", "rand", "tensor"),
    "torch.testing": ("assert_close",),
    "random": ("seed", "random", "Random"),
    "cml.checks": ("check_close", "check_equal", "check_shape", "check_true", "check_gradient", "check_accuracy",
                   "record_verdict", "observe", "log_withheld", "log_inputs", "grading_seed", "call_quietly",
                   "call_without_autodiff", "numerical_gradient", "rel_error", "skip"),
    "cml.check_log": ("write", "encode", "enabled", "grading_seed"),
    "cml.torch_checks": ("check_parameters_close", "check_device", "first_forward"),
    "builtins": ("open", "print", "__import__", "isinstance", "len"),
}
"""``{module: attributes}`` the tests rely on; a module not imported when :func:`capture` runs is not watched."""
_ORIGINALS: dict[str, Any] = {}


def capture() -> int:
    """Remember the watched functions as they are now; returns how many."""
    _ORIGINALS.clear()
    for module_name, attributes in WATCHED.items():
        module = sys.modules.get(module_name)
        for attribute in attributes if module is not None else ():
            if hasattr(module, attribute):
                _ORIGINALS[f"{module_name}.{attribute}"] = getattr(module, attribute)
    return len(_ORIGINALS)


def replaced() -> str:
    """A JSON list of the watched names that no longer hold what :func:`capture` saw (a module removed from
    ``sys.modules`` counts as replaced)."""
    changed = []
    for name, original in _ORIGINALS.items():
        module_name, _, attribute = name.rpartition(".")
        module = sys.modules.get(module_name)
        if module is None or getattr(module, attribute, None) is not original:
            changed.append(name)
    return json.dumps(changed)
