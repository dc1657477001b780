"""nbval runs every source notebook (the reference solutions) from top to bottom.

Each notebook runs in its own ``pytest --nbval-lax`` process: nbval keeps one kernel per notebook, which
pytest-xdist would split across workers if the cells were collected here.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "source").glob("*/*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[path.parent.name for path in NOTEBOOKS])
def test_notebook_runs_under_nbval(notebook: Path, record_property) -> None:
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
         "-p", "no:xdist", "-q", "-o", "addopts=", str(notebook.relative_to(REPO))],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    record_property("seconds", round(time.perf_counter() - started, 1))
    assert completed.returncode == 0, completed.stdout[-5000:] + completed.stderr[-2000:]
