"""Shared fixtures: the repository as a course, and a scratch course for tests that write."""

from __future__ import annotations

import os
import shutil
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


@pytest.fixture(scope="session")
def mini_course_template(tmp_path_factory: pytest.TempPathFactory, course: Course) -> Path:
    """The mini course with its release, built with nbgrader once per test process."""
    root = tmp_path_factory.mktemp("mini_course")
    (root / "source" / "mini").mkdir(parents=True)
    nbformat.write(script_to_notebook(MINI_COURSE), root / "source" / "mini" / "mini.ipynb")
    (root / "nbgrader_config.py").write_text((course.root / "nbgrader_config.py").read_text())
    mini = Course(root)
    generate_release(mini, mini.release)
    return root


@pytest.fixture()
def mini_course(tmp_path: Path, mini_course_template: Path) -> Course:
    """A private copy of the mini course (source and release) that a test may change."""
    root = tmp_path / "mini_course"
    shutil.copytree(mini_course_template, root)
    return Course(root)

