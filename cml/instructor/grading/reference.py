"""The reference run: the solution graded with the run's seed, whose check log every student's is judged against.

At grading time the grader draws a seed (:func:`draw_seed`) no one can know before, and runs the instructor's
notebook (the solution) with it, in a kernel like the students' (:func:`record_reference`). Every check logs the
values it compares (:mod:`cml.check_log`): the reference log of each grade cell says which checks run, in which
order, their oracle values and tolerances. :class:`~cml.instructor.preprocessors.verdicts.CheckVerdicts` then
judges each student's log against it, outside the student's kernel.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

import nbformat
from traitlets.config import Config

from cml.check_log import SEED_VARIABLE
from cml.instructor.defaults import CELL_TIMEOUT_SECONDS
from cml.instructor.preprocessors.execute import CHECK_RECORDS, ResilientExecute
from cml.instructor.preprocessors.verdicts import has_error, graded_code_id

__all__ = ["draw_seed", "record_reference"]


def draw_seed() -> int:
    """A grading seed no one can know before grading starts."""
    return secrets.randbelow(2**31)


def record_reference(source: Path, seed: int, scratch: Path, *, timeout: int = CELL_TIMEOUT_SECONDS,
                     environment: dict[str, str] | None = None) -> dict[str, Any]:
    """Run every notebook of the assignment folder ``source`` (the instructor's, with solutions) with ``seed``.

    Returns ``{"seed": seed, "notebooks": {name: {grade_id: {"records": [...], "failed": bool}}}}``, the
    check log of each grade cell, and whether the solution itself failed that cell (then nothing is judged
    there). ``scratch`` is a folder to run in; ``environment`` adds kernel variables, as for the students.
    """
    notebooks: dict[str, dict] = {}
    # Unix socket paths are limited to about 100 bytes: the kernel's sockets go to a short folder of their own.
    sockets = Path(tempfile.mkdtemp(prefix="cml-ref-"))
    try:
        for path in sorted(source.glob("*.ipynb")):
            notebooks[path.stem] = _reference_cells(path, source, seed, scratch, sockets / "k", timeout, environment)
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    return {"seed": seed, "notebooks": notebooks}


def _reference_cells(path: Path, source: Path, seed: int, scratch: Path, sockets: Path, timeout: int,
                     environment: dict[str, str] | None) -> dict[str, dict]:
    """The check log of each grade cell of the notebook at ``path``, run with ``seed`` (see :func:`record_reference`)."""
    folder = scratch / path.stem
    shutil.copytree(source, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.ipynb"))
    config = Config()
    config.KernelManager.transport = "ipc"  # as the students' kernels, and without TCP's warning on stderr
    config.KernelManager.ip = str(sockets)
    executor = ResilientExecute(config=config, timeout=timeout, check_log=str(scratch / f"{path.stem}.checks.jsonl"),
                                oracles="mark",
                                extra_environment={**(environment or {}), SEED_VARIABLE: str(seed)})
    resources: dict[str, Any] = {"metadata": {"path": str(folder)}}
    notebook, resources = executor.preprocess(nbformat.read(path, as_version=4), resources)
    logged = resources.get(CHECK_RECORDS, {})
    return {grade_id: {"records": logged.get(index, []), "failed": has_error(cell)}
            for index, cell in enumerate(notebook.cells) if (grade_id := graded_code_id(cell))}
