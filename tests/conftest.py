"""Shared fixtures: the repository as a course, and a scratch course for tests that write."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

from cml.instructor.notebooks import Course

matplotlib.use("Agg")
REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("CML_NO_PROGRESS", "1")


@pytest.fixture(scope="session")
def course() -> Course:
    return Course(REPO)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep each notebook's nbval cells on one xdist worker (they share a kernel, in order)."""
    for item in items:
        if item.nodeid.split("::")[0].endswith(".ipynb"):
            item.add_marker(pytest.mark.xdist_group(name=item.nodeid.split("::")[0]))
