"""Build the student release with nbgrader and prove it is complete, current and leak-free."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import nbformat

from cml.instructor.cells import HIDDEN_MARKERS, MARK_SCHEME_MARKERS, SOLUTION_MARKERS, released_source
from cml.instructor.course import Course

__all__ = ["find_leaks", "generate_release", "nbgrader_environment", "release_differences", "run_nbgrader", "update_release"]

CONFIG_FILE = "nbgrader_config.py"


def nbgrader_environment() -> dict[str, str]:
    """This environment, with this interpreter's scripts first on ``PATH``: nbgrader's gradebook runs ``alembic``."""
    scripts = os.path.dirname(sys.executable)
    return {**os.environ, "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")])}


def run_nbgrader(arguments: list[str], cwd: Path, *, log: Path | None = None,
                 environment: Mapping[str, str] | None = None) -> None:
    """Run ``nbgrader ARGUMENTS`` in ``cwd``, appending its output to ``log``; raise with that output on failure."""
    completed = subprocess.run(
        [sys.executable, "-m", "nbgrader", *arguments], cwd=cwd, env={**nbgrader_environment(), **(environment or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False,
    )
    if log is not None:
        with open(log, "a") as stream:
            stream.write(f"$ nbgrader {' '.join(arguments)}\n{completed.stdout}")
    if completed.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(arguments)} failed in {cwd}:\n{completed.stdout[-3000:]}")


def generate_release(course: Course, target: Path, assignments: list[str] | None = None) -> Path:
    """Run ``nbgrader generate_assignment`` on a scratch copy of the course; the release lands in ``target``.

    Working on a copy keeps the instructor's gradebook and ``release/`` untouched. Returns ``target``.
    """
    assignments = assignments or course.assignments()
    with tempfile.TemporaryDirectory(prefix="cml-release-") as scratch_name:
        scratch = Path(scratch_name)
        shutil.copy(course.root / CONFIG_FILE, scratch / CONFIG_FILE)
        for assignment in assignments:
            shutil.copytree(course.source / assignment, scratch / "source" / assignment,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
            run_nbgrader(["generate_assignment", assignment, "--force", "--db", f"sqlite:///{scratch}/gb.db"], scratch)
        target.mkdir(parents=True, exist_ok=True)
        for assignment in assignments:
            destination = target / assignment
            if destination.exists():
                shutil.rmtree(destination)
            shutil.copytree(scratch / "release" / assignment, destination)
    return target


def _normalised(path: Path) -> str:
    return json.dumps(json.loads(path.read_text()), sort_keys=True, indent=1)


def release_differences(course: Course, fresh_release: Path) -> list[str]:
    """How ``course.release`` differs from a freshly generated release (empty when they agree)."""
    differences = []
    committed = {p.relative_to(course.release) for p in course.release.rglob("*") if p.is_file()}
    fresh = {p.relative_to(fresh_release) for p in fresh_release.rglob("*") if p.is_file()}
    for path in sorted(fresh - committed):
        differences.append(f"missing from release/: {path}")
    for path in sorted(committed - fresh):
        differences.append(f"in release/ but not generated from source/: {path}")
    for path in sorted(fresh & committed):
        if path.suffix == ".ipynb":
            same = _normalised(course.release / path) == _normalised(fresh_release / path)
        else:
            same = (course.release / path).read_bytes() == (fresh_release / path).read_bytes()
        if not same:
            differences.append(f"out of date: release/{path}")
    return differences


def update_release(course: Course) -> list[str]:
    """Regenerate ``release/`` from ``source/``; returns what changed."""
    with tempfile.TemporaryDirectory(prefix="cml-fresh-") as fresh_name:
        fresh = generate_release(course, Path(fresh_name))
        changes = release_differences(course, fresh)
        if changes:
            if course.release.exists():
                shutil.rmtree(course.release)
            shutil.copytree(fresh, course.release)
    return changes


_MIN_LEAK_LENGTH = 12
"""Shorter lines (``return x``, ``else:``) are too common to count as a leak on their own."""


def _lines(source: str) -> set[str]:
    return {line.strip() for line in source.split("\n")}


def _secret_lines(notebook: nbformat.NotebookNode) -> set[str]:
    """Lines that only the instructor may see: those nbgrader leaves out of the release (solutions, hidden
    tests, mark schemes, solution cells without a region), unless a line is also released somewhere.

    A source nbgrader would refuse is read leniently: an open region hides the rest of its cell.
    """
    secret: set[str] = set()
    public: set[str] = set()
    for cell in notebook.cells:
        released = _lines(released_source(cell, strict=False))
        secret |= _lines(cell.source) - released
        public |= released
    return {line for line in secret - public if len(line) >= _MIN_LEAK_LENGTH and not line.startswith("#")}


def find_leaks(course: Course, release_root: Path | None = None) -> list[str]:
    """Every place where a release notebook shows a marker or a line of a solution or hidden test."""
    release_root = release_root or course.release
    leaks = []
    markers = (*SOLUTION_MARKERS, *HIDDEN_MARKERS, *MARK_SCHEME_MARKERS)
    for assignment in course.assignments():
        for source_path in course.notebooks(assignment):
            release_path = release_root / assignment / source_path.name
            if not release_path.exists():
                leaks.append(f"{release_path}: missing")
                continue
            secrets = _secret_lines(course.read(source_path))
            released = nbformat.read(release_path, as_version=4)
            for index, cell in enumerate(released.cells):
                for line in cell.source.splitlines():
                    stripped = line.strip()
                    if any(marker in stripped for marker in markers):
                        leaks.append(f"{release_path} cell {index}: nbgrader marker {stripped!r}")
                    elif stripped in secrets:
                        leaks.append(f"{release_path} cell {index}: instructor-only line {stripped!r}")
                if cell.get("outputs"):
                    leaks.append(f"{release_path} cell {index}: has outputs")
    return leaks
