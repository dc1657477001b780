"""Shared fixtures: the repository as a course, and a scratch course for tests that write."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import nbformat
import pytest

from cml.instructor.authoring import script_to_notebook
from cml.instructor.notebooks import Course
from cml.instructor.release import generate_release

matplotlib.use("Agg")
REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("CML_NO_PROGRESS", "1")


@pytest.fixture(scope="session")
def course() -> Course:
    return Course(REPO)


MINI_COURSE = '''# %% [markdown]
# A tiny assignment.

# %% solution id=square
def square(x):
    """Square x."""
    ### BEGIN SOLUTION
    secret_value = x * x
    return secret_value
    ### END SOLUTION

# %% tests id=test_square points=1
"""square squares."""
from cml.checks import check_close
check_close("square.visible", square(3.0), 9.0)
### BEGIN HIDDEN TESTS
check_close("square.hidden_negative", square(-2.0), 4.0)
### END HIDDEN TESTS

# %% [markdown] manual id=why points=1
# Because multiplication by itself is the definition of a square.
'''


@pytest.fixture()
def mini_course(tmp_path: Path, course: Course) -> Course:
    notebook = script_to_notebook(MINI_COURSE)
    (tmp_path / "source" / "mini").mkdir(parents=True)
    nbformat.write(notebook, tmp_path / "source" / "mini" / "mini.ipynb")
    (tmp_path / "nbgrader_config.py").write_text((course.root / "nbgrader_config.py").read_text())
    mini = Course(tmp_path)
    generate_release(mini, mini.release)
    return mini

