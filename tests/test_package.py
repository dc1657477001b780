"""The package imports fast, keeps heavy frameworks lazy, and exports what it lists."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

MODULES = ["cml", "cml.checks", "cml.data", "cml.plot", "cml.device", "cml.progress"]
INSTRUCTOR_MODULES = [
    "cml.instructor.authoring.convert",
    "cml.instructor.course",
    "cml.instructor.testing.submissions",
    "cml.instructor.grading.grader",
    "cml.instructor.testing.cases",
    "cml.instructor.authoring.release",
    "cml.instructor.grading.baseline",
    "cml.instructor.cli",
]


def test_import_is_fast_and_lazy() -> None:
    code = (
        "import time; start = time.perf_counter(); import cml, cml.checks, cml.data, cml.device, cml.progress; "
        "elapsed = time.perf_counter() - start; import sys; "
        "print(elapsed, 'torch' in sys.modules, 'jax' in sys.modules)"
    )
    # The best of three runs, so that a busy machine does not fail the test by chance.
    timings = []
    for _ in range(3):
        output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        elapsed, torch_loaded, jax_loaded = output.split()
        assert torch_loaded == "False" and jax_loaded == "False"
        timings.append(float(elapsed))
    assert min(timings) < 0.5, f"import cml took {min(timings):.2f} s"


@pytest.mark.parametrize("name", MODULES + INSTRUCTOR_MODULES)
def test_every_exported_name_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported, f"{name} has no __all__"
    for attribute in exported:
        assert hasattr(module, attribute), f"{name}.__all__ lists {attribute!r}, which does not exist"
    assert len(set(exported)) == len(exported), f"{name}.__all__ has duplicates"


def test_unknown_attribute_is_an_error() -> None:
    import cml

    with pytest.raises(AttributeError):
        cml.no_such_module  # noqa: B018
